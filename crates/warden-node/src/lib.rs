//! What runs on an OpenBao node, rendered from typed settings: the server configuration
//! (integrated raft storage with its peers, the mTLS listener, `api_addr`/`cluster_addr`,
//! telemetry, the audit device, the seal stanza) and a hardened systemd unit.
//!
//! One generator serves both production (`warden server config`) and the lab, so the lab runs
//! exactly the configuration an operator would deploy, on loopback.
//!
//! Start with [`NodeConfig::render`] (the server configuration) and [`UnitConfig::render`]
//! (the systemd unit), or [`node_files`] for a production node declared in the spec. Modules:
//! `config` (the server configuration), `unit` (the systemd unit), `production` (a spec
//! node's files and their default paths on the host), `seal` (the seal stanza: Shamir, static
//! key, transit against a seal-keeper, and the key and token files it names), `keeper` (the
//! seal-keeper's side of a transit seal: one key, one policy, one periodic orphan token per
//! sealed environment), `migrate` (OpenBao's seal migration, node by node), `tls` (a node's TLS files from the
//! environment's listener CA), `listener_ca` (installing a listener CA re-signed by a new root), `error` (what the
//! generators refuse).

pub mod config;
mod error;
pub mod keeper;
pub mod listener_ca;
pub mod migrate;
pub mod production;
pub mod seal;
pub mod tls;
pub mod unit;

pub use config::{
    DEFAULT_PERFORMANCE_MULTIPLIER, DEFAULT_PROMETHEUS_RETENTION, ElectionTimeouts, ListenerTls,
    NodeConfig, Peer, RaftTuning, TLS12_CIPHER_SUITES,
};
pub use error::NodeError;
pub use keeper::{KeeperError, KeeperGrant, SealToken};
pub use listener_ca::{ListenerCaError, ListenerCaInstall, install_listener_ca};
pub use migrate::MigrateError;
pub use production::{HostPaths, NodeFiles, Written, WrittenFile, node_files};
pub use seal::{Seal, SealError, SealFiles, SealKind, StaticSeal, TransitSeal};
pub use tls::{ClientTls, NODE_CERT_VALIDITY, NodeTls, write_client_tls, write_node_tls};
pub use unit::UnitConfig;

/// Renders `s` as an HCL string literal (JSON string escaping is valid HCL).
pub fn hcl_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}
