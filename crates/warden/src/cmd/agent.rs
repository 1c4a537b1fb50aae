//! `warden agent --config FILE [--once]`: run one identity's agent; `warden agent status |
//! rotate OUTPUT --socket PATH`: ask a running one through its control socket.
//!
//! The work is `warden_agent::agent`; this module loads the config, turns start-up failures
//! into messages that say what to do, wires SIGTERM/SIGINT to a clean stop, and for `--once`
//! prints what happened to each output and exits non-zero if anything failed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use warden_agent::agent::{Agent, AgentError, AuthError, Config, ConfigError, Health, OnceReport};

use crate::hint::HintExt as _;
use crate::output::Output;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    /// The agent's config (`agent.toml`, written by `warden identity enroll`).
    #[arg(long, required = true)]
    config: Option<PathBuf>,
    /// Render every output once and exit; non-zero if anything failed.
    #[arg(long)]
    once: bool,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Show a running agent's outputs (state, serial, expiry, last render, errors) through its
    /// control socket. Exits 3 when not every output is fresh.
    Status(SocketArg),
    /// Have a running agent re-issue one output now (a certificate gets a new key and serial)
    /// and wait until it is delivered. Other outputs are not touched.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
struct SocketArg {
    /// The agent's control socket: `state/control.sock` in the identity's directory. Only the
    /// agent's own user and root may use it.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
}

#[derive(Debug, Args)]
struct RotateArgs {
    /// The output's name in `agent.toml` (`tls`, `secret-config`, `ca`, ...).
    // Not called `output`: that id is taken by the global `--output` format flag.
    #[arg(value_name = "OUTPUT")]
    name: String,
    #[command(flatten)]
    socket: SocketArg,
}

pub(crate) async fn run(args: AgentArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(AgentCommand::Status(a)) => return control_status(&a.socket, out).await,
        Some(AgentCommand::Rotate(a)) => {
            return control_rotate(&a.name, &a.socket.socket, out).await;
        }
        None => {}
    }
    // clap requires --config without a subcommand.
    let config_path = args.config.context("--config is required")?;
    let config = load(&config_path)?;
    let identity = config.identity.name.clone();
    let health = config.health;
    let control = config.control.clone();
    let addr_file = config
        .state_dir
        .join(warden_agent::agent::health::ADDR_FILE);
    let agent = Agent::new(config).map_err(|e| explain(e, &config_path))?;
    if args.once {
        let report = agent.run_once().await;
        out.emit(&report, || text_report(&identity, &report))?;
        if report.ok() {
            return Ok(ExitCode::SUCCESS);
        }
        let failed: Vec<&str> = report
            .outputs
            .iter()
            .filter(|o| o.health != Health::Fresh || o.last_reload.as_ref().is_some_and(|r| !r.ok))
            .map(|o| o.name.as_str())
            .collect();
        let what = match &report.auth_error {
            Some(e) => format!("{identity}: could not log in: {e}"),
            None => format!(
                "{identity}: {} of {} outputs failed: {}",
                failed.len(),
                report.outputs.len(),
                failed.join(", ")
            ),
        };
        return Err(anyhow::Error::msg(what)).hint(
            "the files delivered before are untouched; see the errors above (add -v for the agent's log)",
        );
    }

    let handle = agent.handle();
    // Both stop when dropped, after the agent has stopped.
    let _health = match health {
        Some(h) => Some(
            warden_agent::agent::health::HealthServer::start(
                h.listen,
                Some(&addr_file),
                handle.clone(),
            )
            .await
            .context("could not start the health endpoint")
            .hint("[health] listen must be a free loopback address (port 0 picks one)")?,
        ),
        None => None,
    };
    let _control = match &control {
        Some(c) => Some(
            warden_agent::agent::control::ControlServer::start(&c.socket, handle.clone())
                .await
                .context("could not start the control socket")
                .hint("is another agent for this identity already running?")?,
        ),
        None => None,
    };
    // SIGTERM (systemd stop) and SIGINT (Ctrl-C) stop the agent between deliveries.
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stop requested");
        handle.shutdown();
    });
    out.progress(format!(
        "{identity}: agent running (SIGTERM or Ctrl-C stops it; -v shows what it does)"
    ));
    agent.run().await.map_err(|e| explain(e, &config_path))?;
    Ok(ExitCode::SUCCESS)
}

