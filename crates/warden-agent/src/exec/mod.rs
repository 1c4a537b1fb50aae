//! `warden-agent exec -- CMD ARGS…` (and `warden agent exec`): the agent as its service's
//! supervisor, the `exec_env` delivery of a purpose. It runs the whole agent (login, identity
//! renewal, the file outputs) and, beside it, starts `CMD` with the `[[exec_env]]` secrets
//! added to the child's environment — like `envconsul` or `bao agent`'s exec mode:
//!
//! ```text
//!  start: login (auth task) ─► purposes allow? ─► read every [[exec_env]] ─► spawn CMD
//!         (retry 250 ms doubling to 16 s until [exec] start_timeout; then exit 1, CMD never
//!          started with missing variables)
//!  run:   every [renewal] poll re-read ─► changed? ─► wait `debounce`, re-read ─► purposes
//!         allow? ─► restart CMD once (SIGTERM, kill_timeout, SIGKILL) or send the signal
//!  signals TERM INT QUIT HUP USR1 USR2 ─► forwarded to CMD; TERM/INT/QUIT also start the
//!         kill_timeout, then SIGKILL
//!  CMD exits ─► the agent stops its tasks and exits with CMD's code (128 + signal if killed)
//! ```
//!
//! Secrets stay out of the agent: they are put into the child's `envp` only (never
//! `set_var`), held as `Zeroizing` strings, never logged (the log names variables and KV
//! versions), never written to the state directory or the delivery report. A purpose that is
//! revoked, or whose values the child holds outlived interval + grace, lets no new value
//! through: the child keeps running with what it has (fail closed, as for certificates).

mod child;
mod values;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::board::Shared;
use crate::config::{ExecEnv, ExecRestart, ExecSettings};
use crate::runtime::Agent;
use values::{FetchError, Values};

/// Why `exec` could not start (or keep) its command. Once the command runs, its own exit code
/// is the agent's, not an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// Nothing after `--`.
    #[error("no command to run")]
    NoCommand,
    /// `agent.toml` has no `[[exec_env]]`.
    #[error("{} lists no [[exec_env]]: there is nothing to put into the command's environment", config.display())]
    NothingToExport {
        /// The config file.
        config: PathBuf,
    },
    /// The signal handlers could not be installed.
    #[error("cannot listen for signals to forward: {0}")]
    Signals(#[source] std::io::Error),
    /// The values were not available by `[exec] start_timeout`.
    #[error("the command was not started: its secrets were not available within {}s (last error: {last})", waited.as_secs())]
    Timeout {
        /// How long it tried.
        waited: Duration,
        /// The last failure (no value in it).
        last: String,
    },
    /// A purpose refuses new values at start.
    #[error("the command was not started: {0}")]
    Refused(String),
    /// The command could not be started.
    #[error("could not start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The agent's own tasks ended before the command could start (state directory).
    #[error("the agent stopped before the command could start; see the log above")]
    AgentStopped,
    /// Waiting for the child failed.
    #[error("lost track of the command: {0}")]
    Wait(#[source] std::io::Error),
}

impl ExecError {
    /// What to do next, one line.
    pub fn hint(&self) -> String {
        match self {
            Self::NoCommand => "give the command after `--`: warden-agent exec --config agent.toml -- /usr/bin/billing --port 8080".to_owned(),
            Self::NothingToExport { .. } => "a secret reaches exec only when its purpose says delivery = \"exec_env\" (re-run `warden identity enroll`), or add [[exec_env]] entries (docs/agent.md#exec)".to_owned(),
            Self::Timeout { .. } => "check that the agent can log in and read the secret (-v shows each attempt); [exec] start_timeout sets how long it waits".to_owned(),
            Self::Refused(_) => "the purpose governing the secret refuses delivery: see `warden posture`, rotate the secret or restore the purpose with `warden apply`".to_owned(),
            Self::Spawn { .. } => "give the command's full path, and check it is executable by the agent's user".to_owned(),
            _ => "see the error above (-v shows what the agent did)".to_owned(),
        }
    }
}

/// Runs `agent` and `argv` under it until the command exits; returns the command's exit code
/// (128 + signal when a signal ended it).
pub(crate) async fn supervise(agent: Agent, argv: Vec<OsString>) -> Result<u8, ExecError> {
    if argv.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let cfg = agent.config();
    if cfg.exec_env.is_empty() {
        return Err(ExecError::NothingToExport {
            config: cfg.path.clone(),
        });
    }
    // Before anything else: from here on a SIGTERM is the child's to handle, never the
    // agent's default death.
    let signals = child::Forwarded::install().map_err(ExecError::Signals)?;
    let mut sup = Supervisor {
        entries: cfg.exec_env.clone(),
        settings: cfg.exec,
        poll: cfg.renewal.poll,
        program: argv[0].to_string_lossy().into_owned(),
        argv,
        shared: agent.handle().shared().clone(),
        signals,
    };
    let handle = agent.handle();
    let agent_task = tokio::spawn(agent.run());
    let result = sup.run(&agent_task).await;
    // The command is gone: stop the agent's tasks (the delivery in progress finishes).
    handle.shutdown();
    match tokio::time::timeout(Duration::from_secs(30), agent_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the agent's tasks ended with an error"),
        Ok(Err(e)) => tracing::error!(error = %e, "the agent's tasks ended unexpectedly"),
        Err(_) => tracing::warn!("the agent's tasks did not stop within 30s"),
        Ok(Ok(Ok(()))) => {}
    }
    result
}

struct Supervisor {
    entries: Vec<ExecEnv>,
    settings: ExecSettings,
    poll: Duration,
    program: String,
    argv: Vec<OsString>,
    shared: std::sync::Arc<Shared>,
    signals: child::Forwarded,
}

/// Which re-read is in flight: a poll looks for a change; a settled change is re-read once
/// more and then acted on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reread {
    Poll,
    Settled,
}

