//! A node's OpenBao server configuration, rendered from typed settings.
//!
//! What it contains and why:
//! - **integrated raft storage** with the node's id, its data directory, the election tuning in
//!   force (`performance_multiplier`) and one `retry_join` block per peer. The peers' listeners
//!   require client certificates, so every `retry_join` names the CA that signed the leader's
//!   server certificate and the client certificate and key this node presents when it joins.
//! - **the mTLS listener**: TLS 1.2 or later, TLS 1.2 limited to ECDHE key exchange with AEAD
//!   ciphers ([`TLS12_CIPHER_SUITES`]), and `tls_require_and_verify_client_cert`; generate-root
//!   from custodians' shares left on, for break-glass (docs/openbao.md, difference 9).
//! - `api_addr` / `cluster_addr`: what the node advertises to clients and to its peers.
//! - **telemetry** for Prometheus, with host names left out of metric names so that every node's
//!   series carry the same names.
//! - **the file audit device**: OpenBao refuses to enable audit devices through the API
//!   (docs/openbao.md, difference 1), so it is declared here.
//! - **the seal stanza** ([`Seal::render`], owned by `seal.rs`).
//!
//! `disable_mlock` is left out on purpose: OpenBao does not know the field (docs/openbao.md,
//! difference 3).

use std::path::PathBuf;
use std::time::Duration;

use crate::Seal;
use crate::error::NodeError;
use crate::hcl_string;

/// The TLS 1.2 suites the listeners offer: ECDHE key exchange with AEAD ciphers only. Without
/// this list OpenBao offers Go's defaults, which still include CBC suites with SHA-1 MACs
/// (ECDHE-ECDSA-AES128-SHA, -AES256-SHA). TLS 1.3 suites are not configurable and all AEAD.
pub const TLS12_CIPHER_SUITES: [&str; 6] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
];

/// The raft election tuning Warden runs with. OpenBao's default (`0`) means 5, the setting
/// for slow development machines: five times the heartbeat and election timeouts, so a dead
/// leader is noticed five times later. `1` is the production setting recommended upstream.
pub const DEFAULT_PERFORMANCE_MULTIPLIER: u8 = 1;

/// How long Prometheus metrics are retained in memory between scrapes.
pub const DEFAULT_PROMETHEUS_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The TLS files of a node's API listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Server certificate chain, leaf first; its SANs must cover the node's API address.
    pub cert_file: PathBuf,
    /// The server certificate's private key.
    pub key_file: PathBuf,
    /// The only CA(s) whose client certificates the listener accepts.
    pub client_ca_file: PathBuf,
}

/// One peer this node may join through (a `retry_join` block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's API address (`https://host:port`).
    pub leader_api_addr: String,
    /// Trust anchor for the peer's server certificate.
    pub leader_ca_cert_file: PathBuf,
    /// Client certificate this node presents to the peer's listener.
    pub leader_client_cert_file: PathBuf,
    /// Its private key.
    pub leader_client_key_file: PathBuf,
}

/// The raft election tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTuning {
    /// Scales raft's heartbeat, election and leader-lease timeouts (1 = fastest failover).
    pub performance_multiplier: u8,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            performance_multiplier: DEFAULT_PERFORMANCE_MULTIPLIER,
        }
    }
}

impl RaftTuning {
    /// Raft's timeouts at this multiplier (hashicorp/raft defaults scaled by it): heartbeat
    /// and election timeout 1 s each, leader lease 500 ms; `0` means OpenBao's default of 5.
    pub fn timeouts(&self) -> ElectionTimeouts {
        let m = u32::from(if self.performance_multiplier == 0 {
            5
        } else {
            self.performance_multiplier
        });
        ElectionTimeouts {
            multiplier: m,
            heartbeat: Duration::from_secs(1) * m,
            election: Duration::from_secs(1) * m,
            leader_lease: Duration::from_millis(500) * m,
        }
    }
}

/// The raft timeouts in force, for reports next to measured failover times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ElectionTimeouts {
    /// The effective `performance_multiplier`.
    pub multiplier: u32,
    /// A follower that hears nothing from the leader for this long starts an election.
    #[serde(with = "millis")]
    pub heartbeat: Duration,
    /// A candidate without a majority for this long starts a new election.
    #[serde(with = "millis")]
    pub election: Duration,
    /// A leader that cannot reach a quorum for this long steps down.
    #[serde(with = "millis")]
    pub leader_lease: Duration,
}

mod millis {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

/// Everything a node's server configuration is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The Warden environment (`prod`); names the cluster.
    pub environment: String,
    /// The raft node id, unique in the cluster (`prod-1`).
    pub node_id: String,
    /// What the node advertises to clients (`https://10.0.0.11:8200`).
    pub api_addr: String,
    /// What the node advertises to its peers (`https://10.0.0.11:8201`).
    pub cluster_addr: String,
    /// Where the API listener binds (`10.0.0.11:8200`).
    pub listen_address: String,
    /// Where the cluster listener binds (`10.0.0.11:8201`).
    pub cluster_listen_address: String,
    /// Raft storage directory (owned by the runtime owner, 0700).
    pub data_dir: PathBuf,
    /// The listener's TLS files.
    pub tls: ListenerTls,
    /// The other nodes, one `retry_join` block each.
    pub peers: Vec<Peer>,
    /// The file audit device's log. The audit table is replicated, and a node whose declared
    /// audit device differs from the table's (description or options) refuses to become
    /// active: every node of a cluster must declare the same path.
    pub audit_file: PathBuf,
    /// The audit device's description: the same on every node, for the same reason.
    pub audit_description: String,
    /// Prometheus retention (`telemetry.prometheus_retention_time`).
    pub prometheus_retention: Duration,
    /// Raft election tuning.
    pub raft: RaftTuning,
    /// The seal stanza.
    pub seal: Seal,
    /// `log_level`.
    pub log_level: String,
    /// Who generated the file, for its first comment line (`warden server config`).
    pub generated_by: String,
}

