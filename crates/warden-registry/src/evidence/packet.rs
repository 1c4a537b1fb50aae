//! The packet on disk and its offline verification.
//!
//! ```text
//! { "format": "warden-evidence/2",
//!   "payload": { … },
//!   "signature": { "alg": "EdDSA", "key": "transit:<mount>/warden-evidence",
//!                  "key_version": N, "key_sha256": "<hex SHA-256 of the public key's SPKI DER>",
//!                  "payload_sha256": "<hex SHA-256 of the canonical payload bytes>",
//!                  "payload_size": <their length in bytes>,
//!                  "value": "<base64 of the 64-byte Ed25519 signature>" } }
//! ```
//!
//! The signature covers a fixed-size *statement*: the canonical form ([`super::canonical`])
//! of the packet without `payload` and without `signature.value` — the format, the header
//! that names the key, and the payload's SHA-256 and size. The digest is of the exact
//! canonical payload bytes, which verification recomputes, so nothing in the packet escapes
//! the signature; and what OpenBao is asked to sign stays a few hundred bytes however large
//! the payload (a 10,000-identity packet is tens of MB, past OpenBao's 32 MiB
//! `max_request_size`; ADR 0014). Ed25519 itself cannot be prehashed by transit, hence the
//! statement rather than `prehashed`.
//!
//! `warden-evidence/1` packets (signature over the whole canonical packet without
//! `signature.value`, no digest fields) are still verified, so older packets and backup
//! manifests stay valid offline. Verification needs only the packet and the public key: no
//! server, no network.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Value, json};

use super::canonical;

/// The packet format this code writes (and reads).
pub const FORMAT: &str = "warden-evidence/2";
/// The previous format, still read: the signature covers the whole packet.
pub const FORMAT_V1: &str = "warden-evidence/1";
/// The one signature algorithm: Ed25519 (pure, no prehash).
pub const ALG: &str = "EdDSA";

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (33 bytes: 0 unused bits + 32-byte key) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The signed header: which key signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// [`ALG`].
    pub alg: String,
    /// `transit:<mount>/<key>`.
    pub key: String,
    /// The key version that signed.
    pub key_version: u64,
    /// Hex SHA-256 of that version's public key (SPKI DER).
    pub key_sha256: String,
}

/// The payload's digest, as a v2 signature states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Hex SHA-256 of the canonical payload bytes.
    pub payload_sha256: String,
    /// Their length in bytes.
    pub payload_size: u64,
}

impl Digest {
    /// The digest of `body`, the canonical payload bytes.
    pub fn of(body: &[u8]) -> Self {
        Self {
            payload_sha256: hex::encode(digest::digest(&digest::SHA256, body).as_ref()),
            payload_size: body.len() as u64,
        }
    }
}

/// Why a packet does not verify. [`VerifyError::is_tamper`] separates "changed after signing"
/// from input that is not a packet at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not JSON (or a duplicated key, which a signed packet never has).
    #[error("the packet is not valid JSON: {reason}")]
    NotJson {
        /// serde_json's message, with line and column.
        reason: String,
    },
    /// JSON, but a field is missing or of the wrong type.
    #[error("not an evidence packet: {what}")]
    NotAPacket {
        /// What is missing or wrong.
        what: String,
    },
    /// Another format version.
    #[error("unsupported packet format `{found}` (this warden reads `{FORMAT}` and `{FORMAT_V1}`)")]
    UnknownFormat {
        /// The format found.
        found: String,
    },
    /// Another signature algorithm.
    #[error("unsupported signature algorithm `{alg}` (packets are signed with `{ALG}`)")]
    UnsupportedAlg {
        /// The algorithm found.
        alg: String,
    },
    /// The key file holds no usable public key.
    #[error(
        "the key file holds no Ed25519 public key (expected PEM `PUBLIC KEY` blocks from `warden evidence key`)"
    )]
    NoKeys,
    /// A `PUBLIC KEY` block of the key file is not an Ed25519 key.
    #[error("public key #{index} in the key file {reason}")]
    BadKey {
        /// 1-based position in the file.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The signature value is not 64 bytes of base64.
    #[error(
        "signature does not match: the signature value is not a base64 Ed25519 signature (the packet was changed after signing)"
    )]
    SignatureEncoding,
    /// The payload is not the one the signature states (its SHA-256 or size differs).
    #[error(
        "signature does not match: the packet was changed after signing (its payload's SHA-256 is not the one the signature states)"
    )]
    PayloadDigest,
    /// No key of the file verifies the signature.
    #[error("{}", if *key_known {
        "signature does not match: the packet was changed after signing".to_owned()
    } else {
        format!("signature does not match any key in the key file: the packet names key sha256:{key_sha256} (version {key_version} of {key}); verify with that key, or the packet was changed after signing")
    })]
    Mismatch {
        /// Whether the key the packet names is in the key file.
        key_known: bool,
        /// The key the packet names.
        key: String,
        /// Its version.
        key_version: u64,
        /// Its fingerprint.
        key_sha256: String,
    },
}

