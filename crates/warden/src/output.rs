//! Text or JSON output. Commands build a serialisable report and a text rendering of it; this
//! module picks one. JSON goes to stdout as one document so `| jq` always works.

use serde::Serialize;

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

    pub(crate) fn format(&self) -> Format {
        self.format
    }

    pub(crate) fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints `value` as JSON, or `text()` as text.
    pub(crate) fn emit<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) -> anyhow::Result<()> {
        match self.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
            Format::Text => {
                let s = text();
                if s.ends_with('\n') {
                    print!("{s}");
                } else {
                    println!("{s}");
                }
            }
        }
        Ok(())
    }

    /// Progress and notices for humans: stderr, and silent in JSON mode so stdout stays clean.
    pub(crate) fn progress(&self, msg: impl AsRef<str>) {
        if self.format == Format::Text {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Warnings go to stderr in every mode: they must not be lost when scripting.
    pub(crate) fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("warning: {}", msg.as_ref());
    }
}