/// `warden agent status --socket PATH`.
async fn control_status(socket: &Path, out: &Output) -> anyhow::Result<ExitCode> {
    use warden_agent::agent::{control, health::Overall};
    let snapshot = control::status(socket)
        .await
        .map_err(|e| explain_control(e, socket))?;
    out.emit(&snapshot, || control::describe(&snapshot))?;
    Ok(if Overall::of(&snapshot.outputs) == Overall::Ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::CHECK_FAILED)
    })
}

/// `warden agent rotate OUTPUT --socket PATH`.
async fn control_rotate(output: &str, socket: &Path, out: &Output) -> anyhow::Result<ExitCode> {
    out.progress(format!(
        "asking the agent at {} to re-issue `{output}`",
        socket.display()
    ));
    let view = warden_agent::agent::control::rotate(socket, output)
        .await
        .map_err(|e| explain_control(e, socket))
        .with_context(|| format!("`{output}` was not rotated"))?;
    out.emit(&view, || {
        let mut s = format!("{}: {}", view.name, view.state.as_str());
        if let Some(serial) = &view.serial {
            s.push_str(&format!(", new serial {serial}"));
        }
        if let Some(t) = view.not_after {
            s.push_str(&format!(", expires {t}"));
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

fn explain_control(e: warden_agent::agent::control::ControlError, socket: &Path) -> anyhow::Error {
    use warden_agent::agent::control::ControlError as E;
    let hint = match &e {
        _ if e.is_not_running() => Some(format!(
            "no agent answers at {}: is it running? (`warden lab status` lists the lab's agents; the socket is `[control] socket` in agent.toml, state/control.sock by default)",
            socket.display()
        )),
        E::Connect { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => Some(
            "only the agent's own user and root may use its control socket: run this as that user"
                .to_owned(),
        ),
        E::Timeout { .. } => Some(
            "the agent is alive but busy or stuck; its log and `warden agent status` say more"
                .to_owned(),
        ),
        _ => None,
    };
    let err = anyhow::Error::new(e);
    match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    match Config::load(path) {
        Ok(c) => Ok(c),
        Err(e @ ConfigError::Io { .. }) => Err(anyhow::Error::new(e)).with_hint(|| {
            format!(
                "`warden identity enroll NAME --env ENV` writes agent.toml into the identity's directory; pass its path with --config (got {})",
                path.display()
            )
        }),
        Err(e) => Err(anyhow::Error::new(e))
            .context(format!("{} is not a valid agent configuration", path.display()))
            .hint("fix the lines above (the schema is in docs/agent.md), or re-run `warden identity enroll` to rewrite it"),
    }
}

fn explain(e: AgentError, config: &Path) -> anyhow::Error {
    let hint = match &e {
        AgentError::TrustAnchor { .. } => {
            "the trust anchor is written by `warden identity enroll`; re-run it, or set [openbao] ca_file".to_owned()
        }
        AgentError::Auth(AuthError::Identity { .. } | AuthError::Credential { .. }) => format!(
            "the identity's certificate or key is missing or unusable: re-enroll with `warden identity enroll NAME --env ENV --force` (config: {})",
            config.display()
        ),
        AgentError::Client { .. } => "check [openbao] address in the config".to_owned(),
        _ => "see the error above".to_owned(),
    };
    anyhow::Error::new(e)
        .context("the agent could not start")
        .context(crate::hint::Hint(hint))
}

fn text_report(identity: &str, report: &OnceReport) -> String {
    let mut s = String::new();
    if let Some(e) = &report.auth_error {
        s.push_str(&format!("{identity}: login failed: {e}\n"));
    }
    for o in &report.outputs {
        let health = match o.health {
            Health::Fresh => "ok",
            Health::Pending => "pending",
            Health::Stale => "stale",
            Health::Failed => "FAILED",
        };
        let mut line = format!("{identity}/{} ({}): {health}", o.name, o.kind);
        if let Some(na) = o.not_after {
            line.push_str(&format!(", expires {na}"));
        }
        if o.changes > 0 {
            line.push_str(", delivered");
        } else if o.health == Health::Fresh {
            line.push_str(", unchanged");
        }
        if let Some(r) = &o.last_reload
            && o.changes > 0
        {
            line.push_str(&format!(
                ", reload {}",
                if r.ok {
                    "ok".to_owned()
                } else {
                    format!("FAILED ({})", r.message)
                }
            ));
        }
        if let Some(e) = &o.last_error {
            line.push_str(&format!("\n    {e}"));
        }
        s.push_str(&line);
        s.push('\n');
    }
    s
}
