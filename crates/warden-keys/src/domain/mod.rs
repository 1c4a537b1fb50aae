//! Domain TLS certificates kept in KV v2 with their expiry: [`DomainStore::status`]
//! says how many days are left and whether renewal is due; [`DomainStore::renew_if_due`]
//! issues a new certificate through the environment's PKI and writes it as a new version
//! with check-and-set, so of two concurrent renewals one wins and the other writes nothing.
//! Old versions stay (KV v2 keeps them) for rollback.
//!
//! # Layout of one version at `<kv>/data/domains/<domain>/cert`
//! | field | content |
//! |---|---|
//! | `certificate` | PEM: the leaf, then the intermediates (no root) |
//! | `private_key` | PEM (PKCS#8) |
//! | `not_after` | RFC 3339, the leaf's `notAfter` |
//! | `serial` | as OpenBao reports it (`xx:xx:…`) |
//! | `issued_at` | RFC 3339, when it was written |

mod acme;
mod challenge;
mod issue;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_bao::{Client, KvData};
use warden_spec::DomainCert;
use zeroize::Zeroizing;

pub use acme::AcmeIssuer;
pub use issue::PkiIssuer;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::kv::{self, KvLocation};

/// Who signs a domain's certificates: the environment's PKI role, or an ACME CA
/// ([`Issuer::for_domain`] picks from the spec's `issuer`).
#[derive(Debug, Clone)]
pub enum Issuer {
    /// `<pki>/sign/domain-<slug>`.
    Pki(PkiIssuer),
    /// An RFC 8555 directory.
    Acme(AcmeIssuer),
}

impl From<PkiIssuer> for Issuer {
    fn from(p: PkiIssuer) -> Self {
        Self::Pki(p)
    }
}

impl From<AcmeIssuer> for Issuer {
    fn from(a: AcmeIssuer) -> Self {
        Self::Acme(a)
    }
}

impl Issuer {
    /// The issuer `domain`'s spec names, in the environment `client` talks to: its PKI mount
    /// `pki_mount`, or ACME — at the spec's `directory`, or by default at OpenBao's own
    /// directory for the domain's role on that mount, reached with `client`'s TLS (its CA and
    /// client certificate). The account is kept in the KV v2 mount `kv_mount`.
    pub fn for_domain(
        client: &Client,
        kv_mount: &str,
        pki_mount: &str,
        domain: &DomainCert,
    ) -> Result<Self> {
        match &domain.issuer {
            warden_spec::DomainIssuer::Pki => Ok(PkiIssuer::new(client.clone(), pki_mount).into()),
            warden_spec::DomainIssuer::Acme(settings) => {
                let (directory, http) = match &settings.directory {
                    Some(url) => {
                        // Another CA: platform roots, no client certificate of ours.
                        let cfg = warden_bao::ClientConfig::from_address(url)
                            .map_err(|e| Error::bao("reach the ACME directory", url, e))?;
                        let other = Client::new(cfg)
                            .map_err(|e| Error::bao("reach the ACME directory", url, e))?;
                        (url.clone(), other.http_client())
                    }
                    None => {
                        let base = client.address().as_str().trim_end_matches('/');
                        let path =
                            warden_spec::naming::acme_directory_path(pki_mount, &domain.slug);
                        (format!("{base}/v1/{path}"), client.http_client())
                    }
                };
                Ok(
                    AcmeIssuer::new(client.clone(), kv_mount, http, directory, settings.clone())
                        .into(),
                )
            }
        }
    }

    async fn issue(&self, domain: &DomainCert, now: OffsetDateTime) -> Result<issue::Issued> {
        match self {
            Self::Pki(p) => p.issue(domain, now).await,
            Self::Acme(a) => a.issue(domain, now).await,
        }
    }
}

/// Where a domain certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainState {
    /// Nothing stored yet.
    Missing,
    /// More than `renew_before` left.
    Valid,
    /// Less than `renew_before` left: renew now.
    Due,
    /// Past `notAfter`.
    Expired,
}

impl DomainState {
    /// Lower-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Valid => "valid",
            Self::Due => "due",
            Self::Expired => "expired",
        }
    }

    /// Whether renewal should happen now.
    pub fn needs_renewal(self) -> bool {
        !matches!(self, Self::Valid)
    }
}

/// One domain's stored certificate, without its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainStatus {
    /// The DNS name.
    pub domain: String,
    /// `<mount>/domains/<domain>/cert`.
    pub location: String,
    /// The stored version (`None` when missing).
    pub version: Option<u64>,
    /// Serial of the stored certificate.
    pub serial: Option<String>,
    /// Its `notAfter`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339::option")]
    pub issued_at: Option<OffsetDateTime>,
    /// Whole days until `notAfter`, rounded down (negative once expired).
    pub days_left: Option<i64>,
    /// Renewal starts this many days before expiry.
    pub renew_before_days: u64,
    /// Missing, valid, due or expired.
    pub state: DomainState,
    /// The highest version written, deleted ones included (0 when never written): what a
    /// renewal started from this status is conditioned on.
    #[serde(skip)]
    pub cas_version: u64,
}

