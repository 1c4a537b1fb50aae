//! A real, *uninitialised* OpenBao server (raft storage, HTTPS on 127.0.0.1): for tests that
//! run the custody ceremony themselves, and for the client's failover tests, which need a node
//! that answers but can serve nothing. Unlike [`crate::BaoDev`] nothing is initialised or
//! unsealed, and unlike [`crate::LabEnv`] no lab ceremony has run.
//!
//! The listener allows the unauthenticated generate-root endpoints (break-glass needs them;
//! OpenBao 2.5+ turns them off by default) and does not ask for a client certificate: the
//! ceremony's endpoints are unauthenticated, and the tests are about custody, not mTLS.
//! Everything the server writes (its log, its audit log, its raft data) stays in
//! [`BareBao::dir`], so a test can scan it for secrets.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use secrecy::SecretString;
use tempfile::TempDir;
use time::OffsetDateTime;
use warden_lab::process;
use warden_pki::{CaDir, IntermediateRequest, KeyAlgorithm, LocalIssuer, RootOptions};

use crate::Error;
use crate::bao::{ServerProcess, checked_bao_binary, retry_port_race, server_dir};

const STARTUP: Duration = Duration::from_secs(60);

/// A running uninitialised server, killed (and its directory removed) on drop.
pub struct BareBao {
    server: ServerProcess,
    addr: String,
    port: u16,
    // Dropped after the process (fields drop in order): the directory outlives it.
    dir: TempDir,
}

impl BareBao {
    /// Starts one. Panics with the server's log if it cannot.
    pub async fn start() -> Self {
        match Self::try_start().await {
            Ok(s) => s,
            Err(e) => panic!("BareBao::start failed: {e}"),
        }
    }

    /// [`start`](Self::start), returning the error instead of panicking.
    pub async fn try_start() -> Result<Self, Error> {
        retry_port_race(Self::launch).await
    }

    async fn launch() -> Result<Self, Error> {
        let bao = checked_bao_binary().await?;
        let dir = server_dir("warden-bare-bao-")?;
        let root = dir.path();
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { what, path, source }
        };
        for d in ["data", "tls", "home"] {
            warden_files::ensure_private_dir(&root.join(d))?;
        }
        tls(root)?;
        let ports =
            process::free_ports(2).map_err(io("find free ports on", Path::new("127.0.0.1")))?;
        let (port, cluster) = (ports[0], ports[1]);
        let t = root.join("tls");
        let config = format!(
            r#"storage "raft" {{
  path    = "{data}"
  node_id = "bare-1"
}}
listener "tcp" {{
  address       = "127.0.0.1:{port}"
  tls_cert_file = "{cert}"
  tls_key_file  = "{key}"
  disable_unauthed_generate_root_endpoints = false
}}
audit "file" "file" {{
  options {{
    file_path = "{audit}"
  }}
}}
api_addr     = "https://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cluster}"
"#,
            data = root.join("data").display(),
            cert = t.join("server.pem").display(),
            key = t.join("server-key.pem").display(),
            audit = root.join("audit.log").display(),
        );
        let config_path = root.join("server.hcl");
        fs::write(&config_path, config).map_err(io("write", &config_path))?;
        let log_path = root.join("server.log");
        let log = fs::File::create(&log_path).map_err(io("create", &log_path))?;
        let log2 = log.try_clone().map_err(io("duplicate", &log_path))?;
        let mut cmd = Command::new(&bao);
        cmd.arg("server")
            .arg(format!("-config={}", config_path.display()))
            .env_clear()
            .env("HOME", root.join("home"))
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: bao.clone(),
            source,
        })?;
        let server = Self {
            server: ServerProcess(child),
            addr: format!("https://127.0.0.1:{port}"),
            port,
            dir,
        };
        // Ownership first: nothing is sent to the port before we know our process holds it.
        process::wait_listening(server.pid(), port, STARTUP, Some(&log_path))
            .await
            .map_err(|source| Error::NotListening {
                what: "bao server (bare)",
                source,
                output: fs::read_to_string(&log_path).unwrap_or_default(),
            })?;
        Ok(server)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The API port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root CA that signed the server certificate (PEM file).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// Everything the server owns: `data/`, `tls/`, `server.log`, `audit.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

/// A throwaway root, a listener CA it signs, and a server certificate for 127.0.0.1.
fn tls(root: &Path) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    let pass: SecretString = crate::random::hex_secret().map_err(|source| Error::Io {
        what: "read random bytes for",
        path: root.to_path_buf(),
        source,
    })?;
    let pki = |e: warden_pki::Error| Error::Io {
        what: "make TLS material in",
        path: root.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    let options = RootOptions {
        common_name: "Warden test root".to_owned(),
        algorithm: KeyAlgorithm::EcdsaP256,
        validity: time::Duration::days(2),
        path_len: 1,
    };
    let ca = CaDir::init(&root.join("ca"), &options, &pass, now).map_err(pki)?;
    let ca_key = warden_pki::generate_key(KeyAlgorithm::EcdsaP256).map_err(pki)?;
    let csr = warden_pki::make_csr(&ca_key, "Warden test listener CA", &[], &[]).map_err(pki)?;
    let request = IntermediateRequest {
        environment: "bare".to_owned(),
        profile: "listener-ca".to_owned(),
        validity: time::Duration::days(1),
        path_len: 0,
        permitted_dns: Vec::new(),
        unconstrained_because: None,
    };
    let signed = ca
        .sign_intermediate(&csr, &request, &pass, now)
        .map_err(pki)?;
    let issuer = LocalIssuer::new(&signed.cert_pem, ca_key).map_err(pki)?;
    let key = warden_pki::generate_key(KeyAlgorithm::EcdsaP256).map_err(pki)?;
    let leaf = issuer
        .issue_server(
            &key.public_key_der(),
            "openbao.bare.test",
            &["localhost".to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            time::Duration::hours(12),
            now,
        )
        .map_err(pki)?;
    let t = root.join("tls");
    let chain = format!("{}\n{}\n", leaf.trim_end(), signed.cert_pem.trim_end());
    warden_files::write_atomic(
        &t.join("server.pem"),
        chain.as_bytes(),
        warden_files::Mode::Public,
    )?;
    warden_files::write_atomic(
        &t.join("server-key.pem"),
        key.private_key_pem().as_bytes(),
        warden_files::Mode::OwnerOnly,
    )?;
    warden_files::write_atomic(
        &t.join("ca.pem"),
        ca.root_pem().as_bytes(),
        warden_files::Mode::Public,
    )?;
    Ok(())
}
