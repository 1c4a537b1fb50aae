//! Error reporting at the CLI edge: what failed, why, and what to do next.
//!
//! # Who says what to do next
//!
//! Libraries return typed errors (`thiserror`) whose variants carry the context: environment,
//! path, HTTP status, the server's own `errors[]`. They never print and never advise, because
//! the next step depends on how they were called: the same refused renewal calls for a
//! different command from `warden domain renew` than from the lab or an agent. Only this crate
//! says what to do next: command modules wrap a library error with `anyhow::Context` for *what
//! failed* and with [`HintExt::hint`] for *what to do next*, matching on the typed variant when
//! the advice depends on it; `main` prints the chain as `error: …` and the hint as `hint: …`.
//! Libraries log progress through `tracing` or a progress callback they are given; warnings a
//! user must see come back as data in their reports and are printed here.

#![allow(clippy::print_stderr)] // the error report is printed here, and only here

use std::fmt;
use std::process::ExitCode;

/// A "what to do next" line attached to an error.
#[derive(Debug)]
pub(crate) struct Hint(pub(crate) String);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hint {}

/// An error whose exit code is not the generic failure (for example a failed check).
#[derive(Debug)]
pub(crate) struct WithCode(pub(crate) u8);

impl fmt::Display for WithCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for WithCode {}

/// Adds a hint to any result whose error converts into `anyhow::Error`.
pub(crate) trait HintExt<T> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T>;
    fn with_hint<F: FnOnce() -> String>(self, f: F) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> HintExt<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| e.into().context(Hint(hint.into())))
    }
    fn with_hint<F: FnOnce() -> String>(self, f: F) -> anyhow::Result<T> {
        self.map_err(|e| e.into().context(Hint(f())))
    }
}

/// The message every command uses for a revoked purpose: nothing is issued or renewed under
/// it, `what` is left unchanged.
pub(crate) fn revoked_purpose(purpose: &str, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "purpose `{purpose}` is revoked: nothing is issued or renewed under it ({what} left unchanged)"
    )
    .context(Hint(format!(
        "if the revocation was a mistake, remove `revoked = true` from [purposes.{purpose}] in the spec; otherwise move the credential under another purpose first"
    )))
}

/// The refusal for a purpose revoked live (`warden revoke purpose`, its registry entry) while
/// the spec may still say otherwise.
pub(crate) fn revoked_purpose_live(purpose: &str, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "purpose `{purpose}` is revoked in its registry entry: nothing is issued or renewed under it ({what} left unchanged)"
    )
    .context(Hint(format!(
        "it was revoked by `warden revoke purpose` (the record in warden/revocations/ says who and why): write `revoked = true` in [purposes.{purpose}] of the spec; undoing a revocation is a manual decision (docs/identity.md#revocation)"
    )))
}

/// Prints `error: <what>: <why> ...` and, if present, `hint: <next step>` on stderr.
///
/// `anyhow::Error::downcast_ref` sees through context layers (iterating `chain()` does not),
/// so the hint and exit code are found wherever they were attached; their text is then left
/// out of the message chain.
pub(crate) fn report(err: &anyhow::Error) {
    let hint = err.downcast_ref::<Hint>().map(|h| h.0.clone());
    let code = err.downcast_ref::<WithCode>().map(ToString::to_string);
    let parts: Vec<String> = err
        .chain()
        .map(ToString::to_string)
        .filter(|p| Some(p) != hint.as_ref() && Some(p) != code.as_ref())
        .collect();
    // Library errors print their cause inline ("env: step: cause") and also expose it as
    // `source()`, so the chain would say everything twice: drop a cause whose text the line
    // before it already contains.
    let mut kept: Vec<String> = Vec::new();
    for p in parts {
        if kept.last().is_some_and(|prev| prev.contains(p.as_str())) {
            continue;
        }
        kept.push(p);
    }
    let parts = kept;
    eprintln!("error: {}", parts.join(": "));
    if let Some(h) = hint {
        eprintln!("  hint: {h}");
    }
}

/// The exit code for an error: a [`WithCode`] anywhere in the chain wins, else failure.
pub(crate) fn exit_code(err: &anyhow::Error) -> ExitCode {
    err.downcast_ref::<WithCode>()
        .map_or(crate::exit::FAILURE, |w| w.0)
        .into()
}