/// What [`DomainStore::renew_if_due`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Renewal {
    /// The status before.
    pub before: DomainStatus,
    /// `true` when a new version was written.
    pub renewed: bool,
    /// The status after (the same as `before` when nothing was done).
    pub after: DomainStatus,
}

/// A stored domain certificate with its key, for the service that serves it. `Debug` hides
/// the key.
pub struct StoredCertificate {
    /// KV version.
    pub version: u64,
    /// Leaf and intermediates, PEM.
    pub chain_pem: String,
    /// PKCS#8 PEM, wiped on drop.
    pub private_key_pem: Zeroizing<String>,
    /// The leaf's `notAfter`.
    pub not_after: OffsetDateTime,
    /// Its serial.
    pub serial: String,
}

impl fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCertificate")
            .field("version", &self.version)
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .field("private_key_pem", &"...")
            .finish_non_exhaustive()
    }
}

/// Domain certificates in one environment's KV v2 mount.
#[derive(Debug, Clone)]
pub struct DomainStore {
    client: Client,
    kv_mount: String,
    clock: Arc<dyn Clock>,
}

impl DomainStore {
    /// A store in the KV v2 mount `kv_mount` (`kvv2`).
    pub fn new(client: Client, kv_mount: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            kv_mount: kv_mount.into(),
            clock,
        }
    }

    /// Where `domain`'s versions live.
    pub fn location(&self, domain: &DomainCert) -> KvLocation {
        KvLocation::new(self.kv_mount.as_str(), domain.kv_path())
    }

    /// The stored certificate's status (reads the newest live version; its key is wiped
    /// unread).
    pub async fn status(&self, domain: &DomainCert) -> Result<DomainStatus> {
        let loc = self.location(domain);
        let path = loc.data_path();
        let versions = kv::versions(&self.client, &loc).await?;
        let mut stored = None;
        if let Some(info) = versions.newest_live()
            && let Some(data) = kv::read_version(&self.client, &loc, info.version).await?
        {
            stored = Some((info.version, Fields::parse(&data, &path, info.version)?));
        }
        let mut status = status_of(domain, &loc, stored, self.clock.now());
        status.cas_version = versions.current;
        Ok(status)
    }

    /// The newest stored certificate with its key.
    pub async fn current(&self, domain: &DomainCert) -> Result<Option<StoredCertificate>> {
        let loc = self.location(domain);
        let path = loc.data_path();
        let versions = kv::versions(&self.client, &loc).await?;
        let Some(info) = versions.newest_live() else {
            return Ok(None);
        };
        let Some(data) = kv::read_version(&self.client, &loc, info.version).await? else {
            return Ok(None);
        };
        let fields = Fields::parse(&data, &path, info.version)?;
        Ok(Some(StoredCertificate {
            version: info.version,
            chain_pem: kv::field(&data, "certificate", &path, info.version)?.to_owned(),
            private_key_pem: Zeroizing::new(
                kv::field(&data, "private_key", &path, info.version)?.to_owned(),
            ),
            not_after: fields.not_after,
            serial: fields.serial,
        }))
    }

    /// Renews when the stored certificate is missing, due or expired (or always, with
    /// `force`); otherwise returns the status untouched.
    pub async fn renew_if_due(
        &self,
        domain: &DomainCert,
        issuer: &Issuer,
        force: bool,
    ) -> Result<Renewal> {
        let before = self.status(domain).await?;
        if !force && !before.state.needs_renewal() {
            return Ok(Renewal {
                after: before.clone(),
                before,
                renewed: false,
            });
        }
        self.renew(domain, issuer, &before).await
    }

    /// Issues a new certificate and writes it as a new version, conditioned on `from` (a
    /// status read earlier) still describing the newest version: a key is generated here,
    /// `issuer` signs a CSR for it, and if anyone wrote a version since `from` was read the
    /// write fails with [`Error::Conflict`] and nothing is stored (the certificate just issued
    /// is then simply never used).
    pub async fn renew(
        &self,
        domain: &DomainCert,
        issuer: &Issuer,
        from: &DomainStatus,
    ) -> Result<Renewal> {
        let loc = self.location(domain);
        let now = self.clock.now();
        let issued = issuer.issue(domain, now).await?;
        if from.cas_version == 0 {
            kv::require_cas(&self.client, &loc).await?;
        }
        let (version, _) =
            kv::write_cas(&self.client, &loc, issued.record(now), from.cas_version).await?;
        tracing::info!(domain = %domain.domain, version, serial = %issued.serial, "domain certificate renewed");
        let mut after = status_of(
            domain,
            &loc,
            Some((
                version,
                Fields {
                    not_after: issued.not_after,
                    serial: issued.serial.clone(),
                    issued_at: Some(now),
                },
            )),
            now,
        );
        after.cas_version = version;
        Ok(Renewal {
            before: from.clone(),
            renewed: true,
            after,
        })
    }
}

