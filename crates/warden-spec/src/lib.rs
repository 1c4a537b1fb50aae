//! The platform model: what `warden.toml` says, checked.
//!
//! [`parse`] reads the TOML with spans and validates it into a [`Spec`]: environments,
//! identities (apps, proxies, containers, CI pipelines), naming templates in which the `<app>`
//! slug threads through every path and name, lint waivers, databases, transit and signing keys,
//! domain certificates and purposes. Every problem is a [`Diagnostic`] at `file:line:col`
//! naming the key and, for typos, the word that was probably meant. Pure: no I/O beyond
//! [`load`], no knowledge of HTTP.
//!
//! Modules:
//! - `raw`: the TOML as written, with spans (`deny_unknown_fields`);
//! - `validate` (apps, proxies, containers, pipelines and waivers in `validate::identities`)
//!   and `validate_ext` (engines, domains, purposes): raw → model, collecting every problem;
//! - `model`: the validated types, re-exported at the root ([`Spec`], [`Identity`],
//!   [`Environment`], [`Purpose`], [`Credential`], ...);
//! - `diag`: [`Diagnostic`], [`Reporter`] and the `did you mean` suggestions;
//! - `duration`: the one duration grammar ([`parse_duration`], [`format_duration`]);
//! - [`naming`]: the one place that says where everything lives in OpenBao (mounts, prefixes,
//!   policy and role names, each credential's location), so every other crate imports the
//!   contract instead of spelling paths itself;
//! - [`rules`]: the purpose rules (posture status, fail-closed renewal) as pure functions of time.
//!
//! Start with [`load`] or [`parse`]; for OpenBao paths, [`naming::location`].

mod diag;
mod duration;
mod model;
pub mod naming;
mod raw;
pub mod rules;
mod validate;
mod validate_ext;

use std::path::Path;

pub use diag::{Diagnostic, Reporter, SpecError, did_you_mean, explain_toml_error, suggest};
pub use duration::{DurationError, format_approx, format_duration, parse_duration};
pub use model::*;
pub use naming::{Naming, Template};
pub use rules::{Judgement, Observed, Refusal, Status};

/// Parses and validates spec `text`; `file` names it in diagnostics.
pub fn parse(text: &str, file: &str) -> Result<Spec, SpecError> {
    let mut reporter = Reporter::new(file, text);
    let raw: raw::RawSpec = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let (message, help) = explain_toml_error(e.message());
            reporter.push(span, None, message, help);
            return Err(reporter.finish().expect_err("one diagnostic was pushed"));
        }
    };
    let spec = validate::validate(raw, &mut reporter);
    reporter.finish()?;
    Ok(spec.expect("a spec without diagnostics validates"))
}

/// Reads and parses the spec file at `path`.
pub fn load(path: &Path) -> Result<Spec, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string()).map_err(LoadError::Invalid)
}

/// Why a spec file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("could not read {path}: {source}")]
    Io {
        /// The spec path.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file has problems; each diagnostic points at one.
    #[error("{0}")]
    Invalid(SpecError),
}
