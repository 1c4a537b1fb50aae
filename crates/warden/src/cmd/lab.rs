//! `warden lab up | status | down`: the local two-environment lab, and the agents of the
//! applied spec's identities (`warden_lab_agents`). This module prints what they report and
//! says what to do when they fail.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use time::OffsetDateTime;
use warden_lab::{DownReport, EnvStatus, Lab, NewLabOptions, Progress};
use warden_lab_agents::{self as agents, AgentStatus, AgentsError, Applied};

use crate::context::Resolved;
use crate::exit;
use crate::hint::{HintExt, WithCode};
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct LabArgs {
    /// The lab directory.
    #[arg(long, global = true, env = "WARDEN_LAB_DIR", default_value = warden_lab::DEFAULT_LAB_DIR)]
    dir: PathBuf,
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Create the lab if needed, then start, initialise and unseal every environment.
    ///
    /// Safe to repeat: on an existing lab it restarts and unseals what is down and changes
    /// nothing else. Options below only apply when the lab is created.
    Up(UpArgs),
    /// Show each environment: address, health, intermediate expiry, chain validity, and (with
    /// --output json) the paths of its CA bundle and operator certificate and key; then each
    /// agent: running, /health verdict and URL, and every output with its expiry.
    ///
    /// Exits 3 when an environment is not running, sealed, or its chain does not verify,
    /// when an enrolled agent is not running, or when the lab's PostgreSQL is not running.
    Status,
    /// Stop the agents, then the lab's PostgreSQL and the servers. Data is kept unless --purge.
    Down(DownArgs),
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Environments to create (repeat or comma-separate).
    #[arg(long = "env", value_delimiter = ',', default_values_t = ["test".to_owned(), "prod".to_owned()])]
    envs: Vec<String>,
    /// Unseal key shares per environment.
    #[arg(long, default_value_t = 3)]
    shares: u8,
    /// Unseal shares needed to unseal.
    #[arg(long, default_value_t = 2)]
    threshold: u8,
    /// How every environment is sealed: shamir (unseal shares), static (a key file beside
    /// the node) or transit (a separate seal-keeper OpenBao). Auto-seals use --shares and
    /// --threshold for their recovery keys.
    /// [default: shamir]
    #[arg(long, value_parser = |s: &str| s.parse::<warden_lab::SealKind>())]
    seal: Option<warden_lab::SealKind>,
    /// OpenBao nodes per environment, joined as one raft cluster on 127.0.0.1 (1 to 7; an
    /// odd count is the usual choice). [default: 1]
    #[arg(long)]
    nodes: Option<u8>,
    /// The platform spec to apply once the environments are up (default: the example platform
    /// built into warden, examples/lab/warden.toml).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Bring up the servers only; apply no spec (identities already enrolled under
    /// <lab>/hosts still get their agents started, unless --no-agents).
    #[arg(long, conflicts_with = "spec")]
    no_spec: bool,
    /// Enroll no identities and start no agents (by default every app and proxy of the spec
    /// is enrolled under <lab>/hosts/<env>/<identity>/ and its agent started).
    #[arg(long)]
    no_agents: bool,
}

/// The example platform (`examples/lab/warden.toml`), built in so `warden lab up` works from
/// any directory.
pub(crate) const EXAMPLE_SPEC: &str = include_str!("../../../../examples/lab/warden.toml");

#[derive(Debug, Args)]
struct DownArgs {
    /// Also delete the lab directory: servers' data, the offline CA and all custody files.
    #[arg(long)]
    purge: bool,
}

pub(crate) async fn run(args: LabArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::Up(up) => run_up(&args.dir, up, out).await,
        LabCommand::Status => run_status(&args.dir, out).await,
        LabCommand::Down(down) => run_down(&args.dir, down, out).await,
    }
}

/// Progress lines on stderr, prefixed by environment.
struct StderrProgress<'a>(&'a Output);

impl Progress for StderrProgress<'_> {
    fn step(&self, env: &str, message: &str) {
        self.0.progress(format!("{env}: {message}"));
    }
}

