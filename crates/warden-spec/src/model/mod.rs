//! The validated platform model. Every value here has passed `validate`: names are slugs,
//! references resolve, durations parse, and templates contain the `<app>` slug.
//!
//! One file per concept: `environments` (servers, mounts, trusted token issuers), `identities`
//! (apps, proxies, containers, pipelines and what they consume), `engines` (databases, transit
//! and signing keys, domain certificates) and `purposes` (the contract every credential lives
//! under). The spec itself, its names and durations are here.

use std::fmt;
use std::time::Duration;

mod backup;
mod ca;
mod custody;
mod engines;
mod environments;
mod identities;
mod purposes;

pub use backup::*;
pub use ca::*;
pub use custody::*;
pub use engines::*;
pub use environments::*;
pub use identities::*;
pub use purposes::*;

use crate::naming::Naming;

/// A name that threads through paths and object names: `[a-z0-9][a-z0-9_-]*`, at most 63
/// characters, so it is safe in a Vault path, a policy name, a Unix user name and a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slug(String);

impl Slug {
    /// Checks and wraps `s`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not a valid name: use 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A positive duration written like `24h`, `90m`, `30d` or `1y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(pub Duration);

impl Ttl {
    /// Parses the one duration grammar ([`crate::parse_duration`]: `90d`, `72h`, `1y30d`, ...).
    pub fn parse(s: &str) -> Result<Self, String> {
        crate::parse_duration(s)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// Whole seconds.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// The form OpenBao accepts (`86400s`).
    pub fn to_vault(self) -> String {
        format!("{}s", self.0.as_secs())
    }
}

/// Names of least-privilege lint rules that a waiver may name.
pub const LINT_RULES: [&str; 5] = [
    "wildcard-beyond-prefix",
    "sudo",
    "shared-identity",
    "proxy-can-issue",
    "cross-app-read",
];

/// An explicit, reasoned exception to a lint rule for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiver {
    /// One of [`LINT_RULES`].
    pub rule: String,
    /// The identity.
    pub identity: Slug,
    /// Why it is acceptable.
    pub reason: String,
}

/// A validated platform spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Naming templates.
    pub naming: Naming,
    /// Environments, in name order.
    pub environments: Vec<Environment>,
    /// Identities, ordered by kind then name.
    pub identities: Vec<Identity>,
    /// Waivers.
    pub waivers: Vec<Waiver>,
    /// Databases, in name order.
    pub databases: Vec<Database>,
    /// Domain certificates, in domain order.
    pub domains: Vec<DomainCert>,
    /// Purposes, in id order.
    pub purposes: Vec<Purpose>,
    /// Transport holders (runtime hosts, CI runners), in name order.
    pub transport: Vec<TransportHolder>,
    /// `[ca]`: the chain's cadence (lifetimes, rotation, overlap).
    pub ca: CaPolicy,
}

/// `[transport.<holder>]`: a runtime host or CI runner that may hold a *transport certificate*
/// per environment — a client certificate that only gets a workload's AppRole or JWT login
/// through the listener's mTLS requirement and carries no permission of its own (ADR 0010).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportHolder {
    /// The holder's name (a host or runner), unique among holders.
    pub name: Slug,
    /// Environments it may hold a certificate for.
    pub environments: Vec<Slug>,
    /// The containers and pipelines whose logins it carries; their tokens may renew its
    /// certificate.
    pub carries: Vec<Slug>,
    /// Lifetime of each certificate (the listener checks expiry, not revocation, so this is
    /// what bounds a revoked certificate's use).
    pub ttl: Ttl,
}

impl TransportHolder {
    /// Whether it may hold a certificate for `env`.
    pub fn in_env(&self, env: &str) -> bool {
        self.environments.iter().any(|e| e.as_str() == env)
    }
}

impl Spec {
    /// The environment called `name`.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name.as_str() == name)
    }

    /// Identities living in `env`.
    pub fn identities_in<'a>(&'a self, env: &'a str) -> impl Iterator<Item = &'a Identity> + 'a {
        self.identities.iter().filter(move |i| i.in_env(env))
    }

    /// The identity called `name`.
    pub fn identity(&self, name: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| i.name.as_str() == name)
    }

    /// The database called `name`.
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.name.as_str() == name)
    }

    /// The transport holders of `env`.
    pub fn transport_in<'a>(
        &'a self,
        env: &'a str,
    ) -> impl Iterator<Item = &'a TransportHolder> + 'a {
        self.transport.iter().filter(move |t| t.in_env(env))
    }

    /// The transport holder called `name`.
    pub fn transport_holder(&self, name: &str) -> Option<&TransportHolder> {
        self.transport.iter().find(|t| t.name.as_str() == name)
    }

    /// The purpose called `id`.
    pub fn purpose(&self, id: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.id.as_str() == id)
    }

    /// The purpose governing the credential `id` (validation guarantees at most one).
    pub fn purpose_of(&self, id: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.covers(id))
    }

    /// Every credential the spec creates, in identity order then kind order.
    pub fn credentials(&self) -> Vec<Credential> {
        let mut out = Vec::new();
        for i in &self.identities {
            let mut add = |kind: CredentialKind| {
                out.push(Credential::new(
                    i.name.clone(),
                    kind,
                    i.environments.clone(),
                ));
            };
            match i.kind {
                IdentityKind::App | IdentityKind::Proxy => add(CredentialKind::IdentityCert),
                IdentityKind::Container => add(CredentialKind::SecretId),
                IdentityKind::Pipeline => add(CredentialKind::CiToken),
            }
            if i.certificate.is_some() {
                add(CredentialKind::Certificate);
            }
            for s in &i.secrets {
                add(CredentialKind::Secret(s.clone()));
            }
            for d in &i.databases {
                add(CredentialKind::Database(d.clone()));
            }
            for k in &i.transit_keys {
                add(CredentialKind::TransitKey(k.name.to_string()));
            }
            for k in &i.signing_keys {
                add(CredentialKind::SigningKey(k.name.to_string()));
            }
        }
        for d in &self.domains {
            out.push(Credential::new(
                d.app.clone(),
                CredentialKind::DomainCert(d.slug.to_string()),
                d.environments.clone(),
            ));
        }
        out
    }

    /// Whether `rule` is waived for `identity`.
    pub fn waived(&self, rule: &str, identity: &str) -> Option<&Waiver> {
        self.waivers
            .iter()
            .find(|w| w.rule == rule && w.identity.as_str() == identity)
    }
}
