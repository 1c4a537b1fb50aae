//! `warden-lab-agents`: the lab's hosts. Every app and proxy of the applied spec, enrolled under `<lab>/hosts/` and
//! run as a detached `warden agent`, so `warden lab up` shows the whole runtime path — login,
//! issuance, delivery, renewal — and not only the servers.
//!
//! ```text
//! <lab>/hosts/<env>/<identity>/   exactly what `warden identity enroll NAME --env E
//!                                   --lab <lab> --root-dir <lab>/hosts` lays out
//!   agent.toml, identity/, trust/, out/
//!   state/agent.pid, agent.log    the lab's bookkeeping of the agent process
//!   state/health.addr             where its /health and /metrics answer
//!   state/control.sock            `warden agent status | rotate --socket …`
//!   state/<output>.json           what was delivered (serial, expiry, digests)
//! ```
//!
//! Two things differ from a real host, both because this is a lab on someone's workstation:
//!
//! * the spec's reload commands (`systemctl reload billing`, `… nginx`) are removed from the
//!   lab agents' `agent.toml`: a lab must never reload a real service of the machine it runs
//!   on (as root it could);
//! * each app's declared secrets that do not exist yet are seeded with a placeholder value
//!   (`{"lab_placeholder": …}`, written with check-and-set 0 so an existing secret is never
//!   overwritten), so its template outputs have something to render. Nothing secret is in
//!   them; replace them with `bao kv put` to see an agent pick up a change.
//!
//! Idempotent like the rest of `lab up`: an identity whose agent is running is left alone (the
//! agent renews its own identity; enrolling again could only get in its way), one whose agent
//! is not running is enrolled again (which keeps a still-valid certificate) and started.
//!
//! A PID file is trusted only when the process it names is alive and its command line is
//! `… agent --config <that identity's agent.toml>`: a recycled PID is never signalled.
//!
//! This crate returns typed results and errors and prints nothing: `warden lab` reports them
//! and adds what to do next. Progress goes through [`warden_lab::Progress`].
//!
//! Submodules: `seed` (placeholder secrets, first signing keys and domain certificates) and
//! `status` (what `lab status` shows of each agent).

pub mod container;
mod seed;
mod status;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use warden_agent::Config;
use warden_agent::health::ADDR_FILE;
use warden_enroll::{CertAction, EnrollOptions, EnrollRequest, IdentityLayout, Owner};
use warden_spec::{Environment, IdentityKind, Spec};

use warden_lab::{Lab, Progress, process};

pub use status::{AgentOutput, AgentStatus, status};

/// `<lab>/hosts`: the lab's stand-in for the hosts its identities would run on.
pub const HOSTS_DIR: &str = "hosts";
/// The agent's PID file and log, under its `state/`.
const PID_FILE: &str = "agent.pid";
const LOG_FILE: &str = "agent.log";
/// How long a started agent has to listen on its health endpoint.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `lab up` then waits for every output's first delivery before reporting what it has.
const FIRST_RENDER_TIMEOUT: Duration = Duration::from_secs(30);
/// SIGTERM grace before SIGKILL when stopping an agent.
const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// `<lab>/hosts`.
pub fn hosts_dir(lab: &Lab) -> PathBuf {
    lab.layout().root().join(HOSTS_DIR)
}

/// Writes `pem` as the trust file of the lab's environment `env` — what its API clients trust
/// (`<lab>/<env>/tls/ca.pem`) and every enrolled host's `trust/ca.pem` under
/// `<lab>/hosts/<env>/` — the lab's stand-in for an operator shipping a new trust bundle during
/// a root rollover (ADR 0030). Running agents re-read it. Returns the files written.
pub fn write_trust_files(lab: &Lab, env: &str, pem: &str) -> Result<Vec<PathBuf>, AgentsError> {
    let mut text = pem.trim_end().to_owned();
    text.push('\n');
    let mut files = vec![lab.layout().env(env).ca_bundle()];
    if let Ok(hosts) = std::fs::read_dir(hosts_dir(lab).join(env)) {
        let mut dirs: Vec<PathBuf> = hosts.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        files.extend(
            dirs.into_iter()
                .map(|d| IdentityLayout::at(&d).ca_bundle())
                .filter(|f| f.is_file()),
        );
    }
    for f in &files {
        warden_files::write_atomic(f, text.as_bytes(), warden_files::Mode::Public).map_err(
            |e| AgentsError::AgentConfig {
                path: f.clone(),
                source: Box::new(e),
            },
        )?;
    }
    Ok(files)
}

