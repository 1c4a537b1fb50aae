//! `warden dr drill`: restores the newest backup into a scratch cluster, checks it, measures
//! RTO and RPO, tears it down and writes a signed evidence packet (docs/dr.md).
//!
//! A drill that fails a check exits 3 and is still recorded (the packet says which check).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use warden_backup::drill::{self, DrillRequest};

use super::backup::{backup_dir, explain, read_identity, read_keys};
use crate::context::{OneEnv, Target};
use crate::hint::{HintExt as _, WithCode};
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct DrArgs {
    #[command(subcommand)]
    command: DrCommand,
}

#[derive(Debug, Subcommand)]
enum DrCommand {
    /// Restore the newest backup into a scratch cluster on loopback, verify it (purposes,
    /// PKI chain, a live certificate's login, secrets' versions), report RTO and RPO, tear it
    /// down and write a signed evidence packet. Exit 3 when a check fails.
    Drill(DrillArgs),
}

#[derive(Debug, Args)]
struct DrillArgs {
    #[command(flatten)]
    target: Target,
    /// PEM public key file of the environment's evidence key (`warden evidence key`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// An age identity file of one of the backups' recipients (owner-only).
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// Drill the newest backup in DIR instead of the spec's `backup.dir`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Write the signed packet to FILE (a new file) instead of `<dir>/<env>-drill-<time>.json`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(crate) async fn run(args: DrArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        DrCommand::Drill(a) => run_drill(a, out).await,
    }
}

async fn run_drill(args: DrillArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let env = resolved.one_env("dr drill", OneEnv::NamedOrOnly)?.clone();
    let lab = resolved
        .lab
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("`warden dr drill` runs against a lab for now"))
        .hint("pass --lab DIR (docs/dr.md: a production drill restores onto spare hosts by the runbook)")?;
    // The scratch cluster is unsealed with the environment's Shamir shares; an auto-sealed
    // environment has recovery keys instead, which unseal nothing, so the drill could only
    // fail half way. Refused before anything starts.
    if let Ok(cfg) = lab.env(env.name.as_str())
        && cfg.seal.kind().is_auto()
    {
        return Err(anyhow::anyhow!(
            "`warden dr drill` supports Shamir-sealed environments only; `{}` uses the {} seal (auto-unseal, recovery keys), which the scratch cluster cannot be unsealed with. Nothing was started",
            env.name,
            cfg.seal.kind()
        ))
        .hint("check its backups offline with `warden backup verify`; docs/dr.md lists what the drill supports");
    }
    let dir = backup_dir(&resolved.spec_dir, &env, args.dir.as_deref())?;
    if let Some(p) = &args.out {
        crate::output::check_new_file(p, "drill packet")?;
    }
    let keys = read_keys(&args.key)?;
    let identity = read_identity(&args.identity)?;
    let live = resolved.client(&env)?;
    let root_pem = std::fs::read_to_string(lab.layout().ca_dir().join(warden_pki::ROOT_CERT)).ok();
    out.progress(format!(
        "{}: drilling the newest backup in {}",
        env.name,
        dir.display()
    ));
    let report = drill::drill(&DrillRequest {
        lab,
        spec: &resolved.spec,
        env: &env,
        live: &live,
        backup_dir: &dir,
        keys: &keys,
        identity: &identity,
        root_pem,
    })
    .await
    .map_err(|e| explain(e, Some(&args.target.spec)))?;
    let payload = serde_json::to_value(&report)?;
    let path = args.out.clone().unwrap_or_else(|| {
        drill::report_path(&dir, env.name.as_str(), time::OffsetDateTime::now_utc())
    });
    drill::sign_and_write(&live, &env, &report, &path)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the drill ran, but its evidence packet could not be signed or written")?;
    let mut value = payload;
    value["packet"] = serde_json::json!(path.display().to_string());
    out.emit(&value, || {
        let mut s = format!(
            "{}: DR drill of {} — {}\nRTO {:.1}s (start → verified, {} node(s)); RPO {}s{}",
            report.env,
            report.backup,
            if report.passed {
                "every check green"
            } else {
                "FAILED"
            },
            report.rto_seconds,
            report.nodes,
            report.rpo_seconds,
            report
                .rpo_index_gap
                .map(|g| format!(", {g} raft entries behind the live environment"))
                .unwrap_or_default()
        );
        for c in &report.checks {
            s.push_str(&format!(
                "\n  [{}] {}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        s.push_str(&format!("\nsigned evidence: {}", path.display()));
        s
    })?;
    if report.passed {
        Ok(ExitCode::SUCCESS)
    } else {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect();
        Err(
            anyhow::anyhow!("the DR drill failed: {}", failed.join(", "))
                .context(crate::hint::Hint(format!(
                    "the failed drill is recorded in {}",
                    path.display()
                )))
                .context(WithCode(crate::exit::CHECK_FAILED)),
        )
    }
}
