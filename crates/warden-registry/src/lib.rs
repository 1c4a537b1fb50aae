//! The purpose registry at run time: what `warden apply` published, judged against
//! live state.
//!
//! - [`posture`]: every purpose's credentials with issue time, expiry, rotation due and a
//!   [`Status`](warden_spec::Status), read from OpenBao (KV metadata, transit key versions,
//!   AppRole secret-id metadata, domain certificates) and from what agents report they
//!   delivered (`warden/…/delivered/<identity>`, ADR 0036).
//! - [`reveal`]: reveal-once credentials behind single-use wrapping tokens.
//! - [`evidence`]: evidence packets signed with a transit key and verified offline.
//! - [`ca`]: every CA of an environment's chain with its cadence and live leaves, and the
//!   intermediate rotation (begin, import, activate, retire; ADR 0029).
//! - [`root_rollover`]: the online side of a root rollover — the re-signed intermediate
//!   imported beside the old one, made the default, the old root removed once every agent's
//!   trust file holds the new one (ADR 0030).
//! - [`break_glass`]: time-boxed tokens traded for a root token generated from custodians'
//!   shares; their records, shown in posture and evidence.

pub mod break_glass;
pub mod ca;
pub mod evidence;
pub mod posture;
pub mod reveal;
pub mod revoke;
pub mod root_rollover;
