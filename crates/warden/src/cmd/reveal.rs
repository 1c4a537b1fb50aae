//! `warden reveal create | open | list`: reveal-once credentials (docs/registry.md).
//!
//! The work is `warden_registry::reveal`; this module decides where the wrapping token and the
//! value go, and says what to do next when something is refused.
//!
//! Where secrets go, and why:
//! - `create` hands out the *wrapping token* (whoever holds it can open the credential once):
//!   to `--out FILE` (0600, never overwriting), or to stdout when stdout is not a terminal
//!   (a pipe or a redirect) or with an explicit `--stdout`. It refuses a terminal without
//!   `--stdout`, before anything is minted: scrollback and screen sharing outlive the token's
//!   purpose.
//! - `open` reads the token from `--token-file FILE` or stdin (a hidden prompt on a terminal),
//!   never argv, and writes the value to `--out FILE` (0600, never overwriting, checked
//!   *before* the single use is spent) or stdout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;
use warden_registry::posture::rfc3339;
use warden_registry::reveal::{self, CreateRequest, Listing, RevealError};
use zeroize::Zeroizing;

use crate::context::Target;
use crate::hint::{HintExt, WithCode};
use crate::output::Output;

// Exit code of `reveal open` when the token was already used or has expired, so scripts can
// tell "someone opened it first" from any other failure.
use crate::exit::REVEAL_SPENT;

#[derive(Debug, Args)]
pub(crate) struct RevealArgs {
    #[command(subcommand)]
    command: RevealCommand,
}

#[derive(Debug, Subcommand)]
enum RevealCommand {
    /// Mint a reveal-once credential of PURPOSE behind a single-use wrapping token, record its
    /// metadata (never the value) and hand out the token.
    Create(CreateArgs),
    /// Open a reveal token: prints the credential, exactly once.
    Open(OpenArgs),
    /// A purpose's reveals: metadata only (purpose, expiry, state, rotation due, evidence).
    List(ListArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The purpose (its delivery must be `reveal_once`).
    purpose: String,
    #[command(flatten)]
    target: Target,
    /// The identity whose credential to mint, when the purpose covers several.
    #[arg(long, value_name = "NAME")]
    identity: Option<String>,
    /// The credential reference to mint (e.g. `worker/secret-id`).
    #[arg(long, value_name = "ID")]
    credential: Option<String>,
    /// How long the token can be opened (e.g. 10m, 1h; at most 24h).
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    ttl: String,
    /// Write the token to FILE (0600; an existing file is never overwritten).
    #[arg(long, value_name = "FILE", conflicts_with = "stdout")]
    out: Option<PathBuf>,
    /// Print the token on stdout even when stdout is a terminal.
    #[arg(long)]
    stdout: bool,
}

#[derive(Debug, Args)]
struct OpenArgs {
    #[command(flatten)]
    target: Target,
    /// Read the token from FILE (`-`: stdin). Default: stdin, or a hidden prompt on a terminal.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Write the value to FILE (0600; an existing file is never overwritten) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Open it as a container host or CI runner: present the transport certificate in DIR
    /// (`warden transport issue`) and no operator credential.
    #[arg(long, value_name = "DIR", env = "WARDEN_TRANSPORT_DIR")]
    transport: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// The purpose.
    purpose: String,
    #[command(flatten)]
    target: Target,
}

pub(crate) async fn run(args: RevealArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        RevealCommand::Create(a) => create(a, out).await,
        RevealCommand::Open(a) => open(a, out).await,
        RevealCommand::List(a) => list(a, out).await,
    }
}

