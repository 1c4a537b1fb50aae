//! `warden transit encrypt | decrypt | sign | verify | rotate | info APP KEY`: encryption and
//! signing as a service with the app's transit keys (`<app>-<key>` in the environment's
//! transit mount). Keys never leave OpenBao: nothing here exports one, and `info` shows only
//! versions and settings (and fails the check if a key has become exportable).
//!
//! Data comes from `--in FILE` or stdin, never argv. Ciphertexts and signatures are printed
//! as transit writes them (`vault:v<N>:…`); a decrypted plaintext is printed as base64, or
//! written raw to an owner-only file with `--out`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use warden_bao::{Ciphertext, KeyInfo, Signature, TransitError};
use warden_spec::{IdentityKind, TransitKey};

use crate::hint::HintExt;
use crate::input::read_bytes;
use crate::output::Output;
use crate::session::{Access, Session};

#[derive(Debug, Args)]
pub(crate) struct TransitArgs {
    #[command(subcommand)]
    command: TransitCommand,
}

#[derive(Debug, Subcommand)]
enum TransitCommand {
    /// Encrypt data from --in FILE or stdin; prints the ciphertext.
    Encrypt(DataArgs),
    /// Decrypt a ciphertext from --in FILE or stdin; prints the plaintext as base64, or
    /// writes it to --out FILE (0600).
    Decrypt(DecryptArgs),
    /// Sign data from --in FILE or stdin; prints the signature.
    Sign(DataArgs),
    /// Check a signature of data from --in FILE or stdin. Exits 3 when it does not verify.
    Verify(VerifyArgs),
    /// Add a key version (new data uses it); optionally retire versions below N.
    Rotate(RotateArgs),
    /// The key's versions and settings. Never key material. Exits 3 if the key can be
    /// exported or backed up in plaintext.
    Info(KeyArgs),
}

/// APP, KEY and where to act.
#[derive(Debug, Args)]
struct KeyArgs {
    /// The app that owns the key.
    app: String,
    /// The key's short name as declared in the spec (`[[apps.<app>.transit_keys]]`).
    key: String,
    #[command(flatten)]
    access: Access,
}

#[derive(Debug, Args)]
struct DataArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// Read the data from FILE instead of stdin.
    #[arg(long = "in", value_name = "FILE")]
    input: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DecryptArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Write the plaintext, raw, to FILE (mode 0600) instead of printing it as base64.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The signature (`vault:v<N>:…`; signatures are not secret).
    #[arg(long, value_name = "SIG", required_unless_present = "signature_file")]
    signature: Option<String>,
    /// Read the signature from FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "signature")]
    signature_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RotateArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// After rotating, refuse ciphertexts and signatures of versions below N.
    #[arg(long, value_name = "N")]
    min_decryption_version: Option<u64>,
}

pub(crate) async fn run(args: TransitArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        TransitCommand::Encrypt(a) => encrypt(a, out).await,
        TransitCommand::Decrypt(a) => decrypt(a, out).await,
        TransitCommand::Sign(a) => sign(a, out).await,
        TransitCommand::Verify(a) => verify(a, out).await,
        TransitCommand::Rotate(a) => rotate(a, out).await,
        TransitCommand::Info(a) => info(a, out).await,
    }
}

/// The key a command acts on, resolved from the spec.
#[derive(Debug, Serialize)]
struct KeyRef {
    env: String,
    app: String,
    key: String,
    mount: String,
    /// Its name in the mount: `<app>-<key>`.
    key_name: String,
    key_type: &'static str,
}

/// What an operation needs the key to do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    Encryption,
    Signing,
    Anything,
}

fn open(
    args: &KeyArgs,
    needs: Needs,
    command: &str,
    out: &Output,
) -> anyhow::Result<(Session, KeyRef)> {
    let session = args.access.open(command, out)?;
    let id = session.owner(&args.app, &[IdentityKind::App])?;
    let declared: Vec<&TransitKey> = id.transit_keys.iter().collect();
    let Some(key) = declared.iter().find(|k| k.name.as_str() == args.key) else {
        let names: Vec<&str> = declared.iter().map(|k| k.name.as_str()).collect();
        let err = anyhow::anyhow!("app `{}` declares no transit key `{}`", args.app, args.key);
        return match warden_spec::suggest(&args.key, names.iter().copied()) {
            Some(s) => Err(err).with_hint(|| format!("did you mean `{s}`?")),
            None if names.is_empty() => Err(err).with_hint(|| {
                format!(
                    "declare it in the spec ([[apps.{}.transit_keys]] name = \"{}\") and run `warden apply`",
                    args.app, args.key
                )
            }),
            None => Err(err).with_hint(|| format!("it declares: {}", names.join(", "))),
        };
    };
    let signs = key.key_type.signs();
    let wrong = match needs {
        Needs::Encryption if signs => Some("signs; it cannot encrypt or decrypt"),
        Needs::Signing if !signs => Some("encrypts; it cannot sign or verify"),
        _ => None,
    };
    if let Some(why) = wrong {
        return Err(anyhow::anyhow!(
            "transit key `{}` of `{}` is {} and {why}",
            args.key,
            args.app,
            key.key_type.as_str()
        ))
        .hint("use the app's other key for this, or declare one of the right type");
    }
    let key_ref = KeyRef {
        env: session.env_name().to_owned(),
        app: args.app.clone(),
        key: args.key.clone(),
        mount: session.env.mounts.transit.clone(),
        key_name: key.key_name(&id.name),
        key_type: key.key_type.as_str(),
    };
    Ok((session, key_ref))
}

