//! Where the client connects and with which credentials.
//!
//! Built explicitly ([`ClientConfig::new`] + setters) or from the standard environment
//! ([`ClientConfig::from_env`]), so Warden works with the same variables operators already
//! export for the `bao`/`vault` CLIs.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::tls::{ClientIdentity, public, read_file};

/// Default per-request timeout: the Vault CLI's default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything needed to build a [`crate::Client`].
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Server address, e.g. `https://127.0.0.1:8200` (no `/v1`); for a cluster, the node
    /// tried first.
    pub address: Url,
    /// Further nodes of the same cluster, tried after `address` in this order when a node
    /// cannot serve (the failover contract is in the crate docs). Empty for one server.
    pub other_addresses: Vec<Url>,
    /// PEM CA bundle. When set, it is the ONLY trust anchor: platform roots are not used, so a
    /// certificate from some public CA cannot impersonate the server.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Client certificate for mTLS listeners and cert-auth login.
    pub client_identity: Option<ClientIdentity>,
    /// Token sent as `X-Vault-Token`.
    pub token: Option<SecretString>,
    /// Backoff and give-up budgets.
    pub retry: RetryPolicy,
    /// Upper bound for one HTTP exchange (connect + request + response).
    pub request_timeout: Duration,
    /// OpenBao namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("address", &self.address.as_str())
            .field(
                "other_addresses",
                &self
                    .other_addresses
                    .iter()
                    .map(Url::as_str)
                    .collect::<Vec<_>>(),
            )
            .field("ca_cert_pem_len", &self.ca_cert_pem.as_ref().map(Vec::len))
            .field("client_identity", &self.client_identity)
            .field("token", &self.token.as_ref().map(|_| "..."))
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl ClientConfig {
    /// A config for `address` with no TLS material, no token and default timeouts.
    pub fn new(address: Url) -> Self {
        Self {
            address,
            other_addresses: Vec::new(),
            ca_cert_pem: None,
            client_identity: None,
            token: None,
            retry: RetryPolicy::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            namespace: None,
        }
    }

    /// Like [`ClientConfig::new`] but parses the address.
    pub fn from_address(address: &str) -> Result<Self> {
        Ok(Self::new(parse_address(address)?))
    }

    /// A config for the nodes of one cluster, tried in this order (see the failover contract
    /// in the crate docs). Refuses an empty list, an address that does not parse, and the same
    /// address twice; one address is the same as [`ClientConfig::from_address`].
    pub fn with_addresses<S: AsRef<str>>(addresses: &[S]) -> Result<Self> {
        let mut urls: Vec<Url> = Vec::with_capacity(addresses.len());
        for a in addresses {
            let url = parse_address(a.as_ref())?;
            if urls.contains(&url) {
                return Err(Error::config(format!("address {url} is listed twice")));
            }
            // One plain-HTTP node among TLS ones would receive the token in clear the first
            // time the client fails over to it: a downgrade nobody chose. All or nothing.
            if let Some(other) = urls.iter().find(|u| u.scheme() != url.scheme()) {
                return Err(Error::config(format!(
                    "addresses {other} and {url} mix http:// and https://: a client failing over \
                     would send its token in clear; give every node the same scheme (https://)"
                )));
            }
            urls.push(url);
        }
        let mut urls = urls.into_iter();
        let first = urls
            .next()
            .ok_or_else(|| Error::config("no server address is configured"))?;
        let mut cfg = Self::new(first);
        cfg.other_addresses = urls.collect();
        Ok(cfg)
    }

    /// Every address, `address` first.
    pub fn addresses(&self) -> Vec<&Url> {
        std::iter::once(&self.address)
            .chain(&self.other_addresses)
            .collect()
    }

    /// Trust only the CAs in this PEM bundle.
    #[must_use]
    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> Self {
        self.ca_cert_pem = Some(pem);
        self
    }

    /// Trust only the CAs in this PEM file: a regular file of at most
    /// [`crate::PEM_FILE_LIMIT`] bytes ([`Error::ReadFile`] otherwise, at once even for a FIFO).
    pub fn with_ca_file(self, path: impl AsRef<Path>) -> Result<Self> {
        Ok(self.with_ca_pem(public(read_file("CA bundle", path.as_ref())?)))
    }

    /// Present this identity on TLS connections.
    #[must_use]
    pub fn with_client_identity(mut self, identity: ClientIdentity) -> Self {
        self.client_identity = Some(identity);
        self
    }

    /// Present the certificate chain and key from these PEM files
    /// ([`ClientIdentity::from_files`]).
    pub fn with_client_cert_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self> {
        Ok(self.with_client_identity(ClientIdentity::from_files(cert.as_ref(), key.as_ref())?))
    }

    /// Authenticate requests with this token.
    #[must_use]
    pub fn with_token(mut self, token: SecretString) -> Self {
        self.token = Some(token);
        self
    }

    /// Replace the retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replace the per-request timeout.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Send requests in this namespace.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Reads the process environment; see [`ClientConfig::from_env_with`].
    pub fn from_env() -> Result<Self> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Builds a config from environment-style variables obtained through `lookup`.
    ///
    /// Recognised: `ADDR` (required), `CACERT`, `CLIENT_CERT` + `CLIENT_KEY` (both or neither),
    /// `TOKEN`, `NAMESPACE`, `CLIENT_TIMEOUT` (seconds, or with an `ms`/`s`/`m`/`h` suffix),
    /// each as `BAO_<name>` or `VAULT_<name>`. **`BAO_*` wins** when both are set, because the
    /// `bao` CLI does the same and an operator who exported `BAO_ADDR` meant OpenBao. Empty
    /// values count as unset.
    ///
    /// Refused rather than ignored, because silently ignoring them would change the security
    /// meaning of the operator's setup: `SKIP_VERIFY` (we never disable verification) and
    /// `CAPATH` (use `CACERT` with a bundle file).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| -> Option<(String, String)> {
            ["BAO_", "VAULT_"].iter().find_map(|prefix| {
                let var = format!("{prefix}{name}");
                lookup(&var)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (var, v))
            })
        };

        if let Some((var, value)) = get("SKIP_VERIFY")
            && !matches!(value.trim().to_ascii_lowercase().as_str(), "0" | "false")
        {
            return Err(Error::config(format!(
                "{var} is set: Warden never disables TLS verification; set BAO_CACERT to the server's CA instead"
            )));
        }
        if let Some((var, _)) = get("CAPATH") {
            return Err(Error::config(format!(
                "{var} (a CA directory) is not supported; concatenate the CAs into one file and set BAO_CACERT"
            )));
        }

        let (_, addr) = get("ADDR").ok_or_else(|| {
            Error::config("BAO_ADDR / VAULT_ADDR is not set; export the server address, e.g. https://127.0.0.1:8200")
        })?;
        let mut cfg = Self::from_address(&addr)?;

        if let Some((_, ca)) = get("CACERT") {
            cfg = cfg.with_ca_file(ca)?;
        }
        match (get("CLIENT_CERT"), get("CLIENT_KEY")) {
            (Some((_, cert)), Some((_, key))) => cfg = cfg.with_client_cert_files(cert, key)?,
            (None, None) => {}
            (Some((var, _)), None) | (None, Some((var, _))) => {
                return Err(Error::config(format!(
                    "{var} is set but its pair is not: set both BAO_CLIENT_CERT and BAO_CLIENT_KEY"
                )));
            }
        }
        if let Some((_, token)) = get("TOKEN") {
            cfg = cfg.with_token(SecretString::from(token.trim().to_owned()));
        }
        if let Some((_, ns)) = get("NAMESPACE") {
            cfg = cfg.with_namespace(ns);
        }
        if let Some((var, t)) = get("CLIENT_TIMEOUT") {
            let timeout = parse_duration(&t).ok_or_else(|| {
                Error::config(format!("{var}={t:?} is not a duration like 60 or 30s"))
            })?;
            cfg = cfg.with_request_timeout(timeout);
        }
        Ok(cfg)
    }
}

