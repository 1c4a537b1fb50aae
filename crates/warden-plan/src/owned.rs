//! The ownership record: which objects Warden created in an environment. Kept in Warden's own
//! KV v2 mount so it lives with the environment it describes (one source of truth per
//! environment), and so `--prune` can never remove an object Warden did not create.

use std::collections::BTreeSet;

use serde_json::json;
use warden_bao::{Client, Idempotent};

use crate::desired::META_MOUNT;
use crate::error::Error;

const RECORD: &str = "owned";

fn data_path() -> String {
    format!("{META_MOUNT}/data/{RECORD}")
}

/// Reads the set of owned object ids (empty when the mount or record does not exist yet).
pub(crate) async fn read(client: &Client, env: &str) -> Result<BTreeSet<String>, Error> {
    match client.read(&data_path()).await {
        Ok(secret) => {
            let ids = secret
                .data
                .as_ref()
                .and_then(|d| d.get("data"))
                .and_then(|d| d.get("objects"))
                .and_then(|o| o.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Ok(ids)
        }
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
    let body = json!({ "data": { "objects": ids } });
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