/// The non-secret fields of a stored version.
struct Fields {
    not_after: OffsetDateTime,
    serial: String,
    issued_at: Option<OffsetDateTime>,
}

impl Fields {
    fn parse(data: &KvData, path: &str, version: u64) -> Result<Self> {
        let time = |name: &str| -> Result<OffsetDateTime> {
            let s = kv::field(data, name, path, version)?;
            OffsetDateTime::parse(s, &Rfc3339).map_err(|e| Error::Malformed {
                path: path.to_owned(),
                version,
                reason: format!("`{name}` is not an RFC 3339 time: {e}"),
            })
        };
        Ok(Self {
            not_after: time("not_after")?,
            serial: kv::field(data, "serial", path, version)?.to_owned(),
            issued_at: time("issued_at").ok(),
        })
    }
}

/// Classifies a stored certificate at `now`.
fn status_of(
    domain: &DomainCert,
    loc: &KvLocation,
    stored: Option<(u64, Fields)>,
    now: OffsetDateTime,
) -> DomainStatus {
    let renew_before: Duration = domain.renew_before.0;
    let mut status = DomainStatus {
        domain: domain.domain.clone(),
        location: loc.to_string(),
        version: None,
        serial: None,
        not_after: None,
        issued_at: None,
        days_left: None,
        renew_before_days: renew_before.as_secs() / 86_400,
        state: DomainState::Missing,
        cas_version: 0,
    };
    if let Some((version, f)) = stored {
        let left = f.not_after - now;
        status.state = state_at(f.not_after, renew_before, now);
        status.days_left = Some(left.whole_seconds().div_euclid(86_400));
        status.version = Some(version);
        status.serial = Some(f.serial);
        status.not_after = Some(f.not_after);
        status.issued_at = f.issued_at;
    }
    status
}

/// Expired at `notAfter`; due once less than `renew_before` remains.
fn state_at(not_after: OffsetDateTime, renew_before: Duration, now: OffsetDateTime) -> DomainState {
    if now >= not_after {
        DomainState::Expired
    } else if not_after - now < renew_before {
        DomainState::Due
    } else {
        DomainState::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).expect("time")
    }

    const DAY: i64 = 86_400;

    #[test]
    fn due_when_less_than_renew_before_remains() {
        let thirty = Duration::from_secs(30 * DAY as u64);
        let not_after = at(100 * DAY);
        assert_eq!(
            state_at(not_after, thirty, at(69 * DAY)),
            DomainState::Valid
        );
        assert_eq!(
            state_at(not_after, thirty, at(70 * DAY)),
            DomainState::Valid
        );
        assert_eq!(
            state_at(not_after, thirty, at(70 * DAY + 1)),
            DomainState::Due
        );
        assert_eq!(
            state_at(not_after, thirty, at(100 * DAY - 1)),
            DomainState::Due
        );
        assert_eq!(
            state_at(not_after, thirty, at(100 * DAY)),
            DomainState::Expired
        );
        assert!(!DomainState::Valid.needs_renewal());
        assert!(DomainState::Missing.needs_renewal());
    }

    #[test]
    fn days_left_round_down_and_go_negative() {
        let domain = DomainCert {
            domain: "shop.example.com".into(),
            slug: warden_spec::Slug::parse("shop-example-com").unwrap(),
            environments: vec![],
            app: warden_spec::Slug::parse("shop").unwrap(),
            ttl: warden_spec::Ttl(Duration::from_secs(90 * DAY as u64)),
            renew_before: warden_spec::Ttl(Duration::from_secs(30 * DAY as u64)),
            key_type: warden_spec::KeyType::EcP256,
            issuer: warden_spec::DomainIssuer::Pki,
        };
        let loc = KvLocation::new("kvv2", domain.kv_path());
        let fields = |not_after| Fields {
            not_after,
            serial: "01".into(),
            issued_at: None,
        };
        let s = status_of(&domain, &loc, Some((3, fields(at(10 * DAY)))), at(DAY / 2));
        assert_eq!((s.days_left, s.state), (Some(9), DomainState::Due));
        let s = status_of(
            &domain,
            &loc,
            Some((3, fields(at(10 * DAY)))),
            at(10 * DAY + 1),
        );
        assert_eq!((s.days_left, s.state), (Some(-1), DomainState::Expired));
        let s = status_of(&domain, &loc, None, at(0));
        assert_eq!(
            (s.days_left, s.state, s.version),
            (None, DomainState::Missing, None)
        );
        assert_eq!(s.location, "kvv2/domains/shop.example.com/cert");
        assert_eq!(s.renew_before_days, 30);
    }
}