async fn run_up(dir: &Path, args: UpArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (spec_choice, no_spec, no_agents) = (args.spec.clone(), args.no_spec, args.no_agents);
    // Read the spec before anything starts: a bad spec then costs nothing, and a new lab's
    // PKI intermediates are constrained to the names the spec gives each environment
    // (ADR 0013). Without a spec, the example platform's names.
    let (spec, spec_dir, name) = match &spec_choice {
        Some(path) => (
            warden_spec::load(path)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("{} is not a valid spec", path.display()))?,
            path.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            path.display().to_string(),
        ),
        None => (
            warden_spec::parse(EXAMPLE_SPEC, "examples/lab/warden.toml (built in)")
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            PathBuf::from("."),
            "the built-in example platform".to_owned(),
        ),
    };
    let options = NewLabOptions {
        environments: args.envs,
        shares: args.shares,
        threshold: args.threshold,
        seal: args.seal.unwrap_or(warden_lab::SealKind::Shamir),
        nodes: args.nodes.unwrap_or(1),
        test_harness_token: false,
        permitted_dns: warden_lab::permitted_dns_from_spec(&spec),
    };
    // A lab database needs PostgreSQL: find out now, before any server starts, whether it
    // can run here.
    if !no_spec && warden_lab::postgres::LabPostgres::wanted_by(&spec) {
        warden_lab::postgres::LabPostgres::preflight(dir)
            .with_context(|| format!("{name} declares a lab database, but the lab cannot run PostgreSQL here"))
            .with_hint(|| "`scripts/bootstrap` installs the PostgreSQL server binaries; `--no-spec` brings up the servers alone".to_owned())?;
    }
    if let Some(w) = warden_lab::even_count_warning(options.nodes) {
        out.warn(format!("--nodes {}: {w}", options.nodes));
    }
    out.progress(format!("lab: bringing up {}", dir.display()));
    let report = Lab::up(dir, &options, &StderrProgress(out))
        .await
        .with_context(|| format!("lab up in {} failed", dir.display()))
        .with_hint(|| up_hint(dir))?;
    // Loud in every output mode: this custody must never be mistaken for a real one.
    out.warn(warden_lab::LAB_ONLY_NOTICE);
    for e in &report.environments {
        out.progress(format!("{}: custody: {}", e.name, e.custody.describe()));
    }
    let mut lab = Lab::open(dir)?;
    // The lab's PostgreSQL before apply: apply connects the database engine to it.
    let postgres = lab
        .postgres_up((!no_spec).then_some(&spec))
        .await
        .context("the OpenBao servers are up, but the lab's PostgreSQL is not")
        .with_hint(|| postgres_hint(dir))?;
    if let Some(pg) = &postgres {
        out.progress(format!(
            "lab: postgres on {} ({})",
            pg.address,
            if pg.started {
                "started"
            } else {
                "already running"
            }
        ));
    }
    if let Some(w) = crate::cmd::seal::ignored_seal_option(&lab, args.seal, report.created) {
        out.warn(w);
    }
    if let Some(w) = super::lab_nodes::ignored_nodes_option(&lab, args.nodes, report.created) {
        out.warn(w);
    }
    let (applied, resolved) = if no_spec {
        (None, None)
    } else {
        out.progress(format!("lab: applying {name}"));
        let resolved = Resolved::for_lab(spec, spec_dir, lab.clone());
        let applied = crate::provisioning::apply_resolved(&resolved, false, 8, out)
            .await
            .with_context(|| format!("the servers are up, but applying {name} failed"))?;
        (Some(applied), Some(resolved))
    };
    let agents = if no_agents {
        None
    } else {
        Some(start_agents(&lab, resolved.as_ref(), out).await?)
    };
    let statuses = full_status(&lab).await;
    out.emit(
        &serde_json::json!({ "up": report, "postgres": postgres, "applied": applied, "agents": agents, "status": statuses }),
        || {
            let mut s = status_table(&statuses);
            s.push_str(&postgres_line(&lab));
            s.push_str(&format!(
                "\nLab ready in {}. `warden lab status --output json --dir {}` gives the paths to point any Vault client at.\n",
                dir.display(),
                dir.display()
            ));
            s
        },
    )?;
    Ok(status_code(&statuses))
}

