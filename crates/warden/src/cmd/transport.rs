//! `warden transport issue | list | revoke --env E --holder H`: transport certificates for the
//! runtime hosts and CI runners the spec declares (`[transport.<holder>]`, ADR 0010).
//!
//! A transport certificate only gets a container's AppRole login or a CI job's JWT login
//! through the listener's mTLS requirement; it matches no cert-auth role and so opens
//! nothing. `issue` generates the key here and writes `cert.pem` + `key.pem` (0600) into a
//! private directory that the host hands to the containers it starts (or the runner to its
//! jobs). `revoke` revokes every unexpired certificate of a holder at the PKI: renewal and cert
//! auth stop at once, and the listener — which does not read CRLs — refuses it when its short
//! lifetime ends.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use warden_enroll::transport::{self, TransportError};

use crate::output::Output;
use crate::session::Access;

#[derive(Debug, Args)]
pub(crate) struct TransportArgs {
    #[command(subcommand)]
    command: TransportCommand,
}

#[derive(Debug, Subcommand)]
enum TransportCommand {
    /// Issue a transport certificate for HOLDER and write cert.pem and key.pem (0600) into
    /// --out DIR.
    Issue(IssueArgs),
    /// The holder's unexpired certificates (serial, expiry, revoked).
    List(HolderArgs),
    /// Revoke every unexpired certificate of the holder (a preview without --yes).
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct HolderArgs {
    /// The runtime host or CI runner, as declared under `[transport.<holder>]`.
    #[arg(long, value_name = "HOLDER")]
    holder: String,
    #[command(flatten)]
    access: Access,
}

#[derive(Debug, Args)]
struct IssueArgs {
    #[command(flatten)]
    holder: HolderArgs,
    /// The directory for cert.pem and key.pem (created 0700; existing files are replaced
    /// atomically).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A shorter lifetime than the holder's `ttl` (e.g. `1h`).
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    ttl: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    #[command(flatten)]
    holder: HolderArgs,
    /// Revoke without asking (after the preview the command prints without it).
    #[arg(long)]
    yes: bool,
}

fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    warden_spec::parse_duration(s).map_err(|e| e.to_string())
}

pub(crate) async fn run(args: TransportArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        TransportCommand::Issue(a) => issue(a, out).await,
        TransportCommand::List(a) => list(a, out).await,
        TransportCommand::Revoke(a) => revoke(a, out).await,
    }
}

#[derive(Debug, Serialize)]
struct IssueReport {
    env: String,
    holder: String,
    common_name: String,
    serial: String,
    #[serde(with = "time::serde::rfc3339")]
    not_after: time::OffsetDateTime,
    cert_file: PathBuf,
    key_file: PathBuf,
}

