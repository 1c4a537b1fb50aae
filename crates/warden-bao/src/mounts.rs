//! Secrets engines and auth methods: enable, list, tune.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::{Call, Client};
use crate::error::Result;
use crate::response::{Secret, null_default};
use crate::retry::Idempotent;

/// Options for enabling an engine or auth method. `Default` = no description, no options.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct MountOptions {
    /// Human description shown in `list`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Engine options, e.g. `version = "2"` for KV v2.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Lease TTL settings.
    #[serde(skip_serializing_if = "MountTtls::is_empty")]
    pub config: MountTtls,
}

impl MountOptions {
    /// KV version 2.
    pub fn kv_v2() -> Self {
        let mut o = Self::default();
        o.options.insert("version".into(), "2".into());
        o
    }

    /// Set the description.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Add an engine option.
    #[must_use]
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Set the maximum lease TTL at creation time.
    #[must_use]
    pub fn with_max_lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.max_lease_ttl = Some(secs(ttl));
        self
    }
}

/// TTLs sent as `"<n>s"` strings, which every OpenBao version accepts.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct MountTtls {
    /// Default lease TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_lease_ttl: Option<String>,
    /// Maximum lease TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lease_ttl: Option<String>,
}

impl MountTtls {
    fn is_empty(&self) -> bool {
        self.default_lease_ttl.is_none() && self.max_lease_ttl.is_none()
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// One entry of `sys/mounts` or `sys/auth`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct MountInfo {
    /// Engine or method type: "kv", "pki", "cert"...
    #[serde(rename = "type")]
    pub mount_type: String,
    /// Description.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// Accessor (stable id of the mount).
    #[serde(default, deserialize_with = "null_default")]
    pub accessor: String,
    /// Engine options (e.g. `version: "2"`).
    #[serde(default, deserialize_with = "null_default")]
    pub options: BTreeMap<String, String>,
    /// Effective TTL configuration.
    #[serde(default)]
    pub config: MountConfig,
    /// Whether the mount is local to this cluster.
    #[serde(default, deserialize_with = "null_default")]
    pub local: bool,
    /// Plugin version actually running.
    #[serde(default, deserialize_with = "null_default")]
    pub running_plugin_version: String,
}

/// TTLs of a mount as reported (seconds; 0 = system default).
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct MountConfig {
    /// Default lease TTL, seconds.
    #[serde(default, deserialize_with = "null_default")]
    pub default_lease_ttl: u64,
    /// Maximum lease TTL, seconds.
    #[serde(default, deserialize_with = "null_default")]
    pub max_lease_ttl: u64,
}

impl Client {
    /// Enables a secrets engine of `engine_type` at `path`. Not retried once sent: enabling
    /// twice answers 400 "path is already in use"; check [`Client::list_mounts`] first for
    /// ensure-style provisioning.
    pub async fn enable_secrets_engine(
        &self,
        path: &str,
        engine_type: &str,
        options: &MountOptions,
    ) -> Result<()> {
        self.enable("sys/mounts", path, engine_type, options).await
    }

    /// Enables a secrets engine at `path` unless one (of any type) is mounted there already:
    /// the ensure-style form [`Client::enable_secrets_engine`] asks for, for records written
    /// before `apply` may have mounted their home. Returns whether it mounted.
    pub async fn ensure_secrets_engine(
        &self,
        path: &str,
        engine_type: &str,
        options: &MountOptions,
    ) -> Result<bool> {
        let mounts = self.list_mounts().await?;
        if mounts.keys().any(|m| m.trim_end_matches('/') == path) {
            return Ok(false);
        }
        self.enable_secrets_engine(path, engine_type, options)
            .await
            .map(|()| true)
    }

    /// Secrets engines by path (paths end with `/`).
    pub async fn list_mounts(&self) -> Result<BTreeMap<String, MountInfo>> {
        self.mount_table("sys/mounts").await
    }

    /// Enables an auth method of `method_type` at `path` (e.g. path "cert", type "cert").
    pub async fn enable_auth(&self, path: &str, method_type: &str) -> Result<()> {
        self.enable_auth_with(path, method_type, &MountOptions::default())
            .await
    }

    /// Like [`Client::enable_auth`] with options.
    pub async fn enable_auth_with(
        &self,
        path: &str,
        method_type: &str,
        options: &MountOptions,
    ) -> Result<()> {
        self.enable("sys/auth", path, method_type, options).await
    }

    /// Auth methods by path (paths end with `/`).
    pub async fn list_auth(&self) -> Result<BTreeMap<String, MountInfo>> {
        self.mount_table("sys/auth").await
    }

    /// Sets a mount's maximum lease TTL (for an auth method use `auth/<path>`). Idempotent.
    pub async fn tune_mount(&self, path: &str, max_lease_ttl: Duration) -> Result<()> {
        let api = format!("sys/mounts/{}/tune", path.trim_matches('/'));
        let body = MountTtls {
            default_lease_ttl: None,
            max_lease_ttl: Some(secs(max_lease_ttl)),
        };
        self.send(Call::new(Method::POST, &api, Idempotent::Yes).json(&body)?)
            .await
            .map(drop)
    }

    /// Reads a mount's effective TTLs (`auth/<path>` for auth methods).
    pub async fn read_mount_tune(&self, path: &str) -> Result<MountConfig> {
        let api = format!("sys/mounts/{}/tune", path.trim_matches('/'));
        let secret: Secret = self.send(Call::get(&api)).await?.decode(&api)?;
        secret.data_as(&api)
    }

    /// Disables the secrets engine at `path`, destroying its data. Idempotent.
    pub async fn disable_secrets_engine(&self, path: &str) -> Result<()> {
        let api = format!("sys/mounts/{}", path.trim_matches('/'));
        self.send(Call::new(Method::DELETE, &api, Idempotent::Yes))
            .await
            .map(drop)
    }

    async fn enable(
        &self,
        table: &str,
        path: &str,
        kind: &str,
        options: &MountOptions,
    ) -> Result<()> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            #[serde(flatten)]
            options: &'a MountOptions,
        }
        let api = format!("{table}/{}", path.trim_matches('/'));
        self.send(Call::new(Method::POST, &api, Idempotent::No).json(&Body { kind, options })?)
            .await
            .map(drop)
    }

    async fn mount_table(&self, api: &str) -> Result<BTreeMap<String, MountInfo>> {
        let secret: Secret = self.send(Call::get(api)).await?.decode(api)?;
        secret.data_as(api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_serialise_compactly() {
        let v = serde_json::to_value(MountOptions::default()).expect("json");
        assert_eq!(v, serde_json::json!({}));
        let v = serde_json::to_value(
            MountOptions::kv_v2()
                .with_description("apps")
                .with_max_lease_ttl(Duration::from_secs(3600)),
        )
        .expect("json");
        assert_eq!(
            v,
            serde_json::json!({"description":"apps","options":{"version":"2"},"config":{"max_lease_ttl":"3600s"}})
        );
    }
}
