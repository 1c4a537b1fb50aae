//! A local, multi-environment OpenBao lab: the embedded default deployment of Warden.
//!
//! `Lab::up` creates an offline root CA and, for each environment (`test` and `prod` by
//! default), a separate OpenBao server on its own 127.0.0.1 port with integrated raft storage,
//! an HTTPS listener that requires client certificates from that environment's CA only, a file
//! audit device, Shamir initialisation and unseal, and a PKI intermediate whose key is generated
//! inside OpenBao and whose CSR the offline root signs.
//!
//! Start with [`Lab`]; [`LabLayout`] says where every file lives; [`process`] holds the process
//! primitives the test harness shares.
//!
//! Modules: `lab` (the lab as a whole: `up`, `status` and `down` over every environment) and
//! `bring_up` (one environment to running, initialised, unsealed, PKI intermediate in place);
//! `config` (the persistent settings, `lab.json`) and `layout` (where every file lives);
//! `nodes` (an environment's OpenBao nodes, their ports, files and server configuration, from
//! the `warden-node` generator) and `cluster` (start, unseal and wait for a leader across them;
//! one node at a time for tests); `operators` (the end of bootstrap: the operator policy, the
//! lab operator's login, the root token revoked); `tls`
//! (each environment's listener CA and certificates); `server` (one environment's OpenBao
//! process: configuration, start, find, stop); `custody` (the real custody ceremony with
//! lab-generated custodians, and the root CA passphrase); `client` (operator
//! clients); `status` (what `lab status` reports); `seal` (each environment's seal: Shamir,
//! static or transit, and the files it reads), `seal_keeper` (the separate OpenBao that holds
//! the transit seals' keys) and `seal_migrate` (Shamir → auto-seal on a live environment);
//! [`process`] (process primitives); [`postgres`] (PostgreSQL processes, shared with the test
//! harness, and the lab's own database, [`postgres::LabPostgres`]). The lab's
//! agents (hosts, enrollment, agent processes) are the `warden-lab-agents` crate.

mod bring_up;
mod client;
mod cluster;
mod config;
mod custody;
mod error;
mod lab;
mod layout;
mod node_status;
mod nodes;
mod operators;
pub mod postgres;
pub mod process;
mod scratch;
mod seal;
mod seal_keeper;
mod seal_migrate;
mod server;
mod status;
mod tls;

pub use bring_up::{EnvUpReport, Progress, Quiet};
pub use config::DEFAULT_PKI_MOUNT;
pub use config::{EnvConfig, LabConfig, NewLabOptions, lab_permitted_dns, permitted_dns_from_spec};
pub use custody::{
    CustodyMode, LAB_ONLY_NOTICE, bootstrap_root_token, custodians_dir, custody_kind,
    custody_ledger_path, custody_mode, custody_state_dir, root_token_path, shares_dir,
    unseal_shares,
};
pub use error::Error;
pub use lab::{DownReport, Lab, UpReport};
pub use layout::{DEFAULT_LAB_DIR, EnvLayout, LabLayout};
pub use node_status::NodeStatus;
pub use nodes::{MAX_NODES, Node, NodeLayout, NodePorts, even_count_warning};
pub use scratch::Scratch;
pub use seal::EnvSeal;
pub use seal_keeper::{KEEPER_NAME, SealKeeperStatus};
pub use seal_migrate::{SealMigrationPlan, SealMigrationReport};
pub use status::EnvStatus;
pub use warden_node::SealKind;

/// The most a file of the lab directory may hold when Warden reads it.
const LAB_FILE_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads a file of the lab directory as text: a regular file of at most [`LAB_FILE_LIMIT`]
/// bytes, opened without blocking, so a FIFO planted at `lab.json` fails at once instead of
/// hanging every command that takes `--lab`, and a symlink to `/dev/zero` is refused instead of
/// read until memory runs out. A missing file is `NotFound`, as for `std::fs::read_to_string`.
pub(crate) fn read_text(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    let bytes = warden_files::read_regular(path.as_ref(), LAB_FILE_LIMIT)?;
    std::str::from_utf8(&bytes)
        .map(str::to_owned)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