/// What a re-read found: the values, and (for a settled change) the purposes' answer.
type RereadOutcome = (Result<Values, FetchError>, Option<Result<(), FetchError>>);

/// How the wait for the first values ended.
enum Start {
    Values(Values),
    /// A stop signal came first: the command never ran.
    Signalled(nix::sys::signal::Signal),
}

impl Supervisor {
    async fn run(
        &mut self,
        agent_task: &tokio::task::JoinHandle<Result<(), crate::AgentError>>,
    ) -> Result<u8, ExecError> {
        let mut current = match self.first_values(agent_task).await? {
            Start::Values(v) => v,
            Start::Signalled(sig) => {
                tracing::info!(%sig, "stopped before the command started");
                return Ok(u8::try_from(128 + sig as i32).unwrap_or(1));
            }
        };
        let mut child = self.spawn(&current)?;
        let far = || Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let mut poll = tokio::time::interval_at(Instant::now() + self.poll, self.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut settle: Option<Instant> = None;
        let mut kill_at: Option<Instant> = None;
        let mut stopping = false;
        let mut last_refusal: Option<String> = None;
        // The re-read in flight. It runs as its own task, beside this loop: a frozen or slow
        // server (each request may take the client's whole timeout) must never hold up a
        // forwarded signal or the child's exit.
        let mut inflight: Option<(Reread, tokio::task::JoinHandle<RereadOutcome>)> = None;
        loop {
            tokio::select! {
                status = child.wait() => {
                    if let Some((_, task)) = inflight.take() {
                        task.abort();
                    }
                    let code = child::exit_code(status.map_err(ExecError::Wait)?);
                    tracing::info!(code, "the command exited; the agent exits with its code");
                    return Ok(code);
                }
                sig = self.signals.recv() => {
                    tracing::info!(%sig, "forwarding the signal to the command");
                    child::send(&child, sig);
                    if child::is_stop(sig) && !stopping {
                        stopping = true;
                        kill_at = Some(Instant::now() + self.settings.kill_timeout);
                        if let Some((_, task)) = inflight.take() {
                            task.abort();
                        }
                    }
                }
                () = tokio::time::sleep_until(kill_at.unwrap_or_else(far)), if kill_at.is_some() => {
                    tracing::warn!(grace_s = self.settings.kill_timeout.as_secs_f32(), "the command is still running after the stop signal: killing it");
                    child::send(&child, nix::sys::signal::Signal::SIGKILL);
                    kill_at = None;
                }
                _ = poll.tick(), if !stopping && settle.is_none() && inflight.is_none() => {
                    inflight = Some((Reread::Poll, self.reread(None)));
                }
                () = tokio::time::sleep_until(settle.unwrap_or_else(far)), if settle.is_some() && !stopping && inflight.is_none() => {
                    settle = None;
                    inflight = Some((Reread::Settled, self.reread(Some(&current))));
                }
                joined = async { (&mut inflight.as_mut().expect("guarded").1).await }, if inflight.is_some() => {
                    let (kind, _) = inflight.take().expect("guarded");
                    let (fetched, purposes) = match joined {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(error = %e, "the re-read of the command's secrets failed; it keeps the values it has");
                            continue;
                        }
                    };
                    let new = match fetched {
                        Ok(new) if !new.same_vars(&current) => new,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not re-read the command's secrets; it keeps the values it has");
                            continue;
                        }
                    };
                    if kind == Reread::Poll {
                        tracing::debug!(debounce_s = self.settings.debounce.as_secs_f32(), "a value changed; acting on it once it settles");
                        settle = Some(Instant::now() + self.settings.debounce);
                        continue;
                    }
                    if let Some(Err(e)) = purposes {
                        let msg = e.to_string();
                        if last_refusal.as_ref() != Some(&msg) {
                            tracing::warn!(error = %msg, "no new value for the command: it keeps running with the values it has");
                            last_refusal = Some(msg);
                        }
                        continue;
                    }
                    last_refusal = None;
                    match self.settings.restart {
                        ExecRestart::Restart => {
                            tracing::info!(variables = %new.names(), versions = %new.versions(), "a value changed: restarting the command");
                            if let Some(sig) = self.stop_for_restart(&mut child).await? {
                                // Stopping the service wins over restarting it: no new child.
                                tracing::info!(%sig, "stop signal during the restart: the command is not started again");
                                stopping = true;
                                kill_at = Some(Instant::now() + self.settings.kill_timeout);
                                continue;
                            }
                            child = self.spawn(&new)?;
                        }
                        ExecRestart::Signal(sig) => {
                            tracing::info!(%sig, versions = %new.versions(), "a value changed: signalling the command (its environment keeps the values it started with)");
                            child::send(&child, sig);
                        }
                    }
                    current = new;
                }
            }
        }
    }

    /// Stops the child for a restart (SIGTERM, `kill_timeout`, SIGKILL) while still listening
    /// for signals: a stop signal that arrives meanwhile is forwarded and returned, and the
    /// caller starts no new child (before, it started one and stopped it again at once).
    /// Other signals are for a child about to be replaced: dropped, with a debug line.
    async fn stop_for_restart(
        &mut self,
        child: &mut tokio::process::Child,
    ) -> Result<Option<nix::sys::signal::Signal>, ExecError> {
        let stop_signal = {
            let stop = child::stop(child, self.settings.kill_timeout);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    status = &mut stop => {
                        let status = status.map_err(ExecError::Wait)?;
                        tracing::debug!(code = child::exit_code(status), "the command stopped for the restart");
                        break None;
                    }
                    sig = self.signals.recv() => {
                        if child::is_stop(sig) {
                            break Some(sig);
                        }
                        tracing::debug!(%sig, "not forwarded: the command is being replaced");
                    }
                }
            }
        };
        if let Some(sig) = stop_signal {
            child::send(child, sig);
        }
        Ok(stop_signal)
    }

    /// Starts a re-read of every entry as its own task; with `held` (a settled change), also
    /// the purposes' consent to replace what the child holds.
    fn reread(&self, held: Option<&Values>) -> tokio::task::JoinHandle<RereadOutcome> {
        let shared = self.shared.clone();
        let entries = self.entries.clone();
        // Only when each held value was written matters to the purpose check.
        let held = held.map(|h| Values {
            issued: h.issued.clone(),
            ..Values::default()
        });
        tokio::spawn(async move {
            let fetched = values::fetch(&shared, &entries).await;
            let purposes = match (&held, &fetched) {
                (Some(held), Ok(_)) => {
                    Some(values::check_purposes(&shared, &entries, Some(held)).await)
                }
                _ => None,
            };
            (fetched, purposes)
        })
    }

    fn spawn(&self, values: &Values) -> Result<tokio::process::Child, ExecError> {
        let child = child::spawn(&self.argv, &values.vars).map_err(|source| ExecError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        tracing::info!(command = %self.program, pid = child.id(), variables = %values.names(), versions = %values.versions(), "command started");
        Ok(child)
    }

    /// Waits for a login, the purposes' consent and every value, retrying with backoff until
    /// `start_timeout`; never starts the command with a variable missing.
    async fn first_values(
        &mut self,
        agent_task: &tokio::task::JoinHandle<Result<(), crate::AgentError>>,
    ) -> Result<Start, ExecError> {
        let deadline = Instant::now() + self.settings.start_timeout;
        let mut wait = Duration::from_millis(250);
        let mut tokens = self.shared.token_receiver();
        loop {
            if agent_task.is_finished() {
                return Err(ExecError::AgentStopped);
            }
            let (shared, entries) = (&self.shared, &self.entries);
            let attempt = async {
                if shared.token_generation() > 0 {
                    values::check_purposes(shared, entries, None).await?;
                }
                values::fetch(shared, entries).await
            };
            // A frozen server must not outlast `start_timeout`, nor hold up a stop signal. Other
            // signals have no child to go to yet: they neither cancel nor restart the attempt
            // (a burst of SIGHUPs must not become a burst of requests).
            tokio::pin!(attempt);
            let attempt: Result<Values, FetchError> = loop {
                tokio::select! {
                    a = &mut attempt => break a,
                    () = tokio::time::sleep_until(deadline) => {
                        return Err(ExecError::Timeout {
                            waited: self.settings.start_timeout,
                            last: "OpenBao did not answer in time".to_owned(),
                        });
                    }
                    sig = self.signals.recv() => {
                        if child::is_stop(sig) {
                            return Ok(Start::Signalled(sig));
                        }
                        tracing::debug!(%sig, "not forwarded: the command has not started yet");
                    }
                }
            };
            let last = match attempt {
                Ok(v) => return Ok(Start::Values(v)),
                Err(e) if e.is_refusal() => return Err(ExecError::Refused(e.to_string())),
                Err(e) => e.to_string(),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ExecError::Timeout {
                    waited: self.settings.start_timeout,
                    last,
                });
            }
            let pause = wait.min(deadline - now);
            tracing::warn!(error = %last, retry_in_s = pause.as_secs_f32(), "the command's secrets are not available yet; it is not started without them");
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // A (new) login: try at once.
                _ = tokens.changed() => {}
                sig = self.signals.recv() => {
                    if child::is_stop(sig) {
                        return Ok(Start::Signalled(sig));
                    }
                }
            }
            wait = (wait * 2).min(Duration::from_secs(16));
        }
    }
}
