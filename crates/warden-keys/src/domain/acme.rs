//! Issuing one domain certificate through an ACME CA (RFC 8555; ADR 0031): OpenBao's own
//! directory on the environment's PKI, or any other CA. The order is for the domain alone; its
//! http-01 challenge is answered by [`ChallengeServer`] on the spec's `listen` address; the key
//! is generated here and only a CSR leaves; what comes back is checked exactly as a PKI
//! signature is ([`super::issue`]) before anyone may store it.
//!
//! The account (its key and URL) lives in KV beside the certificate,
//! `<kv>/domains/<domain>/acme-account`, written once with check-and-set: whoever renews —
//! `warden domain renew` on an operator's machine or `warden serve` on another host — uses the
//! same account, and two first renewals racing keep one.

use std::time::{Duration, Instant};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use serde_json::json;
use time::OffsetDateTime;
use warden_bao::Client;
use warden_bao::body::{Overflow, read_capped};
use warden_spec::{AcmeSettings, DomainCert, naming};
use zeroize::Zeroizing;

use super::challenge::{ChallengeServer, ReqwestHttp};
use super::issue::{Issued, check_leaf, generate, intermediates_of_pem, leaf_serial};
use crate::error::{Error, Result};
use crate::kv::{self, KvLocation};

/// Obtains a domain's certificates from an ACME directory.
#[derive(Debug, Clone)]
pub struct AcmeIssuer {
    /// For the account record in KV.
    client: Client,
    kv_mount: String,
    /// Talks to the directory (for the environment's own OpenBao: the same TLS as `client`).
    http: reqwest::Client,
    directory: String,
    settings: AcmeSettings,
}

impl AcmeIssuer {
    /// An issuer for `domain`, whose spec says `issuer = "acme"` with `settings`, against
    /// `directory` over `http`; the account is kept in the KV v2 mount `kv_mount` of `client`.
    pub fn new(
        client: Client,
        kv_mount: impl Into<String>,
        http: reqwest::Client,
        directory: impl Into<String>,
        settings: AcmeSettings,
    ) -> Self {
        Self {
            client,
            kv_mount: kv_mount.into(),
            http,
            directory: directory.into(),
            settings,
        }
    }

    /// The directory URL orders go to.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// Runs one order for `domain`: account, order, http-01 answered on `listen`, CSR,
    /// certificate, checks. Nothing is stored here.
    pub(crate) async fn issue(&self, domain: &DomainCert, now: OffsetDateTime) -> Result<Issued> {
        let name = domain.domain.as_str();
        let acme = |what: &str, e: instant_acme::Error| Error::Acme {
            domain: name.to_owned(),
            directory: self.directory.clone(),
            reason: format!("{what}: {e}"),
        };
        // Bind first: a port we cannot listen on fails before any order exists.
        let server = ChallengeServer::bind(self.settings.listen)
            .await
            .map_err(|e| Error::Challenge {
                domain: name.to_owned(),
                challenge: "http-01".into(),
                reason: format!(
                    "cannot answer it on {}: {e} (port 80 needs root or CAP_NET_BIND_SERVICE)",
                    self.settings.listen
                ),
            })?;
        let account = self.account(name).await?;
        let ids = [Identifier::Dns(name.to_owned())];
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| acme("create an order", e))?;