/// The spec `lab up` applied, and the environments of it the lab has.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// The spec.
    pub spec: &'a Spec,
    /// Its environments that exist in the lab.
    pub envs: &'a [Environment],
}

/// Why the lab's agents could not be enrolled, started or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentsError {
    /// No operator client for an environment of the spec (the lab lacks it).
    #[error("{env}: no such environment in the lab: {source}")]
    Client {
        /// Environment.
        env: String,
        /// The lab's error.
        #[source]
        source: Box<warden_lab::Error>,
    },
    /// Reading or seeding a secret, signing key or domain certificate in OpenBao failed.
    #[error("{env}: could not {what}: {source}")]
    Seed {
        /// Environment.
        env: String,
        /// What was being done, with its path (`read kvv2/data/billing/config`).
        what: String,
        /// The client's or store's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lab's CA bundle, which enrolled hosts trust, could not be read.
    #[error("{env}: could not read the lab's CA bundle {}: {source}", path.display())]
    CaBundle {
        /// Environment.
        env: String,
        /// The bundle.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Enrolling an identity under `<lab>/hosts` failed.
    #[error("{env}: could not enroll {identity} in {}: {source}", dir.display())]
    Enroll {
        /// Environment.
        env: String,
        /// Identity.
        identity: String,
        /// Its directory.
        dir: PathBuf,
        /// The enrollment error.
        #[source]
        source: Box<warden_enroll::Error>,
    },
    /// An agent's `agent.toml` could not be read or rewritten without reload commands.
    #[error("could not rewrite {}: {source}", path.display())]
    AgentConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An agent process could not be started.
    #[error("could not start the agent in {}: {source}", dir.display())]
    Spawn {
        /// The identity directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A started agent exited, or did not listen on its health endpoint in time.
    #[error("{env}: the agent of {identity} did not start: {reason}")]
    NotStarted {
        /// Environment.
        env: String,
        /// Identity.
        identity: String,
        /// What happened (`it exited`, or the timeout), with the last lines of its log.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// Its `agent.toml`, for running it in the foreground.
        config: PathBuf,
    },
    /// An agent could not be stopped.
    #[error("could not stop the agent of {identity} (pid {pid}): {source}")]
    Stop {
        /// `env/identity`.
        identity: String,
        /// Its PID.
        pid: u32,
        /// Why.
        #[source]
        source: process::ProcessError,
    },
}

/// What `lab up` did about agents.
#[derive(Debug, Serialize)]
pub struct AgentsUp {
    /// KV paths seeded with a placeholder because they did not exist (`env: path`).
    pub seeded_secrets: Vec<String>,
    /// One entry per identity whose agent runs now, started or found running.
    pub agents: Vec<AgentUp>,
    /// Transport certificates issued for CI runners (`env: holder: dir`): a lab CI job passes
    /// the directory as `--transport DIR` (ADR 0010).
    pub runner_transports: Vec<String>,
}

/// What `lab up` did for one identity.
#[derive(Debug, Serialize)]
pub struct AgentUp {
    /// The identity's name.
    pub identity: String,
    /// The environment it was enrolled in.
    pub env: String,
    /// Its directory, `<lab>/hosts/<env>/<identity>`.
    pub dir: PathBuf,
    /// `issued`, `kept`, or `None` when the running agent was left alone.
    pub enrolled: Option<CertAction>,
    /// Whether an agent process was started now (false: one was already running).
    pub started: bool,
    /// The agent's process id.
    pub pid: u32,
    /// `/health`'s verdict once `lab up` stopped waiting (`ok` when everything was delivered).
    pub health: Option<String>,
    /// Whether its `agent.toml` has a `[health]` endpoint (`lab up` waits only on those).
    #[serde(skip)]
    pub has_health: bool,
}

impl AgentUp {
    /// Whether it has a health endpoint and `/health` did not say everything was delivered
    /// before `lab up` stopped waiting.
    pub fn undelivered(&self) -> bool {
        self.has_health && self.health.as_deref() != Some("ok")
    }

    /// The agent's log file.
    pub fn log(&self) -> PathBuf {
        IdentityLayout::at(&self.dir).state_dir().join(LOG_FILE)
    }
}

/// Starts the lab's agents. With the spec `lab up` applied, every app and proxy of its
/// environments is enrolled under `<lab>/hosts` first (and their missing secrets, signing keys
/// and domain certificates seeded); without one, the identities already enrolled there are
/// started. `exe` is the `warden` binary the agents run as (`warden agent --config …`). Waits
/// until each listens, then (bounded) until each delivered everything: an agent that did not
/// is reported with its `/health` verdict in [`AgentUp::health`], not as an error.
pub async fn enroll_and_start(
    lab: &Lab,
    applied: Option<Applied<'_>>,
    exe: &Path,
    progress: &dyn Progress,
) -> Result<AgentsUp, AgentsError> {
    let mut seeded_secrets = Vec::new();
    if let Some(a) = applied {
        for env in a.envs {
            for path in seed::seed(lab, a.spec, env).await? {
                progress.step(env.name.as_str(), &format!("seeded {path}"));
                seeded_secrets.push(format!("{}: {path}", env.name));
            }
        }
    }
    // Runners carrying pipelines get their transport certificate, so the lab's CI jobs
    // (`warden ci login --transport DIR`) never borrow the operator's.
    let mut runner_transports = Vec::new();
    if let Some(a) = applied {
        for env in a.envs {
            let carries_pipeline = |h: &&warden_spec::TransportHolder| {
                h.carries.iter().any(|c| {
                    a.spec.identity(c.as_str()).is_some_and(|i| {
                        i.kind == IdentityKind::Pipeline && i.in_env(env.name.as_str())
                    })
                })
            };
            for holder in a
                .spec
                .transport_in(env.name.as_str())
                .filter(carries_pipeline)
            {
                let client = operator_client(lab, env.name.as_str())?;
                let files = container::issue_for(lab, &client, env, holder).await?;
                let dir = files
                    .cert
                    .parent()
                    .unwrap_or(Path::new("."))
                    .display()
                    .to_string();
                progress.step(
                    env.name.as_str(),
                    &format!("transport certificate of runner {} in {dir}", holder.name),
                );
                runner_transports.push(format!("{}: {}: {dir}", env.name, holder.name));
            }
        }
    }
    let mut started = Vec::new();
    for (env_name, name) in targets(lab, applied) {
        let layout = IdentityLayout::under_root(&hosts_dir(lab), &env_name, &name);
        if let Some(pid) = running_agent(&layout) {
            progress.step(
                &env_name,
                &format!("the agent of {name} is already running (pid {pid})"),
            );
            started.push(AgentUp {
                identity: name,
                env: env_name,
                dir: layout.dir().to_path_buf(),
                enrolled: None,
                started: false,
                pid,
                health: None,
                has_health: false,
            });
            continue;
        }
        let enrolled = match applied {
            Some(a) => {
                let env = a
                    .envs
                    .iter()
                    .find(|e| e.name.as_str() == env_name)
                    .expect("targets come from these environments");
                match a.spec.identity(&name).map(|i| i.kind) {
                    Some(IdentityKind::Container) => {
                        let files = container::prepare(lab, a.spec, env, &name, &layout).await?;
                        progress.step(
                            &env_name,
                            &format!(
                                "{name}: wrapped secret-id and its host's transport certificate ({}) in place",
                                files.cert.display()
                            ),
                        );
                        None
                    }
                    _ => Some(enroll(lab, a.spec, env, &name, &layout).await?),
                }
            }
            None => None,
        };
        progress.step(&env_name, &format!("starting the agent of {name}"));
        let pid = spawn(exe, &layout)?;
        started.push(AgentUp {
            identity: name,
            env: env_name,
            dir: layout.dir().to_path_buf(),
            enrolled,
            started: true,
            pid,
            health: None,
            has_health: false,
        });
    }
    // The agents start concurrently; now wait for each to listen, then for its first delivery.
    for a in &started {
        wait_listening(a).await?;
    }
    let deadline = Instant::now() + FIRST_RENDER_TIMEOUT;
    for a in &mut started {
        let layout = IdentityLayout::at(&a.dir);
        a.has_health = has_health(&layout);
        if !a.has_health {
            continue;
        }
        loop {
            let verdict = status::probe(&layout, a.pid).await.map(|h| h.status);
            let done = verdict.as_deref() == Some("ok") || Instant::now() >= deadline;
            a.health = verdict;
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(AgentsUp {
        seeded_secrets,
        agents: started,
        runner_transports,
    })
}

/// `(env, identity)` of every agent to run: each app and proxy of the applied spec and each
/// container a transport holder carries (ADR 0010), else every identity already enrolled
/// under `<lab>/hosts`.
fn targets(lab: &Lab, applied: Option<Applied<'_>>) -> Vec<(String, String)> {
    match applied {
        Some(a) => a
            .envs
            .iter()
            .flat_map(|env| {
                a.spec
                    .identities
                    .iter()
                    .filter(|i| i.in_env(env.name.as_str()))
                    .filter(|i| match i.kind {
                        IdentityKind::App | IdentityKind::Proxy => true,
                        IdentityKind::Container => {
                            container::holder_of(a.spec, env.name.as_str(), i.name.as_str())
                                .is_some()
                        }
                        IdentityKind::Pipeline => false,
                    })
                    .map(|i| (env.name.to_string(), i.name.to_string()))
            })
            .collect(),
        None => enrolled(lab)
            .into_iter()
            .map(|e| (e.env, e.identity))
            .collect(),
    }
}

/// Removes every reload command from a lab agent's `agent.toml` (see the module documentation).
fn strip_reloads(layout: &IdentityLayout) -> Result<(), AgentsError> {
    let path = layout.agent_config();
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| AgentsError::AgentConfig {
        path: path.clone(),
        source,
    };
    let mut cfg = warden_enroll::AgentConfig::load(&path).map_err(|e| failed(Box::new(e)))?;
    if cfg.outputs.iter().all(|o| o.reload.is_none()) {
        return Ok(());
    }
    for o in &mut cfg.outputs {
        o.reload = None;
    }
    let text = cfg.to_toml(&path).map_err(|e| failed(Box::new(e)))?;
    let text = format!(
        "# Lab: the spec's reload commands were removed (a lab never reloads the host's real services).\n{text}"
    );
    warden_files::write_atomic(&path, text.as_bytes(), warden_files::Mode::Public)
        .map_err(|e| failed(Box::new(e)))
}

/// `warden identity enroll NAME --env E --lab <lab> --root-dir <lab>/hosts`, as a library call.
async fn enroll(
    lab: &Lab,
    spec: &Spec,
    env: &Environment,
    name: &str,
    layout: &IdentityLayout,
) -> Result<CertAction, AgentsError> {
    let env_name = env.name.as_str();
    let ca_path = lab.layout().env(env_name).ca_bundle();
    let trust_anchor =
        std::fs::read_to_string(&ca_path).map_err(|source| AgentsError::CaBundle {
            env: env_name.to_owned(),
            path: ca_path.clone(),
            source,
        })?;
    let client = operator_client(lab, env_name)?;
    let request = EnrollRequest {
        spec,
        env,
        identity: name,
        trust_anchor_pem: &trust_anchor,
        layout,
    };
    let options = EnrollOptions {
        force: false,
        owner: Owner::CurrentUser,
    };
    let report = warden_enroll::enroll(&client, &request, &options)
        .await
        .map_err(|source| AgentsError::Enroll {
            env: env_name.to_owned(),
            identity: name.to_owned(),
            dir: layout.dir().to_path_buf(),
            source: Box::new(source),
        })?;
    strip_reloads(layout)?;
    Ok(report.action)
}

/// The lab's operator client for `env`.
fn operator_client(lab: &Lab, env: &str) -> Result<warden_bao::Client, AgentsError> {
    lab.operator_client(env)
        .map_err(|source| AgentsError::Client {
            env: env.to_owned(),
            source: Box::new(source),
        })
}

fn pid_file(layout: &IdentityLayout) -> PathBuf {
    layout.state_dir().join(PID_FILE)
}

/// The PID of this identity's running agent, if one runs: alive, and started as
/// `… agent --config <its agent.toml>`.
fn running_agent(layout: &IdentityLayout) -> Option<u32> {
    let pid = process::read_pid_file(&pid_file(layout))?;
    if !process::is_alive(pid) {
        return None;
    }
    let argv = process::process_cmdline(pid)?;
    let config = layout.agent_config().into_os_string();
    let is_agent = argv.iter().any(|a| a == "agent")
        && argv
            .windows(2)
            .any(|w| w[0] == "--config" && w[1] == config);
    is_agent.then_some(pid)
}

fn spawn(exe: &Path, layout: &IdentityLayout) -> Result<u32, AgentsError> {
    let state = layout.state_dir();
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| AgentsError::Spawn {
        dir: layout.dir().to_path_buf(),
        source,
    };
    warden_files::ensure_private_dir(&state).map_err(|e| failed(Box::new(e)))?;
    let args: Vec<OsString> = vec![
        "-v".into(),
        "agent".into(),
        "--config".into(),
        layout.agent_config().into_os_string(),
    ];
    // A log file is not a terminal: no colour codes in it.
    let env: [(OsString, OsString); 1] = [("NO_COLOR".into(), "1".into())];
    process::spawn_detached(
        exe,
        &args,
        &env,
        layout.dir(),
        &state.join(LOG_FILE),
        &pid_file(layout),
    )
    .map_err(|e| failed(Box::new(e)))
}

/// Waits until agent `a` listens on the address it recorded in `state/health.addr` (a file
/// left by an earlier run does not count: the socket must be this process's).
async fn wait_listening(a: &AgentUp) -> Result<(), AgentsError> {
    let layout = IdentityLayout::at(&a.dir);
    let start = Instant::now();
    let addr_file = layout.state_dir().join(ADDR_FILE);
    let has_health = has_health(&layout);
    let not_started = |what: String| AgentsError::NotStarted {
        env: a.env.clone(),
        identity: a.identity.clone(),
        reason: format!(
            "{what}; last lines of its log:\n{}",
            log_tail(&layout.state_dir().join(LOG_FILE), 15)
        ),
        log: layout.state_dir().join(LOG_FILE),
        config: layout.agent_config(),
    };
    loop {
        if !process::is_alive(a.pid) {
            return Err(not_started("it exited".to_owned()));
        }
        if !has_health {
            return Ok(());
        }
        if let Some(addr) = warden_agent::health::read_addr_file(&addr_file)
            && process::pid_listens_on(a.pid, addr.port()).unwrap_or(false)
        {
            return Ok(());
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(not_started(format!(
                "it did not listen on its health endpoint within {START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the agent's config has a `[health]` endpoint to wait for (assumed when the config
/// cannot be read: the agent will say what is wrong with it in its log).
fn has_health(layout: &IdentityLayout) -> bool {
    Config::load(&layout.agent_config()).map_or(true, |c| c.health.is_some())
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Stops every lab agent (before the servers go down, so none of them spends its backoff on a
/// vanished server). Returns `env/identity` of each one stopped.
pub async fn stop_all(lab: &Lab) -> Result<Vec<String>, AgentsError> {
    let mut stopped = Vec::new();
    for e in enrolled(lab) {
        if let Some(pid) = running_agent(&e.layout) {
            process::stop(pid, STOP_GRACE)
                .await
                .map_err(|source| AgentsError::Stop {
                    identity: e.identity.clone(),
                    pid,
                    source,
                })?;
            stopped.push(format!("{}/{}", e.env, e.identity));
        }
    }
    Ok(stopped)
}

/// An identity directory found under `<lab>/hosts/<env>/`.
struct Enrolled {
    env: String,
    identity: String,
    layout: IdentityLayout,
}

/// Every `<lab>/hosts/<env>/<identity>/agent.toml`, for the lab's environments, sorted.
fn enrolled(lab: &Lab) -> Vec<Enrolled> {
    let hosts = hosts_dir(lab);
    let mut found = Vec::new();
    for env in &lab.config().environments {
        let Ok(entries) = std::fs::read_dir(hosts.join(&env.name)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("agent.toml").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            found.push(Enrolled {
                env: env.name.clone(),
                layout: IdentityLayout::under_root(&hosts, &env.name, &name),
                identity: name,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_naming_another_program_is_not_an_agent() {
        let dir = tempfile::tempdir().unwrap();
        let layout = IdentityLayout::at(dir.path());
        std::fs::create_dir_all(layout.state_dir()).unwrap();
        // Our own PID is alive, but our command line is the test binary, not an agent.
        std::fs::write(pid_file(&layout), format!("{}\n", std::process::id())).unwrap();
        assert_eq!(running_agent(&layout), None);
        std::fs::write(pid_file(&layout), "999999999\n").unwrap();
        assert_eq!(running_agent(&layout), None);
    }
}
