//! The server's clock: lease expiry is judged by OpenBao's `Date`, never by a replica's own
//! clock, so two replicas whose clocks disagree still agree on when a lease ends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use warden_bao::Client;

/// The server's time now, estimated from the last response's `Date` plus the time since it
/// arrived; the local clock before any response. `Date` has one-second resolution and is
/// truncated, so the estimate is at most about one second *behind* the server: a lease written
/// with it ends early rather than late, and a replica reading with it takes over late rather
/// than early. [`DATE_SLACK`] is that second.
pub fn server_now(client: &Client) -> SystemTime {
    client.server_now()
}

/// How far [`server_now`] may lag the server's real time.
pub const DATE_SLACK: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}
