//! `warden seal migrate`: move a live environment to an auto-seal (OpenBao's seal migration);
//! the plan is printed first, `--dry-run` stops there, and refusals (a missing share, an
//! unreachable seal-keeper, a server not running) change nothing. `warden seal grant`: one
//! environment's transit seal on a seal-keeper. And the seal flags of `warden server config`.

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
    /// Migrate an environment to the static or transit seal (from Shamir or from the other
    /// auto-seal), without data loss.
    ///
    /// Prints the plan (what changes, which nodes restart), then restarts each node with the
    /// new seal (standbys first, the active node last) and submits the old seal's shares with
    /// migrate=true: Shamir unseal shares, which become the recovery keys (the custody
    /// ledger's kind becomes recovery), or the recovery keys. Run it again to resume a
    /// migration that stopped half-way.
    Migrate(MigrateArgs),
    /// On a seal-keeper: give one environment its transit seal (key seal-<env>, policy
    /// seal-<env> limited to that key, a periodic orphan token) and write the token into the
    /// node's seal directory.
    ///
    /// Talks to the seal-keeper with its operator's client certificate and a token read from
    /// a file (never argv or the environment). The token is written owner-only, alone in its
    /// file, next to its accessor; an existing token that is still alive is kept. Copy the
    /// directory to every node of the environment as <config-dir>/seal/ (with the client
    /// certificate and CA of `warden server config --seal transit`).
    Grant(GrantArgs),
}

#[derive(Debug, Args)]
struct GrantArgs {
    /// The environment whose nodes the seal-keeper will unseal.
    #[arg(long)]
    env: String,
    /// The seal-keeper's address (https://host:port).
    #[arg(long)]
    seal_keeper: String,
    /// CA bundle that verifies the seal-keeper's server certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Client certificate the seal-keeper's listener accepts (its operator's).
    #[arg(long)]
    client_cert: PathBuf,
    /// Its private key.
    #[arg(long)]
    client_key: PathBuf,
    /// File holding a seal-keeper token allowed to manage transit keys, policies and tokens.
    #[arg(long)]
    token_file: PathBuf,
    /// Where to write keeper-token and keeper-token.accessor (the node's <config-dir>/seal/).
    #[arg(long)]
    out: PathBuf,
    /// How long the token lives without a renewal (the seal renews it while a node runs).
    #[arg(long, default_value = "72h")]
    period: String,
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
        SealCommand::Grant(g) => grant(g, out).await,
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
                "{}: sealed by {} now ({:.1}s); recovery keys {}/{} held by the custodians (custody: {})\n",
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

async fn grant(args: GrantArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let period = warden_spec::parse_duration(&args.period)
        .map_err(|e| anyhow::anyhow!("--period {:?}: {e}", args.period))
        .hint("write a duration such as 72h or 7d")?;
    let token = crate::secret_input::read_seal_token_file(&args.token_file)
        .with_context(|| format!("no seal-keeper token in {}", args.token_file.display()))?;
    let address = args
        .seal_keeper
        .parse()
        .with_context(|| format!("--seal-keeper {:?} is not a URL", args.seal_keeper))?;
    let cfg = warden_bao::ClientConfig::new(address)
        .with_ca_file(&args.ca)
        .and_then(|c| c.with_client_cert_files(&args.client_cert, &args.client_key))
        .context("could not load the seal-keeper's CA or client certificate")?
        .with_token(token);
    let keeper = warden_bao::Client::new(cfg).context("could not build the seal-keeper client")?;
    let grant = warden_node::KeeperGrant::for_env(&args.env);
    let files = warden_node::SealFiles::in_dir(&args.out);
    let issued = grant
        .ensure_token(&keeper, &files, period)
        .await
        .with_context(|| format!("could not grant {} its transit seal", args.env))
        .with_hint(|| {
            format!(
                "the token in {} must manage transit keys, policies and tokens on the seal-keeper",
                args.token_file.display()
            )
        })?;
    let view = serde_json::json!({
        "env": args.env,
        "seal_keeper": args.seal_keeper,
        "key_name": grant.key_name,
        "policy": grant.policy,
        "token_file": files.token(),
        "new_token": issued,
    });
    out.emit(&view, || {
        format!(
            "{}: transit key {} and policy {} on {}; {} {}\n",
            args.env,
            grant.key_name,
            grant.policy,
            args.seal_keeper,
            if issued {
                "new seal token written to"
            } else {
                "seal token still alive in"
            },
            files.token().display()
        )
    })?;
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

/// `lab status`'s line about the seal-keeper (empty when the lab has none).
pub(crate) async fn keeper_line(lab: &Lab) -> String {
    let Some(k) = lab.seal_keeper_status().await else {
        return String::new();
    };
    let state = match (k.running, k.sealed, &k.error) {
        (false, _, Some(e)) => format!("not running ({e})"),
        (false, _, None) => "NOT RUNNING: transit-sealed nodes cannot start".to_owned(),
        (true, Some(false), _) => "running, unsealed".to_owned(),
        (true, Some(true), _) => "running but SEALED: transit-sealed nodes cannot start".to_owned(),
        (true, None, e) => format!("running, no answer ({})", e.as_deref().unwrap_or("?")),
    };
    format!("seal-keeper {}: {state}\n", k.address)
}
