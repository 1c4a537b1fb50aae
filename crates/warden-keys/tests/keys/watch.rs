//! The watcher: one callback per rotation (whoever rotates), and the last good set kept
//! through a sealed server and a dead one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use warden_keys::{Clock, ManualClock, SigningKeys, WatchHandle, WatchOptions, rotate};
use warden_testkit::BaoDev;

use crate::support::{claims, key_config, root_client};

/// A safety net so a broken watcher fails the test instead of hanging it; not a timing
/// assertion (polls are 100 ms apart).
const PATIENCE: Duration = Duration::from_secs(60);

async fn next_kid(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("the watcher called back")
        .expect("channel open")
}

/// Waits until `done(handle)` holds, polling the handle's counters.
async fn until(handle: &WatchHandle, done: impl Fn(&WatchHandle) -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !done(handle) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("watcher progressed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_calls_back_once_per_rotation_and_keeps_the_last_set_when_the_server_goes() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    let clock = ManualClock::starting_now();
    let config = key_config("billing", Duration::from_secs(3600));
    rotate(&client, &config, &clock).await.expect("create v1");

    let keys = SigningKeys::load(client.clone(), config.clone(), Arc::new(clock.clone()))
        .await
        .expect("load");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let options = WatchOptions::every(Duration::from_millis(100))
        .with_max_backoff(Duration::from_millis(400));
    let handle = keys.watch(options, move |set| {
        let _ = tx.send(set.current().kid.clone());
    });

    // Rotations by another process (a CronJob), one at a time.
    for expected_version in [2, 3] {
        let r = rotate(&client, &config, &clock).await.expect("rotate");
        assert_eq!(r.version, expected_version);
        assert_eq!(next_kid(&mut rx).await, r.kid);
        assert_eq!(keys.get().current().kid, r.kid, "the provider swapped sets");
    }
    // A rotation through this very provider is announced too, once.
    let own = keys.rotate().await.expect("own rotation");
    assert_eq!(next_kid(&mut rx).await, own.kid);

    // Quiet polls call nothing back.
    let polls = handle.polls();
    until(&handle, |h| h.polls() >= polls + 5).await;
    assert!(rx.try_recv().is_err(), "no callback without a rotation");
    assert_eq!(handle.changes(), 3);
    assert_eq!(handle.consecutive_failures(), 0);

    // Sealed: polls fail, the set stays, signing and verifying go on.
    client.seal().await.expect("seal");
    until(&handle, |h| h.consecutive_failures() >= 2).await;
    let kept = keys.get();
    assert_eq!(kept.current().kid, own.kid);
    assert_eq!(
        kept.versions().len(),
        4,
        "all four versions are in their grace"
    );
    let token = keys
        .sign(&claims("sealed", clock.now()))
        .expect("sign while sealed");
    assert!(keys.verify(&token).await.is_ok());

    // Gone: the server is killed; the same.
    let failures = handle.consecutive_failures();
    drop(dev);
    until(&handle, |h| h.consecutive_failures() >= failures + 2).await;
    assert_eq!(keys.get().current().kid, own.kid);
    assert_eq!(keys.jwks().keys.len(), 4);
    let token = keys
        .sign(&claims("gone", clock.now()))
        .expect("sign while gone");
    assert_eq!(
        keys.verify(&token).await.expect("verify while gone")["sub"],
        "gone"
    );
    assert!(rx.try_recv().is_err(), "failures never call back");
    handle.stop();
}
