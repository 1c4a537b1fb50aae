//! End-to-end tests of the secret commands against a real lab provisioned by `warden apply`:
//!
//! * `secrets_cli` — `warden secret` (KV v2 versions, history, rollback; KV v1) and
//!   `warden transit`;
//! * `nodes_cli` — a spec listing its nodes: the CLI fails over from a dead one;
//! * `ci_cli` — a pipeline logs in with its OIDC token (`warden ci login`) and does exactly
//!   what its role allows.
//!
//! One binary because both apply the same platform spec (`support`); each test starts its own
//! lab, so they run side by side.

mod ci_cli;
mod nodes_cli;
mod secrets_cli;
mod support;

use warden_testkit::cli::Cli;

/// The binary under test.
pub(crate) const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));
