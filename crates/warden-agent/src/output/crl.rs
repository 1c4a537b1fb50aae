//! CRL outputs: the certificate revocation list of a PKI mount, for a proxy to check its
//! peers' certificates against, delivered like any single file (reload when it changed).
//!
//! It reads `<pki_mount>/cert/crl` (the proxy policy grants exactly that) and, during an
//! intermediate rotation's overlap (ADR 0029), the list of every other valid intermediate of
//! the mount (`<pki_mount>/issuer/<id>/crl`, unauthenticated like the issuers themselves), the
//! default's first, and delivers them only if each parses as a CRL valid now by this host's
//! clock, so a proxy keeps its previous lists rather than a broken one or one it would refuse
//! (not yet valid: a server clock ahead; expired: rebuilds stopped).
//! `warden revoke` rebuilds the CRL; the agent picks it up at its next poll (`[renewal] poll`).

use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use zeroize::Zeroizing;

use super::{RenderContext, RenderError, Rendered, RenderedFile};

/// A CRL written to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlOutput {
    /// Output name (as in `agent.toml`), used in every error.
    pub name: String,
    /// The PKI mount whose CRL is delivered (`pki_int`).
    pub pki_mount: String,
    /// Name of the file written (the output path's file name).
    pub file_name: String,
    /// Permission bits.
    pub mode: u32,
}

impl CrlOutput {
    /// Reads the CRL of every valid intermediate of the mount and checks that each is one.
    ///
    /// Errors: [`RenderError::Bao`] when a read fails; [`RenderError::Invalid`] when an answer
    /// holds no CRL or one that does not parse.
    pub async fn render(&self, ctx: &RenderContext<'_>) -> Result<Rendered, RenderError> {
        let default = self
            .read_crl(ctx, &format!("{}/cert/crl", self.pki_mount), "certificate")
            .await?
            .unwrap_or_default();
        self.check_at(&default, ctx.now)?;
        let mut lists = vec![default];
        for id in self.other_intermediates(ctx).await? {
            let path = format!("{}/issuer/{id}/crl", self.pki_mount);
            // Gone between the list and the read: retired, its leaves no longer verify.
            let Some(pem) = self.read_crl(ctx, &path, "crl").await? else {
                continue;
            };
            self.check_at(&pem, ctx.now)?;
            // Issuers of one key (a root rollover, ADR 0030) may share their list.
            if !lists.contains(&pem) {
                lists.push(pem);
            }
        }
        let mut text = lists.join("\n");
        text.push('\n');
        Ok(Rendered {
            files: vec![RenderedFile {
                name: self.file_name.clone(),
                contents: Zeroizing::new(text.into_bytes()),
                mode: self.mode,
            }],
            ..Rendered::default()
        })
    }

