//! What an agent delivers. Each output *renders* content from OpenBao and never touches the
//! filesystem; `deliver` is the only writer. Keeping them apart is what makes delivery
//! transactional and testable: a rendered set is checked as a whole before any byte of it lands.
//!
//! The three kinds and how the runtime calls them (all take a [`RenderContext`] and return a
//! [`Rendered`] set or a [`RenderError`]):
//!
//! | `type`        | renderer                                          | delivered as               |
//! |---------------|---------------------------------------------------|----------------------------|
//! | `certificate` | [`certificate::render`]`(name, &CertificateOutput, ctx)` | a set: versioned dir + symlink |
//! | `template`    | [`template::TemplateOutput::render`]`(ctx)`       | one file                   |
//! | `ca_chain`    | [`ca_chain::CaChainOutput::render`]`(ctx)`        | one file                   |
//! | `crl`         | [`crl::CrlOutput::render`]`(ctx)`                 | one file                   |
//! | `signing_key` | [`signing_key::SigningKeyOutput::load`], then `render(&loaded, now)` | a set: versioned dir + symlink |
//!
//! The runtime builds `TemplateOutput` / `CaChainOutput` from the validated config
//! (`config::TemplateConfig`, `config::CaChainConfig`): `name` is the output's name and
//! `file_name` the file name of its `path`. A single-file output returns exactly one
//! [`RenderedFile`]; `not_after`/`serial` of a certificate drive its renewal, those of a CA
//! chain are only reported; `refresh_within` shortens the poll interval.
//!
//! Templates may also read dynamic database credentials (`database("<source>")`) through
//! [`RenderContext::databases`]: a [`DatabaseCredentials`] implementation that owns the leases
//! (the agent's is `agent::database`), so rendering still never issues more than one lease per
//! source however many templates read it.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub mod ca_chain;
pub mod certificate;
pub mod crl;
pub mod signing_key;
pub mod template;

/// Everything an output needs to render.
pub struct RenderContext<'a> {
    /// The agent's logged-in client (its token carries only the identity's policy).
    pub client: &'a warden_bao::Client,
    /// PEM of the trust anchor for this environment (the offline root).
    pub trust_anchor_pem: &'a str,
    /// The clock, injected so expiry logic is testable.
    pub now: OffsetDateTime,
    /// Where `database("<source>")` gets credentials (the agent's lease book); `None` when the
    /// agent declares no `[[database]]` source.
    pub databases: Option<&'a dyn DatabaseCredentials>,
}

/// Dynamic database credentials as a template sees them. `Debug` never shows the password.
#[derive(Clone)]
pub struct DbCredentials {
    /// The database user.
    pub username: String,
    /// Its password.
    pub password: SecretString,
    /// When the lease ended as issued. Renewals extend it without re-rendering anything, so
    /// the credentials work at least until then.
    pub expires: OffsetDateTime,
    /// Which issue of the source this is in this run (1, 2, ...): lets the runtime tell which
    /// outputs already delivered the current credentials.
    pub generation: u64,
}

impl fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbCredentials")
            .field("username", &self.username)
            .field("password", &"...")
            .field("expires", &self.expires)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Why `database()` got no credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbCredentialsError {
    /// No `[[database]]` source has that name.
    #[error("no [[database]] source called {name:?} in agent.toml (declared: {})", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    UnknownSource {
        /// The name asked for.
        name: String,
        /// The declared sources.
        known: Vec<String>,
    },
    /// Issuing credentials failed (sealed, unreachable, permission denied...).
    #[error("issuing credentials from {path} failed: {source}")]
    Bao {
        /// `<mount>/creds/<role>`.
        path: String,
        /// The client error.
        #[source]
        source: Box<warden_bao::Error>,
    },
}

