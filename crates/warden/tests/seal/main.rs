//! End-to-end: auto-unseal (issue 12, item 3) against real OpenBao servers.
//!
//! - `auto_unseal`: a transit-sealed environment (one node, then three) unseals itself after
//!   all its nodes stop and start, with no unseal share anywhere in the lab; with the
//!   seal-keeper down its nodes stay sealed (OpenBao refuses to start without its seal) and
//!   `lab status` says why; the seal token can use its own key and nothing else; the static
//!   seal unseals from its key file.
//! - `migrate`: Shamir → transit (one node) and Shamir → static (three nodes) on a live
//!   environment keep every secret (a few hundred KV entries with two versions each, counted
//!   and compared); refusals change nothing.
//! - `production`: `warden server config --seal` names the seal's files and a real server runs
//!   the result.

#![allow(clippy::print_stderr)] // the figures go to the test log on purpose

mod auto_unseal;
mod migrate;
mod production;
mod support;
