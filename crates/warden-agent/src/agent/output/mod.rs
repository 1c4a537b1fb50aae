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
//!
//! The runtime builds `TemplateOutput` / `CaChainOutput` from the validated config
//! (`config::TemplateConfig`, `config::CaChainConfig`): `name` is the output's name and
//! `file_name` the file name of its `path`. A single-file output returns exactly one
//! [`RenderedFile`]; `not_after`/`serial` of a certificate drive its renewal, those of a CA
//! chain are only reported; `refresh_within` shortens the poll interval.

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;
use zeroize::Zeroizing;

pub mod ca_chain;
pub mod certificate;
pub mod template;

/// Everything an output needs to render.
pub struct RenderContext<'a> {
    /// The agent's logged-in client (its token carries only the identity's policy).
    pub client: &'a warden_bao::Client,
    /// PEM of the trust anchor for this environment (the offline root).
    pub trust_anchor_pem: &'a str,
    /// The clock, injected so expiry logic is testable.
    pub now: OffsetDateTime,
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
    /// For leased secrets (database credentials, issue 6): when to re-render at the latest.
    pub refresh_within: Option<Duration>,
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
    /// Whether retrying later may help (server sealed, unreachable, 5xx) as opposed to a
    /// configuration error that needs a human.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Bao { source, .. } => {
                source.is_retryable() || source.is_sealed() || source.is_unreachable()
            }
            _ => false,
        }
    }
}
