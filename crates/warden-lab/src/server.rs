//! One OpenBao node's server process: starting, finding and stopping it. Its configuration
//! comes from the production generator (`nodes::render_config`, `warden-node`).
//!
//! The server outlives the `warden lab up` that started it, so it is tracked by a PID file. A PID
//! file is only believed when that PID is alive, is a `bao` process, and is the process
//! listening on the environment's port (a recycled PID or a stray server on our port must never
//! receive the lab's requests or unseal keys).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use warden_files::{Mode, write_atomic};

use crate::config::EnvConfig;
use crate::error::Error;
use crate::layout::EnvLayout;
use crate::nodes::{self, Node};
use crate::process;

/// How long a starting server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping server may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// The state of an environment's server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessState {
    /// Our server is running with this PID and listening on its port.
    Running(u32),
    /// No server of ours is running.
    Stopped,
}

/// Finds the environment's running server, if any. Fails with [`Error::PortInUse`] when the port
/// is taken by a process that is not ours.
pub(crate) fn find(
    env: &EnvConfig,
    node: &Node,
    layout: &EnvLayout,
) -> Result<ProcessState, Error> {
    let pid_file = layout.node(node.index).pid_file();
    let ours =
        process::read_pid_file(&pid_file).filter(|pid| process::is_alive(*pid) && is_bao(*pid));
    if let Some(pid) = ours {
        let listening = process::pid_listens_on(pid, node.api_port)
            .map_err(|e| Error::io(&pid_file, "inspect the process of", e))?;
        // Alive but not listening yet is a server still starting, as long as nobody else
        // holds the port.
        if listening || port_free(node.api_port) {
            return Ok(ProcessState::Running(pid));
        }
    }
    if port_free(node.api_port) {
        Ok(ProcessState::Stopped)
    } else {
        let pid = process::port_owners(node.api_port)
            .ok()
            .and_then(|o| o.first().copied());
        Err(Error::PortInUse {
            env: env.name.clone(),
            port: node.api_port,
            pid,
        })
    }
}

/// A PID from our PID file counts only if it still runs the `bao` binary (PIDs get reused).
fn is_bao(pid: u32) -> bool {
    let exe = process::process_exe(pid).map(|p| p.to_string_lossy().into_owned());
    let argv0 = process::process_cmdline(pid)
        .and_then(|a| a.first().map(|s| s.to_string_lossy().into_owned()));
    [exe, argv0]
        .into_iter()
        .flatten()
        .any(|p| p.ends_with("/bao") || p == "bao")
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Writes the configuration and starts the server; returns once our PID listens on the port.
pub(crate) async fn start(
    env: &EnvConfig,
    node: &Node,
    layout: &EnvLayout,
    bao: &Path,
) -> Result<u32, Error> {
    start_with_audit(env, node, layout, bao, None).await
}

/// [`start`], declaring the audit file `audit` (see `nodes::render_config_audit`).
pub(crate) async fn start_with_audit(
    env: &EnvConfig,
    node: &Node,
    layout: &EnvLayout,
    bao: &Path,
    audit: Option<std::path::PathBuf>,
) -> Result<u32, Error> {
    let files = layout.node(node.index);
    warden_files::ensure_private_dir(files.bao_dir())?;
    warden_files::ensure_private_dir(&files.data_dir())?;
    let config = nodes::render_config_audit(env, node, layout, audit)?;
    write_atomic(&files.server_config(), config.as_bytes(), Mode::OwnerOnly)?;
    let args: Vec<OsString> = vec![
        "server".into(),
        format!("-config={}", files.server_config().display()).into(),
    ];
    let pid = process::spawn_detached(
        bao,
        &args,
        &[],
        files.bao_dir(),
        &files.server_log(),
        &files.pid_file(),
    )
    .map_err(Error::process(&env.name))?;
    process::wait_listening(pid, node.api_port, START_TIMEOUT, Some(&files.server_log()))
        .await
        .map_err(Error::process(&env.name))?;
    Ok(pid)
}

/// Stops the server if it runs. Its data stays.
pub(crate) async fn stop(env: &EnvConfig, node: &Node, layout: &EnvLayout) -> Result<bool, Error> {
    let pid_file = layout.node(node.index).pid_file();
    let Some(pid) = process::read_pid_file(&pid_file) else {
        return Ok(false);
    };
    if !(process::is_alive(pid) && is_bao(pid)) {
        let _ = std::fs::remove_file(&pid_file);
        return Ok(false);
    }
    process::stop(pid, STOP_GRACE)
        .await
        .map_err(Error::process(&env.name))?;
    let _ = std::fs::remove_file(&pid_file);
    Ok(true)
}

/// Stops every node of the environment; returns whether any was running.
pub(crate) async fn stop_all(env: &EnvConfig, layout: &EnvLayout) -> Result<bool, Error> {
    let mut any = false;
    for node in env.nodes() {
        any |= stop(env, &node, layout).await?;
    }
    Ok(any)
}
