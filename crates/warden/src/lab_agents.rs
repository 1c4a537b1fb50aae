//! The lab's agents: every app and proxy of the applied spec, enrolled under `<lab>/hosts/` and
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

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;
use warden_agent::agent::Config;
use warden_agent::agent::health::ADDR_FILE;
use warden_agent::agent::state::StateDir;
use warden_agent::{CertAction, EnrollOptions, EnrollRequest, IdentityLayout, Owner};
use warden_lab::Lab;
use warden_lab::process;
use warden_spec::{Environment, IdentityKind};

use crate::context::Resolved;
use crate::hint::HintExt;
use crate::output::Output;

/// `<lab>/hosts`: the lab's stand-in for the hosts its identities would run on.
pub(crate) const HOSTS_DIR: &str = "hosts";
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

pub(crate) fn hosts_dir(lab: &Lab) -> PathBuf {
    lab.layout().root().join(HOSTS_DIR)
}

/// What `lab up` did about agents.
#[derive(Debug, Serialize)]
pub(crate) struct AgentsUp {
    /// KV paths seeded with a placeholder because they did not exist (`env: path`).
    pub(crate) seeded_secrets: Vec<String>,
    pub(crate) agents: Vec<AgentUp>,
}

/// What `lab up` did for one identity.
#[derive(Debug, Serialize)]
pub(crate) struct AgentUp {
    pub(crate) identity: String,
    pub(crate) env: String,
    pub(crate) dir: PathBuf,
    /// `issued`, `kept`, or `None` when the running agent was left alone.
    pub(crate) enrolled: Option<CertAction>,
    /// Whether an agent process was started now (false: one was already running).
    pub(crate) started: bool,
    pub(crate) pid: u32,
    /// `/health`'s verdict once `lab up` stopped waiting (`ok` when everything was delivered).
    pub(crate) health: Option<String>,
}

/// Starts the lab's agents. With a spec (`lab up` applied one), every app and proxy of its
/// environments is enrolled under `<lab>/hosts` first; without one, the identities already
/// enrolled there are started. Waits until each listens, then (bounded) until each delivered
/// everything, and warns about any that did not.
pub(crate) async fn enroll_and_start(
    resolved: Option<&Resolved>,
    lab: &Lab,
    out: &Output,
) -> anyhow::Result<AgentsUp> {
    let hosts = hosts_dir(lab);
    let mut seeded_secrets = Vec::new();
    if let Some(r) = resolved {
        for env in &r.envs {
            for path in seed_secrets(r, env).await? {
                out.progress(format!("{}: seeded {path}", env.name));
                seeded_secrets.push(format!("{}: {path}", env.name));
            }
        }
    }
    let exe = std::env::current_exe().context("cannot find the running warden binary")?;
    let targets: Vec<(String, String)> = match resolved {
        Some(r) => r
            .envs
            .iter()
            .flat_map(|env| {
                r.spec
                    .identities
                    .iter()
                    .filter(|i| matches!(i.kind, IdentityKind::App | IdentityKind::Proxy))
                    .filter(|i| i.in_env(env.name.as_str()))
                    .map(|i| (env.name.to_string(), i.name.to_string()))
            })
            .collect(),
        None => enrolled(lab)
            .into_iter()
            .map(|e| (e.env, e.identity))
            .collect(),
    };
    let mut started = Vec::new();
    for (env_name, name) in targets {
        let layout = IdentityLayout::under_root(&hosts, &env_name, &name);
        if let Some(pid) = running_agent(&layout) {
            out.progress(format!(
                "{env_name}: the agent of {name} is already running (pid {pid})"
            ));
            started.push(AgentUp {
                identity: name,
                env: env_name,
                dir: layout.dir().to_path_buf(),
                enrolled: None,
                started: false,
                pid,
                health: None,
            });
            continue;
        }
        let enrolled = match resolved {
            Some(r) => {
                let env = r
                    .envs
                    .iter()
                    .find(|e| e.name.as_str() == env_name)
                    .context("environment vanished from the spec")?;
                Some(enroll(r, lab, env, &name, &layout).await?)
            }
            None => None,
        };
        out.progress(format!("{env_name}: starting the agent of {name}"));
        let pid = spawn(&exe, &layout)?;
        started.push(AgentUp {
            identity: name,
            env: env_name,
            dir: layout.dir().to_path_buf(),
            enrolled,
            started: true,
            pid,
            health: None,
        });
    }
    // The agents start concurrently; now wait for each to listen, then for its first delivery.
    for a in &started {
        let layout = IdentityLayout::at(&a.dir);
        wait_listening(&layout, a.pid)
            .await
            .with_context(|| format!("{}: the agent of {} did not start", a.env, a.identity))
            .with_hint(|| {
                format!(
                    "its log is {}; `warden agent --config {} --once -v` runs it in the foreground",
                    layout.state_dir().join(LOG_FILE).display(),
                    layout.agent_config().display()
                )
            })?;
    }
    let deadline = Instant::now() + FIRST_RENDER_TIMEOUT;
    for a in &mut started {
        let layout = IdentityLayout::at(&a.dir);
        if !has_health(&layout) {
            continue;
        }
        loop {
            let verdict = probe(&layout, a.pid).await.map(|h| h.status);
            let done = verdict.as_deref() == Some("ok") || Instant::now() >= deadline;
            a.health = verdict;
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if a.health.as_deref() != Some("ok") {
            out.warn(format!(
                "{}: the agent of {} is running but has not delivered everything ({}); see `warden lab status` and {}",
                a.env,
                a.identity,
                a.health.as_deref().unwrap_or("no answer from /health"),
                layout.state_dir().join(LOG_FILE).display()
            ));
        }
    }
    Ok(AgentsUp {
        seeded_secrets,
        agents: started,
    })
}

/// Writes a placeholder into every secret an app of `env` declares and that does not exist.
/// Returns the KV paths written.
async fn seed_secrets(resolved: &Resolved, env: &Environment) -> anyhow::Result<Vec<String>> {
    let client = resolved.client(env)?;
    let mut seeded = Vec::new();
    let apps = resolved.spec.identities.iter().filter(|i| {
        matches!(i.kind, IdentityKind::App | IdentityKind::Container) && i.in_env(env.name.as_str())
    });
    for app in apps {
        for secret in &app.secrets {
            let entry =
                warden_spec::naming::secret(&resolved.spec.naming, &env.mounts, &app.name, secret);
            let path = entry.data_path();
            match client.read(&path).await {
                Ok(_) => continue,
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e))
                        .with_context(|| format!("{}: could not read {path}", env.name));
                }
            }
            let body = serde_json::json!({
                "options": { "cas": 0 },
                "data": {
                    "lab_placeholder": entry.path,
                    "note": "seeded by `warden lab up`; replace it with `bao kv put`",
                },
            });
            match client.write(&path, &body, warden_bao::Idempotent::No).await {
                Ok(_) => seeded.push(format!("{entry} (a lab placeholder value)")),
                // check-and-set 0 lost a race: someone wrote it meanwhile, which is the point.
                Err(e) if e.status() == Some(400) => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e))
                        .with_context(|| format!("{}: could not seed {path}", env.name));
                }
            }
        }
    }
    seeded.extend(seed_keys_and_domains(resolved, env, &client).await?);
    Ok(seeded)
}

