//! `agent.toml` → a validated [`Config`].
//!
//! The file is read with spans (`toml::Spanned`) and `deny_unknown_fields`, then checked as a
//! whole: every problem is reported at once, each at `file:line:col key: message`, with a "did
//! you mean" for misspelt words. A hand-written file goes through exactly the same checks as one
//! written by `warden identity enroll`, so "it parsed" means "the agent can run it".
//!
//! Relative paths are resolved against the directory holding `agent.toml` (the identity
//! directory), so the config does not depend on the agent's working directory.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use warden_spec::{Diagnostic, Reporter, did_you_mean, explain_toml_error};

pub use super::output::template::TemplateSource;

type S<T> = Spanned<T>;

// ---- the validated model ------------------------------------------------------------------

/// A validated agent configuration. Immutable once built: the runtime never re-reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The directory relative paths were resolved against.
    pub base_dir: PathBuf,
    /// Who the agent is.
    pub identity: IdentityConfig,
    /// Where OpenBao is and what to trust.
    pub openbao: OpenBaoConfig,
    /// How the agent logs in.
    pub auth: AuthConfig,
    /// When things are renewed.
    pub renewal: RenewalConfig,
    /// What it delivers, in file order.
    pub outputs: Vec<OutputConfig>,
    /// `/health` and `/metrics` (served by the health module).
    pub health: Option<HealthConfig>,
    /// The local control socket (served by the control module).
    pub control: Option<ControlConfig>,
    /// `state/` next to `agent.toml`: per-output state files.
    pub state_dir: PathBuf,
}

/// `[identity]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// The identity's name.
    pub name: String,
    /// What kind of workload it is.
    pub kind: IdentityKind,
    /// Its environment.
    pub env: String,
    /// The common name of its mTLS client certificate.
    pub common_name: String,
}

/// `identity.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// A service on a host.
    App,
    /// A TLS-terminating proxy (trust material only).
    Proxy,
    /// A container (AppRole).
    Container,
}

impl IdentityKind {
    /// The spelling in `agent.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Proxy => "proxy",
            Self::Container => "container",
        }
    }
}

/// `[openbao]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBaoConfig {
    /// API address.
    pub address: String,
    /// Trust anchor(s) for the API and for every chain the agent verifies.
    pub ca_file: Option<PathBuf>,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Auth mount (`cert`, `approle`, `jwt`...).
    pub mount: String,
    /// The one policy the token is expected to carry.
    pub policy: String,
    /// The mTLS client identity presented on every connection. For `cert` it is also the login
    /// credential; for the other methods it is only the transport identity (needed when the
    /// listener requires client certificates).
    pub tls_identity: Option<TlsIdentity>,
    /// The method and its credentials.
    pub method: AuthMethod,
}

/// The mTLS identity files and, when renewal is configured, how to renew them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// Leaf + issuing CA.
    pub cert_file: PathBuf,
    /// Its key (0600).
    pub key_file: PathBuf,
    /// `Some((pki_mount, identity_role))`: renewed through `<pki_mount>/sign/<identity_role>`.
    pub renew_with: Option<(String, String)>,
}

/// How the agent logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// Cert auth with the mTLS identity.
    Cert {
        /// Cert-auth role.
        role: String,
    },
    /// AppRole.
    AppRole {
        /// File holding the role-id.
        role_id_file: PathBuf,
        /// File holding the secret-id (or a wrapping token for it); removed once read.
        secret_id_file: PathBuf,
        /// The file holds a response-wrapping token to unwrap once.
        secret_id_wrapped: bool,
    },
    /// JWT (for example a Kubernetes service-account token or a CI OIDC token).
    Jwt {
        /// JWT-auth role.
        role: String,
        /// File read at every login (the token is rotated by whoever writes it).
        token_file: PathBuf,
    },
}

impl AuthMethod {
    /// The spelling in `agent.toml`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Cert { .. } => "cert",
            Self::AppRole { .. } => "approle",
            Self::Jwt { .. } => "jwt",
        }
    }
}

/// `[renewal]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalConfig {
    /// Fraction of a certificate's lifetime after which it is renewed.
    pub fraction: f64,
    /// ± this fraction of the lifetime, at random per certificate.
    pub jitter: f64,
    /// Never renew later than this before expiry.
    pub margin: Duration,
    /// How often templates and CA chains are re-read.
    pub poll: Duration,
}

impl Default for RenewalConfig {
    fn default() -> Self {
        Self {
            fraction: 0.667,
            jitter: 0.05,
            margin: Duration::from_secs(120),
            poll: Duration::from_secs(300),
        }
    }
}

/// One `[[output]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputConfig {
    /// Unique name (state file, status, metrics label).
    pub name: String,
    /// What it renders.
    pub kind: OutputKind,
    /// What to run when its content changed.
    pub reload: Option<Reload>,
    /// Owner user of the delivered files (needs the privilege to chown).
    pub owner: Option<String>,
    /// Group of the delivered files.
    pub group: Option<String>,
}