impl VerifyError {
    /// The packet parsed as a packet but its signature does not hold: it was changed after
    /// signing (or the key is not the one that signed).
    pub fn is_tamper(&self) -> bool {
        matches!(
            self,
            Self::SignatureEncoding | Self::PayloadDigest | Self::Mismatch { .. }
        )
    }
}

/// What a valid packet says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// The packet's format ([`FORMAT`] or [`FORMAT_V1`]).
    pub format: String,
    /// Evidence component.
    pub component: String,
    /// Environment.
    pub env: String,
    /// When it was generated (Unix seconds).
    pub generated_at: i64,
    /// The signing key.
    pub key: String,
    /// Its version.
    pub key_version: u64,
    /// Its fingerprint.
    pub key_sha256: String,
    /// Purposes covered.
    pub purposes: Vec<String>,
}

/// An Ed25519 public key from a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The raw 32 bytes.
    pub raw: [u8; 32],
    /// Hex SHA-256 of its SPKI DER.
    pub sha256: String,
}

impl PublicKey {
    /// From the raw 32-byte key (as transit reports it, base64-decoded).
    pub fn from_raw(raw: [u8; 32]) -> Self {
        let der = spki_der(&raw);
        Self {
            raw,
            sha256: hex::encode(digest::digest(&digest::SHA256, &der).as_ref()),
        }
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn pem(&self) -> String {
        let b64 = STANDARD.encode(spki_der(&self.raw));
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Whether `sig` is this key's signature of `msg`.
    pub fn verifies(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(msg, sig)
            .is_ok()
    }
}

fn spki_der(raw: &[u8; 32]) -> Vec<u8> {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(raw);
    der
}

/// Every `PUBLIC KEY` block of `pem` (text between blocks is ignored), each an Ed25519 key.
pub fn parse_public_keys(pem: &str) -> Result<Vec<PublicKey>, VerifyError> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let index = out.len() + 1;
        let body_start = start + BEGIN.len();
        let Some(len) = rest[body_start..].find(END) else {
            return Err(VerifyError::BadKey {
                index,
                reason: "has no END line",
            });
        };
        let body: String = rest[body_start..body_start + len]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = STANDARD.decode(body).map_err(|_| VerifyError::BadKey {
            index,
            reason: "is not valid base64",
        })?;
        let raw = der
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or(VerifyError::BadKey {
                index,
                reason: "is not an Ed25519 key",
            })?;
        out.push(PublicKey::from_raw(raw));
        rest = &rest[body_start + len + END.len()..];
    }
    if out.is_empty() {
        return Err(VerifyError::NoKeys);
    }
    Ok(out)
}

/// The canonical payload bytes: what [`Digest`] covers and what the packet embeds verbatim.
pub fn body(payload: &Value) -> Vec<u8> {
    canonical::to_bytes(payload)
}

/// The bytes a v2 signature covers: the canonical packet without `payload` and without
/// `signature.value`. Its size depends on the key's name only, never on the payload.
pub fn statement(header: &Header, digest: &Digest) -> Vec<u8> {
    canonical::to_bytes(&json!({
        "format": FORMAT,
        "signature": signature_object(header, digest),
    }))
}

