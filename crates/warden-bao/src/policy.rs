//! ACL policies (`sys/policies/acl`).

use reqwest::Method;

use crate::client::{Call, Client};
use crate::error::Result;
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

    /// Deletes policy `name` (no error if absent). Idempotent.
    pub async fn delete_policy(&self, name: &str) -> Result<()> {
        self.delete(&format!("sys/policies/acl/{name}")).await
    }
}