impl OutputConfig {
    /// `certificate`, `template` or `ca_chain`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            OutputKind::Certificate(_) => "certificate",
            OutputKind::Template(_) => "template",
            OutputKind::CaChain(_) => "ca_chain",
        }
    }
}

/// The type-specific part of an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// A leaf certificate with a key generated on the host.
    Certificate(CertificateOutput),
    /// A rendered template (secrets, config files).
    Template(TemplateConfig),
    /// The CA chain bundle of a PKI mount.
    CaChain(CaChainConfig),
}

/// `type = "certificate"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateOutput {
    /// PKI mount.
    pub pki_mount: String,
    /// PKI role used with `sign`.
    pub role: String,
    /// Common name (also a DNS SAN, as OpenBao adds it).
    pub common_name: String,
    /// Extra DNS SANs.
    pub sans: Vec<String>,
    /// Requested lifetime (capped by the role's `max_ttl`); `None` = the role's `ttl`.
    pub ttl: Option<Duration>,
    /// Key generated on the host.
    pub key_type: KeyType,
    /// The directory (a symlink to the current version) holding cert.pem, key.pem, chain.pem,
    /// fullchain.pem.
    pub dir: PathBuf,
    /// Mode of the certificate files.
    pub mode: u32,
    /// Mode of `key.pem` (never world-readable).
    pub key_mode: u32,
}

/// `type = "template"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateConfig {
    /// Where the template comes from (a file is absolute after validation).
    pub source: TemplateSource,
    /// The file written.
    pub path: PathBuf,
    /// Its mode.
    pub mode: u32,
}

/// `type = "ca_chain"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaChainConfig {
    /// PKI mount whose chain is delivered.
    pub pki_mount: String,
    /// Include the root (what a validating peer needs), not only the intermediate(s).
    pub full_chain: bool,
    /// The file written.
    pub path: PathBuf,
    /// Its mode.
    pub mode: u32,
}

/// Key types the agent generates on the host: the spec's.
pub use warden_spec::KeyType;

/// What runs after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// An argv, run without a shell.
    Command(Vec<String>),
    /// A signal sent to the PID read from `pid_file` at reload time.
    Signal {
        /// The PID file.
        pid_file: PathBuf,
        /// The signal.
        signal: nix::sys::signal::Signal,
    },
}

/// `[health]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Where `/health` and `/metrics` listen (port 0 = any free port).
    pub listen: SocketAddr,
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// The Unix socket path.
    pub socket: PathBuf,
}

/// Why a config could not be loaded. The diagnostics say where and what.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has problems; each diagnostic points at one.
    #[error("{}", render(.diagnostics))]
    Invalid {
        /// Every problem, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, &path, &base)
    }

    /// Validates `text` as if read from `path`, resolving relative paths against `base_dir`.
    pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let mut r = Reporter::new(&file, text);
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let (message, help) = explain_toml_error(e.message());
                r.push(e.span().unwrap_or(0..0), None, message, help);
                return Err(ConfigError::Invalid {
                    diagnostics: r.into_sorted(),
                });
            }
        };
        let cfg = validate(raw, path, base_dir, &mut r);
        if r.is_empty() {
            Ok(cfg.expect("a config without diagnostics validates"))
        } else {
            Err(ConfigError::Invalid {
                diagnostics: r.into_sorted(),
            })
        }
    }

    /// The output called `name`.
    pub fn output(&self, name: &str) -> Option<&OutputConfig> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

