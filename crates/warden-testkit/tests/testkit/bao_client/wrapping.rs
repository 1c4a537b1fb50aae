//! Response wrapping: a wrapped answer is a single-use token, never the secret itself.

use std::time::Duration;

use serde_json::json;
use warden_bao::{ExposeSecret, Idempotent, SecretString};
use warden_testkit::BaoDev;

use super::support::{config, root_client};

#[tokio::test]
async fn wrapped_secret_id_unwraps_exactly_once() {
    let dev = BaoDev::start().await;
    let root = root_client(&dev);
    root.enable_auth("approle", "approle")
        .await
        .expect("enable approle");
    root.write(
        "auth/approle/role/w",
        &json!({ "token_ttl": 60 }),
        Idempotent::Yes,
    )
    .await
    .expect("role");

    let wrap = root
        .write_wrapped(
            "auth/approle/role/w/secret-id",
            &json!({}),
            Duration::from_secs(60),
        )
        .await
        .expect("wrapped secret-id");
    assert_eq!(wrap.ttl, 60);
    assert_eq!(wrap.creation_path, "auth/approle/role/w/secret-id");
    assert!(
        !format!("{wrap:?}").contains(wrap.token.expose_secret()),
        "Debug leaks the token"
    );

    // The holder of the wrapping token unwraps it once...
    let holder = warden_bao::Client::new(
        config(&dev).with_token(SecretString::from(wrap.token.expose_secret().to_owned())),
    )
    .expect("client");
    let first = holder
        .write("sys/wrapping/unwrap", &json!({}), Idempotent::No)
        .await
        .expect("unwrap");
    let data = first.expect("unwrap returns data").data.expect("data");
    assert!(data["secret_id"].as_str().is_some_and(|s| !s.is_empty()));
    // ...and never again.
    let again = holder
        .write("sys/wrapping/unwrap", &json!({}), Idempotent::No)
        .await;
    assert!(again.is_err(), "a wrapping token must be single-use");
}
