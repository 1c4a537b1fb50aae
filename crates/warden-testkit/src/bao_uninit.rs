//! A real `bao server` left uninitialised: a node that answers but can serve nothing.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use warden_lab::process;

use crate::Error;
use crate::bao::{ServerProcess, checked_bao_binary};

const STARTUP: Duration = Duration::from_secs(60);
const WHAT: &str = "bao server (uninitialised)";

/// A running `bao server` with in-memory storage and a plain-HTTP listener on
/// `127.0.0.1:<free port>` that nobody initialises: `sys/health` says not initialised, and
/// every other request is refused as sealed. Killed, and its directory removed, on drop.
///
/// Plain HTTP because there is nothing here to protect (no keys, no data) and failover tests
/// need a node whose answers, not whose handshake, say it cannot serve.
pub struct BaoUninit {
    server: ServerProcess,
    addr: String,
    port: u16,
    // Dropped after `server`.
    _dir: TempDir,
}

impl BaoUninit {
    /// Starts it; returns once `/proc` shows our process owns the port. Panics if it cannot.
    pub async fn start() -> Self {
        Self::try_start()
            .await
            .unwrap_or_else(|e| panic!("BaoUninit::start failed: {e}"))
    }

    /// [`start`](Self::start), returning the error instead of panicking.
    pub async fn try_start() -> Result<Self, Error> {
        let bao_bin = checked_bao_binary().await?;
        let dir = tempfile::Builder::new()
            .prefix("warden-bao-uninit-")
            .tempdir()
            .map_err(|source| Error::Io {
                what: "create a temporary directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let port = process::free_port().map_err(|source| Error::Io {
            what: "find a free port on",
            path: PathBuf::from("127.0.0.1"),
            source,
        })?;
        let config = dir.path().join("server.hcl");
        // One node, nothing to join: no cluster listener (it would take port + 1).
        let text = format!(
            "storage \"inmem\" {{}}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\ndisable_clustering = true\n"
        );
        fs::write(&config, text).map_err(|source| Error::Io {
            what: "write",
            path: config.clone(),
            source,
        })?;
        let mut cmd = Command::new(&bao_bin);
        cmd.arg("server")
            .arg(format!("-config={}", config.display()))
            .env_clear()
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: bao_bin.clone(),
            source,
        })?;
        let server = ServerProcess(child);
        process::wait_listening(server.pid(), port, STARTUP, None)
            .await
            .map_err(|source| Error::NotListening {
                what: WHAT,
                source,
                output: String::new(),
            })?;
        Ok(Self {
            server,
            addr: format!("http://127.0.0.1:{port}"),
            port,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The API port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}
