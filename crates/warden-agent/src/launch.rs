//! Starting one identity's agent from its `agent.toml`: the start-up that `warden agent` (the
//! full CLI) and `warden-agent` (the agent-only binary for hosts) share, so both load, refuse,
//! serve, stop and report in exactly the same way.
//!
//! The binaries keep only their edge: parsing arguments, printing, and turning a
//! [`LaunchError`] into a message, its [`hint`](LaunchError::hint) and an exit code.
//!
//! ```text
//! Launch::prepare(path)      load + validate agent.toml, build the agent (nothing contacted)
//!   ├─ .once()               render every output once → OnceReport (once_text / once_failure)
//!   ├─ .serve(on_running)    health endpoint, control socket, SIGTERM/SIGINT → run until stopped
//!   └─ .exec(argv, on_running) the same endpoints, the agent, and `argv` with the
//!                            [[exec_env]] secrets in its environment → its exit code
//! ```

use std::path::{Path, PathBuf};

use super::config::{ControlConfig, HealthConfig};
use super::control::{ControlError, ControlServer};
use super::exec::ExecError;
use super::health::{self, HealthError, HealthServer};
use super::{Agent, AgentError, AuthError, Config, ConfigError, Health, OnceReport};

/// What to do next after a failed `--once` run (the failures themselves are in the report).
pub const ONCE_FAILED_HINT: &str =
    "the files delivered before are untouched; see the errors above (add -v for the agent's log)";

/// Why an agent could not be started (failures while it runs are retried and reported in its
/// status instead, never returned).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// `agent.toml` could not be read (missing, unreadable).
    #[error(transparent)]
    Unreadable(ConfigError),
    /// `agent.toml` was read but is invalid; the source lists every problem at
    /// `file:line:col`.
    #[error("{} is not a valid agent configuration", path.display())]
    Invalid {
        /// The file given.
        path: PathBuf,
        /// The diagnostics.
        #[source]
        source: ConfigError,
    },
    /// The agent could not be built or could not start running (trust anchor, TLS identity,
    /// client, state directory).
    #[error("the agent could not start")]
    Start {
        /// The config file, named in the hint.
        config: PathBuf,
        /// Why.
        #[source]
        source: AgentError,
    },
    /// `[health] listen` could not be served.
    #[error("could not start the health endpoint")]
    Health(#[source] HealthError),
    /// `[control] socket` could not be served.
    #[error("could not start the control socket")]
    Control(#[source] ControlError),
    /// `exec` could not start or keep its command.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl LaunchError {
    /// What the operator should do next: one line, for the binary to print under the error.
    pub fn hint(&self) -> String {
        match self {
            Self::Unreadable(ConfigError::Untrusted(_)) => {
                "the agent runs what agent.toml says: keep it a regular file owned by root or the agent's user, writable by nobody else".to_owned()
            }
            Self::Unreadable(_) => {
                "`warden identity enroll NAME --env ENV` writes agent.toml into the identity's directory; pass its path with --config".to_owned()
            }
            Self::Invalid { .. } => "fix the lines above (the schema is in docs/agent.md), or re-run `warden identity enroll` to rewrite it".to_owned(),
            Self::Start { config, source } => match source {
                AgentError::TrustAnchor { .. } => "the trust anchor is written by `warden identity enroll`; re-run it, or fix what the message names (owner, mode, a symlink on the path: give the real path), or set [openbao] ca_file".to_owned(),
                AgentError::Auth(AuthError::Identity { .. } | AuthError::Credential { .. }) => format!(
                    "the identity's certificate or key is missing or unusable: re-enroll with `warden identity enroll NAME --env ENV --force` (config: {})",
                    config.display()
                ),
                AgentError::Client { .. } => "check [openbao] address in the config".to_owned(),
                _ => "see the error above".to_owned(),
            },
            Self::Health(_) => {
                "[health] listen must be a free loopback address (port 0 picks one)".to_owned()
            }
            Self::Control(_) => "is another agent for this identity already running?".to_owned(),
            Self::Exec(e) => e.hint(),
        }
    }
}

/// The agent holds its identity's private key, its token and (for `exec`) the child's secret
/// values: like the CA and custody commands, it is made non-dumpable, so a crash writes no
/// core file and another process of the same user cannot read its memory through ptrace or
/// `/proc/<pid>/mem` (which also makes `/proc/<agent>/environ` root-only). Only the flag: the
/// core-file limit is inherited by an `exec` child and stays the operator's, and the flag
/// itself is reset for the child by `execve`. Best effort: a refusal leaves the default.
fn keep_secrets_in_process() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::debug!("could not make the agent non-dumpable: {e}");
    }
}

