//! Transport certificates (ADR 0010): the client certificate a runtime host or CI runner hands
//! to the containers and jobs it runs, so their AppRole or JWT login gets through the
//! listener's mTLS requirement. It opens nothing by itself: its name
//! (`<holder>.transport.<domain>`, OU `warden-transport`) matches no cert-auth role, so every
//! permission still comes from the token the workload's own login returns.
//!
//! - [`issue`]: a key generated here, a CSR signed at `<pki>/sign/transport-<holder>` (by an
//!   operator, or by the token of a workload the holder carries: that is how an agent renews
//!   it), checked (our key, the pinned name, client-only) before anyone sees it.
//! - [`Issued::write`]: `cert.pem` (leaf + issuing CA) and `key.pem` (0600) in a private
//!   directory, through `warden_files`.
//! - [`held`] / [`revoke`]: the holder's certificates the PKI stored (the role keeps serials
//!   for this) and their revocation. The listener does **not** consult the CRL (verified on
//!   OpenBao 2.7.2, ADR 0010): revocation stops renewal and cert auth, and the short lifetime
//!   ends the handshake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use warden_bao::{Client, Idempotent};
use warden_pki::KeyAlgorithm;
use warden_spec::naming::{TRANSPORT_OU, transport_common_name, transport_role};
use warden_spec::{Environment, Spec, TransportHolder};
use zeroize::Zeroizing;

/// The certificate file in a transport directory (leaf, then the issuing CA).
pub const CERT_FILE: &str = "cert.pem";
/// The key file in a transport directory (0600).
pub const KEY_FILE: &str = "key.pem";

/// Why a transport certificate could not be issued, written, listed or revoked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The spec declares no `[transport.<holder>]` of this name.
    #[error("the spec has no transport holder `{name}`{}", match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    })]
    UnknownHolder {
        /// The name asked for.
        name: String,
        /// The closest holder name, if one is close.
        suggestion: Option<String>,
    },
    /// The holder exists but not in this environment.
    #[error("transport holder `{name}` may not hold a certificate for `{env}` (it may for: {})", environments.join(", "))]
    NotInEnvironment {
        /// The holder.
        name: String,
        /// The environment asked for.
        env: String,
        /// Its environments.
        environments: Vec<String>,
    },
    /// A lifetime longer than the holder's (the role's `max_ttl`) was asked for.
    #[error(
        "a {asked}s transport certificate was asked for; `{name}`'s certificates live at most {max}s"
    )]
    TtlTooLong {
        /// The holder.
        name: String,
        /// Seconds asked for.
        asked: u64,
        /// The holder's `ttl`, in seconds.
        max: u64,
    },
    /// Key or CSR generation failed.
    #[error("could not {step}: {source}")]
    Key {
        /// What was being done.
        step: &'static str,
        /// Why.
        #[source]
        source: Box<warden_pki::Error>,
    },
    /// OpenBao refused or failed a request.
    #[error("{env}: {what} at {path} failed: {source}")]
    Bao {
        /// The environment.
        env: String,
        /// "sign the CSR", "list the certificates", "revoke".
        what: &'static str,
        /// The request path.
        path: String,
        /// OpenBao's answer.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// OpenBao answered with something other than the certificate asked for.
    #[error("{path} returned an unusable certificate: {reason}")]
    BadCertificate {
        /// The request path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the files failed; nothing half-written is left (writes are atomic).
    #[error("could not write the transport certificate: {source}")]
    Write {
        /// Why.
        #[source]
        source: warden_files::Error,
    },
}

/// The holder `name` of `spec`, allowed in `env`.
pub fn holder<'s>(
    spec: &'s Spec,
    env: &Environment,
    name: &str,
) -> Result<&'s TransportHolder, TransportError> {
    let Some(h) = spec.transport_holder(name) else {
        let names: Vec<&str> = spec.transport.iter().map(|t| t.name.as_str()).collect();
        return Err(TransportError::UnknownHolder {
            name: name.to_owned(),
            suggestion: warden_spec::suggest(name, names.iter().copied()).map(str::to_owned),
        });
    };
    if !h.in_env(env.name.as_str()) {
        return Err(TransportError::NotInEnvironment {
            name: name.to_owned(),
            env: env.name.to_string(),
            environments: h.environments.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(h)
}

/// A transport certificate just issued. The key is wiped on drop and never printed.
pub struct Issued {
    /// The holder.
    pub holder: String,
    /// Its common name.
    pub common_name: String,
    /// Serial as OpenBao spells it (`aa:bb:…`).
    pub serial: String,
    /// End of validity.
    pub not_after: OffsetDateTime,
    chain_pem: String,
    key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("holder", &self.holder)
            .field("serial", &self.serial)
            .field("key", &"...")
            .finish_non_exhaustive()
    }
}

/// Where the files of a transport directory are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportFiles {
    /// Leaf + issuing CA.
    pub cert: PathBuf,
    /// The key (0600).
    pub key: PathBuf,
}

