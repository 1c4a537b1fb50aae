//! The spec as written: serde structures that mirror the TOML, with spans kept on every value
//! a later check may need to point at. Nothing here is trusted; `validate` turns it into the
//! model.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpec {
    pub(crate) version: S<u32>,
    #[serde(default)]
    pub(crate) naming: Option<S<RawNaming>>,
    #[serde(default)]
    pub(crate) environments: BTreeMap<S<String>, S<RawEnvironment>>,
    #[serde(default)]
    pub(crate) apps: BTreeMap<S<String>, S<RawApp>>,
    #[serde(default)]
    pub(crate) proxies: BTreeMap<S<String>, S<RawProxy>>,
    #[serde(default)]
    pub(crate) containers: BTreeMap<S<String>, S<RawContainer>>,
    #[serde(default)]
    pub(crate) pipelines: BTreeMap<S<String>, S<RawPipeline>>,
    #[serde(default)]
    pub(crate) waivers: Vec<S<RawWaiver>>,
    #[serde(default)]
    pub(crate) databases: BTreeMap<S<String>, S<RawDatabase>>,
    #[serde(default)]
    pub(crate) domains: BTreeMap<S<String>, S<RawDomain>>,
    #[serde(default)]
    pub(crate) purposes: BTreeMap<S<String>, S<RawPurpose>>,
    #[serde(default)]
    pub(crate) transport: BTreeMap<S<String>, S<RawTransport>>,
    #[serde(default)]
    pub(crate) ca: Option<S<RawCa>>,
}

/// `[ca]`: the chain's cadence (ADR 0029).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCa {
    pub(crate) root_lifetime: Option<S<String>>,
    pub(crate) intermediate_lifetime: Option<S<String>>,
    pub(crate) rotate_at: Option<S<f64>>,
    pub(crate) overlap: Option<S<String>>,
    pub(crate) reissue_window: Option<S<String>>,
    pub(crate) reissue_rate: Option<S<i64>>,
}

