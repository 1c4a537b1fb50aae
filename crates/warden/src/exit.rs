//! Stable exit codes. Scripts may rely on these; change them only with a changelog entry.
//! Documented in `docs/cli.md`.

/// Success.
#[allow(dead_code)]
pub(crate) const SUCCESS: u8 = 0;
/// The command failed (bad input, unreachable server, I/O error, ...). Nothing was changed
/// unless the message says otherwise.
pub(crate) const FAILURE: u8 = 1;
/// Usage error: clap exits with 2 for unknown flags and missing arguments.
#[allow(dead_code)]
pub(crate) const USAGE: u8 = 2;
/// A check ran and found problems: `ca verify` on a broken chain, `lab status` with an
/// environment down.
pub(crate) const CHECK_FAILED: u8 = 3;
/// `reveal open` on a wrapping token that was already used or has expired: a reveal-once
/// credential is shown exactly once.
pub(crate) const REVEAL_SPENT: u8 = 4;
/// `agent status`: degraded — every output and database source has usable material, but
/// something is pending or stale (a refresh failing); nothing has failed.
pub(crate) const DEGRADED: u8 = 5;
/// `posture`: the worst status is `due` (then `unknown`, `stale`, `expired`, `revoked`: 11–14).
pub(crate) const POSTURE_DUE: u8 = 10;