    /// The PEM CRL in `field` of the answer at `path`, trimmed; `None` when the issuer is not
    /// there or has no list (held without its key); any other failure is an error (the last
    /// good file stays).
    async fn read_crl(
        &self,
        ctx: &RenderContext<'_>,
        path: &str,
        field: &str,
    ) -> Result<Option<String>, RenderError> {
        let secret = match ctx.client.read(path).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() || is_unknown_issuer(&e) => return Ok(None),
            // An issuer imported without its key: it signs nothing, so it has no list.
            Err(e) if is_without_crl(&e) => {
                tracing::debug!(output = %self.name, path, "no CRL for this issuer (imported without its key); left out");
                return Ok(None);
            }
            Err(source) => {
                return Err(RenderError::Bao {
                    output: self.name.clone(),
                    what: format!("read {path}"),
                    source: Box::new(source),
                });
            }
        };
        Ok(Some(
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(field))
                .and_then(|c| c.as_str())
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ))
    }

    /// The ids of the mount's valid intermediates other than the default (ADR 0029: during a
    /// rotation's overlap the old one; the same set the CA-chain output delivers). After a
    /// rotation `<mount>/cert/crl` is the new default's list only, so a leaf of the old issuer
    /// revoked during the overlap would still pass at the proxy, and an OpenSSL-based proxy
    /// checking CRLs fails every handshake of a leaf whose issuer has none. A policy that may
    /// not list the issuers (or a server without the endpoint) gets the default's list alone,
    /// as before rotations existed; any other failure is an error (the last good file stays).
    async fn other_intermediates(
        &self,
        ctx: &RenderContext<'_>,
    ) -> Result<Vec<String>, RenderError> {
        let failed = |what: &str, source| RenderError::Bao {
            output: self.name.clone(),
            what: format!("{what} {}", self.pki_mount),
            source: Box::new(source),
        };
        let tolerated = |e: &warden_bao::Error| {
            e.is_permission_denied() || matches!(e.status(), Some(404 | 405))
        };
        // One request outside an overlap: a single issuer has no other list.
        match ctx.client.pki_read_issuers(&self.pki_mount).await {
            Ok(list) if list.len() < 2 => return Ok(Vec::new()),
            Ok(_) => {}
            Err(e) if tolerated(&e) => return Ok(Vec::new()),
            Err(e) => return Err(failed("list the issuers of", e)),
        }
        let issuers = match ctx.client.pki_issuer_certificates(&self.pki_mount).await {
            Ok(issuers) => issuers,
            Err(e) if tolerated(&e) => return Ok(Vec::new()),
            Err(e) => return Err(failed("read the issuers of", e)),
        };
        Ok(warden_pki::mount_intermediates(
            issuers
                .into_iter()
                .map(|i| (i.id, i.is_default, i.certificate)),
            ctx.now,
        )
        .into_iter()
        .filter(|i| !i.is_default)
        .map(|i| i.issuer_id)
        .collect())
    }

    /// Refuses anything that is not one PEM-encoded CRL valid at `now` by this host's clock
    /// (the one the proxy checks it with): OpenSSL-based proxies fail every client handshake
    /// with a list not yet valid (a server clock ahead of the host's) or expired (a server
    /// whose rebuilds stopped), so such a list never replaces the one on disk.
    fn check_at(&self, pem: &str, now: time::OffsetDateTime) -> Result<(), RenderError> {
        let invalid = |reason: String| RenderError::Invalid {
            output: self.name.clone(),
            reason,
        };
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| invalid(format!("{}/cert/crl is not PEM: {e}", self.pki_mount)))?;
        if block.label != "X509 CRL" {
            return Err(invalid(format!(
                "{}/cert/crl holds a `{}`, not a CRL",
                self.pki_mount, block.label
            )));
        }
        let (_, crl) = CertificateRevocationList::from_der(&block.contents)
            .map_err(|e| invalid(format!("{}/cert/crl does not parse: {e}", self.pki_mount)))?;
        let this_update = crl.last_update().to_datetime();
        if this_update > now {
            return Err(invalid(format!(
                "a CRL of {} is not valid before {this_update} by this host's clock (the server's \
                 clock is ahead of this host's, or the list was rebuilt this very second); the \
                 list on disk is kept",
                self.pki_mount
            )));
        }
        if let Some(next) = crl.next_update().map(|t| t.to_datetime())
            && next <= now
        {
            return Err(invalid(format!(
                "a CRL of {} expired at {next} by this host's clock (is the mount's CRL \
                 auto-rebuild off, or the server's clock behind?); the list on disk is kept",
                self.pki_mount
            )));
        }
        Ok(())
    }
}

/// OpenBao's answer for an issuer deleted between a list and a read.
fn is_unknown_issuer(e: &warden_bao::Error) -> bool {
    server_error_says(e, "unable to find PKI issuer")
}

/// OpenBao's answer for the list of an issuer it holds no key of (it never builds one).
fn is_without_crl(e: &warden_bao::Error) -> bool {
    server_error_says(e, "unable to find CRL for issuer")
}