// ---- the file as written ------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: S<i64>,
    identity: S<RawIdentity>,
    openbao: S<RawOpenBao>,
    auth: S<RawAuth>,
    #[serde(default)]
    renewal: Option<S<RawRenewal>>,
    #[serde(default)]
    output: Vec<S<RawOutput>>,
    #[serde(default)]
    health: Option<S<RawHealth>>,
    #[serde(default)]
    control: Option<S<RawControl>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    name: S<String>,
    kind: S<String>,
    env: S<String>,
    common_name: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpenBao {
    address: S<String>,
    #[serde(default)]
    ca_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    method: S<String>,
    mount: Option<S<String>>,
    role: Option<S<String>>,
    policy: S<String>,
    cert_file: Option<S<String>>,
    key_file: Option<S<String>>,
    pki_mount: Option<S<String>>,
    identity_role: Option<S<String>>,
    role_id_file: Option<S<String>>,
    secret_id_file: Option<S<String>>,
    secret_id_wrapped: Option<S<bool>>,
    token_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRenewal {
    fraction: Option<S<f64>>,
    jitter: Option<S<f64>>,
    margin: Option<S<String>>,
    poll: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: S<String>,
    #[serde(rename = "type")]
    kind: S<String>,
    pki_mount: Option<S<String>>,
    role: Option<S<String>>,
    common_name: Option<S<String>>,
    sans: Option<S<Vec<S<String>>>>,
    ttl: Option<S<String>>,
    key_type: Option<S<String>>,
    dir: Option<S<String>>,
    key_mode: Option<S<String>>,
    template: Option<S<String>>,
    contents: Option<S<String>>,
    path: Option<S<String>>,
    full_chain: Option<S<bool>>,
    mode: Option<S<String>>,
    owner: Option<S<String>>,
    group: Option<S<String>>,
    reload: Option<S<Vec<S<String>>>>,
    reload_signal: Option<S<RawReloadSignal>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReloadSignal {
    pid_file: S<String>,
    signal: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    listen: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: S<String>,
}

// ---- diagnostics --------------------------------------------------------------------------

// ---- validation ---------------------------------------------------------------------------

fn validate(raw: RawConfig, path: &Path, base: &Path, r: &mut Reporter<'_>) -> Option<Config> {
    let resolve = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    if *raw.version.get_ref() != 1 {
        r.error(
            raw.version.span(),
            "version",
            format!(
                "unsupported version {}; this agent reads version 1",
                raw.version.get_ref()
            ),
        );
    }

    // [identity]
    let id = raw.identity.get_ref();
    let kind = match id.kind.get_ref().as_str() {
        "app" => Some(IdentityKind::App),
        "proxy" => Some(IdentityKind::Proxy),
        "container" => Some(IdentityKind::Container),
        other => {
            r.error_help(
                id.kind.span(),
                "identity.kind",
                format!("unknown kind `{other}`"),
                did_you_mean(other, &["app", "proxy", "container"]),
            );
            None
        }
    };
    for (key, v) in [
        ("identity.name", &id.name),
        ("identity.env", &id.env),
        ("identity.common_name", &id.common_name),
    ] {
        non_empty(r, key, v);
    }

    // [openbao]
    let ob = raw.openbao.get_ref();
    match url::Url::parse(ob.address.get_ref()) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {}
        Ok(_) => r.error(
            ob.address.span(),
            "openbao.address",
            "the address must be an https:// (or http://) URL with a host",
        ),
        Err(e) => r.error(
            ob.address.span(),
            "openbao.address",
            format!("not a URL: {e}"),
        ),
    }
    let ca_file = ob.ca_file.as_ref().map(|c| resolve(c.get_ref()));

    // [auth]
    let auth = validate_auth(raw.auth.get_ref(), raw.auth.span(), &resolve, r);

    // [renewal]
    let renewal = raw
        .renewal
        .as_ref()
        .map_or_else(RenewalConfig::default, |s| validate_renewal(s.get_ref(), r));

    // [[output]]
    let mut names = BTreeSet::new();
    let mut targets: Vec<(PathBuf, Range<usize>)> = Vec::new();
    let mut outputs = Vec::new();
    for (i, out) in raw.output.iter().enumerate() {
        let o = out.get_ref();
        let name = o.name.get_ref();
        let key = if valid_name(name) {
            format!("output.{name}")
        } else {
            format!("output[{i}]")
        };
        if !valid_name(name) {
            r.error(
                o.name.span(),
                format!("{key}.name"),
                format!(
                    "`{name}` is not a valid output name: use 1-64 characters of a-z, 0-9, `-` and `_`"
                ),
            );
        } else if !names.insert(name.clone()) {
            r.error(
                o.name.span(),
                format!("{key}.name"),
                format!("two outputs are called `{name}`: names must be unique"),
            );
        }
        if let Some(v) = validate_output(o, out.span(), &key, &resolve, r) {
            let target = match &v.kind {
                OutputKind::Certificate(c) => c.dir.clone(),
                OutputKind::Template(t) => t.path.clone(),
                OutputKind::CaChain(c) => c.path.clone(),
            };
            if let Some((_, _)) = targets.iter().find(|(t, _)| *t == target) {
                r.error(
                    out.span(),
                    key.clone(),
                    format!("{} is already written by another output", target.display()),
                );
            }
            targets.push((target, out.span()));
            outputs.push(v);
        }
    }
    if ca_file.is_none()
        && let Some(o) = outputs
            .iter()
            .find(|o| !matches!(o.kind, OutputKind::Template(_)))
    {
        r.error(
            raw.openbao.span(),
            "openbao.ca_file",
            format!(
                "output `{}` needs a trust anchor to verify what it delivers: set `ca_file`",
                o.name
            ),
        );
    }
    if raw.output.is_empty() {
        r.error(
            0..0,
            "output",
            "no [[output]]: an agent with nothing to deliver has nothing to do",
        );
    }

    let health = raw.health.as_ref().and_then(|h| {
        let l = &h.get_ref().listen;
        match l.get_ref().parse::<SocketAddr>() {
            Ok(listen) => Some(HealthConfig { listen }),
            Err(_) => {
                r.error(
                    l.span(),
                    "health.listen",
                    format!("`{}` is not an address like 127.0.0.1:9100", l.get_ref()),
                );
                None
            }
        }
    });
    let control = raw.control.as_ref().map(|c| ControlConfig {
        socket: resolve(c.get_ref().socket.get_ref()),
    });

    if !r.is_empty() {
        return None;
    }
    Some(Config {
        path: path.to_path_buf(),
        base_dir: base.to_path_buf(),
        identity: IdentityConfig {
            name: id.name.get_ref().clone(),
            kind: kind?,
            env: id.env.get_ref().clone(),
            common_name: id.common_name.get_ref().clone(),
        },
        openbao: OpenBaoConfig {
            address: ob.address.get_ref().clone(),
            ca_file,
        },
        auth: auth?,
        renewal,
        outputs,
        health,
        control,
        state_dir: base.join("state"),
    })
}

fn non_empty(r: &mut Reporter<'_>, key: &str, v: &S<String>) {
    if v.get_ref().trim().is_empty() {
        r.error(v.span(), key, "must not be empty");
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn validate_auth(
    a: &RawAuth,
    span: Range<usize>,
    resolve: &dyn Fn(&str) -> PathBuf,
    r: &mut Reporter<'_>,
) -> Option<AuthConfig> {
    const METHODS: [&str; 3] = ["cert", "approle", "jwt"];
    let method = a.method.get_ref().as_str();
    if !METHODS.contains(&method) {
        r.error_help(
            a.method.span(),
            "auth.method",
            format!("unknown method `{method}`"),
            did_you_mean(method, &METHODS),
        );
        return None;
    }
    non_empty(r, "auth.policy", &a.policy);
    let missing = |r: &mut Reporter<'_>, key: &str| {
        r.error(
            span.clone(),
            format!("auth.{key}"),
            format!("method `{method}` needs `{key}`"),
        );
    };
    let unused = |r: &mut Reporter<'_>, key: &str, s: Range<usize>| {
        r.error(
            s,
            format!("auth.{key}"),
            format!("`{key}` is not used by method `{method}`"),
        );
    };

    // The TLS identity: required for cert, optional transport identity otherwise.
    let tls_identity = match (&a.cert_file, &a.key_file) {
        (Some(c), Some(k)) => {
            let renew_with = match (&a.pki_mount, &a.identity_role) {
                (Some(m), Some(role)) => Some((
                    m.get_ref().trim_matches('/').to_owned(),
                    role.get_ref().clone(),
                )),
                (None, None) => None,
                (Some(_), None) => {
                    missing(r, "identity_role");
                    None
                }
                (None, Some(_)) => {
                    missing(r, "pki_mount");
                    None
                }
            };
            Some(TlsIdentity {
                cert_file: resolve(c.get_ref()),
                key_file: resolve(k.get_ref()),
                renew_with,
            })
        }
        (None, None) => {
            if method == "cert" {
                missing(r, "cert_file");
                missing(r, "key_file");
            }
            for (key, v) in [
                ("pki_mount", &a.pki_mount),
                ("identity_role", &a.identity_role),
            ] {
                if let Some(v) = v {
                    r.error(
                        v.span(),
                        format!("auth.{key}"),
                        format!(
                            "`{key}` renews the TLS identity, but no `cert_file`/`key_file` is set"
                        ),
                    );
                }
            }
            None
        }
        (Some(_), None) => {
            missing(r, "key_file");
            None
        }
        (None, Some(_)) => {
            missing(r, "cert_file");
            None
        }
    };

    let mount = a.mount.as_ref().map_or_else(
        || method.to_owned(),
        |m| m.get_ref().trim_matches('/').to_owned(),
    );
    let method_cfg = match method {
        "cert" => {
            for (key, v) in [
                ("role_id_file", &a.role_id_file),
                ("secret_id_file", &a.secret_id_file),
                ("token_file", &a.token_file),
            ] {
                if let Some(v) = v {
                    unused(r, key, v.span());
                }
            }
            if let Some(v) = &a.secret_id_wrapped {
                unused(r, "secret_id_wrapped", v.span());
            }
            let Some(role) = &a.role else {
                missing(r, "role");
                return None;
            };
            AuthMethod::Cert {
                role: role.get_ref().clone(),
            }
        }
        "approle" => {
            if let Some(v) = &a.token_file {
                unused(r, "token_file", v.span());
            }
            if let Some(v) = &a.role {
                r.error_help(
                    v.span(),
                    "auth.role",
                    "`role` is not used by method `approle`",
                    Some("the role-id file names the AppRole".to_owned()),
                );
            }
            let (Some(role_id), Some(secret_id)) = (&a.role_id_file, &a.secret_id_file) else {
                if a.role_id_file.is_none() {
                    missing(r, "role_id_file");
                }
                if a.secret_id_file.is_none() {
                    missing(r, "secret_id_file");
                }
                return None;
            };
            AuthMethod::AppRole {
                role_id_file: resolve(role_id.get_ref()),
                secret_id_file: resolve(secret_id.get_ref()),
                secret_id_wrapped: a.secret_id_wrapped.as_ref().is_some_and(|w| *w.get_ref()),
            }
        }
        _ => {
            for (key, v) in [
                ("role_id_file", &a.role_id_file),
                ("secret_id_file", &a.secret_id_file),
            ] {
                if let Some(v) = v {
                    unused(r, key, v.span());
                }
            }
            if let Some(v) = &a.secret_id_wrapped {
                unused(r, "secret_id_wrapped", v.span());
            }
            let (Some(role), Some(token_file)) = (&a.role, &a.token_file) else {
                if a.role.is_none() {
                    missing(r, "role");
                }
                if a.token_file.is_none() {
                    missing(r, "token_file");
                }
                return None;
            };
            AuthMethod::Jwt {
                role: role.get_ref().clone(),
                token_file: resolve(token_file.get_ref()),
            }
        }
    };
    Some(AuthConfig {
        mount,
        policy: a.policy.get_ref().clone(),
        tls_identity,
        method: method_cfg,
    })
}

fn validate_renewal(raw: &RawRenewal, r: &mut Reporter<'_>) -> RenewalConfig {
    let mut out = RenewalConfig::default();
    if let Some(f) = &raw.fraction {
        let v = *f.get_ref();
        if v > 0.0 && v < 1.0 {
            out.fraction = v;
        } else {
            r.error(
                f.span(),
                "renewal.fraction",
                format!("{v} is not between 0 and 1 (exclusive)"),
            );
        }
    }
    if let Some(j) = &raw.jitter {
        let v = *j.get_ref();
        let limit = out.fraction.min(1.0 - out.fraction);
        if (0.0..limit).contains(&v) {
            out.jitter = v;
        } else {
            r.error(
                j.span(),
                "renewal.jitter",
                format!(
                    "{v} is out of range: jitter must be at least 0 and below {limit:.3} (the smaller of fraction and 1 - fraction)"
                ),
            );
        }
    }
    if let Some(m) = &raw.margin
        && let Some(d) = duration(r, "renewal.margin", m)
    {
        out.margin = d;
    }
    if let Some(p) = &raw.poll
        && let Some(d) = duration(r, "renewal.poll", p)
    {
        if d < Duration::from_secs(1) {
            r.error(p.span(), "renewal.poll", "poll must be at least 1s");
        } else {
            out.poll = d;
        }
    }
    out
}

fn duration(r: &mut Reporter<'_>, key: &str, v: &S<String>) -> Option<Duration> {
    match warden_pki::parse_duration(v.get_ref()) {
        Ok(d) => Some(Duration::from_secs(d.whole_seconds().unsigned_abs())),
        Err(e) => {
            r.error(v.span(), key, e.to_string());
            None
        }
    }
}

fn mode(r: &mut Reporter<'_>, key: &str, v: Option<&S<String>>, default: u32) -> u32 {
    let Some(v) = v else { return default };
    let s = v.get_ref().trim();
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && m & 0o002 == 0 && m & 0o600 == 0o600 => m,
        Ok(m) if m <= 0o777 && m & 0o002 != 0 => {
            r.error(
                v.span(),
                key,
                format!("mode {m:04o} is world-writable; delivered files never are"),
            );
            default
        }
        Ok(m) if m <= 0o777 => {
            r.error(
                v.span(),
                key,
                format!("mode {m:04o} does not let the owner read and write the file (the agent replaces it)"),
            );
            default
        }
        _ => {
            r.error(
                v.span(),
                key,
                format!("`{s}` is not an octal file mode like \"0640\""),
            );
            default
        }
    }
}