fn signature_object(header: &Header, digest: &Digest) -> Value {
    let mut sig = serde_json::to_value(header).expect("a header serialises");
    sig["payload_sha256"] = Value::String(digest.payload_sha256.clone());
    sig["payload_size"] = Value::from(digest.payload_size);
    sig
}

/// The bytes a v1 signature covers: the canonical packet without `signature.value`. Only
/// verified now, never written.
pub fn signing_input_v1(payload: &Value, header: &Header) -> Vec<u8> {
    canonical::to_bytes(&json!({
        "format": FORMAT_V1,
        "payload": payload,
        "signature": header,
    }))
}

/// The v2 packet's bytes (canonical, no trailing newline: every byte of the file is
/// meaningful). `body` ([`body`]) is spliced in as is rather than serialised again: the
/// top-level keys sort as `format` < `payload` < `signature`, so the result is exactly the
/// canonical form of the whole packet.
pub fn assemble(body: &[u8], header: &Header, digest: &Digest, signature: &[u8]) -> Vec<u8> {
    let suffix = suffix(header, digest, signature);
    let mut out = Vec::with_capacity(body.len() + suffix.len() + 64);
    out.extend_from_slice(&prefix());
    out.extend_from_slice(body);
    out.extend_from_slice(&suffix);
    out
}

/// What a v2 packet starts with, before the payload's bytes: `{"format":"warden-evidence/2","payload":`.
/// Fixed, so a packet can be written (and checked) before its payload is known.
pub fn prefix() -> Vec<u8> {
    let mut out = b"{\"format\":".to_vec();
    out.extend_from_slice(&canonical::to_bytes(&Value::String(FORMAT.to_owned())));
    out.extend_from_slice(b",\"payload\":");
    out
}

/// What a v2 packet ends with, after the payload's bytes: `,"signature":{…}}`.
pub fn suffix(header: &Header, digest: &Digest, signature: &[u8]) -> Vec<u8> {
    let mut sig = signature_object(header, digest);
    sig["value"] = Value::String(STANDARD.encode(signature));
    let mut out = SIGNATURE_KEY.to_vec();
    out.extend_from_slice(&canonical::to_bytes(&sig));
    out.push(b'}');
    out
}

/// Where the signature object starts in a canonical v2 packet. Inside a JSON string a quote
/// is always escaped, so these bytes only occur as a key; the top-level `signature` is the
/// last key of the packet and its object has no nested object, so it is the last occurrence.
const SIGNATURE_KEY: &[u8] = b",\"signature\":";

