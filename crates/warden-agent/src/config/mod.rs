//! `agent.toml` → a validated [`Config`].
//!
//! The file is read with spans (`toml::Spanned`) and `deny_unknown_fields`, then checked as a
//! whole: every problem is reported at once, each at `file:line:col key: message`, with a "did
//! you mean" for misspelt words. A hand-written file goes through exactly the same checks as one
//! written by `warden identity enroll`, so "it parsed" means "the agent can run it".
//!
//! Relative paths are resolved against the directory holding `agent.toml` (the identity
//! directory), so the config does not depend on the agent's working directory.
//!
//! One file per concept: this module holds the whole-file model and the checks that span
//! sections; `auth` the `[auth]` section, `outputs` each `[[output]]`, `database` each
//! `[[database]]` source. Everything is re-exported here, so `config::OutputConfig` and
//! friends keep one path.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use warden_spec::{Diagnostic, Reporter, did_you_mean, explain_toml_error};

mod auth;
mod database;
mod exec;
mod outputs;
mod trusted;

pub use super::output::template::TemplateSource;
pub use auth::{AuthConfig, AuthMethod, TlsIdentity};
pub use database::DatabaseSource;
pub(crate) use exec::reserved_env_name;
pub use exec::{ExecEnv, ExecRestart, ExecSettings};
pub use outputs::{
    CaChainConfig, CertificateOutput, CrlConfig, KeyType, OutputConfig, OutputKind, Reload,
    SigningKeyOutputConfig, TemplateConfig,
};
pub use trusted::UntrustedFile;
pub(crate) use trusted::read_trusted;

use auth::{RawAuth, validate_auth};
use database::{RawDatabase, validate_databases};
use exec::{RawExec, RawExecEnv, validate_exec, validate_exec_env};
use outputs::{RawOutput, validate_output};

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
    /// Dynamic database credentials templates may read (`database("<name>")`), in file order.
    pub databases: Vec<DatabaseSource>,
    /// `[[exec_env]]`: what `warden-agent exec` puts into its child's environment.
    pub exec_env: Vec<ExecEnv>,
    /// `[exec]`: how `warden-agent exec` treats its child.
    pub exec: ExecSettings,
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

/// `identity.kind`: the spec's kinds, of which an agent runs as `app`, `proxy` or `container`
/// (a CI pipeline logs in with its own job token and runs no agent).
pub use warden_spec::IdentityKind;

/// `[openbao]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBaoConfig {
    /// API addresses, in the order the client tries them (`address = "…"` is a list of one;
    /// `addresses = [...]` the nodes of a cluster, with failover between them). Never empty
    /// once validated.
    pub addresses: Vec<String>,
    /// Trust anchor(s) for the API and for every chain the agent verifies.
    pub ca_file: Option<PathBuf>,
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
    /// Once a PKI mount's default issuer changes (an intermediate rotation), every certificate
    /// from another issuer is re-issued within this window, each at a point set by its serial
    /// (ADR 0029).
    pub issuer_window: Duration,
}

impl Default for RenewalConfig {
    fn default() -> Self {
        Self {
            fraction: 0.667,
            jitter: 0.05,
            margin: Duration::from_secs(120),
            poll: Duration::from_secs(300),
            issuer_window: Duration::from_secs(3600),
        }
    }
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
    /// The file is not one the agent may act on: another user could have written it, or it
    /// is not a regular file of a sane size.
    #[error(transparent)]
    Untrusted(#[from] UntrustedFile),
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

/// The largest `agent.toml` the agent reads; an enrolled one is a few KiB.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(&text, path)
    }

    /// Reads and validates `path` for the agent that will act on it: as [`Config::load`], but
    /// the file must be a regular file (at most 1 MiB) that only root or the agent's user can
    /// write, since it names the commands the agent runs and where it writes secrets. Readers
    /// that only look (status of another user's agent) use [`Config::load`].
    pub fn load_trusted(path: &Path) -> Result<Self, ConfigError> {
        let text = read_trusted(path, MAX_CONFIG_BYTES).map_err(|e| match e {
            UntrustedFile::Io { path, source } => ConfigError::Io { path, source },
            e => ConfigError::Untrusted(e),
        })?;
        Self::from_text(&text, path)
    }

