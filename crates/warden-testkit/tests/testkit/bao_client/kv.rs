//! Raw read/write/list/delete on KV v2 and v1, missing paths, and connection reuse.

use std::collections::BTreeSet;

use warden_bao::{Error, Idempotent, MountOptions};
use warden_testkit::BaoDev;

use super::support::{client_ports_to, root_client};

#[tokio::test]
async fn kv_v2_write_read_list_delete() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);

    let written = client
        .write(
            "secret/data/apps/web",
            &serde_json::json!({"data": {"user": "web", "password": "pw-1"}}),
            Idempotent::Yes,
        )
        .await
        .expect("write")
        .expect("KV v2 answers with version metadata");
    assert_eq!(written.data.as_ref().expect("data")["version"], 1);

    let read = client.read("secret/data/apps/web").await.expect("read");
    let data = read.data.as_ref().expect("data");
    assert_eq!(data["data"]["password"], "pw-1");
    assert!(!format!("{read:?}").contains("pw-1"), "Debug hides values");

    assert_eq!(
        client.list("secret/metadata").await.expect("list"),
        ["apps/"]
    );
    assert_eq!(
        client.list("secret/metadata/apps").await.expect("list"),
        ["web"]
    );

    client
        .delete("secret/metadata/apps/web")
        .await
        .expect("delete");
    let err = client.read("secret/data/apps/web").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { path, .. } if path == "secret/data/apps/web"),
        "{err:?}"
    );
    assert!(
        client
            .list("secret/metadata/apps")
            .await
            .expect("list")
            .is_empty()
    );
    // Deleting again is harmless (idempotent).
    client
        .delete("secret/metadata/apps/web")
        .await
        .expect("delete again");
}

#[tokio::test]
async fn kv_v1_and_not_found() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    client
        .enable_secrets_engine("kv1", "kv", &MountOptions::default())
        .await
        .expect("enable kv v1");

    assert!(
        client
            .write(
                "kv1/db",
                &serde_json::json!({"url": "postgres://x"}),
                Idempotent::Yes
            )
            .await
            .expect("write")
            .is_none(),
        "KV v1 writes answer 204"
    );
    let read = client.read("kv1/db").await.expect("read");
    assert_eq!(read.data.as_ref().expect("data")["url"], "postgres://x");
    assert_eq!(client.list("kv1").await.expect("list"), ["db"]);
    client.delete("kv1/db").await.expect("delete");

    let err = client.read("kv1/db").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { errors, .. } if errors.is_empty()),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(404));

    // A path under no mount: still 404, but the server's explanation is kept.
    let err = client.read("nomount/x").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(
        err.server_errors()
            .iter()
            .any(|e| e.contains("no handler for route")),
        "{err:?}"
    );
    let err = client.list("nomount/x").await.unwrap_err();
    assert!(
        err.is_not_found(),
        "listing a missing mount is not an empty list: {err:?}"
    );
}

#[tokio::test]
async fn sequential_calls_reuse_one_connection() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    // Connections that exist before our first call (the harness's readiness probe may still
    // be closing) are not ours.
    let before = client_ports_to(dev.port());
    let mut ours = BTreeSet::<u16>::new();
    for i in 0..50 {
        client
            .write(
                &format!("secret/data/n{i}"),
                &serde_json::json!({"data": {"i": i}}),
                Idempotent::Yes,
            )
            .await
            .expect("write");
        ours.extend(client_ports_to(dev.port()).difference(&before).copied());
        client
            .read(&format!("secret/data/n{i}"))
            .await
            .expect("read");
        ours.extend(client_ports_to(dev.port()).difference(&before).copied());
    }
    assert_eq!(
        ours.len(),
        1,
        "100 calls, one keep-alive connection: local ports {ours:?}"
    );
}
