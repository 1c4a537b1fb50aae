//! What is inside a raft snapshot, checked without restoring it.
//!
//! A snapshot (`GET sys/storage/raft/snapshot`) is a gzip'd tar holding `meta.json` (the raft
//! index and term it was taken at), `state.bin` (the store) and `SHA256SUMS` (the SHA-256 of
//! each); OpenBao adds `SHA256SUMS.sealed`, the same list sealed with the barrier keyring. The
//! [`Checker`] reads the archive as it streams past, hashes every member and compares with
//! `SHA256SUMS`: a truncated or altered snapshot is refused before anything restores it.
//!
//! Why `gzip -dc` in a child process: no gzip decoder is among the vetted crates yet
//! (ADR 0011). The plaintext only ever crosses a pipe, never a file; gzip also checks its own
//! CRC-32 and length, so a truncated stream fails there first.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::JoinHandle;

use aws_lc_rs::digest;
use serde::Serialize;

/// Why a snapshot is not a sound raft snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// `gzip` could not be started.
    #[error("could not start `gzip -dc` to read the snapshot: {0}")]
    Gzip(#[source] std::io::Error),
    /// The gzip stream is truncated or corrupt.
    #[error("the snapshot is truncated or corrupt (gzip: {0})")]
    Corrupt(String),
    /// The tar inside is malformed.
    #[error("the snapshot is not a raft snapshot archive: {0}")]
    NotASnapshot(String),
    /// A member's SHA-256 differs from `SHA256SUMS`.
    #[error("the snapshot's {file} does not match its SHA256SUMS (the snapshot was altered)")]
    Checksum {
        /// The member.
        file: String,
    },
}

/// What a sound snapshot says about itself.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The raft index it was taken at (`meta.json`).
    pub index: u64,
    /// The raft term.
    pub term: u64,
    /// Bytes of `state.bin`.
    pub state_bytes: u64,
    /// Every member, in archive order.
    pub files: Vec<String>,
}

/// Reads a snapshot written into it piece by piece; [`Checker::finish`] says whether it holds.
pub struct Checker {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<JoinHandle<Result<SnapshotInfo, ArchiveError>>>,
    broken: bool,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").finish_non_exhaustive()
    }
}

impl Checker {
    /// Starts the decoder.
    pub fn start() -> Result<Self, ArchiveError> {
        let mut child = Command::new("gzip")
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(ArchiveError::Gzip)?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || read_tar(stdout));
        Ok(Self {
            child,
            stdin,
            reader: Some(reader),
            broken: false,
        })
    }

    /// Feeds the next bytes. A decoder that stopped early (corrupt input) is not an error
    /// here: [`Checker::finish`] reports why.
    pub fn write(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        if let Some(stdin) = self.stdin.as_mut()
            && stdin.write_all(bytes).is_err()
        {
            self.broken = true;
        }
    }

    /// Ends the input and waits for the verdict.
    pub fn finish(mut self) -> Result<SnapshotInfo, ArchiveError> {
        drop(self.stdin.take());
        let parsed = self
            .reader
            .take()
            .expect("reader runs until finish")
            .join()
            .unwrap_or_else(|_| Err(ArchiveError::NotASnapshot("the reader panicked".into())));
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = self.child.wait().map_err(ArchiveError::Gzip)?;
        if !status.success() {
            let msg = err.trim().trim_start_matches("gzip: stdin: ").to_owned();
            return Err(ArchiveError::Corrupt(if msg.is_empty() {
                format!("exit {status}")
            } else {
                msg
            }));
        }
        parsed
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Checks a whole snapshot from `input`.
pub fn check(mut input: impl Read) -> Result<SnapshotInfo, ArchiveError> {
    let mut c = Checker::start()?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        if n == 0 {
            break;
        }
        c.write(&buf[..n]);
    }
    zeroize::Zeroize::zeroize(&mut buf);
    c.finish()
}

/// Small members kept whole (`meta.json`, `SHA256SUMS`); others are only hashed.
const KEEP_LIMIT: u64 = 1024 * 1024;

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let t = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if t.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(t, 8).ok()
}

