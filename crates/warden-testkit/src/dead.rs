//! An address on loopback that nobody listens on, for failover and unreachable-node tests.

/// `{scheme}://127.0.0.1:PORT` where PORT is one the kernel just handed out and that was closed
/// again: a connection is refused at once, without a timeout. Panics if no port is free.
pub fn dead_address(scheme: &str) -> String {
    let port = crate::process::free_port().expect("a free port");
    format!("{scheme}://127.0.0.1:{port}")
}
