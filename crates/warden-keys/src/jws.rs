//! Compact JWS (RFC 7515) for JWTs: [`sign`] with a [`PrivateKey`], [`verify`] against
//! anything that can find a key by `kid` at a given time ([`KeyLookup`]: a [`crate::KeySet`]
//! with its grace windows, or a published [`Jwks`]).
//!
//! Deliberately narrow: ES256, EdDSA and RS256 only, `kid` required, `crit` refused, the key's own
//! algorithm must match the header's (no algorithm confusion), and `exp` is required.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{Error, Result, VerifyError};
use crate::jwk::Jwks;
use crate::material::{PrivateKey, PublicKey};

/// A token's claims: its JSON payload.
pub type Claims = serde_json::Map<String, Value>;

/// Finds the verification key named by a token's `kid`, as of `now`.
pub trait KeyLookup {
    /// The key for `kid`, or why there is none usable at `now`.
    fn lookup(&self, kid: &str, now: OffsetDateTime)
    -> std::result::Result<PublicKey, VerifyError>;
}

impl KeyLookup for Jwks {
    /// A published JWKS lists only keys valid when it was built: every listed key is usable.
    fn lookup(
        &self,
        kid: &str,
        _now: OffsetDateTime,
    ) -> std::result::Result<PublicKey, VerifyError> {
        let jwk = self.find(kid).ok_or_else(|| VerifyError::UnknownKey {
            kid: kid.to_owned(),
        })?;
        PublicKey::from_jwk(jwk).map_err(|reason| VerifyError::Malformed {
            reason: format!("JWKS key `{kid}`: {reason}"),
        })
    }
}

