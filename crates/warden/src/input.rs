//! Where secret values and transit inputs come from: a file or stdin, never argv (argv is
//! visible to every user in `ps`), and never typed at a terminal (it would echo).
//!
//! A secret's value is a JSON object (`{"key": "value", …}`, any JSON values) or `KEY=VALUE`
//! lines. Error messages name the line and the key, never the content: the content is the
//! secret.
//!
//! Also the one place a command asks the operator to confirm destructive work at the terminal
//! ([`confirm`], [`ask`]): never from a pipe, never in JSON mode, where nobody sees the plan.

use std::io::{BufRead, IsTerminal, Read};
use std::path::Path;

use anyhow::Context;
use warden_bao::{KvData, SecretValue};
use zeroize::Zeroizing;

use crate::hint::HintExt;
use crate::output::Output;

/// The most a PEM, CSR or other text file named on the command line is read (the OpenBao
/// client's limit for a CA bundle or a client certificate file).
pub(crate) const TEXT_FILE_LIMIT: u64 = warden_bao::PEM_FILE_LIMIT;
/// The most a token or passphrase file is read: one line.
pub(crate) const SECRET_FILE_LIMIT: u64 = 64 * 1024;
/// The most a secret value or a transit input is read: OpenBao's default request size limit.
pub(crate) const VALUE_LIMIT: u64 = 32 * 1024 * 1024;

/// How long a named FIFO may wait for its writer to open it. Process substitution (`<(…)`,
/// a pipe already open) never waits here; a `mkfifo` FIFO nobody writes to would hang forever.
const FIFO_OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens a file the operator named. A FIFO is opened on a thread and given up after `wait`:
/// opening one blocks until a writer opens it, and a forgotten writer must not leave the
/// command hanging without a word (the thread stays blocked; the command exits with the error).
/// Only the open is bounded: a writer that is slow to produce (a decryption asking for a
/// passphrase) is waited for.
fn open_named(path: &Path, what: &str, wait: std::time::Duration) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::FileTypeExt;
    // Opened without blocking first and judged by what was opened, not by a look at the name
    // before: a FIFO swapped in between would otherwise block the open with no bound.
    let (file, meta) =
        warden_files::open_nonblocking(path).with_context(|| format!("could not open {what}"))?;
    if !meta.file_type().is_fifo() {
        return Ok(file);
    }
    // A FIFO opened this way reads end-of-file until its writer comes: opened again, blocking,
    // on a thread, which returns once the writer has opened it (at once for `<(…)`).
    drop(file);
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_owned();
    std::thread::spawn(move || {
        // The receiver may be gone (timed out): the file is then closed here.
        let _ = tx.send(std::fs::File::open(owned));
    });
    match rx.recv_timeout(wait) {
        Ok(opened) => opened.with_context(|| format!("could not open {what}")),
        Err(_) => Err(anyhow::anyhow!(
            "{what} is a FIFO that nothing opened for writing within {} s",
            wait.as_secs()
        ))
        .hint("start the command that writes it first, or give a regular file or `<(command)`"),
    }
}

/// Reads all of `r`, but at most `limit` bytes: a named file that turns out to be a device, an
/// endless pipe or the wrong file is refused instead of filling memory. A FIFO (`<(…)`) still
/// works: it is read like a file, as the operator asked.
fn read_capped(r: impl Read, limit: u64, what: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    r.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .with_context(|| format!("could not read {what}"))?;
    if buf.len() as u64 > limit {
        return Err(anyhow::anyhow!("{what} holds more than {limit} bytes"))
            .hint("is it the right file? (a device or an endless pipe is never what is meant)");
    }
    Ok(buf)
}

/// A text file the operator named (`--csr`, `--cert`, a token or passphrase file): UTF-8, at
/// most `limit` bytes, wiped from memory when dropped. `what` names it in errors ("the CSR").
pub(crate) fn read_named_text(
    path: &Path,
    what: &str,
    limit: u64,
) -> anyhow::Result<Zeroizing<String>> {
    let what = format!("{what} {}", path.display());
    let f = open_named(path, &what, FIFO_OPEN_WAIT)?;
    let mut bytes = read_capped(f, limit, &what)?;
    let text = std::str::from_utf8(&bytes)
        .map(str::to_owned)
        .map_err(|_| anyhow::anyhow!("{what} is not UTF-8 text"));
    bytes.iter_mut().for_each(|b| *b = 0);
    Ok(Zeroizing::new(text?))
}

/// The same, for stdin (a root token or a passphrase piped in). A terminal on stdin is
/// refused, as by [`read_bytes`]: what is typed there is echoed and kept in scrollback.
pub(crate) fn read_stdin_text(what: &str, limit: u64) -> anyhow::Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    read_text_from(stdin.lock(), terminal, what, limit)
}

