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
    /// API address; absent when a lab supplies it.
    pub address: Option<String>,
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