impl TransportFiles {
    /// The files inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join(CERT_FILE),
            key: dir.join(KEY_FILE),
        }
    }
}

impl Issued {
    /// Writes `cert.pem` and `key.pem` into `dir` (created private if missing), key first: a
    /// crash in between leaves the previous certificate with a key that no longer fits, which
    /// the next handshake reports, rather than a certificate whose key was never written.
    ///
    /// An existing `dir` must be ours (owned by this user or root) and writable by no one
    /// else: it is made `0700`, and a directory someone else owns (planted in `/tmp` by another
    /// user, say) would let its owner swap the key and certificate under the workloads, so it
    /// is refused before anything is changed. The files are then written through that one
    /// opened directory, never through a symlink.
    pub fn write(&self, dir: &Path) -> Result<TransportFiles, TransportError> {
        let write = |e| TransportError::Write { source: e };
        let trusted = warden_files::Trusted::process;
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
            warden_files::Dir::open_root(dir, trusted()).map_err(write)?;
        }
        warden_files::ensure_private_dir(dir).map_err(write)?;
        let opened = warden_files::Dir::open_root(dir, trusted()).map_err(write)?;
        opened
            .write(
                KEY_FILE,
                self.key_pem.as_bytes(),
                warden_files::Mode::OwnerOnly,
                None,
            )
            .map_err(write)?;
        opened
            .write(
                CERT_FILE,
                self.chain_pem.as_bytes(),
                warden_files::Mode::Public,
                None,
            )
            .map_err(write)?;
        Ok(TransportFiles::in_dir(dir))
    }

    /// The certificate chain (public).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }
}

/// Issues a transport certificate for `holder` in `env` with `client` (an operator's, or the
/// token of a workload the holder carries). `ttl`: shorter than the holder's, or `None` for
/// the holder's own.
pub async fn issue(
    client: &Client,
    env: &Environment,
    holder: &TransportHolder,
    ttl: Option<Duration>,
) -> Result<Issued, TransportError> {
    let max = holder.ttl.as_secs();
    let ttl = ttl.map_or(max, |t| t.as_secs());
    if ttl > max {
        return Err(TransportError::TtlTooLong {
            name: holder.name.to_string(),
            asked: ttl,
            max,
        });
    }
    let common_name = transport_common_name(&holder.name, env);
    let path = format!(
        "{}/sign/{}",
        env.mounts.pki.trim_matches('/'),
        transport_role(&holder.name)
    );
    sign_client(
        client,
        env,
        &path,
        holder.name.as_str(),
        common_name,
        ttl,
        Some(TRANSPORT_OU),
    )
    .await
}

