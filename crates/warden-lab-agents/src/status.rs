//! What `warden lab status` shows of each agent: running or not, its `/health` verdict, and
//! every output with what was delivered (read-only).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use warden_agent::Config;
use warden_agent::health::ADDR_FILE;
use warden_agent::state::StateDir;
use warden_enroll::IdentityLayout;

use super::{Enrolled, LOG_FILE, enrolled, running_agent};
use warden_lab::{Lab, process};

/// One agent in `lab status`.
#[derive(Debug, Serialize)]
pub struct AgentStatus {
    /// The identity's name.
    pub identity: String,
    /// The environment it was enrolled in.
    pub env: String,
    /// `app` or `proxy`, from its `agent.toml`; `None` when that cannot be read.
    pub kind: Option<String>,
    /// Its directory, `<lab>/hosts/<env>/<identity>`.
    pub dir: PathBuf,
    /// Whether its agent process is alive (and really its agent, not a recycled PID).
    pub running: bool,
    /// The agent's process id while it runs.
    pub pid: Option<u32>,
    /// `http://127.0.0.1:PORT/health` while running.
    pub health_url: Option<String>,
    /// `/health`'s verdict: `ok`, `degraded`, `failing`; `None` when it did not answer.
    pub health: Option<String>,
    /// The control socket for `warden agent status | rotate --socket …`, if configured.
    pub control_socket: Option<PathBuf>,
    /// The agent's log file.
    pub log: PathBuf,
    /// Every output its `agent.toml` declares.
    pub outputs: Vec<AgentOutput>,
    /// Why its `agent.toml` could not be read; the other fields are then mostly empty.
    pub error: Option<String>,
}

/// One output of an agent, from its state file (and the live agent when it answers).
#[derive(Debug, Serialize)]
pub struct AgentOutput {
    /// The output's name in `agent.toml`.
    pub name: String,
    /// What it delivers: `certificate`, `template` or `ca_chain`.
    pub kind: String,
    /// From the live agent: fresh, pending, stale, failing.
    pub state: Option<String>,
    /// Serial of the delivered certificate, for certificate outputs.
    pub serial: Option<String>,
    /// When the delivered certificate expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// Seconds from now until `not_after` (negative once expired).
    pub expires_in_seconds: Option<i64>,
    /// When the agent last delivered it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
}

impl AgentStatus {
    /// Running; what it delivers is reported separately.
    pub fn healthy(&self) -> bool {
        self.running
    }
}

/// The agents of environment `env` (read-only).
pub async fn status(lab: &Lab, env: &str) -> Vec<AgentStatus> {
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
pub(super) struct Probe {
    addr: std::net::SocketAddr,
    pub(super) status: String,
    outputs: Vec<serde_json::Value>,
}

/// Asks the agent's `/health`, if the address it recorded is held by `pid` (never by a process
/// that happens to own the port now).
pub(super) async fn probe(layout: &IdentityLayout, pid: u32) -> Option<Probe> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = warden_agent::health::read_addr_file(&layout.state_dir().join(ADDR_FILE))?;
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
