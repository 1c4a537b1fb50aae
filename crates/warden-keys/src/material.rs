//! Key material: a [`PrivateKey`] that signs (ES256, Ed25519 or RS256 with a 2048- or
//! 3072-bit modulus, all aws-lc-rs) and the [`PublicKey`] that verifies, with their PKCS#8 PEM
//! and JWK forms.
//!
//! Private bytes live in aws-lc-rs (freed with cleansing) and in [`Zeroizing`] buffers; no
//! `Debug` here prints them.

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
    RsaPublicKeyComponents, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use warden_spec::{RSA_BITS, SigningAlgorithm};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::jwk::Jwk;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// The public exponent every RSA key must use (65537), as the JWK writes it.
const RSA_E: &[u8] = &[0x01, 0x00, 0x01];

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
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
    /// A fresh key from the system's CSPRNG. An RS256 key gets the default modulus, 2048
    /// bits; [`PrivateKey::generate_rsa`] picks another.
    pub fn generate(algorithm: SigningAlgorithm) -> Result<Self> {
        Self::generate_sized(algorithm, None)
    }

    /// A fresh RS256 key with a `bits`-bit modulus (one of [`RSA_BITS`]) and exponent 65537.
    pub fn generate_rsa(bits: u32) -> Result<Self> {
        Self::generate_sized(SigningAlgorithm::Rs256, Some(bits))
    }

    /// A fresh key of `algorithm`; `rsa_bits` is the modulus size of an RS256 key (default
    /// 2048) and is ignored for the others, whose size the algorithm fixes.
    pub fn generate_sized(algorithm: SigningAlgorithm, rsa_bits: Option<u32>) -> Result<Self> {
        let what = || Error::Crypto {
            what: format!("generate a {} key", algorithm.jws_alg()),
        };
        // aws-lc-rs wipes its own DER buffers on drop; our copy is wiped by `Zeroizing`.
        let copy = |der: &[u8]| Zeroizing::new(der.to_vec());
        let pkcs8 = match algorithm {
            SigningAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|p| p.to_pkcs8v1())
                .map(|doc| copy(doc.as_ref())),
            SigningAlgorithm::EdDsa => Ed25519KeyPair::generate()
                .and_then(|p| p.to_pkcs8v1())
                .map(|doc| copy(doc.as_ref())),
            SigningAlgorithm::Rs256 => {
                let size = match rsa_bits.unwrap_or(RSA_BITS[0]) {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    other => {
                        return Err(Error::Crypto {
                            what: format!(
                                "generate an RS256 key of {other} bits: only 2048 and 3072 are supported"
                            ),
                        });
                    }
                };
                RsaKeyPair::generate(size)
                    .and_then(|p| p.as_der())
                    .map(|der| copy(der.as_ref()))
            }
        }
        .map_err(|_| what())?;
        Self::from_pkcs8_der(algorithm, pkcs8).map_err(|_| what())
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
            SigningAlgorithm::Rs256 => RsaKeyPair::from_pkcs8(&pkcs8)
                .map(Pair::Rs256)
                .map_err(|e| format!("not a PKCS#8 RSA key: {e}"))?,
        };
        let material = match &pair {
            Pair::Es256(p) => Material::Raw(p.public_key().as_ref().to_vec()),
            Pair::EdDsa(p) => Material::Raw(p.public_key().as_ref().to_vec()),
            Pair::Rs256(p) => {
                let public = p.public_key();
                let rsa = Material::Rsa {
                    n: public.modulus().big_endian_without_leading_zero().to_vec(),
                    e: public.exponent().big_endian_without_leading_zero().to_vec(),
                };
                rsa_acceptable(&rsa)?;
                rsa
            }
        };
        Ok(Self {
            pair,
            pkcs8,
            public: PublicKey {
                algorithm,
                material,
            },
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

    /// A raw JWS signature over `message` (`r || s` for ES256, 64 bytes for ES256 and EdDSA;
    /// the modulus length for RS256, PKCS#1 v1.5 with SHA-256).
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match &self.pair {
            Pair::Es256(p) => p
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Crypto {
                    what: "sign with an ES256 key".into(),
                }),
            Pair::EdDsa(p) => Ok(p.sign(message).as_ref().to_vec()),
            Pair::Rs256(p) => {
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .map(|()| sig)
                    .map_err(|_| Error::Crypto {
                        what: "sign with an RS256 key".into(),
                    })
            }
        }
    }
}

