//! `warden evidence export | key | verify`: signed evidence packets (docs/registry.md).
//!
//! `export` and `key` talk to one environment; `verify` is offline (the packet and a public
//! key file, no server). A packet that does not verify exits 3 (`exit::CHECK_FAILED`); input
//! that is not a packet or not a key exits 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use warden_registry::evidence::{self, EvidenceError, ExportRequest, VerifyError};
use warden_registry::posture::rfc3339;

use crate::context::Target;
use crate::hint::{HintExt, WithCode};
use crate::output::Output;

/// Packets and key files larger than this are refused rather than read into memory.
const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Args)]
pub(crate) struct EvidenceArgs {
    #[command(subcommand)]
    command: EvidenceCommand,
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Write the signed packet of evidence component COMPONENT in one environment: contracts,
    /// posture, policies in force, who can reach each credential, rotation history. No values.
    Export(ExportArgs),
    /// Print the public key (PEM) of every version of the evidence signing key.
    Key(KeyArgs),
    /// Verify a packet offline against a public key file. Exit 0: valid; 3: changed after
    /// signing or signed by another key.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// The evidence component (a purpose's `evidence`, e.g. EV-PAYMENTS).
    component: String,
    #[command(flatten)]
    target: Target,
    /// Write the packet to FILE (an existing file is never overwritten) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct KeyArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The packet file.
    packet: PathBuf,
    /// PEM public key file (from `warden evidence key`); every key in it is tried.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

pub(crate) async fn run(args: EvidenceArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        EvidenceCommand::Export(a) => export(a, out).await,
        EvidenceCommand::Key(a) => key(a, out).await,
        EvidenceCommand::Verify(a) => verify(a, out),
    }
}

fn explain(err: EvidenceError, target: &Target) -> anyhow::Error {
    let hint: Option<String> = match &err {
        EvidenceError::UnknownComponent { .. } => Some(format!(
            "components are the `evidence` of [purposes.NAME] in {}",
            target.spec.display()
        )),
        EvidenceError::NothingInEnv { .. } => {
            Some("choose an environment where the component's purposes cover credentials".to_owned())
        }
        EvidenceError::Read { source, .. } | EvidenceError::Sign { source, .. }
            if source.is_permission_denied() =>
        {
            Some("exporting needs an operator token that may read policies, KV metadata and transit keys, and sign with warden-evidence".to_owned())
        }
        EvidenceError::Key { .. } => Some(
            "the evidence key must be an ed25519, non-exportable transit key named warden-evidence".to_owned(),
        ),
        _ => None,
    };
    let err = anyhow::Error::msg(err.to_string());
    match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    }
}

