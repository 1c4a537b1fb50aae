//! Many requests over one client with a bound on how many are in flight, results in input
//! order. The bound protects the server (posture over 30,000 credentials must not open 30,000
//! requests at once) while keeping the one keep-alive client busy; the work stays on the
//! caller's task, so the futures may borrow (a spec, an environment) instead of cloning them.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Applies `f` to every item, at most `limit` futures at a time; results in input order.
pub async fn run<T, F, Fut, R>(items: Vec<T>, limit: usize, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = R>,
{
    let limit = limit.max(1);
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let mut pending = items.into_iter().enumerate();
    let mut running: Vec<(usize, Pin<Box<Fut>>)> = Vec::with_capacity(limit);
    std::future::poll_fn(|cx| {
        loop {
            while running.len() < limit {
                let Some((i, item)) = pending.next() else {
                    break;
                };
                running.push((i, Box::pin(f(item))));
            }
            let before = running.len();
            let mut k = 0;
            while k < running.len() {
                if let Poll::Ready(r) = running[k].1.as_mut().poll(cx) {
                    out[running[k].0] = Some(r);
                    drop(running.swap_remove(k));
                } else {
                    k += 1;
                }
            }
            if running.is_empty() && pending.len() == 0 {
                return Poll::Ready(());
            }
            // Something finished: start the next ones and poll them at once.
            if running.len() == before {
                return Poll::Pending;
            }
        }
    })
    .await;
    out.into_iter()
        .map(|r| r.expect("every item ran to completion"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn keeps_order_and_the_bound() {
        let live = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<u64> = (0..50).collect();
        let out = run(items, 4, |i| {
            let (live, peak) = (&live, &peak);
            async move {
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Later items finish first: order must still be the input's.
                tokio::time::sleep(Duration::from_millis(50 - i)).await;
                live.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn nothing_to_do_is_done_at_once() {
        let out: Vec<u8> = run(Vec::<u8>::new(), 8, |x| async move { x }).await;
        assert!(out.is_empty());
    }
}
