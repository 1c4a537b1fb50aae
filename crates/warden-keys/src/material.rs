//! Key material: a [`PrivateKey`] that signs (ES256 or Ed25519, aws-lc-rs) and the
//! [`PublicKey`] that verifies, with their PKCS#8 PEM and JWK forms.
//!
//! Private bytes live in aws-lc-rs (freed with cleansing) and in [`Zeroizing`] buffers; no
//! `Debug` here prints them.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use warden_spec::SigningAlgorithm;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::jwk::Jwk;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A signing key. `Debug` shows the algorithm and `kid`, never key bytes.
pub struct PrivateKey {
    pair: Pair,
    pkcs8: Zeroizing<Vec<u8>>,
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.public.algorithm.jws_alg())
            .field("kid", &self.public.kid())
            .field("key", &"...")
            .finish()
    }
}

impl PrivateKey {
    /// A fresh key from the system's CSPRNG.
    pub fn generate(algorithm: SigningAlgorithm) -> Result<Self> {
        let what = || Error::Crypto {
            what: format!("generate a {} key", algorithm.jws_alg()),
        };
        let pkcs8 = match algorithm {
            SigningAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|p| p.to_pkcs8v1())
                .map_err(|_| what())?,
            SigningAlgorithm::EdDsa => Ed25519KeyPair::generate()
                .and_then(|p| p.to_pkcs8v1())
                .map_err(|_| what())?,
        };
        // `Document` wipes itself on drop; our copy is wiped by `Zeroizing`.
        Self::from_pkcs8_der(algorithm, Zeroizing::new(pkcs8.as_ref().to_vec())).map_err(|_| what())
    }

    /// Parses an unencrypted PKCS#8 DER key of `algorithm`.
    pub fn from_pkcs8_der(
        algorithm: SigningAlgorithm,
        pkcs8: Zeroizing<Vec<u8>>,
    ) -> std::result::Result<Self, String> {
        let pair = match algorithm {
            SigningAlgorithm::Es256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map(Pair::Es256)
                    .map_err(|e| format!("not a PKCS#8 P-256 key: {e}"))?
            }
            SigningAlgorithm::EdDsa => Ed25519KeyPair::from_pkcs8(&pkcs8)
                .map(Pair::EdDsa)
                .map_err(|e| format!("not a PKCS#8 Ed25519 key: {e}"))?,
        };
        let bytes = match &pair {
            Pair::Es256(p) => p.public_key().as_ref().to_vec(),
            Pair::EdDsa(p) => p.public_key().as_ref().to_vec(),
        };
        Ok(Self {
            pair,
            pkcs8,
            public: PublicKey { algorithm, bytes },
        })
    }

    /// Parses a PKCS#8 PEM (`BEGIN PRIVATE KEY`) key of `algorithm`.
    pub fn from_pkcs8_pem(
        algorithm: SigningAlgorithm,
        pem: &str,
    ) -> std::result::Result<Self, String> {
        Self::from_pkcs8_der(algorithm, pem_decode(pem)?)
    }

    /// The key as PKCS#8 PEM, wiped when dropped.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        pem_encode(&self.pkcs8)
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// A raw JWS signature over `message` (`r || s` for ES256, 64 bytes either way).
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match &self.pair {
            Pair::Es256(p) => p
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Crypto {
                    what: "sign with an ES256 key".into(),
                }),
            Pair::EdDsa(p) => Ok(p.sign(message).as_ref().to_vec()),
        }
    }
}

/// A verification key: algorithm and raw public key (an uncompressed P-256 point, or the 32
/// Ed25519 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: SigningAlgorithm,
    bytes: Vec<u8>,
}

impl PublicKey {
    /// Its algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The public JWK, with `kid` (its thumbprint), `alg` and `use: sig`.
    pub fn to_jwk(&self) -> Jwk {
        let mut jwk = self.bare_jwk();
        jwk.kid = jwk.thumbprint();
        jwk.alg = Some(self.algorithm.jws_alg().to_owned());
        jwk.use_ = Some("sig".to_owned());
        jwk
    }

    /// The RFC 7638 thumbprint of the public key: its `kid`.
    pub fn kid(&self) -> String {
        self.bare_jwk().thumbprint().unwrap_or_default()
    }

    fn bare_jwk(&self) -> Jwk {
        let b64 = |b: &[u8]| Some(URL_SAFE_NO_PAD.encode(b));
        let (kty, crv, x, y) = match self.algorithm {
            // 0x04 || x || y
            SigningAlgorithm::Es256 => (
                "EC",
                "P-256",
                b64(&self.bytes[1..33]),
                b64(&self.bytes[33..]),
            ),
            SigningAlgorithm::EdDsa => ("OKP", "Ed25519", b64(&self.bytes), None),
        };
        Jwk {
            kty: kty.to_owned(),
            crv: Some(crv.to_owned()),
            x,
            y,
            n: None,
            e: None,
            kid: None,
            alg: None,
            use_: None,
        }
    }

