//! Everything `warden-agent` prints: the `--once` report (text or JSON on stdout), progress and
//! errors (stderr). Errors read as `warden`'s do — `error: what: why` and `  hint: next step` —
//! because both binaries run the same agent and operators grep the same lines.

// This module is the only place that prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;

use warden_agent::OnceReport;
use warden_agent::launch;

/// Writes `text` to stdout. A reader that went away (`| head`) is not an error.
pub(crate) fn stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}

/// The `--once` report: one JSON document, or one line per output.
pub(crate) fn once(identity: &str, report: &OnceReport, json: bool) -> std::io::Result<()> {
    let mut text = if json {
        serde_json::to_string_pretty(report).map_err(std::io::Error::other)?
    } else {
        launch::once_text(identity, report)
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    stdout(&text)
}

/// A line for humans on stderr; silent with `--output json`, so scripts see only the document.
pub(crate) fn progress(json: bool, msg: &str) {
    if !json {
        eprintln!("{msg}");
    }
}

/// `error: <what>: <why>...` and `  hint: <next step>` on stderr. A cause whose text the part
/// before it already contains is left out (library errors often print their source inline and
/// also return it as `source()`).
pub(crate) fn error(err: &dyn std::error::Error, hint: &str) {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let part = e.to_string();
        if !parts
            .last()
            .is_some_and(|prev| prev.contains(part.as_str()))
        {
            parts.push(part);
        }
        next = e.source();
    }
    message(&parts.join(": "), hint);
}

/// An error that is only a message.
pub(crate) fn message(what: &str, hint: &str) {
    eprintln!("error: {what}");
    if !hint.is_empty() {
        eprintln!("  hint: {hint}");
    }
}

/// A command-line mistake, with the usage line, as clap would print it.
pub(crate) fn usage(err: &crate::args::UsageError) {
    eprintln!(
        "error: {err}\n\n{}\n\nFor more information, try `warden-agent --help`.",
        crate::args::USAGE
    );
}
