//! The control socket against a stand-in agent: protocol, peer check, socket file, limits.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::server::{MAX_CONNECTIONS, REQUEST_TIMEOUT};
use super::*;
use crate::health::Freshness;

/// A stand-in agent: two outputs; rotating bumps the serial.
struct Fake {
    serials: Mutex<Vec<(String, u32)>>,
}

impl Fake {
    fn new() -> Self {
        Self {
            serials: Mutex::new(vec![("tls".into(), 1), ("config".into(), 0)]),
        }
    }
    fn view(name: &str, serial: u32) -> OutputView {
        OutputView {
            name: name.to_owned(),
            kind: if serial > 0 {
                "certificate"
            } else {
                "template"
            }
            .to_owned(),
            state: Freshness::Fresh,
            serial: (serial > 0).then(|| format!("{serial:02x}")),
            not_after: None,
            last_render: None,
            last_change: None,
            next_due: None,
            renders: u64::from(serial),
            changes: u64::from(serial),
            render_errors: 0,
            last_error: None,
            last_reload_ok: None,
            repairs: 0,
        }
    }
}

impl StatusSource for Fake {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            identity: "billing".into(),
            taken_at: OffsetDateTime::UNIX_EPOCH,
            started_at: None,
            auth: Default::default(),
            outputs: self
                .serials
                .lock()
                .unwrap()
                .iter()
                .map(|(n, s)| Self::view(n, *s))
                .collect(),
            requests_total: 3,
            auth_errors_total: 0,
            databases: Vec::new(),
            clock_skew_seconds: None,
            server: None,
        }
    }
}

impl Controller for Fake {
    async fn rotate(&self, output: &str) -> Result<OutputView, RotateError> {
        let mut serials = self.serials.lock().unwrap();
        let known = serials.iter().map(|(n, _)| n.clone()).collect();
        let Some((name, serial)) = serials.iter_mut().find(|(n, _)| n == output) else {
            return Err(RotateError::UnknownOutput {
                name: output.to_owned(),
                known,
            });
        };
        if *serial > 0 {
            *serial += 1;
        }
        Ok(Self::view(name, *serial))
    }
}

#[tokio::test]
async fn status_and_rotate_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join(SOCKET_FILE);
    let server = ControlServer::start(&path, Fake::new()).await.unwrap();
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        dir_mode & 0o777,
        0o700,
        "a missing state dir is created private"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let s = status(&path).await.unwrap();
    assert_eq!(s.identity, "billing");
    assert_eq!(s.outputs[0].serial.as_deref(), Some("01"));

    let v = rotate(&path, "tls").await.unwrap();
    assert_eq!(v.serial.as_deref(), Some("02"));
    let s = status(&path).await.unwrap();
    assert_eq!(s.outputs[0].serial.as_deref(), Some("02"));
    assert_eq!(
        s.outputs[1].serial, None,
        "the other output was not touched"
    );

    let err = rotate(&path, "tsl").await.unwrap_err();
    assert!(
        matches!(&err, ControlError::Refused { message } if message.contains("tls, config")),
        "{err}"
    );

    drop(server);
    assert!(!path.exists(), "the socket is removed on shutdown");
    let err = status(&path).await.unwrap_err();
    assert!(err.is_not_running(), "{err:?}");
}

#[tokio::test]
async fn several_requests_on_one_connection_and_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SOCKET_FILE);
    let _server = ControlServer::start(&path, Fake::new()).await.unwrap();
    let stream = UnixStream::connect(&path).await.unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"op\":\"status\"}\n\n{\"op\":\"launch\"}\nnot json\n{\"op\":\"rotate\",\"output\":\"tls\",\"extra\":1}\n")
        .await
        .unwrap();
    write.shutdown().await.unwrap();
    let mut lines = BufReader::new(read).lines();
    let mut replies = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        replies.push(serde_json::from_str::<Reply>(&l).unwrap());
    }
    assert_eq!(replies.len(), 4, "{replies:?}");
    assert!(replies[0].ok && replies[0].status.is_some());
    for r in &replies[1..] {
        assert!(!r.ok);
        assert!(r.error.as_deref().unwrap().contains("bad request"), "{r:?}");
    }
}

#[tokio::test]
async fn a_peer_of_another_uid_is_refused_before_anything_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SOCKET_FILE);
    // Allow only a uid that is certainly not ours: we are now "another user".
    let me = nix::unistd::geteuid().as_raw();
    let other = if me == 4_000_000 {
        4_000_001
    } else {
        4_000_000
    };
    let fake = Arc::new(Fake::new());
    let _server = ControlServer::start_allowing(&path, FakeRef(Arc::clone(&fake)), vec![other])
        .await
        .unwrap();
    let err = rotate(&path, "tls").await.unwrap_err();
    assert!(
        matches!(&err, ControlError::Refused { message } if message.contains(&format!("uid {me}"))),
        "{err:?}"
    );
    assert_eq!(
        fake.snapshot().outputs[0].serial.as_deref(),
        Some("01"),
        "a refused rotate changed nothing"
    );
}

