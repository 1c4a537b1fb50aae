//! `[[output]]`: what the agent delivers (certificate sets, templates, CA chains) and what it
//! runs after a change.
//!
//! Each output takes only the keys of its `type`; any other key set is an error naming it.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use warden_spec::{Reporter, did_you_mean};

use super::{S, TemplateSource, duration, mode};

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
    /// `certificate`, `template`, `ca_chain` or `crl`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            OutputKind::Certificate(_) => "certificate",
            OutputKind::Template(_) => "template",
            OutputKind::CaChain(_) => "ca_chain",
            OutputKind::Crl(_) => "crl",
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
    /// The certificate revocation list of a PKI mount (proxies check peers against it).
    Crl(CrlConfig),
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
    /// The purpose that governs this certificate (`warden identity enroll` writes it from the
    /// spec). Before every issuance the agent reads its registry entry and refuses, keeping the
    /// valid certificate, when the purpose is revoked or the certificate outlived its
    /// interval + grace (docs/agent.md#fail-closed).
    pub purpose: Option<String>,
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

/// `type = "crl"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlConfig {
    /// PKI mount whose CRL is delivered.
    pub pki_mount: String,
    /// The file written (PEM).
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub(super) name: S<String>,
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
    purpose: Option<S<String>>,
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

pub(super) fn validate_output(
    o: &RawOutput,
    span: Range<usize>,
    key: &str,
    resolve: &dyn Fn(&str) -> PathBuf,
    r: &mut Reporter<'_>,
) -> Option<OutputConfig> {
    const TYPES: [&str; 4] = ["certificate", "template", "ca_chain", "crl"];
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
    reject_foreign_keys(o, ty, key, r);
    let at = At {
        key,
        ty,
        span,
        resolve,
    };
    // A type-specific part that failed ends the check here: its reload is not looked at.
    let kind = match ty {
        "certificate" => OutputKind::Certificate(certificate(o, &at, r)?),
        "template" => OutputKind::Template(template(o, &at, r)?),
        "crl" => OutputKind::Crl(crl(o, &at, r)?),
        _ => OutputKind::CaChain(ca_chain(o, &at, r)?),
    };
    Some(OutputConfig {
        name: o.name.get_ref().clone(),
        kind,
        reload: reload(o, key, resolve, r),
        owner: o.owner.as_ref().map(|v| v.get_ref().clone()),
        group: o.group.as_ref().map(|v| v.get_ref().clone()),
    })
}

/// The optional keys a type of output takes.
fn keys_of(ty: &str) -> &'static [&'static str] {
    match ty {
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
            "purpose",
        ],
        "template" => &["template", "contents", "path", "mode"],
        "crl" => &["pki_mount", "path", "mode"],
        _ => &["pki_mount", "full_chain", "path", "mode"],
    }
}

/// Reports every type-specific key set on an output whose type does not use it, so a key left
/// over from another type is never silently ignored.
fn reject_foreign_keys(o: &RawOutput, ty: &str, key: &str, r: &mut Reporter<'_>) {
    let allowed = keys_of(ty);
    let present: [(&str, Option<Range<usize>>); 14] = [
        ("pki_mount", o.pki_mount.as_ref().map(S::span)),
        ("role", o.role.as_ref().map(S::span)),
        ("common_name", o.common_name.as_ref().map(S::span)),
        ("sans", o.sans.as_ref().map(S::span)),
        ("ttl", o.ttl.as_ref().map(S::span)),
        ("key_type", o.key_type.as_ref().map(S::span)),
        ("dir", o.dir.as_ref().map(S::span)),
        ("key_mode", o.key_mode.as_ref().map(S::span)),
        ("purpose", o.purpose.as_ref().map(S::span)),
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
}

/// The output being checked: where its diagnostics point and how its paths resolve.
struct At<'a> {
    /// `output.<name>` (or `output[<i>]`), the prefix of every diagnostic key.
    key: &'a str,
    /// Its `type`.
    ty: &'a str,
    /// The whole `[[output]]` table, where a missing key is reported.
    span: Range<usize>,
    /// Makes a relative path absolute against the config's directory.
    resolve: &'a dyn Fn(&str) -> PathBuf,
}

impl At<'_> {
    /// A required string key: reported at the table when missing, at the value when blank.
    fn need(&self, r: &mut Reporter<'_>, v: Option<&S<String>>, k: &str) -> Option<String> {
        let (key, ty) = (self.key, self.ty);
        match v {
            Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().clone()),
            Some(v) => {
                r.error(v.span(), format!("{key}.{k}"), "must not be empty");
                None
            }
            None => {
                r.error(
                    self.span.clone(),
                    format!("{key}.{k}"),
                    format!("a {ty} output needs `{k}`"),
                );
                None
            }
        }
    }

    /// A file mode key, `default` when absent.
    fn mode(&self, r: &mut Reporter<'_>, k: &str, v: Option<&S<String>>, default: u32) -> u32 {
        mode(r, &format!("{}.{k}", self.key), v, default)
    }
}

