//! The harness itself, against the real OpenBao and PostgreSQL.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use warden_testkit::process::{self, ProcessError};
use warden_testkit::{BaoDev, Postgres, http};

fn gone(pid: u32) -> bool {
    !process::is_alive(pid) && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn two_dev_servers_in_parallel_get_their_own_ports_and_answer() {
    let (a, b) = tokio::join!(BaoDev::start(), BaoDev::start());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.pid(), b.pid());
    for bao in [&a, &b] {
        assert_eq!(bao.addr(), format!("http://127.0.0.1:{}", bao.port()));
        assert!(process::pid_listens_on(bao.pid(), bao.port()).unwrap());
        assert!(bao.ca_cert_path().is_none());
        let health = bao.health().await.unwrap();
        assert_eq!(health.status, 200, "{}", health.body);
        let json = health.json().unwrap();
        assert_eq!(json["initialized"], true);
        assert_eq!(json["sealed"], false);
        assert_eq!(json["version"], process::EXPECTED_BAO_VERSION);

        let me = http::get(
            &format!("{}/v1/auth/token/lookup-self", bao.addr()),
            None,
            Some(bao.root_token()),
        )
        .await
        .unwrap();
        assert_eq!(me.status, 200, "{}", me.body);
        assert_eq!(me.json().unwrap()["data"]["policies"][0], "root");
    }
    // Each server generated its own root token.
    let cross = http::get(
        &format!("{}/v1/auth/token/lookup-self", b.addr()),
        None,
        Some(a.root_token()),
    )
    .await
    .unwrap();
    assert_eq!(cross.status, 403, "{}", cross.body);
}

#[tokio::test]
async fn the_root_token_stays_out_of_argv_environment_files_and_debug() {
    let bao = BaoDev::start().await;
    let token = bao.root_token().expose_secret();
    assert!(token.starts_with("s."), "an OpenBao service token");

    let cmdline = fs::read(format!("/proc/{}/cmdline", bao.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(token));
    let environ = fs::read(format!("/proc/{}/environ", bao.pid())).unwrap();
    let names: Vec<String> = environ
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            String::from_utf8_lossy(v)
                .split('=')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        names.iter().all(|n| n == "PATH" || n == "HOME"),
        "the dev server sees only PATH and HOME, not {names:?}"
    );

    assert!(!bao.temp_dir().join("home/.vault-token").exists());
    for file in files_under(bao.temp_dir()) {
        let content = fs::read(&file).unwrap();
        assert!(
            !String::from_utf8_lossy(&content).contains(token),
            "{} holds the root token",
            file.display()
        );
    }
    assert!(!format!("{bao:?}").contains(token));
    assert!(format!("{bao:?}").contains("root_token: \"...\""));
    let tail = bao.output_tail(1000);
    assert!(tail.contains("Root Token: <redacted>"), "{tail}");
    assert!(!tail.contains(token));
}

#[tokio::test]
async fn dropping_a_dev_server_kills_it_and_removes_its_files() {
    let bao = BaoDev::start().await;
    let (pid, port, dir) = (bao.pid(), bao.port(), bao.temp_dir().to_path_buf());
    assert!(process::is_alive(pid));
    drop(bao);
    assert!(gone(pid), "the server process is gone, not even a zombie");
    assert!(!process::pid_listens_on(pid, port).unwrap());
    assert!(!dir.exists());
}

#[test]
fn a_panicking_test_leaves_no_server_behind() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let bao = BaoDev::start().await;
                tx.send(bao.pid()).unwrap();
                panic!("a test failing while its server runs (expected in this test)");
            })
    })
    .join();
    assert!(outcome.is_err(), "the inner test panicked");
    let pid = rx.recv().unwrap();
    assert!(gone(pid), "unwinding killed and reaped server {pid}");
}

#[tokio::test]
async fn a_tls_dev_server_answers_over_https_with_its_own_ca_only() {
    let bao = BaoDev::start_tls().await;
    assert_eq!(bao.addr(), format!("https://127.0.0.1:{}", bao.port()));
    let ca = bao.ca_cert_path().unwrap();
    assert!(
        fs::read_to_string(ca)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    let health = bao.health().await.unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json().unwrap()["sealed"], false);

    // The server's own leaf is not a CA: trusting it instead of the CA must fail verification.
    let leaf = ca.with_file_name("vault-cert.pem");
    let url = format!("{}/v1/sys/health", bao.addr());
    let err = http::get(&url, Some(&leaf), None).await.unwrap_err();
    assert!(matches!(err, warden_testkit::Error::Http { .. }), "{err:?}");
    // Plain HTTP to the TLS port is answered with a 400, never served.
    let plain = http::get(
        &format!("http://127.0.0.1:{}/v1/sys/health", bao.port()),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(plain.status, 400, "{}", plain.body);
}

#[tokio::test]
async fn postgres_starts_serves_its_superuser_and_refuses_a_wrong_password() {
    let pg = Postgres::start().await;
    assert_eq!(pg.host(), "127.0.0.1");
    assert!(process::pid_listens_on(pg.pid(), pg.port()).unwrap());

    let url = pg.connection_url();
    let (client, connection) = tokio_postgres::connect(url.expose_secret(), NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let row = client.query_one("SELECT 1::int4 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    let listen: String = client
        .query_one("SHOW listen_addresses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listen, "127.0.0.1");
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, pg.superuser());
    drop(client);
    driver.await.unwrap().unwrap();

    let wrong = format!(
        "postgres://{}:not-the-password@127.0.0.1:{}/postgres",
        pg.superuser(),
        pg.port()
    );
    let Err(err) = tokio_postgres::connect(&wrong, NoTls).await else {
        panic!("a wrong password was accepted");
    };
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");

    // The password file initdb read is gone, and nothing else leaks the password.
    let password = pg.password().expose_secret();
    assert_eq!(password.len(), 64);
    assert!(!pg.data_dir().with_file_name("pwfile").exists());
    assert!(!format!("{pg:?}").contains(password));
    let cmdline = fs::read(format!("/proc/{}/cmdline", pg.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(password));
    if nix::unistd::Uid::effective().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        assert_eq!(
            fs::metadata(pg.data_dir()).unwrap().uid(),
            nobody.uid.as_raw(),
            "as root, PostgreSQL runs as nobody"
        );
    }

    let (pid, data_dir) = (pg.pid(), pg.data_dir().to_path_buf());
    drop(pg);
    assert!(!process::is_alive(pid), "the postmaster is stopped");
    assert!(!data_dir.exists(), "the cluster's files are removed");
}

#[tokio::test]
async fn the_ownership_check_refuses_a_port_held_by_a_stray_listener() {
    // A stray server (here: a listener of this test process) holds the port; the process we
    // "started" does not. Waiting for ours on that port must fail, and fast.
    let stray = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = stray.local_addr().unwrap().port();
    let mut ours = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let result = process::wait_listening(ours.id(), port, Duration::from_secs(10), None).await;
    let our_pid = ours.id();
    ours.kill().unwrap();
    ours.wait().unwrap();
    match result {
        Err(ProcessError::PortTakenByOther {
            port: p,
            pid,
            owner,
        }) => {
            assert_eq!(p, port);
            assert_eq!(pid, our_pid);
            assert_eq!(owner, Some(std::process::id()));
        }
        other => panic!("expected PortTakenByOther, got {other:?}"),
    }
    drop(stray);
}