    /// Reads a public JWK: `EC`/`P-256` (ES256) or `OKP`/`Ed25519` (EdDSA).
    pub fn from_jwk(jwk: &Jwk) -> std::result::Result<Self, String> {
        let decode = |name: &str, v: Option<&String>, len: usize| {
            let v = v.ok_or_else(|| format!("missing `{name}`"))?;
            let b = URL_SAFE_NO_PAD
                .decode(v)
                .map_err(|e| format!("`{name}` is not base64url: {e}"))?;
            if b.len() == len {
                Ok(b)
            } else {
                Err(format!("`{name}` has {} bytes, expected {len}", b.len()))
            }
        };
        match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some("P-256")) => {
                let mut bytes = vec![0x04];
                bytes.extend(decode("x", jwk.x.as_ref(), 32)?);
                bytes.extend(decode("y", jwk.y.as_ref(), 32)?);
                Ok(Self {
                    algorithm: SigningAlgorithm::Es256,
                    bytes,
                })
            }
            ("OKP", Some("Ed25519")) => Ok(Self {
                algorithm: SigningAlgorithm::EdDsa,
                bytes: decode("x", jwk.x.as_ref(), 32)?,
            }),
            (kty, crv) => Err(format!(
                "unsupported key type {kty}/{}: only EC P-256 and OKP Ed25519 verify here",
                crv.unwrap_or("-")
            )),
        }
    }

    /// Whether `signature` is this key's signature over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.algorithm {
            SigningAlgorithm::Es256 => &ECDSA_P256_SHA256_FIXED,
            SigningAlgorithm::EdDsa => &ED25519,
        };
        UnparsedPublicKey::new(alg, &self.bytes)
            .verify(message, signature)
            .is_ok()
    }
}

/// PKCS#8 DER → PEM, 64 characters a line.
fn pem_encode(der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + 80));
    out.push_str(PEM_BEGIN);
    out.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

/// PEM → PKCS#8 DER. Exactly one `PRIVATE KEY` block is expected.
fn pem_decode(pem: &str) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    let start = pem
        .find(PEM_BEGIN)
        .ok_or("no `BEGIN PRIVATE KEY` block (PKCS#8 PEM expected)")?
        + PEM_BEGIN.len();
    let len = pem[start..]
        .find(PEM_END)
        .ok_or("the `PRIVATE KEY` block has no END line")?;
    let body: Zeroizing<String> = Zeroizing::new(
        pem[start..start + len]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    STANDARD
        .decode(body.as_bytes())
        .map(Zeroizing::new)
        .map_err(|e| format!("the PEM body is not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem_and_jwk() {
        for alg in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
            let key = PrivateKey::generate(alg).expect("generate");
            let pem = key.to_pkcs8_pem();
            assert!(pem.starts_with(PEM_BEGIN) && pem.trim_end().ends_with(PEM_END));
            let again = PrivateKey::from_pkcs8_pem(alg, &pem).expect("parse");
            assert_eq!(again.public_key(), key.public_key());
            let jwk = key.public_key().to_jwk();
            assert_eq!(jwk.kid.as_deref(), Some(key.public_key().kid().as_str()));
            assert_eq!(jwk.alg.as_deref(), Some(alg.jws_alg()));
            assert_eq!(
                &PublicKey::from_jwk(&jwk).expect("from jwk"),
                key.public_key()
            );
            let sig = key.sign(b"message").expect("sign");
            assert!(key.public_key().verify(b"message", &sig));
            assert!(!key.public_key().verify(b"messagf", &sig));
        }
    }

    #[test]
    fn a_key_of_the_other_algorithm_is_refused() {
        let ed = PrivateKey::generate(SigningAlgorithm::EdDsa).expect("generate");
        let err = PrivateKey::from_pkcs8_pem(SigningAlgorithm::Es256, &ed.to_pkcs8_pem())
            .expect_err("an Ed25519 key is not a P-256 key");
        assert!(err.contains("P-256"), "{err}");
        assert!(PrivateKey::from_pkcs8_pem(SigningAlgorithm::Es256, "not pem").is_err());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = PrivateKey::generate(SigningAlgorithm::Es256).expect("generate");
        let pem = key.to_pkcs8_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let dbg = format!("{key:?}");
        assert!(dbg.contains("\"...\"") && dbg.contains("ES256"), "{dbg}");
        assert!(!dbg.contains(&body[..24]), "{dbg}");
    }

    #[test]
    fn jwks_with_foreign_or_broken_keys_are_refused() {
        let mut jwk = PrivateKey::generate(SigningAlgorithm::Es256)
            .expect("generate")
            .public_key()
            .to_jwk();
        jwk.y = Some("AAAA".into());
        assert!(PublicKey::from_jwk(&jwk).unwrap_err().contains("`y`"));
        jwk.kty = "RSA".into();
        assert!(
            PublicKey::from_jwk(&jwk)
                .unwrap_err()
                .contains("unsupported")
        );
    }
}
