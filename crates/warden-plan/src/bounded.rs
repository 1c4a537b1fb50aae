//! Run an async function over many inputs with a bound on how many are in flight, keeping the
//! input order in the output. The bound protects the server (a plan of 5,000 objects must not
//! open 5,000 requests at once) while keeping the one keep-alive client busy.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Applies `f` to every item, at most `limit` at a time; results come back in input order.
pub(crate) async fn run<T, F, Fut, R>(items: Vec<T>, limit: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let limit = Arc::new(Semaphore::new(limit.max(1)));
    let f = Arc::new(f);
    let mut set = JoinSet::new();
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        let f = f.clone();
        set.spawn(async move {
            let r = f(item).await;
            drop(permit);
            (i, r)
        });
    }
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.expect("a planning task panicked");
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|r| r.expect("every task reported"))
        .collect()
}
