//! `warden evidence export | key | verify`: signed evidence packets (docs/registry.md).
//!
//! `export` and `key` talk to one environment; `verify` is offline (the packet and a public
//! key file, no server). A packet that does not verify exits 3 (`exit::CHECK_FAILED`); input
//! that is not a packet or not a key exits 1.

use std::path::PathBuf;
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
    fn create(dest: &std::path::Path) -> anyhow::Result<Self> {
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

fn read_limited(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("could not read the {what} {}", path.display()))?;
    if meta.len() > MAX_INPUT_BYTES {
        anyhow::bail!(
            "the {what} {} is {} bytes, more than the {MAX_INPUT_BYTES} this command reads",
            path.display(),
            meta.len()
        );
    }
    std::fs::read(path).with_context(|| format!("could not read the {what} {}", path.display()))
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
    let mut file = std::fs::File::open(&args.packet)
        .with_context(|| format!("could not read the packet {}", args.packet.display()))?;
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
