//! JSON Web Keys (RFC 7517) and their thumbprints (RFC 7638), which are the `kid` of every key
//! this crate writes: a `kid` names the key's public half, so it is stable, collision-free
//! and recomputable by anyone holding the JWKS.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// One public JWK. Only public members exist here: a private `d` is never serialised by this
/// crate (the private key is stored as PKCS#8 PEM beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `EC`, `OKP` or `RSA`.
    pub kty: String,
    /// Curve: `P-256` or `Ed25519` (none for `RSA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate, or the Ed25519 public key (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus (base64url of the unsigned big-endian value, no leading zero octet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent (base64url; `AQAB`, 65537, for keys this crate makes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Key id: the RFC 7638 thumbprint for keys this crate makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// JWS algorithm: `ES256`, `EdDSA` or `RS256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use: `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    /// The RFC 7638 SHA-256 thumbprint, base64url without padding: the required members of the
    /// key type, in lexicographic order, as JSON without whitespace. `None` when a required
    /// member is missing or the key type is unknown.
    pub fn thumbprint(&self) -> Option<String> {
        let members: Vec<(&str, &str)> = match self.kty.as_str() {
            "EC" => vec![
                ("crv", self.crv.as_deref()?),
                ("kty", "EC"),
                ("x", self.x.as_deref()?),
                ("y", self.y.as_deref()?),
            ],
            "OKP" => vec![
                ("crv", self.crv.as_deref()?),
                ("kty", "OKP"),
                ("x", self.x.as_deref()?),
            ],
            "RSA" => vec![
                ("e", self.e.as_deref()?),
                ("kty", "RSA"),
                ("n", self.n.as_deref()?),
            ],
            _ => return None,
        };
        // serde_json escapes exactly as RFC 7638 §3 requires (JSON string rules, no spaces).
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("\"{k}\":{}", serde_json::Value::from(*v)))
            .collect();
        let canonical = format!("{{{}}}", body.join(","));
        let hash = digest::digest(&digest::SHA256, canonical.as_bytes());
        Some(URL_SAFE_NO_PAD.encode(hash.as_ref()))
    }
}

/// A JWK Set: `{"keys": [...]}`, what verifiers fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// The `kid`s, in order.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(json: &str) -> Jwk {
        serde_json::from_str(json).expect("jwk")
    }

    /// RFC 7638 §3.1: the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        let key = jwk(r#"{
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }"#);
        assert_eq!(
            key.thumbprint().as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    /// RFC 8037 appendix A.3: the Ed25519 example key's thumbprint.
    #[test]
    fn rfc8037_okp_thumbprint() {
        let key = jwk(
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        );
        assert_eq!(
            key.thumbprint().as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
    }

    #[test]
    fn thumbprint_ignores_optional_members_and_needs_required_ones() {
        let base =
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo""#;
        let plain = jwk(&format!("{base}}}"));
        let decorated = jwk(&format!(r#"{base},"kid":"k","alg":"EdDSA","use":"sig"}}"#));
        assert_eq!(plain.thumbprint(), decorated.thumbprint());
        assert_eq!(
            jwk(r#"{"kty":"EC","crv":"P-256","x":"AA"}"#).thumbprint(),
            None
        );
        assert_eq!(jwk(r#"{"kty":"oct"}"#).thumbprint(), None);
    }

    #[test]
    fn jwks_serialises_use_and_skips_absent_members() {
        let set = Jwks {
            keys: vec![Jwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some("AA".into()),
                y: None,
                n: None,
                e: None,
                kid: Some("k1".into()),
                alg: Some("EdDSA".into()),
                use_: Some("sig".into()),
            }],
        };
        let json = serde_json::to_string(&set).expect("json");
        assert_eq!(
            json,
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA","kid":"k1","alg":"EdDSA","use":"sig"}]}"#
        );
        assert_eq!(set.kids(), ["k1"]);
        assert!(set.find("k1").is_some() && set.find("k2").is_none());
    }
}
