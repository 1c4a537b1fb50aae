//! Text or JSON output. Commands build a serialisable report and a text rendering of it; this
//! module picks one. JSON goes to stdout as one document so `| jq` always works.

// This module and `hint` are the only places that print; everything else goes through them.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use serde::Serialize;

use crate::hint::HintExt;

/// `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text and tables.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Where command results go.
#[derive(Debug)]
pub(crate) struct Output {
    format: Format,
}

impl Output {
    pub(crate) fn new(format: Format) -> Self {
        Self { format }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints `value` as JSON, or `text()` as text.
    pub(crate) fn emit<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let written = match self.format {
            // Serialised straight to stdout: a large report (posture over 30,000
            // credentials) is never held a second time as one string.
            Format::Json => {
                let mut w = std::io::BufWriter::with_capacity(64 * 1024, &mut stdout);
                serde_json::to_writer_pretty(&mut w, value)
                    .map_err(std::io::Error::from)
                    .and_then(|()| w.write_all(b"\n"))
                    .and_then(|()| w.flush())
            }
            Format::Text => {
                let mut s = text();
                if !s.ends_with('\n') {
                    s.push('\n');
                }
                stdout.write_all(s.as_bytes())
            }
        };
        match written.and_then(|()| stdout.flush()) {
            Ok(()) => Ok(()),
            // The reader left (`| head`): what it wanted is delivered, nothing is wrong.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context("could not write to stdout")),
        }
    }

    /// Bytes as they are (a completion script, manual pages) on stdout, in every format.
    pub(crate) fn raw(&self, bytes: &[u8]) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context("could not write to stdout")),
        }
    }

    /// Progress and notices for humans: stderr, and silent in JSON mode so stdout stays clean.
    pub(crate) fn progress(&self, msg: impl AsRef<str>) {
        if self.format == Format::Text {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// A block of text for humans on stderr (a plan shown before `apply` acts on it); silent
    /// in JSON mode.
    pub(crate) fn stderr_block(&self, text: &str) {
        if self.format == Format::Text {
            eprint!("{text}");
        }
    }

    /// A progress line that overwrites itself on a terminal (`\r`), or plain lines otherwise.
    pub(crate) fn progress_inline(&self, msg: &str, last: bool, tty: bool) {
        if self.format != Format::Text {
            return;
        }
        if tty {
            eprint!("\r{msg}");
            if last {
                eprintln!();
            }
        } else {
            eprintln!("{msg}");
        }
    }

    /// One event of a long-running command (`warden serve`) on stdout: one compact JSON
    /// object per line in JSON mode (JSON Lines), `text()` otherwise; flushed at once so a
    /// supervisor or a pipe sees it as it happens.
    pub(crate) fn event<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        use std::io::Write as _;
        let line = match self.format {
            Format::Json => serde_json::to_string(value).unwrap_or_default(),
            Format::Text => text(),
        };
        let mut stdout = std::io::stdout().lock();
        // A reader that left is not a reason to stop serving.
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    }

    /// Warnings go to stderr in every mode: they must not be lost when scripting.
    pub(crate) fn warn(&self, msg: impl AsRef<str>) {
        warn(msg);
    }
}

/// [`Output::warn`] for code that has no `Output` at hand (reading an input file).
pub(crate) fn warn(msg: impl AsRef<str>) {
    eprintln!("warning: {}", msg.as_ref());
}

/// Refuses an existing path (a file that matters is never overwritten) and a missing parent.
pub(crate) fn check_new_file(path: &std::path::Path, what: &str) -> anyhow::Result<()> {
    if path.symlink_metadata().is_ok() {
        return Err(anyhow::anyhow!("{} already exists", path.display())).with_hint(|| {
            format!("choose a new path for the {what}; an existing file is never overwritten")
        });
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        return Err(anyhow::anyhow!(
            "{} is not a directory, so {} cannot be written",
            parent.display(),
            path.display()
        ))
        .hint("create the directory first");
    }
    Ok(())
}