fn server_error_says(e: &warden_bao::Error, what: &str) -> bool {
    matches!(e, warden_bao::Error::Server { status: 500, errors, .. }
        if errors.iter().any(|m| m.contains(what)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out() -> CrlOutput {
        CrlOutput {
            name: "crl".into(),
            pki_mount: "pki_int".into(),
            file_name: "crl.pem".into(),
            mode: 0o644,
        }
    }

    /// The serials each CRL of a delivered file lists, one list per CRL, in order.
    fn listed(pem: &[u8]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for p in x509_parser::pem::Pem::iter_from_buffer(pem) {
            let p = p.expect("PEM");
            assert_eq!(p.label, "X509 CRL");
            let (_, crl) = CertificateRevocationList::from_der(&p.contents).expect("CRL");
            out.push(
                crl.iter_revoked_certificates()
                    .map(|r| r.raw_serial_as_string().replace(':', "").to_lowercase())
                    .collect(),
            );
        }
        out
    }

    /// An intermediate rotation (ADR 0029): once the new issuer is the default,
    /// `<mount>/cert/crl` is the new issuer's list only. A certificate of the old issuer
    /// revoked during the overlap (where it still verifies) must still reach the proxy; and
    /// OpenSSL-based proxies fail every handshake of a leaf whose issuer has no CRL. So the
    /// file holds the list of every valid intermediate of the mount, the default's first.
    #[tokio::test]
    async fn during_an_overlap_the_old_issuers_revocations_are_delivered_too() {
        use serde_json::json;
        use warden_bao::Idempotent;
        let dev = warden_testkit::BaoDev::start().await;
        let c = dev.root_client();
        let issuers = warden_testkit::pki::intermediates(&c, 2).await;
        c.write(
            "pki_int/roles/r",
            &json!({"allow_any_name": true, "no_store": false}),
            Idempotent::Yes,
        )
        .await
        .expect("role");
        let (old, new) = (&issuers[0], &issuers[1]);
        let serial = |s: Option<warden_bao::Secret>| {
            s.and_then(|s| s.data)
                .and_then(|d| d["serial_number"].as_str().map(str::to_owned))
                .expect("serial")
        };
        let leaf = serial(
            c.write(
                "pki_int/issue/r",
                &json!({"common_name": "a.test"}),
                Idempotent::No,
            )
            .await
            .expect("issue"),
        );
        // The rotation's activate: the new issuer becomes the default; then the old leaf is
        // revoked.
        c.pki_set_default_issuer("pki_int", new)
            .await
            .expect("new default");
        c.write(
            "pki_int/revoke",
            &json!({"serial_number": leaf}),
            Idempotent::No,
        )
        .await
        .expect("revoke");
        let want = leaf.replace(':', "").to_lowercase();
        let ctx = RenderContext {
            client: &c,
            trust_anchor_pem: "",
            now: time::OffsetDateTime::now_utc(),
            databases: None,
        };
        let out = CrlOutput {
            pki_mount: "pki_int".into(),
            ..out()
        };
        let r = out.render(&ctx).await.expect("render");
        let lists = listed(&r.files[0].contents);
        assert_eq!(lists.len(), 2, "one list per valid intermediate");
        assert!(lists[0].is_empty(), "the default's first: {lists:?}");
        assert_eq!(lists[1], [want], "the old issuer's revocation");
        // An intermediate imported without its key (OpenBao keeps no list for it: reading
        // one is a 500) signs nothing and revokes nothing: left out, not a failed render.
        c.enable_secrets_engine("pki_other", "pki", &warden_testkit::pki::long_mount())
            .await
            .expect("pki_other");
        let other = warden_testkit::pki::root_signed_intermediate(&c, "pki_other", "Other").await;
        c.write(
            "pki_int/issuers/import/cert",
            &json!({"pem_bundle": other}),
            Idempotent::No,
        )
        .await
        .expect("import without a key");
        let r = out
            .render(&ctx)
            .await
            .expect("render with a key-less issuer");
        assert_eq!(listed(&r.files[0].contents).len(), 2);
        // Retired: the old issuer's list goes with it (OpenBao moves the revocations of a
        // deleted issuer to the default's list).
        c.pki_delete_issuer("pki_int", old).await.expect("retire");
        let r = out.render(&ctx).await.expect("render after retire");
        assert_eq!(listed(&r.files[0].contents).len(), 1);
    }

    /// A CRL signed in code, valid from `this_update` to `next_update`.
    fn crl(this_update: time::OffsetDateTime, next_update: time::OffsetDateTime) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(p, key);
        rcgen::CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    /// OpenSSL-based proxies (nginx `ssl_crl`) fail every client handshake with a CRL that is
    /// not yet valid or expired by the host's clock. A server whose clock runs ahead of the
    /// host's hands out such a list after each rebuild; a server whose rebuilds stopped hands
    /// out an expired one. Neither replaces the list on disk: the render is refused (the
    /// output goes stale, saying why) and tried again.
    #[test]
    fn a_crl_not_valid_by_the_hosts_clock_is_refused() {
        let now = time::OffsetDateTime::now_utc();
        let h = time::Duration::hours(1);
        assert!(out().check_at(&crl(now - h, now + h), now).is_ok());
        let ahead = invalid(out().check_at(&crl(now + h, now + 2 * h), now));
        assert!(ahead.contains("not valid before"), "{ahead}");
        let expired = invalid(out().check_at(&crl(now - 2 * h, now - h), now));
        assert!(expired.contains("expired"), "{expired}");
    }

    fn invalid(r: Result<(), RenderError>) -> String {
        match r {
            Err(RenderError::Invalid { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn anything_but_a_crl_is_refused() {
        let now = time::OffsetDateTime::now_utc();
        assert!(out().check_at("", now).is_err());
        assert!(out().check_at("not pem", now).is_err());
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(out().check_at(cert, now).is_err());
        let junk = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        assert!(out().check_at(junk, now).is_err());
    }
}
