//! `type = "signing_key"`: a dual-key signing key (`warden-keys`, one KV v2 version per
//! rotation) rendered as files, so a service in any language gets rotation with a grace window
//! without an SDK.
//!
//! | file | content | mode |
//! |---|---|---|
//! | `key.pem` | the current private key, PKCS#8 PEM: what the service signs with | `key_mode` (0600) |
//! | `key.pub.pem` | its public key, SubjectPublicKeyInfo PEM | `mode` (0600) |
//! | `previous-<kid>.pub.pem` | the public key of each earlier version still in its grace window | `mode` |
//! | `jwks.json` | RFC 7517 JWK Set of every version that verifies now, current first | `mode` |
//! | `metadata.json` | location, algorithm, the current `kid`, and each version's `kid`, file and `verify_until` | `mode` |
//!
//! Which versions verify, and until when, is `warden_keys::KeySet`'s rule (the grace recorded
//! by the rotation that replaced a version); nothing here decides it. Earlier versions are
//! rendered as *public* keys only: verifying needs nothing else, and a retired private key on
//! disk could still sign. The files are one set, delivered as a versioned directory behind a
//! symlink (`deliver::deliver_set`), so a reader never sees a new key with an old JWKS.
//!
//! Every render reads the key's KV metadata (one request); the versions themselves (with the
//! private key) are read again only when the metadata changed, i.e. after a rotation or a
//! deleted version. A version leaving its window changes the files without anything changing
//! in OpenBao, so [`Rendered::changes_at`] asks for a render at that moment.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_keys::{Jwk, KeySet, KvLocation, ManualClock};
use zeroize::Zeroizing;

use super::{RenderError, Rendered, RenderedFile};

/// The current private key.
pub const KEY: &str = "key.pem";
/// The current public key.
pub const PUBLIC: &str = "key.pub.pem";
/// The JWK Set.
pub const JWKS: &str = "jwks.json";
/// What the set holds, for people and scripts.
pub const METADATA: &str = "metadata.json";

/// The file name of an earlier version's public key.
pub fn previous_file(kid: &str) -> String {
    format!("previous-{kid}.pub.pem")
}

/// A loaded set and the metadata it was loaded from: what a render compares the next
/// metadata read against.
#[derive(Debug, Clone)]
pub struct Loaded {
    fingerprint: Vec<(u64, bool)>,
    set: Arc<KeySet>,
}

impl Loaded {
    /// When the current version was written (its rotation, on the server's clock).
    pub fn current_created(&self) -> OffsetDateTime {
        self.set.current().created
    }
}

/// One signing key output.
#[derive(Debug, Clone)]
pub struct SigningKeyOutput {
    /// The output's name.
    pub name: String,
    /// Where the key lives.
    pub location: KvLocation,
    /// Mode of the public files.
    pub mode: u32,
    /// Mode of `key.pem`.
    pub key_mode: u32,
}

impl SigningKeyOutput {
    fn error(&self, source: warden_keys::Error) -> RenderError {
        RenderError::SigningKey {
            output: self.name.clone(),
            location: self.location.to_string(),
            source: Box::new(source),
        }
    }

    /// The key's set as of `now` (the server's clock): `previous` again when the metadata has
    /// not changed since it was loaded, else freshly loaded through `warden_keys::load`.
    pub async fn load(
        &self,
        client: &warden_bao::Client,
        previous: Option<Loaded>,
        now: OffsetDateTime,
    ) -> Result<Loaded, RenderError> {
        let fingerprint = match client
            .kv2(&self.location.mount)
            .metadata(&self.location.path)
            .await
        {
            Ok(meta) => Some(
                meta.versions
                    .iter()
                    .map(|(v, m)| (*v, m.readable()))
                    .collect::<Vec<_>>(),
            ),
            // `warden_keys::load` reads the metadata first and reports the failure typed.
            Err(_) => None,
        };
        if let (Some(fp), Some(prev)) = (&fingerprint, previous)
            && *fp == prev.fingerprint
        {
            return Ok(prev);
        }
        let set = warden_keys::load(client, &self.location, &ManualClock::new(now))
            .await
            .map_err(|e| self.error(e))?;
        Ok(Loaded {
            fingerprint: fingerprint.unwrap_or_default(),
            set: Arc::new(set),
        })
    }

