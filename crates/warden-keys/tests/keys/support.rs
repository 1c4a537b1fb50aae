//! Shared helpers: a root client for a dev server, key configs, token claims.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use warden_bao::{Client, ClientConfig, RetryPolicy};
use warden_keys::{KvLocation, SigningKeyConfig};
use warden_spec::SigningAlgorithm;
use warden_testkit::BaoDev;

/// The dev server's KV v2 mount.
pub(crate) const KV: &str = "secret";

/// A client holding the dev server's root token. Ordinary calls are not retried, so a sealed
/// or dead server shows up at once as a failed poll.
pub(crate) fn root_client(dev: &BaoDev) -> Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Client::new(
        ClientConfig::from_address(dev.addr())
            .expect("dev address parses")
            .with_token(dev.root_token().clone())
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client builds")
}

/// An ES256 key of app `app` with `grace`.
pub(crate) fn key_config(app: &str, grace: Duration) -> SigningKeyConfig {
    SigningKeyConfig::new(
        KvLocation::new(KV, format!("{app}/signing/jwt")),
        SigningAlgorithm::Es256,
    )
    .with_grace(grace)
}

/// Claims that expire an hour after `now`: long past every grace window in these tests, so
/// a refusal is always the key's window, never `exp`.
pub(crate) fn claims(sub: &str, now: OffsetDateTime) -> Value {
    json!({ "sub": sub, "exp": now.unix_timestamp() + 3600 })
}

/// The `kid` in a compact JWS header.
pub(crate) fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url header");
    let v: Value = serde_json::from_slice(&bytes).expect("JSON header");
    v["kid"].as_str().expect("kid").to_owned()
}