/// Parses and checks an address: only `http`/`https`, no query or fragment.
pub(crate) fn parse_address(address: &str) -> Result<Url> {
    let url = Url::parse(address.trim())
        .map_err(|e| Error::config(format!("address {address:?} is not a URL: {e}")))?;
    check_address(&url)?;
    Ok(url)
}

pub(crate) fn check_address(url: &Url) -> Result<()> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::config(format!(
            "address {url} must start with https:// (or http:// for a local dev server)"
        )));
    }
    if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(format!(
            "address {url} must be scheme://host[:port][/prefix] without query or fragment"
        )));
    }
    Ok(())
}

/// `60` (seconds), `1500ms`, `30s`, `2m`, `1h`.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use zeroize::Zeroizing;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    use crate::test_support::self_signed as test_identity;

    #[test]
    fn vault_variables_are_read() {
        let cfg = ClientConfig::from_env_with(env(&[
            ("VAULT_ADDR", "https://vault.test:8200"),
            ("VAULT_TOKEN", "s.abc"),
            ("VAULT_NAMESPACE", "team-a"),
            ("VAULT_CLIENT_TIMEOUT", "5s"),
        ]))
        .expect("config");
        assert_eq!(cfg.address.as_str(), "https://vault.test:8200/");
        assert_eq!(
            cfg.token
                .as_ref()
                .map(|t| t.expose_secret().to_owned())
                .as_deref(),
            Some("s.abc")
        );
        assert_eq!(cfg.namespace.as_deref(), Some("team-a"));
        assert_eq!(cfg.request_timeout, Duration::from_secs(5));
        assert!(cfg.ca_cert_pem.is_none() && cfg.client_identity.is_none());
    }

    #[test]
    fn bao_variables_win_over_vault_ones() {
        let cfg = ClientConfig::from_env_with(env(&[
            ("VAULT_ADDR", "https://vault.test:8200"),
            ("BAO_ADDR", "https://bao.test:8200"),
            ("VAULT_TOKEN", "s.vault"),
            ("BAO_TOKEN", "s.bao"),
            ("BAO_NAMESPACE", ""),
            ("VAULT_NAMESPACE", "fallback"),
        ]))
        .expect("config");
        assert_eq!(cfg.address.host_str(), Some("bao.test"));
        assert_eq!(
            cfg.token
                .as_ref()
                .map(|t| t.expose_secret().to_owned())
                .as_deref(),
            Some("s.bao")
        );
        // An empty BAO_ value counts as unset, so the VAULT_ one applies.
        assert_eq!(cfg.namespace.as_deref(), Some("fallback"));
    }

    #[test]
    fn missing_address_is_a_config_error() {
        let err = ClientConfig::from_env_with(env(&[("VAULT_TOKEN", "s.x")])).unwrap_err();
        assert!(
            matches!(&err, Error::Config { what } if what.contains("BAO_ADDR")),
            "{err:?}"
        );
    }

    #[test]
    fn skip_verify_and_capath_are_refused() {
        let err = ClientConfig::from_env_with(env(&[
            ("VAULT_ADDR", "https://v:1"),
            ("VAULT_SKIP_VERIFY", "true"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("VAULT_SKIP_VERIFY"), "{err}");
        // Explicitly false is harmless.
        ClientConfig::from_env_with(env(&[
            ("VAULT_ADDR", "https://v:1"),
            ("VAULT_SKIP_VERIFY", "false"),
        ]))
        .expect("false is fine");
        let err = ClientConfig::from_env_with(env(&[
            ("BAO_ADDR", "https://v:1"),
            ("BAO_CAPATH", "/etc/ssl"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("BAO_CAPATH"), "{err}");
    }

    #[test]
    fn files_are_read_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("warden-bao-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (cert, key) = test_identity();
        let (cert_path, key_path) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cert_path, &cert).expect("write cert");
        std::fs::write(&key_path, &key).expect("write key");
        let ok = ClientConfig::from_env_with(env(&[
            ("VAULT_ADDR", "https://v:1"),
            ("VAULT_CACERT", cert_path.to_str().expect("utf8")),
            ("VAULT_CLIENT_CERT", cert_path.to_str().expect("utf8")),
            ("VAULT_CLIENT_KEY", key_path.to_str().expect("utf8")),
        ]));
        let missing = ClientConfig::from_env_with(env(&[
            ("VAULT_ADDR", "https://v:1"),
            ("VAULT_CACERT", "/nonexistent/ca.pem"),
        ]));
        let half = ClientConfig::from_env_with(env(&[
            ("VAULT_ADDR", "https://v:1"),
            ("VAULT_CLIENT_CERT", cert_path.to_str().expect("utf8")),
        ]));
        std::fs::remove_dir_all(&dir).expect("cleanup");

        let ok = ok.expect("config with files");
        assert_eq!(ok.ca_cert_pem.as_deref(), Some(cert.as_slice()));
        assert!(ok.client_identity.is_some());
        assert!(
            matches!(missing, Err(Error::ReadFile { ref path, .. }) if path.ends_with("ca.pem"))
        );
        assert!(
            matches!(half, Err(Error::Config { ref what }) if what.contains("VAULT_CLIENT_CERT"))
        );
    }

    /// Red-team regression: a FIFO at a spec's `ca_cert` hung `warden plan` forever on `open`,
    /// and `/dev/zero` filled its memory. Both are refused at once, naming the file and saying
    /// what to name instead; so are a FIFO at the client key and an oversized bundle. A
    /// regular PEM file still loads.
    #[test]
    fn a_fifo_or_a_device_as_a_pem_file_is_refused_at_once() {
        let dir = std::env::temp_dir().join(format!("warden-bao-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let fifo = dir.join("ca.pem");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let (cert, key) = test_identity();
        let (cert_path, key_path, big) =
            (dir.join("c.pem"), dir.join("k.pem"), dir.join("big.pem"));
        std::fs::write(&cert_path, &cert).expect("write cert");
        std::fs::write(&key_path, &key).expect("write key");
        let limit = usize::try_from(crate::PEM_FILE_LIMIT).expect("fits");
        std::fs::write(&big, vec![b'#'; limit + 1]).expect("write big");
        let base = || ClientConfig::from_address("https://v:1").expect("address");

        // On a thread, so that a regression fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let (named, cert_file) = (fifo.clone(), cert_path.clone());
        std::thread::spawn(move || {
            let ca = base().with_ca_file(&named).map(drop);
            let key = ClientIdentity::from_files(&cert_file, &named).map(drop);
            // After a timeout the receiver is gone and the test has already failed.
            let _ = tx.send((ca, key));
        });
        let (ca_fifo, key_fifo) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a FIFO is refused at once, not waited on");
        let dev_zero = base().with_ca_file("/dev/zero").map(drop);
        let oversized = base().with_ca_file(&big).map(drop);
        let ok = base().with_ca_file(&cert_path);
        let identity = ClientIdentity::from_files(&cert_path, &key_path);
        std::fs::remove_dir_all(&dir).expect("cleanup");

        let err = ca_fifo.expect_err("a FIFO is not a CA bundle");
        assert!(
            matches!(&err, Error::ReadFile { what: "CA bundle", path, .. } if *path == fifo),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("the CA bundle {}", fifo.display()))
                && text.contains("regular")
                && text.contains(&crate::PEM_FILE_LIMIT.to_string()),
            "{text}"
        );
        let err = key_fifo.expect_err("a FIFO is not a key");
        assert!(
            matches!(&err, Error::ReadFile { what: "client key", path, .. } if *path == fifo),
            "{err:?}"
        );
        for refused in [dev_zero, oversized] {
            let err = refused.expect_err("refused");
            assert!(matches!(err, Error::ReadFile { .. }), "{err:?}");
            assert!(err.to_string().contains("regular PEM file"), "{err}");
        }
        let ok = ok.expect("a regular PEM file loads");
        assert_eq!(ok.ca_cert_pem.as_deref(), Some(cert.as_slice()));
        identity.expect("a regular certificate and key load");
    }

    #[test]
    fn bad_addresses_are_rejected() {
        for bad in ["ftp://x", "not a url", "https://x/?q=1", "unix:///tmp/s"] {
            assert!(ClientConfig::from_address(bad).is_err(), "{bad}");
        }
        ClientConfig::from_address("http://127.0.0.1:8200").expect("ok");
    }

    #[test]
    fn several_addresses_keep_their_order_and_are_checked() {
        let cfg =
            ClientConfig::with_addresses(&["https://a:8200", "https://b:8200/"]).expect("two");
        let all: Vec<&str> = cfg.addresses().iter().map(|u| u.as_str()).collect();
        assert_eq!(all, ["https://a:8200/", "https://b:8200/"]);
        assert_eq!(cfg.address.as_str(), "https://a:8200/");
        let one = ClientConfig::with_addresses(&["https://a:8200"]).expect("one");
        assert!(one.other_addresses.is_empty());
        let err = ClientConfig::with_addresses::<&str>(&[]).unwrap_err();
        assert!(err.to_string().contains("no server address"), "{err}");
        let err = ClientConfig::with_addresses(&["https://a:8200", "https://a:8200/"]).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
        assert!(ClientConfig::with_addresses(&["https://a:8200", "ftp://b"]).is_err());
    }

    /// Red-team regression: an `http://` node in a list of `https://` nodes was accepted, and a
    /// failover sent the token to it in clear.
    #[test]
    fn a_list_mixing_http_and_https_is_refused() {
        let err = ClientConfig::with_addresses(&["https://a:8200", "http://b:8200"]).unwrap_err();
        assert!(err.to_string().contains("in clear"), "{err}");
        assert!(ClientConfig::with_addresses(&["http://a:8200", "https://b:8200"]).is_err());
        ClientConfig::with_addresses(&["http://a:8200", "http://b:8200"]).expect("all dev");
    }

    #[test]
    fn bad_pem_is_rejected_at_config_time() {
        let err =
            ClientIdentity::from_pem(b"garbage".to_vec(), Zeroizing::new(b"garbage".to_vec()))
                .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
    }

    #[test]
    fn key_from_another_certificate_is_rejected() {
        let (cert, _) = test_identity();
        let (_, other_key) = test_identity();
        let err = ClientIdentity::from_pem(cert, Zeroizing::new(other_key)).unwrap_err();
        assert!(
            matches!(&err, Error::Config { what } if what.contains("do not go together")),
            "{err:?}"
        );
    }

    #[test]
    fn debug_prints_no_secret() {
        let (cert, key) = test_identity();
        let key_text = String::from_utf8(key.clone()).expect("utf8");
        let id = ClientIdentity::from_pem(cert, Zeroizing::new(key)).expect("identity");
        let cfg = ClientConfig::from_address("https://v:1")
            .expect("cfg")
            .with_token(SecretString::from("s.TOPSECRETTOKEN"))
            .with_client_identity(id);
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("TOPSECRET"), "{dbg}");
        assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
        let key_body: String = key_text
            .lines()
            .nth(1)
            .expect("pem body")
            .chars()
            .take(20)
            .collect();
        assert!(!dbg.contains(&key_body), "{dbg}");
        assert!(dbg.contains("\"...\""), "{dbg}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5d"), None);
    }
}