    /// The files of `loaded` at `now` (the server's clock). Pure: same set and time, same
    /// bytes.
    pub fn render(&self, loaded: &Loaded, now: OffsetDateTime) -> Result<Rendered, RenderError> {
        let set = &loaded.set;
        let current = set.current();
        let local = |reason: String| RenderError::Local {
            output: self.name.clone(),
            what: "render the signing key".to_owned(),
            reason,
        };
        let mut files = vec![RenderedFile {
            name: KEY.to_owned(),
            contents: Zeroizing::new(set.signing_key().to_pkcs8_pem().as_bytes().to_vec()),
            mode: self.key_mode,
        }];
        let mut versions = Vec::new();
        let mut changes_at: Option<OffsetDateTime> = None;
        for (i, k) in set.valid_at(now).enumerate() {
            let file = if i == 0 {
                PUBLIC.to_owned()
            } else {
                previous_file(&k.kid)
            };
            let pem = public_pem(&k.public_key().to_jwk()).map_err(local)?;
            files.push(RenderedFile {
                name: file.clone(),
                contents: Zeroizing::new(pem.into_bytes()),
                mode: self.mode,
            });
            if let Some(until) = k.valid_until {
                changes_at = Some(changes_at.map_or(until, |c| c.min(until)));
            }
            versions.push(json!({
                "version": k.version,
                "kid": k.kid,
                "alg": k.alg,
                "created": rfc3339(k.created),
                "verify_until": k.valid_until.map(rfc3339),
                "current": i == 0,
                "public_key_file": file,
            }));
        }
        let jwks = set.jwks(now);
        let metadata = json!({
            "output": self.name,
            "location": self.location.to_string(),
            "algorithm": current.alg,
            "current": { "kid": current.kid, "version": current.version, "private_key_file": KEY },
            "versions": versions,
        });
        for (name, value) in [
            (JWKS, serde_json::to_value(&jwks).unwrap_or_default()),
            (METADATA, metadata),
        ] {
            let mut text =
                serde_json::to_string_pretty(&value).map_err(|e| local(e.to_string()))?;
            text.push('\n');
            files.push(RenderedFile {
                name: name.to_owned(),
                contents: Zeroizing::new(text.into_bytes()),
                mode: self.mode,
            });
        }
        Ok(Rendered {
            files,
            not_before: Some(current.created),
            serial: Some(current.kid.clone()),
            changes_at,
            ..Rendered::default()
        })
    }

    /// The name of the version directory for `rendered`: the KV version of the current key
    /// and a digest of the files, so a set with other contents never reuses a name.
    pub fn version_name(loaded: &Loaded, rendered: &Rendered) -> String {
        let mut all = String::new();
        for (name, digest) in crate::deliver::digests(rendered) {
            all.push_str(&name);
            all.push(' ');
            all.push_str(&digest);
            all.push('\n');
        }
        let digest = crate::state::sha256_hex(all.as_bytes());
        format!("v{}-{}", loaded.set.current().version, &digest[..16])
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A public JWK as a SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), what OpenSSL, Go's
/// `x509.ParsePKIXPublicKey`, Python's `load_pem_public_key` and Node's `createPublicKey`
/// read. Built from the JWK, the public form `warden-keys` publishes for every algorithm.
pub fn public_pem(jwk: &Jwk) -> Result<String, String> {
    let der = spki_der(jwk)?;
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    Ok(out)
}

/// DER of the SubjectPublicKeyInfo (RFC 5280 §4.1) of an EC P-256 (RFC 5480), Ed25519
/// (RFC 8410) or RSA (RFC 3279) public JWK.
fn spki_der(jwk: &Jwk) -> Result<Vec<u8>, String> {
    let field = |name: &str, v: &Option<String>| {
        let v = v
            .as_deref()
            .ok_or_else(|| format!("the JWK has no `{name}`"))?;
        URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|e| format!("the JWK's `{name}` is not base64url: {e}"))
    };
    // OIDs, DER-encoded with their tag and length.
    const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    const RSA_ENCRYPTION: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    const NULL: &[u8] = &[0x05, 0x00];
    let (algorithm, key): (Vec<u8>, Vec<u8>) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("EC", Some("P-256")) => {
            let (x, y) = (field("x", &jwk.x)?, field("y", &jwk.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err("a P-256 JWK needs 32-byte `x` and `y`".to_owned());
            }
            let mut point = vec![0x04];
            point.extend(x);
            point.extend(y);
            ([EC_PUBLIC_KEY, P256].concat(), point)
        }
        ("OKP", Some("Ed25519")) => {
            let x = field("x", &jwk.x)?;
            if x.len() != 32 {
                return Err("an Ed25519 JWK needs a 32-byte `x`".to_owned());
            }
            (ED25519.to_vec(), x)
        }
        ("RSA", _) => {
            let (n, e) = (field("n", &jwk.n)?, field("e", &jwk.e)?);
            let body = [integer(&n), integer(&e)].concat();
            ([RSA_ENCRYPTION, NULL].concat(), tlv(0x30, &body))
        }
        (kty, crv) => {
            return Err(format!(
                "no public key file for a {kty}/{} key",
                crv.unwrap_or("-")
            ));
        }
    };
    let mut bits = vec![0x00];
    bits.extend(key);
    Ok(tlv(
        0x30,
        &[tlv(0x30, &algorithm), tlv(0x03, &bits)].concat(),
    ))
}