fn read_tar(mut r: impl Read) -> Result<SnapshotInfo, ArchiveError> {
    let bad = |m: &str| ArchiveError::NotASnapshot(m.to_owned());
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut kept: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut info = SnapshotInfo::default();
    let mut header = [0u8; 512];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if r.read_exact(&mut header).is_err() {
            // Drain so gzip is not killed by a closed pipe before it reports its own error.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
            return Err(bad("it ends in the middle of a member"));
        }
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]).into_owned();
        let size =
            octal(&header[124..136]).ok_or_else(|| bad("a member's size is not a number"))?;
        let kind = header[156];
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut left = size;
        let mut whole = Vec::new();
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            if r.read_exact(&mut buf[..n]).is_err() {
                let _ = std::io::copy(&mut r, &mut std::io::sink());
                return Err(bad("it ends in the middle of a member"));
            }
            ctx.update(&buf[..n]);
            if size <= KEEP_LIMIT {
                whole.extend_from_slice(&buf[..n]);
            }
            left -= n as u64;
        }
        let pad = (512 - (size % 512)) % 512;
        if pad > 0 {
            let mut p = [0u8; 512];
            let pad = usize::try_from(pad).unwrap_or(0);
            r.read_exact(&mut p[..pad])
                .map_err(|_| bad("it ends in the middle of a member"))?;
        }
        if kind == b'0' || kind == 0 {
            if name == "state.bin" {
                info.state_bytes = size;
            }
            hashes.insert(name.clone(), hex::encode(ctx.finish().as_ref()));
            if name == "meta.json" || name == "SHA256SUMS" {
                kept.insert(name.clone(), whole);
            }
            info.files.push(name);
        }
    }
    let _ = std::io::copy(&mut r, &mut std::io::sink());
    let sums = kept
        .get("SHA256SUMS")
        .ok_or_else(|| bad("it has no SHA256SUMS"))?;
    let sums = std::str::from_utf8(sums).map_err(|_| bad("SHA256SUMS is not text"))?;
    let mut listed = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (want, file) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("a SHA256SUMS line is not `<sha256>  <file>`"))?;
        let file = file.trim();
        let got = hashes.get(file).ok_or_else(|| {
            bad(&format!(
                "SHA256SUMS lists {file}, which is not in the archive"
            ))
        })?;
        if !got.eq_ignore_ascii_case(want.trim()) {
            return Err(ArchiveError::Checksum {
                file: file.to_owned(),
            });
        }
        listed += 1;
    }
    for must in ["meta.json", "state.bin"] {
        if !sums.lines().any(|l| l.trim_end().ends_with(must)) {
            return Err(bad(&format!("SHA256SUMS does not cover {must}")));
        }
    }
    if listed == 0 {
        return Err(bad("SHA256SUMS is empty"));
    }
    let meta: serde_json::Value = serde_json::from_slice(
        kept.get("meta.json")
            .ok_or_else(|| bad("it has no meta.json"))?,
    )
    .map_err(|_| bad("meta.json is not JSON"))?;
    info.index = meta
        .get("Index")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    info.term = meta
        .get("Term")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(b: &[u8]) -> String {
        hex::encode(digest::digest(&digest::SHA256, b).as_ref())
    }

    fn member(out: &mut Vec<u8>, name: &str, body: &[u8]) {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000600");
        let size = format!("{:011o}", body.len());
        h[124..135].copy_from_slice(size.as_bytes());
        h[156] = b'0';
        out.extend_from_slice(&h);
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    /// A raft-snapshot-shaped archive, gzip'd by the same `gzip` the checker uses.
    fn snapshot(state: &[u8], sums_state: Option<&str>) -> Vec<u8> {
        let meta = br#"{"Version":1,"ID":"2-341-1","Index":341,"Term":2,"Size":12}"#;
        let sums = format!(
            "{}  meta.json\n{}  state.bin\n",
            sha(meta),
            sums_state.map_or_else(|| sha(state), str::to_owned)
        );
        let mut tar = Vec::new();
        member(&mut tar, "meta.json", meta);
        member(&mut tar, "state.bin", state);
        member(&mut tar, "SHA256SUMS", sums.as_bytes());
        tar.extend_from_slice(&[0u8; 1024]);
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || stdin.write_all(&tar));
        let out = child.wait_with_output().expect("gzip output");
        writer.join().expect("join").expect("write");
        out.stdout
    }

    #[test]
    fn a_sound_snapshot_gives_its_index_and_members() {
        let info = check(&snapshot(b"state bytes!", None)[..]).expect("sound");
        assert_eq!(info.index, 341);
        assert_eq!(info.term, 2);
        assert_eq!(info.state_bytes, 12);
        assert_eq!(info.files, ["meta.json", "state.bin", "SHA256SUMS"]);
    }

    #[test]
    fn an_altered_member_is_named() {
        let e = check(&snapshot(b"state bytes!", Some(&"0".repeat(64)))[..]).expect_err("altered");
        assert!(
            matches!(e, ArchiveError::Checksum { ref file } if file == "state.bin"),
            "{e}"
        );
    }

    #[test]
    fn a_truncated_snapshot_is_refused() {
        let full = snapshot(&[7u8; 100_000], None);
        for cut in [full.len() - 1, full.len() / 2, 20] {
            let e = check(&full[..cut]).expect_err("truncated");
            assert!(
                matches!(e, ArchiveError::Corrupt(_) | ArchiveError::NotASnapshot(_)),
                "cut at {cut}: {e}"
            );
        }
    }

    #[test]
    fn not_gzip_is_refused() {
        let e = check(&b"age-encryption.org/v1\n-> X25519 ..."[..]).expect_err("not gzip");
        assert!(matches!(e, ArchiveError::Corrupt(_)), "{e}");
        assert!(e.to_string().contains("truncated or corrupt"), "{e}");
    }
}
