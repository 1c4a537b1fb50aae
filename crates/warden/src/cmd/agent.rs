//! `warden agent --config FILE [--once]`: run one identity's agent; `warden agent status |
//! rotate OUTPUT --socket PATH`: ask a running one through its control socket; `warden agent
//! exec --config FILE -- CMD…`: run the agent with CMD as its child, the `exec_env` secrets in
//! the child's environment, exiting with CMD's exit code.
//!
//! The work is `warden_agent`; this module loads the config, turns start-up failures
//! into messages that say what to do, wires SIGTERM/SIGINT to a clean stop, and for `--once`
//! prints what happened to each output and exits non-zero if anything failed. `status` exits
//! 0 when all is fresh, 5 when degraded (usable material, a refresh failing) and 3 when
//! something has nothing usable on disk.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use warden_agent::launch::{self, Launch, LaunchError};

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
    /// Run the agent with CMD as its child: the secrets of `[[exec_env]]` (purposes with
    /// `delivery = "exec_env"`) in CMD's environment only, CMD restarted once when a value
    /// changes, TERM/INT/QUIT/HUP/USR1/USR2 forwarded to it; exits with CMD's exit code
    /// (128 + signal if a signal ended it).
    Exec(ExecArgs),
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// The agent's config (`agent.toml`, written by `warden identity enroll`).
    #[arg(long)]
    config: PathBuf,
    /// The command and its arguments, after `--`, passed on untouched.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<std::ffi::OsString>,
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
        Some(AgentCommand::Exec(a)) => {
            let launch = Launch::prepare(&a.config).map_err(explain)?;
            let code = launch
                .exec(a.command, |identity| {
                    out.progress(format!(
                        "{identity}: agent running its command (signals are forwarded to it)"
                    ));
                })
                .await
                .map_err(explain)?;
            return Ok(ExitCode::from(code));
        }
        None => {}
    }
    // clap requires --config without a subcommand.
    let config_path = args.config.context("--config is required")?;
    let launch = Launch::prepare(&config_path).map_err(explain)?;
    if args.once {
        let identity = launch.identity().to_owned();
        let report = launch.once().await;
        out.emit(&report, || launch::once_text(&identity, &report))?;
        return match launch::once_failure(&identity, &report) {
            None => Ok(ExitCode::SUCCESS),
            Some(what) => Err(anyhow::Error::msg(what)).hint(launch::ONCE_FAILED_HINT),
        };
    }
    launch
        .serve(|identity| {
            out.progress(format!(
                "{identity}: agent running (SIGTERM or Ctrl-C stops it; -v shows what it does)"
            ));
        })
        .await
        .map_err(explain)?;
    Ok(ExitCode::SUCCESS)
}

/// A start-up failure with its "what to do next" line.
fn explain(e: LaunchError) -> anyhow::Error {
    let hint = e.hint();
    anyhow::Error::new(e).context(crate::hint::Hint(hint))
}

/// `warden agent status --socket PATH`.
async fn control_status(socket: &Path, out: &Output) -> anyhow::Result<ExitCode> {
    use warden_agent::{control, health::Overall};
    let snapshot = control::status(socket)
        .await
        .map_err(|e| explain_control(e, socket))?;
    out.emit(&snapshot, || control::describe(&snapshot))?;
    // Degraded is not failed: a supervisor must tell "serving the previous material while a
    // refresh fails" from "nothing usable on disk" without parsing the output.
    Ok(match snapshot.overall() {
        Overall::Ok => ExitCode::SUCCESS,
        Overall::Degraded => ExitCode::from(crate::exit::DEGRADED),
        Overall::Failing => ExitCode::from(crate::exit::CHECK_FAILED),
    })
}

/// `warden agent rotate OUTPUT --socket PATH`.
async fn control_rotate(output: &str, socket: &Path, out: &Output) -> anyhow::Result<ExitCode> {
    out.progress(format!(
        "asking the agent at {} to re-issue `{output}`",
        socket.display()
    ));
    let view = warden_agent::control::rotate(socket, output)
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

fn explain_control(e: warden_agent::control::ControlError, socket: &Path) -> anyhow::Error {
    use warden_agent::control::ControlError as E;
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
