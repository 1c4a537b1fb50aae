//! A deliberately tiny HTTP/1.1 `GET` over plain TCP or TLS, for readiness checks and test
//! assertions.
//!
//! A readiness probe must not lean on the client it helps to test (`warden-bao`'s tests run on
//! these servers), and it needs a dozen lines of HTTP, not a client library. One request per connection
//! (`Connection: close`), loopback only, bounded by a 10 s deadline. TLS trusts exactly the CA
//! file given (rustls with aws-lc-rs, the workspace's one crypto stack).

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroize;

use crate::Error;

/// How long one request may take, connect to last byte.
const DEADLINE: Duration = Duration::from_secs(10);
/// Responses larger than this are refused: a health probe never needs more.
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// A response: status and body (chunked transfer decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body, lossily decoded as UTF-8.
    pub body: String,
}

impl Response {
    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// One blocking HTTP/1.1 `GET path` on `addr` (an agent's `/health` or `/metrics`): its status
/// code and body. For assertions, so it panics with the reason when there is no well-formed
/// answer within 10 s.
pub fn get_plain(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send the request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line: {head}"));
    (status, body.to_owned())
}

/// `GET url` where `url` is `http://127.0.0.1:PORT/path` or `https://...` (then `ca_cert` must
/// name the PEM CA to trust). `token`, when given, is sent as `X-Vault-Token`.
pub async fn get(
    url: &str,
    ca_cert: Option<&Path>,
    token: Option<&SecretString>,
) -> Result<Response, Error> {
    let target = Target::parse(url)?;
    let http_err = |source| Error::Http {
        url: url.to_owned(),
        source,
    };
    let tls = match (target.tls, ca_cert) {
        (true, Some(ca)) => Some(tls_connector(ca)?),
        (true, None) => {
            return Err(http_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an https URL needs the CA certificate to trust",
            )));
        }
        (false, _) => None,
    };

    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: application/json\r\nConnection: close\r\n",
        target.path, target.port
    )
    .into_bytes();
    if let Some(token) = token {
        request.extend_from_slice(b"X-Vault-Token: ");
        request.extend_from_slice(token.expose_secret().as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");

    let exchange = async {
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, target.port)).await?;
        match tls {
            Some(connector) => {
                let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
                let stream = connector.connect(name, tcp).await?;
                exchange(stream, &request).await
            }
            None => exchange(tcp, &request).await,
        }
    };
    let result = tokio::time::timeout(DEADLINE, exchange).await;
    request.zeroize();
    let raw = result
        .map_err(|_| {
            http_err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no complete answer within {DEADLINE:?}"),
            ))
        })?
        .map_err(http_err)?;
    parse_response(&raw).map_err(http_err)
}

struct Target {
    tls: bool,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, Error> {
        let bad = || Error::NotLoopback(url.to_owned());
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let port = authority
            .strip_prefix("127.0.0.1:")
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p != 0)
            .ok_or_else(bad)?;
        if path.contains(['\r', '\n', ' ']) {
            return Err(bad());
        }
        Ok(Self {
            tls,
            port,
            path: path.to_owned(),
        })
    }
}

fn tls_connector(ca: &Path) -> Result<TlsConnector, Error> {
    let ca_err = |reason: String| Error::CaFile {
        path: ca.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| ca_err(e.to_string()))? {
        roots
            .add(cert.map_err(|e| ca_err(e.to_string()))?)
            .map_err(|e| ca_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_err("no CERTIFICATE block".to_owned()));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ca_err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> io::Result<Vec<u8>> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    match (&mut stream).take(MAX_RESPONSE).read_to_end(&mut raw).await {
        Ok(_) => Ok(raw),
        // A TLS peer that closes without close_notify after a complete response is fine for a
        // probe: the response is parsed (and rejected if truncated) below.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid("no status line"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| invalid("bad chunked body"))?
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        for bad in [
            "http://10.0.0.1:8200/v1/sys/health",
            "http://localhost:8200/",
            "ftp://127.0.0.1:21/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1/",
            "http://127.0.0.1:8200/a b",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(Error::NotLoopback(_))),
                "{bad}"
            );
        }
        let t = Target::parse("https://127.0.0.1:8200/v1/sys/health?x=1").unwrap();
        assert!(t.tls);
        assert_eq!((t.port, t.path.as_str()), (8200, "/v1/sys/health?x=1"));
        assert_eq!(Target::parse("http://127.0.0.1:1").unwrap().path, "/");
    }

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(
            parse_response(plain).unwrap(),
            Response {
                status: 200,
                body: "{}".into()
            }
        );
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let r = parse_response(chunked).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.json().unwrap()["a"], 1);
        assert!(parse_response(b"garbage").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc")
                .is_err(),
            "a truncated chunk is an error, not a short body"
        );
    }
}
