//! Retries stay bounded when many tasks fail at once.

use std::time::{Duration, Instant};

use warden_bao::{Client, Error};
use warden_testkit::BaoDev;

use super::support::{config, quick_retry, root_client};

#[tokio::test]
async fn concurrent_failures_do_not_become_a_storm() {
    let dev = BaoDev::start().await;
    root_client(&dev).seal().await.expect("seal");

    let budget = Duration::from_millis(1500);
    let spacing = Duration::from_millis(100);
    let client = Client::new(
        config(&dev)
            .with_token(dev.root_token().clone())
            .with_retry(quick_retry(budget).with_min_spacing(spacing)),
    )
    .expect("client");

    let tasks = 20;
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.read(&format!("secret/data/x{i}")).await })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        let err = h.await.expect("task").unwrap_err();
        match err {
            Error::GaveUp {
                attempts, ref last, ..
            } => {
                assert!(last.is_sealed(), "{err:?}");
                total += attempts;
            }
            ref other => assert!(other.is_sealed(), "{other:?}"),
        }
    }
    let elapsed = start.elapsed();
    // Every task sends its first request freely; retries share one gate that admits one per
    // `spacing`, so over the whole run at most elapsed/spacing + 1 of them can go out.
    let retries = total.saturating_sub(tasks);
    let gate_ceiling = u32::try_from(elapsed.as_millis() / spacing.as_millis()).expect("small") + 1;
    assert!(
        retries <= gate_ceiling,
        "{retries} retries in {elapsed:?} (ceiling {gate_ceiling})"
    );
    assert!(retries >= 3, "retries did happen: {retries}");
    // Within the budget, give or take a loaded CI machine's slack.
    assert!(elapsed < budget + Duration::from_secs(6), "{elapsed:?}");
}
