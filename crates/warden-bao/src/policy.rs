//! ACL policies (`sys/policies/acl`).

use std::collections::BTreeMap;

use reqwest::Method;

use crate::client::{Call, Client};
use crate::error::{Error, Result};
use crate::response::Secret;
use crate::retry::Idempotent;

impl Client {
    /// Creates or replaces the ACL policy `name`. Idempotent (sets a fixed state), so retried.
    pub async fn put_policy(&self, name: &str, hcl: &str) -> Result<()> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            policy: &'a str,
        }
        let path = format!("sys/policies/acl/{name}");
        self.send(Call::new(Method::PUT, &path, Idempotent::Yes).json(&Body { policy: hcl })?)
            .await
            .map(drop)
    }

    /// The HCL text of policy `name`; [`crate::Error::NotFound`] if it does not exist.
    pub async fn read_policy(&self, name: &str) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct Data {
            policy: String,
        }
        let path = format!("sys/policies/acl/{name}");
        let secret: Secret = self.send(Call::get(&path)).await?.decode(&path)?;
        Ok(secret.data_as::<Data>(&path)?.policy)
    }

    /// Names of all ACL policies.
    pub async fn list_policies(&self) -> Result<Vec<String>> {
        self.list("sys/policies/acl").await
    }

    /// Every ACL policy's name and HCL text in one request (`LIST sys/policies/detailed/acl`,
    /// OpenBao 2.6 and later), instead of one read per policy: at 10,000 policies that is one
    /// answer of a few MB against 10,000 round trips (issue 16).
    ///
    /// `Ok(None)` when the server has no such route (Vault, older OpenBao: 404 with errors,
    /// 400 or 405), the token may not use it (a policy written before the grant existed), or
    /// the answer cannot be the whole truth: empty (a server always has its `default` policy;
    /// an empty body from a proxy must not read as "no policies", which would make plan create
    /// and later prune every one) or naming a policy other than `root` without its text.
    /// Callers then fall back
    /// to [`Client::list_policies`] and [`Client::read_policy`].
    pub async fn list_policies_detailed(&self) -> Result<Option<BTreeMap<String, String>>> {
        #[derive(serde::Deserialize)]
        struct Info {
            #[serde(default)]
            policy: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Detailed {
            #[serde(default)]
            key_info: BTreeMap<String, Info>,
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            data: Option<Detailed>,
        }
        const PATH: &str = "sys/policies/detailed/acl";
        match self.send(Call::get(PATH).query(&[("list", "true")])).await {
            Ok(reply) => {
                // Straight from the body into the typed answer: at 10,000 policies the answer
                // is several MB, and a `serde_json::Value` of it (then a copy for `data_as`)
                // was the largest thing `evidence export` held.
                let Some(d) = reply.decode::<Answer>(PATH)?.data else {
                    return Ok(None);
                };
                if d.key_info.is_empty() {
                    return Ok(None);
                }
                // `root` has no text (it is not a set of rules); any other policy must.
                Ok(d.key_info
                    .into_iter()
                    .map(|(n, i)| match i.policy {
                        Some(p) => Some((n, p)),
                        None if n == "root" => Some((n, String::new())),
                        None => None,
                    })
                    .collect())
            }
            Err(Error::NotFound { .. }) => Ok(None),
            Err(Error::PermissionDenied { .. } | Error::BadRequest { .. }) => Ok(None),
            Err(Error::Server { status: 405, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes policy `name` (no error if absent). Idempotent.
    pub async fn delete_policy(&self, name: &str) -> Result<()> {
        self.delete(&format!("sys/policies/acl/{name}")).await
    }
}