/// Enrolls and starts the lab's agents, printing progress, and warns about any that has not
/// delivered everything yet.
async fn start_agents(
    lab: &Lab,
    resolved: Option<&Resolved>,
    out: &Output,
) -> anyhow::Result<agents::AgentsUp> {
    let exe = std::env::current_exe().context("cannot find the running warden binary")?;
    let applied = resolved.map(|r| Applied {
        spec: &r.spec,
        envs: &r.envs,
    });
    let up = agents::enroll_and_start(lab, applied, &exe, &StderrProgress(out))
        .await
        .map_err(|e| agents_error(e, lab))
        .context("the servers are up and the spec applied, but the agents did not all start")?;
    for a in &up.agents {
        if a.undelivered() {
            out.warn(format!(
                "{}: the agent of {} is running but has not delivered everything ({}); see `warden lab status` and {}",
                a.env,
                a.identity,
                a.health.as_deref().unwrap_or("no answer from /health"),
                a.log().display()
            ));
        }
    }
    Ok(up)
}

/// What to do about an agent that could not be enrolled or started.
fn agents_error(err: AgentsError, lab: &Lab) -> anyhow::Error {
    let hint = match &err {
        AgentsError::NotStarted { log, config, .. } => Some(format!(
            "its log is {}; `warden agent --config {} --once -v` runs it in the foreground",
            log.display(),
            config.display()
        )),
        AgentsError::Enroll { env, identity, .. } => Some(format!(
            "`warden identity enroll {identity} --env {env} --lab {} --root-dir {} -v` shows the steps",
            lab.layout().root().display(),
            agents::hosts_dir(lab).display(),
        )),
        AgentsError::Client { .. } => Some(
            "the spec's environment names must match the lab's (`warden lab status`)".to_owned(),
        ),
        _ => None,
    };
    let err = anyhow::Error::new(err);
    match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    }
}

fn postgres_hint(dir: &Path) -> String {
    format!(
        "its log is {}/postgres/server/postgres.log; fix the cause and run `warden lab up --dir {}` again \
         (`scripts/bootstrap` installs the PostgreSQL server binaries)",
        dir.display(),
        dir.display()
    )
}

/// The lab's PostgreSQL in `lab status`/`lab up` text, empty when the lab has none.
fn postgres_line(lab: &Lab) -> String {
    match lab.postgres() {
        Ok(Some(pg)) => {
            let s = pg.status();
            format!(
                "\npostgres: {} {} (data {}, log {})\n",
                s.address,
                if s.running { "running" } else { "NOT RUNNING" },
                s.data_dir.display(),
                s.log.display()
            )
        }
        Ok(None) => String::new(),
        Err(e) => format!("\npostgres: {e}\n"),
    }
}

/// Whether the lab's PostgreSQL, when it has one, is running.
fn postgres_healthy(lab: &Lab) -> bool {
    match lab.postgres() {
        Ok(Some(pg)) => pg.status().running,
        Ok(None) => true,
        Err(_) => false,
    }
}

fn up_hint(dir: &Path) -> String {
    format!(
        "nothing that already worked was undone; fix the cause and run `warden lab up --dir {}` again. \
         Server logs are in {}/envs/<env>/bao/server.log",
        dir.display(),
        dir.display()
    )
}