/// The first version of every signing key and domain certificate the spec declares here, so
/// the lab's posture starts from issued credentials rather than `unknown`. Idempotent: an
/// existing key is left alone and a stored certificate is renewed only when due.
async fn seed_keys_and_domains(
    resolved: &Resolved,
    env: &Environment,
    client: &warden_bao::Client,
) -> anyhow::Result<Vec<String>> {
    let spec = &resolved.spec;
    let mut seeded = Vec::new();
    for app in spec.identities_in(env.name.as_str()) {
        for key in &app.signing_keys {
            let config = warden_keys::SigningKeyConfig::from_spec(spec, env, &app.name, key);
            let current = warden_keys::current_version(client, &config.location)
                .await
                .with_context(|| format!("{}: could not read {}", env.name, config.location))?;
            if current == 0 {
                warden_keys::rotate_if_current(client, &config, &warden_keys::SystemClock, 0)
                    .await
                    .with_context(|| {
                        format!("{}: could not create {}", env.name, config.location)
                    })?;
                seeded.push(format!("{} (first key version)", config.location));
            }
        }
    }
    let store = warden_keys::DomainStore::new(
        client.clone(),
        env.mounts.kv.as_str(),
        std::sync::Arc::new(warden_keys::SystemClock),
    );
    let issuer = warden_keys::PkiIssuer::new(client.clone(), env.mounts.pki.as_str());
    for d in spec
        .domains
        .iter()
        .filter(|d| d.environments.contains(&env.name))
    {
        let r = store
            .renew_if_due(d, &issuer, false)
            .await
            .with_context(|| {
                format!(
                    "{}: could not issue the certificate of {}",
                    env.name, d.domain
                )
            })?;
        if r.renewed {
            seeded.push(format!(
                "{}/{} (issued by the environment's PKI)",
                env.mounts.kv,
                d.kv_path()
            ));
        }
    }
    Ok(seeded)
}