async fn issue(args: IssueArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let session = args.holder.access.open("transport issue", out)?;
    let env = &session.env;
    let holder = transport::holder(session.spec(), env, &args.holder.holder).map_err(explain)?;
    let issued = transport::issue(&session.client, env, holder, args.ttl)
        .await
        .map_err(explain)?;
    let files = issued.write(&args.out).map_err(explain)?;
    let report = IssueReport {
        env: env.name.to_string(),
        holder: issued.holder.clone(),
        common_name: issued.common_name.clone(),
        serial: issued.serial.clone(),
        not_after: issued.not_after,
        cert_file: files.cert,
        key_file: files.key,
    };
    out.emit(&report, || {
        format!(
            "{}: transport certificate for {} ({}), serial {}, expires {}\n  written to {} and {} (0600); hand the directory to the containers or jobs it carries (agent.toml [auth] cert_file/key_file, or --transport DIR)\n",
            report.env,
            report.holder,
            report.common_name,
            report.serial,
            report.not_after,
            report.cert_file.display(),
            report.key_file.display(),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct ListReport {
    env: String,
    holder: String,
    certificates: Vec<transport::Held>,
}

async fn list(args: HolderArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let session = args.access.open("transport list", out)?;
    let env = &session.env;
    let holder = transport::holder(session.spec(), env, &args.holder).map_err(explain)?;
    let certificates = transport::held(
        &session.client,
        env,
        holder,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .map_err(explain)?;
    let report = ListReport {
        env: env.name.to_string(),
        holder: holder.name.to_string(),
        certificates,
    };
    out.emit(&report, || describe(&report))?;
    Ok(ExitCode::SUCCESS)
}

fn describe(r: &ListReport) -> String {
    let mut s = format!(
        "{}: {} unexpired transport certificate(s) of {}\n",
        r.env,
        r.certificates.len(),
        r.holder
    );
    for c in &r.certificates {
        s.push_str(&format!(
            "  {}  expires {}{}\n",
            c.serial,
            c.not_after,
            if c.revoked { "  revoked" } else { "" }
        ));
    }
    s
}

async fn revoke(args: RevokeArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let session = args.holder.access.open("transport revoke", out)?;
    let env = &session.env;
    let holder = transport::holder(session.spec(), env, &args.holder.holder).map_err(explain)?;
    let now = time::OffsetDateTime::now_utc();
    let all = transport::held(&session.client, env, holder, now)
        .await
        .map_err(explain)?;
    let to_revoke: Vec<&transport::Held> = all.iter().filter(|c| !c.revoked).collect();
    if !args.yes {
        out.emit(
            &serde_json::json!({
                "env": env.name.as_str(),
                "holder": holder.name.as_str(),
                "would_revoke": to_revoke.iter().map(|c| &c.serial).collect::<Vec<_>>(),
                "revoked": false,
            }),
            || {
                let mut s = format!(
                    "{}: would revoke {} certificate(s) of {}:\n",
                    env.name,
                    to_revoke.len(),
                    holder.name
                );
                for c in &to_revoke {
                    s.push_str(&format!("  {}  expires {}\n", c.serial, c.not_after));
                }
                s.push_str("  pass --yes to revoke them\n");
                s
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut revoked = Vec::new();
    for c in &to_revoke {
        transport::revoke(&session.client, env, &c.serial)
            .await
            .map_err(explain)
            .with_context(|| format!("revoked so far: {}", revoked.join(", ")))?;
        revoked.push(c.serial.clone());
    }
    let last_expiry = to_revoke.iter().map(|c| c.not_after).max();
    out.emit(
        &serde_json::json!({
            "env": env.name.as_str(),
            "holder": holder.name.as_str(),
            "revoked": true,
            "serials": revoked,
            "listener_refuses_after": last_expiry.map(|t| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()),
        }),
        || {
            format!(
                "{}: revoked {} certificate(s) of {}; they can no longer be renewed or used for cert auth, and the listener (which does not read CRLs) refuses them when they expire{}\n  to stop {} from getting new ones, remove [transport.{}] (or the workloads it carries) from the spec and `warden apply`\n",
                env.name,
                revoked.len(),
                holder.name,
                last_expiry.map_or_else(String::new, |t| format!(", the last at {t}")),
                holder.name,
                holder.name
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A library error with its next step.
fn explain(e: TransportError) -> anyhow::Error {
    let hint = match &e {
        TransportError::UnknownHolder { .. } | TransportError::NotInEnvironment { .. } => Some(
            "declare the host or runner as [transport.<holder>] (environments, carries, ttl) and `warden apply`".to_owned(),
        ),
        TransportError::TtlTooLong { .. } => {
            Some("ask for a shorter --ttl, or raise the holder's `ttl` in the spec (at most 7d)".to_owned())
        }
        TransportError::Bao { source, .. } if source.is_permission_denied() => Some(
            "issue as an operator, or with the token of a container or pipeline this holder carries".to_owned(),
        ),
        TransportError::Bao { source, .. } if source.status() == Some(400) => Some(
            "run `warden apply` for this environment: it creates the holder's PKI role".to_owned(),
        ),
        _ => None,
    };
    let err = anyhow::Error::new(e);
    match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    }
}
