//! The directories a production node's generated configuration names (`warden server config
//! --config-dir/--data-dir/--audit-dir/--out`), laid out under one test directory with a lab
//! environment's TLS material under the file names the generator expects.

use std::path::{Path, PathBuf};

use crate::LabEnv;

/// `etc/` (with `etc/tls/` filled from the lab), `raft/`, `log/` and `out/` under a test's own
/// directory: what a host's `/etc/warden`, data and audit directories would be.
#[derive(Debug, Clone)]
pub struct NodeDirs {
    /// `--config-dir`: `tls/` holds `server.crt`, `server.key`, `client-ca.pem`, `ca.pem`,
    /// `node.crt` and `node.key`.
    pub etc: PathBuf,
    /// `--data-dir` (raft storage).
    pub data: PathBuf,
    /// `--audit-dir`.
    pub audit: PathBuf,
    /// `--out`: where the generator writes; not created, so a test can see that a refused run
    /// wrote nothing.
    pub out: PathBuf,
}

impl NodeDirs {
    /// Lays the directories out under `root` and copies environment `env`'s listener
    /// certificate and key, client CA, CA bundle and operator client certificate from `lab`.
    /// Panics if it cannot: this is a test fixture.
    pub fn from_lab(lab: &LabEnv, env: &str, root: &Path) -> Self {
        let dirs = Self {
            etc: root.join("etc"),
            data: root.join("raft"),
            audit: root.join("log"),
            out: root.join("out"),
        };
        for dir in [dirs.etc.join("tls"), dirs.data.clone(), dirs.audit.clone()] {
            warden_files::ensure_private_dir(&dir).expect("directory");
        }
        let tls = lab.lab().layout().env(env);
        for (from, to) in [
            (tls.server_cert(), "server.crt"),
            (tls.server_key(), "server.key"),
            (tls.client_ca(), "client-ca.pem"),
            (tls.ca_bundle(), "ca.pem"),
            (tls.node_cert(), "node.crt"),
            (tls.node_key(), "node.key"),
        ] {
            std::fs::copy(&from, dirs.etc.join("tls").join(to)).expect("copy TLS material");
        }
        dirs
    }

    /// `--out`, `--config-dir`, `--data-dir` and `--audit-dir` with these directories, for
    /// `warden server config`.
    pub fn args(&self) -> Vec<String> {
        let p = |p: &Path| p.display().to_string();
        vec![
            "--out".to_owned(),
            p(&self.out),
            "--config-dir".to_owned(),
            p(&self.etc),
            "--data-dir".to_owned(),
            p(&self.data),
            "--audit-dir".to_owned(),
            p(&self.audit),
        ]
    }
}

/// A spec whose `prod` environment (runs as `warden-test`) lists one node per pair of `ports`
/// (API, cluster), named `prod-1`, `prod-2`, …: what `warden server config` reads.
pub fn prod_nodes_spec(ports: &[u16]) -> String {
    let mut spec = "version = 1\n[environments.prod]\ndomain = \"p.internal\"\nruntime_owner = \"warden-test\"\n"
        .to_owned();
    for (i, pair) in ports.chunks(2).enumerate() {
        spec.push_str(&format!(
            "[[environments.prod.nodes]]\nname = \"prod-{}\"\naddress = \"https://127.0.0.1:{}\"\ncluster_address = \"https://127.0.0.1:{}\"\n",
            i + 1,
            pair[0],
            pair[1]
        ));
    }
    spec
}