/// `[transport.<holder>]`: a runtime host or CI runner that may hold a transport certificate
/// (ADR 0010).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransport {
    pub(crate) environments: S<Vec<S<String>>>,
    pub(crate) carries: S<Vec<S<String>>>,
    pub(crate) ttl: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNaming {
    pub(crate) policy: Option<S<String>>,
    pub(crate) ops_policy: Option<S<String>>,
    pub(crate) kv_prefix: Option<S<String>>,
    pub(crate) db_role: Option<S<String>>,
    pub(crate) db_group: Option<S<String>>,
    pub(crate) ci_role: Option<S<String>>,
    pub(crate) pki_role: Option<S<String>>,
    pub(crate) cert_role: Option<S<String>>,
    pub(crate) approle_role: Option<S<String>>,
    pub(crate) identity_role: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnvironment {
    pub(crate) address: Option<S<String>>,
    pub(crate) ca_cert: Option<S<String>>,
    pub(crate) runtime_owner: Option<S<String>>,
    pub(crate) app_root: Option<S<String>>,
    pub(crate) domain: S<String>,
    #[serde(default)]
    pub(crate) mounts: Option<S<RawMounts>>,
    #[serde(default)]
    pub(crate) ci: Option<S<RawCiAuth>>,
    #[serde(default)]
    pub(crate) kubernetes: Option<S<RawCiAuth>>,
    #[serde(default)]
    pub(crate) custody: Option<S<crate::validate::custody::RawCustody>>,
    #[serde(default)]
    pub(crate) backup: Option<S<crate::validate::backup::RawBackup>>,
    #[serde(default)]
    pub(crate) nodes: Option<S<Vec<S<RawNode>>>>,
}

/// One `[[environments.<name>.nodes]]` entry: an OpenBao server of a raft cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub(crate) name: S<String>,
    pub(crate) address: S<String>,
    pub(crate) cluster_address: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMounts {
    pub(crate) pki: Option<S<String>>,
    pub(crate) kv: Option<S<String>>,
    pub(crate) kv_v1: Option<S<String>>,
    pub(crate) transit: Option<S<String>>,
    pub(crate) database: Option<S<String>>,
    pub(crate) cert_auth: Option<S<String>>,
    pub(crate) approle: Option<S<String>>,
    pub(crate) jwt: Option<S<String>>,
    pub(crate) kubernetes: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCiAuth {
    pub(crate) issuer: S<String>,
    pub(crate) audience: S<String>,
    #[serde(default)]
    pub(crate) validation_pubkeys: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) common_name: Option<S<String>>,
    #[serde(default)]
    pub(crate) sans: Vec<S<String>>,
    pub(crate) ttl: Option<S<String>>,
    pub(crate) key_type: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    pub(crate) environments: S<Vec<S<String>>>,
    pub(crate) certificate: Option<S<RawCertificate>>,
    #[serde(default)]
    pub(crate) secrets: Vec<S<String>>,
    #[serde(default)]
    pub(crate) databases: Vec<S<String>>,
    pub(crate) reload: Option<S<Vec<String>>>,
    #[serde(default)]
    pub(crate) transit_keys: Vec<S<RawTransitKey>>,
    #[serde(default)]
    pub(crate) signing_keys: Vec<S<RawSigningKey>>,
    pub(crate) kubernetes: Option<S<RawWorkload>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    pub(crate) environments: S<Vec<S<String>>>,
    pub(crate) reload: Option<S<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContainer {
    pub(crate) environments: S<Vec<S<String>>>,
    #[serde(default)]
    pub(crate) secrets: Vec<S<String>>,
    pub(crate) secret_id_ttl: Option<S<String>>,
    pub(crate) kubernetes: Option<S<RawWorkload>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPipeline {
    pub(crate) app: Option<S<String>>,
    pub(crate) environments: S<Vec<S<String>>>,
    pub(crate) repository: S<String>,
    #[serde(default)]
    pub(crate) branches: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWaiver {
    pub(crate) rule: S<String>,
    pub(crate) identity: S<String>,
    pub(crate) reason: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransitKey {
    pub(crate) name: S<String>,
    #[serde(rename = "type")]
    pub(crate) key_type: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSigningKey {
    pub(crate) name: S<String>,
    pub(crate) algorithm: Option<S<String>>,
    pub(crate) grace: Option<S<String>>,
    pub(crate) interval: Option<S<String>>,
    pub(crate) rsa_bits: Option<S<i64>>,
    pub(crate) max_token_lifetime: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkload {
    pub(crate) namespace: S<String>,
    pub(crate) service_account: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    pub(crate) environments: S<Vec<S<String>>>,
    pub(crate) plugin: Option<S<String>>,
    pub(crate) connection_url: S<String>,
    pub(crate) username: S<String>,
    pub(crate) password_file: S<String>,
    pub(crate) default_ttl: Option<S<String>>,
    pub(crate) max_ttl: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDomain {
    pub(crate) environments: S<Vec<S<String>>>,
    pub(crate) app: S<String>,
    pub(crate) ttl: Option<S<String>>,
    pub(crate) renew_before: Option<S<String>>,
    pub(crate) key_type: Option<S<String>>,
    pub(crate) issuer: Option<S<String>>,
    pub(crate) acme: Option<S<RawAcme>>,
}

/// `[domains."<name>".acme]`: only with `issuer = "acme"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub(crate) directory: Option<S<String>>,
    pub(crate) contact: Option<S<Vec<S<String>>>>,
    pub(crate) listen: Option<S<String>>,
    pub(crate) allow_non_loopback: Option<S<bool>>,
    pub(crate) challenge_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRotation {
    pub(crate) interval: S<String>,
    pub(crate) grace: Option<S<String>>,
    pub(crate) max_age: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPurpose {
    pub(crate) description: S<String>,
    pub(crate) owner: S<String>,
    pub(crate) tier: S<String>,
    pub(crate) delivery: S<String>,
    pub(crate) rotation: S<RawRotation>,
    #[serde(default)]
    pub(crate) custody: Option<S<String>>,
    pub(crate) evidence: S<String>,
    pub(crate) covers: S<Vec<S<String>>>,
    #[serde(default)]
    pub(crate) revoked: Option<S<bool>>,
}
