//! The ownership record: which objects Warden created in an environment. Kept in Warden's own
//! KV v2 mount so it lives with the environment it describes (one source of truth per
//! environment), and so `--prune` can never remove an object Warden did not create.
//!
//! Format: one KV v2 secret whose fields are object kinds and whose values are newline-joined
//! ids. Not a JSON array of ids: OpenBao (since 2.4.1) refuses request bodies with more than
//! 1,000 JSON strings (`max_request_json_strings`), which an array would reach at about 250
//! identities.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use warden_bao::{Client, Idempotent};

use crate::error::Error;

fn data_path() -> String {
    warden_spec::naming::ownership_record().data_path()
}

/// Reads the set of owned object ids (empty when the mount or record does not exist yet).
pub(crate) async fn read(client: &Client, env: &str) -> Result<BTreeSet<String>, Error> {
    match client.read(&data_path()).await {
        Ok(secret) => Ok(decode(secret.data.as_ref().and_then(|d| d.get("data")))),
        Err(e) if e.is_not_found() => Ok(BTreeSet::new()),
        Err(source) => Err(Error::Bao {
            env: env.to_owned(),
            what: "read the ownership record".into(),
            source,
        }),
    }
}

/// Replaces the ownership record.
pub(crate) async fn write(client: &Client, env: &str, ids: &BTreeSet<String>) -> Result<(), Error> {
    let body = json!({ "data": encode(ids) });
    client
        .write(&data_path(), &body, Idempotent::Yes)
        .await
        .map(drop)
        .map_err(|source| Error::Bao {
            env: env.to_owned(),
            what: "write the ownership record".into(),
            source,
        })
}

/// `{kind: "id\nid\n..."}`: a handful of JSON strings however many objects there are.
fn encode(ids: &BTreeSet<String>) -> Value {
    let mut by_kind: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in ids {
        let kind = id.split_once(':').map_or("other", |(k, _)| k);
        by_kind.entry(kind).or_default().push(id);
    }
    Value::Object(
        by_kind
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.join("\n"))))
            .collect(),
    )
}

fn decode(data: Option<&Value>) -> BTreeSet<String> {
    let Some(map) = data.and_then(Value::as_object) else {
        return BTreeSet::new();
    };
    map.values()
        .filter_map(Value::as_str)
        .flat_map(|s| s.lines())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_stays_a_few_strings() {
        let ids: BTreeSet<String> = (0..5000)
            .map(|i| format!("policy:sys/policies/acl/app{i}"))
            .chain((0..5000).map(|i| format!("pki-role:pki_int/roles/app{i}")))
            .collect();
        let encoded = encode(&ids);
        assert_eq!(encoded.as_object().unwrap().len(), 2, "one string per kind");
        assert_eq!(decode(Some(&encoded)), ids);
    }
}
