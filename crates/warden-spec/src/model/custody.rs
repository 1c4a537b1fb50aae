//! Custody: who holds an environment's unseal shares. Each custodian has an age recipient;
//! the ceremony (`warden custody init`) encrypts one share to each, and `threshold` of them
//! unseal the environment.

use super::Slug;

/// An environment's custodians and threshold (`[environments.<env>.custody]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Custody {
    /// Shares needed to unseal (at least 2 when there are several custodians).
    pub threshold: u8,
    /// One share each, in the order declared (share 1 to the first).
    pub custodians: Vec<CustodianSpec>,
}

/// One custodian (`[[environments.<env>.custody.custodians]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodianSpec {
    /// Name (a slug: it names the share file, `<name>.<env>.share.age`).
    pub name: Slug,
    /// Age X25519 recipient (`age1…`), checked: bech32 with a valid checksum and 32 bytes.
    pub recipient: String,
}
