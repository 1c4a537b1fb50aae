//! Custody of an environment's keys to the kingdom: its Shamir unseal shares (or, under an
//! auto-seal, its recovery keys) and its initial root token, held by named custodians and never
//! by a file in clear.
//!
//! # Where to start
//! - [`Custodian`] (a name and an age recipient) and [`IdentityFile`] (a custodian's age
//!   identity, owner-only); [`generate_identity`] for labs and tests.
//! - [`ceremony::init`]: `sys/init` with one share per custodian, each sealed to its custodian
//!   alone ([`envelope`]: the share is bound to environment, custodian, index and
//!   [`fingerprint`]); the root token sealed to all of them; the [`Ledger`] written to the
//!   [`StateDir`]; under an auto-seal it initialises with recovery keys and the ledger says so
//!   ([`ShareKind`]). [`ceremony::record_init`] records an initialisation done elsewhere.
//!   [`ceremony::rekey`] replaces shares and custodians through OpenBao's share
//!   rotation.
//! - [`unseal::unseal`]: one custodian's share, checked against the ledger, submitted to every
//!   node, refused (before anything is sent) when it is wrong, foreign, unknown or repeated in
//!   the same unseal round; [`unseal::verify`] lets a custodian prove their share.
//! - [`root`]: the bootstrap root token opened in memory, and a root token generated from a
//!   quorum of shares for break-glass (what is done with it: `warden_registry::break_glass`).
//! - [`ca_backup`]: the offline root CA's directory in one archive encrypted to custodians,
//!   and its passphrase split among them ([`ca_backup::make`], [`ca_backup::open`],
//!   [`ca_backup::combine`]).
//! - [`Ledger::publish`] puts the ledger's SHA-256 in the environment's registry.
//!
//! Why age rather than OpenBao's `pgp_keys`: docs/adr/0008-custody-with-age.md.

mod error;
mod identity;
mod ledger;

pub mod ca_backup;
pub mod ceremony;
pub mod envelope;
pub mod root;
pub mod unseal;

pub use envelope::fingerprint;
pub use error::Error;
pub use identity::{Custodian, GeneratedIdentity, IdentityFile, generate_identity};
pub use ledger::{Entry, Ledger, PublishedDigest, ShareKind, StateDir};
pub use unseal::Node;