/// Removes every reload command from a lab agent's `agent.toml` (see the module documentation).
fn strip_reloads(layout: &IdentityLayout) -> anyhow::Result<()> {
    let path = layout.agent_config();
    let mut cfg = warden_agent::AgentConfig::load(&path)
        .with_context(|| format!("could not read {}", path.display()))?;
    if cfg.outputs.iter().all(|o| o.reload.is_none()) {
        return Ok(());
    }
    for o in &mut cfg.outputs {
        o.reload = None;
    }
    let text = cfg
        .to_toml(&path)
        .with_context(|| format!("could not rewrite {}", path.display()))?;
    let text = format!(
        "# Lab: the spec's reload commands were removed (a lab never reloads the host's real services).\n{text}"
    );
    warden_files::write_atomic(&path, text.as_bytes(), warden_files::Mode::Public)
        .with_context(|| format!("could not rewrite {}", path.display()))
}

/// `warden identity enroll NAME --env E --lab <lab> --root-dir <lab>/hosts`, as a library call.
async fn enroll(
    resolved: &Resolved,
    lab: &Lab,
    env: &Environment,
    name: &str,
    layout: &IdentityLayout,
) -> anyhow::Result<CertAction> {
    let env_name = env.name.as_str();
    let ca_path = lab.layout().env(env_name).ca_bundle();
    let trust_anchor = std::fs::read_to_string(&ca_path).with_context(|| {
        format!(
            "{env_name}: could not read the lab's CA bundle {}",
            ca_path.display()
        )
    })?;
    let client = resolved.client(env)?;
    let request = EnrollRequest {
        spec: &resolved.spec,
        env,
        identity: name,
        trust_anchor_pem: &trust_anchor,
        layout,
    };
    let options = EnrollOptions {
        force: false,
        owner: Owner::CurrentUser,
    };
    let report = warden_agent::enroll(&client, &request, &options)
        .await
        .with_context(|| format!("{env_name}: could not enroll {name} in {}", layout.dir().display()))
        .with_hint(|| {
            format!(
                "`warden identity enroll {name} --env {env_name} --lab {} --root-dir {} -v` shows the steps",
                lab.layout().root().display(),
                layout.dir().parent().and_then(Path::parent).unwrap_or(layout.dir()).display()
            )
        })?;
    strip_reloads(layout)?;
    Ok(report.action)
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

fn spawn(exe: &Path, layout: &IdentityLayout) -> anyhow::Result<u32> {
    let state = layout.state_dir();
    warden_files::ensure_private_dir(&state)
        .with_context(|| format!("could not create {}", state.display()))?;
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
    .with_context(|| format!("could not start the agent in {}", layout.dir().display()))
}

/// Waits until the agent `pid` listens on the address it recorded in `state/health.addr` (a
/// file left by an earlier run does not count: the socket must be this process's).
async fn wait_listening(layout: &IdentityLayout, pid: u32) -> anyhow::Result<()> {
    let start = Instant::now();
    let addr_file = layout.state_dir().join(ADDR_FILE);
    let has_health = has_health(layout);
    loop {
        if !process::is_alive(pid) {
            anyhow::bail!(
                "it exited; last lines of its log:\n{}",
                log_tail(&layout.state_dir().join(LOG_FILE), 15)
            );
        }
        if !has_health {
            return Ok(());
        }
        if let Some(addr) = warden_agent::agent::health::read_addr_file(&addr_file)
            && process::pid_listens_on(pid, addr.port()).unwrap_or(false)
        {
            return Ok(());
        }
        if start.elapsed() > START_TIMEOUT {
            anyhow::bail!(
                "it did not listen on its health endpoint within {START_TIMEOUT:?}; last lines of its log:\n{}",
                log_tail(&layout.state_dir().join(LOG_FILE), 15)
            );
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
pub(crate) async fn stop_all(lab: &Lab) -> anyhow::Result<Vec<String>> {
    let mut stopped = Vec::new();
    for layout in enrolled(lab) {
        if let Some(pid) = running_agent(&layout.layout) {
            process::stop(pid, STOP_GRACE).await.with_context(|| {
                format!(
                    "could not stop the agent of {} (pid {pid})",
                    layout.identity
                )
            })?;
            stopped.push(format!("{}/{}", layout.env, layout.identity));
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

/// One agent in `lab status`.
#[derive(Debug, Serialize)]
pub(crate) struct AgentStatus {
    pub(crate) identity: String,
    pub(crate) env: String,
    pub(crate) kind: Option<String>,
    pub(crate) dir: PathBuf,
    pub(crate) running: bool,
    pub(crate) pid: Option<u32>,
    /// `http://127.0.0.1:PORT/health` while running.
    pub(crate) health_url: Option<String>,
    /// `/health`'s verdict: `ok`, `degraded`, `failing`; `None` when it did not answer.
    pub(crate) health: Option<String>,
    pub(crate) control_socket: Option<PathBuf>,
    pub(crate) log: PathBuf,
    pub(crate) outputs: Vec<AgentOutput>,
    pub(crate) error: Option<String>,
}

/// One output of an agent, from its state file (and the live agent when it answers).
#[derive(Debug, Serialize)]
pub(crate) struct AgentOutput {
    pub(crate) name: String,
    pub(crate) kind: String,
    /// From the live agent: fresh, pending, stale, failing.
    pub(crate) state: Option<String>,
    pub(crate) serial: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) not_after: Option<OffsetDateTime>,
    pub(crate) expires_in_seconds: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) delivered_at: Option<OffsetDateTime>,
}

impl AgentStatus {
    /// Running; what it delivers is reported separately.
    pub(crate) fn healthy(&self) -> bool {
        self.running
    }
}

/// The agents of environment `env` (read-only).
pub(crate) async fn status(lab: &Lab, env: &str) -> Vec<AgentStatus> {
    let mut all = Vec::new();
    for e in enrolled(lab).into_iter().filter(|e| e.env == env) {
        all.push(agent_status(e).await);
    }
    all
}

async fn agent_status(e: Enrolled) -> AgentStatus {
    let layout = &e.layout;
    let pid = running_agent(layout);
    let mut st = AgentStatus {
        identity: e.identity.clone(),
        env: e.env.clone(),
        kind: None,
        dir: layout.dir().to_path_buf(),
        running: pid.is_some(),
        pid,
        health_url: None,
        health: None,
        control_socket: None,
        log: layout.state_dir().join(LOG_FILE),
        outputs: Vec::new(),
        error: None,
    };
    let config = match Config::load(&layout.agent_config()) {
        Ok(c) => c,
        Err(err) => {
            st.error = Some(err.to_string());
            return st;
        }
    };
    st.kind = Some(config.identity.kind.as_str().to_owned());
    st.control_socket = config.control.as_ref().map(|c| c.socket.clone());
    let now = OffsetDateTime::now_utc();
    let state = StateDir::new(&config.state_dir);
    let live = match pid {
        Some(pid) => probe(layout, pid).await,
        None => None,
    };
    if let Some(h) = &live {
        st.health_url = Some(format!("http://{}/health", h.addr));
        st.health = Some(h.status.clone());
    }
    for o in &config.outputs {
        let recorded = state.load(&o.name);
        let rec = recorded.as_ref();
        let live_state = live.as_ref().and_then(|h| {
            h.outputs
                .iter()
                .find(|v| v["name"] == o.name.as_str())
                .and_then(|v| v["state"].as_str().map(str::to_owned))
        });
        let not_after = rec.and_then(|r| r.not_after);
        st.outputs.push(AgentOutput {
            name: o.name.clone(),
            kind: o.type_name().to_owned(),
            state: live_state,
            serial: rec.and_then(|r| r.serial.clone()),
            not_after,
            expires_in_seconds: not_after.map(|t| (t - now).whole_seconds()),
            delivered_at: rec.and_then(|r| r.delivered_at),
        });
    }
    st
}

/// What `/health` said.
struct Probe {
    addr: std::net::SocketAddr,
    status: String,
    outputs: Vec<serde_json::Value>,
}

/// Asks the agent's `/health`, if the address it recorded is held by `pid` (never by a process
/// that happens to own the port now).
async fn probe(layout: &IdentityLayout, pid: u32) -> Option<Probe> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = warden_agent::agent::health::read_addr_file(&layout.state_dir().join(ADDR_FILE))?;
    if !process::pid_listens_on(pid, addr.port()).unwrap_or(false) {
        return None;
    }
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.take(1 << 20).read_to_end(&mut buf).await.ok()?;
        Some(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .ok()??;
    let text = String::from_utf8_lossy(&buf);
    let (_, body) = text.split_once("\r\n\r\n")?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(Probe {
        addr,
        status: v["status"].as_str()?.to_owned(),
        outputs: v["outputs"].as_array().cloned().unwrap_or_default(),
    })
}

/// The agents table of `lab status` (empty when there are none).
pub(crate) fn table(agents: &[&AgentStatus]) -> String {
    use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
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

/// `3d 4h`, `5h 12m`, `42s`, `expired 3m ago`.
fn human(secs: i64) -> String {
    if secs < 0 {
        return format!("expired {} ago", human(-secs));
    }
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_human_wrote_them() {
        assert_eq!(human(42), "42s");
        assert_eq!(human(61), "1m");
        assert_eq!(human(3 * 3600 + 60 * 7), "3h 7m");
        assert_eq!(human(3 * 86_400 + 3600), "3d 1h");
        assert_eq!(human(-120), "expired 2m ago");
    }

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
