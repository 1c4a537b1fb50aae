//! Which process owns a listening port: the check that keeps secrets away from a stray server
//! holding a port we meant for our own. Linux only: it reads `/proc/net/tcp{,6}` and
//! `/proc/<pid>/fd`.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::TcpListener;

/// A port that was free on 127.0.0.1 a moment ago (the kernel picks it; we release it).
///
/// Another process can take it before we use it; that race is why every server started on it
/// is checked with [`wait_listening`](super::wait_listening) before anyone talks to it.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// `n` distinct free ports. All listeners are held until every port is chosen, so the kernel
/// cannot hand out the same port twice.
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Whether process `pid` owns a TCP socket in LISTEN state on local port `port` (any address,
/// IPv4 or IPv6, in our network namespace).
///
/// Reads `/proc/net/tcp{,6}` for the listening sockets' inodes, then looks for one of them among
/// `/proc/<pid>/fd/*` (`socket:[inode]`). A process that has exited yields `Ok(false)`;
/// another user's process yields `Err(PermissionDenied)` unless we are root.
pub fn pid_listens_on(pid: u32, port: u16) -> io::Result<bool> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        return Ok(false);
    }
    Ok(socket_inodes(pid)?.iter().any(|i| inodes.contains(i)))
}

/// The processes owning a listening socket on `port`, as far as `/proc` lets us see (all of
/// them as root; only our own user's otherwise). Used to name the culprit when a port is
/// taken; scanning every process is too slow for the polling loops.
pub fn port_owners(port: u16) -> io::Result<Vec<u32>> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut owners = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes vanish and other users' fds are unreadable: skip, don't fail.
        if let Ok(socks) = socket_inodes(pid)
            && socks.iter().any(|i| inodes.contains(i))
        {
            owners.push(pid);
        }
    }
    Ok(owners)
}

pub(super) fn listening_inodes(port: u16) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match fs::read_to_string(table) {
            Ok(text) => parse_listen_inodes(&text, port, &mut inodes),
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(inodes)
}

/// Parses a `/proc/net/tcp{,6}` table: `sl local_address rem_address st ... inode`, where the
/// local address is `HEXIP:HEXPORT` and state `0A` is LISTEN.
pub(super) fn parse_listen_inodes(table: &str, port: u16, out: &mut HashSet<u64>) {
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        if *state != "0A" {
            continue;
        }
        let Some((_, hex_port)) = local.rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(hex_port, 16) != Ok(port) {
            continue;
        }
        if let Ok(inode) = inode.parse::<u64>()
            && inode != 0
        {
            out.insert(inode);
        }
    }
}

/// The inodes of every socket process `pid` holds open. An exited process has none.
pub(super) fn socket_inodes(pid: u32) -> io::Result<Vec<u64>> {
    let dir = match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut inodes = Vec::new();
    for entry in dir {
        // An fd closed between readdir and readlink is simply not there any more.
        let Ok(entry) = entry else { continue };
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok())
        {
            inodes.push(inode);
        }
    }
    Ok(inodes)
}