/// A DER INTEGER holding the unsigned big-endian `bytes`.
fn integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => &[0],
    };
    let mut body = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        body.push(0);
    }
    body.extend_from_slice(trimmed);
    tlv(0x02, &body)
}

/// Tag, definite length, value.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
    };
    use warden_keys::PrivateKey;
    use warden_spec::SigningAlgorithm;
    use x509_parser::prelude::FromDer as _;
    use x509_parser::x509::SubjectPublicKeyInfo;

    use super::*;

    fn pem_body(pem: &str) -> Vec<u8> {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(b64).expect("base64")
    }

    /// The SPKI built from the JWK is byte for byte what aws-lc-rs itself exports.
    #[test]
    fn public_pem_matches_the_crypto_library() {
        for alg in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
        ] {
            let key = PrivateKey::generate(alg).expect("key");
            let pkcs8 = pem_body(&key.to_pkcs8_pem());
            let expected = match alg {
                SigningAlgorithm::Es256 => {
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                        .expect("p256")
                        .public_key()
                        .as_der()
                        .expect("der")
                        .as_ref()
                        .to_vec()
                }
                SigningAlgorithm::Rs256 => aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8)
                    .expect("rsa")
                    .public_key()
                    .as_der()
                    .expect("der")
                    .as_ref()
                    .to_vec(),
                _ => Ed25519KeyPair::from_pkcs8(&pkcs8)
                    .expect("ed25519")
                    .public_key()
                    .as_der()
                    .expect("der")
                    .as_ref()
                    .to_vec(),
            };
            let pem = public_pem(&key.public_key().to_jwk()).expect("pem");
            assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
            assert_eq!(pem_body(&pem), expected, "{alg:?}");
        }
    }

    /// RFC 7638's example RSA key: the SPKI parses and carries the same modulus and exponent.
    #[test]
    fn rsa_public_pem_carries_the_modulus() {
        let jwk: Jwk = serde_json::from_str(r#"{"kty":"RSA","e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}"#).expect("jwk");
        let der = pem_body(&public_pem(&jwk).expect("pem"));
        let (rest, spki) = SubjectPublicKeyInfo::from_der(&der).expect("spki");
        assert!(rest.is_empty());
        assert_eq!(
            spki.algorithm.algorithm.to_id_string(),
            "1.2.840.113549.1.1.1"
        );
        let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
            panic!("not an RSA key");
        };
        let n = URL_SAFE_NO_PAD
            .decode(jwk.n.as_deref().expect("n"))
            .expect("n");
        assert_eq!(
            rsa.modulus
                .iter()
                .skip_while(|b| **b == 0)
                .copied()
                .collect::<Vec<_>>(),
            n
        );
        assert_eq!(rsa.exponent, [1, 0, 1]);
    }

    #[test]
    fn unknown_key_types_get_no_file() {
        let jwk: Jwk = serde_json::from_str(r#"{"kty":"oct"}"#).expect("jwk");
        assert!(public_pem(&jwk).unwrap_err().contains("oct"));
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(integer(&[0, 0, 1]), [0x02, 1, 1]);
        assert_eq!(integer(&[0x80]), [0x02, 2, 0, 0x80]);
        assert_eq!(integer(&[0, 0]), [0x02, 1, 0]);
        assert_eq!(tlv(0x04, &[7; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[7; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }
}