/// Writes the canonical payload's bytes to `inner` while hashing them: the payload of a large
/// packet is never held whole ([`Digest`] when done).
pub struct HashingWriter<W> {
    inner: W,
    ctx: digest::Context,
    len: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    /// Hashes and forwards to `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            ctx: digest::Context::new(&digest::SHA256),
            len: 0,
        }
    }

    /// The digest of everything written, and the inner writer back.
    pub fn finish(self) -> (Digest, W) {
        let digest = Digest {
            payload_sha256: hex::encode(self.ctx.finish().as_ref()),
            payload_size: self.len,
        };
        (digest, self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What [`verify_stream`] found.
#[derive(Debug)]
pub enum Streamed {
    /// A canonical v2 packet, checked without holding it.
    Checked(Verified),
    /// Not laid out as Warden writes v2 packets (v1, reformatted, or not a packet): verify it
    /// whole with [`verify`].
    NotCanonical,
}

/// Verifies a packet laid out exactly as Warden writes v2 (canonical bytes) from `r`, in
/// bounded memory whatever its size: the payload's bytes are hashed as they are read and the
/// few fields [`Verified`] reports are read with everything else skipped. Since the digest
/// is of the exact bytes, a payload that matches the signed statement is the one Warden
/// signed, byte for byte. Anything else (a v1 packet, a pretty-printed one) is
/// [`Streamed::NotCanonical`].
pub fn verify_stream<R: std::io::Read + std::io::Seek>(
    r: &mut R,
    keys: &[PublicKey],
) -> Result<Streamed, VerifyError> {
    use std::io::{Read, SeekFrom};
    let io = |e: std::io::Error| VerifyError::NotJson {
        reason: format!("could not read the packet: {e}"),
    };
    let len = r.seek(SeekFrom::End(0)).map_err(io)?;
    let prefix = prefix();
    // The signature object is a few hundred bytes; 64 KiB leaves room for a long key name.
    let tail_len = len.min(64 * 1024);
    if len < prefix.len() as u64 + 2 {
        return Ok(Streamed::NotCanonical);
    }
    let mut head = vec![0u8; prefix.len()];
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    r.read_exact(&mut head).map_err(io)?;
    if head != prefix {
        return Ok(Streamed::NotCanonical);
    }
    let mut tail = vec![0u8; tail_len as usize];
    r.seek(SeekFrom::Start(len - tail_len)).map_err(io)?;
    r.read_exact(&mut tail).map_err(io)?;
    let Some(at) = tail
        .windows(SIGNATURE_KEY.len())
        .rposition(|w| w == SIGNATURE_KEY)
    else {
        return Ok(Streamed::NotCanonical);
    };
    let sig_bytes = &tail[at + SIGNATURE_KEY.len()..];
    let Some(sig_bytes) = sig_bytes.strip_suffix(b"}") else {
        return Ok(Streamed::NotCanonical);
    };
    let Ok(sig) = canonical::parse_strict(sig_bytes) else {
        return Ok(Streamed::NotCanonical);
    };
    // Only a signature object exactly as written (canonical, strings and numbers only) is
    // taken on this path; anything else is left to the whole-packet check.
    if !sig
        .as_object()
        .is_some_and(|o| o.values().all(|v| v.is_string() || v.is_u64()))
        || canonical::to_bytes(&sig) != sig_bytes
    {
        return Ok(Streamed::NotCanonical);
    }
    let payload_start = prefix.len() as u64;
    let payload_len = len - tail_len + at as u64 - payload_start;
    let (header, stated, signature) = signature_fields(&sig, true)?;
    // Hash the payload's bytes as they stream by.
    r.seek(SeekFrom::Start(payload_start)).map_err(io)?;
    let mut hashing = HashingWriter::new(std::io::sink());
    std::io::copy(&mut (&mut *r).take(payload_len), &mut hashing).map_err(io)?;
    let (digest, _) = hashing.finish();
    let stated = stated.expect("v2 fields were required");
    if digest != stated {
        return Err(VerifyError::PayloadDigest);
    }
    let msg = statement(&header, &stated);
    check_signature(&header, &msg, &signature, keys)?;
    // The digest matched a signed statement: these are the bytes Warden wrote. Read the
    // summary, skipping everything else (credential lists are never held).
    r.seek(SeekFrom::Start(payload_start)).map_err(io)?;
    let reader = std::io::BufReader::with_capacity(256 * 1024, (&mut *r).take(payload_len));
    let summary: Summary =
        serde_json::from_reader(reader).map_err(|e| VerifyError::NotAPacket {
            what: format!("the payload: {e}"),
        })?;
    Ok(Streamed::Checked(Verified {
        format: FORMAT.to_owned(),
        component: summary.component.unwrap_or_default(),
        env: summary.env.unwrap_or_default(),
        generated_at: summary.generated_at.unwrap_or(0),
        purposes: summary
            .purposes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.id)
            .collect(),
        key: header.key,
        key_version: header.key_version,
        key_sha256: header.key_sha256,
    }))
}

/// The payload fields [`Verified`] reports; serde skips the rest without keeping it.
#[derive(serde::Deserialize)]
struct Summary {
    component: Option<String>,
    env: Option<String>,
    generated_at: Option<i64>,
    purposes: Option<Vec<SummaryPurpose>>,
}

#[derive(serde::Deserialize)]
struct SummaryPurpose {
    id: Option<String>,
}

type SignatureFields = (Header, Option<Digest>, Vec<u8>);

/// The header, the stated digest (v2) and the signature bytes of a signature object.
fn signature_fields(sig: &Value, v2: bool) -> Result<SignatureFields, VerifyError> {
    let missing = |what: &str| VerifyError::NotAPacket {
        what: what.to_owned(),
    };
    let sig = sig
        .as_object()
        .ok_or_else(|| missing("no `signature` object"))?;
    for k in sig.keys() {
        let known = matches!(
            k.as_str(),
            "alg" | "key" | "key_version" | "key_sha256" | "value"
        ) || (v2 && matches!(k.as_str(), "payload_sha256" | "payload_size"));
        if !known {
            return Err(missing(&format!("unexpected signature field `{k}`")));
        }
    }
    let text = |k: &str| {
        sig.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| missing(&format!("no `signature.{k}` string")))
    };
    let header = Header {
        alg: text("alg")?,
        key: text("key")?,
        key_version: sig
            .get("key_version")
            .and_then(Value::as_u64)
            .ok_or_else(|| missing("no `signature.key_version` number"))?,
        key_sha256: text("key_sha256")?,
    };
    if header.alg != ALG {
        return Err(VerifyError::UnsupportedAlg { alg: header.alg });
    }
    let value = text("value")?;
    let signature = STANDARD
        .decode(value.as_bytes())
        .ok()
        .filter(|s| s.len() == 64)
        .ok_or(VerifyError::SignatureEncoding)?;
    let stated = if v2 {
        Some(Digest {
            payload_sha256: text("payload_sha256")?,
            payload_size: sig
                .get("payload_size")
                .and_then(Value::as_u64)
                .ok_or_else(|| missing("no `signature.payload_size` number"))?,
        })
    } else {
        None
    };
    Ok((header, stated, signature))
}