struct FakeRef(Arc<Fake>);
impl StatusSource for FakeRef {
    fn snapshot(&self) -> Snapshot {
        self.0.snapshot()
    }
}
impl Controller for FakeRef {
    async fn rotate(&self, output: &str) -> Result<OutputView, RotateError> {
        self.0.rotate(output).await
    }
}

#[tokio::test]
async fn a_live_socket_is_not_stolen_and_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SOCKET_FILE);
    let mut first = ControlServer::start(&path, Fake::new()).await.unwrap();
    let err = ControlServer::start(&path, Fake::new()).await.unwrap_err();
    assert!(matches!(err, ControlError::AlreadyRunning { .. }), "{err}");
    // A crashed agent leaves its socket file behind: simulate by leaking the file.
    first.task.abort();
    let _ = (&mut first.task).await;
    std::mem::forget(first);
    assert!(path.exists());
    let second = ControlServer::start(&path, Fake::new()).await.unwrap();
    assert!(status(&path).await.is_ok());
    drop(second);

    std::fs::write(&path, b"not a socket").unwrap();
    let err = ControlServer::start(&path, Fake::new()).await.unwrap_err();
    assert!(matches!(err, ControlError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out = format!("{out}: {s}");
        next = s.source();
    }
    out
}

/// The socket is bound and chmodded by path, so its directory must be one nobody else can
/// change: a `state` that is a symlink, or that another user owns or can write, is refused
/// and nothing is created there (such a user could swap the fresh socket for a symlink before
/// the chmod follows it).
#[tokio::test]
async fn a_socket_directory_others_control_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o777)).unwrap();
    let identity = dir.path().join("billing");
    std::fs::create_dir(&identity).unwrap();
    std::os::unix::fs::symlink(&elsewhere, identity.join("state")).unwrap();
    let path = identity.join("state").join(SOCKET_FILE);
    let err = ControlServer::start(&path, Fake::new()).await.unwrap_err();
    assert!(err.to_string().contains("secure the directory of"), "{err}");
    assert!(chain(&err).contains("state is a symbolic link"), "{err:?}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // A real directory, world-writable (a careless chmod).
    std::fs::remove_file(identity.join("state")).unwrap();
    std::fs::create_dir(identity.join("state")).unwrap();
    std::fs::set_permissions(
        identity.join("state"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let err = ControlServer::start(&path, Fake::new()).await.unwrap_err();
    assert!(chain(&err).contains("writable by other users"), "{err:?}");
    assert!(!path.exists());

    // Owned by another user.
    if nix::unistd::geteuid().is_root() {
        std::fs::set_permissions(
            identity.join("state"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::chown(identity.join("state"), Some(65534), None).unwrap();
        let err = ControlServer::start(&path, Fake::new()).await.unwrap_err();
        assert!(chain(&err).contains("owned by uid 65534"), "{err:?}");
        assert!(!path.exists());
    }

    // Put right, it starts.
    std::fs::remove_dir(identity.join("state")).unwrap();
    let server = ControlServer::start(&path, Fake::new()).await.unwrap();
    assert!(status(&path).await.is_ok());
    drop(server);
}

#[test]
fn the_text_status_names_every_output_and_its_state() {
    let text = describe(&Fake::new().snapshot());
    assert!(text.starts_with("billing: ok (3 requests"), "{text}");
    assert!(
        text.contains("  tls (certificate): fresh, serial 01"),
        "{text}"
    );
    assert!(text.contains("  config (template): fresh"), "{text}");
}

#[test]
fn the_wire_format_is_the_documented_one() {
    assert_eq!(
        serde_json::to_string(&Request::Status).unwrap(),
        r#"{"op":"status"}"#
    );
    assert_eq!(
        serde_json::to_string(&Request::Rotate {
            output: "tls".into()
        })
        .unwrap(),
        r#"{"op":"rotate","output":"tls"}"#
    );
    assert_eq!(
        serde_json::to_string(&Reply::error("x")).unwrap(),
        r#"{"ok":false,"error":"x"}"#
    );
}

#[tokio::test]
async fn idle_and_slow_clients_do_not_hold_up_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SOCKET_FILE);
    let _server = ControlServer::start(&path, Fake::new()).await.unwrap();
    // More idle connections than there are slots, and one that sends a byte at a time.
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS + 8 {
        idle.push(UnixStream::connect(&path).await.unwrap());
    }
    let slow_path = path.clone();
    let slow = tokio::spawn(async move {
        let mut s = UnixStream::connect(&slow_path).await.unwrap();
        let start = Instant::now();
        for b in b"{\"op\":\"status\"".iter().cycle() {
            if s.write_all(&[*b]).await.is_err() || start.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        start.elapsed()
    });
    for _ in 0..3 {
        let start = Instant::now();
        let s = status(&path).await.unwrap();
        assert_eq!(s.identity, "billing");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "status took {:?}",
            start.elapsed()
        );
    }
    // An idle connection is closed once its request time is up.
    let mut first = idle.pop().unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(REQUEST_TIMEOUT * 3, first.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "idle connection still open: {closed:?}"
    );
    let slow_for = slow.await.unwrap();
    assert!(
        slow_for < REQUEST_TIMEOUT + Duration::from_secs(2),
        "the slow sender was cut off after {slow_for:?}"
    );
}