fn validate_output(
    o: &RawOutput,
    span: Range<usize>,
    key: &str,
    resolve: &dyn Fn(&str) -> PathBuf,
    r: &mut Reporter<'_>,
) -> Option<OutputConfig> {
    const TYPES: [&str; 3] = ["certificate", "template", "ca_chain"];
    let ty = o.kind.get_ref().as_str();
    if !TYPES.contains(&ty) {
        r.error_help(
            o.kind.span(),
            format!("{key}.type"),
            format!("unknown output type `{ty}`"),
            did_you_mean(ty, &TYPES),
        );
        return None;
    }
    // Which optional keys each type takes; anything else set is an error naming the key.
    let allowed: &[&str] = match ty {
        "certificate" => &[
            "pki_mount",
            "role",
            "common_name",
            "sans",
            "ttl",
            "key_type",
            "dir",
            "mode",
            "key_mode",
        ],
        "template" => &["template", "contents", "path", "mode"],
        _ => &["pki_mount", "full_chain", "path", "mode"],
    };
    let present: [(&str, Option<Range<usize>>); 13] = [
        ("pki_mount", o.pki_mount.as_ref().map(S::span)),
        ("role", o.role.as_ref().map(S::span)),
        ("common_name", o.common_name.as_ref().map(S::span)),
        ("sans", o.sans.as_ref().map(S::span)),
        ("ttl", o.ttl.as_ref().map(S::span)),
        ("key_type", o.key_type.as_ref().map(S::span)),
        ("dir", o.dir.as_ref().map(S::span)),
        ("key_mode", o.key_mode.as_ref().map(S::span)),
        ("template", o.template.as_ref().map(S::span)),
        ("contents", o.contents.as_ref().map(S::span)),
        ("path", o.path.as_ref().map(S::span)),
        ("full_chain", o.full_chain.as_ref().map(S::span)),
        ("mode", o.mode.as_ref().map(S::span)),
    ];
    for (k, s) in present {
        if let Some(s) = s
            && !allowed.contains(&k)
        {
            r.error(
                s,
                format!("{key}.{k}"),
                format!("`{k}` is not used by a {ty} output"),
            );
        }
    }
    let need = |r: &mut Reporter<'_>, v: Option<&S<String>>, k: &str| -> Option<String> {
        match v {
            Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().clone()),
            Some(v) => {
                r.error(v.span(), format!("{key}.{k}"), "must not be empty");
                None
            }
            None => {
                r.error(
                    span.clone(),
                    format!("{key}.{k}"),
                    format!("a {ty} output needs `{k}`"),
                );
                None
            }
        }
    };

    let kind = match ty {
        "certificate" => {
            let pki_mount = need(r, o.pki_mount.as_ref(), "pki_mount");
            let role = need(r, o.role.as_ref(), "role");
            let common_name = need(r, o.common_name.as_ref(), "common_name");
            let dir = need(r, o.dir.as_ref(), "dir");
            let sans: Vec<String> = o
                .sans
                .as_ref()
                .map(|s| s.get_ref().iter().map(|x| x.get_ref().clone()).collect())
                .unwrap_or_default();
            let ttl = o
                .ttl
                .as_ref()
                .and_then(|t| duration(r, &format!("{key}.ttl"), t));
            let key_type = match &o.key_type {
                None => Some(KeyType::EcP256),
                Some(k) => {
                    let parsed = KeyType::parse(k.get_ref());
                    if parsed.is_none() {
                        r.error_help(
                            k.span(),
                            format!("{key}.key_type"),
                            format!("unknown key type `{}`", k.get_ref()),
                            did_you_mean(k.get_ref(), &KeyType::NAMES),
                        );
                    }
                    parsed
                }
            };
            let m = mode(r, &format!("{key}.mode"), o.mode.as_ref(), 0o644);
            let km = mode(r, &format!("{key}.key_mode"), o.key_mode.as_ref(), 0o600);
            if let Some(k) = &o.key_mode
                && km & 0o004 != 0
            {
                r.error(
                    k.span(),
                    format!("{key}.key_mode"),
                    format!("key mode {km:04o} is world-readable; a private key never is"),
                );
            }
            OutputKind::Certificate(CertificateOutput {
                pki_mount: pki_mount?.trim_matches('/').to_owned(),
                role: role?,
                common_name: common_name?,
                sans,
                ttl,
                key_type: key_type?,
                dir: resolve(&dir?),
                mode: m,
                key_mode: km,
            })
        }
        "template" => {
            let path = need(r, o.path.as_ref(), "path");
            let source = match (&o.template, &o.contents) {
                (Some(t), None) => Some(TemplateSource::File(resolve(t.get_ref()))),
                (None, Some(c)) => Some(TemplateSource::Inline(c.get_ref().clone())),
                (Some(t), Some(_)) => {
                    r.error(
                        t.span(),
                        format!("{key}.template"),
                        "set `template` (a file) or `contents` (inline), not both",
                    );
                    None
                }
                (None, None) => {
                    r.error(
                        span.clone(),
                        format!("{key}.template"),
                        "a template output needs `template` (a file) or `contents` (inline)",
                    );
                    None
                }
            };
            OutputKind::Template(TemplateConfig {
                source: source?,
                path: resolve(&path?),
                mode: mode(r, &format!("{key}.mode"), o.mode.as_ref(), 0o600),
            })
        }
        _ => {
            let pki_mount = need(r, o.pki_mount.as_ref(), "pki_mount");
            let path = need(r, o.path.as_ref(), "path");
            OutputKind::CaChain(CaChainConfig {
                pki_mount: pki_mount?.trim_matches('/').to_owned(),
                full_chain: o.full_chain.as_ref().is_some_and(|f| *f.get_ref()),
                path: resolve(&path?),
                mode: mode(r, &format!("{key}.mode"), o.mode.as_ref(), 0o644),
            })
        }
    };

    let reload = match (&o.reload, &o.reload_signal) {
        (Some(c), Some(_)) => {
            r.error(
                c.span(),
                format!("{key}.reload"),
                "set `reload` (a command) or `reload_signal`, not both",
            );
            None
        }
        (Some(c), None) => {
            let argv: Vec<String> = c.get_ref().iter().map(|a| a.get_ref().clone()).collect();
            if argv.first().is_none_or(|a| a.trim().is_empty()) {
                r.error(
                    c.span(),
                    format!("{key}.reload"),
                    "the reload command is empty: give an argv like [\"systemctl\", \"reload\", \"nginx\"]",
                );
                None
            } else {
                Some(Reload::Command(argv))
            }
        }
        (None, Some(s)) => {
            let s = s.get_ref();
            match parse_signal(s.signal.get_ref()) {
                Some(signal) => Some(Reload::Signal {
                    pid_file: resolve(s.pid_file.get_ref()),
                    signal,
                }),
                None => {
                    r.error_help(
                        s.signal.span(),
                        format!("{key}.reload_signal.signal"),
                        format!("unknown signal `{}`", s.signal.get_ref()),
                        did_you_mean(s.signal.get_ref(), &SIGNALS),
                    );
                    None
                }
            }
        }
        (None, None) => None,
    };

    Some(OutputConfig {
        name: o.name.get_ref().clone(),
        kind,
        reload,
        owner: o.owner.as_ref().map(|v| v.get_ref().clone()),
        group: o.group.as_ref().map(|v| v.get_ref().clone()),
    })
}

