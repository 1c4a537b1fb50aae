//! End-to-end: the custody ceremony, `warden unseal` and break-glass through the real `warden`
//! binary against real OpenBao servers.
//!
//! - ceremony: 5 custodians, threshold 3, identities generated here, on an uninitialised server
//!   ([`BareBao`]); no share, root token or decrypted share anywhere on disk, in any output, in
//!   argv or environment (scanned for the bytes, hex and base64); each share opens only with its
//!   holder's identity; 2 shares leave the server sealed at 2/3, 3 unseal it; a wrong share,
//!   another environment's share, the same share twice, an unknown custodian and a foreign
//!   identity are each refused with a clear message and the progress unchanged.
//! - rekey: a new custodian set from the spec; the old shares stop matching, the new ones unseal.
//! - break-glass (on a lab, which ran the ceremony itself): a token that works, is visible in
//!   posture and evidence, and is refused after its TTL; the generated root token is revoked
//!   within the same command.
//! - recovery (on a static-sealed lab): the ledger records recovery keys, none in clear;
//!   `warden unseal` refuses them and changes nothing; break-glass takes them.

#![allow(clippy::print_stderr)] // figures (timings) go to the test log on purpose

mod break_glass;
mod ceremony;
mod recovery;
mod rekey;
mod support;
