//! The leader lease against a real OpenBao dev server: two replicas racing for a free lease
//! (exactly one wins, by check-and-set), renewal under the same term, takeover only after the
//! expiry by the server's clock (a new term), and a release that lets the other take over at
//! once.

use std::time::{Duration, Instant};

use warden_bao::{Client, ClientConfig, MountOptions, RetryPolicy};
use warden_serve::{Lease, Step};
use warden_testkit::BaoDev;

const TTL: Duration = Duration::from_secs(3);

fn leader(step: &Step) -> Option<(u64, bool)> {
    match step {
        Step::Leader { held, taken } => Some((held.term, *taken)),
        Step::Follower(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_renewal_takeover_after_expiry_and_release() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dev = BaoDev::start().await;
    let client = || {
        Client::new(
            ClientConfig::from_address(dev.addr())
                .expect("address")
                .with_token(dev.root_token().clone())
                .with_retry(RetryPolicy::no_retries()),
        )
        .expect("client")
    };
    // One client per replica: each reads the server's clock from its own responses.
    let (ca, cb) = (client(), client());
    ca.enable_secrets_engine("warden", "kv", &MountOptions::kv_v2())
        .await
        .expect("warden mount");
    let a = Lease::new("dev", "a", TTL).expect("lease a");
    let b = Lease::new("dev", "b", TTL).expect("lease b");

    // A free lease, two takers at once: check-and-set lets exactly one write term 1.
    let (sa, sb) = tokio::join!(a.step(&ca), b.step(&cb));
    let (sa, sb) = (sa.expect("a steps"), sb.expect("b steps"));
    let (winner, wc, loser, lc) = match (leader(&sa), leader(&sb)) {
        (Some((1, true)), None) => (&a, &ca, &b, &cb),
        (None, Some((1, true))) => (&b, &cb, &a, &ca),
        other => panic!("expected exactly one leader of term 1, got {other:?}: {sa:?} {sb:?}"),
    };
    let Step::Leader { held, .. } = winner.step(wc).await.expect("renew") else {
        panic!("the holder renews its own lease");
    };
    assert_eq!(held.term, 1, "a renewal keeps the term");
    assert!(held.valid());
    let renewed = Instant::now();
    match loser.step(lc).await.expect("look") {
        Step::Follower(rec) => assert_eq!(rec.term, 1),
        other => panic!("an unexpired lease is not taken: {other:?}"),
    }

    // The holder goes quiet: the other takes over only after the expiry, with term 2.
    let taken = loop {
        let s = loser.step(lc).await.expect("look");
        if let Some((term, taken)) = leader(&s) {
            assert!(taken);
            break (term, renewed.elapsed());
        }
        assert!(renewed.elapsed() < TTL * 10, "no takeover after {TTL:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(taken.0, 2, "a takeover is a new term");
    // Not before the TTL minus the one-second slack of the server's `Date`.
    assert!(
        taken.1 >= TTL - Duration::from_secs(1),
        "taken over after only {:?}",
        taken.1
    );
    // The old holder's local deadline had passed by then: it acted on a lease nobody else had.
    assert!(
        !held.valid(),
        "the old holder's deadline ends before the takeover"
    );
    match winner.step(wc).await.expect("look") {
        Step::Follower(rec) => assert_eq!(rec.term, 2),
        other => panic!("the old holder follows: {other:?}"),
    }

    // A release hands the lease over at once: term 3 for the other, no TTL wait.
    assert!(
        !winner.release(wc, 2).await.expect("not its lease"),
        "a replica cannot release another's lease"
    );
    assert!(loser.release(lc, 2).await.expect("release"));
    let start = Instant::now();
    let s = winner.step(wc).await.expect("take");
    assert_eq!(leader(&s), Some((3, true)));
    // At once: one step, well short of the 3 s TTL a wait for expiry would take.
    assert!(
        start.elapsed() < TTL,
        "the released lease was taken after {:?}",
        start.elapsed()
    );
}

/// Red team (issue 15): two processes started with the same `--id` (a unit copied to a second
/// host without changing it). Before the process nonce, each read the lease as its own and
/// renewed it, so both led the same term and both ran jobs. Now the second follows until the
/// first's lease expires, and cannot release it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_in_two_processes_leads_once() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dev = BaoDev::start().await;
    let client = || {
        Client::new(
            ClientConfig::from_address(dev.addr())
                .expect("address")
                .with_token(dev.root_token().clone())
                .with_retry(RetryPolicy::no_retries()),
        )
        .expect("client")
    };
    let (ca, cb) = (client(), client());
    ca.enable_secrets_engine("warden", "kv", &MountOptions::kv_v2())
        .await
        .expect("warden mount");
    let a = Lease::new("dev", "same", TTL).expect("lease a");
    let b = Lease::new("dev", "same", TTL).expect("lease b");

    assert_eq!(
        leader(&a.step(&ca).await.expect("a takes")),
        Some((1, true))
    );
    for _ in 0..3 {
        match b.step(&cb).await.expect("b looks") {
            Step::Follower(rec) => {
                assert_eq!((rec.holder.as_str(), rec.term), ("same", 1));
                assert!(!rec.instance.is_empty());
            }
            other => panic!("a second process with the same id must follow: {other:?}"),
        }
        assert_eq!(
            leader(&a.step(&ca).await.expect("a renews")),
            Some((1, false))
        );
    }
    assert!(
        !b.release(&cb, 1).await.expect("release"),
        "the same id in another process cannot release the lease"
    );
}
