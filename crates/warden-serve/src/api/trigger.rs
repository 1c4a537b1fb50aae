//! `POST /v1/jobs/{job}/run`'s handle on the job loop: the API marks a job as asked and wakes
//! the loop, which checks that job at once instead of at its next tick, past its backoff
//! wait. It still runs only under a valid lease and only when due (purpose rules first): a
//! trigger never forces a rotation or a renewal the rules would not make.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Jobs asked to run now, shared by the API and one environment's job loop.
#[derive(Debug, Default)]
pub struct Trigger {
    asked: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Trigger {
    /// Asks for `job` to be checked now.
    pub fn ask(&self, job: &str) {
        self.asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(job.to_owned());
        self.wake.notify_one();
    }

    /// Whether `job` was asked for (and forgets the ask).
    pub(crate) fn take(&self, job: &str) -> bool {
        self.asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(job)
    }

    /// Resolves when a job is asked for (at once if one was asked since the last wake).
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }
}
