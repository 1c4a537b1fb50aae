//! [`LoopbackDns`]: a DNS responder on a free loopback UDP port that answers `A` queries for
//! the names it is given with the loopback addresses it is given, and nothing else. OpenBao's
//! ACME validator resolves the identifier before it connects to port 80 (`config/acme`'s
//! `dns_resolver`, `<ip>:<port>`), so a test points that at this server and the validator
//! reaches Warden's challenge server on a loopback address of the test's own — no
//! `/etc/hosts`, no fixed port shared between tests (each test picks its own `127.x.y.z`).
//!
//! Only what Go's resolver sends is handled: one question, class IN; `A` for a known name
//! gets one record, any other type of a known name an empty NOERROR answer, an unknown name
//! NXDOMAIN.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A loopback DNS responder, stopped when dropped.
pub struct LoopbackDns {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl LoopbackDns {
    /// Starts answering `names` (lower-case, no trailing dot) with their addresses.
    pub async fn start(names: &[(&str, Ipv4Addr)]) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind DNS socket");
        let addr = socket.local_addr().expect("DNS address");
        let table: Arc<HashMap<String, Ipv4Addr>> = Arc::new(
            names
                .iter()
                .map(|(n, a)| (n.to_ascii_lowercase(), *a))
                .collect(),
        );
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                if let Some(reply) = answer(&buf[..n], &table) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        Self { addr, task }
    }

    /// `127.0.0.1:<port>`, what `config/acme`'s `dns_resolver` takes.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LoopbackDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A random loopback address other than 127.0.0.1 (`127.a.b.c`, none of them 0 or 255), for a
/// test's own port 80.
pub fn random_loopback() -> Ipv4Addr {
    let mut b = [0u8; 3];
    let _ = std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("urandom"),
        &mut b,
    );
    let pick = |x: u8| 1 + x % 254;
    Ipv4Addr::new(127, pick(b[0]), pick(b[1]), pick(b[2]))
}

/// The reply to one query, or `None` for what is not a query we can parse.
fn answer(q: &[u8], table: &HashMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: labels, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(
            std::str::from_utf8(q.get(i..i + len)?)
                .ok()?
                .to_ascii_lowercase(),
        );
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question_end = i + 4;
    q.get(i + 2..question_end)?;
    let name = labels.join(".");
    let found = table.get(&name);
    let mut r = Vec::with_capacity(question_end + 16);
    r.extend_from_slice(&q[0..2]); // id
    // QR, opcode 0, AA, RD copied; RA; RCODE 0 or 3 (NXDOMAIN).
    r.push(0x84 | (q[2] & 0x01));
    r.push(0x80 | if found.is_some() { 0 } else { 3 });
    r.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    let answers: u16 = u16::from(found.is_some() && qtype == 1);
    r.extend_from_slice(&answers.to_be_bytes()); // ANCOUNT
    r.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT (the query's EDNS record is dropped)
    r.extend_from_slice(&q[12..question_end]);
    if let (Some(ip), 1) = (found, qtype) {
        r.extend_from_slice(&[0xc0, 0x0c]); // the name, by pointer to the question
        r.extend_from_slice(&1u16.to_be_bytes()); // A
        r.extend_from_slice(&1u16.to_be_bytes()); // IN
        r.extend_from_slice(&5u32.to_be_bytes()); // TTL
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn known_names_get_their_address_others_nxdomain() {
        let table = HashMap::from([("shop.example.com".to_owned(), Ipv4Addr::new(127, 9, 8, 7))]);
        let r = answer(&query("Shop.Example.com", 1), &table).unwrap();
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[127, 9, 8, 7]);
        let aaaa = answer(&query("shop.example.com", 28), &table).unwrap();
        assert_eq!((aaaa[3] & 0x0f, aaaa[7]), (0, 0), "NOERROR, no answer");
        let other = answer(&query("www.example.com", 1), &table).unwrap();
        assert_eq!(other[3] & 0x0f, 3, "NXDOMAIN");
        assert!(answer(&[0; 5], &table).is_none());
    }
}