fn check_signature(
    header: &Header,
    msg: &[u8],
    signature: &[u8],
    keys: &[PublicKey],
) -> Result<(), VerifyError> {
    if keys.iter().any(|k| k.verifies(msg, signature)) {
        return Ok(());
    }
    Err(VerifyError::Mismatch {
        key_known: keys.iter().any(|k| k.sha256 == header.key_sha256),
        key: header.key.clone(),
        key_version: header.key_version,
        key_sha256: header.key_sha256.clone(),
    })
}

/// Verifies `packet` against the keys of a key file. Offline.
pub fn verify(packet: &[u8], keys: &[PublicKey]) -> Result<Verified, VerifyError> {
    let root = canonical::parse_strict(packet).map_err(|e| VerifyError::NotJson {
        reason: e.to_string(),
    })?;
    let missing = |what: &str| VerifyError::NotAPacket {
        what: what.to_owned(),
    };
    let obj = root
        .as_object()
        .ok_or_else(|| missing("the top level is not an object"))?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "format" | "payload" | "signature") {
            return Err(missing(&format!("unexpected top-level field `{k}`")));
        }
    }
    let format = obj
        .get("format")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("no `format`"))?;
    let v2 = match format {
        FORMAT => true,
        FORMAT_V1 => false,
        other => {
            return Err(VerifyError::UnknownFormat {
                found: other.to_owned(),
            });
        }
    };
    let payload = obj
        .get("payload")
        .filter(|p| p.is_object())
        .ok_or_else(|| missing("no `payload` object"))?;
    let sig = obj
        .get("signature")
        .filter(|s| s.is_object())
        .ok_or_else(|| missing("no `signature` object"))?;
    let (header, stated, signature) = signature_fields(sig, v2)?;
    let msg = match stated {
        Some(stated) => {
            if Digest::of(&body(payload)) != stated {
                return Err(VerifyError::PayloadDigest);
            }
            statement(&header, &stated)
        }
        None => signing_input_v1(payload, &header),
    };
    check_signature(&header, &msg, &signature, keys)?;
    let field = |k: &str| {
        payload
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    Ok(Verified {
        format: format.to_owned(),
        component: field("component"),
        env: field("env"),
        generated_at: payload
            .get("generated_at")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        purposes: payload
            .get("purposes")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        key: header.key,
        key_version: header.key_version,
        key_sha256: header.key_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    struct Signer(Ed25519KeyPair);

    impl Signer {
        fn new() -> Self {
            Self(Ed25519KeyPair::generate().expect("ed25519 key"))
        }

        fn public(&self) -> PublicKey {
            PublicKey::from_raw(
                self.0
                    .public_key()
                    .as_ref()
                    .try_into()
                    .expect("32-byte key"),
            )
        }

        fn header(&self) -> Header {
            Header {
                alg: ALG.into(),
                key: "transit:transit/warden-evidence".into(),
                key_version: 1,
                key_sha256: self.public().sha256,
            }
        }

        /// A v2 packet, signed as `sign_payload` has transit sign it: the statement only.
        fn packet(&self, payload: &Value) -> Vec<u8> {
            let header = self.header();
            let body = body(payload);
            let digest = Digest::of(&body);
            let sig = self.0.sign(&statement(&header, &digest));
            assemble(&body, &header, &digest, sig.as_ref())
        }

        /// A v1 packet, as Warden wrote them before: the whole packet signed.
        fn packet_v1(&self, payload: &Value) -> Vec<u8> {
            let header = self.header();
            let sig = self.0.sign(&signing_input_v1(payload, &header));
            let mut sig_obj = serde_json::to_value(&header).expect("header");
            sig_obj["value"] = Value::String(STANDARD.encode(sig.as_ref()));
            canonical::to_bytes(&json!({
                "format": FORMAT_V1, "payload": payload, "signature": sig_obj,
            }))
        }
    }

    fn payload() -> Value {
        json!({
            "component": "EV-PAYMENTS",
            "env": "test",
            "generated_at": 1_700_000_000,
            "purposes": [ { "id": "billing-stripe", "owner": "billing", "covers": ["billing/secret/stripe"] } ],
            "note": "é \"quoted\" \\ slash/"
        })
    }

    #[test]
    fn a_signed_packet_verifies_offline_and_says_what_it_covers() {
        let s = Signer::new();
        let bytes = s.packet(&payload());
        let v = verify(&bytes, &[s.public()]).expect("valid");
        assert_eq!(v.component, "EV-PAYMENTS");
        assert_eq!(v.purposes, ["billing-stripe"]);
        assert_eq!(v.key_version, 1);
        // Reformatting (pretty-printing) changes no content: still valid.
        let pretty = serde_json::to_vec_pretty(&canonical::parse_strict(&bytes).expect("json"))
            .expect("pretty");
        verify(&pretty, &[s.public()]).expect("pretty is the same content");
    }

    #[test]
    fn the_assembled_packet_is_the_canonical_form_of_itself() {
        let s = Signer::new();
        let bytes = s.packet(&payload());
        let parsed = canonical::parse_strict(&bytes).expect("json");
        assert_eq!(canonical::to_bytes(&parsed), bytes);
        assert_eq!(parsed["format"], FORMAT);
    }

    #[test]
    fn the_signed_statement_stays_small_whatever_the_payload_size() {
        let s = Signer::new();
        let mut big = payload();
        // 5 MB of payload: the v1 scheme would have had transit sign all of it.
        big["identities"] = Value::Array(
            (0..60_000)
                .map(|i| json!({ "id": format!("identity-{i:06}"), "policies": ["a", "b", "c"], "pad": "x".repeat(40) }))
                .collect(),
        );
        let body = body(&big);
        assert!(body.len() > 5_000_000, "{}", body.len());
        let digest = Digest::of(&body);
        let msg = statement(&s.header(), &digest);
        assert!(msg.len() < 1024, "the statement is {} bytes", msg.len());
        // And it does not grow with the payload at all: same length as a tiny payload's.
        let small = statement(&s.header(), &Digest::of(&self::body(&payload())));
        assert_eq!(
            msg.len() - digest.payload_size.to_string().len(),
            small.len() - self::body(&payload()).len().to_string().len()
        );
        let packet = s.packet(&big);
        let v = verify(&packet, &[s.public()]).expect("the big packet verifies");
        assert_eq!(v.format, FORMAT);
        // One byte of the big body changed: refused as tampering.
        let text = String::from_utf8(packet).expect("utf-8");
        let changed = text.replacen("identity-059999", "identity-059998", 1);
        assert_ne!(changed, text);
        let e = verify(changed.as_bytes(), &[s.public()]).expect_err("changed body");
        assert!(matches!(e, VerifyError::PayloadDigest), "{e}");
    }

    #[test]
    fn a_packet_streamed_to_a_writer_verifies_as_a_stream_and_whole() {
        let s = Signer::new();
        let header = s.header();
        let mut big = payload();
        big["identities"] = Value::Array(
            (0..20_000)
                .map(|i| json!({ "id": format!("identity-{i:06}"), "signature": { "nested": i } }))
                .collect(),
        );
        // Written as export_to writes: prefix, payload through the hashing writer, suffix.
        let mut file = prefix();
        let mut w = HashingWriter::new(&mut file);
        std::io::Write::write_all(&mut w, &body(&big)).expect("write");
        let (digest, _) = w.finish();
        assert_eq!(digest, Digest::of(&body(&big)));
        let sig = s.0.sign(&statement(&header, &digest));
        file.extend_from_slice(&suffix(&header, &digest, sig.as_ref()));
        assert_eq!(
            file,
            s.packet(&big),
            "the same bytes as assembled in memory"
        );
        let keys = [s.public()];
        let Ok(Streamed::Checked(v)) = verify_stream(&mut std::io::Cursor::new(&file), &keys)
        else {
            panic!("a canonical packet streams");
        };
        assert_eq!(v.component, "EV-PAYMENTS");
        assert_eq!(v.purposes, ["billing-stripe"]);
        assert_eq!(v.generated_at, 1_700_000_000);
        // A changed payload is tampering on the streaming path too.
        let text = String::from_utf8(file.clone()).expect("utf-8");
        let changed = text.replacen("identity-019999", "identity-019998", 1);
        let e = verify_stream(&mut std::io::Cursor::new(changed.as_bytes()), &keys)
            .expect_err("changed");
        assert!(matches!(e, VerifyError::PayloadDigest), "{e}");
        // Another key: a mismatch, not "not canonical".
        let e = verify_stream(&mut std::io::Cursor::new(&file), &[Signer::new().public()])
            .expect_err("wrong key");
        assert!(matches!(e, VerifyError::Mismatch { .. }), "{e}");
        // Reformatted and v1 packets are left to the whole-packet check, which still passes.
        let pretty = serde_json::to_vec_pretty(&canonical::parse_strict(&file).expect("json"))
            .expect("pretty");
        assert!(matches!(
            verify_stream(&mut std::io::Cursor::new(&pretty), &keys),
            Ok(Streamed::NotCanonical)
        ));
        verify(&pretty, &keys).expect("pretty verifies whole");
        let v1 = s.packet_v1(&payload());
        assert!(matches!(
            verify_stream(&mut std::io::Cursor::new(&v1), &keys),
            Ok(Streamed::NotCanonical)
        ));
    }

    #[test]
    fn v1_packets_still_verify_and_still_detect_tampering() {
        let s = Signer::new();
        let bytes = s.packet_v1(&payload());
        assert!(String::from_utf8_lossy(&bytes).contains("\"warden-evidence/1\""));
        let v = verify(&bytes, &[s.public()]).expect("a v1 packet verifies");
        assert_eq!(v.format, FORMAT_V1);
        assert_eq!(v.component, "EV-PAYMENTS");
        let text = String::from_utf8(bytes).expect("utf-8");
        let e = verify(
            text.replace("EV-PAYMENTS", "EV-PAYMENTZ").as_bytes(),
            &[s.public()],
        )
        .expect_err("changed v1");
        assert!(e.is_tamper(), "{e}");
        // A v1 packet relabelled v2 is not accepted (no digest to check against).
        let e = verify(text.replace(FORMAT_V1, FORMAT).as_bytes(), &[s.public()])
            .expect_err("relabelled");
        assert!(
            e.to_string().contains("no `signature.payload_sha256`"),
            "{e}"
        );
        // Digest fields are not allowed into a v1 packet.
        let e = verify(
            text.replace("\"value\":", "\"payload_size\":1,\"value\":")
                .as_bytes(),
            &[s.public()],
        )
        .expect_err("v1 with a digest field");
        assert!(e.to_string().contains("unexpected signature field"), "{e}");
    }

    #[test]
    fn changing_any_single_byte_fails() {
        let s = Signer::new();
        let keys = [s.public()];
        for bytes in [s.packet(&payload()), s.packet_v1(&payload())] {
            for i in 0..bytes.len() {
                for flip in [0x01u8, 0x20, 0x80] {
                    let mut t = bytes.clone();
                    t[i] ^= flip;
                    assert!(
                        verify(&t, &keys).is_err(),
                        "flipping {flip:#x} at byte {i} ({:?}) still verified",
                        bytes[i] as char
                    );
                    assert!(
                        !matches!(
                            verify_stream(&mut std::io::Cursor::new(&t), &keys),
                            Ok(Streamed::Checked(_))
                        ),
                        "flipping {flip:#x} at byte {i} ({:?}) still verified as a stream",
                        bytes[i] as char
                    );
                }
            }
        }
    }

    #[test]
    fn tampering_is_told_apart_from_garbage_and_from_a_wrong_key() {
        let s = Signer::new();
        let bytes = s.packet(&payload());
        let keys = [s.public()];
        let text = String::from_utf8(bytes.clone()).expect("utf-8");

        let changed = text.replace("EV-PAYMENTS", "EV-PAYMENTZ");
        let e = verify(changed.as_bytes(), &keys).expect_err("payload changed");
        assert!(e.is_tamper());
        assert!(
            e.to_string()
                .starts_with("signature does not match: the packet was changed after signing"),
            "{e}"
        );
        // The header is signed too: pointing at another key version fails.
        let e = verify(
            text.replace("\"key_version\":1", "\"key_version\":2")
                .as_bytes(),
            &keys,
        )
        .expect_err("header changed");
        assert!(e.is_tamper(), "{e}");

        let other = Signer::new();
        let e = verify(&bytes, &[other.public()]).expect_err("wrong key");
        assert!(
            matches!(
                e,
                VerifyError::Mismatch {
                    key_known: false,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("any key in the key file"), "{e}");
        // A key file with the right key among others verifies.
        verify(&bytes, &[other.public(), s.public()]).expect("right key second");

        for (garbage, want) in [
            (&b"not json"[..], "not valid JSON"),
            (b"{\"format\":\"warden-evidence/1\"}", "no `payload` object"),
            (
                b"{\"format\":\"other/2\",\"payload\":{},\"signature\":{}}",
                "unsupported packet format",
            ),
            (b"[]", "top level is not an object"),
        ] {
            let e = verify(garbage, &keys).expect_err("garbage");
            assert!(!e.is_tamper(), "{e}");
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn public_keys_round_trip_through_pem() {
        let a = Signer::new().public();
        let b = Signer::new().public();
        let file = format!("# version 1\n{}\n# version 2\n{}", a.pem(), b.pem());
        assert_eq!(parse_public_keys(&file).expect("keys"), [a.clone(), b]);
        assert!(
            a.pem()
                .starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA")
        );
        assert!(matches!(
            parse_public_keys("nothing"),
            Err(VerifyError::NoKeys)
        ));
        // An EC P-256 key is refused by name.
        let ec = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjt6HYJdEwHTtQ+mcRgDTaA1ZTpVx\nFqaknYbdOOXqSRBN3/uCm2Hri3J/Pc1LwWXjlX2h4NBm4wVHAkMf6wXYsg==\n-----END PUBLIC KEY-----\n";
        let e = parse_public_keys(ec).expect_err("ec");
        assert!(e.to_string().contains("not an Ed25519 key"), "{e}");
    }
}
