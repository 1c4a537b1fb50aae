//! The seal stanza of a node's server configuration.

/// How a node's root key is protected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Seal {
    /// Shamir shares held by custodians (no seal stanza).
    #[default]
    Shamir,
}

impl Seal {
    /// The HCL stanza for this seal; empty for Shamir.
    pub fn render(&self) -> String {
        match self {
            Seal::Shamir => String::new(),
        }
    }
}