async fn run_status(dir: &Path, out: &Output) -> anyhow::Result<ExitCode> {
    let lab = Lab::open(dir).map_err(|e| {
        let hint = if matches!(e, warden_lab::Error::NotALab { .. }) {
            format!("create it with `warden lab up --dir {}`", dir.display())
        } else {
            format!(
                "{} is not a lab Warden can read: fix or remove it (a lab's lab.json is a regular file Warden wrote), or pass another --dir",
                dir.display()
            )
        };
        anyhow::Error::new(e).context(crate::hint::Hint(hint))
    })?;
    let statuses = full_status(&lab).await;
    let keeper = crate::cmd::seal::keeper_line(&lab).await;
    out.emit(&statuses, || {
        let mut s = status_table(&statuses);
        s.push_str(&keeper);
        s.push_str(&postgres_line(&lab));
        if let Some(EnvView { env, .. }) = statuses.first() {
            s.push_str(&format!(
                "\nTo use the bao CLI against {name}:\n  export BAO_ADDR={addr} BAO_CACERT={ca} \\\n    BAO_CLIENT_CERT={cert} BAO_CLIENT_KEY={key}\n  bao login -method=cert -path={mount} name={role}   # the lab operator (no root token)\n",
                name = env.name,
                addr = env.address,
                ca = env.ca_bundle.display(),
                cert = env.operator_cert.display(),
                key = env.operator_key.display(),
                mount = env.operator_auth_mount,
                role = env.operator_role,
            ));
        }
        s
    })?;
    let code = if postgres_healthy(&lab) {
        status_code(&statuses)
    } else {
        ExitCode::from(exit::CHECK_FAILED)
    };
    if code != ExitCode::SUCCESS && !out.is_json() {
        return Err(anyhow::anyhow!(
            "not every environment is healthy, or an agent is not running"
        ))
        .context(WithCode(exit::CHECK_FAILED))
        .with_hint(|| {
            format!(
                "`warden lab up --dir {}` restarts and unseals what is down",
                dir.display()
            )
        });
    }
    Ok(code)
}

async fn run_down(dir: &Path, args: DownArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let lab = Lab::open(dir).with_hint(|| format!("no lab to stop in {}", dir.display()))?;
    // Agents first: a server going away under a running agent only sends it into backoff.
    let agents_stopped = agents::stop_all(&lab)
        .await
        .context("lab down: could not stop the agents; the servers were left running")?;
    let report = lab.down(args.purge).await.context("lab down failed")?;
    let view = DownView {
        report: &report,
        agents_stopped: &agents_stopped,
    };
    out.emit(&view, || {
        let agents = if agents_stopped.is_empty() {
            String::new()
        } else {
            format!("stopped {} agent(s); ", agents_stopped.len())
        };
        let stopped = if report.stopped.is_empty() {
            "no server was running".to_owned()
        } else {
            format!("stopped {}", report.stopped.join(", "))
        };
        if report.purged {
            format!("{agents}{stopped}; removed {}", report.dir.display())
        } else {
            format!(
                "{agents}{stopped}; data kept in {} (`warden lab up` brings it back)",
                report.dir.display()
            )
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `lab down`'s report: the library's, plus the agents stopped first.
#[derive(Serialize)]
struct DownView<'a> {
    #[serde(flatten)]
    report: &'a DownReport,
    agents_stopped: &'a [String],
}

/// One environment in `lab status`: the server's status (its keys unchanged, so scripts written
/// before agents existed keep working) and the agents enrolled in it.
#[derive(Serialize)]
struct EnvView {
    #[serde(flatten)]
    env: EnvStatus,
    agents: Vec<AgentStatus>,
}

async fn full_status(lab: &Lab) -> Vec<EnvView> {
    let mut views = Vec::new();
    for env in lab.status().await {
        let agents = agents::status(lab, &env.name).await;
        views.push(EnvView { env, agents });
    }
    views
}

fn status_code(statuses: &[EnvView]) -> ExitCode {
    let healthy = statuses
        .iter()
        .all(|v| v.env.healthy() && v.agents.iter().all(AgentStatus::healthy));
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::CHECK_FAILED)
    }
}

fn status_table(views: &[EnvView]) -> String {
    let mut s = env_table(views);
    let agents: Vec<&AgentStatus> = views.iter().flat_map(|v| &v.agents).collect();
    if !agents.is_empty() {
        s.push('\n');
        s.push_str(&agents_table(&agents));
    }
    s
}

fn env_table(views: &[EnvView]) -> String {
    let statuses: Vec<&EnvStatus> = views.iter().map(|v| &v.env).collect();
    let yn = |v: Option<bool>| match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    };
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "env",
        "address",
        "running",
        "initialised",
        "sealed",
        "version",
        "intermediate not-after",
        "chain",
    ]);
    for s in &statuses {
        let chain = match s.chain_valid {
            Some(true) => "valid".to_owned(),
            Some(false) => format!("INVALID: {}", s.chain_problems.join("; ")),
            None => "?".to_owned(),
        };
        table.add_row([
            s.name.clone(),
            s.address.clone(),
            if s.running {
                format!("yes (pid {})", s.pid.unwrap_or_default())
            } else {
                "no".to_owned()
            },
            yn(s.initialized).to_owned(),
            yn(s.sealed).to_owned(),
            s.version.clone().unwrap_or_else(|| "?".to_owned()),
            s.intermediate_not_after
                .clone()
                .unwrap_or_else(|| "?".to_owned()),
            chain,
        ]);
    }
    let mut s = table.to_string();
    s.push('\n');
    for st in &statuses {
        let problem = st.seal_problem.as_deref().map(|p| format!(" — {p}"));
        s.push_str(&format!(
            "{}: seal {}{}\n",
            st.name,
            st.seal,
            problem.unwrap_or_default()
        ));
    }
    s.push_str(&super::lab_nodes::nodes_table(&statuses));
    for st in statuses.iter().filter(|s| s.error.is_some()) {
        s.push_str(&format!(
            "{}: {}\n",
            st.name,
            st.error.as_deref().unwrap_or_default()
        ));
    }
    s
}

