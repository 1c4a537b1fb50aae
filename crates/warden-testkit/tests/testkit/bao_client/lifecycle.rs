//! Health, readiness, sealing, and an unreachable server.

use std::time::{Duration, Instant};

use warden_bao::{Client, ClientConfig, Error, RetryPolicy};
use warden_testkit::BaoDev;

use super::support::{config, quick_retry, root_client};

#[tokio::test]
async fn health_says_initialized_and_unsealed() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);

    let health = client.health().await.expect("health");
    assert!(
        health.initialized && !health.sealed && !health.standby,
        "{health:?}"
    );
    assert_eq!(health.http_status, 200);
    assert_eq!(health.version, "2.7.2");
    assert!(health.is_ready());

    let ready = client.wait_ready().await.expect("ready at once");
    assert!(ready.is_ready());

    let seal = client.seal_status().await.expect("seal-status");
    assert!(seal.initialized && !seal.sealed);
    assert!(
        seal.threshold >= 1 && seal.shares >= seal.threshold,
        "{seal:?}"
    );
}

#[tokio::test]
async fn sealed_server_gives_typed_errors() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    client
        .write(
            "secret/data/before-seal",
            &serde_json::json!({"data": {"k": "v"}}),
            warden_bao::Idempotent::Yes,
        )
        .await
        .expect("write while unsealed");

    client.seal().await.expect("seal with the root token");

    // Without retries: the read fails at once with Sealed.
    let err = client.read("secret/data/before-seal").await.unwrap_err();
    assert!(
        matches!(&err, Error::Sealed { address } if address.contains(&dev.port().to_string())),
        "{err:?}"
    );
    assert!(err.is_retryable());

    // Health still answers (503 carries a body), and says so.
    let health = client.health().await.expect("health answers while sealed");
    assert!(health.sealed && !health.is_ready());
    assert_eq!(health.http_status, 503);

    // With a retry budget the read keeps trying, then gives up with the last error Sealed.
    let retrying = Client::new(
        config(&dev)
            .with_token(dev.root_token().clone())
            .with_retry(quick_retry(Duration::from_millis(800))),
    )
    .expect("client");
    let start = Instant::now();
    let err = retrying.read("secret/data/before-seal").await.unwrap_err();
    let waited = start.elapsed();
    match &err {
        Error::GaveUp { attempts, last, .. } => {
            assert!(last.is_sealed(), "{err:?}");
            assert!(*attempts >= 2, "it retried: {err:?}");
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }
    assert!(err.is_sealed(), "helpers look through GaveUp");
    // Bounded by the 0.8 s budget, not the 60 s request timeout; the slack is for a loaded
    // CI machine.
    assert!(
        waited < Duration::from_secs(8),
        "bounded by the budget: {waited:?}"
    );
}

#[tokio::test]
async fn wait_ready_on_sealed_server_times_out_with_bounded_attempts() {
    let dev = BaoDev::start().await;
    root_client(&dev).seal().await.expect("seal");

    let startup = Duration::from_secs(2);
    let policy = quick_retry(startup);
    let client = Client::new(config(&dev).with_retry(policy)).expect("client");
    let start = Instant::now();
    let err = client.wait_ready().await.unwrap_err();
    let waited = start.elapsed();

    let Error::GaveUp {
        attempts,
        last,
        what,
        ..
    } = &err
    else {
        panic!("expected GaveUp, got {err:?}");
    };
    assert_eq!(what, "wait_ready");
    assert!(last.is_sealed(), "stuck on sealed: {err:?}");
    // The smallest possible delay is initial/2 = 25 ms, so no schedule can exceed
    // startup/25ms + 1 attempts; exponential growth to 400 ms keeps the real count far lower.
    let ceiling = u32::try_from(startup.as_millis() / 25).expect("small") + 1;
    assert!(
        *attempts >= 3 && *attempts <= ceiling,
        "attempts {attempts}"
    );
    // Even with the shortest jitter: 25 + 50 + 100 ms, then 200 ms steps up to 2 s.
    assert!(
        *attempts <= 14,
        "backoff grows: {attempts} attempts in {waited:?}"
    );
    // It gives up only when the next delay (at most 400 ms) would cross the timeout.
    assert!(
        waited >= Duration::from_millis(1500),
        "kept trying: {waited:?}"
    );
    // (The slack past the timeout is for an attempt slowed by a loaded CI machine.)
    assert!(
        waited <= startup + Duration::from_secs(4),
        "stopped at the timeout: {waited:?}"
    );
}

#[tokio::test]
async fn closed_port_is_unreachable_quickly() {
    // A port that was free a moment ago and has nothing listening on it now.
    let addr = warden_testkit::dead_address("http");
    let client = Client::new(
        ClientConfig::from_address(&addr)
            .expect("cfg")
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client");

    let start = Instant::now();
    let err = client.health().await.unwrap_err();
    assert!(
        matches!(&err, Error::Unreachable { address, .. } if address.contains(addr.as_str())),
        "{err:?}"
    );
    assert!(err.is_retryable() && err.request_not_sent());
    // Refused at once, not after the 10 s connect timeout.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("cannot reach OpenBao"), "{err}");

    // Even a non-idempotent call may be retried when nothing was sent; it gives up in budget.
    let client = Client::new(
        ClientConfig::from_address(&addr)
            .expect("cfg")
            .with_retry(quick_retry(Duration::from_millis(500))),
    )
    .expect("client");
    let start = Instant::now();
    let err = client.seal().await.unwrap_err();
    assert!(
        matches!(&err, Error::GaveUp { attempts, .. } if *attempts >= 2),
        "{err:?}"
    );
    assert!(err.is_unreachable());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
