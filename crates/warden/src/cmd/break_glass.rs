//! `warden break-glass`: open (a root token generated from THRESHOLD custodians' shares, traded
//! at once for a time-boxed orphan token, root revoked in the same command), close, status.
//! The work is `warden_custody::root` and `warden_registry::break_glass`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use secrecy::ExposeSecret as _;
use warden_registry::break_glass::{self, Record, Request};

use super::custody::{SharePairs, StateArgs, custody_err};
use crate::hint::HintExt;
use crate::output::{Output, check_new_file};

#[derive(Debug, Args)]
pub(crate) struct BreakGlassArgs {
    #[command(subcommand)]
    command: BreakGlassCommand,
}

#[derive(Debug, Subcommand)]
enum BreakGlassCommand {
    /// Generate a root token from THRESHOLD custodians' shares, trade it for an orphan token with
    /// --policy and a hard --ttl, revoke the root token, record who, why and until when. The
    /// token goes to --token-file (owner-only), never to the screen.
    Open(OpenArgs),
    /// Revoke the open break-glass tokens (or the one with --id) before they expire.
    Close(CloseArgs),
    /// Every break-glass record of the environment: active, closed, expired.
    Status(StateArgs),
}

#[derive(Debug, Args)]
struct OpenArgs {
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    pairs: SharePairs,
    /// Why (an incident reference); recorded and shown in posture and evidence.
    #[arg(long)]
    reason: String,
    /// How long the token lives, at most (`30m`, `2h`); it cannot be renewed.
    #[arg(long, default_value = "30m")]
    ttl: String,
    /// Policy of the token (repeat). Default: root — name a narrower one when you can.
    #[arg(long = "policy", value_name = "POLICY")]
    policies: Vec<String>,
    /// Where the token is written (a new file, owner-only).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
}

#[derive(Debug, Args)]
struct CloseArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Close only this record.
    #[arg(long)]
    id: Option<String>,
}

pub(crate) async fn run(args: BreakGlassArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        BreakGlassCommand::Open(a) => open(a, out).await,
        BreakGlassCommand::Close(a) => close(a, out).await,
        BreakGlassCommand::Status(a) => status(a, out).await,
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn open(a: OpenArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let ttl = warden_spec::parse_duration(&a.ttl)
        .map_err(|e| anyhow::anyhow!("--ttl {}: {e}", a.ttl))
        .hint("for example --ttl 30m or --ttl 2h")?;
    if a.reason.trim().is_empty() {
        return Err(anyhow::anyhow!("--reason is empty"))
            .hint("name the incident, e.g. --reason INC-123");
    }
    check_new_file(&a.token_file, "break-glass token")?;
    let p = a.state.place("break-glass open")?;
    let env = p.env.name.as_str();
    let pairs = a.pairs.load()?;
    let root = warden_custody::root::generate(&p.client, &p.state, env, &pairs)
        .await
        .map_err(custody_err)?;
    let client = p.client.clone();
    client.set_token(root.token.clone());
    let request = Request {
        env: env.to_owned(),
        reason: a.reason.clone(),
        ttl,
        policies: if a.policies.is_empty() {
            vec!["root".to_owned()]
        } else {
            a.policies.clone()
        },
        custodians: root.custodians.clone(),
    };
    if let Some(e) = &root.ledger_error {
        out.warn(format!(
            "{env}: the custody ledger could not record the custodians as verified ({e}); going on, the generated root token is revoked below"
        ));
    }
    drop(root);
    let opened = break_glass::open(&client, &request, now()).await?;
    let token = zeroize::Zeroizing::new(format!("{}\n", opened.token.expose_secret()));
    warden_files::write_atomic(
        &a.token_file,
        token.as_bytes(),
        warden_files::Mode::OwnerOnly,
    )?;
    let r = &opened.record;
    out.emit(
        &serde_json::json!({ "record": r, "token_file": a.token_file, "root_token_revoked": true }),
        || {
            format!(
                "{env}: break-glass open: {} (policies {}) until {} for {:?}\n  opened with the shares of {}\n  token accessor {} (token in {}, owner-only)\n  the generated root token ({}) was revoked",
                r.id,
                r.policies.join(","),
                r.expires_at_utc(),
                r.reason,
                r.custodians.join(", "),
                r.accessor,
                a.token_file.display(),
                r.root_accessor
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn close(a: CloseArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let p = a.state.place("break-glass close")?;
    let env = p.env.name.as_str();
    let closed = break_glass::close(&p.client, env, a.id.as_deref(), now()).await?;
    out.emit(&closed, || {
        if closed.is_empty() {
            format!("{env}: no open break-glass token")
        } else {
            closed
                .iter()
                .map(|r| format!("{env}: closed {} ({}), token revoked", r.id, r.reason))
                .collect::<Vec<_>>()
                .join("\n")
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn status(a: StateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let p = a.place("break-glass status")?;
    let env = p.env.name.as_str();
    let records = break_glass::list(&p.client, env).await?;
    let t = now();
    let rows: Vec<serde_json::Value> = records
        .iter()
        .map(|r| serde_json::json!({ "record": r, "state": r.state(t) }))
        .collect();
    out.emit(&rows, || render(env, &records, t))?;
    Ok(ExitCode::SUCCESS)
}

fn render(env: &str, records: &[Record], now: i64) -> String {
    if records.is_empty() {
        return format!("{env}: no break-glass record");
    }
    let mut s = format!(
        "{env}:\n  {:<22} {:<8} {:<22} {:<22} {:<20} {}\n",
        "ID", "STATE", "OPENED", "EXPIRES", "CUSTODIANS", "REASON"
    );
    for r in records {
        s.push_str(&format!(
            "  {:<22} {:<8} {:<22} {:<22} {:<20} {}\n",
            r.id,
            r.state(now),
            r.opened_at_utc(),
            r.expires_at_utc(),
            r.custodians.join(","),
            r.reason
        ));
    }
    s
}
