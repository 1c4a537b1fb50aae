//! The rotation timeline (a 5 s grace, a settable clock, no sleeping) and check-and-set.

use std::sync::Arc;
use std::time::Duration;

use warden_keys::{
    Clock, Error, ManualClock, SigningKeys, VerifyError, current_version, rotate, rotate_if_current,
};
use warden_spec::SigningAlgorithm;
use warden_testkit::BaoDev;

use crate::support::{claims, key_config, kid_of, root_client};

const GRACE: Duration = Duration::from_secs(5);

/// During a rotation, tokens signed with the old key verify until the grace period ends and
/// not after; tokens signed with the new key verify from the start. The JWKS lists both keys
/// during the grace period and one after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_key_verifies_until_grace_ends_new_key_from_the_start() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    let clock = ManualClock::starting_now();
    let config = key_config("billing", GRACE);

    // Nothing to load before the first rotation creates version 1.
    let err = SigningKeys::load(client.clone(), config.clone(), Arc::new(clock.clone()))
        .await
        .expect_err("no key yet");
    assert!(matches!(err, Error::NotProvisioned { .. }), "{err}");
    let first = rotate(&client, &config, &clock).await.expect("create v1");
    assert_eq!((first.version, first.previous.clone()), (1, None));

    let issuer = SigningKeys::load(client.clone(), config.clone(), Arc::new(clock.clone()))
        .await
        .expect("load v1");
    // Another service that only verifies, loaded before the rotation.
    let gateway = SigningKeys::load(client.clone(), config.clone(), Arc::new(clock.clone()))
        .await
        .expect("gateway loads v1");
    let old_token = issuer
        .sign(&claims("old", clock.now()))
        .expect("sign with v1");
    assert_eq!(kid_of(&old_token), first.kid);

    let rotation = issuer.rotate().await.expect("rotate to v2");
    let previous = rotation.previous.clone().expect("v1 is retiring");
    assert_eq!((rotation.version, previous.version), (2, 1));
    assert_eq!(previous.kid.as_deref(), Some(first.kid.as_str()));
    assert_ne!(rotation.kid, first.kid);
    assert_eq!(previous.verifies_until, rotation.created + GRACE);
    assert_eq!(rotation.grace_seconds, 5);

    // From the start: the rotating process signs with v2 at once, and v2 tokens verify at the
    // very moment of the rotation, also at a gateway that has not reloaded yet.
    clock.set(rotation.created);
    let new_token = issuer
        .sign(&claims("new", clock.now()))
        .expect("sign with v2");
    assert_eq!(kid_of(&new_token), rotation.kid);
    assert_eq!(
        issuer.verify(&new_token).await.expect("v2 verifies")["sub"],
        "new"
    );
    assert_eq!(
        gateway.get().current().kid,
        first.kid,
        "the gateway has not seen v2 yet"
    );
    assert_eq!(
        gateway.verify(&new_token).await.expect("gateway: v2")["sub"],
        "new"
    );
    assert_eq!(
        gateway.get().current().kid,
        rotation.kid,
        "reloaded for the new kid"
    );

    // During the grace period both verify and the JWKS lists both, newest first.
    for at in [
        rotation.created,
        previous.verifies_until - Duration::from_millis(1),
    ] {
        clock.set(at);
        for keys in [&issuer, &gateway] {
            assert_eq!(
                keys.verify(&old_token).await.expect("v1 in grace")["sub"],
                "old"
            );
            assert!(keys.verify(&new_token).await.is_ok());
            assert_eq!(
                keys.jwks().kids(),
                [rotation.kid.as_str(), first.kid.as_str()]
            );
        }
    }

    // When the grace period ends, the old key stops verifying; the new key goes on.
    for at in [previous.verifies_until, previous.verifies_until + GRACE] {
        clock.set(at);
        for keys in [&issuer, &gateway] {
            match keys.verify(&old_token).await {
                Err(VerifyError::KeyRetired { kid, until }) => {
                    assert_eq!((kid, until), (first.kid.clone(), previous.verifies_until));
                }
                other => panic!("v1 token after grace: {other:?}"),
            }
            assert!(keys.verify(&new_token).await.is_ok());
            assert_eq!(keys.jwks().kids(), [rotation.kid.as_str()]);
        }
    }

    // A verifier that loads after the grace period never learns v1 at all.
    let late = SigningKeys::load(client.clone(), config.clone(), Arc::new(clock.clone()))
        .await
        .expect("late load");
    assert_eq!(late.get().versions().len(), 1);
    assert!(matches!(
        late.verify(&old_token).await,
        Err(VerifyError::UnknownKey { .. })
    ));

    // Nothing printed about the provider reveals the private key.
    let pem = issuer.get().signing_key().to_pkcs8_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!format!("{issuer:?}").contains(&body[..32]));
}

/// Two rotations that both start from version 1: one writes version 2, the other gets a
/// check-and-set conflict and writes nothing. A rotation previewed at a stale version is
/// refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_one_wins_the_other_conflicts() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    let clock = ManualClock::starting_now();
    let config = key_config("ledger", GRACE);
    rotate(&client, &config, &clock).await.expect("create v1");
    let seen = current_version(&client, &config.location)
        .await
        .expect("read version");
    assert_eq!(seen, 1);

    let (a, b) = tokio::join!(
        rotate_if_current(&client, &config, &clock, seen),
        rotate_if_current(&client, &config, &clock, seen),
    );
    let (won, lost) = match (a, b) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    assert_eq!(won.version, 2);
    assert!(lost.is_conflict(), "{lost}");
    let msg = lost.to_string();
    assert!(
        msg.contains("expected version 1") && msg.contains("nothing of ours was written"),
        "{msg}"
    );
    assert_eq!(
        current_version(&client, &config.location).await.unwrap(),
        2,
        "the loser wrote nothing"
    );

    // A stale preview: version 1 was seen, but 2 exists now.
    let stale = rotate_if_current(&client, &config, &clock, 1)
        .await
        .expect_err("stale");
    assert!(stale.is_conflict(), "{stale}");

    // The secret only accepts check-and-set writes now: a blind overwrite is refused.
    let blind = client
        .write(
            &config.location.data_path(),
            &serde_json::json!({ "data": { "oops": "x" } }),
            warden_bao::Idempotent::No,
        )
        .await
        .expect_err("cas_required");
    assert!(blind.to_string().contains("check-and-set"), "{blind}");

    // The loaded set signs with the winner's key.
    let keys = SigningKeys::load(client, config, Arc::new(clock))
        .await
        .expect("load");
    assert_eq!(keys.get().current().kid, won.kid);
}

/// EdDSA keys go through the same store: rotate, load, sign, verify, JWKS with OKP keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_keys_rotate_and_verify() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    let clock = ManualClock::starting_now();
    let mut config = key_config("edge", GRACE);
    config.algorithm = SigningAlgorithm::EdDsa;
    rotate(&client, &config, &clock).await.expect("create");
    let keys = SigningKeys::load(client, config, Arc::new(clock.clone()))
        .await
        .expect("load");
    let token = keys.sign(&claims("ed", clock.now())).expect("sign");
    assert!(keys.verify(&token).await.is_ok());
    let jwks = serde_json::to_value(keys.jwks()).expect("json");
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert!(jwks["keys"][0].get("d").is_none());
    let rotation = keys.rotate().await.expect("rotate");
    assert_eq!(rotation.alg, "EdDSA");
    assert_eq!(keys.jwks().keys.len(), 2);
}