/// A verification key: algorithm and public key (an uncompressed P-256 point, the 32
/// Ed25519 bytes, or an RSA modulus and exponent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: SigningAlgorithm,
    material: Material,
}

/// The public numbers, by key type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    /// An uncompressed P-256 point (`0x04 || x || y`) or the Ed25519 key.
    Raw(Vec<u8>),
    /// Big-endian modulus and exponent, without leading zeros (as the JWK writes them).
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// An RSA key this crate signs or verifies with: a 2048- or 3072-bit modulus and exponent
/// 65537. Anything else in a JWKS or in KV was not written by Warden.
fn rsa_acceptable(material: &Material) -> std::result::Result<(), String> {
    let Material::Rsa { n, e } = material else {
        return Ok(());
    };
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    let bits = u32::try_from(bits).unwrap_or(u32::MAX);
    if !RSA_BITS.contains(&bits) {
        return Err(format!(
            "an RSA modulus of {bits} bits: only 2048 and 3072 are accepted"
        ));
    }
    if e.as_slice() != RSA_E {
        return Err("an RSA exponent other than 65537 (AQAB)".into());
    }
    Ok(())
}

impl PublicKey {
    /// Its algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The RSA modulus size in bits (2048 or 3072); `None` for the other key types.
    pub fn rsa_bits(&self) -> Option<u32> {
        match &self.material {
            Material::Rsa { n, .. } => u32::try_from(n.len() * 8).ok(),
            Material::Raw(_) => None,
        }
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
        let mut jwk = Jwk {
            kty: String::new(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            kid: None,
            alg: None,
            use_: None,
        };
        match (&self.material, self.algorithm) {
            // 0x04 || x || y
            (Material::Raw(bytes), SigningAlgorithm::Es256) => {
                jwk.kty = "EC".into();
                jwk.crv = Some("P-256".into());
                jwk.x = b64(&bytes[1..33]);
                jwk.y = b64(&bytes[33..]);
            }
            (Material::Raw(bytes), _) => {
                jwk.kty = "OKP".into();
                jwk.crv = Some("Ed25519".into());
                jwk.x = b64(bytes);
            }
            // RFC 7518 §6.3.1: unsigned big-endian, minimal length.
            (Material::Rsa { n, e }, _) => {
                jwk.kty = "RSA".into();
                jwk.n = b64(n);
                jwk.e = b64(e);
            }
        }
        jwk
    }

    /// Reads a public JWK: `EC`/`P-256` (ES256), `OKP`/`Ed25519` (EdDSA) or `RSA` (RS256,
    /// a 2048- or 3072-bit modulus with exponent 65537).
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
        let unsigned = |name: &str, v: Option<&String>| {
            let v = v.ok_or_else(|| format!("missing `{name}`"))?;
            let b = URL_SAFE_NO_PAD
                .decode(v)
                .map_err(|e| format!("`{name}` is not base64url: {e}"))?;
            match b.first() {
                None => Err(format!("`{name}` is empty")),
                Some(0) => Err(format!(
                    "`{name}` has a leading zero octet (RFC 7518 §6.3.1)"
                )),
                Some(_) => Ok(b),
            }
        };
        match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some("P-256")) => {
                let mut bytes = vec![0x04];
                bytes.extend(decode("x", jwk.x.as_ref(), 32)?);
                bytes.extend(decode("y", jwk.y.as_ref(), 32)?);
                Ok(Self {
                    algorithm: SigningAlgorithm::Es256,
                    material: Material::Raw(bytes),
                })
            }
            ("OKP", Some("Ed25519")) => Ok(Self {
                algorithm: SigningAlgorithm::EdDsa,
                material: Material::Raw(decode("x", jwk.x.as_ref(), 32)?),
            }),
            ("RSA", None) => {
                let material = Material::Rsa {
                    n: unsigned("n", jwk.n.as_ref())?,
                    e: unsigned("e", jwk.e.as_ref())?,
                };
                rsa_acceptable(&material)?;
                Ok(Self {
                    algorithm: SigningAlgorithm::Rs256,
                    material,
                })
            }
            (kty, crv) => Err(format!(
                "unsupported key type {kty}/{}: only EC P-256, OKP Ed25519 and RSA verify here",
                crv.unwrap_or("-")
            )),
        }
    }

    /// Whether `signature` is this key's signature over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let (alg, bytes): (&dyn signature::VerificationAlgorithm, _) =
            match (&self.material, self.algorithm) {
                (Material::Rsa { n, e }, _) => {
                    // PKCS#1 v1.5 with SHA-256; a signature is exactly the modulus length.
                    return signature.len() == n.len()
                        && RsaPublicKeyComponents { n, e }
                            .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                            .is_ok();
                }
                (Material::Raw(b), SigningAlgorithm::Es256) => (&ECDSA_P256_SHA256_FIXED, b),
                (Material::Raw(b), _) => (&ED25519, b),
            };
        UnparsedPublicKey::new(alg, bytes)
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
    fn rsa_keys_of_both_sizes_round_trip_and_publish_n_and_e() {
        for bits in RSA_BITS {
            let key = PrivateKey::generate_rsa(bits).expect("generate");
            assert_eq!(key.public_key().rsa_bits(), Some(bits));
            assert_eq!(key.public_key().algorithm(), SigningAlgorithm::Rs256);
            let again = PrivateKey::from_pkcs8_pem(SigningAlgorithm::Rs256, &key.to_pkcs8_pem())
                .expect("parse");
            assert_eq!(again.public_key(), key.public_key());
            let jwk = key.public_key().to_jwk();
            assert_eq!(jwk.kty, "RSA");
            assert_eq!((jwk.crv.as_deref(), jwk.x.as_deref()), (None, None));
            assert_eq!(jwk.e.as_deref(), Some("AQAB"));
            let n = URL_SAFE_NO_PAD.decode(jwk.n.as_deref().unwrap()).unwrap();
            assert_eq!(n.len() * 8, bits as usize, "minimal big-endian modulus");
            assert!(n[0] & 0x80 != 0);
            assert_eq!(jwk.alg.as_deref(), Some("RS256"));
            assert_eq!(
                &PublicKey::from_jwk(&jwk).expect("from jwk"),
                key.public_key()
            );
            let sig = key.sign(b"message").expect("sign");
            assert_eq!(sig.len() * 8, bits as usize);
            assert!(key.public_key().verify(b"message", &sig));
            assert!(!key.public_key().verify(b"messagf", &sig));
            // Deterministic (PKCS#1 v1.5): the same message signs the same way.
            assert_eq!(key.sign(b"message").expect("sign"), sig);
        }
        assert!(PrivateKey::generate_rsa(1024).is_err());
        assert_eq!(
            PrivateKey::generate(SigningAlgorithm::Rs256)
                .expect("default size")
                .public_key()
                .rsa_bits(),
            Some(2048)
        );
    }

    #[test]
    fn weak_or_odd_rsa_jwks_are_refused() {
        let key = PrivateKey::generate_rsa(2048).expect("generate");
        let good = key.public_key().to_jwk();
        let mut short = good.clone();
        short.n = Some(URL_SAFE_NO_PAD.encode([0xc5; 128]));
        assert!(
            PublicKey::from_jwk(&short)
                .unwrap_err()
                .contains("1024 bits")
        );
        let mut exp = good.clone();
        exp.e = Some("Aw".into());
        assert!(PublicKey::from_jwk(&exp).unwrap_err().contains("65537"));
        let mut padded = good;
        let mut n = URL_SAFE_NO_PAD
            .decode(padded.n.as_deref().unwrap())
            .unwrap();
        n.insert(0, 0);
        padded.n = Some(URL_SAFE_NO_PAD.encode(n));
        assert!(
            PublicKey::from_jwk(&padded)
                .unwrap_err()
                .contains("leading zero")
        );
        // An RS256 key is no ES256 key, and the other way round.
        let rsa_pem = key.to_pkcs8_pem();
        assert!(PrivateKey::from_pkcs8_pem(SigningAlgorithm::Es256, &rsa_pem).is_err());
        let ec = PrivateKey::generate(SigningAlgorithm::Es256).expect("generate");
        assert!(PrivateKey::from_pkcs8_pem(SigningAlgorithm::Rs256, &ec.to_pkcs8_pem()).is_err());
        let dbg = format!("{key:?}");
        let body: String = rsa_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(dbg.contains("RS256") && !dbg.contains(&body[..24]), "{dbg}");
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