/// Signs `claims` (which must serialise to a JSON object) as a compact JWS whose header names
/// the key: `{"alg":…,"kid":…,"typ":"JWT"}`.
pub fn sign(key: &PrivateKey, claims: &impl Serialize) -> Result<String> {
    let payload = serde_json::to_value(claims).map_err(|e| Error::Claims {
        reason: e.to_string(),
    })?;
    if !payload.is_object() {
        return Err(Error::Claims {
            reason: format!("got {}", kind(&payload)),
        });
    }
    let public = key.public_key();
    let header = serde_json::json!({
        "alg": public.algorithm().jws_alg(),
        "kid": public.kid(),
        "typ": "JWT",
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let signature = key.sign(signing_input.as_bytes())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// Verifies `token` with the key its `kid` names in `keys` as of `now`, then checks `exp`
/// (required) and `nbf` (if present). Returns the claims.
pub fn verify(
    token: &str,
    keys: &impl KeyLookup,
    now: OffsetDateTime,
) -> std::result::Result<Claims, VerifyError> {
    let malformed = |reason: &str| VerifyError::Malformed {
        reason: reason.to_owned(),
    };
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "a compact JWS has exactly three dot-separated parts",
        ));
    };
    let header: Value =
        decode_json(h64).ok_or_else(|| malformed("the header is not base64url JSON"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the header has no `alg`"))?;
    if !matches!(alg, "ES256" | "EdDSA" | "RS256") {
        return Err(VerifyError::UnsupportedAlgorithm {
            alg: alg.to_owned(),
        });
    }
    if header.get("crit").is_some() {
        return Err(VerifyError::CriticalHeader);
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the header has no `kid`"))?;
    let key = keys.lookup(kid, now)?;
    if key.algorithm().jws_alg() != alg {
        return Err(VerifyError::AlgorithmMismatch {
            alg: alg.to_owned(),
            kid: kid.to_owned(),
            expected: key.algorithm().jws_alg(),
        });
    }
    let signature = URL_SAFE_NO_PAD
        .decode(s64)
        .map_err(|_| malformed("the signature is not base64url"))?;
    let signing_input = &token[..h64.len() + 1 + p64.len()];
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(VerifyError::BadSignature);
    }
    // Only a token whose signature holds gets its claims read.
    let Some(Value::Object(claims)) = decode_json(p64) else {
        return Err(malformed("the payload is not a base64url JSON object"));
    };
    let now_s = now.unix_timestamp();
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(VerifyError::MissingExpiry)?;
    if now_s >= exp {
        return Err(VerifyError::Expired { exp });
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(nbf).ok_or_else(|| malformed("`nbf` is not a number"))?;
        if now_s < nbf {
            return Err(VerifyError::NotYetValid { nbf });
        }
    }
    Ok(claims)
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional (truncated).
pub(crate) fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64))
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use warden_spec::SigningAlgorithm;

    use super::*;
    use crate::jwk::Jwk;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).expect("time")
    }

    fn jwks(keys: &[&PrivateKey]) -> Jwks {
        Jwks {
            keys: keys.iter().map(|k| k.public_key().to_jwk()).collect(),
        }
    }

    #[test]
    fn round_trip_for_both_algorithms() {
        for alg in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
        ] {
            let key = PrivateKey::generate(alg).expect("key");
            let token = sign(&key, &json!({"sub": "alice", "exp": 2_000})).expect("sign");
            let claims = verify(&token, &jwks(&[&key]), at(1_000)).expect("verify");
            assert_eq!(claims["sub"], "alice");
            let header: Value = decode_json(token.split('.').next().unwrap()).unwrap();
            assert_eq!(header["alg"], alg.jws_alg());
            assert_eq!(header["kid"], key.public_key().kid());
        }
    }

    #[test]
    fn tampering_fails() {
        let key = PrivateKey::generate(SigningAlgorithm::Es256).expect("key");
        let keys = jwks(&[&key]);
        let token = sign(&key, &json!({"sub": "alice", "exp": 2_000})).expect("sign");
        let parts: Vec<&str> = token.split('.').collect();
        // Another payload under the same signature.
        let forged_payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin","exp":2000}"#);
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(
            verify(&forged, &keys, at(1_000)),
            Err(VerifyError::BadSignature)
        );
        // A flipped signature byte.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            verify(&flipped, &keys, at(1_000)),
            Err(VerifyError::BadSignature)
        );
        // Signed by another key that claims this key's kid.
        let other = PrivateKey::generate(SigningAlgorithm::Es256).expect("key");
        let theirs = sign(&other, &json!({"sub": "alice", "exp": 2_000})).expect("sign");
        let t: Vec<&str> = theirs.split('.').collect();
        let impostor = format!("{}.{}.{}", parts[0], t[1], t[2]);
        assert_eq!(
            verify(&impostor, &keys, at(1_000)),
            Err(VerifyError::BadSignature)
        );
        // `alg: none` and a header pointing at an unknown key.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"x"}"#),
            parts[1]
        );
        assert!(matches!(
            verify(&none, &keys, at(1_000)),
            Err(VerifyError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            verify(&theirs, &keys, at(1_000)),
            Err(VerifyError::UnknownKey { .. })
        ));
        assert!(matches!(
            verify("a.b", &keys, at(1_000)),
            Err(VerifyError::Malformed { .. })
        ));
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let ed = PrivateKey::generate(SigningAlgorithm::EdDsa).expect("key");
        let token = sign(&ed, &json!({"exp": 2_000})).expect("sign");
        let parts: Vec<&str> = token.split('.').collect();
        let header = json!({"alg": "ES256", "kid": ed.public_key().kid()}).to_string();
        let relabelled = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            parts[1],
            parts[2]
        );
        assert!(matches!(
            verify(&relabelled, &jwks(&[&ed]), at(1_000)),
            Err(VerifyError::AlgorithmMismatch { .. })
        ));
    }

    /// Red team (issue 17): RS256 beside ES256 opens no door. An ES256 token relabelled RS256,
    /// an RS256 token relabelled ES256, HS256 "signed" with the public key as the secret, and
    /// a JWKS holding an EC and an RSA key under the same `kid` (the first is used, and its
    /// own algorithm decides) are all refused; weak RSA keys never load.
    #[test]
    fn rs256_beside_es256_opens_no_algorithm_or_kid_confusion() {
        let ec = PrivateKey::generate(SigningAlgorithm::Es256).expect("ec");
        let rsa = PrivateKey::generate(SigningAlgorithm::Rs256).expect("rsa");
        let keys = jwks(&[&ec, &rsa]);
        let relabel = |token: &str, alg: &str, kid: &str| {
            let parts: Vec<&str> = token.split('.').collect();
            let h = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": kid}).to_string());
            format!("{h}.{}.{}", parts[1], parts[2])
        };
        let ec_token = sign(&ec, &json!({"exp": 2_000})).expect("sign");
        let rsa_token = sign(&rsa, &json!({"exp": 2_000})).expect("sign");
        let (ec_kid, rsa_kid) = (ec.public_key().kid(), rsa.public_key().kid());
        for (token, alg, kid) in [
            (&ec_token, "RS256", ec_kid.as_str()),
            (&rsa_token, "ES256", rsa_kid.as_str()),
            (&ec_token, "RS256", rsa_kid.as_str()),
            (&rsa_token, "ES256", ec_kid.as_str()),
        ] {
            let forged = relabel(token, alg, kid);
            assert!(
                matches!(
                    verify(&forged, &keys, at(1_000)),
                    Err(VerifyError::AlgorithmMismatch { .. } | VerifyError::BadSignature)
                ),
                "{alg} under {kid}"
            );
        }
        // HS256 keyed with the RSA public key's JWK text: the classic confusion.
        let h = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": rsa_kid}).to_string());
        let p = URL_SAFE_NO_PAD.encode(r#"{"exp":2000}"#);
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                serde_json::to_string(&rsa.public_key().to_jwk())
                    .expect("jwk")
                    .as_bytes(),
            ),
            format!("{h}.{p}").as_bytes(),
        );
        let hs = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        assert!(matches!(
            verify(&hs, &keys, at(1_000)),
            Err(VerifyError::UnsupportedAlgorithm { .. })
        ));
        // Same kid on an EC and an RSA entry: the RSA token does not verify through the EC key.
        let mut clash = jwks(&[&ec, &rsa]);
        clash.keys[1].kid = Some(ec_kid.clone());
        let stolen_kid = relabel(&rsa_token, "RS256", &ec_kid);
        assert!(matches!(
            verify(&stolen_kid, &clash, at(1_000)),
            Err(VerifyError::AlgorithmMismatch { .. })
        ));
        // Weak RSA public keys never load: e = 3, and a 1024-bit modulus.
        let mut weak = rsa.public_key().to_jwk();
        weak.e = Some(URL_SAFE_NO_PAD.encode([3u8]));
        assert!(PublicKey::from_jwk(&weak).is_err());
        let mut short = rsa.public_key().to_jwk();
        let n = URL_SAFE_NO_PAD
            .decode(short.n.as_deref().expect("n"))
            .expect("n");
        short.n = Some(URL_SAFE_NO_PAD.encode(&n[..128]));
        assert!(PublicKey::from_jwk(&short).is_err());
    }

    /// RFC 7515 appendix A.2: the example RS256 JWS verifies under the example RSA key, and
    /// does not once its payload changes.
    #[test]
    fn rfc7515_rs256_signature_verifies() {
        let jwk: Jwk = serde_json::from_str(r#"{"kty":"RSA","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}"#).unwrap();
        let key = PublicKey::from_jwk(&jwk).expect("key");
        let input = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let sig = URL_SAFE_NO_PAD
            .decode("cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw")
            .unwrap();
        assert!(key.verify(input.as_bytes(), &sig));
        assert!(!key.verify(&input.as_bytes()[1..], &sig));
    }

    #[test]
    fn exp_is_required_and_checked_and_nbf_honoured() {
        let key = PrivateKey::generate(SigningAlgorithm::EdDsa).expect("key");
        let keys = jwks(&[&key]);
        let token = sign(&key, &json!({"exp": 2_000, "nbf": 1_500})).expect("sign");
        assert_eq!(
            verify(&token, &keys, at(1_499)),
            Err(VerifyError::NotYetValid { nbf: 1_500 })
        );
        assert!(verify(&token, &keys, at(1_999) + Duration::from_millis(999)).is_ok());
        assert_eq!(
            verify(&token, &keys, at(2_000)),
            Err(VerifyError::Expired { exp: 2_000 })
        );
        let forever = sign(&key, &json!({"sub": "x"})).expect("sign");
        assert_eq!(
            verify(&forever, &keys, at(0)),
            Err(VerifyError::MissingExpiry)
        );
        assert!(matches!(
            sign(&key, &json!([1, 2])),
            Err(Error::Claims { .. })
        ));
    }

    #[test]
    fn crit_headers_are_refused() {
        let key = PrivateKey::generate(SigningAlgorithm::EdDsa).expect("key");
        let kid = key.public_key().kid();
        let h = URL_SAFE_NO_PAD
            .encode(json!({"alg": "EdDSA", "kid": kid, "crit": ["x"], "x": 1}).to_string());
        let p = URL_SAFE_NO_PAD.encode(r#"{"exp":2000}"#);
        let sig = key.sign(format!("{h}.{p}").as_bytes()).expect("sign");
        let token = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            verify(&token, &jwks(&[&key]), at(1_000)),
            Err(VerifyError::CriticalHeader)
        );
    }

    /// RFC 8037 appendix A.4: the example Ed25519 JWS verifies under the example key, and
    /// does not once its payload changes.
    #[test]
    fn rfc8037_ed25519_signature_verifies() {
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        )
        .unwrap();
        let key = PublicKey::from_jwk(&jwk).expect("key");
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = URL_SAFE_NO_PAD
            .decode("hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
            .unwrap();
        assert!(key.verify(input.as_bytes(), &sig));
        assert!(!key.verify(
            b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmd",
            &sig
        ));
    }
}
