//! Where everything in a lab directory lives. One struct answers every "which file?" question so
//! that `up`, `status`, `down` and the docs (`docs/lab.md`) cannot disagree.
//!
//! ```text
//! <lab>/
//!   lab.json                      ports, shares and threshold chosen at creation
//!   ca/                           the offline root CA (warden-pki); never read by OpenBao
//!   custody/ca-passphrase         LAB ONLY: the root key's passphrase (0600)
//!   envs/<env>/
//!     tls/ca.pem                  trust anchor for clients (the offline root)
//!     tls/listener-ca.{crt,key}   the environment's listener CA (signed by the root)
//!     tls/server.{crt,key}        OpenBao's server certificate (leaf + listener CA chain)
//!     tls/client-ca.pem           the only CA(s) the listener accepts client certificates from
//!     operator/operator.{crt,key} the operator's mTLS client certificate
//!     bao/server.hcl              OpenBao server configuration
//!     bao/data/                   integrated (raft) storage
//!     bao/audit.log, server.log   audit device and server log
//!     bao/server.pid
//!     bao-<n>/...                 node n of a multi-node environment (`nodes::NodeLayout`)
//!     custody/custodians/         LAB ONLY: the lab custodians' age identities (0600)
//!     custody/shares/             the ceremony's encrypted shares and root token (the
//!                                 root token's file is deleted when bootstrap revokes it)
//!     custody/unseal-keys.json    legacy labs only: clear Shamir shares (0600)
//!     custody/root-token          legacy labs only: the clear root token (0600), until
//!                                 bootstrap revokes it and deletes this file
//!     custody/recovery-keys.json  legacy labs only: clear recovery keys of an auto-sealed
//!                                 environment (ceremony labs keep them in custody/shares/)
//!     seal/                       files the seal reads (static key, seal-keeper credentials)
//!   seal-keeper/                  the seal-keeper of transit-sealed environments, laid out
//!                                 like envs/<env>/ (tls/, operator/, bao/, custody/)
//!   state/custody/<env>/          the custody ledger and unseal rounds
//! ```

use std::path::{Path, PathBuf};

/// The default lab directory, relative to the working directory.
pub const DEFAULT_LAB_DIR: &str = "warden-lab";

/// Paths of a lab rooted at one directory.
#[derive(Debug, Clone)]
pub struct LabLayout {
    root: PathBuf,
}

impl LabLayout {
    /// A layout rooted at `root` (which need not exist yet). A relative root is made absolute
    /// against the current directory now: the servers and agents the lab starts run in their
    /// own working directories and are handed these paths, so a relative path would point
    /// somewhere else for them.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Self { root }
    }

    /// The lab directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `lab.json`: the lab's persistent settings.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("lab.json")
    }

    /// The offline root CA directory.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// Lab-wide custody directory (owner-only).
    pub fn custody_dir(&self) -> PathBuf {
        self.root.join("custody")
    }

    /// The root CA passphrase (lab only).
    pub fn ca_passphrase_file(&self) -> PathBuf {
        self.custody_dir().join("ca-passphrase")
    }

    /// Paths of the seal-keeper (`crate::seal_keeper`), laid out like an environment.
    pub fn seal_keeper(&self) -> EnvLayout {
        EnvLayout {
            dir: self.root.join("seal-keeper"),
        }
    }

    /// Paths for one environment.
    pub fn env(&self, name: &str) -> EnvLayout {
        EnvLayout {
            dir: self.root.join("envs").join(name),
        }
    }
}

/// Paths of one environment inside a lab.
#[derive(Debug, Clone)]
pub struct EnvLayout {
    dir: PathBuf,
}

impl EnvLayout {
    /// The environment's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// TLS material directory.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }
    /// Trust anchor for clients of this environment's API (the offline root certificate).
    pub fn ca_bundle(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }
    /// The listener CA certificate.
    pub fn listener_ca_cert(&self) -> PathBuf {
        self.tls_dir().join("listener-ca.crt")
    }
    /// The listener CA private key (0600).
    pub fn listener_ca_key(&self) -> PathBuf {
        self.tls_dir().join("listener-ca.key")
    }
    /// OpenBao's server certificate chain (leaf first).
    pub fn server_cert(&self) -> PathBuf {
        self.tls_dir().join("server.crt")
    }
    /// OpenBao's server key (0600).
    pub fn server_key(&self) -> PathBuf {
        self.tls_dir().join("server.key")
    }
    /// The CA bundle the listener verifies client certificates against.
    pub fn client_ca(&self) -> PathBuf {
        self.tls_dir().join("client-ca.pem")
    }
    /// The nodes' own client certificate (`node@<env>`, from the listener CA): what a node
    /// presents to its leader in `retry_join`. No cert-auth role accepts it; it is nobody's
    /// login and never the operator's (ADR 0010).
    pub fn node_cert(&self) -> PathBuf {
        self.tls_dir().join("node.crt")
    }
    /// Its key (0600).
    pub fn node_key(&self) -> PathBuf {
        self.tls_dir().join("node.key")
    }
    /// Operator credential directory.
    pub fn operator_dir(&self) -> PathBuf {
        self.dir.join("operator")
    }
    /// Operator client certificate.
    pub fn operator_cert(&self) -> PathBuf {
        self.operator_dir().join("operator.crt")
    }
    /// Operator client key (0600).
    pub fn operator_key(&self) -> PathBuf {
        self.operator_dir().join("operator.key")
    }
    /// OpenBao's working directory.
    pub fn bao_dir(&self) -> PathBuf {
        self.dir.join("bao")
    }
    /// The server configuration file.
    pub fn server_config(&self) -> PathBuf {
        self.bao_dir().join("server.hcl")
    }
    /// Integrated storage directory.
    pub fn data_dir(&self) -> PathBuf {
        self.bao_dir().join("data")
    }
    /// The file audit device's log.
    pub fn audit_log(&self) -> PathBuf {
        self.bao_dir().join("audit.log")
    }
    /// The server's own log (stdout and stderr).
    pub fn server_log(&self) -> PathBuf {
        self.bao_dir().join("server.log")
    }
    /// The server's PID file.
    pub fn pid_file(&self) -> PathBuf {
        self.bao_dir().join("server.pid")
    }
    /// Custody directory (owner-only, lab only).
    pub fn custody_dir(&self) -> PathBuf {
        self.dir.join("custody")
    }
    /// Clear unseal shares of a legacy lab (before the ceremony).
    pub fn unseal_keys(&self) -> PathBuf {
        self.custody_dir().join("unseal-keys.json")
    }
    /// Clear root token of a legacy lab (before the ceremony); deleted when bootstrap revokes it.
    pub fn root_token(&self) -> PathBuf {
        self.custody_dir().join("root-token")
    }
    /// The test harness's seal-only token (test labs only; see
    /// [`crate::NewLabOptions::test_harness_token`]).
    pub fn harness_token(&self) -> PathBuf {
        self.custody_dir().join("harness-token")
    }
}