        let mut challenge_urls = Vec::new();
        {
            let mut auths = order.authorizations();
            while let Some(auth) = auths.next().await {
                let mut auth = auth.map_err(|e| acme("read an authorization", e))?;
                match auth.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => {
                        return Err(Error::Challenge {
                            domain: name.to_owned(),
                            challenge: "http-01".into(),
                            reason: format!("the CA's authorization is {other:?}"),
                        });
                    }
                }
                let mut challenge =
                    auth.challenge(ChallengeType::Http01)
                        .ok_or_else(|| Error::Challenge {
                            domain: name.to_owned(),
                            challenge: "http-01".into(),
                            reason: "the CA offers no http-01 challenge for this name".into(),
                        })?;
                server.answer(
                    challenge.token.clone(),
                    Zeroizing::new(challenge.key_authorization().as_str().to_owned()),
                );
                challenge_urls.push(challenge.url.clone());
                challenge
                    .set_ready()
                    .await
                    .map_err(|e| acme("tell the CA the challenge is ready", e))?;
            }
        }

        self.wait_ready(&mut order, name).await?;
        drop(server);

        let key = generate(domain.key_type, name)?;
        let csr_pem =
            warden_pki::make_csr(&key, name, &[name.to_owned()], &[]).map_err(|e| Error::Pki {
                domain: name.to_owned(),
                source: e,
            })?;
        let csr_der = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
            .map(|(_, block)| block.contents)
            .map_err(|e| Error::Issue {
                domain: name.to_owned(),
                reason: format!("the CSR just made is not PEM: {e}"),
            })?;
        order
            .finalize_csr(&csr_der)
            .await
            .map_err(|e| acme("finalize the order", e))?;
        let chain = order
            .poll_certificate(&retry(self.settings.challenge_timeout.0))
            .await
            .map_err(|e| acme("download the certificate", e))?;

        let issue_err = |reason: String| Error::Issue {
            domain: name.to_owned(),
            reason,
        };
        let leaf_pem = warden_pki::first_certificate(&chain)
            .ok_or_else(|| issue_err("the CA returned no certificate".into()))?;
        let not_after =
            check_leaf(leaf_pem, name, &key.public_key_der(), now).map_err(issue_err)?;
        let serial = leaf_serial(leaf_pem);
        let mut chain_pem = leaf_pem.trim_end().to_owned();
        chain_pem.push('\n');
        for ca in intermediates_of_pem(&chain) {
            chain_pem.push_str(ca.trim_end());
            chain_pem.push('\n');
        }
        tracing::info!(domain = name, directory = %self.directory, %serial, "certificate obtained over ACME");
        Ok(Issued {
            chain_pem,
            private_key_pem: key.private_key_pem(),
            serial,
            not_after,
        })
    }

    /// Polls the order until it is ready for the CSR; a challenge the CA cannot validate
    /// within `challenge_timeout` (or that it declares invalid) is an [`Error::Challenge`]
    /// carrying the CA's own words.
    async fn wait_ready(&self, order: &mut Order, name: &str) -> Result<()> {
        let deadline = Instant::now() + self.settings.challenge_timeout.0;
        let mut delay = Duration::from_millis(250);
        loop {
            let state = order.refresh().await.map_err(|e| Error::Acme {
                domain: name.to_owned(),
                directory: self.directory.clone(),
                reason: format!("read the order: {e}"),
            })?;
            match state.status {
                OrderStatus::Ready | OrderStatus::Valid => return Ok(()),
                OrderStatus::Invalid => {
                    let why = challenge_errors(order).await;
                    return Err(Error::Challenge {
                        domain: name.to_owned(),
                        challenge: "http-01".into(),
                        reason: format!("the CA declared it invalid: {why}"),
                    });
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                let why = challenge_errors(order).await;
                return Err(Error::Challenge {
                    domain: name.to_owned(),
                    challenge: "http-01".into(),
                    reason: format!(
                        "not validated within {}s: {why}",
                        self.settings.challenge_timeout.0.as_secs()
                    ),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// The account for this directory: the one recorded in KV, or a new one recorded with
    /// check-and-set (a concurrent first renewal that recorded its own first wins, and we use
    /// that one).
    async fn account(&self, name: &str) -> Result<Account> {
        let loc = KvLocation::new(
            self.kv_mount.as_str(),
            naming::domain_acme_account_path(name),
        );
        let path = loc.data_path();
        let acme = |what: &str, e: instant_acme::Error| Error::Acme {
            domain: name.to_owned(),
            directory: self.directory.clone(),
            reason: format!("{what}: {e}"),
        };
        let versions = kv::versions(&self.client, &loc).await?;
        if let Some(info) = versions.newest_live()
            && let Some(data) = kv::read_version(&self.client, &loc, info.version).await?
            && kv::field(&data, "directory", &path, info.version)? == self.directory
        {
            let creds: AccountCredentials =
                serde_json::from_str(kv::field(&data, "credentials", &path, info.version)?)
                    .map_err(|e| Error::Malformed {
                        path: path.clone(),
                        version: info.version,
                        reason: format!("`credentials` is not an ACME account: {e}"),
                    })?;
            return Account::builder_with_http(Box::new(ReqwestHttp(self.http.clone())))
                .from_credentials(creds)
                .await
                .map_err(|e| acme("load the recorded account", e));
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let created = Account::builder_with_http(Box::new(ReqwestHttp(self.http.clone())))
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.directory.clone(),
                None,
            )
            .await;
        let (account, creds) = match created {
            Ok(c) => c,
            // The directory answered with something else than a directory (OpenBao's problem
            // document when ACME is off or the role cannot be used): say what it said.
            Err(instant_acme::Error::Json(_)) => {
                return Err(Error::Acme {
                    domain: name.to_owned(),
                    directory: self.directory.clone(),
                    reason: format!("read the directory: {}", self.directory_answer().await),
                });
            }
            Err(e) => return Err(acme("create an account", e)),
        };
        let creds_json =
            Zeroizing::new(serde_json::to_string(&creds).map_err(|e| Error::Crypto {
                what: format!("serialise the ACME account of {name}: {e}"),
            })?);
        if versions.current == 0 {
            kv::require_cas(&self.client, &loc).await?;
        }
        let record = json!({
            "directory": self.directory,
            "account_id": account.id(),
            "credentials": creds_json.as_str(),
        });
        match kv::write_cas(&self.client, &loc, record, versions.current).await {
            Ok(_) => Ok(account),
            // Someone recorded an account first: use theirs, so there is one.
            Err(e) if e.is_conflict() => Box::pin(self.account(name)).await,
            Err(e) => Err(e),
        }
    }
}

impl AcmeIssuer {
    /// What the directory URL answers, for an error message: status and the start of the body.
    async fn directory_answer(&self) -> String {
        match self.http.get(&self.directory).send().await {
            Ok(rsp) => {
                let status = rsp.status();
                // Only the start is shown: a larger answer is not read at all.
                let body = read_capped(rsp, Overflow::Refuse(64 * 1024))
                    .await
                    .map(|b| {
                        String::from_utf8_lossy(&b)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                format!("HTTP {status}: {body}")
            }
            Err(e) => e.to_string(),
        }
    }
}

/// Every challenge's error the CA recorded, as one line (what the operator needs to fix).
async fn challenge_errors(order: &mut Order) -> String {
    let mut out = Vec::new();
    let mut auths = order.authorizations();
    while let Some(auth) = auths.next().await {
        let mut auth = match auth {
            Ok(a) => a,
            Err(e) => {
                out.push(format!("could not read the authorization: {e}"));
                continue;
            }
        };
        match auth.refresh().await {
            Ok(state) => {
                for c in &state.challenges {
                    if c.r#type != ChallengeType::Http01 {
                        continue;
                    }
                    match (&c.error, c.status) {
                        (Some(p), _) => out.push(
                            p.detail
                                .clone()
                                .unwrap_or_else(|| p.r#type.clone().unwrap_or_default()),
                        ),
                        (None, ChallengeStatus::Pending | ChallengeStatus::Processing) => out.push(
                            "the CA has not tried to validate it yet (no error recorded)".into(),
                        ),
                        (None, s) => out.push(format!("challenge {s:?}, no error recorded")),
                    }
                }
            }
            Err(e) => out.push(format!("could not read the authorization: {e}")),
        }
    }
    if out.is_empty() {
        "the CA recorded no reason".into()
    } else {
        out.join("; ")
    }
}

fn retry(timeout: Duration) -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(2.0)
        .timeout(timeout)
}
