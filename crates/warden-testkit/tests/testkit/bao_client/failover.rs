//! A client with several addresses against real servers: a dead port, a sealed dev server, an
//! uninitialised server, a server whose certificate is not trusted, and a live one. It fails
//! over to the live node, sticks to it, replays nothing that may have been applied, and names
//! every address when none can serve.

use std::time::Duration;

use serde_json::json;
use warden_bao::{Client, ClientConfig, Error, Idempotent, RetryPolicy, SecretString};
use warden_testkit::{BaoDev, BareBao, dead_address};

use super::support::{quick_retry, root_client};

/// A TLS dev server sealed through `sys/seal`.
async fn sealed_dev() -> BaoDev {
    let dev = BaoDev::start_tls().await;
    root_client(&dev).seal().await.expect("seal");
    dev
}

/// A client over `addresses` trusting every CA in `ca`: all nodes speak TLS (the client
/// refuses plain http once a CA is configured, and the uninitialised node has only HTTPS).
fn client(addresses: &[&str], live: &BaoDev, ca: &[u8], retry: RetryPolicy) -> Client {
    Client::new(
        ClientConfig::with_addresses(addresses)
            .expect("addresses")
            .with_ca_pem(ca.to_vec())
            .with_token(live.root_token().clone())
            .with_retry(retry),
    )
    .expect("client")
}

/// One PEM bundle of the dev servers' CAs and the uninitialised server's CA.
fn ca_bundle(devs: &[&BaoDev], uninit: &BareBao) -> Vec<u8> {
    let mut pem = std::fs::read(uninit.ca_path()).expect("read the bare server's CA");
    for dev in devs {
        pem.push(b'\n');
        pem.extend(std::fs::read(dev.ca_cert_path().expect("a TLS dev server")).expect("read CA"));
    }
    pem
}

fn same(url: &impl AsRef<str>, addr: &str) -> bool {
    url.as_ref().trim_end_matches('/') == addr
}

#[tokio::test]
async fn failover_skips_dead_sealed_and_uninitialised_nodes_and_sticks_to_the_live_one() {
    let (sealed, uninit, live) = tokio::join!(sealed_dev(), BareBao::start(), BaoDev::start_tls());
    let dead = dead_address("https");
    let ca = ca_bundle(&[&sealed, &live], &uninit);
    root_client(&live)
        .write(
            "secret/data/app",
            &json!({"data": {"k": "v1"}}),
            Idempotent::Yes,
        )
        .await
        .expect("seed");

    // No retries: one round must be enough to find the live node.
    let order = [dead.as_str(), sealed.addr(), uninit.addr(), live.addr()];
    let c = client(&order, &live, &ca, RetryPolicy::no_retries());
    assert!(same(c.address(), &dead), "the first address starts current");
    assert_eq!(c.addresses().len(), 4);

    let got = c
        .read("secret/data/app")
        .await
        .expect("read through failover");
    assert_eq!(got.data.expect("data")["data"]["k"], "v1");
    assert!(
        same(c.address(), live.addr()),
        "now on the live node: {}",
        c.address()
    );

    // A non-idempotent write on a client whose current node is sealed: the sealed node
    // refused it (nothing applied), so it moves on and the write lands exactly once.
    let c2 = client(
        &[sealed.addr(), live.addr()],
        &live,
        &ca,
        RetryPolicy::no_retries(),
    );
    let written = c2
        .write(
            "secret/data/once",
            &json!({"data": {"n": 1}, "options": {"cas": 0}}),
            Idempotent::No,
        )
        .await
        .expect("non-idempotent write fails over past a sealed node");
    assert!(written.is_some());
    let meta = root_client(&live)
        .read("secret/metadata/once")
        .await
        .expect("metadata");
    assert_eq!(
        meta.data.expect("meta")["current_version"],
        1,
        "written once"
    );

    // It sticks: the clones share the current node, and node-local calls go there.
    let clone = c.clone();
    assert!(same(clone.address(), live.addr()));
    let health = clone.health().await.expect("health of the current node");
    assert!(health.is_ready(), "{health:?}");
    for i in 0..5 {
        c.read("secret/data/app")
            .await
            .unwrap_or_else(|e| panic!("read {i}: {e}"));
        assert!(same(c.address(), live.addr()));
    }

    // wait_ready finds the active node from the start of the list too.
    let fresh = client(&order, &live, &ca, quick_retry(Duration::from_secs(5)));
    let ready = fresh.wait_ready().await.expect("ready");
    assert!(ready.is_ready());
    assert!(same(fresh.address(), live.addr()));
}