/// A future that may be sent across threads (what [`DatabaseCredentials`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where templates get dynamic database credentials. The agent's implementation shares one
/// lease per source between every template that reads it, issuing on first use.
pub trait DatabaseCredentials: Send + Sync {
    /// The current credentials of `source` for output `output` (recorded as one of its users,
    /// so it is re-rendered when the credentials are re-issued).
    fn credentials<'a>(
        &'a self,
        source: &'a str,
        output: &'a str,
    ) -> BoxFuture<'a, Result<DbCredentials, DbCredentialsError>>;
}

/// One file of a rendered set. `Debug` never shows the contents.
pub struct RenderedFile {
    /// File name inside the output's directory (certificate sets) or the output's path's file
    /// name (single-file outputs).
    pub name: String,
    /// The bytes to write; zeroized on drop because they may be a key or a secret.
    pub contents: Zeroizing<Vec<u8>>,
    /// Permission bits.
    pub mode: u32,
}

impl fmt::Debug for RenderedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedFile")
            .field("name", &self.name)
            .field("len", &self.contents.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// A set of files delivered together or not at all, with what scheduling needs to know.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The files.
    pub files: Vec<RenderedFile>,
    /// For certificates: when the delivered certificate expires (drives renewal).
    pub not_after: Option<OffsetDateTime>,
    /// For certificates: when it became valid (with `not_after`, its lifetime).
    pub not_before: Option<OffsetDateTime>,
    /// For certificates: the serial, for state and posture.
    pub serial: Option<String>,
    /// For leased secrets: when to re-render at the latest.
    pub refresh_within: Option<Duration>,
    /// When the content changes without anything changing in OpenBao (a signing key version
    /// leaving its grace window, on the server's clock): rendered again then.
    pub changes_at: Option<OffsetDateTime>,
    /// Database sources this render read, with the generation of the credentials it got (see
    /// [`DbCredentials::generation`]).
    pub database_generations: BTreeMap<String, u64>,
}

/// Why rendering failed. Carries which output, and for templates the template name and line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// OpenBao refused or failed (sealed, unreachable, permission denied, ...).
    #[error("output {output}: {what}: {source}")]
    Bao {
        /// Output name.
        output: String,
        /// The step.
        what: String,
        /// The client error.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// A template failed to parse or render.
    #[error("output {output}: template {template} line {line}: {message}")]
    Template {
        /// Output name.
        output: String,
        /// Template name or path.
        template: String,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// What went wrong.
        message: String,
    },
    /// What OpenBao returned is not acceptable (bad certificate, chain that does not verify,
    /// names that do not match the profile).
    #[error("output {output}: refused what OpenBao returned: {reason}")]
    Invalid {
        /// Output name.
        output: String,
        /// Why.
        reason: String,
    },
    /// A signing key could not be read from OpenBao or is not usable (never rotated,
    /// malformed version, sealed, denied...).
    #[error("output {output}: signing key {location}: {source}")]
    SigningKey {
        /// Output name.
        output: String,
        /// `<mount>/<path>`.
        location: String,
        /// What `warden-keys` reported.
        #[source]
        source: Box<warden_keys::Error>,
    },
    /// Key generation or local crypto failed.
    #[error("output {output}: {what}: {reason}")]
    Local {
        /// Output name.
        output: String,
        /// The step.
        what: String,
        /// Why.
        reason: String,
    },
}

impl RenderError {
    /// OpenBao refused the agent's token for what it asked (a narrowed policy, a token
    /// revoked underneath it).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            Self::Bao { source, .. } => source.is_permission_denied(),
            Self::SigningKey { source, .. } => source
                .bao_error()
                .is_some_and(warden_bao::Error::is_permission_denied),
            _ => false,
        }
    }

    /// Whether retrying later may help (server sealed, unreachable, 5xx) as opposed to a
    /// configuration error that needs a human.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Bao { source, .. } => {
                source.is_retryable() || source.is_sealed() || source.is_unreachable()
            }
            Self::SigningKey { source, .. } => source
                .bao_error()
                .is_some_and(|e| e.is_retryable() || e.is_sealed() || e.is_unreachable()),
            _ => false,
        }
    }
}
