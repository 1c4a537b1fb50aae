//! RS256 keys (2048 and 3072 bits) through a real rotation, checked by an independent
//! verifier (`jsonwebtoken` on aws-lc-rs) reading the JWKS this crate publishes; and a
//! declared token lifetime keeping the replaced version alive past its grace, exactly until
//! the last token it signed expires.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use warden_keys::{
    Clock, Error, Jwks, KvLocation, ManualClock, SigningKeyConfig, SigningKeys, VerifyError, load,
    rotate,
};
use warden_spec::SigningAlgorithm;
use warden_testkit::BaoDev;

use crate::support::{KV, claims, kid_of, root_client};

const GRACE: Duration = Duration::from_secs(30);

fn rs256(app: &str, bits: u32) -> SigningKeyConfig {
    SigningKeyConfig::new(
        KvLocation::new(KV, format!("{app}/signing/jwt")),
        SigningAlgorithm::Rs256,
    )
    .with_rsa_bits(bits)
    .with_grace(GRACE)
}

/// `jsonwebtoken`'s verdict on `token`, with the key its `kid` names in `jwks` (what a
/// relying party in another language or library does). Its `exp` check uses the system clock,
/// which the tests keep ahead of (every `exp` is an hour away).
fn third_party_verify(token: &str, jwks: &Jwks) -> Result<Value, String> {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let set: JwkSet = serde_json::from_value(serde_json::to_value(jwks).expect("JWKS as JSON"))
        .expect("jsonwebtoken reads our JWKS");
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

/// For 2048 and 3072 bits: rotate, the JWKS lists both RSA keys during the grace period with
/// `n` of the right size and `e = AQAB`, a token signed with either key verifies with
/// `jsonwebtoken` and with this crate; tampering fails; after the grace only the new key is
/// published and the old token fails in both. The stored private key is PKCS#8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_rotation_verifies_with_an_independent_jwt_library() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    for bits in [2048_u32, 3072] {
        let clock = ManualClock::starting_now();
        let config = rs256(&format!("rsa{bits}"), bits);
        let first = rotate(&client, &config, &clock).await.expect("create v1");
        assert_eq!((first.alg, first.version), ("RS256", 1));
        let issuer = SigningKeys::load(client.clone(), config.clone(), Arc::new(clock.clone()))
            .await
            .expect("load v1");
        let old_token = issuer.sign(&claims("old", clock.now())).expect("sign v1");
        assert_eq!(kid_of(&old_token), first.kid);
        assert_eq!(
            third_party_verify(&old_token, &issuer.jwks()).expect("v1 before rotation")["sub"],
            "old"
        );

        let rotation = issuer.rotate().await.expect("rotate to v2");
        let previous = rotation.previous.clone().expect("v1 retiring");
        assert_eq!(previous.verifies_until, rotation.created + GRACE);
        clock.set(rotation.created + Duration::from_secs(1));
        let new_token = issuer.sign(&claims("new", clock.now())).expect("sign v2");
        assert_eq!(kid_of(&new_token), rotation.kid);

        // During the grace period: both keys published, both tokens verify everywhere.
        let jwks = issuer.jwks();
        assert_eq!(jwks.kids(), [rotation.kid.as_str(), first.kid.as_str()]);
        for jwk in &jwks.keys {
            assert_eq!(
                (jwk.kty.as_str(), jwk.alg.as_deref(), jwk.use_.as_deref()),
                ("RSA", Some("RS256"), Some("sig"))
            );
            assert_eq!(jwk.e.as_deref(), Some("AQAB"));
            let n = URL_SAFE_NO_PAD
                .decode(jwk.n.as_deref().expect("n"))
                .expect("n is base64url without padding");
            assert_eq!(
                n.len() * 8,
                bits as usize,
                "{bits}-bit modulus, no leading zero"
            );
            assert_eq!(jwk.kid, jwk.thumbprint(), "kid is the RFC 7638 thumbprint");
        }
        for (token, sub) in [(&old_token, "old"), (&new_token, "new")] {
            assert_eq!(
                third_party_verify(token, &jwks).expect("jsonwebtoken in grace")["sub"],
                sub
            );
            assert_eq!(
                issuer.verify(token).await.expect("ours in grace")["sub"],
                sub
            );
        }
        // The independent verifier is not a rubber stamp: another payload under v1's
        // signature fails, and so does v2's signature presented under v1's kid.
        let (o, n): (Vec<&str>, Vec<&str>) = (
            old_token.split('.').collect(),
            new_token.split('.').collect(),
        );
        let forged = format!("{}.{}.{}", o[0], n[1], o[2]);
        assert!(third_party_verify(&forged, &jwks).is_err());
        let swapped = format!("{}.{}.{}", o[0], o[1], n[2]);
        assert!(third_party_verify(&swapped, &jwks).is_err());
        assert_eq!(
            issuer.verify(&swapped).await,
            Err(VerifyError::BadSignature)
        );

        // After the grace period: only v2 is published; the v1 token fails in both.
        clock.set(previous.verifies_until);
        let jwks = issuer.jwks();
        assert_eq!(jwks.kids(), [rotation.kid.as_str()]);
        let err = third_party_verify(&old_token, &jwks).expect_err("v1 retired");
        assert!(err.contains("not in the JWKS"), "{err}");
        assert!(matches!(
            issuer.verify(&old_token).await,
            Err(VerifyError::KeyRetired { .. })
        ));
        assert!(third_party_verify(&new_token, &jwks).is_ok());

        // What KV holds: `rs256`, a PKCS#8 private key of the declared size.
        let set = load(&client, &config.location, &clock).await.expect("load");
        let pem = set.signing_key().to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(set.signing_key().public_key().rsa_bits(), Some(bits));
    }
}

