//! Environments: each a separate OpenBao server with its own mounts and the token issuers it
//! trusts.

use std::path::PathBuf;

use super::Slug;

/// Mount paths of one environment; where the spec names none, [`crate::naming::default_mounts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts {
    /// PKI intermediate (`pki_int`).
    pub pki: String,
    /// KV v2 (`kvv2`).
    pub kv: String,
    /// KV v1 (`kv`).
    pub kv_v1: String,
    /// Transit (`transit`).
    pub transit: String,
    /// Database (`postgres`).
    pub database: String,
    /// Cert auth (`cert`).
    pub cert_auth: String,
    /// AppRole auth (`approle`).
    pub approle: String,
    /// JWT auth for CI (`jwt`).
    pub jwt: String,
    /// JWT auth for workloads' service-account tokens (`kubernetes`).
    pub kubernetes: String,
}

/// The CI identity provider an environment trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiAuth {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// PEM public key files that verify CI tokens.
    pub validation_pubkeys: Vec<PathBuf>,
}

/// One environment: a separate OpenBao server with its own trust material and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// `test`, `prod`, ...
    pub name: Slug,
    /// API address of a one-server environment (or of a load balancer in front of a cluster
    /// whose nodes the spec does not list); absent when a lab supplies it or when `nodes` are
    /// declared (the spec refuses both at once).
    pub address: Option<String>,
    /// The OpenBao servers of a raft cluster, in the order clients try them; empty for a
    /// one-server environment.
    pub nodes: Vec<Node>,
    /// Trust anchor for the API; absent when a lab supplies it.
    pub ca_cert: Option<PathBuf>,
    /// Unix user that owns agents' runtime directories.
    pub runtime_owner: String,
    /// Root of app-facing paths on hosts.
    pub app_root: PathBuf,
    /// DNS domain for certificate names.
    pub domain: String,
    /// Mount paths.
    pub mounts: Mounts,
    /// CI identity provider, if pipelines run here.
    pub ci: Option<CiAuth>,
    /// Service-account token issuer, if workloads log in with one here.
    pub kubernetes: Option<KubernetesAuth>,
    /// Who holds the unseal shares, if declared.
    pub custody: Option<super::Custody>,
    /// Where its backups go and who can open them, if declared.
    pub backup: Option<super::Backup>,
}

impl Environment {
    /// Every API address a client may use, in the order to try them: the nodes' addresses when
    /// the spec declares nodes, else `address` alone, else none (a lab supplies it).
    pub fn api_addresses(&self) -> Vec<&str> {
        if self.nodes.is_empty() {
            self.address.iter().map(String::as_str).collect()
        } else {
            self.nodes.iter().map(|n| n.address.as_str()).collect()
        }
    }
}

/// One OpenBao server of an environment's raft cluster. Names, addresses and cluster addresses
/// are unique within the environment, and every address is `https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node's name (`prod-1`): its raft `node_id` and its name in status output.
    pub name: Slug,
    /// API address clients use (`https://10.0.0.11:8200`), the node's `api_addr`.
    pub address: String,
    /// Address peers use for raft and request forwarding (`https://10.0.0.11:8201`), the node's
    /// `cluster_addr`.
    pub cluster_address: String,
}

/// The service-account token issuer an environment trusts (JWT auth with the cluster's public
/// keys; no TokenReview call, so OpenBao needs no route to the cluster API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesAuth {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// PEM public key files that verify service-account tokens.
    pub validation_pubkeys: Vec<PathBuf>,
}
