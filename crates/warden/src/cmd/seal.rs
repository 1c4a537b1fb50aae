//! `warden seal migrate`: move a live environment from Shamir to an auto-seal (OpenBao's seal
//! migration). The plan is printed first; `--dry-run` stops there. Refusals (a missing share,
//! an unreachable seal-keeper, a server not running) change nothing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use warden_lab::{Lab, Progress, SealKind, SealMigrationPlan};

use crate::hint::HintExt;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct SealArgs {
    #[command(subcommand)]
    command: SealCommand,
}

#[derive(Debug, Subcommand)]
enum SealCommand {
    /// Migrate an environment from Shamir to the static or transit seal, without data loss.
    ///
    /// Prints the plan (what changes, which nodes restart), then restarts each node with the
    /// new seal and submits the Shamir unseal shares with migrate=true; the shares become the
    /// recovery keys. Run it again to resume a migration that stopped half-way.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// The environment to migrate.
    #[arg(long)]
    env: String,
    /// The seal to migrate to: transit (against the lab's seal-keeper) or static.
    #[arg(long, value_parser = parse_target)]
    to: SealKind,
    /// The lab whose environment this is.
    #[arg(long, env = "WARDEN_LAB_DIR", default_value = warden_lab::DEFAULT_LAB_DIR)]
    lab: PathBuf,
    /// Check the preconditions and print the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn parse_target(s: &str) -> Result<SealKind, String> {
    s.parse::<SealKind>()
}

pub(crate) async fn run(args: SealArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        SealCommand::Migrate(m) => migrate(m, out).await,
    }
}

struct StderrProgress<'a>(&'a Output);

impl Progress for StderrProgress<'_> {
    fn step(&self, env: &str, message: &str) {
        self.0.progress(format!("{env}: {message}"));
    }
}

async fn migrate(args: MigrateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let lab = Lab::open(&args.lab).with_hint(|| {
        format!(
            "create it with `warden lab up --dir {}`",
            args.lab.display()
        )
    })?;
    let plan = lab
        .plan_seal_migration(&args.env, args.to)
        .await
        .with_context(|| {
            format!(
                "cannot migrate {} to the {} seal; nothing was changed",
                args.env, args.to
            )
        })
        .with_hint(|| refusal_hint(&args.lab))?;
    if args.dry_run {
        out.emit(
            &serde_json::json!({ "plan": plan, "applied": false }),
            || render_plan(&plan) + "\n(dry run: nothing was changed)\n",
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if !out.is_json() {
        out.progress(render_plan(&plan));
    }
    let report = lab
        .migrate_seal(plan, &StderrProgress(out))
        .await
        .with_context(|| format!("seal migration of {} failed", args.env))
        .with_hint(|| {
            format!(
                "run the same command again to resume; the server log is {}/envs/{}/bao/server.log",
                args.lab.display(),
                args.env
            )
        })?;
    out.emit(
        &serde_json::json!({ "report": report, "applied": true }),
        || {
            format!(
                "{}: sealed by {} now ({:.1}s); recovery keys {}/{} kept in {} (LAB ONLY)\n",
                report.plan.env,
                report.seal_type,
                report.seconds,
                report.recovery_threshold,
                report.recovery_shares,
                report.recovery_keys.display()
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn render_plan(plan: &SealMigrationPlan) -> String {
    let mut s = format!(
        "plan: migrate {} from {} to {}{}\n",
        plan.env,
        plan.from,
        plan.to,
        if plan.resume { " (resuming)" } else { "" }
    );
    s.push_str(&format!(
        "  nodes to restart: {}\n",
        if plan.nodes_to_restart.is_empty() {
            "none".to_owned()
        } else {
            plan.nodes_to_restart.join(", ")
        }
    ));
    s.push_str(&format!(
        "  unseal shares in custody: {} ({} needed)\n",
        plan.shares_in_custody, plan.threshold
    ));
    for (i, step) in plan.steps.iter().enumerate() {
        s.push_str(&format!("  {}. {step}\n", i + 1));
    }
    s
}

fn refusal_hint(lab: &Path) -> String {
    format!(
        "`warden lab status --dir {}` shows each environment and its seal; `warden lab up --dir {}` starts what is down",
        lab.display(),
        lab.display()
    )
}

/// `warden server config`'s seal flags: which seal a production node's configuration names.
/// The files it reads live in `<config-dir>/seal/` (`warden_node::SealFiles`).
#[derive(Debug, Args)]
pub(crate) struct SealFlags {
    /// The node's seal: shamir (unseal shares), static (key in <config-dir>/seal/static.key)
    /// or transit (a seal-keeper; token, client certificate and CA in <config-dir>/seal/).
    #[arg(long = "seal", default_value = "shamir", value_parser = parse_target)]
    kind: SealKind,
    /// The seal-keeper's address (https://host:port); required with --seal transit.
    #[arg(long)]
    seal_keeper: Option<String>,
}

impl SealFlags {
    /// The seal for environment `env` whose configuration directory on the host is
    /// `config_dir`.
    pub(crate) fn seal(&self, env: &str, config_dir: &Path) -> anyhow::Result<warden_node::Seal> {
        match (self.kind, &self.seal_keeper) {
            (SealKind::Transit, None) => Err(anyhow::anyhow!(
                "--seal transit needs the seal-keeper's address"
            ))
            .hint("add --seal-keeper https://<seal-keeper>:8200"),
            (SealKind::Transit, Some(_)) | (_, None) => Ok(warden_node::SealFiles::in_dir(
                config_dir.join("seal"),
            )
            .seal(self.kind, env, self.seal_keeper.as_deref())),
            (kind, Some(_)) => Err(anyhow::anyhow!(
                "--seal-keeper only applies to --seal transit (this node's seal is {kind})"
            ))
            .hint("drop --seal-keeper, or use --seal transit"),
        }
    }
}

/// A warning when `lab up --seal K` met an existing lab whose environments are sealed
/// otherwise: `--seal` only chooses the seal of a new lab.
pub(crate) fn ignored_seal_option(
    lab: &Lab,
    asked: Option<SealKind>,
    created: bool,
) -> Option<String> {
    let asked = asked.filter(|_| !created)?;
    let other: Vec<String> = lab
        .config()
        .environments
        .iter()
        .filter(|e| e.seal.kind() != asked)
        .map(|e| format!("{} is {}", e.name, e.seal.kind()))
        .collect();
    (!other.is_empty()).then(|| {
        format!(
            "--seal {asked} was ignored: it only applies to a new lab, and this one exists ({}); `warden seal migrate --env ENV --to {asked}` changes an environment's seal",
            other.join(", ")
        )
    })
}