/// Generates a key here, has OpenBao sign its CSR at `path` for `common_name` (`ttl` seconds)
/// and checks what comes back (the name, the OU when `ou` is given, that it fits the key).
/// Shared with `warden serve enroll` ([`crate::serve`]), whose files have the same layout.
pub(crate) async fn sign_client(
    client: &Client,
    env: &Environment,
    path: &str,
    holder: &str,
    common_name: String,
    ttl: u64,
    ou: Option<&str>,
) -> Result<Issued, TransportError> {
    let path = path.to_owned();
    let key =
        warden_pki::generate_key(KeyAlgorithm::EcdsaP256).map_err(|e| TransportError::Key {
            step: "generate the key",
            source: Box::new(e),
        })?;
    let csr =
        warden_pki::make_csr(&key, &common_name, &[], &[]).map_err(|e| TransportError::Key {
            step: "build the CSR",
            source: Box::new(e),
        })?;
    // Not idempotent: a retried sign would mint a second certificate.
    let data = client
        .write(
            &path,
            &json!({ "csr": csr, "common_name": common_name, "ttl": format!("{ttl}s") }),
            Idempotent::No,
        )
        .await
        .map_err(|e| TransportError::Bao {
            env: env.name.to_string(),
            what: "sign the CSR",
            path: path.clone(),
            source: Box::new(e),
        })?
        .and_then(|s| s.data)
        .unwrap_or_default();
    let bad = |reason: &str| TransportError::BadCertificate {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    let field = |name: &str| data.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let leaf = field("certificate").ok_or_else(|| bad("no certificate"))?;
    let issuing = field("issuing_ca").ok_or_else(|| bad("no issuing_ca"))?;
    let serial = field("serial_number").ok_or_else(|| bad("no serial_number"))?;
    let chain_pem = format!("{}\n{}\n", leaf.trim_end(), issuing.trim_end());
    let info = warden_pki::parse_pem_bundle(&chain_pem)
        .map_err(|e| bad(&e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| bad("empty chain"))?;
    if warden_pki::common_name(&chain_pem).as_deref() != Some(common_name.as_str()) {
        return Err(bad(&format!("it does not name {common_name}")));
    }
    if let Some(ou) = ou
        && !info.subject.contains(ou)
    {
        return Err(bad(&format!("its subject {} lacks OU={ou}", info.subject)));
    }
    let key_pem = key.private_key_pem();
    // The key must fit: a TLS identity built from both refuses a mismatch.
    warden_bao::ClientIdentity::from_pem(
        chain_pem.clone().into_bytes(),
        Zeroizing::new(key_pem.as_bytes().to_vec()),
    )
    .map_err(|e| bad(&format!("it does not fit the key generated here: {e}")))?;
    Ok(Issued {
        holder: holder.to_owned(),
        common_name,
        serial,
        not_after: info.not_after,
        chain_pem,
        key_pem,
    })
}

/// One certificate of a holder, as the PKI stored it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    /// Serial as OpenBao spells it.
    pub serial: String,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Already revoked.
    pub revoked: bool,
}

/// Every unexpired certificate the PKI of `env` stored for `holder` (the transport role keeps
/// serials; identity roles do not, so the listing stays short).
pub async fn held(
    client: &Client,
    env: &Environment,
    holder: &TransportHolder,
    now: OffsetDateTime,
) -> Result<Vec<Held>, TransportError> {
    let pki = env.mounts.pki.trim_matches('/');
    let cn = transport_common_name(&holder.name, env);
    let err = |what: &'static str, path: String| {
        let env = env.name.to_string();
        move |e: warden_bao::Error| TransportError::Bao {
            env,
            what,
            path,
            source: Box::new(e),
        }
    };
    let list_path = format!("{pki}/certs");
    let serials = match client.list(&list_path).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(err("list the certificates", list_path)(e)),
    };
    let mut out = Vec::new();
    for serial in serials {
        let path = format!("{pki}/cert/{serial}");
        let data = client
            .read(&path)
            .await
            .map_err(err("read a certificate", path))?
            .data
            .unwrap_or_default();
        let Some(pem) = data.get("certificate").and_then(|v| v.as_str()) else {
            continue;
        };
        if warden_pki::common_name(pem).as_deref() != Some(cn.as_str()) {
            continue;
        }
        let Some(info) = warden_pki::parse_pem_bundle(pem)
            .ok()
            .and_then(|v| v.into_iter().next())
        else {
            continue;
        };
        if info.not_after <= now {
            continue;
        }
        let revoked = data
            .get("revocation_time")
            .and_then(serde_json::Value::as_i64)
            .is_some_and(|t| t > 0);
        out.push(Held {
            serial,
            not_after: info.not_after,
            revoked,
        });
    }
    out.sort_by_key(|c| c.not_after);
    Ok(out)
}

/// Revokes `serial` at the PKI of `env`.
pub async fn revoke(
    client: &Client,
    env: &Environment,
    serial: &str,
) -> Result<(), TransportError> {
    let path = format!("{}/revoke", env.mounts.pki.trim_matches('/'));
    client
        .write(&path, &json!({ "serial_number": serial }), Idempotent::Yes)
        .await
        .map_err(|e| TransportError::Bao {
            env: env.name.to_string(),
            what: "revoke",
            path,
            source: Box::new(e),
        })?;
    Ok(())
}