/// `type = "certificate"`. Every key is checked before any failure ends the check, so one run
/// reports all of them.
fn certificate(o: &RawOutput, at: &At<'_>, r: &mut Reporter<'_>) -> Option<CertificateOutput> {
    let key = at.key;
    let pki_mount = at.need(r, o.pki_mount.as_ref(), "pki_mount");
    let role = at.need(r, o.role.as_ref(), "role");
    let common_name = at.need(r, o.common_name.as_ref(), "common_name");
    let dir = at.need(r, o.dir.as_ref(), "dir");
    let sans: Vec<String> = o
        .sans
        .as_ref()
        .map(|s| s.get_ref().iter().map(|x| x.get_ref().clone()).collect())
        .unwrap_or_default();
    let ttl = o
        .ttl
        .as_ref()
        .and_then(|t| duration(r, &format!("{key}.ttl"), t));
    let key_type = key_type(o.key_type.as_ref(), key, r);
    let m = at.mode(r, "mode", o.mode.as_ref(), 0o644);
    let km = at.mode(r, "key_mode", o.key_mode.as_ref(), 0o600);
    if let Some(k) = &o.key_mode
        && km & 0o004 != 0
    {
        r.error(
            k.span(),
            format!("{key}.key_mode"),
            format!("key mode {km:04o} is world-readable; a private key never is"),
        );
    }
    Some(CertificateOutput {
        pki_mount: pki_mount?.trim_matches('/').to_owned(),
        role: role?,
        common_name: common_name?,
        sans,
        ttl,
        key_type: key_type?,
        dir: (at.resolve)(&dir?),
        mode: m,
        key_mode: km,
        purpose: o.purpose.as_ref().map(|p| p.get_ref().clone()),
    })
}

/// `key_type`, P-256 when absent.
fn key_type(v: Option<&S<String>>, key: &str, r: &mut Reporter<'_>) -> Option<KeyType> {
    let Some(k) = v else {
        return Some(KeyType::EcP256);
    };
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

/// `type = "template"`: a path and exactly one of a template file or inline contents.
fn template(o: &RawOutput, at: &At<'_>, r: &mut Reporter<'_>) -> Option<TemplateConfig> {
    let key = at.key;
    let path = at.need(r, o.path.as_ref(), "path");
    let source = match (&o.template, &o.contents) {
        (Some(t), None) => Some(TemplateSource::File((at.resolve)(t.get_ref()))),
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
                at.span.clone(),
                format!("{key}.template"),
                "a template output needs `template` (a file) or `contents` (inline)",
            );
            None
        }
    };
    Some(TemplateConfig {
        source: source?,
        path: (at.resolve)(&path?),
        mode: at.mode(r, "mode", o.mode.as_ref(), 0o600),
    })
}

/// `type = "ca_chain"`.
fn ca_chain(o: &RawOutput, at: &At<'_>, r: &mut Reporter<'_>) -> Option<CaChainConfig> {
    let pki_mount = at.need(r, o.pki_mount.as_ref(), "pki_mount");
    let path = at.need(r, o.path.as_ref(), "path");
    Some(CaChainConfig {
        pki_mount: pki_mount?.trim_matches('/').to_owned(),
        full_chain: o.full_chain.as_ref().is_some_and(|f| *f.get_ref()),
        path: (at.resolve)(&path?),
        mode: at.mode(r, "mode", o.mode.as_ref(), 0o644),
    })
}

/// `type = "crl"`.
fn crl(o: &RawOutput, at: &At<'_>, r: &mut Reporter<'_>) -> Option<CrlConfig> {
    let pki_mount = at.need(r, o.pki_mount.as_ref(), "pki_mount");
    let path = at.need(r, o.path.as_ref(), "path");
    Some(CrlConfig {
        pki_mount: pki_mount?.trim_matches('/').to_owned(),
        path: (at.resolve)(&path?),
        mode: at.mode(r, "mode", o.mode.as_ref(), 0o644),
    })
}

/// `reload` (an argv) or `reload_signal`, at most one; `None` when neither is set or the one set
/// is invalid (then reported).
fn reload(
    o: &RawOutput,
    key: &str,
    resolve: &dyn Fn(&str) -> PathBuf,
    r: &mut Reporter<'_>,
) -> Option<Reload> {
    match (&o.reload, &o.reload_signal) {
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
    }
}

/// Signals a reload may send (the ones daemons use for "reload" or "reopen").
pub(super) const SIGNALS: [&str; 6] = ["HUP", "USR1", "USR2", "TERM", "INT", "QUIT"];

pub(super) fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
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
