//! A server's stdout/stderr, drained by threads, kept in memory with secrets redacted.
//!
//! The pipes must be drained for as long as the server lives (a full pipe blocks a server that
//! logs), and dev OpenBao prints its root token and unseal key there. So the output is never
//! written to a file: the lines are kept in a bounded in-memory ring, the root token is taken
//! out into a [`SecretString`], and the two secret lines are stored redacted. Plain threads,
//! not tokio tasks, so that draining does not depend on the test's runtime still running.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex, PoisonError};

use secrecy::SecretString;
use zeroize::Zeroize;

/// How many lines are kept for diagnostics.
const KEEP: usize = 200;

/// Lines that carry a secret in `bao server -dev` output, and whether to keep the value.
const ROOT_TOKEN: &str = "Root Token:";
const UNSEAL_KEY: &str = "Unseal Key:";

#[derive(Default)]
pub(crate) struct Captured {
    lines: Mutex<VecDeque<String>>,
    root_token: Mutex<Option<SecretString>>,
}

impl Captured {
    /// Starts a thread that drains `stream` into `self` until EOF (the process exited).
    pub(crate) fn drain<R: Read + Send + 'static>(self: &Arc<Self>, stream: R) {
        let this = Arc::clone(self);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                this.push(&buf);
                buf.zeroize();
                buf.clear();
            }
        });
    }

    fn push(&self, raw: &[u8]) {
        let mut line = String::from_utf8_lossy(raw).trim_end().to_owned();
        let trimmed = line.trim_start();
        let mut token: Option<SecretString> = None;
        let redacted = if let Some(value) = trimmed.strip_prefix(ROOT_TOKEN) {
            let value = value.trim();
            if !value.is_empty() {
                token = Some(value.into());
            }
            Some(format!("{ROOT_TOKEN} <redacted>"))
        } else if trimmed.starts_with(UNSEAL_KEY) {
            Some(format!("{UNSEAL_KEY} <redacted>"))
        } else {
            None
        };
        if let Some(redacted) = redacted {
            line.zeroize();
            line = redacted;
        }
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.push_back(line);
        if lines.len() > KEEP {
            lines.pop_front();
        }
        drop(lines);
        // Published after its (redacted) line, so whoever sees the token sees the line too.
        if token.is_some() {
            *self
                .root_token
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = token;
        }
    }

    /// The root token, once the server has printed it.
    pub(crate) fn root_token(&self) -> Option<SecretString> {
        self.root_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last `n` lines, for an error message.
    pub(crate) fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = lines.len().saturating_sub(n);
        lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn secrets_are_taken_out_and_redacted() {
        let c = Captured::default();
        c.push(b"Unseal Key: c2VjcmV0LXVuc2VhbA==\n");
        c.push(b"Root Token: s.abcdefTOKEN\n");
        c.push(b"Development mode should NOT be used\n");
        assert_eq!(
            c.root_token().unwrap().expose_secret(),
            "s.abcdefTOKEN",
            "the token is kept"
        );
        let tail = c.tail(10);
        assert!(!tail.contains("s.abcdefTOKEN"), "{tail}");
        assert!(!tail.contains("c2VjcmV0"), "{tail}");
        assert!(tail.contains("Root Token: <redacted>"));
        assert!(tail.ends_with("Development mode should NOT be used"));
        assert_eq!(c.tail(1), "Development mode should NOT be used");
    }

    #[test]
    fn only_the_last_lines_are_kept() {
        let c = Captured::default();
        for i in 0..(KEEP + 50) {
            c.push(format!("line {i}\n").as_bytes());
        }
        let all = c.tail(usize::MAX);
        assert_eq!(all.lines().count(), KEEP);
        assert!(all.starts_with("line 50\n"));
    }

    #[test]
    fn draining_a_stream_reads_it_to_the_end() {
        let c = Arc::new(Captured::default());
        c.drain(&b"one\ntwo\nRoot Token: s.x\n"[..]);
        let start = std::time::Instant::now();
        while c.root_token().is_none() {
            assert!(start.elapsed() < std::time::Duration::from_secs(5));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(c.tail(3), "one\ntwo\nRoot Token: <redacted>");
    }
}