/// Signals a reload may send (the ones daemons use for "reload" or "reopen").
const SIGNALS: [&str; 6] = ["HUP", "USR1", "USR2", "TERM", "INT", "QUIT"];

fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    let s = s.trim().to_ascii_uppercase();
    Some(match s.strip_prefix("SIG").unwrap_or(&s) {
        "HUP" => Signal::SIGHUP,
        "USR1" => Signal::SIGUSR1,
        "USR2" => Signal::SIGUSR2,
        "TERM" => Signal::SIGTERM,
        "INT" => Signal::SIGINT,
        "QUIT" => Signal::SIGQUIT,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"
version = 1

[identity]
name        = "billing"
kind        = "app"
env         = "test"
common_name = "billing.identity.test.warden.internal"

[openbao]
address  = "https://127.0.0.1:8200"
ca_file  = "trust/ca.pem"

[auth]
method        = "cert"
mount         = "cert"
role          = "billing"
policy        = "billing"
cert_file     = "identity/client.crt"
key_file      = "identity/client.key"
pki_mount     = "pki_int"
identity_role = "billing-identity"

[renewal]
fraction = 0.667
jitter   = 0.05
margin   = "2m"
poll     = "5m"

[[output]]
name        = "tls"
type        = "certificate"
pki_mount   = "pki_int"
role        = "billing"
common_name = "billing.test.warden.internal"
sans        = ["billing-api.test.warden.internal"]
ttl         = "72h"
key_type    = "ec-p256"
dir         = "out/tls"
mode        = "0640"
reload      = ["systemctl", "reload", "billing"]

[[output]]
name     = "config"
type     = "template"
template = "templates/config.env.j2"
path     = "out/config.env"
mode     = "0600"
reload_signal = { pid_file = "/run/billing.pid", signal = "HUP" }

[[output]]
name       = "ca"
type       = "ca_chain"
pki_mount  = "pki_int"
path       = "out/ca/chain.pem"
full_chain = true
reload     = ["systemctl", "reload", "nginx"]

[health]
listen = "127.0.0.1:0"
[control]
socket = "state/control.sock"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/id/agent.toml"), Path::new("/id"))
    }

    fn errors(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_documented_example_parses_into_the_model() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.identity.kind, IdentityKind::App);
        assert_eq!(
            c.openbao.ca_file.as_deref(),
            Some(Path::new("/id/trust/ca.pem"))
        );
        assert_eq!(
            c.auth.method,
            AuthMethod::Cert {
                role: "billing".into()
            }
        );
        let tls = c.auth.tls_identity.as_ref().unwrap();
        assert_eq!(tls.key_file, Path::new("/id/identity/client.key"));
        assert_eq!(
            tls.renew_with,
            Some(("pki_int".to_owned(), "billing-identity".to_owned()))
        );
        assert_eq!(c.renewal.margin, Duration::from_secs(120));
        assert_eq!(c.renewal.poll, Duration::from_secs(300));
        assert_eq!(c.outputs.len(), 3);
        let OutputKind::Certificate(cert) = &c.outputs[0].kind else {
            panic!("certificate")
        };
        assert_eq!(cert.dir, Path::new("/id/out/tls"));
        assert_eq!(cert.mode, 0o640);
        assert_eq!(cert.key_mode, 0o600);
        assert_eq!(cert.ttl, Some(Duration::from_secs(72 * 3600)));
        assert_eq!(cert.key_type.as_str(), "ec-p256");
        assert!(matches!(
            &c.outputs[1].reload,
            Some(Reload::Signal {
                signal: nix::sys::signal::Signal::SIGHUP,
                ..
            })
        ));
        let OutputKind::CaChain(ca) = &c.outputs[2].kind else {
            panic!("ca_chain")
        };
        assert!(ca.full_chain);
        assert_eq!(c.health.unwrap().listen.port(), 0);
        assert_eq!(
            c.control.unwrap().socket,
            Path::new("/id/state/control.sock")
        );
        assert_eq!(c.state_dir, Path::new("/id/state"));
    }

    #[test]
    fn an_unknown_key_is_reported_at_its_line_with_a_suggestion() {
        let text = EXAMPLE.replace("full_chain = true", "ful_chain = true");
        let e = errors(&text);
        let line = text
            .lines()
            .position(|l| l.starts_with("ful_chain"))
            .unwrap()
            + 1;
        assert!(
            e.starts_with(&format!("/id/agent.toml:{line}:1: unknown key `ful_chain`")),
            "{e}"
        );
        assert!(e.contains("did you mean `full_chain`?"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_at_once_with_the_key() {
        let text = EXAMPLE
            .replace("kind        = \"app\"", "kind        = \"apq\"")
            .replace("fraction = 0.667", "fraction = 1.5")
            .replace("key_type    = \"ec-p256\"", "key_type    = \"ec-p265\"")
            .replace("mode     = \"0600\"", "mode     = \"0666\"")
            .replace("type       = \"ca_chain\"", "type       = \"ca-chain\"");
        let e = errors(&text);
        let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("/id/")).collect();
        assert_eq!(lines.len(), 5, "{e}");
        assert!(e.contains("identity.kind: unknown kind `apq`"), "{e}");
        assert!(e.contains("help: did you mean `app`?"), "{e}");
        assert!(
            e.contains("renewal.fraction: 1.5 is not between 0 and 1"),
            "{e}"
        );
        assert!(
            e.contains("output.tls.key_type: unknown key type `ec-p265`"),
            "{e}"
        );
        assert!(e.contains("did you mean `ec-p256`?"), "{e}");
        assert!(
            e.contains("output.config.mode: mode 0666 is world-writable"),
            "{e}"
        );
        assert!(
            e.contains("output.ca.type: unknown output type `ca-chain`"),
            "{e}"
        );
        assert!(e.contains("did you mean `ca_chain`?"), "{e}");
        // In file order, each with line and column.
        let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        assert!(
            lines[0].starts_with(&format!("/id/agent.toml:{}:", line_of("\"apq\""))),
            "{e}"
        );
    }

    #[test]
    fn keys_of_another_type_or_method_are_named() {
        let text = EXAMPLE.replace(
            "path     = \"out/config.env\"",
            "path     = \"out/config.env\"\ndir = \"x\"",
        );
        assert!(
            errors(&text).contains("output.config.dir: `dir` is not used by a template output"),
            "{}",
            errors(&text)
        );
        let text = EXAMPLE.replace(
            "identity_role = \"billing-identity\"",
            "identity_role = \"billing-identity\"\ntoken_file = \"/t\"",
        );
        assert!(
            errors(&text).contains("auth.token_file: `token_file` is not used by method `cert`")
        );
        let text = EXAMPLE.replace("role          = \"billing\"\n", "");
        assert!(errors(&text).contains("auth.role: method `cert` needs `role`"));
    }

    #[test]
    fn approle_and_jwt_configs_validate() {
        let auth_start = EXAMPLE.find("[auth]").unwrap();
        let auth_end = EXAMPLE.find("[renewal]").unwrap();
        let with_auth =
            |auth: &str| format!("{}{auth}\n{}", &EXAMPLE[..auth_start], &EXAMPLE[auth_end..]);
        let c = parse(&with_auth(
            "[auth]\nmethod = \"approle\"\npolicy = \"worker\"\nrole_id_file = \"approle/role-id\"\nsecret_id_file = \"approle/secret-id\"\nsecret_id_wrapped = true\ncert_file = \"tls/c.crt\"\nkey_file = \"tls/c.key\"\n",
        ))
        .unwrap();
        assert_eq!(c.auth.mount, "approle");
        assert_eq!(
            c.auth.method,
            AuthMethod::AppRole {
                role_id_file: "/id/approle/role-id".into(),
                secret_id_file: "/id/approle/secret-id".into(),
                secret_id_wrapped: true,
            }
        );
        assert!(c.auth.tls_identity.as_ref().unwrap().renew_with.is_none());
        let c = parse(&with_auth(
            "[auth]\nmethod = \"jwt\"\nmount = \"jwt\"\nrole = \"ci\"\npolicy = \"ci\"\ntoken_file = \"/var/run/token\"\n",
        ))
        .unwrap();
        assert!(matches!(c.auth.method, AuthMethod::Jwt { .. }));
        assert!(c.auth.tls_identity.is_none());
        let e = parse(&with_auth("[auth]\nmethod = \"approle\"\npolicy = \"w\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.role_id_file: method `approle` needs `role_id_file`"),
            "{e}"
        );
        assert!(e.contains("auth.secret_id_file"), "{e}");
        let e = parse(&with_auth("[auth]\nmethod = \"certs\"\npolicy = \"w\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `cert`?"), "{e}");
    }

    #[test]
    fn duplicates_and_collisions_are_refused() {
        let text = format!(
            "{EXAMPLE}\n[[output]]\nname = \"tls\"\ntype = \"template\"\ncontents = \"x\"\npath = \"out/config.env\"\n"
        );
        let e = errors(&text);
        assert!(e.contains("two outputs are called `tls`"), "{e}");
        assert!(
            e.contains("out/config.env is already written by another output"),
            "{e}"
        );
    }

    #[test]
    fn certificates_and_chains_need_a_trust_anchor() {
        let text = EXAMPLE.replace("ca_file  = \"trust/ca.pem\"\n", "");
        let e = errors(&text);
        assert!(
            e.contains("openbao.ca_file: output `tls` needs a trust anchor"),
            "{e}"
        );
    }

    #[test]
    fn defaults_apply_when_renewal_is_left_out() {
        let start = EXAMPLE.find("[renewal]").unwrap();
        let end = EXAMPLE.find("[[output]]").unwrap();
        let text = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
        let c = parse(&text).unwrap();
        assert_eq!(c.renewal, RenewalConfig::default());
    }

    #[test]
    fn a_toml_syntax_error_points_at_its_position() {
        let e = errors("version = 1\n[identity\n");
        assert!(e.starts_with("/id/agent.toml:2:"), "{e}");
    }
}
