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
        self.map_err(|e| add_hint(e.into(), hint.into()))
    }
    fn with_hint<F: FnOnce() -> String>(self, f: F) -> anyhow::Result<T> {
        self.map_err(|e| add_hint(e.into(), f()))
    }
}

/// The hints an outer [`Hint`] replaced. anyhow cannot drop a context, so their text stays in
/// the chain; [`report`] leaves it out of the message (it printed as the error's first words:
/// "error: is it the right file? …: the listener CA /dev/zero holds more than …").
#[derive(Debug)]
struct Shadowed(Vec<String>);

impl fmt::Display for Shadowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(hints replaced by a later one)")
    }
}

impl std::error::Error for Shadowed {}

/// `hint` over `err`: the outermost hint is the one shown; one already there is recorded as
/// [`Shadowed`] so its text is not printed as part of the error.
fn add_hint(err: anyhow::Error, hint: String) -> anyhow::Error {
    let mut shadowed = err
        .downcast_ref::<Shadowed>()
        .map(|s| s.0.clone())
        .unwrap_or_default();
    let err = match err.downcast_ref::<Hint>() {
        Some(inner) => {
            shadowed.push(inner.0.clone());
            err.context(Shadowed(shadowed))
        }
        None => err,
    };
    err.context(Hint(hint))
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
    let (message, hint) = render(err);
    eprintln!("error: {message}");
    if let Some(h) = hint {
        eprintln!("  hint: {h}");
    }
}

/// The message and the hint [`report`] prints.
fn render(err: &anyhow::Error) -> (String, Option<String>) {
    let hint = err.downcast_ref::<Hint>().map(|h| h.0.clone());
    let code = err.downcast_ref::<WithCode>().map(ToString::to_string);
    let shadowed = err.downcast_ref::<Shadowed>();
    let shadow_marker = shadowed.map(ToString::to_string);
    let parts: Vec<String> = err
        .chain()
        .map(ToString::to_string)
        .filter(|p| Some(p) != hint.as_ref() && Some(p) != code.as_ref())
        .filter(|p| Some(p) != shadow_marker.as_ref())
        .filter(|p| shadowed.is_none_or(|s| !s.0.contains(p)))
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
    (kept.join(": "), hint)
}

/// The exit code for an error: a [`WithCode`] anywhere in the chain wins, else failure.
pub(crate) fn exit_code(err: &anyhow::Error) -> ExitCode {
    err.downcast_ref::<WithCode>()
        .map_or(crate::exit::FAILURE, |w| w.0)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    /// A hint added over an error that had one: the inner hint's text printed as the first
    /// words of the error ("error: is it the right file? (…): the listener CA /dev/zero holds
    /// more than …"), found with `server tls --install-listener-ca /dev/zero`.
    #[test]
    fn a_replaced_hint_is_not_printed_as_part_of_the_error() {
        let inner: anyhow::Result<()> =
            Err(anyhow::anyhow!("the file holds more than 4 bytes")).hint("is it the right file?");
        let err = inner
            .context("reading")
            .hint("give the file resign wrote")
            .unwrap_err();
        let (message, hint) = render(&err);
        assert_eq!(message, "reading: the file holds more than 4 bytes");
        assert_eq!(hint.as_deref(), Some("give the file resign wrote"));
        // Three deep, and a single hint as before.
        let err = Err::<(), _>(err).hint("third").unwrap_err();
        assert_eq!(render(&err).0, "reading: the file holds more than 4 bytes");
        let one = Err::<(), _>(anyhow::anyhow!("why"))
            .hint("next")
            .unwrap_err();
        assert_eq!(render(&one), ("why".to_owned(), Some("next".to_owned())));
    }
}
