//! Who wrote a KV v2 version, and which keys it changed.
//!
//! KV v2 keeps when each version was written but not by whom. Writers that follow this
//! convention add one entry per version to the secret's `custom_metadata`: key `v<N>`, value a
//! small JSON object with the writer's token display name, the operation and the key names it
//! changed (never values). Anything written another way has no entry and shows as unknown; the
//! audit log stays the authority on who did what.
//!
//! OpenBao limits `custom_metadata` to 64 keys of at most 512-byte values, so entries of
//! versions the engine no longer keeps are pruned, and long key lists are cut (with a count of
//! what was left out).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::KeyChanges;

/// OpenBao's limit on the number of `custom_metadata` keys.
pub(crate) const MAX_CUSTOM_KEYS: usize = 64;
/// OpenBao's limit on one `custom_metadata` value, in bytes.
const MAX_VALUE_BYTES: usize = 512;
/// Longest writer name kept (display names of JWT logins carry the whole subject).
const MAX_BY_CHARS: usize = 160;

/// One version's entry: who wrote it, how, and which keys changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChangeRecord {
    /// The writer: the token's display name (e.g. `root`, `jwt-repo:org/app:ref:refs/heads/main`).
    pub by: String,
    /// `put` or `rollback` (other writers may use their own words).
    pub op: String,
    /// For a rollback: the version whose content was restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Keys added.
    #[serde(default, rename = "add", skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    /// Keys changed.
    #[serde(default, rename = "chg", skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Keys removed.
    #[serde(default, rename = "del", skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// How many key names did not fit in the entry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl ChangeRecord {
    /// A record of `op` by `by` changing `keys`.
    pub fn new(by: &str, op: &str, from: Option<u64>, keys: &KeyChanges) -> Self {
        let by = if by.is_empty() { "unknown" } else { by };
        Self {
            by: by.chars().take(MAX_BY_CHARS).collect(),
            op: op.to_owned(),
            from,
            added: keys.added.clone(),
            changed: keys.changed.clone(),
            removed: keys.removed.clone(),
            more: 0,
        }
    }

    /// The key changes as recorded (possibly cut: see [`ChangeRecord::more`]).
    pub fn keys(&self) -> KeyChanges {
        KeyChanges {
            added: self.added.clone(),
            changed: self.changed.clone(),
            removed: self.removed.clone(),
        }
    }

    /// The `custom_metadata` key of version `version`.
    pub fn metadata_key(version: u64) -> String {
        format!("v{version}")
    }

    /// The record of `version` in `custom`, if there is one and it parses.
    pub fn from_metadata(custom: &BTreeMap<String, String>, version: u64) -> Option<Self> {
        custom
            .get(&Self::metadata_key(version))
            .and_then(|v| serde_json::from_str(v).ok())
    }

    /// The `custom_metadata` value: compact JSON within OpenBao's 512-byte limit, dropping
    /// key names from the end (removed first, then changed, then added) until it fits.
    pub fn to_metadata_value(&self) -> String {
        let mut r = self.clone();
        loop {
            let text = serde_json::to_string(&r).unwrap_or_default();
            if text.len() <= MAX_VALUE_BYTES {
                return text;
            }
            let dropped = r
                .removed
                .pop()
                .or_else(|| r.changed.pop())
                .or_else(|| r.added.pop());
            if dropped.is_none() {
                // Only a pathological writer name is left to cut.
                r.by = r.by.chars().take(32).collect();
                return serde_json::to_string(&r).unwrap_or_default();
            }
            r.more += 1;
        }
    }
}

/// `custom` with the record of `version` set, records of versions not in `kept` removed, and,
/// if still over OpenBao's key limit, the oldest records dropped. Entries that are not
/// records (`v<digits>` keys) belong to someone else and are never touched.
pub(crate) fn merge_record(
    custom: &BTreeMap<String, String>,
    version: u64,
    record: &ChangeRecord,
    kept: impl Fn(u64) -> bool,
) -> BTreeMap<String, String> {
    let record_version = |k: &str| k.strip_prefix('v').and_then(|n| n.parse::<u64>().ok());
    let mut out: BTreeMap<String, String> = custom
        .iter()
        .filter(|(k, _)| record_version(k).is_none_or(&kept))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert(
        ChangeRecord::metadata_key(version),
        record.to_metadata_value(),
    );
    while out.len() > MAX_CUSTOM_KEYS {
        let oldest = out
            .keys()
            .filter_map(|k| record_version(k).filter(|v| *v != version))
            .min();
        match oldest {
            Some(v) => {
                out.remove(&ChangeRecord::metadata_key(v));
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(added: &[&str], changed: &[&str], removed: &[&str]) -> KeyChanges {
        let v = |s: &[&str]| s.iter().map(|k| (*k).to_owned()).collect();
        KeyChanges {
            added: v(added),
            changed: v(changed),
            removed: v(removed),
        }
    }

    #[test]
    fn round_trips_through_custom_metadata() {
        let r = ChangeRecord::new("root", "rollback", Some(1), &keys(&["a"], &["b"], &["c"]));
        let mut custom = BTreeMap::new();
        custom.insert("v3".to_owned(), r.to_metadata_value());
        assert_eq!(ChangeRecord::from_metadata(&custom, 3), Some(r));
        assert_eq!(ChangeRecord::from_metadata(&custom, 2), None);
        custom.insert("v2".to_owned(), "not json".to_owned());
        assert_eq!(ChangeRecord::from_metadata(&custom, 2), None);
    }

    #[test]
    fn long_key_lists_are_cut_to_fit() {
        let many: Vec<String> = (0..100).map(|i| format!("key_number_{i:03}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let r = ChangeRecord::new(&"x".repeat(500), "put", None, &keys(&refs, &[], &refs));
        let value = r.to_metadata_value();
        assert!(value.len() <= MAX_VALUE_BYTES, "{}", value.len());
        let back: ChangeRecord = serde_json::from_str(&value).expect("parses");
        assert_eq!(back.by.chars().count(), MAX_BY_CHARS);
        assert_eq!(back.added.len() + back.removed.len() + back.more, 200);
        assert!(back.more > 0);
    }

    #[test]
    fn merge_prunes_gone_versions_and_keeps_foreign_keys() {
        let mut custom = BTreeMap::new();
        custom.insert("owner".to_owned(), "team-billing".to_owned());
        custom.insert("v1".to_owned(), "{}".to_owned());
        custom.insert("v2".to_owned(), "{}".to_owned());
        let r = ChangeRecord::new("root", "put", None, &KeyChanges::default());
        let out = merge_record(&custom, 3, &r, |v| v >= 2);
        assert_eq!(
            out.keys().map(String::as_str).collect::<Vec<_>>(),
            ["owner", "v2", "v3"]
        );

        let mut full = BTreeMap::new();
        for v in 1..=64 {
            full.insert(format!("v{v}"), "{}".to_owned());
        }
        let out = merge_record(&full, 65, &r, |_| true);
        assert_eq!(out.len(), MAX_CUSTOM_KEYS);
        assert!(!out.contains_key("v1") && out.contains_key("v65"));
    }
}
