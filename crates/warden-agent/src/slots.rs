//! Connection slots for the agent's two local listeners: `/health` on loopback TCP and the
//! control socket.
//!
//! Both accept every connection at once and give it a task of its own here. The number of
//! live connections is capped, and at the cap the connection that has waited longest without
//! being answered is closed to make room for the new one. Turning the *newest* away at the cap
//! (what a semaphore in front of `accept` does) would let anyone who holds the cap's worth of
//! idle or half-sent connections keep every real request waiting; closing the *idlest* means a
//! real request, which sends its whole head at once, is always accepted and answered, while the
//! cap still bounds the descriptors and memory a flood of connections can cost.
//!
//! A connection being answered (the control socket's `rotate` can take a minute) is *busy* and
//! is never closed to make room; when every slot is busy the new connection is dropped.
//!
//! Slots do not time anything out: each listener bounds its own connections' reads, so a slot
//! is freed within seconds even when nobody else needs it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::AbortHandle;
use tokio::time::Instant;

/// The live connections of one listener.
#[derive(Debug)]
pub(crate) struct Slots {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    live: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// When the connection was accepted or last finished answering a request.
    idle_since: Instant,
    /// Requests being answered on it now.
    busy: u32,
    /// Ends the connection's task (and so closes it); set right after the spawn.
    abort: Option<AbortHandle>,
}

impl Slots {
    /// Room for `cap` connections at once.
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves only counters behind; they stay usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one connection's task in a slot, closing the longest-idle connection first when
    /// every slot is taken. `make` gets the connection's [`Activity`] (to mark it busy).
    /// Returns `false`, and runs nothing, when every slot is busy.
    pub(crate) fn spawn<F>(self: &Arc<Self>, make: impl FnOnce(Activity) -> F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(id) = self.admit() else {
            return false;
        };
        let activity = Activity {
            slots: Arc::clone(self),
            id,
        };
        let release = Release {
            slots: Arc::clone(self),
            id,
        };
        let task = make(activity);
        let handle = tokio::spawn(async move {
            let _release = release;
            task.await;
        });
        // The task may already have finished (and released its slot) on another worker.
        if let Some(entry) = self.lock().live.get_mut(&id) {
            entry.abort = Some(handle.abort_handle());
        }
        true
    }

    fn admit(&self) -> Option<u64> {
        let mut inner = self.lock();
        let mut evicted = None;
        if inner.live.len() >= self.cap {
            let idlest = inner
                .live
                .iter()
                .filter(|(_, e)| e.busy == 0 && e.abort.is_some())
                .min_by_key(|(id, e)| (e.idle_since, **id))
                .map(|(id, _)| *id)?;
            evicted = inner.live.remove(&idlest).and_then(|e| e.abort);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.live.insert(
            id,
            Entry {
                idle_since: Instant::now(),
                busy: 0,
                abort: None,
            },
        );
        drop(inner);
        // Aborted outside the lock: a task dropped on the spot frees its slot, which locks.
        if let Some(abort) = evicted {
            abort.abort();
            tracing::debug!(
                cap = self.cap,
                "closed the longest-idle connection to make room for a new one"
            );
        }
        Some(id)
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.lock().live.len()
    }
}

/// Closes every connection of a listener when dropped. Its accept loop holds it, so stopping
/// the listener (dropping its task) closes the connections too, rather than leaving them to
/// their timeouts.
#[derive(Debug)]
pub(crate) struct CloseAll(pub(crate) Arc<Slots>);

impl Drop for CloseAll {
    fn drop(&mut self) {
        let aborts: Vec<AbortHandle> = self
            .0
            .lock()
            .live
            .values()
            .filter_map(|e| e.abort.clone())
            .collect();
        // Outside the lock, as in `admit`.
        for abort in aborts {
            abort.abort();
        }
    }
}

/// Frees a connection's slot when its task ends, however it ends.
struct Release {
    slots: Arc<Slots>,
    id: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.slots.lock().live.remove(&self.id);
    }
}

/// A connection's handle on its own slot.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    slots: Arc<Slots>,
    id: u64,
}

impl Activity {
    /// Marks the connection busy (not to be closed for room) until the guard is dropped.
    pub(crate) fn busy(&self) -> Busy {
        if let Some(entry) = self.slots.lock().live.get_mut(&self.id) {
            entry.busy += 1;
        }
        Busy {
            activity: self.clone(),
        }
    }
}

/// See [`Activity::busy`].
#[derive(Debug)]
pub(crate) struct Busy {
    activity: Activity,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(entry) = self.activity.slots.lock().live.get_mut(&self.activity.id) {
            entry.busy = entry.busy.saturating_sub(1);
            entry.idle_since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Spawns a connection that stays open until closed; counts how many ended.
    fn idle(slots: &Arc<Slots>, ended: &Arc<AtomicUsize>) -> bool {
        struct Count(Arc<AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        // Counted when the task's future is dropped, also if it never ran.
        let count = Count(Arc::clone(ended));
        slots.spawn(move |_| async move {
            let _count = count;
            std::future::pending::<()>().await;
        })
    }

    /// Lets the runtime run what was spawned and drop what was aborted.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn at_the_cap_the_idlest_connection_makes_room() {
        let slots = Slots::new(3);
        let ended = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            assert!(idle(&slots, &ended));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(slots.live(), 3);
        // A fourth: the first (idlest) is closed, the count stays at the cap.
        assert!(idle(&slots, &ended));
        settle().await;
        assert_eq!(slots.live(), 3);
        assert_eq!(ended.load(Ordering::SeqCst), 1);
        // 100 more never exceed it.
        for _ in 0..100 {
            assert!(idle(&slots, &ended));
        }
        settle().await;
        assert_eq!(slots.live(), 3);
        assert_eq!(ended.load(Ordering::SeqCst), 101);
        drop(CloseAll(slots));
        settle().await;
        assert_eq!(
            ended.load(Ordering::SeqCst),
            104,
            "the rest close with the listener"
        );
    }

    #[tokio::test]
    async fn a_busy_connection_is_never_closed_for_room() {
        let slots = Slots::new(2);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        assert!(slots.spawn(move |activity| async move {
            let _busy = activity.busy();
            let _ = rx.await;
        }));
        tokio::task::yield_now().await;
        let ended = Arc::new(AtomicUsize::new(0));
        assert!(idle(&slots, &ended));
        assert!(idle(&slots, &ended), "the idle one makes room");
        settle().await;
        assert_eq!(ended.load(Ordering::SeqCst), 1);
        assert_eq!(slots.live(), 2, "the busy one is still there");
        let full = Slots::new(1);
        let (_hold, rx) = tokio::sync::oneshot::channel::<()>();
        assert!(full.spawn(move |activity| async move {
            let _busy = activity.busy();
            let _ = rx.await;
        }));
        tokio::task::yield_now().await;
        assert!(!idle(&full, &ended), "every slot busy: turned away");
        drop(tx);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(slots.live(), 1, "a finished connection frees its slot");
    }
}
