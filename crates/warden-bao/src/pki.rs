//! PKI engine: the intermediate-CA ceremony (CSR generated inside OpenBao, signed by the
//! offline root, imported back) and reading issuers and chains.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::{Call, Client};
use crate::error::{Error, Result};
use crate::response::{Secret, null_default};
use crate::retry::Idempotent;

/// Key algorithm for keys OpenBao generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA P-256.
    EcP256,
    /// ECDSA P-384.
    EcP384,
    /// RSA 2048.
    Rsa2048,
    /// RSA 3072.
    Rsa3072,
    /// RSA 4096.
    Rsa4096,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// `(key_type, key_bits)` as the PKI API spells them.
    pub fn api_params(self) -> (&'static str, u32) {
        match self {
            Self::EcP256 => ("ec", 256),
            Self::EcP384 => ("ec", 384),
            Self::Rsa2048 => ("rsa", 2048),
            Self::Rsa3072 => ("rsa", 3072),
            Self::Rsa4096 => ("rsa", 4096),
            Self::Ed25519 => ("ed25519", 0),
        }
    }
}

/// A CSR for an intermediate CA whose key stays inside OpenBao.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct IntermediateCsr {
    /// PKCS#10 CSR, PEM.
    #[serde(rename = "csr")]
    pub csr_pem: String,
    /// Id of the key generated for it.
    #[serde(default, deserialize_with = "null_default")]
    pub key_id: String,
}

/// What `intermediate/set-signed` imported.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct SetSigned {
    /// Issuer ids created (empty if the certificate was already imported).
    #[serde(default, deserialize_with = "null_default")]
    pub imported_issuers: Vec<String>,
    /// Key ids matched.
    #[serde(default, deserialize_with = "null_default")]
    pub imported_keys: Vec<String>,
    /// issuer id → key id ("" for key-less issuers such as a root included in the bundle).
    #[serde(default, deserialize_with = "null_default")]
    pub mapping: BTreeMap<String, String>,
}

/// One issuer from `LIST <mount>/issuers`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuerSummary {
    /// Issuer id (UUID).
    pub id: String,
    /// Issuer name ("" if unnamed).
    pub name: String,
    /// Whether it is the mount's default issuer.
    pub is_default: bool,
}

/// A single issuer (`<mount>/issuer/<ref>`).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Issuer {
    /// Issuer id.
    pub issuer_id: String,
    /// Issuer name.
    #[serde(default, deserialize_with = "null_default")]
    pub issuer_name: String,
    /// Key id ("" for a key-less issuer, e.g. an imported root).
    #[serde(default, deserialize_with = "null_default")]
    pub key_id: String,
    /// The issuer certificate, PEM.
    pub certificate: String,
    /// Its chain as OpenBao knows it, each entry PEM, issuer first.
    #[serde(default, deserialize_with = "null_default")]
    pub ca_chain: Vec<String>,
    /// Allowed usages, e.g. "read-only,issuing-certificates,crl-signing".
    #[serde(default, deserialize_with = "null_default")]
    pub usage: String,
    /// What happens to leaf `not_after` beyond the issuer's ("err", "truncate", "permit").
    #[serde(default, deserialize_with = "null_default")]
    pub leaf_not_after_behavior: String,
}

fn mount_path(mount: &str, rest: &str) -> String {
    format!("{}/{rest}", mount.trim_matches('/'))
}

