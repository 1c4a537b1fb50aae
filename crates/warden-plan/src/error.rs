//! Why planning or applying failed.

/// A plan or apply error. Each names the environment and the object or step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request to OpenBao failed.
    #[error("{env}: {what}: {source}")]
    Bao {
        /// Environment.
        env: String,
        /// The object or step.
        what: String,
        /// The client's error.
        #[source]
        source: warden_bao::Error,
    },
    /// A paged record (the ownership record) could not be read whole (ADR 0014).
    #[error("{env}: {what}: {source}")]
    Record {
        /// Environment.
        env: String,
        /// The record.
        what: String,
        /// What is wrong with its pages.
        #[source]
        source: warden_bao::paged::PagedError,
    },
    /// The environment is missing something Warden does not create (the PKI intermediate).
    #[error("{env}: {what}")]
    Prerequisite {
        /// Environment.
        env: String,
        /// What is missing and why it matters.
        what: String,
    },
    /// Some objects failed to apply; the others were applied and recorded.
    #[error("{env}: {} of {total} changes failed; first: {}", failures.len(), failures.first().map(|(id, e)| format!("{id}: {e}")).unwrap_or_default())]
    Partial {
        /// Environment.
        env: String,
        /// Changes attempted.
        total: usize,
        /// Object id and error text of each failure.
        failures: Vec<(String, String)>,
    },
    /// The plan has conflicts (objects Warden will not replace) or lint findings.
    #[error("{env}: the plan cannot be applied: {}", reasons.join("; "))]
    Refused {
        /// Environment.
        env: String,
        /// Why.
        reasons: Vec<String>,
    },
}