/// Wraps a transit error with what to do next.
fn explain(err: TransitError, k: &KeyRef) -> anyhow::Error {
    let hint = match &err {
        TransitError::KeyNotFound { .. } => Some(format!(
            "`warden apply` creates the app's transit keys; has it run against `{}`?",
            k.env
        )),
        TransitError::VersionRetired { .. } => Some(format!(
            "`warden transit info {} {}` shows the key's min_decryption_version; data must be rewrapped before old versions are retired",
            k.app, k.key
        )),
        TransitError::InvalidCiphertext { .. } => Some(
            "pass the ciphertext exactly as `warden transit encrypt` printed it (vault:v<N>:…), for the same key"
                .to_owned(),
        ),
        e if e.is_permission_denied() => Some(format!(
            "this token's policies do not allow that with {}/{}",
            k.mount, k.key_name
        )),
        _ => None,
    };
    // OpenBao's own text for a denial is a multi-line "1 error occurred: * permission
    // denied"; the key and the hint say it better.
    let message = if err.is_permission_denied() {
        format!("{}/{}: permission denied", k.mount, k.key_name)
    } else {
        err.to_string()
    };
    let err = anyhow::Error::msg(message);
    match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    }
}

#[derive(Debug, Serialize)]
struct CiphertextReport<'a> {
    #[serde(flatten)]
    key: &'a KeyRef,
    #[serde(flatten)]
    ciphertext: &'a Ciphertext,
}

async fn encrypt(args: DataArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let data = read_bytes(args.input.as_deref(), "the data to encrypt")?;
    let (session, k) = open(&args.key, Needs::Encryption, "transit encrypt", out)?;
    let c = session
        .client
        .transit(&k.mount)
        .encrypt(&k.key_name, &data)
        .await
        .map_err(|e| explain(e, &k))?;
    let report = CiphertextReport {
        key: &k,
        ciphertext: &c,
    };
    out.emit(&report, || c.ciphertext.clone())?;
    Ok(ExitCode::SUCCESS)
}

async fn decrypt(args: DecryptArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let ciphertext = read_text(args.data.input.as_deref(), "the ciphertext")?;
    let (session, k) = open(&args.data.key, Needs::Encryption, "transit decrypt", out)?;
    let plain = session
        .client
        .transit(&k.mount)
        .decrypt(&k.key_name, &ciphertext)
        .await
        .map_err(|e| explain(e, &k))?;
    #[derive(Serialize)]
    struct Report<'a> {
        #[serde(flatten)]
        key: &'a KeyRef,
        key_version: Option<u64>,
        bytes: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        written_to: Option<&'a Path>,
        #[serde(skip_serializing_if = "Option::is_none")]
        plaintext_base64: Option<&'a str>,
    }
    let encoded;
    let report = match &args.out {
        Some(path) => {
            warden_files::write_atomic(path, plain.as_bytes(), warden_files::Mode::OwnerOnly)
                .with_context(|| format!("could not write the plaintext to {}", path.display()))?;
            Report {
                key: &k,
                key_version: warden_bao::input_version(&ciphertext),
                bytes: plain.len(),
                written_to: Some(path),
                plaintext_base64: None,
            }
        }
        None => {
            encoded = plain.to_base64();
            Report {
                key: &k,
                key_version: warden_bao::input_version(&ciphertext),
                bytes: plain.len(),
                written_to: None,
                plaintext_base64: Some(encoded.as_str()),
            }
        }
    };
    out.emit(&report, || {
        match (report.written_to, report.plaintext_base64) {
            (Some(p), _) => format!("{} bytes written to {} (0600)", report.bytes, p.display()),
            (None, Some(b)) => b.to_owned(),
            (None, None) => String::new(),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct SignatureReport<'a> {
    #[serde(flatten)]
    key: &'a KeyRef,
    #[serde(flatten)]
    signature: &'a Signature,
}

async fn sign(args: DataArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let data = read_bytes(args.input.as_deref(), "the data to sign")?;
    let (session, k) = open(&args.key, Needs::Signing, "transit sign", out)?;
    let sig = session
        .client
        .transit(&k.mount)
        .sign(&k.key_name, &data)
        .await
        .map_err(|e| explain(e, &k))?;
    let report = SignatureReport {
        key: &k,
        signature: &sig,
    };
    out.emit(&report, || sig.signature.clone())?;
    Ok(ExitCode::SUCCESS)
}

async fn verify(args: VerifyArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let signature = match (&args.signature, &args.signature_file) {
        (Some(s), _) => s.trim().to_owned(),
        (None, Some(f)) => {
            crate::input::read_named_text(f, "the signature file", crate::input::TEXT_FILE_LIMIT)?
                .trim()
                .to_owned()
        }
        (None, None) => anyhow::bail!("no signature given (--signature or --signature-file)"),
    };
    let data = read_bytes(args.data.input.as_deref(), "the signed data")?;
    let (session, k) = open(&args.data.key, Needs::Signing, "transit verify", out)?;
    let valid = session
        .client
        .transit(&k.mount)
        .verify(&k.key_name, &data, &signature)
        .await
        .map_err(|e| explain(e, &k))?;
    #[derive(Serialize)]
    struct Report<'a> {
        #[serde(flatten)]
        key: &'a KeyRef,
        valid: bool,
        signature_version: Option<u64>,
    }
    let report = Report {
        key: &k,
        valid,
        signature_version: warden_bao::input_version(&signature),
    };
    out.emit(&report, || {
        if valid {
            format!("valid: the signature verifies with {}", k.key_name)
        } else {
            format!(
                "INVALID: the signature does not match this data under {}",
                k.key_name
            )
        }
    })?;
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::CHECK_FAILED)
    })
}

