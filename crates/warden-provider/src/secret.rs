//! What a read returns: a secret's fields, wiped on drop, never printed, with how fresh it is.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use warden_bao::KvData;
use zeroize::Zeroizing;

/// Where a KV secret lives: the engine version, its mount and the path inside the mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretPath {
    /// KV version 2 (`<mount>/data/<path>` on the wire).
    Kv2 {
        /// The mount, e.g. `secret`.
        mount: String,
        /// The secret's path inside the mount, e.g. `platform/iam/mfa-key`.
        path: String,
    },
    /// KV version 1 (`<mount>/<path>`).
    Kv1 {
        /// The mount.
        mount: String,
        /// The secret's path inside the mount.
        path: String,
    },
}

impl SecretPath {
    /// A KV v2 secret.
    pub fn kv2(mount: impl Into<String>, path: impl Into<String>) -> Self {
        Self::Kv2 {
            mount: trim(mount.into()),
            path: trim(path.into()),
        }
    }

    /// A KV v1 secret.
    pub fn kv1(mount: impl Into<String>, path: impl Into<String>) -> Self {
        Self::Kv1 {
            mount: trim(mount.into()),
            path: trim(path.into()),
        }
    }

    /// The mount.
    pub fn mount(&self) -> &str {
        match self {
            Self::Kv2 { mount, .. } | Self::Kv1 { mount, .. } => mount,
        }
    }

    /// The path inside the mount.
    pub fn path(&self) -> &str {
        match self {
            Self::Kv2 { path, .. } | Self::Kv1 { path, .. } => path,
        }
    }
}

fn trim(s: String) -> String {
    s.trim_matches('/').to_owned()
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kv2 { mount, path } => write!(f, "{mount}/{path} (kv v2)"),
            Self::Kv1 { mount, path } => write!(f, "{mount}/{path} (kv v1)"),
        }
    }
}

/// One read of a KV secret. Cheap to clone (the fields are shared); the values are wiped when
/// the last clone and the provider's cache let go of them. `Debug` lists the keys only.
#[derive(Clone)]
pub struct Secret {
    pub(crate) path: SecretPath,
    pub(crate) data: Arc<KvData>,
    pub(crate) version: Option<u64>,
    pub(crate) loaded_at: Instant,
    pub(crate) stale: bool,
}

impl Secret {
    /// Where it was read.
    pub fn path(&self) -> &SecretPath {
        &self.path
    }

    /// The KV v2 version read (`None` for KV v1).
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// `true` when OpenBao could not be reached (sealed, down, unreachable) and this is the
    /// last value read successfully, served from the provider's cache.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// How long ago this value was read from OpenBao.
    pub fn age(&self) -> Duration {
        self.loaded_at.elapsed()
    }

    /// The field names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.data.keys()
    }

    /// A string field as a [`SecretString`]; a non-string JSON value as its JSON text. `None`
    /// when the field is absent.
    pub fn field(&self, key: &str) -> Option<SecretString> {
        self.expose(key)
            .map(|s| SecretString::from(s.as_str().to_owned()))
    }

    /// A field's bytes in a buffer wiped on drop (same rules as [`Secret::field`]).
    pub fn expose(&self, key: &str) -> Option<Zeroizing<String>> {
        self.data.get(key).map(|v| match v.expose() {
            serde_json::Value::String(s) => Zeroizing::new(s.clone()),
            other => Zeroizing::new(other.to_string()),
        })
    }

    /// The whole map, for callers that need every field.
    pub fn data(&self) -> &KvData {
        &self.data
    }

    pub(crate) fn as_stale(&self) -> Self {
        Self {
            stale: true,
            ..self.clone()
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("stale", &self.stale)
            .field("age", &self.age())
            .finish()
    }
}

/// A dual-key secret (written by [`crate::SecretProvider::rotate_secret`]): the value to use
/// now and the one it replaced, which verifiers keep accepting until the next rotation.
#[derive(Clone)]
pub struct DualSecret {
    /// The value to use.
    pub current: SecretString,
    /// The value it replaced (`None` before the first rotation).
    pub previous: Option<SecretString>,
    /// The KV v2 version holding both.
    pub version: u64,
    /// Served from the cache while OpenBao is unreachable.
    pub stale: bool,
}

impl fmt::Debug for DualSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DualSecret")
            .field("current", &"...")
            .field("previous", &self.previous.as_ref().map(|_| "..."))
            .field("version", &self.version)
            .field("stale", &self.stale)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use warden_bao::SecretValue;

    use super::*;

    #[test]
    fn debug_prints_keys_not_values() {
        let mut data = KvData::new();
        data.insert(
            "password",
            SecretValue::text("HUNTER2-TOPSECRET".to_owned()),
        );
        let s = Secret {
            path: SecretPath::kv2("secret", "/app/db/"),
            data: Arc::new(data),
            version: Some(3),
            loaded_at: Instant::now(),
            stale: false,
        };
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("TOPSECRET"), "{dbg}");
        assert!(dbg.contains("password") && dbg.contains("app/db"), "{dbg}");
        assert_eq!(
            s.expose("password").as_deref().map(String::as_str),
            Some("HUNTER2-TOPSECRET")
        );
        let dual = DualSecret {
            current: SecretString::from("NEW-TOPSECRET"),
            previous: Some(SecretString::from("OLD-TOPSECRET")),
            version: 2,
            stale: false,
        };
        assert!(!format!("{dual:?}").contains("TOPSECRET"));
    }
}