/// [`read_stdin_text`] of `r`, which is a terminal when `terminal`.
fn read_text_from(
    r: impl Read,
    terminal: bool,
    what: &str,
    limit: u64,
) -> anyhow::Result<Zeroizing<String>> {
    let what = format!("{what} from stdin");
    if terminal {
        return Err(anyhow::anyhow!(
            "refusing to read {what} at a terminal: it would be echoed and kept in scrollback"
        ))
        .hint("pipe it in (`… < file`), or name a file instead");
    }
    let bytes = read_capped(r, limit, &what)?;
    std::str::from_utf8(&bytes)
        .map(|t| Zeroizing::new(t.to_owned()))
        .map_err(|_| anyhow::anyhow!("{what} is not UTF-8 text"))
}

/// Reads all of `file`, or of stdin when `file` is `None` (at most [`VALUE_LIMIT`] bytes).
/// Refuses a terminal on stdin.
pub(crate) fn read_bytes(file: Option<&Path>, what: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    match file {
        Some(path) => {
            let shown = path.display().to_string();
            let f = open_named(path, &shown, FIFO_OPEN_WAIT)?;
            read_capped(f, VALUE_LIMIT, &shown)
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(anyhow::anyhow!(
                    "refusing to read {what} from a terminal: it would be echoed and kept in scrollback"
                ))
                .hint("pipe it in (`… < file`) or pass --from-file FILE / --in FILE");
            }
            read_capped(stdin.lock(), VALUE_LIMIT, &format!("{what} from stdin"))
        }
    }
}

/// Reads and parses a secret's value (see the module doc for the formats).
pub(crate) fn read_secret(file: Option<&Path>) -> anyhow::Result<KvData> {
    let origin = file.map_or_else(|| "stdin".to_owned(), |p| p.display().to_string());
    let bytes = read_bytes(file, "the secret's value")?;
    let text = std::str::from_utf8(&bytes)
        .ok()
        .with_context(|| format!("{origin}: the value is not UTF-8 text"))
        .hint("write the value as a JSON object or KEY=VALUE lines")?;
    parse_secret(text, &origin)
}

/// Parses a JSON object or `KEY=VALUE` lines.
pub(crate) fn parse_secret(text: &str, origin: &str) -> anyhow::Result<KvData> {
    let data = if text.trim_start().starts_with('{') {
        parse_json(text, origin)?
    } else {
        parse_lines(text, origin)?
    };
    if data.is_empty() {
        return Err(anyhow::anyhow!("{origin}: no keys in the value"))
            .hint("write a JSON object ({\"key\": \"value\"}) or KEY=VALUE lines");
    }
    Ok(data)
}

fn parse_json(text: &str, origin: &str) -> anyhow::Result<KvData> {
    // The top level is known to be an object, so serde_json's messages can only be about
    // syntax (with line and column), never quote a value.
    serde_json::from_str::<KvData>(text)
        .map_err(|e| {
            anyhow::anyhow!(
                "{origin}:{}:{}: not a valid JSON object ({:?} error)",
                e.line(),
                e.column(),
                e.classify()
            )
        })
        .hint("check the JSON syntax near that position (the value itself is not shown)")
}

fn parse_lines(text: &str, origin: &str) -> anyhow::Result<KvData> {
    let mut data = KvData::new();
    let mut first_line: std::collections::BTreeMap<String, usize> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(anyhow::anyhow!(
                "{origin}:{n}: expected KEY=VALUE (the line has no `=`)"
            ))
            .hint("one KEY=VALUE per line; or give a JSON object");
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(anyhow::anyhow!("{origin}:{n}: `{key}` is not a valid key")).hint(
                "keys use A-Z, a-z, 0-9, '_', '.' and '-'; for other keys give a JSON object",
            );
        }
        if let Some(prev) = first_line.insert(key.to_owned(), n) {
            return Err(anyhow::anyhow!(
                "{origin}:{n}: key `{key}` is given twice (first on line {prev})"
            ))
            .hint("keep one of them");
        }
        data.insert(key, SecretValue::text(value.to_owned()));
    }
    Ok(data)
}

/// The words of a yes/no confirmation, for its refusal and cancellation messages.
pub(crate) struct Confirmation<'a> {
    /// What is about to happen: "revoke" in "refusing to revoke without confirmation".
    pub(crate) action: &'a str,
    /// What the terminal showed to confirm, and `--dry-run` shows: "plan", "preview".
    pub(crate) shown: &'a str,
    /// The action as a noun: "revocation" in "revocation cancelled".
    pub(crate) noun: &'a str,
    /// What a refusal or a "no" left undone: "nothing was revoked".
    pub(crate) untouched: &'a str,
}

