//! The full TLS + mTLS mode: a throwaway Warden lab (offline root, per-environment OpenBao
//! servers with HTTPS + client-certificate listeners, Shamir init and unseal, PKI intermediate)
//! in a temporary directory, stopped and deleted when the guard drops, also on panic.
//!
//! It is built with the same code as `warden lab up`, so tests exercise exactly what operators
//! run.

use std::path::Path;

use warden_lab::{Lab, NewLabOptions, Quiet};

/// A running lab owned by one test.
pub struct LabEnv {
    lab: Lab,
    // Declared after `lab` so the directory outlives the servers' shutdown in `Drop`.
    dir: tempfile::TempDir,
}

/// The name constraints `warden lab up` gives each environment's PKI intermediate for the
/// example platform (`EXAMPLE_SPEC`).
pub fn example_permitted_dns() -> std::collections::BTreeMap<String, Vec<String>> {
    let spec = warden_spec::parse(crate::EXAMPLE_SPEC_TEXT, "examples/lab/warden.toml")
        .expect("the example spec parses");
    warden_lab::permitted_dns_from_spec(&spec)
}

impl LabEnv {
    /// Starts a lab with the given environments (for example `&["test", "prod"]`). Panics with
    /// the lab's error if anything fails: this is a test harness.
    pub async fn start(environments: &[&str]) -> Self {
        Self::start_with_nodes(environments, 1).await
    }

    /// Starts a lab whose environments each run `nodes` OpenBao nodes as one raft cluster.
    pub async fn start_with_nodes(environments: &[&str], nodes: u8) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("warden-lab-")
            .tempdir()
            .expect("create a temporary lab directory");
        let options = NewLabOptions {
            environments: environments.iter().map(|s| (*s).to_owned()).collect(),
            nodes,
            // Tests that seal a server need the harness token (see `harness_client`).
            test_harness_token: true,
            // The example platform's names, as `warden lab up` signs them (ADR 0013).
            permitted_dns: example_permitted_dns(),
            ..NewLabOptions::default()
        };
        let root = dir.path().join("lab");
        // A port `free_ports` found free can be taken by another test's outgoing connection
        // before a node binds it (the same race `retry_port_race` covers for one server): such
        // a start is thrown away and made again on fresh ports; any other failure panics.
        const TRIES: usize = 3;
        for tried in 1..=TRIES {
            let Err(e) = Lab::up(&root, &options, &Quiet).await else {
                break;
            };
            // Stop whatever did start before retrying or panicking.
            if let Ok(lab) = Lab::open(&root) {
                kill_servers(&lab);
            }
            if tried < TRIES && e.to_string().contains("address already in use") {
                std::fs::remove_dir_all(&root).expect("remove the lab that lost a port race");
                continue;
            }
            panic!("lab up failed: {e}");
        }
        let lab = Lab::open(&root).expect("open the lab just created");
        Self { lab, dir }
    }

    /// The lab.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The lab directory.
    pub fn dir(&self) -> &Path {
        self.lab.layout().root()
    }

    /// An operator client for `env`: the lab's mTLS operator certificate, logged in as the lab
    /// operator (bootstrap revoked the root token; nothing here needs it).
    pub fn client(&self, env: &str) -> warden_bao::Client {
        self.lab.operator_client(env).expect("operator client")
    }

    /// An operator client for node `index` of `env` alone.
    pub fn node_client(&self, env: &str, index: u8) -> warden_bao::Client {
        self.lab
            .node_operator_client(env, index)
            .expect("node operator client")
    }

    /// Every node address of `env`, node 1 first.
    pub fn addresses(&self, env: &str) -> Vec<String> {
        self.lab.env(env).expect("environment").addresses()
    }

    /// SIGKILLs node `index` (1-based) of `env` and reaps it: a crash, not a shutdown.
    pub fn kill_node(&self, env: &str, index: u8) {
        let pid = self
            .lab
            .node_pid(env, index)
            .expect("find the node")
            .unwrap_or_else(|| panic!("node {index} of {env} is not running"));
        kill_and_reap(pid);
    }

    /// Starts node `index` of `env` again and unseals it (it rejoins its cluster).
    pub async fn restart_node(&self, env: &str, index: u8) {
        if let Err(e) = self.lab.start_node(env, index).await {
            panic!("restart node {index} of {env}: {e}");
        }
    }

    /// The 1-based index of the node of `env` that is active now, if any.
    pub async fn leader(&self, env: &str) -> Option<u8> {
        self.lab
            .leader(env)
            .await
            .expect("ask the nodes")
            .map(|n| n.index)
    }

    /// A client for `env` whose token may seal the server and nothing else: the only power a
    /// test needs that an operator must not have (bootstrap revoked the root token). The token
    /// exists because test labs ask for it (`NewLabOptions::test_harness_token`); `warden lab up`
    /// never makes one.
    pub fn harness_client(&self, env: &str) -> warden_bao::Client {
        let client = self.client(env);
        let path = self.lab.layout().env(env).harness_token();
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read the harness token {}: {e}", path.display())),
        );
        client.set_token(warden_bao::SecretString::from(text.trim().to_owned()));
        client
    }

    /// Keeps the temporary directory's path alive for callers that need it.
    pub fn temp_root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LabEnv {
    fn drop(&mut self) {
        kill_servers(&self.lab);
    }
}

/// SIGKILL and reap every server of the lab. A test lab has nothing worth a graceful shutdown,
/// and `Drop` cannot await.
fn kill_servers(lab: &Lab) {
    for env in &lab.config().environments {
        for node in env.nodes() {
            let pid_file = lab.layout().env(&env.name).node(node.index).pid_file();
            if let Some(pid) = warden_lab::process::read_pid_file(&pid_file)
                && warden_lab::process::is_alive(pid)
            {
                kill_and_reap(pid);
            }
        }
    }
    // The seal-keeper last, as `lab down` does.
    if lab.config().seal_keeper.is_some() {
        let pid_file = lab.layout().seal_keeper().node(1).pid_file();
        if let Some(pid) = warden_lab::process::read_pid_file(&pid_file)
            && warden_lab::process::is_alive(pid)
        {
            kill_and_reap(pid);
        }
    }
}

fn kill_and_reap(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(pid as i32);
    let _ = kill(pid, Signal::SIGKILL);
    // Our child (started by this test process): reap it so no zombie is left.
    let _ = nix::sys::wait::waitpid(pid, None);
}