/// An agent built from a valid config, not yet running.
#[derive(Debug)]
pub struct Launch {
    config_path: PathBuf,
    identity: String,
    health: Option<HealthConfig>,
    control: Option<ControlConfig>,
    addr_file: PathBuf,
    agent: Agent,
}

impl Launch {
    /// Loads and validates `config_path` and builds the agent: trust anchor, TLS identity and
    /// client. Contacts nothing; creates nothing on disk.
    pub fn prepare(config_path: &Path) -> Result<Self, LaunchError> {
        keep_secrets_in_process();
        let config = Config::load_trusted(config_path).map_err(|e| match e {
            e @ (ConfigError::Io { .. } | ConfigError::Untrusted(_)) => LaunchError::Unreadable(e),
            e => LaunchError::Invalid {
                path: config_path.to_path_buf(),
                source: e,
            },
        })?;
        let identity = config.identity.name.clone();
        let health = config.health;
        let control = config.control.clone();
        let addr_file = config.state_dir.join(health::ADDR_FILE);
        let agent = Agent::new(config).map_err(|source| LaunchError::Start {
            config: config_path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            config_path: config_path.to_path_buf(),
            identity,
            health,
            control,
            addr_file,
            agent,
        })
    }

    /// The identity's name (for messages).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// `--once`: renders every output once and reports; never fails as such (see
    /// [`once_failure`] for the verdict).
    pub async fn once(self) -> OnceReport {
        self.agent.run_once().await
    }

    /// Runs until SIGTERM or SIGINT: starts the health endpoint and the control socket when
    /// configured, calls `on_running` once everything is up, then runs the agent. Both
    /// endpoints stop after the agent has stopped.
    pub async fn serve(self, on_running: impl FnOnce(&str)) -> Result<(), LaunchError> {
        let handle = self.agent.handle();
        // Held until the end of this function: dropping them stops them.
        let _endpoints = self.endpoints().await?;
        // SIGTERM (systemd stop) and SIGINT (Ctrl-C) stop the agent between deliveries.
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::warn!("cannot listen for SIGTERM/SIGINT; stop the agent with SIGKILL");
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stop requested");
            handle.shutdown();
        });
        on_running(&self.identity);
        let config = self.config_path;
        self.agent
            .run()
            .await
            .map_err(|source| LaunchError::Start { config, source })
    }
}

impl Launch {
    /// `exec -- CMD…`: starts the health endpoint and the control socket when configured, then
    /// runs the agent with `argv` as its supervised child (the `[[exec_env]]` secrets in the
    /// child's environment only; see [`crate::exec`]). `on_running` is called once the
    /// endpoints are up. Returns the child's exit code (128 + signal if a signal ended it).
    pub async fn exec(
        self,
        argv: Vec<std::ffi::OsString>,
        on_running: impl FnOnce(&str),
    ) -> Result<u8, LaunchError> {
        let _endpoints = self.endpoints().await?;
        on_running(&self.identity);
        Ok(super::exec::supervise(self.agent, argv).await?)
    }