async fn rotate(args: RotateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (session, k) = open(&args.key, Needs::Anything, "transit rotate", out)?;
    let transit = session.client.transit(&k.mount);
    // A pipeline may rotate its app's keys without reading them: what was before is then
    // taken from what the rotation answers.
    let before = transit.key_info(&k.key_name).await.ok();
    let mut after = transit
        .rotate(&k.key_name)
        .await
        .map_err(|e| explain(e, &k))?;
    if let Some(min) = args.min_decryption_version {
        if min > after.latest_version {
            return Err(anyhow::anyhow!(
                "--min-decryption-version {min} is above the key's latest version {} (the rotation to v{} is done)",
                after.latest_version,
                after.latest_version
            ))
            .hint("name a version between 1 and the latest");
        }
        after = transit
            .set_min_decryption_version(&k.key_name, min)
            .await
            .map_err(|e| explain(e, &k))?;
        if before
            .as_ref()
            .is_none_or(|b| min > b.min_decryption_version)
        {
            out.warn(format!(
                "ciphertexts and signatures of versions below {min} are refused from now on"
            ));
        }
    }
    #[derive(Serialize)]
    struct Report<'a> {
        #[serde(flatten)]
        key: &'a KeyRef,
        previous_version: u64,
        latest_version: u64,
        min_decryption_version: u64,
    }
    let report = Report {
        key: &k,
        previous_version: before
            .map_or(after.latest_version.saturating_sub(1), |b| b.latest_version),
        latest_version: after.latest_version,
        min_decryption_version: after.min_decryption_version,
    };
    out.emit(&report, || {
        format!(
            "{}: {}/{}: rotated from v{} to v{}; versions below {} are refused",
            k.env,
            k.mount,
            k.key_name,
            report.previous_version,
            report.latest_version,
            report.min_decryption_version
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn info(args: KeyArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (session, k) = open(&args, Needs::Anything, "transit info", out)?;
    let info = session
        .client
        .transit(&k.mount)
        .key_info(&k.key_name)
        .await
        .map_err(|e| explain(e, &k))?;
    let leaks = info.exportable || info.allow_plaintext_backup;
    if leaks {
        out.warn(format!(
            "{}/{} can leave OpenBao (exportable: {}, allow_plaintext_backup: {}); both are one-way settings: replace the key",
            k.mount, k.key_name, info.exportable, info.allow_plaintext_backup
        ));
    }
    #[derive(Serialize)]
    struct Report<'a> {
        #[serde(flatten)]
        key: &'a KeyRef,
        info: &'a KeyInfo,
    }
    let report = Report {
        key: &k,
        info: &info,
    };
    out.emit(&report, || render_info(&k, &info))?;
    Ok(if leaks {
        ExitCode::from(crate::exit::CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn render_info(k: &KeyRef, i: &KeyInfo) -> String {
    let mut s = format!("{}: {}/{} ({})\n", k.env, k.mount, k.key_name, i.key_type);
    let rows = [
        ("latest version", i.latest_version.to_string()),
        (
            "min decryption",
            format!(
                "{} (ciphertexts and signatures of older versions are refused)",
                i.min_decryption_version
            ),
        ),
        ("exportable", i.exportable.to_string()),
        ("plaintext backup", i.allow_plaintext_backup.to_string()),
        ("deletion allowed", i.deletion_allowed.to_string()),
    ];
    for (name, value) in rows {
        s.push_str(&format!("  {name:<17} {value}\n"));
    }
    let versions: Vec<String> = i.versions.keys().map(|v| format!("v{v}")).collect();
    s.push_str(&format!(
        "  {:<17} {}\n",
        "versions kept",
        versions.join(" ")
    ));
    s
}

/// Reads a ciphertext: text, trimmed.
fn read_text(file: Option<&Path>, what: &str) -> anyhow::Result<String> {
    let bytes = read_bytes(file, what)?;
    let text = std::str::from_utf8(&bytes)
        .ok()
        .with_context(|| format!("{what} is not text"))
        .hint("pass the ciphertext exactly as `warden transit encrypt` printed it")?;
    Ok(text.trim().to_owned())
}