/// Asks `question` with `[y/N]` on the terminal; `y`, `Y` or `yes` go ahead. Refuses when nobody
/// can answer: stdin is not a terminal, or JSON mode, where the plan is not shown.
pub(crate) fn confirm(out: &Output, question: &str, c: &Confirmation<'_>) -> anyhow::Result<()> {
    if out.is_json() || !std::io::stdin().is_terminal() {
        return Err(anyhow::anyhow!(
            "refusing to {} without confirmation: {}; {}",
            c.action,
            if out.is_json() {
                format!("-o json shows no {} to confirm", c.shown)
            } else {
                "stdin is not a terminal".to_owned()
            },
            c.untouched
        ))
        .hint(format!(
            "review the {} (--dry-run shows it), then pass --yes",
            c.shown
        ));
    }
    let answer = ask(out, &format!("{question} [y/N] "))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{} cancelled; {}", c.noun, c.untouched))
    }
}

/// Prints `prompt` on stderr (text mode) and reads one line of stdin, the answer. The caller
/// has made sure a person is at the terminal.
pub(crate) fn ask(out: &Output, prompt: &str) -> anyhow::Result<String> {
    out.stderr_block(prompt);
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| anyhow::anyhow!("could not read the answer: {e}"))?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_files_are_read_bounded_and_a_fifo_still_works() {
        // A device that never ends is refused at the limit, with what to check.
        let err = read_named_text(Path::new("/dev/zero"), "the CSR", 1024).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("more than 1024 bytes"), "{text}");
        assert!(text.contains("the CSR /dev/zero"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("f.pem");
        std::fs::write(&small, "hello\n").unwrap();
        assert_eq!(read_named_text(&small, "x", 6).unwrap().as_str(), "hello\n");
        assert!(read_named_text(&small, "x", 5).is_err(), "one byte over");
        std::fs::write(&small, [0xff, 0xfe]).unwrap();
        let bad = format!("{:#}", read_named_text(&small, "x", 64).unwrap_err());
        assert!(bad.contains("not UTF-8"), "{bad}");
        // Process substitution (`--csr <(…)`) hands over a FIFO: it is read, as asked.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, "from a pipe").unwrap())
        };
        assert_eq!(
            read_named_text(&fifo, "x", 1024).unwrap().as_str(),
            "from a pipe"
        );
        writer.join().unwrap();
        // A FIFO nobody opens for writing is given up on, with what to do, instead of hanging.
        let wait = std::time::Duration::from_millis(200);
        let start = std::time::Instant::now();
        let err = format!("{:#}", open_named(&fifo, "the CSR", wait).unwrap_err());
        assert!(err.contains("nothing opened for writing"), "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // The blocked open is released (and the file closed on its thread) once a writer comes.
        std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    }

    #[test]
    fn stdin_text_is_never_read_at_a_terminal() {
        let e = read_text_from(&b"s.roottoken\n"[..], true, "the root token", 64).unwrap_err();
        assert!(format!("{e:#}").contains("at a terminal"), "{e:#}");
        let t = read_text_from(&b"s.roottoken\n"[..], false, "the root token", 64).unwrap();
        assert_eq!(t.trim(), "s.roottoken");
        assert!(read_text_from(&[b'x'; 65][..], false, "the root token", 64).is_err());
    }

    #[test]
    fn lines_and_json_parse() {
        let d = parse_secret("# comment\nA=1\n\nb.c = x=y\r\n", "f").expect("lines");
        assert_eq!(d.keys().collect::<Vec<_>>(), ["A", "b.c"]);
        assert_eq!(
            d.get("b.c").map(|v| v.expose().clone()),
            Some(" x=y".into())
        );
        let d = parse_secret(" {\"n\": 5, \"s\": \"v\"}", "f").expect("json");
        assert_eq!(d.get("n").map(|v| v.expose().clone()), Some(5.into()));
    }

    #[test]
    fn errors_name_the_line_never_the_value() {
        let err = format!("{:#}", parse_secret("A=1\nSECRETVALUE\n", "f").unwrap_err());
        assert!(err.contains("f:2:"), "{err}");
        assert!(!err.contains("SECRETVALUE"), "{err}");
        let err = format!("{:#}", parse_secret("A=1\nA=2\n", "f").unwrap_err());
        assert!(err.contains("given twice (first on line 1)"), "{err}");
        let err = format!(
            "{:#}",
            parse_secret("{\"a\": \"SECRET\" \"b\"}", "f").unwrap_err()
        );
        assert!(err.contains("f:1:"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        assert!(parse_secret("\n# only a comment\n", "f").is_err());
        assert!(parse_secret("{}", "f").is_err());
    }
}
