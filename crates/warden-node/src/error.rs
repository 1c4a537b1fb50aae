//! What the generators refuse.

/// Why a node's configuration or unit cannot be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A setting would produce a file OpenBao or systemd rejects, or misreads (a newline in a
    /// unit value would start a new directive).
    #[error("{field} = {value:?} {reason}")]
    InvalidValue {
        /// The setting, as named in the rendered file.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The seal stanza cannot be rendered (`seal.rs`).
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    /// The spec's environment has no node of that name.
    #[error("environment {environment} has no node {node:?} (its nodes: {})", if known.is_empty() { "none declared".to_owned() } else { known.join(", ") })]
    UnknownNode {
        /// The environment.
        environment: String,
        /// The name asked for.
        node: String,
        /// The nodes the spec declares for it.
        known: Vec<String>,
    },
    /// Issuing a node's certificate failed (`tls.rs`).
    #[error("{environment}: could not {what}: {source}")]
    Pki {
        /// The environment.
        environment: String,
        /// What was being done.
        what: &'static str,
        /// The PKI error.
        #[source]
        source: warden_pki::Error,
    },
    /// Writing a file failed (the previous file, if any, is intact).
    #[error(transparent)]
    Files(#[from] warden_files::Error),
}

impl NodeError {
    pub(crate) fn invalid(field: &'static str, value: &str, reason: &'static str) -> Self {
        Self::InvalidValue {
            field,
            value: value.to_owned(),
            reason,
        }
    }
}