/// A key declares 120 s as its longest token lifetime and a grace of only 5 s (the library
/// allows it; the spec would not). A token signed just before the rotation with `exp` 120 s
/// away still verifies after the grace has ended, until its own `exp`, and the old key is
/// published exactly until the last token it could have signed has expired. A token asking
/// for more than the declared lifetime is not signed at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_before_rotation_verifies_until_its_exp_beyond_the_grace() {
    const LIFETIME: Duration = Duration::from_secs(120);
    const SHORT_GRACE: Duration = Duration::from_secs(5);
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    let clock = ManualClock::starting_now();
    let config = rs256("lifetime", 2048)
        .with_grace(SHORT_GRACE)
        .with_max_token_lifetime(LIFETIME);
    rotate(&client, &config, &clock).await.expect("create v1");
    let issuer = SigningKeys::load(client.clone(), config.clone(), Arc::new(clock.clone()))
        .await
        .expect("load v1");
    assert_eq!(issuer.get().max_token_lifetime(), Some(LIFETIME));

    // Signing refuses an `exp` beyond now + lifetime, and a token without one.
    let signed_at = clock.now();
    let too_long = json!({ "sub": "x", "exp": (signed_at + LIFETIME).unix_timestamp() + 1 });
    let err = issuer.sign(&too_long).expect_err("beyond the lifetime");
    assert!(matches!(err, Error::TokenLifetime { .. }), "{err}");
    assert!(matches!(
        issuer.sign(&json!({ "sub": "x" })),
        Err(Error::TokenLifetime { exp: None, .. })
    ));

    // The longest token allowed, signed just before the rotation.
    let exp = (signed_at + LIFETIME).unix_timestamp();
    let token = issuer
        .sign(&json!({ "sub": "in-flight", "exp": exp }))
        .expect("within the lifetime");
    let rotation = issuer.rotate().await.expect("rotate to v2");
    let previous = rotation.previous.clone().expect("v1 retiring");
    // The window: rotation + max(grace, lifetime), not rotation + grace.
    assert_eq!(previous.verifies_until, rotation.created + LIFETIME);
    let grace_end = rotation.created + SHORT_GRACE;
    let exp_at = time::OffsetDateTime::from_unix_timestamp(exp).expect("exp");
    assert!(
        exp_at > grace_end && exp_at <= previous.verifies_until,
        "exp {exp_at} lies beyond the grace {grace_end}, within the window {}",
        previous.verifies_until
    );

    // A verifier that loads only now, after the grace has ended, still knows v1.
    clock.set(grace_end + Duration::from_secs(1));
    let gateway = SigningKeys::load(client.clone(), config.clone(), Arc::new(clock.clone()))
        .await
        .expect("gateway loads after the grace");
    for keys in [&issuer, &gateway] {
        assert_eq!(
            keys.verify(&token).await.expect("past grace, before exp")["sub"],
            "in-flight"
        );
        assert_eq!(keys.jwks().keys.len(), 2);
    }
    // jsonwebtoken agrees (its clock, the real one, is before `exp` too).
    assert_eq!(
        third_party_verify(&token, &gateway.jwks()).expect("jsonwebtoken past grace")["sub"],
        "in-flight"
    );

    // One second before `exp`: still good. At `exp`: expired. At the window's end the key is
    // gone from the JWKS as well.
    clock.set(exp_at - Duration::from_secs(1));
    assert!(gateway.verify(&token).await.is_ok());
    clock.set(exp_at);
    assert_eq!(
        gateway.verify(&token).await,
        Err(VerifyError::Expired { exp })
    );
    clock.set(previous.verifies_until);
    assert_eq!(gateway.jwks().kids(), [rotation.kid.as_str()]);
    assert!(matches!(
        gateway.verify(&token).await,
        Err(VerifyError::KeyRetired { .. })
    ));
}
