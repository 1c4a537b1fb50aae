//! Polling for something a background process does (a file delivered, a lease renewed), with a
//! limit, so a test that waits in vain fails with what it waited for instead of hanging.

use std::path::Path;
use std::time::{Duration, Instant};

/// How often [`wait_for`] looks, unless told otherwise with [`Poll::every`].
const EVERY: Duration = Duration::from_millis(100);

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit` naming `what`.
/// Blocks the thread: for a check that needs the async runtime to make progress, use
/// [`wait_for_async`].
#[track_caller]
pub fn wait_for<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    Poll::new(limit).until(what, check)
}

/// [`wait_for`], sleeping on the tokio timer between checks, so tasks of the same runtime (an
/// in-process agent) run meanwhile.
pub async fn wait_for_async<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    Poll::new(limit).until_async(what, check).await
}

/// A wait with its limit, interval and what to show when it times out.
#[derive(Debug, Clone, Copy)]
pub struct Poll<'a> {
    limit: Duration,
    every: Duration,
    log: Option<&'a Path>,
}

impl<'a> Poll<'a> {
    /// Up to `limit`, every 100 ms.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            every: EVERY,
            log: None,
        }
    }

    /// Checks every `every` instead (a check that is expensive, like a database login).
    pub fn every(self, every: Duration) -> Self {
        Self { every, ..self }
    }

    /// On timeout, the message includes the file at `log` (an agent's log).
    pub fn showing_log(self, log: &'a Path) -> Self {
        Self {
            log: Some(log),
            ..self
        }
    }

    /// Polls `check` until it returns `Some`; panics after the limit.
    #[track_caller]
    pub fn until<T>(self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            self.give_up_after(start, what);
            std::thread::sleep(self.every);
        }
    }

    /// Polls `check` until it returns `true`; panics after the limit.
    #[track_caller]
    pub fn until_true(self, what: &str, mut check: impl FnMut() -> bool) {
        self.until(what, || check().then_some(()));
    }

    /// [`until`](Self::until) on the tokio timer.
    pub async fn until_async<T>(self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            self.give_up_after(start, what);
            tokio::time::sleep(self.every).await;
        }
    }

    #[track_caller]
    fn give_up_after(&self, start: Instant, what: &str) {
        if start.elapsed() < self.limit {
            return;
        }
        match self.log {
            Some(log) => panic!(
                "timed out after {:?} waiting for {what}; log {}:\n{}",
                self.limit,
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            ),
            None => panic!("timed out after {:?} waiting for {what}", self.limit),
        }
    }
}
