//! Many requests over one client with a bound on how many are in flight, results in input
//! order. The bound protects the server (posture over 30,000 credentials must not open 30,000
//! requests at once) while keeping the one keep-alive client busy; the work stays on the
//! caller's task, so the futures may borrow (a spec, an environment) instead of cloning them.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Applies `f` to every item, at most `limit` futures at a time; results in input order.
///
/// Items are taken from `items` only as a slot frees up, so a lazy iterator is never drained
/// ahead of the work: what it makes lives from its start to its end, not for the whole run.
pub async fn run<I, T, F, Fut, R>(items: I, limit: usize, f: F) -> Vec<R>
where
    I: IntoIterator<Item = T>,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R>,
{
    let limit = limit.max(1);
    let mut pending = items.into_iter().enumerate();
    let mut out: Vec<Option<R>> = Vec::with_capacity(pending.size_hint().0);
    let mut exhausted = false;
    let mut running: Vec<(usize, Pin<Box<Fut>>)> = Vec::with_capacity(limit);
    std::future::poll_fn(|cx| {
        loop {
            while running.len() < limit && !exhausted {
                let Some((i, item)) = pending.next() else {
                    exhausted = true;
                    break;
                };
                out.push(None);
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
            if running.is_empty() && exhausted {
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
    async fn a_lazy_iterator_is_drawn_only_as_slots_free() {
        // Never more than `limit` items made and not yet finished: the iterator is not drained
        // ahead of the work (plan relies on it to keep 40,000 desired objects out of memory).
        let made = AtomicUsize::new(0);
        let finished = AtomicUsize::new(0);
        let ahead = AtomicUsize::new(0);
        let items = (0..40u64).inspect(|_| {
            let now = made.fetch_add(1, Ordering::SeqCst) + 1 - finished.load(Ordering::SeqCst);
            ahead.fetch_max(now, Ordering::SeqCst);
        });
        let out = run(items, 3, |i| {
            let finished = &finished;
            async move {
                tokio::time::sleep(Duration::from_millis(i % 5)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                i
            }
        })
        .await;
        assert_eq!(out, (0..40).collect::<Vec<_>>());
        assert_eq!(ahead.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn nothing_to_do_is_done_at_once() {
        let out: Vec<u8> = run(Vec::<u8>::new(), 8, |x| async move { x }).await;
        assert!(out.is_empty());
    }
}
