//! `warden-pki`: the offline root CA and the certificate logic around it.
//!
//! The root key lives encrypted in a directory no OpenBao ever reads; it signs one intermediate
//! per environment (OpenBao's PKI mount, the lab's listener CA) and nothing else. Everything is
//! policy-first: from a CSR only the subject and the key are kept, every extension comes from
//! Warden's policy, serials are random, validity is explicit, and every signature is written to
//! an append-only ledger. Time is always passed in (`now`), never read from the clock, so expiry
//! behaviour is tested exactly.
//!
//! Where to start:
//!
//! | need                                          | API                                            |
//! |-----------------------------------------------|------------------------------------------------|
//! | create / open the root directory              | [`CaDir::init`], [`CaDir::open`]               |
//! | sign an intermediate from a CSR               | [`CaDir::sign_intermediate`], [`IntermediateRequest`] |
//! | read the issuance record                      | [`CaDir::ledger`], [`LedgerEntry`]             |
//! | back up / restore the directory (files only)  | [`CaDir::files`], [`CaFiles`], [`LedgerTip`]   |
//! | keys and CSRs                                 | [`generate_key`], [`make_csr`], [`GeneratedKey`] |
//! | issue leaves from an in-memory intermediate   | [`LocalIssuer`]                                |
//! | an environment's listener CA and node certificates | [`ListenerCa`], [`client_ca_bundle`]      |
//! | inspect certificates / check a chain          | [`parse_pem_bundle`], [`verify_chain`]         |
//! | can one environment issue another's names?    | [`check_isolation`], [`EnvChain`] (ADR 0013)   |
//! | split PEM bundles, read a common name            | [`pem_blocks`], [`first_certificate`], [`common_name`] |
//! | roll the root over (new root, cross certificates, re-signed intermediates) | [`CaDir::begin_rollover`], [`CaDir::resign_intermediate`], [`CaDir::finish_rollover`] (ADR 0030) |
//! | check a chain against any of several roots      | [`verify_chain_any`]                           |
//!
//! Modules: `root` (the CA directory), `backup` (its files in memory, checked and written back), `keystore` (the root key encrypted at rest), `rollover` (a new root beside the old one, ADR 0030), `sign` (an
//! intermediate from a CSR, policy first), `params` (serials, validity, names every signed
//! certificate shares), `ledger` (one line per signature), `keys` (key pairs and CSRs),
//! `issuer` (an in-memory intermediate issuing leaves), `listener` (an environment's listener CA
//! and the OpenBao listener's certificates), `inspect` and `chain` (reading
//! certificates, checking chains), `isolation` (environments' name constraints against each
//! other), `pem` (views of PEM text), `error`.
//!
//! No I/O happens outside the CA directory, and nothing is printed: errors are [`Error`].

mod backup;
mod chain;
mod clock;
mod error;
mod inspect;
mod isolation;
mod issuer;
mod keys;
mod keystore;
mod ledger;
mod listener;
mod params;
mod pem;
mod rollover;
mod root;
mod rotation;
mod sign;

pub use backup::{CaFiles, CaSummary, LedgerTip};
pub use chain::{ChainProblem, ChainReport, MAX_CHAIN_CERTS, verify_chain, verify_chain_any};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use inspect::{CertInfo, crl_serials, parse_pem_bundle, serial_key};
pub use isolation::{
    AcceptedUnconstrained, BundleIsolation, EnvChain, IsolationFinding, PKI_PROFILE,
    check_isolation,
};
pub use issuer::LocalIssuer;
pub use keys::{GeneratedKey, KeyAlgorithm, generate_key, make_csr};
pub use ledger::{LedgerEntry, OFFLINE};
pub use listener::{
    IssuedLeaf, LISTENER_CA_PROFILE, LISTENER_CA_UNCONSTRAINED, ListenerCa, client_ca_bundle,
};
pub use params::BACKDATE;
pub use pem::{common_name, first_certificate, pem_blocks, public_key_sha256, sha256_hex};
pub use rollover::{
    CROSS_CURRENT_BY_NEXT, CROSS_NEXT_BY_CURRENT, CROSS_PROFILE, NEXT_ROOT_CERT, NEXT_ROOT_KEY,
    ROLLOVER, RolloverBegun, RolloverRecord, RolloverState, rollover_state,
};
pub use root::{CaDir, CaMetadata, LEDGER, METADATA, ROOT_CERT, ROOT_KEY, RootOptions};
pub use rotation::{MountIntermediate, intermediate_bundle, issuer_of, mount_intermediates};
pub use sign::{IntermediateRequest, SignedIntermediate};