impl NodeConfig {
    /// Checks what would otherwise only fail when OpenBao starts.
    pub fn validate(&self) -> Result<(), NodeError> {
        for (field, value) in [
            ("api_addr", &self.api_addr),
            ("cluster_addr", &self.cluster_addr),
        ] {
            if !value.starts_with("https://") {
                return Err(NodeError::invalid(
                    field,
                    value,
                    "must be an https:// URL (the listeners only speak TLS)",
                ));
            }
        }
        for peer in &self.peers {
            if !peer.leader_api_addr.starts_with("https://") {
                return Err(NodeError::invalid(
                    "retry_join.leader_api_addr",
                    &peer.leader_api_addr,
                    "must be an https:// URL",
                ));
            }
            if peer.leader_api_addr == self.api_addr {
                return Err(NodeError::invalid(
                    "retry_join.leader_api_addr",
                    &peer.leader_api_addr,
                    "is this node's own address; list only the other nodes",
                ));
            }
        }
        check_node_id(&self.node_id)
    }

    /// Renders the HCL server configuration.
    pub fn render(&self) -> Result<String, NodeError> {
        self.validate()?;
        let p = |p: &PathBuf| hcl_string(&p.to_string_lossy());
        let mut out = format!(
            "# {by} for node {node} of environment {env:?}. Generated: edits are overwritten.\n\
             cluster_name = {cluster}\n\
             api_addr     = {api}\n\
             cluster_addr = {caddr}\n\
             ui           = false\n\
             log_level    = {level}\n\n",
            by = self.generated_by,
            node = self.node_id,
            env = self.environment,
            cluster = hcl_string(&format!("warden-{}", self.environment)),
            api = hcl_string(&self.api_addr),
            caddr = hcl_string(&self.cluster_addr),
            level = hcl_string(&self.log_level),
        );
        out.push_str(&format!(
            "storage \"raft\" {{\n  path                   = {data}\n  node_id                = {id}\n  performance_multiplier = {pm}\n",
            data = p(&self.data_dir),
            id = hcl_string(&self.node_id),
            pm = self.raft.performance_multiplier,
        ));
        for peer in &self.peers {
            out.push_str(&format!(
                "\n  retry_join {{\n    leader_api_addr         = {addr}\n    leader_ca_cert_file     = {ca}\n    leader_client_cert_file = {cert}\n    leader_client_key_file  = {key}\n  }}\n",
                addr = hcl_string(&peer.leader_api_addr),
                ca = p(&peer.leader_ca_cert_file),
                cert = p(&peer.leader_client_cert_file),
                key = p(&peer.leader_client_key_file),
            ));
        }
        out.push_str("}\n\n");
        out.push_str(&format!(
            "listener \"tcp\" {{\n  address                            = {addr}\n  cluster_address                    = {caddr}\n  tls_cert_file                      = {cert}\n  tls_key_file                       = {key}\n  tls_client_ca_file                 = {ca}\n  tls_require_and_verify_client_cert = true\n  tls_min_version                    = \"tls12\"\n  tls_cipher_suites                  = \"{ciphers}\"\n  # `warden break-glass` runs generate-root from custodians' shares; OpenBao 2.5+ turns the\n  # unauthenticated endpoint off by default (docs/openbao.md, difference 9). The shares are the\n  # authority, and the listener still demands a client certificate.\n  disable_unauthed_generate_root_endpoints = false\n}}\n\n",
            addr = hcl_string(&self.listen_address),
            caddr = hcl_string(&self.cluster_listen_address),
            cert = p(&self.tls.cert_file),
            key = p(&self.tls.key_file),
            ca = p(&self.tls.client_ca_file),
            ciphers = TLS12_CIPHER_SUITES.join(","),
        ));
        out.push_str(&format!(
            "telemetry {{\n  prometheus_retention_time = \"{secs}s\"\n  disable_hostname          = true\n}}\n\n",
            secs = self.prometheus_retention.as_secs(),
        ));
        out.push_str(&format!(
            "audit \"file\" \"file\" {{\n  description = {description}\n  options {{\n    file_path = {path}\n    mode      = \"0600\"\n  }}\n}}\n",
            description = hcl_string(&self.audit_description),
            path = p(&self.audit_file),
        ));
        let seal = self.seal.render()?;
        if !seal.is_empty() {
            out.push('\n');
            out.push_str(&seal);
            if !seal.ends_with('\n') {
                out.push('\n');
            }
        }
        Ok(out)
    }
}

/// Refuses a node id that is empty or holds anything but a-z, A-Z, 0-9, '-', '_' and '.': it
/// names the raft node, the unit file and the paths under the data directory, so the server
/// configuration and the unit check it the same way.
pub(crate) fn check_node_id(node_id: &str) -> Result<(), NodeError> {
    if node_id.is_empty()
        || !node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(NodeError::invalid(
            "node_id",
            node_id,
            "must be 1 or more of a-z, A-Z, 0-9, '-', '_' and '.'",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
