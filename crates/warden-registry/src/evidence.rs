//! Evidence packets, because a claim about extraction or regulated custody is only as good as
//! the evidence behind it: one JSON document per evidence component and environment — the
//! contracts of its purposes, their posture, the policies in force, who can reach each
//! credential and its rotation history — signed by OpenBao with an Ed25519 transit key and
//! verifiable offline with the public key alone.
//!
//! - [`export`]: reads (metadata only), builds the payload, signs it with
//!   `transit/keys/warden-evidence` (created on first use: Ed25519, not exportable).
//! - [`verify`] / [`parse_public_keys`]: offline, no server ([`packet`] has the format).
//! - [`read_key`]: the public key of every version, for auditors to keep.
//! - [`readers`]: which policies (and so which identities) reach a credential — pure.
//! - [`canonical`]: the exact bytes a signature covers.

pub mod canonical;
mod collect;
mod key;
pub mod packet;
pub mod readers;

use serde::Serialize;
use warden_bao::Client;
use warden_spec::{Environment, Spec};

pub use key::{EVIDENCE_KEY, EvidenceKey, KeyVersion, ensure_key, read_key};
pub use packet::{
    ALG, Digest, FORMAT, FORMAT_V1, Header, PublicKey, Streamed, Verified, VerifyError,
    parse_public_keys, verify, verify_stream,
};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// No purpose names this evidence component.
    #[error(
        "no purpose names evidence component `{component}`{}",
        known_list(known)
    )]
    UnknownComponent {
        /// The component asked for.
        component: String,
        /// The components the spec names.
        known: Vec<String>,
    },
    /// The component's purposes cover nothing in this environment.
    #[error("evidence component `{component}` covers no credential in environment `{env}`")]
    NothingInEnv {
        /// The component.
        component: String,
        /// Environment.
        env: String,
    },
    /// A read failed.
    #[error("{env}: reading {what}: {source}")]
    Read {
        /// Environment.
        env: String,
        /// What was read.
        what: String,
        /// The client error.
        #[source]
        source: warden_bao::Error,
    },
    /// A KV metadata read failed.
    #[error("{env}: {source}")]
    Kv {
        /// Environment.
        env: String,
        /// The KV error.
        #[source]
        source: warden_bao::KvError,
    },
    /// A transit key description could not be read.
    #[error("{env}: {source}")]
    Transit {
        /// Environment.
        env: String,
        /// The transit error.
        #[source]
        source: warden_bao::TransitError,
    },
    /// A registry entry's credential pages could not be read whole (ADR 0014).
    #[error("{env}: registry entry of `{purpose}`: {source}")]
    Pages {
        /// Environment.
        env: String,
        /// The purpose.
        purpose: String,
        /// What is wrong with the pages.
        #[source]
        source: warden_bao::paged::PagedError,
    },
    /// Posture could not be read.
    #[error("{env}: posture: {source}")]
    Posture {
        /// Environment.
        env: String,
        /// The posture error.
        #[source]
        source: crate::posture::Error,
    },
    /// Reveal records could not be read.
    #[error("{env}: reveal records: {source}")]
    Reveal {
        /// Environment.
        env: String,
        /// The reveal error.
        #[source]
        source: crate::reveal::RevealError,
    },
    /// The signing key could not be created.
    #[error("{env}: creating the evidence key: {source}")]
    CreateKey {
        /// Environment.
        env: String,
        /// The transit error.
        #[source]
        source: warden_bao::TransitError,
    },
    /// The signing key is not what evidence needs.
    #[error("{env}: evidence key: {what}")]
    Key {
        /// Environment.
        env: String,
        /// What is wrong.
        what: String,
    },
    /// OpenBao refused to sign.
    #[error("{env}: signing the packet: {source}")]
    Sign {
        /// Environment.
        env: String,
        /// The client error.
        #[source]
        source: warden_bao::Error,
    },
    /// Writing the packet failed (its destination is left to the caller to discard).
    #[error("{env}: writing the packet: {source}")]
    Write {
        /// Environment.
        env: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The signature OpenBao returned does not verify with the key's public half: nothing
    /// is written.
    #[error(
        "{env}: the signature OpenBao returned does not verify with version {version} of the evidence key; no packet was written"
    )]
    SelfCheck {
        /// Environment.
        env: String,
        /// Key version.
        version: u64,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        " (the spec names none)".to_owned()
    } else {
        format!(" (the spec names: {})", known.join(", "))
    }
}

/// What to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportRequest<'a> {
    /// The spec.
    pub spec: &'a Spec,
    /// The environment (the client's server).
    pub env: &'a Environment,
    /// Evidence component id (a purpose's `evidence`).
    pub component: &'a str,
    /// Now (Unix seconds): the instant posture is judged and the packet is dated.
    pub now: i64,
}

/// A signed packet.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// The packet's bytes, canonical JSON, exactly as signed.
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// Component.
    pub component: String,
    /// Environment.
    pub env: String,
    /// Purposes covered.
    pub purposes: Vec<String>,
    /// The signing key.
    pub key: String,
    /// Its version.
    pub key_version: u64,
    /// Its fingerprint.
    pub key_sha256: String,
    /// Whether the key was created by this export (`warden apply` should own it).
    pub key_created: bool,
}

/// Builds, signs and self-checks the packet for `req.component` in `req.env`, in memory
/// ([`Exported::bytes`]). [`export_to`] writes it to a file instead, in bounded memory.
pub async fn export(client: &Client, req: &ExportRequest<'_>) -> Result<Exported, EvidenceError> {
    let mut bytes = Vec::new();
    let mut exported = export_to(client, req, &mut bytes).await?;
    exported.bytes = bytes;
    Ok(exported)
}

