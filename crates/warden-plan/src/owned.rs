//! The ownership record: which objects Warden created in an environment. Kept in Warden's own
//! KV v2 mount so it lives with the environment it describes (one source of truth per
//! environment), and so `--prune` can never remove an object Warden did not create.
//!
//! Format (ADR 0014): the record (`warden/data/owned`) holds only a head, `{"paged": {pages,
//! items, checksum}}`; the sorted ids are in pages under `warden/data/pages/owned/<n>`
//! (`warden_bao::paged`), each one JSON string of at most 256 KiB. Not one JSON array: OpenBao
//! refuses request bodies with more than 1,000 JSON strings (`max_request_json_strings`), which
//! an array reaches at about 250 identities; not one string either: at tens of thousands of
//! identities it would pass raft's 1 MiB entry limit.
//!
//! Records written before ADR 0014 (`{kind: "id\nid\n..."}`, one string per kind) are still
//! read; the next apply that changes ownership rewrites them in the paged form.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use warden_bao::paged::{self, PageHead};
use warden_bao::{Client, Idempotent};
use warden_spec::naming;

use crate::error::Error;

/// The ownership record as it is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Owned {
    /// Ids of the objects Warden created.
    pub(crate) ids: BTreeSet<String>,
    /// Whether it is stored in the paged form (so unchanged pages need no write).
    pub(crate) paged: bool,
}

fn head_path() -> String {
    naming::ownership_record().data_path()
}

fn pages_folder() -> String {
    naming::record_pages(&naming::ownership_record()).data_path()
}

/// Reads the ownership record (empty when the mount or record does not exist yet).
pub(crate) async fn read(client: &Client, env: &str) -> Result<Owned, Error> {
    let data = match client.read(&head_path()).await {
        Ok(secret) => secret
            .data
            .and_then(|mut d| d.get_mut("data").map(Value::take)),
        Err(e) if e.is_not_found() => return Ok(Owned::default()),
        Err(source) => {
            return Err(Error::Bao {
                env: env.to_owned(),
                what: "read the ownership record".into(),
                source,
            });
        }
    };
    let head = data
        .as_ref()
        .and_then(|d| d.get("paged"))
        .and_then(|h| serde_json::from_value::<PageHead>(h.clone()).ok());
    let Some(head) = head else {
        return Ok(Owned {
            ids: decode_by_kind(data.as_ref()),
            paged: false,
        });
    };
    let ids = paged::read(client, &pages_folder(), &head)
        .await
        .map_err(|source| Error::Record {
            env: env.to_owned(),
            what: "read the ownership record".into(),
            source,
        })?;
    Ok(Owned {
        ids: ids.into_iter().collect(),
        paged: true,
    })
}

/// Replaces the ownership record with `ids`: the pages that differ from `previous` (what is
/// stored now), then the head. Returns the number of writes.
pub(crate) async fn write(
    client: &Client,
    env: &str,
    ids: &BTreeSet<String>,
    previous: &Owned,
) -> Result<usize, Error> {
    let err = |source| Error::Bao {
        env: env.to_owned(),
        what: "write the ownership record".into(),
        source,
    };
    let list: Vec<&String> = ids.iter().collect();
    let new = paged::split(&list);
    let old = previous.paged.then(|| {
        let old: Vec<&String> = previous.ids.iter().collect();
        paged::split(&old)
    });
    let mut writes = paged::write_pages(client, &pages_folder(), &new, old.as_ref())
        .await
        .map_err(err)?;
    client
        .write(
            &head_path(),
            &json!({ "data": { "paged": new.head } }),
            Idempotent::Yes,
        )
        .await
        .map_err(err)?;
    writes += 1;
    Ok(writes)
}

/// The form before ADR 0014: `{kind: "id\nid\n..."}`.
fn decode_by_kind(data: Option<&Value>) -> BTreeSet<String> {
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

/// The form before ADR 0014, for the test that an old record is still read.
#[cfg(test)]
pub(crate) fn encode_by_kind(ids: &BTreeSet<String>) -> Value {
    use std::collections::BTreeMap;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_before_paging_still_decodes() {
        let ids: BTreeSet<String> = (0..5000)
            .map(|i| format!("policy:sys/policies/acl/app{i}"))
            .chain((0..5000).map(|i| format!("pki-role:pki_int/roles/app{i}")))
            .collect();
        let encoded = encode_by_kind(&ids);
        assert_eq!(encoded.as_object().unwrap().len(), 2, "one string per kind");
        assert_eq!(decode_by_kind(Some(&encoded)), ids);
    }

    #[test]
    fn fifty_thousand_ids_fit_in_a_few_bounded_pages() {
        let ids: Vec<String> = (0..50_000)
            .map(|i| format!("cert-role:auth/cert/certs/app-{i:05}"))
            .collect();
        let p = paged::split(&ids);
        assert!(p.pages.len() >= 2, "{}", p.pages.len());
        assert!(p.pages.iter().all(|x| x.len() <= paged::PAGE_BYTES));
    }
}