async fn export(args: ExportArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env, client) = args.target.one_env_client("evidence export")?;
    if let Some(path) = &args.out {
        crate::output::check_new_file(path, "packet")?;
    }
    let req = ExportRequest {
        spec: &resolved.spec,
        env: &env,
        component: &args.component,
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    // With --out the packet streams to a temporary file beside FILE (bounded memory at any
    // size, ADR 0014) and takes FILE's name only once signed; on stdout it is built in memory.
    let packet = match &args.out {
        Some(path) => {
            let staged = Staged::create(path)?;
            let mut w = std::io::BufWriter::with_capacity(256 * 1024, staged.file()?);
            let packet = evidence::export_to(&client, &req, &mut w)
                .await
                .map_err(|e| explain(e, &args.target))?;
            w.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("could not write the packet to {}", path.display()))?;
            staged.publish()?;
            packet
        }
        None => evidence::export(&client, &req)
            .await
            .map_err(|e| explain(e, &args.target))?,
    };
    if packet.key_created {
        out.warn(format!(
            "created the signing key {} (ed25519, not exportable) on first use; keep its public key: `warden evidence key`",
            packet.key
        ));
    }
    let summary = format!(
        "{}: evidence {} ({} purpose(s): {}) signed with {} v{} (sha256 {})",
        packet.env,
        packet.component,
        packet.purposes.len(),
        packet.purposes.join(", "),
        packet.key,
        packet.key_version,
        packet.key_sha256
    );
    match &args.out {
        Some(path) => {
            let mut report = serde_json::to_value(&packet)?;
            report["out"] = serde_json::json!(path.display().to_string());
            out.emit(&report, || {
                format!("{summary}\nwritten to {}", path.display())
            })?;
        }
        None => {
            // The packet is itself one JSON document: in JSON mode it is printed as such
            // (pretty, the same content), in text mode byte for byte as signed.
            out.progress(summary);
            let value = evidence::canonical::parse_strict(&packet.bytes)
                .context("the packet just built is not JSON")?;
            let text = String::from_utf8(packet.bytes).context("the packet is not UTF-8")?;
            out.emit(&value, || text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn key(args: KeyArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (_resolved, env, client) = args.target.one_env_client("evidence key")?;
    let name = env.name.as_str();
    let key = evidence::read_key(&client, name, &env.mounts.transit)
        .await
        .map_err(|e| explain(e, &args.target))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{name}: there is no evidence key {}/keys/{} yet",
                env.mounts.transit,
                evidence::EVIDENCE_KEY
            )
        })
        .hint("the first `warden evidence export` creates it")?;
    out.emit(&key, || {
        key.versions.iter().map(|v| v.pem.as_str()).collect()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A packet being written: a temporary file beside its destination, removed unless
/// [`Staged::publish`] gives it the destination's name (never replacing a file: a hard link
/// fails if the name exists). Nothing partial is ever left at the destination.
struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<std::fs::File>,
}

impl Staged {
    fn create(dest: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "packet".to_owned());
        let tmp = dest.with_file_name(format!(".{name}.{}.partial", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("could not create {}", tmp.display()))?;
        Ok(Self {
            tmp,
            dest: dest.to_owned(),
            file: Some(file),
        })
    }

    fn file(&self) -> anyhow::Result<std::fs::File> {
        let f = self.file.as_ref().expect("opened in create");
        Ok(f.try_clone()?)
    }

    fn publish(mut self) -> anyhow::Result<()> {
        self.file = None;
        std::fs::hard_link(&self.tmp, &self.dest)
            .with_context(|| format!("could not write the packet to {}", self.dest.display()))
            .hint("an existing file is never overwritten; choose a new path")?;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Reads `path` (the `what`: "packet", "key file") whole, through
/// [`warden_files::read_regular`]: a regular file of at most [`MAX_INPUT_BYTES`], opened without
/// blocking, the read itself stopping at the limit + 1. Checking only the size `stat` reports
/// was not enough: it is 0 for a FIFO, which then blocked on open, and for `/dev/zero`, which
/// was read without end.
fn read_limited(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = warden_files::read_regular(path, MAX_INPUT_BYTES)
        .with_context(|| format!("could not read the {what} {}", path.display()))
        .with_hint(|| regular_file_hint(what))?;
    // A packet or a public key is no secret: move it out of the zeroizing buffer, no copy.
    Ok(std::mem::take(&mut *bytes))
}

fn regular_file_hint(what: &str) -> String {
    format!(
        "pass the {what} as a regular file of at most {} MiB (a FIFO, a device or a pipe is refused)",
        MAX_INPUT_BYTES >> 20
    )
}

fn verify(args: VerifyArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let pem = read_limited(&args.key, "key file")?;
    let pem = String::from_utf8(pem)
        .map_err(|_| anyhow::anyhow!("the key file {} is not text (PEM)", args.key.display()))?;
    let keys = evidence::parse_public_keys(&pem)
        .with_context(|| format!("{} is not a usable key file", args.key.display()))
        .hint("get the public key with `warden evidence key --env ENV > evidence.pem`")?;
    // A packet as Warden writes it (canonical v2) is checked as it streams by, in bounded
    // memory at any size; anything else (v1, reformatted) is read whole, up to the limit.
    // Opened without blocking, so a FIFO at the name cannot hang `verify` on open, and read
    // only if regular (of any size: the stream is checked in bounded memory), so `/dev/zero`
    // is not streamed without end.
    let (mut file, meta) = warden_files::open_nonblocking(&args.packet)
        .with_context(|| format!("could not read the packet {}", args.packet.display()))?;
    if !meta.file_type().is_file() {
        return Err(anyhow::anyhow!(
            "the packet {} is not a regular file",
            args.packet.display()
        ))
        .hint("pass the packet file `warden evidence export --out` wrote (a FIFO, a device or a pipe is refused)");
    }
    let result = match evidence::verify_stream(&mut file, &keys) {
        Ok(evidence::Streamed::Checked(v)) => Ok(v),
        Ok(evidence::Streamed::NotCanonical) => {
            drop(file);
            let packet = read_limited(&args.packet, "packet")?;
            evidence::verify(&packet, &keys)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => {
            out.emit(&v, || {
                format!(
                    "valid: evidence {} for {} generated {}, signed with {} v{} (sha256 {}); purposes: {}",
                    v.component,
                    v.env,
                    rfc3339(v.generated_at),
                    v.key,
                    v.key_version,
                    v.key_sha256,
                    v.purposes.join(", ")
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let tamper = e.is_tamper();
            let hint = match &e {
                VerifyError::Mismatch {
                    key_known: false, ..
                } => {
                    "compare the key fingerprint with `warden evidence key`; if the key is right, do not trust this packet"
                }
                _ if tamper => "do not trust this packet; export a new one from the environment",
                _ => "pass the packet file `warden evidence export --out` wrote",
            };
            let err = anyhow::Error::msg(e.to_string())
                .context(format!("{} does not verify", args.packet.display()))
                .context(crate::hint::Hint(hint.to_owned()));
            Err(if tamper {
                err.context(WithCode(crate::exit::CHECK_FAILED))
            } else {
                err
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Runs `f` on a thread and waits at most 10 s for it, so that a regression (a read that
    /// blocks on a FIFO or never ends on a device) fails the test instead of hanging it.
    fn promptly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // After a timeout the receiver is gone and the test has already failed.
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("refused at once, not waited on")
    }

    fn fifo_in(dir: &Path) -> PathBuf {
        let fifo = dir.join("packet.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        fifo
    }

    /// Red-team regression: `read_limited` checked only the size `stat` reports, which is 0 for
    /// a FIFO (it then blocked on open) and for `/dev/zero` (read without end). Both are
    /// refused at once now, as is a regular file over the limit; a normal file is read.
    #[test]
    fn read_limited_refuses_a_fifo_dev_zero_and_an_oversized_file_at_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let fifo = fifo_in(dir.path());
        let path = fifo.clone();
        let err =
            promptly(move || read_limited(&path, "packet")).expect_err("a FIFO is not a packet");
        assert!(
            format!("{err:#}").contains(&format!("could not read the packet {}", fifo.display())),
            "{err:#}"
        );
        let hint = err.downcast_ref::<crate::hint::Hint>().expect("a hint");
        assert!(hint.0.contains("regular file"), "{}", hint.0);

        promptly(|| read_limited(Path::new("/dev/zero"), "packet"))
            .expect_err("/dev/zero is not a packet");

        // Sparse: one byte over the limit without writing 64 MiB.
        let big = dir.path().join("big.json");
        std::fs::File::create(&big)
            .and_then(|f| f.set_len(MAX_INPUT_BYTES + 1))
            .expect("sparse file");
        let err = read_limited(&big, "packet").expect_err("over the limit");
        assert!(format!("{err:#}").contains("big.json"), "{err:#}");

        let small = dir.path().join("ok.json");
        std::fs::write(&small, b"{}\n").expect("write");
        assert_eq!(
            read_limited(&small, "packet").expect("a regular file"),
            b"{}\n"
        );
    }

    /// The same hole one step earlier: `verify` opened the packet with a blocking open to
    /// stream it, so a FIFO hung it before `read_limited` was reached.
    #[test]
    fn verify_refuses_a_fifo_packet_at_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let fifo = fifo_in(dir.path());
        // An Ed25519 public key (all zeros): parsed, never used, since no packet is read.
        let key = dir.path().join("evidence.pem");
        std::fs::write(
            &key,
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n-----END PUBLIC KEY-----\n",
        )
        .expect("write key");
        let args = VerifyArgs {
            packet: fifo.clone(),
            key,
        };
        let err =
            promptly(move || verify(args, &Output::new(crate::output::Format::Text)).map(|_| ()))
                .expect_err("a FIFO is not a packet");
        assert!(
            format!("{err:#}").contains(&format!(
                "the packet {} is not a regular file",
                fifo.display()
            )),
            "{err:#}"
        );
    }
}