/// Builds, signs and self-checks the packet for `req.component` in `req.env`, writing it to
/// `out` as it is built: the payload's bytes are hashed on their way out, and transit then
/// signs the statement of that digest ([`packet`]), so a packet of any size is never held in
/// memory. The returned [`Exported::bytes`] is empty. On an error `out` holds part of a
/// packet: the caller discards it (the CLI writes to a temporary file it renames only on
/// success).
pub async fn export_to(
    client: &Client,
    req: &ExportRequest<'_>,
    out: &mut dyn std::io::Write,
) -> Result<Exported, EvidenceError> {
    let env = req.env.name.as_str();
    let purposes: Vec<_> = req
        .spec
        .purposes
        .iter()
        .filter(|p| p.evidence == req.component)
        .collect();
    if purposes.is_empty() {
        let mut known: Vec<String> = req
            .spec
            .purposes
            .iter()
            .map(|p| p.evidence.clone())
            .collect();
        known.sort();
        known.dedup();
        return Err(EvidenceError::UnknownComponent {
            component: req.component.to_owned(),
            known,
        });
    }
    let creds = req.spec.credentials();
    let here: Vec<_> = purposes
        .into_iter()
        .filter(|p| {
            creds
                .iter()
                .any(|c| c.environments.contains(&req.env.name) && p.covers(&c.id))
        })
        .collect();
    drop(creds);
    if here.is_empty() {
        return Err(EvidenceError::NothingInEnv {
            component: req.component.to_owned(),
            env: env.to_owned(),
        });
    }
    let ids: Vec<String> = here.iter().map(|p| p.id.to_string()).collect();
    let inputs = collect::Inputs {
        client,
        spec: req.spec,
        env: req.env,
        component: req.component,
        purposes: here,
        now: req.now,
    };
    let write_err = |source| EvidenceError::Write {
        env: env.to_owned(),
        source,
    };
    out.write_all(&packet::prefix()).map_err(write_err)?;
    let mut hashing = packet::HashingWriter::new(&mut *out);
    collect::write_payload(&inputs, &mut hashing).await?;
    let (digest, out) = hashing.finish();
    let signed = sign_digest(client, env, &req.env.mounts.transit, &digest).await?;
    out.write_all(&packet::suffix(&signed.header, &digest, &signed.signature))
        .map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(Exported {
        bytes: Vec::new(),
        component: req.component.to_owned(),
        env: env.to_owned(),
        purposes: ids,
        key: signed.header.key,
        key_version: signed.header.key_version,
        key_sha256: signed.header.key_sha256,
        key_created: signed.key_created,
    })
}

/// A digest signed by transit and checked with the key's public half.
struct DigestSignature {
    header: Header,
    signature: Vec<u8>,
    key_created: bool,
}

/// Has the environment's evidence key sign the statement of `digest` (the key is created on
/// first use) and checks the signature with the key's public half: fail closed, a packet is
/// written only if it verifies with the key auditors will use.
async fn sign_digest(
    client: &Client,
    env: &str,
    transit_mount: &str,
    digest: &Digest,
) -> Result<DigestSignature, EvidenceError> {
    let key = ensure_key(client, env, transit_mount).await?;
    let latest = key.latest().cloned().ok_or_else(|| EvidenceError::Key {
        env: env.to_owned(),
        what: format!("version {} has no public key", key.latest_version),
    })?;
    let header = Header {
        alg: ALG.to_owned(),
        key: key.name.clone(),
        key_version: latest.version,
        key_sha256: latest.sha256.clone(),
    };
    // Transit signs the fixed-size statement, not the payload: a signing request stays a few
    // hundred bytes whatever the payload's size (OpenBao refuses requests over 32 MiB).
    let msg = packet::statement(&header, digest);
    let signature = key::sign(client, env, &key, latest.version, &msg).await?;
    if !latest
        .key
        .as_ref()
        .is_some_and(|k| k.verifies(&msg, &signature))
    {
        return Err(EvidenceError::SelfCheck {
            env: env.to_owned(),
            version: latest.version,
        });
    }
    Ok(DigestSignature {
        header,
        signature,
        key_created: key.created_now,
    })
}

/// A payload signed into a packet ([`packet`] format) with the environment's evidence key.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The packet's bytes, canonical JSON, exactly as signed.
    pub bytes: Vec<u8>,
    /// The signing key (`transit:<mount>/warden-evidence`).
    pub key: String,
    /// Its version.
    pub key_version: u64,
    /// Its fingerprint.
    pub key_sha256: String,
    /// Whether this call created the key.
    pub key_created: bool,
}

/// Signs any JSON object `payload` into a packet with the evidence key of the environment
/// `env` (transit mount `transit_mount`; the key is created on first use), and checks the
/// signature with the key's public half before handing it back. The one way every signed
/// record Warden writes (evidence, backup manifests, DR drill reports) is made, so
/// `warden evidence verify` checks them all offline.
pub async fn sign_payload(
    client: &Client,
    env: &str,
    transit_mount: &str,
    payload: &serde_json::Value,
) -> Result<Signed, EvidenceError> {
    let body = packet::body(payload);
    let digest = Digest::of(&body);
    let signed = sign_digest(client, env, transit_mount, &digest).await?;
    Ok(Signed {
        bytes: packet::assemble(&body, &signed.header, &digest, &signed.signature),
        key: signed.header.key,
        key_version: signed.header.key_version,
        key_sha256: signed.header.key_sha256,
        key_created: signed.key_created,
    })
}
