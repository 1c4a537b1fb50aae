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
