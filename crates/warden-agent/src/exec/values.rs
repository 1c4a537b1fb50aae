//! Reading the `[[exec_env]]` secrets into variables, and the purpose check before a new
//! value may reach the child.
//!
//! Values are held as [`Zeroizing`] strings from the moment they leave the JSON answer; their
//! `Debug` prints only the variable names, so a value can reach neither a log line nor an
//! error message.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_spec::rules::{Contract, Refusal};
use zeroize::Zeroizing;

use crate::board::Shared;
use crate::config::ExecEnv;

/// The variables for the child, by name, with what they came from.
#[derive(Default, PartialEq, Eq)]
pub(crate) struct Values {
    /// Variable → value.
    pub(crate) vars: BTreeMap<String, Zeroizing<String>>,
    /// Per `[[exec_env]]` entry (config order): when the KV version read was written (unix
    /// seconds), the "issued at" of the purpose check.
    pub(crate) issued: Vec<Option<i64>>,
    /// Per entry: the KV version read (for the log; a version number is no secret).
    pub(crate) versions: Vec<Option<u64>>,
}

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Values")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

impl Values {
    /// The variable names, for the log.
    pub(crate) fn names(&self) -> String {
        self.vars.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// The KV versions read, for the log: `3, 1` (`?` where the server said none).
    pub(crate) fn versions(&self) -> String {
        self.versions
            .iter()
            .map(|v| v.map_or_else(|| "?".to_owned(), |v| v.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Only the values differ: what the child sees would change.
    pub(crate) fn same_vars(&self, other: &Self) -> bool {
        self.vars == other.vars
    }
}

/// Why the variables could not be read. No variant carries a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FetchError {
    /// Not logged in (yet).
    #[error("not logged in{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    NoToken(Option<String>),
    /// OpenBao refused or failed the read.
    #[error("reading {path}: {source}")]
    Read {
        /// The API path.
        path: String,
        /// Why.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// The secret is not there or is not a map.
    #[error("{path}: {reason}")]
    Missing {
        /// The API path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The secret has no such key.
    #[error("{path} has no key `{field}` (its keys: {})", known.join(", "))]
    NoField {
        /// The API path.
        path: String,
        /// The key asked for.
        field: String,
        /// The keys it has (names only).
        known: Vec<String>,
    },
    /// The purpose's registry entry could not be read.
    #[error("the contract of purpose `{purpose}` ({path}) could not be read: {detail}")]
    Contract {
        /// The purpose.
        purpose: String,
        /// Its registry entry.
        path: String,
        /// Why.
        detail: String,
    },
    /// The purpose refuses new values (revoked, or the values held outlived interval + grace).
    #[error(transparent)]
    Refused(Refusal),
    /// A value cannot go into an environment, or a name built from a secret's keys is
    /// unusable: the child would fail to start (or start with someone else's variable). The
    /// running child keeps what it has.
    #[error("{path}: variable `{var}` {reason}")]
    Unusable {
        /// The API path the variable came from.
        path: String,
        /// The variable (a name, never a value).
        var: String,
        /// What is wrong.
        reason: String,
    },
}

/// Linux refuses `execve` with one `NAME=value` string longer than this (`MAX_ARG_STRLEN`,
/// 32 pages): the child would not start.
const MAX_VAR_BYTES: usize = 32 * 4096 - 1;

/// All the variables together: well under the kernel's limit for argv + envp (a quarter of the
/// stack limit, 2 MiB by default), leaving room for the agent's own environment and the argv.
const MAX_TOTAL_BYTES: usize = 1024 * 1024;

/// Puts one variable in, refusing what `execve` would reject or what would overwrite another
/// entry's variable (two keys `api-key` and `api_key` both give `STRIPE_API_KEY`; a prefix
/// entry whose secret gains a key `url` would shadow a `DB_URL` entry).
fn insert(
    out: &mut Values,
    origin: &mut BTreeMap<String, String>,
    path: &str,
    var: String,
    value: Zeroizing<String>,
) -> Result<(), FetchError> {
    let unusable = |reason: String| FetchError::Unusable {
        path: path.to_owned(),
        var: var.clone(),
        reason,
    };
    if let Some(why) = crate::config::reserved_env_name(&var) {
        return Err(unusable(format!("may not be set from a secret: {why}")));
    }
    if value.as_bytes().contains(&0) {
        return Err(unusable(
            "holds a NUL byte, which no environment variable can carry".to_owned(),
        ));
    }
    if var.len() + 1 + value.len() > MAX_VAR_BYTES {
        return Err(unusable(format!(
            "is {} bytes; the kernel passes at most {MAX_VAR_BYTES} per variable (deliver it as a file instead)",
            value.len()
        )));
    }
    if let Some(first) = origin.get(&var) {
        return Err(unusable(format!(
            "is also given by {first}: one of them would silently replace the other"
        )));
    }
    origin.insert(var.clone(), path.to_owned());
    out.vars.insert(var, value);
    Ok(())
}

impl FetchError {
    /// A refusal is a decision, not an outage: retrying does not help.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused(_))
    }
}

/// Reads every entry (one request each) into the child's variables.
pub(crate) async fn fetch(shared: &Shared, entries: &[ExecEnv]) -> Result<Values, FetchError> {
    if shared.token_generation() == 0 {
        return Err(FetchError::NoToken(shared.snapshot().auth.last_error));
    }
    let mut out = Values::default();
    let mut origin = BTreeMap::new();
    for e in entries {
        let path = format!("{}/data/{}", e.mount, e.path);
        shared.count_request();
        let secret = shared.client.read(&path).await.map_err(|source| {
            if source.is_permission_denied() {
                shared.hint_relogin();
            }
            FetchError::Read {
                path: path.clone(),
                source: Box::new(source),
            }
        })?;
        let body = secret.data.unwrap_or_default();
        let missing = |reason: &str| FetchError::Missing {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        let meta = body.get("metadata");
        out.issued.push(
            meta.and_then(|m| m.get("created_time"))
                .and_then(serde_json::Value::as_str)
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                .map(OffsetDateTime::unix_timestamp),
        );
        out.versions.push(
            meta.and_then(|m| m.get("version"))
                .and_then(serde_json::Value::as_u64),
        );
        let Some(serde_json::Value::Object(map)) = body.get("data") else {
            return Err(missing(
                "no current version (never written, deleted or destroyed), or not a KV version 2 mount",
            ));
        };
        match &e.field {
            Some(field) => {
                let v = map.get(field).ok_or_else(|| FetchError::NoField {
                    path: path.clone(),
                    field: field.clone(),
                    known: map.keys().cloned().collect(),
                })?;
                insert(&mut out, &mut origin, &path, e.name.clone(), text(v))?;
            }
            None => {
                for (k, v) in map {
                    insert(&mut out, &mut origin, &path, prefixed(&e.name, k), text(v))?;
                }
            }
        }
    }
    let total: usize = out.vars.iter().map(|(k, v)| k.len() + 1 + v.len()).sum();
    if total > MAX_TOTAL_BYTES {
        return Err(FetchError::Unusable {
            path: entries
                .iter()
                .map(|e| format!("{}/data/{}", e.mount, e.path))
                .collect::<Vec<_>>()
                .join(", "),
            var: out.names(),
            reason: format!(
                "together hold {total} bytes; at most {MAX_TOTAL_BYTES} go into an environment (deliver large secrets as files)"
            ),
        });
    }
    Ok(out)
}

/// `<PREFIX>_<KEY>`: the key upper-cased, anything but letters and digits turned into `_`, so
/// every key of the secret gives a usable name (`api-key` → `STRIPE_API_KEY`).
pub(crate) fn prefixed(prefix: &str, key: &str) -> String {
    let key: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}_{key}")
}

/// A value as the child sees it: a string as it is, anything else as its JSON.
fn text(v: &serde_json::Value) -> Zeroizing<String> {
    match v {
        serde_json::Value::String(s) => Zeroizing::new(s.clone()),
        other => Zeroizing::new(other.to_string()),
    }
}

/// Fail closed: every purpose named by the entries must allow new values. `held` is what the
/// child holds (`None` before the first start: only a revoked purpose refuses then); an entry
/// whose held value outlived interval + grace is refused, as a certificate's renewal is
/// (docs/agent.md#fail-closed).
pub(crate) async fn check_purposes(
    shared: &Shared,
    entries: &[ExecEnv],
    held: Option<&Values>,
) -> Result<(), FetchError> {
    let now = shared.trusted_now().unix_timestamp();
    for (i, e) in entries.iter().enumerate() {
        let Some(purpose) = &e.purpose else { continue };
        let contract = read_contract(shared, purpose).await?;
        let issued = held.and_then(|h| h.issued.get(i).copied().flatten());
        warden_spec::rules::check_contract(&contract, issued, now).map_err(FetchError::Refused)?;
    }
    Ok(())
}

/// The purpose's contract from its registry entry (written by `warden apply`).
async fn read_contract(shared: &Shared, purpose: &str) -> Result<Contract, FetchError> {
    let path = warden_spec::naming::registry_entry(purpose).data_path();
    let fail = |detail: String| FetchError::Contract {
        purpose: purpose.to_owned(),
        path: path.clone(),
        detail,
    };
    shared.count_request();
    let entry = shared
        .client
        .read(&path)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let data = entry
        .data
        .and_then(|d| d.get("data").cloned())
        .ok_or_else(|| fail("the entry is empty".to_owned()))?;
    let secs = |k: &str| {
        data.get(k)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| fail(format!("no `{k}`")))
    };
    Ok(Contract {
        purpose: purpose.to_owned(),
        revoked: data
            .get("revoked")
            .and_then(serde_json::Value::as_bool)
            .ok_or_else(|| fail("no `revoked`".to_owned()))?,
        interval_secs: secs("rotation_interval_secs")?,
        grace_secs: secs("rotation_grace_secs")?,
        max_age_secs: secs("max_age_secs")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_names() {
        assert_eq!(prefixed("STRIPE", "api_key"), "STRIPE_API_KEY");
        assert_eq!(prefixed("DB", "url-ro.2"), "DB_URL_RO_2");
    }

    #[test]
    fn debug_shows_names_never_values() {
        let mut v = Values::default();
        v.vars
            .insert("STRIPE_API_KEY".into(), Zeroizing::new("sk_live_x".into()));
        let d = format!("{v:?}");
        assert!(d.contains("STRIPE_API_KEY"), "{d}");
        assert!(!d.contains("sk_live_x"), "{d}");
    }

    /// Red team (issue 17): a value `execve` would refuse (NUL, too long) or a name that
    /// collides with another entry's is refused at the read, before the running child is
    /// stopped for a restart that could not start it again; the error names no value.
    #[test]
    fn unusable_values_and_colliding_names_are_refused_by_name() {
        let mut out = Values::default();
        let mut origin = BTreeMap::new();
        let ok = |v: &str| Zeroizing::new(v.to_owned());
        insert(
            &mut out,
            &mut origin,
            "kvv2/data/a",
            "DB_URL".into(),
            ok("x"),
        )
        .expect("first");
        let e = insert(
            &mut out,
            &mut origin,
            "kvv2/data/b",
            "DB_URL".into(),
            ok("sneaky"),
        )
        .expect_err("collision")
        .to_string();
        assert!(
            e.contains("also given by kvv2/data/a") && !e.contains("sneaky"),
            "{e}"
        );
        let e = insert(&mut out, &mut origin, "p", "K".into(), ok("se\0cret"))
            .expect_err("NUL")
            .to_string();
        assert!(e.contains("NUL") && !e.contains("se"), "{e}");
        let big = "s".repeat(MAX_VAR_BYTES);
        let e = insert(
            &mut out,
            &mut origin,
            "p",
            "BIG".into(),
            Zeroizing::new(big),
        )
        .expect_err("too big")
        .to_string();
        assert!(e.contains("at most"), "{e}");
        let e = insert(
            &mut out,
            &mut origin,
            "p",
            prefixed("LD", "preload"),
            ok("/tmp/x.so"),
        )
        .expect_err("loader")
        .to_string();
        assert!(
            e.contains("LD_PRELOAD") && e.contains("may not be set"),
            "{e}"
        );
        assert_eq!(out.names(), "DB_URL");
    }

    #[test]
    fn non_strings_are_their_json() {
        assert_eq!(*text(&serde_json::json!(4)), "4");
        assert_eq!(*text(&serde_json::json!("a b")), "a b");
        assert_eq!(*text(&serde_json::json!({"k": true})), "{\"k\":true}");
    }
}