impl Client {
    /// Generates a key inside OpenBao and returns a CSR for it (`<mount>/intermediate/
    /// generate/internal`). Not retried once sent: each call creates another key.
    pub async fn pki_generate_intermediate_csr(
        &self,
        mount: &str,
        common_name: &str,
        key_type: KeyType,
    ) -> Result<IntermediateCsr> {
        #[derive(Serialize)]
        struct Body<'a> {
            common_name: &'a str,
            key_type: &'a str,
            #[serde(skip_serializing_if = "is_zero")]
            key_bits: u32,
        }
        let (kt, bits) = key_type.api_params();
        let path = mount_path(mount, "intermediate/generate/internal");
        let body = Body {
            common_name,
            key_type: kt,
            key_bits: bits,
        };
        let secret: Secret = self
            .send(Call::new(Method::POST, &path, Idempotent::No).json(&body)?)
            .await?
            .decode(&path)?;
        secret.data_as(&path)
    }

    /// A CSR for a key the mount already holds (`<mount>/intermediate/generate/existing`,
    /// `key_ref` = the key's id): what a root rollover re-signs, so the intermediate keeps its
    /// key and every leaf it issued keeps verifying (ADR 0030). Creates no key; retried.
    pub async fn pki_existing_key_csr(
        &self,
        mount: &str,
        common_name: &str,
        key_ref: &str,
    ) -> Result<IntermediateCsr> {
        #[derive(Serialize)]
        struct Body<'a> {
            common_name: &'a str,
            key_ref: &'a str,
        }
        let path = mount_path(mount, "intermediate/generate/existing");
        let secret: Secret = self
            .send(Call::new(Method::POST, &path, Idempotent::Yes).json(&Body {
                common_name,
                key_ref,
            })?)
            .await?
            .decode(&path)?;
        secret.data_as(&path)
    }

    /// Imports the signed intermediate (PEM; append the root to make it a key-less issuer so
    /// `ca_chain` returns the full chain). Retried: importing the same certificate again is a
    /// no-op in OpenBao.
    pub async fn pki_set_signed(&self, mount: &str, pem_bundle: &str) -> Result<SetSigned> {
        #[derive(Serialize)]
        struct Body<'a> {
            certificate: &'a str,
        }
        let path = mount_path(mount, "intermediate/set-signed");
        let reply = self
            .send(Call::new(Method::POST, &path, Idempotent::Yes).json(&Body {
                certificate: pem_bundle,
            })?)
            .await?;
        match crate::client::optional_secret(&reply, &path)? {
            Some(secret) if secret.data.is_some() => secret.data_as(&path),
            _ => Ok(SetSigned {
                imported_issuers: Vec::new(),
                imported_keys: Vec::new(),
                mapping: BTreeMap::new(),
            }),
        }
    }

    /// The default issuer's chain, PEM, issuer first (`<mount>/cert/ca_chain`). An empty
    /// string when the mount has no issuer yet (OpenBao answers 400 "no default issuer
    /// currently configured"), so ensure-style provisioning can test for it without matching
    /// errors; a missing mount is still [`Error::NotFound`].
    pub async fn pki_ca_chain(&self, mount: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(default)]
            ca_chain: Option<String>,
            #[serde(default)]
            certificate: Option<String>,
        }
        let path = mount_path(mount, "cert/ca_chain");
        let reply = match self.send(Call::get(&path)).await {
            Ok(reply) => reply,
            Err(Error::BadRequest { errors, .. })
                if errors.iter().any(|e| e.contains("no default issuer")) =>
            {
                return Ok(String::new());
            }
            Err(e) => return Err(e),
        };
        let secret: Secret = reply.decode(&path)?;
        let data: Data = secret.data_as(&path)?;
        Ok(data
            .ca_chain
            .filter(|c| !c.trim().is_empty())
            .or(data.certificate)
            .unwrap_or_default())
    }

    /// The default issuer's own certificate, PEM (`<mount>/cert/ca`). An empty string when the
    /// mount has no issuer yet, like [`Client::pki_ca_chain`].
    pub async fn pki_ca_cert(&self, mount: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(default)]
            certificate: Option<String>,
        }
        let path = mount_path(mount, "cert/ca");
        let reply = match self.send(Call::get(&path)).await {
            Ok(reply) => reply,
            Err(Error::BadRequest { errors, .. })
                if errors.iter().any(|e| e.contains("no default issuer")) =>
            {
                return Ok(String::new());
            }
            Err(e) if e.is_not_found() => return Ok(String::new()),
            Err(e) => return Err(e),
        };
        let secret: Secret = reply.decode(&path)?;
        Ok(secret
            .data_as::<Data>(&path)?
            .certificate
            .unwrap_or_default())
    }

    /// All issuers of the mount. An empty mount lists as empty.
    pub async fn pki_read_issuers(&self, mount: &str) -> Result<Vec<IssuerSummary>> {
        #[derive(Deserialize)]
        struct Info {
            #[serde(default, deserialize_with = "null_default")]
            issuer_name: String,
            #[serde(default, deserialize_with = "null_default")]
            is_default: bool,
        }
        #[derive(Deserialize)]
        struct Data {
            #[serde(default, deserialize_with = "null_default")]
            keys: Vec<String>,
            #[serde(default, deserialize_with = "null_default")]
            key_info: BTreeMap<String, Info>,
        }
        let path = mount_path(mount, "issuers");
        let reply = match self.send(Call::get(&path).query(&[("list", "true")])).await {
            Ok(r) => r,
            Err(Error::NotFound { errors, .. }) if errors.is_empty() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let secret: Secret = reply.decode(&path)?;
        let mut data: Data = secret.data_as(&path)?;
        Ok(data
            .keys
            .into_iter()
            .map(|id| {
                let info = data.key_info.remove(&id);
                IssuerSummary {
                    name: info
                        .as_ref()
                        .map(|i| i.issuer_name.clone())
                        .unwrap_or_default(),
                    is_default: info.is_some_and(|i| i.is_default),
                    id,
                }
            })
            .collect())
    }

    /// One issuer by id, name, or "default". An unknown reference is [`Error::NotFound`]
    /// (OpenBao 2.7 answers it with a 500 "unable to find PKI issuer", which would otherwise
    /// look like a server fault).
    pub async fn pki_read_issuer(&self, mount: &str, issuer_ref: &str) -> Result<Issuer> {
        let path = mount_path(mount, &format!("issuer/{issuer_ref}"));
        let reply = match self.send(Call::get(&path)).await {
            Ok(reply) => reply,
            Err(Error::Server {
                status: 500,
                path,
                errors,
            }) if errors
                .iter()
                .any(|e| e.contains("unable to find PKI issuer")) =>
            {
                return Err(Error::NotFound { path, errors });
            }
            Err(e) => return Err(e),
        };
        let secret: Secret = reply.decode(&path)?;
        secret.data_as(&path)
    }

    /// Makes `issuer_id` the mount's default issuer (`<mount>/config/issuers`): what
    /// `cert/ca_chain`, `issuer_ref = "default"` roles and new leaves follow from now on.
    /// Retried: setting the same default again is a no-op.
    pub async fn pki_set_default_issuer(&self, mount: &str, issuer_id: &str) -> Result<()> {
        #[derive(Serialize)]
        struct Body<'a> {
            default: &'a str,
        }
        let path = mount_path(mount, "config/issuers");
        self.send(
            Call::new(Method::POST, &path, Idempotent::Yes).json(&Body { default: issuer_id })?,
        )
        .await
        .map(drop)
    }

    /// Deletes one issuer from the mount (`DELETE <mount>/issuer/<ref>`); its key stays.
    /// Deleting one already gone is not an error.
    pub async fn pki_delete_issuer(&self, mount: &str, issuer_ref: &str) -> Result<()> {
        let path = mount_path(mount, &format!("issuer/{issuer_ref}"));
        match self.delete(&path).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Every issuer's certificate in the mount, with its id and whether it is the default, read
    /// from the unauthenticated `LIST <mount>/issuers` and `<mount>/issuer/<id>/json`: the
    /// trust set during an intermediate rotation (both issuers), readable by any agent.
    pub async fn pki_issuer_certificates(&self, mount: &str) -> Result<Vec<IssuerCertificate>> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(default, deserialize_with = "null_default")]
            certificate: String,
        }
        let mut out = Vec::new();
        for summary in self.pki_read_issuers(mount).await? {
            let path = mount_path(mount, &format!("issuer/{}/json", summary.id));
            let reply = match self.send(Call::get(&path)).await {
                Ok(r) => r,
                // Deleted between the list and the read (a retirement): not trusted any more.
                Err(e) if e.is_not_found() => continue,
                Err(Error::Server {
                    status: 500,
                    errors,
                    ..
                }) if errors
                    .iter()
                    .any(|e| e.contains("unable to find PKI issuer")) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let secret: Secret = reply.decode(&path)?;
            let data: Data = secret.data_as(&path)?;
            out.push(IssuerCertificate {
                id: summary.id,
                is_default: summary.is_default,
                certificate: data.certificate,
            });
        }
        Ok(out)
    }
}

/// One issuer's certificate ([`Client::pki_issuer_certificates`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuerCertificate {
    /// Issuer id.
    pub id: String,
    /// Whether it is the mount's default issuer.
    pub is_default: bool,
    /// Its certificate, PEM.
    pub certificate: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_map_to_api() {
        assert_eq!(KeyType::EcP256.api_params(), ("ec", 256));
        assert_eq!(KeyType::Rsa4096.api_params(), ("rsa", 4096));
        assert_eq!(KeyType::Ed25519.api_params().0, "ed25519");
    }
}
