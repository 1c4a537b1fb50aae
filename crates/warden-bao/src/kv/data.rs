//! What a KV secret holds: a map of keys to values whose bytes are wiped on drop and never
//! printed, and the key-level difference between two versions (which keys, never which values).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

/// One value of a KV secret: any JSON (KV values are usually strings, but KV v2 keeps numbers,
/// lists and objects as written, and a rollback must restore them exactly). Strings inside are
/// wiped when it is dropped; `Debug` prints `"..."`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(serde_json::Value);

impl SecretValue {
    /// A string value. The caller's string is moved in, not copied.
    pub fn text(value: String) -> Self {
        Self(serde_json::Value::String(value))
    }

    /// Any JSON value, as it will be stored.
    pub fn json(value: serde_json::Value) -> Self {
        Self(value)
    }

    /// The value itself. Callers decide where it may go (only ever to an explicit `--reveal`).
    pub fn expose(&self) -> &serde_json::Value {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"...\"")
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Zeroes every string (and map key is left: keys are not secret) inside a JSON value.
fn wipe(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(wipe),
        serde_json::Value::Object(map) => map.values_mut().for_each(wipe),
        _ => {}
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Self)
    }
}

/// The key/value map of one KV secret (one version of it, for KV v2). `Debug` lists the keys
/// only. It deliberately does not implement `Serialize`: values reach the wire through the
/// write calls of this crate and nowhere else.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KvData(BTreeMap<String, SecretValue>);

impl KvData {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`; returns the previous value if there was one.
    pub fn insert(&mut self, key: impl Into<String>, value: SecretValue) -> Option<SecretValue> {
        self.0.insert(key.into(), value)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&SecretValue> {
        self.0.get(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Keys and values, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Which keys `newer` adds, changes and removes relative to `self`. Compares values but
    /// reports only key names.
    pub fn diff(&self, newer: &Self) -> KeyChanges {
        let mut changes = KeyChanges::default();
        for (k, v) in &newer.0 {
            match self.0.get(k) {
                None => changes.added.push(k.clone()),
                Some(old) if old != v => changes.changed.push(k.clone()),
                Some(_) => {}
            }
        }
        changes.removed = self
            .0
            .keys()
            .filter(|k| !newer.0.contains_key(*k))
            .cloned()
            .collect();
        changes
    }
}

impl fmt::Debug for KvData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "...")))
            .finish()
    }
}

impl<'de> Deserialize<'de> for KvData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // KV v2 answers `"data": null` for a deleted or destroyed version.
        Option::<BTreeMap<String, SecretValue>>::deserialize(d).map(|m| Self(m.unwrap_or_default()))
    }
}

/// Serialises a [`KvData`] for a request body. Crate-private on purpose (see [`KvData`]).
pub(crate) struct Exposed<'a>(pub(crate) &'a KvData);

impl Serialize for Exposed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.0.iter().map(|(k, v)| (k, &v.0)))
    }
}

/// Which keys one version added, changed and removed relative to the one before. Names only:
/// this is what history shows and what Warden records, so it must never carry a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyChanges {
    /// Keys that were not there before.
    #[serde(default)]
    pub added: Vec<String>,
    /// Keys whose value differs.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Keys that are gone.
    #[serde(default)]
    pub removed: Vec<String>,
}

impl KeyChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    /// Total number of keys named.
    pub fn len(&self) -> usize {
        self.added.len() + self.changed.len() + self.removed.len()
    }
}

/// `+added ~changed -removed`, each group sorted; `(no change)` when empty.
impl fmt::Display for KeyChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(no change)");
        }
        let parts = self
            .added
            .iter()
            .map(|k| format!("+{k}"))
            .chain(self.changed.iter().map(|k| format!("~{k}")))
            .chain(self.removed.iter().map(|k| format!("-{k}")));
        f.write_str(&parts.collect::<Vec<_>>().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> KvData {
        let mut d = KvData::new();
        for (k, v) in pairs {
            d.insert(*k, SecretValue::text((*v).to_owned()));
        }
        d
    }

    #[test]
    fn debug_shows_keys_never_values() {
        let d = data(&[("password", "hunter2-SECRET")]);
        let dbg = format!("{d:?} {:?}", d.get("password"));
        assert!(dbg.contains("password"), "{dbg}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn diff_names_keys_only() {
        let old = data(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let new = data(&[("a", "1"), ("b", "20"), ("d", "4")]);
        let changes = old.diff(&new);
        assert_eq!(changes.added, ["d"]);
        assert_eq!(changes.changed, ["b"]);
        assert_eq!(changes.removed, ["c"]);
        assert_eq!(changes.to_string(), "+d ~b -c");
        assert!(old.diff(&old.clone()).is_empty());
        assert_eq!(KeyChanges::default().to_string(), "(no change)");
    }

    #[test]
    fn null_data_is_empty_and_json_values_survive() {
        let d: KvData = serde_json::from_str("null").expect("null");
        assert!(d.is_empty());
        let d: KvData = serde_json::from_str(r#"{"n":5,"o":{"x":[1,"s"]}}"#).expect("map");
        let round = serde_json::to_string(&Exposed(&d)).expect("serialise");
        assert_eq!(round, r#"{"n":5,"o":{"x":[1,"s"]}}"#);
    }
}