#[tokio::test]
async fn when_no_node_can_serve_the_error_names_every_address() {
    let (sealed, uninit, other) = tokio::join!(sealed_dev(), BareBao::start(), BaoDev::start_tls());
    let dead = dead_address("https");
    let sealed2 = sealed_dev().await;
    let ca = ca_bundle(&[&sealed, &sealed2, &other], &uninit);
    let order = [dead.as_str(), sealed.addr(), uninit.addr()];
    let c = client(&order, &other, &ca, RetryPolicy::no_retries());

    let err = c.read("secret/data/x").await.unwrap_err();
    let text = err.to_string();
    let Error::AllNodesFailed { failures } = &err else {
        panic!("expected AllNodesFailed, got {err:?}");
    };
    assert_eq!(failures.len(), 3, "{text}");
    assert!(text.starts_with("all 3 OpenBao nodes failed: "), "{text}");
    for addr in order {
        assert!(text.contains(addr), "{addr} missing from: {text}");
    }
    assert!(text.contains("refused"), "{text}");
    assert!(text.contains("sealed"), "{text}");
    assert!(err.is_retryable() && err.not_applied());
    assert!(!err.is_sealed(), "one node was unreachable, not sealed");

    // With a budget: rounds repeat with backoff, then give up naming the last round.
    let patient = client(&order, &other, &ca, quick_retry(Duration::from_millis(700)));
    let err = patient.read("secret/data/x").await.unwrap_err();
    match &err {
        Error::GaveUp { attempts, last, .. } => {
            assert!(*attempts >= 2, "{err}");
            assert!(matches!(**last, Error::AllNodesFailed { .. }), "{err}");
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }

    // wait_ready: nothing active anywhere.
    let err = patient.wait_ready().await.unwrap_err();
    assert!(err.to_string().contains("all 3 OpenBao nodes"), "{err}");

    // Two sealed nodes: the whole error reads as sealed, for the CLI's unseal hint.
    let err = client(
        &[sealed.addr(), sealed2.addr()],
        &other,
        &ca,
        RetryPolicy::no_retries(),
    )
    .read("secret/data/x")
    .await
    .unwrap_err();
    assert!(err.is_sealed(), "{err}");
    assert!(
        err.to_string().starts_with("all 2 OpenBao nodes sealed"),
        "{err}"
    );
}

#[tokio::test]
async fn a_node_with_an_untrusted_certificate_is_passed_over() {
    let (untrusted, live) = tokio::join!(BaoDev::start_tls(), BaoDev::start_tls());
    let ca = std::fs::read(live.ca_cert_path().expect("dev CA")).expect("read CA");
    let c = Client::new(
        ClientConfig::with_addresses(&[untrusted.addr(), live.addr()])
            .expect("addresses")
            .with_ca_pem(ca)
            .with_token(live.root_token().clone())
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client");
    c.read("sys/mounts")
        .await
        .expect("served by the trusted node");
    assert!(same(c.address(), live.addr()));

    // Only the untrusted node: the TLS failure stands, typed, and is not retried.
    let alone = Client::new(
        ClientConfig::with_addresses(&[untrusted.addr()])
            .expect("one address")
            .with_ca_pem(std::fs::read(live.ca_cert_path().expect("CA")).expect("CA"))
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client");
    let err = alone.read("sys/mounts").await.unwrap_err();
    assert!(err.is_tls() && !err.is_retryable(), "{err:?}");
}

/// Makes the same token valid on each server (a custom token id, created by each root), so one
/// client can talk to two unrelated dev servers as if they were one cluster's nodes.
async fn shared_token(servers: &[&BaoDev]) -> SecretString {
    let id = format!(
        "failover-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    for dev in servers {
        root_client(dev)
            .write(
                "auth/token/create",
                &json!({ "id": id, "policies": ["root"], "ttl": "1h" }),
                Idempotent::No,
            )
            .await
            .expect("create the shared token");
    }
    SecretString::from(id)
}

#[tokio::test]
async fn a_client_on_a_working_node_moves_on_when_that_node_seals() {
    let (a, b) = tokio::join!(BaoDev::start(), BaoDev::start());
    let token = shared_token(&[&a, &b]).await;
    for dev in [&a, &b] {
        root_client(dev)
            .write(
                "secret/data/k",
                &json!({"data": {"on": dev.addr()}}),
                Idempotent::Yes,
            )
            .await
            .expect("seed");
    }
    let c = Client::new(
        ClientConfig::with_addresses(&[a.addr(), b.addr()])
            .expect("addresses")
            .with_token(token)
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client");
    let on = |s: warden_bao::Secret| s.data.expect("data")["data"]["on"].clone();
    assert_eq!(on(c.read("secret/data/k").await.expect("read")), a.addr());
    assert!(
        same(c.address(), a.addr()),
        "both are active: the first one serves"
    );

    // The node it works with seals. The very next call, one with side effects, is refused by
    // the sealed node (nothing applied), so it moves on and lands on the other exactly once.
    root_client(&a).seal().await.expect("seal a");
    c.write(
        "secret/data/k2",
        &json!({"data": {"n": 1}, "options": {"cas": 0}}),
        Idempotent::No,
    )
    .await
    .expect("a non-idempotent write fails over past the sealed node");
    assert!(same(c.address(), b.addr()));
    let meta = root_client(&b)
        .read("secret/metadata/k2")
        .await
        .expect("written on b");
    assert_eq!(meta.data.expect("meta")["current_version"], 1, "once");
    // And it stays there.
    assert_eq!(on(c.read("secret/data/k").await.expect("read")), b.addr());
    assert!(same(c.address(), b.addr()));
}