    fn from_text(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(text, &path, &base)
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
    database: Vec<S<RawDatabase>>,
    #[serde(default)]
    exec_env: Vec<S<RawExecEnv>>,
    #[serde(default)]
    exec: Option<S<RawExec>>,
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
    #[serde(default)]
    address: Option<S<String>>,
    #[serde(default)]
    addresses: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    ca_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRenewal {
    fraction: Option<S<f64>>,
    jitter: Option<S<f64>>,
    margin: Option<S<String>>,
    poll: Option<S<String>>,
    issuer_window: Option<S<String>>,
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
    let identity = validate_identity(raw.identity.get_ref(), r);
    let openbao = validate_openbao(raw.openbao.get_ref(), raw.openbao.span(), &resolve, r);
    let auth = validate_auth(raw.auth.get_ref(), raw.auth.span(), &resolve, r);
    let renewal = raw
        .renewal
        .as_ref()
        .map_or_else(RenewalConfig::default, |s| validate_renewal(s.get_ref(), r));
    let outputs = validate_outputs(&raw.output, &resolve, r);
    // Certificates and CA chains are verified against the trust anchor before delivery;
    // templates and signing keys carry no chain.
    if openbao.ca_file.is_none()
        && let Some(o) = outputs
            .iter()
            .find(|o| !matches!(o.kind, OutputKind::Template(_) | OutputKind::SigningKey(_)))
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
    if raw.output.is_empty() && raw.exec_env.is_empty() {
        r.error(
            0..0,
            "output",
            "no [[output]] and no [[exec_env]]: an agent with nothing to deliver has nothing to do",
        );
    }
    let exec_env = validate_exec_env(&raw.exec_env, r);
    let exec = validate_exec(raw.exec.as_ref().map(S::get_ref), r);
    let health = raw
        .health
        .as_ref()
        .and_then(|h| validate_health(h.get_ref(), r));
    let databases = validate_databases(&raw.database, r);
    let control = raw.control.as_ref().map(|c| ControlConfig {
        socket: resolve(c.get_ref().socket.get_ref()),
    });

    if !r.is_empty() {
        return None;
    }
    Some(Config {
        path: path.to_path_buf(),
        base_dir: base.to_path_buf(),
        identity: identity?,
        openbao,
        auth: auth?,
        renewal,
        outputs,
        databases,
        exec_env,
        exec,
        health,
        control,
        state_dir: base.join("state"),
    })
}

/// `[identity]`: a kind an agent runs as, and no blank name, env or common name.
fn validate_identity(id: &RawIdentity, r: &mut Reporter<'_>) -> Option<IdentityConfig> {
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
    Some(IdentityConfig {
        name: id.name.get_ref().clone(),
        kind: kind?,
        env: id.env.get_ref().clone(),
        common_name: id.common_name.get_ref().clone(),
    })
}

/// `[openbao]`: one `address` or a non-empty list of distinct `addresses`, each an http(s)
/// URL with a host, and the trust anchor resolved.
fn validate_openbao(
    ob: &RawOpenBao,
    span: Range<usize>,
    resolve: &dyn Fn(&str) -> PathBuf,
    r: &mut Reporter<'_>,
) -> OpenBaoConfig {
    let (key, list): (&str, Vec<&S<String>>) = match (&ob.address, &ob.addresses) {
        (Some(a), None) => ("openbao.address", vec![a]),
        (None, Some(list)) if !list.get_ref().is_empty() => {
            ("openbao.addresses", list.get_ref().iter().collect())
        }
        (None, Some(list)) => {
            r.error_help(
                list.span(),
                "openbao.addresses",
                "an empty address list",
                Some("list every OpenBao node, e.g. addresses = [\"https://10.0.0.11:8200\", \"https://10.0.0.12:8200\"]".into()),
            );
            ("openbao.addresses", Vec::new())
        }
        (Some(a), Some(_)) => {
            r.error_help(
                a.span(),
                "openbao.address",
                "`address` and `addresses` are exclusive",
                Some("keep `addresses` (every node, tried in order) and remove `address`".into()),
            );
            ("openbao.address", Vec::new())
        }
        (None, None) => {
            r.error_help(
                span,
                "openbao",
                "no server address",
                Some("add address = \"https://…:8200\" (one server) or addresses = [...] (the nodes of a cluster)".into()),
            );
            ("openbao.address", Vec::new())
        }
    };
    let mut seen: Vec<url::Url> = Vec::new();
    for a in &list {
        match url::Url::parse(a.get_ref()) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {
                if seen.contains(&u) {
                    r.error(a.span(), key, format!("`{}` is listed twice", a.get_ref()));
                } else if seen.iter().any(|s| s.scheme() != u.scheme()) {
                    // A failover to a plain-HTTP node would send the token in clear.
                    r.error(
                        a.span(),
                        key,
                        "the nodes mix http:// and https://: give every node https://",
                    );
                }
                seen.push(u);
            }
            Ok(_) => r.error(
                a.span(),
                key,
                "the address must be an https:// (or http://) URL with a host",
            ),
            Err(e) => r.error(a.span(), key, format!("not a URL: {e}")),
        }
    }
    OpenBaoConfig {
        addresses: list.iter().map(|a| a.get_ref().clone()).collect(),
        ca_file: ob.ca_file.as_ref().map(|c| resolve(c.get_ref())),
    }
}

/// Every `[[output]]`, in file order: each valid on its own, names unique, and no two writing
/// the same target (they would overwrite each other at every poll).
fn validate_outputs(
    raw: &[S<RawOutput>],
    resolve: &dyn Fn(&str) -> PathBuf,
    r: &mut Reporter<'_>,
) -> Vec<OutputConfig> {
    let mut names = BTreeSet::new();
    let mut targets: Vec<(PathBuf, Range<usize>)> = Vec::new();
    let mut outputs = Vec::new();
    for (i, out) in raw.iter().enumerate() {
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
        if let Some(v) = validate_output(o, out.span(), &key, resolve, r) {
            let target = match &v.kind {
                OutputKind::Certificate(c) => c.dir.clone(),
                OutputKind::Template(t) => t.path.clone(),
                OutputKind::CaChain(c) => c.path.clone(),
                OutputKind::Crl(c) => c.path.clone(),
                OutputKind::SigningKey(k) => k.dir.clone(),
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
    outputs
}

/// `[health]`: the listen address.
fn validate_health(h: &RawHealth, r: &mut Reporter<'_>) -> Option<HealthConfig> {
    let l = &h.listen;
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
}

pub(super) fn non_empty(r: &mut Reporter<'_>, key: &str, v: &S<String>) {
    if v.get_ref().trim().is_empty() {
        r.error(v.span(), key, "must not be empty");
    }
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
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
        } else if d > MAX_POLL {
            // Added to dates at every look: `8000y` for `8000s` would overflow the calendar.
            r.error(
                p.span(),
                "renewal.poll",
                "poll must be at most 365d (it is how often every output is looked at)",
            );
        } else {
            out.poll = d;
        }
    }
    if let Some(w) = &raw.issuer_window
        && let Some(d) = duration(r, "renewal.issuer_window", w)
    {
        // A re-issue spread longer than an intermediate's overlap could ever be is a typo
        // (`8000y` for `8000s`), and would overflow the date arithmetic of the spread.
        if d > MAX_ISSUER_WINDOW {
            r.error(
                w.span(),
                "renewal.issuer_window",
                "issuer_window must be at most 365d (it is the time agents spread re-issues over after an issuer change)",
            );
        } else {
            out.issuer_window = d;
        }
    }
    out
}

/// The longest `[renewal] poll` accepted.
const MAX_POLL: Duration = Duration::from_secs(365 * 86_400);

/// The longest `[renewal] issuer_window` accepted.
const MAX_ISSUER_WINDOW: Duration = Duration::from_secs(365 * 86_400);

pub(super) fn duration(r: &mut Reporter<'_>, key: &str, v: &S<String>) -> Option<Duration> {
    match warden_spec::parse_duration(v.get_ref()) {
        Ok(d) => Some(d),
        Err(e) => {
            r.error(v.span(), key, e.to_string());
            None
        }
    }
}

pub(super) fn mode(r: &mut Reporter<'_>, key: &str, v: Option<&S<String>>, default: u32) -> u32 {
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

#[cfg(test)]
mod tests;
