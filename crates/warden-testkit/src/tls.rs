//! TLS handshakes in memory, and a loop of them running beside a test: the "no failed
//! handshake" check of the CA rotation and root rollover tests (ADR 0029, ADR 0030).
//!
//! [`handshake`] runs a rustls client and server against each other without sockets: the
//! server presents the certificates it is given with its key, the client trusts exactly the
//! certificates of its trust text (each one a trust anchor, as rustls treats a CA file) and
//! checks the host name. [`HandshakeLoop`] calls a round — typically: read the files agents
//! deliver, then [`handshake`] — every 50 ms on its own thread until stopped, and counts
//! failures that persist across a fresh read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why a handshake did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The inputs could not be made into a client or server (a file read half-way through a
    /// swap: certificate from one version, key from another). Not a handshake.
    Input(String),
    /// The handshake itself failed (the client refused the server's chain, ...).
    Failed(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Input(e) => write!(f, "input: {e}"),
            Self::Failed(e) => f.write_str(e),
        }
    }
}

/// One in-memory TLS handshake: a server presenting every certificate of `server_chain_pem`
/// (leaf first) with `key_pem`, a client trusting every certificate of `trust_pem` and
/// checking `host`.
pub fn handshake(
    trust_pem: &str,
    server_chain_pem: &str,
    key_pem: &str,
    host: &str,
) -> Result<(), HandshakeError> {
    let input = |e: &dyn std::fmt::Display| HandshakeError::Input(e.to_string());
    let failed = |e: &dyn std::fmt::Display| HandshakeError::Failed(e.to_string());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(trust_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| input(&e))?)
            .map_err(|e| input(&e))?;
    }
    let client_cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| input(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(server_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| input(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| input(&e))?;
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| input(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| input(&e))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| input(&e))?;
    let mut client =
        rustls::ClientConnection::new(Arc::new(client_cfg), name).map_err(|e| input(&e))?;
    let mut server = rustls::ServerConnection::new(Arc::new(server_cfg)).map_err(|e| input(&e))?;
    for _ in 0..20 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).map_err(|e| failed(&e))?;
        if !buf.is_empty() {
            server
                .read_tls(&mut buf.as_slice())
                .map_err(|e| failed(&e))?;
            server
                .process_new_packets()
                .map_err(|e| failed(&format!("server: {e}")))?;
        }
        let mut buf = Vec::new();
        server.write_tls(&mut buf).map_err(|e| failed(&e))?;
        if !buf.is_empty() {
            client
                .read_tls(&mut buf.as_slice())
                .map_err(|e| failed(&e))?;
            client
                .process_new_packets()
                .map_err(|e| failed(&format!("client: {e}")))?;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    Err(failed(&"the handshake did not finish"))
}

/// A loop of handshake rounds on its own thread.
#[derive(Debug)]
pub struct HandshakeLoop {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl HandshakeLoop {
    /// Starts calling `round` every 50 ms. A round that fails with [`HandshakeError::Input`]
    /// is not counted; one that fails is run again at once, and only a failure that persists
    /// across that fresh read counts as a failed handshake.
    pub fn start<F>(round: F) -> Self
    where
        F: Fn() -> Result<(), HandshakeError> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match round() {
                        Err(HandshakeError::Input(_)) => continue,
                        Ok(()) => {}
                        Err(HandshakeError::Failed(e)) => {
                            if let Err(HandshakeError::Failed(e2)) = round() {
                                failures
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push(format!("{e} / {e2}"));
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            stop,
            done,
            failures,
            thread: Some(thread),
        }
    }

    /// Handshakes done so far.
    pub fn count(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the loop and returns the number of handshakes and the failures.
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let failed = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (self.count(), failed)
    }
}

impl Drop for HandshakeLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
