//! What `lab status` reports for each environment. Read-only: it never starts, unseals or
//! changes anything.

use std::path::PathBuf;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::client;
use crate::config::EnvConfig;
use crate::custody;
use crate::layout::EnvLayout;
use crate::server::{self, ProcessState};

/// One environment's status, with the paths a Vault client needs to reach it.
#[derive(Debug, Clone, Serialize)]
pub struct EnvStatus {
    /// Environment name.
    pub name: String,
    /// API address (`https://127.0.0.1:PORT`).
    pub address: String,
    /// Our server process is running.
    pub running: bool,
    /// Its PID when running.
    pub pid: Option<u32>,
    /// From `sys/health`; `None` when the server could not be asked.
    pub initialized: Option<bool>,
    /// From `sys/health`.
    pub sealed: Option<bool>,
    /// From `sys/health`.
    pub version: Option<String>,
    /// The PKI intermediate mount.
    pub pki_mount: String,
    /// Not-after of the PKI intermediate (RFC 3339).
    pub intermediate_not_after: Option<String>,
    /// Whether the intermediate's chain (as OpenBao serves it) verifies to the offline root.
    pub chain_valid: Option<bool>,
    /// What is wrong with the chain, if anything.
    pub chain_problems: Vec<String>,
    /// Trust anchor for this environment's API (`VAULT_CACERT`).
    pub ca_bundle: PathBuf,
    /// Operator client certificate (`VAULT_CLIENT_CERT`).
    pub operator_cert: PathBuf,
    /// Operator client key (`VAULT_CLIENT_KEY`).
    pub operator_key: PathBuf,
    /// The lab's bootstrap root token: age-encrypted to the lab custodians (ceremony), or the
    /// clear file of a legacy lab.
    pub root_token_file: PathBuf,
    /// How the unseal shares are held.
    pub custody: custody::CustodyMode,
    /// Why something could not be determined.
    pub error: Option<String>,
}

impl EnvStatus {
    /// Running, initialised, unsealed, and the intermediate chain verifies.
    pub fn healthy(&self) -> bool {
        self.running
            && self.initialized == Some(true)
            && self.sealed == Some(false)
            && self.chain_valid == Some(true)
    }
}

pub(crate) async fn env_status(
    env: &EnvConfig,
    layout: &EnvLayout,
    root_pem: Option<&str>,
) -> EnvStatus {
    let mut st = EnvStatus {
        name: env.name.clone(),
        address: env.address(),
        running: false,
        pid: None,
        initialized: None,
        sealed: None,
        version: None,
        pki_mount: env.pki_mount.clone(),
        intermediate_not_after: None,
        chain_valid: None,
        chain_problems: Vec::new(),
        ca_bundle: layout.ca_bundle(),
        operator_cert: layout.operator_cert(),
        operator_key: layout.operator_key(),
        root_token_file: custody::root_token_path(layout),
        custody: custody::custody_mode(layout),
        error: None,
    };
    match server::find(env, layout) {
        Ok(ProcessState::Running(pid)) => {
            st.running = true;
            st.pid = Some(pid);
        }
        Ok(ProcessState::Stopped) => return st,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    }
    let token = custody::bootstrap_root_token(layout).ok().flatten();
    let client = match client::operator_client(env, layout, token) {
        Ok(c) => c,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    };
    match client.health().await {
        Ok(h) => {
            st.initialized = Some(h.initialized);
            st.sealed = Some(h.sealed);
            st.version = Some(h.version).filter(|v| !v.is_empty());
        }
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    }
    if st.sealed != Some(false) {
        return st;
    }
    match client.pki_ca_chain(&env.pki_mount).await {
        Ok(chain) if chain.trim().is_empty() => {
            st.chain_valid = Some(false);
            st.chain_problems
                .push(format!("{} has no intermediate installed", env.pki_mount));
        }
        Ok(chain) => {
            let report = match warden_pki::verify_chain(&chain, root_pem, OffsetDateTime::now_utc())
            {
                Ok(r) => r,
                Err(e) => {
                    st.chain_valid = Some(false);
                    st.chain_problems.push(format!("unreadable chain: {e}"));
                    return st;
                }
            };
            st.intermediate_not_after = report
                .certs
                .first()
                .and_then(|c| c.not_after.format(&Rfc3339).ok());
            st.chain_valid = Some(report.valid);
            st.chain_problems = report.problems.iter().map(ToString::to_string).collect();
        }
        Err(e) => st.error = Some(e.to_string()),
    }
    st
}