/// The agents table of `lab status` (empty when there are none).
fn agents_table(agents: &[&AgentStatus]) -> String {
    if agents.is_empty() {
        return String::new();
    }
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "env",
        "agent",
        "running",
        "health",
        "outputs (state, expiry)",
    ]);
    for a in agents {
        let outputs = a
            .outputs
            .iter()
            .map(|o| {
                let mut s = o.name.clone();
                if let Some(state) = &o.state {
                    s.push_str(&format!(" {state}"));
                }
                match (o.not_after, o.expires_in_seconds, o.delivered_at) {
                    (Some(t), Some(secs), _) => {
                        s.push_str(&format!(", expires {} (in {})", date(t), human(secs)));
                    }
                    (None, _, Some(_)) => s.push_str(", delivered"),
                    _ => s.push_str(", not delivered"),
                }
                s
            })
            .collect::<Vec<_>>()
            .join("\n");
        table.add_row([
            a.env.clone(),
            format!("{} ({})", a.identity, a.kind.as_deref().unwrap_or("?")),
            match a.pid {
                Some(pid) => format!("yes (pid {pid})"),
                None => "no".to_owned(),
            },
            match (&a.health, &a.health_url) {
                (Some(h), Some(url)) => format!("{h}\n{url}"),
                _ if a.running => "no answer".to_owned(),
                _ => "-".to_owned(),
            },
            outputs,
        ]);
    }
    let mut s = table.to_string();
    s.push('\n');
    for a in agents.iter().filter(|a| a.error.is_some()) {
        s.push_str(&format!(
            "{}/{}: {}\n",
            a.env,
            a.identity,
            a.error.as_deref().unwrap_or_default()
        ));
    }
    if let Some(a) = agents
        .iter()
        .find(|a| a.running && a.control_socket.is_some())
    {
        s.push_str(&format!(
            "\nEach agent answers `warden agent status --socket <dir>/state/control.sock`, e.g.\n  warden agent status --socket {}\n",
            a.control_socket.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        ));
    }
    s
}

fn date(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `3d4h`, `5h12m`, `42s`, `expired 3m ago`: the duration grammar, two units at most.
fn human(secs: i64) -> String {
    if secs < 0 {
        return format!("expired {} ago", warden_spec::rules::human(-secs));
    }
    warden_spec::rules::human(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_human_wrote_them() {
        assert_eq!(human(42), "42s");
        assert_eq!(human(61), "1m1s");
        assert_eq!(human(3 * 3600 + 60 * 7), "3h7m");
        assert_eq!(human(3 * 86_400 + 3600), "3d1h");
        assert_eq!(human(-120), "expired 2m ago");
    }
}