fn explain(err: RevealError, target: &Target, purpose: &str) -> anyhow::Error {
    let lab = target
        .lab
        .as_ref()
        .map(|d| format!(" --lab {}", d.display()))
        .unwrap_or_default();
    let env = target.envs.first().map_or("ENV", String::as_str);
    let hint: Option<String> = match &err {
        RevealError::UnknownPurpose { .. } | RevealError::NotRevealOnce { .. } => Some(format!(
            "reveal-once purposes have `delivery = \"reveal_once\"` under [purposes.NAME] in {}",
            target.spec.display()
        )),
        RevealError::Ambiguous { candidates, .. } => Some(format!(
            "add --identity NAME or --credential ID (one of: {})",
            candidates.join(", ")
        )),
        RevealError::NoSuchCredential { .. } | RevealError::NothingInEnv { .. } => Some(
            "check the purpose's `covers` and the identity's environments in the spec".to_owned(),
        ),
        RevealError::Refused { .. } => Some(format!(
            "a revoked purpose issues nothing; un-revoke `{purpose}` in the spec (and apply) if it should"
        )),
        RevealError::Ttl { .. } => Some("use e.g. --ttl 10m; a reveal token is meant to be short-lived".to_owned()),
        RevealError::Mint { source, .. } if source.is_not_found() || source.status() == Some(400) => Some(format!(
            "is the environment provisioned? run `warden apply --spec {}{lab} --env {env}`",
            target.spec.display()
        )),
        RevealError::Mint { source, .. } | RevealError::Record { source, .. } | RevealError::Read { source, .. }
            if source.is_permission_denied() =>
        {
            Some("the operator token may not do this; use a token with the operator's policy".to_owned())
        }
        // OpenBao answers a used, expired, revoked and never-issued (mistyped) wrapping token
        // the same way ("wrapping token is not valid or does not exist"), so the hint names
        // both causes rather than guessing one.
        RevealError::Spent => Some(
            "it was opened already (if not by you, tell the owner, who can revoke the credential), or the token is mistyped: check it against the one you were given; ask the owner for a new one".to_owned(),
        ),
        RevealError::NotAReveal { .. } => Some(
            "only tokens from `warden reveal create` are opened here; the token was left unused".to_owned(),
        ),
        _ => None,
    };
    let spent = err.is_spent();
    let err = anyhow::Error::msg(err.to_string());
    let err = match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    };
    if spent {
        err.context(WithCode(REVEAL_SPENT))
    } else {
        err
    }
}

async fn create(args: CreateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env, client) = args.target.one_env_client("reveal create")?;
    let ttl = warden_spec::Ttl::parse(&args.ttl)
        .map_err(|e| anyhow::anyhow!("--ttl {}: {e}", args.ttl))
        .hint("use e.g. --ttl 10m")?;
    let req = CreateRequest {
        spec: &resolved.spec,
        env: &env,
        purpose: &args.purpose,
        identity: args.identity.as_deref(),
        credential: args.credential.as_deref(),
        ttl: ttl.0,
        now: OffsetDateTime::now_utc().unix_timestamp(),
    };
    // Everything that can be refused is refused before anything is minted.
    reveal::prepare(&req).map_err(|e| explain(e, &args.target, &args.purpose))?;
    match &args.out {
        Some(path) => crate::output::check_new_file(path, "token")?,
        None if !args.stdout && std::io::stdout().is_terminal() => {
            return Err(anyhow::anyhow!(
                "refusing to print a reveal token on a terminal: whoever sees it can open the credential"
            ))
            .hint("write it to a file with --out FILE (0600), pipe it, or pass --stdout if you really mean it");
        }
        None => {}
    }
    let created = reveal::create(&client, &req)
        .await
        .map_err(|e| explain(e, &args.target, &args.purpose))?;
    let r = &created.record;
    let mut report = json!({
        "purpose": r.purpose,
        "credential": r.credential,
        "identity": r.identity,
        "env": r.env,
        "kind": r.kind.as_str(),
        "accessor": r.accessor,
        "creation_path": r.creation_path,
        "created_at": rfc3339(r.created_at),
        "expires_at": rfc3339(r.expires_at),
        "created_by": r.created_by,
        "verifier_sha256": r.verifier_sha256,
        "record": r.kv_data_path(),
    });
    let summary = format!(
        "{}: minted {} for purpose {} ({}); the token opens once, until {}; record {}",
        r.env,
        r.credential,
        r.purpose,
        r.kind.as_str(),
        rfc3339(r.expires_at),
        r.kv_data_path()
    );
    if let Some(path) = &args.out {
        let mut body = Zeroizing::new(created.token.expose_secret().as_bytes().to_vec());
        body.push(b'\n');
        if let Err(e) = warden_files::write_atomic(path, &body, warden_files::Mode::OwnerOnly) {
            let revoked = reveal::revoke(&client, &r.accessor).await.is_ok();
            return Err(anyhow::Error::new(e).context(format!(
                "could not write the token to {}; the token was {}",
                path.display(),
                if revoked {
                    "revoked"
                } else {
                    "not handed out (it expires on its own)"
                }
            )))
            .hint("fix the path and run `warden reveal create` again");
        }
        report["token_file"] = json!(path.display().to_string());
        out.emit(&report, || {
            format!("{summary}\ntoken written to {} (0600)", path.display())
        })?;
    } else {
        out.progress(summary);
        report["token"] = json!(created.token.expose_secret());
        out.emit(&report, || created.token.expose_secret().to_owned())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The token, from a file, stdin, or a hidden prompt. Never argv.
fn read_token(args: &OpenArgs, out: &Output) -> anyhow::Result<SecretString> {
    let raw: Zeroizing<String> = match &args.token_file {
        Some(p) if p.as_os_str() != "-" => {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(p)
                .with_context(|| format!("could not read the token file {}", p.display()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                out.warn(format!(
                    "{} can be read by other users (mode {:o}); a reveal token file should be 0600",
                    p.display(),
                    meta.permissions().mode() & 0o777
                ));
            }
            crate::input::read_named_text(p, "the token file", crate::input::SECRET_FILE_LIMIT)?
        }
        _ if std::io::stdin().is_terminal() => Zeroizing::new(
            rpassword::prompt_password("reveal token: ")
                .context("could not read the token from the terminal")
                .hint("pass --token-file FILE")?,
        ),
        _ => {
            use std::io::Read;
            let mut s = Zeroizing::new(String::new());
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut s)
                .context("could not read the token from stdin")?;
            s
        }
    };
    let token = raw.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(anyhow::anyhow!("no reveal token was given"))
            .hint("pass --token-file FILE, or the token on stdin");
    }
    Ok(SecretString::from(token.to_owned()))
}

