//! An address on loopback that nobody listens on, for failover and unreachable-node tests.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;

use socket2::{Domain, Protocol, Socket, Type};

/// `{scheme}://127.0.0.1:PORT` where a connection is refused at once, without a timeout, for as
/// long as this value lives.
///
/// The port is held by a socket that is bound but never listens: the kernel answers a connect
/// with a reset, and no other process can take the port meanwhile (the socket does not set
/// `SO_REUSEADDR`, so even a server that does cannot bind it). Merely picking a free port and
/// closing it again is not enough: a server started by a parallel test can be handed the same
/// port a moment later, and the "dead" node then answers.
pub struct DeadAddress {
    url: String,
    _held: Socket,
}

impl DeadAddress {
    /// The address, `{scheme}://127.0.0.1:PORT`.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

impl Deref for DeadAddress {
    type Target = str;
    fn deref(&self) -> &str {
        &self.url
    }
}

impl AsRef<str> for DeadAddress {
    fn as_ref(&self) -> &str {
        &self.url
    }
}

impl fmt::Display for DeadAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl fmt::Debug for DeadAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DeadAddress").field(&self.url).finish()
    }
}

/// A [`DeadAddress`] for `scheme`. Panics if no port can be bound.
pub fn dead_address(scheme: &str) -> DeadAddress {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("a socket");
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("bind a loopback port");
    let port = socket
        .local_addr()
        .expect("the bound address")
        .as_socket()
        .expect("an inet address")
        .port();
    DeadAddress {
        url: format!("{scheme}://127.0.0.1:{port}"),
        _held: socket,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_port_refuses_connections_and_cannot_be_taken_while_held() {
        let dead = dead_address("http");
        let port: u16 = dead.rsplit(':').next().unwrap().parse().unwrap();
        let err = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        // std's listener sets SO_REUSEADDR, as Go's (and so OpenBao's) does: still refused.
        assert!(TcpListener::bind(("127.0.0.1", port)).is_err());
        drop(dead);
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