    /// The health endpoint and the control socket, when configured; dropping them stops them.
    async fn endpoints(
        &self,
    ) -> Result<(Option<HealthServer>, Option<ControlServer>), LaunchError> {
        let handle = self.agent.handle();
        let health = match self.health {
            Some(h) => Some(
                HealthServer::start(h.listen, Some(&self.addr_file), handle.clone())
                    .await
                    .map_err(LaunchError::Health)?,
            ),
            None => None,
        };
        let control = match &self.control {
            Some(c) => Some(
                ControlServer::start(&c.socket, handle)
                    .await
                    .map_err(LaunchError::Control)?,
            ),
            None => None,
        };
        Ok((health, control))
    }
}

/// Whether the log on stderr may carry ANSI colour codes: only when stderr is a terminal and
/// `NO_COLOR` is unset or empty (<https://no-color.org>). The agent's log usually goes to a
/// file or to the journal, where escape codes are noise that every reader has to strip.
pub fn log_colours() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The verdict of a `--once` run: `None` when everything was delivered (or already valid) and
/// every reload worked, else the one-line reason to report as the error.
pub fn once_failure(identity: &str, report: &OnceReport) -> Option<String> {
    if report.ok() {
        return None;
    }
    if let Some(e) = &report.auth_error {
        return Some(format!("{identity}: could not log in: {e}"));
    }
    let failed: Vec<&str> = report
        .outputs
        .iter()
        .filter(|o| o.health != Health::Fresh || o.last_reload.as_ref().is_some_and(|r| !r.ok))
        .map(|o| o.name.as_str())
        .collect();
    Some(format!(
        "{identity}: {} of {} outputs failed: {}",
        failed.len(),
        report.outputs.len(),
        failed.join(", ")
    ))
}

/// A `--once` report as text, one line per output (plus its error, indented).
pub fn once_text(identity: &str, report: &OnceReport) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn a_missing_config_is_unreadable_and_says_who_writes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Launch::prepare(&dir.path().join("agent.toml")).expect_err("missing file");
        assert!(matches!(err, LaunchError::Unreadable(_)), "{err:?}");
        assert!(err.to_string().contains("agent.toml"), "{err}");
        assert!(
            err.hint().contains("warden identity enroll"),
            "{}",
            err.hint()
        );
    }

    #[test]
    fn an_invalid_config_names_the_file_and_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "agent.toml",
            "version = 1\n\n[identity]\nnmae = \"x\"\n",
        );
        let err = Launch::prepare(&path).expect_err("invalid");
        let LaunchError::Invalid { source, .. } = &err else {
            panic!("expected Invalid, got {err:?}");
        };
        assert!(
            err.to_string()
                .contains("is not a valid agent configuration")
        );
        let diags = source.to_string();
        assert!(
            diags.contains(&format!("{}:4:", path.display())),
            "the diagnostics point at line 4: {diags}"
        );
        assert!(err.hint().contains("docs/agent.md"));
    }

    /// Red team (issue 17): the agent holds its private key, token and the exec child's
    /// values; from its first step it is non-dumpable (no core file, no ptrace or
    /// `/proc/<pid>/mem` for other processes of its user), like the CA and custody commands.
    #[test]
    fn the_agent_is_not_dumpable_from_its_first_step() {
        nix::sys::prctl::set_dumpable(true).expect("set dumpable");
        let dir = tempfile::tempdir().expect("tempdir");
        let _ = Launch::prepare(&dir.path().join("agent.toml"));
        assert!(!nix::sys::prctl::get_dumpable().expect("get dumpable"));
    }

    #[test]
    fn a_clean_once_report_is_no_failure() {
        let report = OnceReport {
            outputs: Vec::new(),
            auth_error: None,
            requests: 0,
        };
        assert_eq!(once_failure("billing", &report), None);
        let failed = OnceReport {
            auth_error: Some("permission denied".to_owned()),
            ..report
        };
        assert_eq!(
            once_failure("billing", &failed).as_deref(),
            Some("billing: could not log in: permission denied")
        );
        assert!(once_text("billing", &failed).starts_with("billing: login failed:"));
    }
}