async fn open(args: OpenArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let client = match &args.transport {
        Some(dir) => {
            let resolved = args.target.resolve()?;
            let env = resolved
                .one_env("reveal open", crate::context::OneEnv::NamedOrOnly)?
                .clone();
            resolved.workload_client(&env, Some(dir))?
        }
        None => args.target.one_env_client("reveal open")?.2,
    };
    // Checked before the single use is spent: a value that cannot be written is lost.
    if let Some(path) = &args.out {
        crate::output::check_new_file(path, "value")?;
    }
    let token = read_token(&args, out)?;
    let opened = reveal::open(&client, &token)
        .await
        .map_err(|e| explain(e, &args.target, ""))?;
    let mut report = json!({
        "kind": opened.kind.as_str(),
        "credential": opened.credential,
        "purpose": opened.purpose,
        "creation_path": opened.creation_path,
        "created_at": opened.creation_time,
        "secret_id_accessor": opened.secret_id_accessor,
        "secret_id_ttl": opened.secret_id_ttl,
        "verifier_sha256": opened.verifier_sha256,
    });
    let what = opened
        .credential
        .clone()
        .unwrap_or_else(|| opened.kind.as_str().to_owned());
    if let Some(path) = &args.out {
        let body = Zeroizing::new(opened.value.expose_secret().as_bytes().to_vec());
        warden_files::write_atomic(path, &body, warden_files::Mode::OwnerOnly)
            .with_context(|| format!("the {what} was opened but could not be written to {}: it is lost", path.display()))
            .hint("ask the owner for a new one (`warden reveal create`); an opened token cannot be opened again")?;
        report["out"] = json!(path.display().to_string());
        out.emit(&report, || {
            format!(
                "{what} opened and written to {} (0600); the token is now spent",
                path.display()
            )
        })?;
    } else {
        out.progress(format!(
            "{what} opened; the token is now spent, this is the only time it is shown"
        ));
        report["value"] = json!(opened.value.expose_secret());
        out.emit(&report, || opened.value.expose_secret().to_owned())?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env, client) = args.target.one_env_client("reveal list")?;
    let listing = reveal::list(
        &client,
        &resolved.spec,
        env.name.as_str(),
        &args.purpose,
        OffsetDateTime::now_utc().unix_timestamp(),
    )
    .await
    .map_err(|e| explain(e, &args.target, &args.purpose))?;
    out.emit(&listing, || render_list(&listing))?;
    Ok(ExitCode::SUCCESS)
}

fn render_list(l: &Listing) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "purpose {} in {} — owner {}, evidence {}{}",
        l.purpose,
        l.env,
        l.owner,
        l.evidence,
        if l.revoked { ", REVOKED" } else { "" }
    );
    let opt = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), rfc3339);
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(vec![
        "CREDENTIAL",
        "STATUS",
        "LAST MINTED",
        "ROTATION DUE",
        "WHY",
    ]);
    for c in &l.credentials {
        t.add_row(vec![
            c.credential.clone(),
            c.status.to_string(),
            opt(c.last_minted_at),
            opt(c.rotation_due_at),
            c.reason.clone(),
        ]);
    }
    let _ = writeln!(s, "{t}");
    if l.reveals.is_empty() {
        let _ = writeln!(s, "no reveals recorded");
    } else {
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::NOTHING);
        t.set_header(vec![
            "CREATED",
            "EXPIRES",
            "STATE",
            "CREDENTIAL",
            "BY",
            "ACCESSOR",
        ]);
        for r in &l.reveals {
            t.add_row(vec![
                rfc3339(r.record.created_at),
                rfc3339(r.record.expires_at),
                r.state.as_str().to_owned(),
                r.record.credential.clone(),
                r.record.created_by.clone(),
                r.record.accessor.clone(),
            ]);
        }
        let _ = writeln!(s, "{t}");
    }
    if !l.unreadable.is_empty() {
        let _ = writeln!(s, "unreadable records: {}", l.unreadable.join(", "));
    }
    s
}
