//! `[[exec_env]]` and `[exec]`: the secrets `warden-agent exec -- CMD…` puts into its child's
//! environment, and how it treats the child when they change.
//!
//! ```toml
//! [[exec_env]]
//! name    = "STRIPE"              # with `field`: the variable; without: a prefix, one
//! mount   = "kvv2"                #   variable per key (STRIPE_API_KEY for key `api_key`)
//! path    = "billing/stripe"      # a KV version 2 secret
//! # field = "api_key"
//! purpose = "billing-stripe"      # checked before every new value (fail closed)
//!
//! [exec]
//! restart       = "restart"       # or "signal:HUP": signal the child instead of restarting it
//! debounce      = "2s"            # a change is re-read after this, then acted on once
//! kill_timeout  = "10s"           # SIGTERM, this long, then SIGKILL (restart and stop)
//! start_timeout = "2m"            # give up (exit 1) when the values are not there by then
//! ```
//!
//! Only `warden-agent exec` reads these; `warden identity enroll` writes one `[[exec_env]]`
//! per secret whose purpose says `delivery = "exec_env"` (and no file output for it).

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;
use warden_spec::{Reporter, did_you_mean};

use super::{S, duration, non_empty, valid_name};

/// One `[[exec_env]]`: a KV v2 secret (or one field of it) for the child's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEnv {
    /// The variable (with `field`) or the prefix of one variable per key (without).
    pub name: String,
    /// The KV version 2 mount.
    pub mount: String,
    /// The secret's path under the mount.
    pub path: String,
    /// One key of the secret; `None`: every key, as `<name>_<KEY>`.
    pub field: Option<String>,
    /// The purpose governing the secret: revoked or outside grace, no new value reaches the
    /// child.
    pub purpose: Option<String>,
}

/// What happens to the running child when a value changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecRestart {
    /// Stop it (SIGTERM, then SIGKILL after `kill_timeout`) and start it again with the new
    /// values.
    Restart,
    /// Send it this signal; its environment keeps the values it started with.
    Signal(Signal),
}

/// `[exec]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecSettings {
    /// Restart or signal on change.
    pub restart: ExecRestart,
    /// How long a change settles before it is acted on (one restart for a burst of writes).
    pub debounce: Duration,
    /// Grace between SIGTERM and SIGKILL.
    pub kill_timeout: Duration,
    /// How long the first values may take before `exec` gives up.
    pub start_timeout: Duration,
}

impl Default for ExecSettings {
    fn default() -> Self {
        Self {
            restart: ExecRestart::Restart,
            debounce: Duration::from_secs(2),
            kill_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExecEnv {
    name: S<String>,
    mount: S<String>,
    path: S<String>,
    #[serde(default)]
    field: Option<S<String>>,
    #[serde(default)]
    purpose: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExec {
    restart: Option<S<String>>,
    debounce: Option<S<String>>,
    kill_timeout: Option<S<String>>,
    start_timeout: Option<S<String>>,
}

/// An environment variable name a shell can use: `[A-Za-z_][A-Za-z0-9_]*`, at most 128.
fn valid_env_name(s: &str) -> bool {
    s.len() <= 128
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Variables that change how the child is loaded or how its interpreter starts, rather than
/// what it reads as configuration: whoever can write the KV secret must not be able to run code
/// in the service through them (`LD_PRELOAD=/tmp/evil.so`, `BASH_ENV`, `NODE_OPTIONS=--require`).
/// The same for the child's TLS trust (`NODE_TLS_REJECT_UNAUTHORIZED=0`, a CA bundle of the
/// writer's choosing). Exact names; see [`RESERVED_PREFIXES`] for whole families.
const RESERVED_NAMES: [&str; 38] = [
    "PATH",
    "IFS",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "CDPATH",
    "GLOBIGNORE",
    "GCONV_PATH",
    "GETCONF_DIR",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TMPDIR",
    "TZDIR",
    "NODE_OPTIONS",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "NODE_TLS_REJECT_UNAUTHORIZED",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PYTHONHTTPSVERIFY",
    "GODEBUG",
];

/// Families of loader variables (`LD_PRELOAD`, `LD_LIBRARY_PATH`, …) and exported shell
/// functions (`BASH_FUNC_x%%`).
const RESERVED_PREFIXES: [&str; 4] = ["LD_", "DYLD_", "BASH_FUNC_", "GLIBC_"];

/// Why `name` may not come from a secret, if it may not: the one check for a configured
/// name and for a name built from a secret's keys at run time.
pub(crate) fn reserved_env_name(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if RESERVED_NAMES.contains(&upper.as_str()) {
        return Some(
            "it changes how the command (or its interpreter) starts, finds programs or trusts TLS peers",
        );
    }
    RESERVED_PREFIXES
        .iter()
        .any(|p| upper.starts_with(p))
        .then_some("it changes which code the dynamic loader or the shell runs")
}

/// A clean `a/b/c`: no empty, `.` or `..` segment, nothing that changes a URL's meaning.
fn clean_path(s: &str) -> bool {
    let t = s.trim_matches('/');
    !t.is_empty()
        && t.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && !t
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '%'))
}

pub(super) fn validate_exec_env(raw: &[S<RawExecEnv>], r: &mut Reporter<'_>) -> Vec<ExecEnv> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let e = e.get_ref();
        let name = e.name.get_ref();
        let key = format!("exec_env[{i}]");
        let mut ok = true;
        if !valid_env_name(name) {
            r.error_help(
                e.name.span(),
                format!("{key}.name"),
                format!("`{name}` is not an environment variable name"),
                Some("use letters, digits and `_`, not starting with a digit, e.g. \"STRIPE_API_KEY\"".to_owned()),
            );
            ok = false;
        } else if let Some(why) = reserved_env_name(name).or_else(|| {
            // Without `field` the name is a prefix: `LD` would give `LD_PRELOAD` for a key
            // `preload`.
            e.field
                .is_none()
                .then(|| reserved_env_name(&format!("{name}_")))
                .flatten()
        }) {
            r.error_help(
                e.name.span(),
                format!("{key}.name"),
                format!("`{name}` may not be set from a secret: {why}"),
                Some("name the variable after what it holds, e.g. \"STRIPE_API_KEY\"; set loader and interpreter variables in the service's unit, not in OpenBao".to_owned()),
            );
            ok = false;
        } else if !names.insert(name.clone()) {
            r.error(
                e.name.span(),
                format!("{key}.name"),
                format!("two [[exec_env]] entries are called `{name}`: names must be unique"),
            );
            ok = false;
        }
        for (k, v) in [("mount", &e.mount), ("path", &e.path)] {
            if !clean_path(v.get_ref()) {
                r.error_help(
                    v.span(),
                    format!("{key}.{k}"),
                    format!("`{}` is not a valid KV {k}", v.get_ref()),
                    Some("non-empty segments separated by `/`, no `.`, `..`, `?`, `#`, `%` or spaces, e.g. mount = \"kvv2\", path = \"billing/stripe\"".to_owned()),
                );
                ok = false;
            }
        }
        if let Some(f) = &e.field {
            non_empty(r, &format!("{key}.field"), f);
        }
        if let Some(p) = &e.purpose
            && !valid_name(p.get_ref())
        {
            r.error(
                p.span(),
                format!("{key}.purpose"),
                format!("`{}` is not a purpose id", p.get_ref()),
            );
            ok = false;
        }
        if ok {
            out.push(ExecEnv {
                name: name.clone(),
                mount: e.mount.get_ref().trim_matches('/').to_owned(),
                path: e.path.get_ref().trim_matches('/').to_owned(),
                field: e.field.as_ref().map(|f| f.get_ref().clone()),
                purpose: e.purpose.as_ref().map(|p| p.get_ref().clone()),
            });
        }
    }
    out
}

pub(super) fn validate_exec(raw: Option<&RawExec>, r: &mut Reporter<'_>) -> ExecSettings {
    let mut out = ExecSettings::default();
    let Some(raw) = raw else { return out };
    if let Some(v) = &raw.restart {
        let s = v.get_ref().trim();
        match s.strip_prefix("signal:") {
            None if s == "restart" => out.restart = ExecRestart::Restart,
            Some(sig) => match super::outputs::parse_signal(sig) {
                Some(sig) => out.restart = ExecRestart::Signal(sig),
                None => r.error_help(
                    v.span(),
                    "exec.restart",
                    format!("unknown signal `{sig}`"),
                    did_you_mean(sig, &super::outputs::SIGNALS)
                        .or_else(|| Some(format!("one of {}", super::outputs::SIGNALS.join(", ")))),
                ),
            },
            None => r.error_help(
                v.span(),
                "exec.restart",
                format!("`{s}` is neither `restart` nor `signal:<SIGNAL>`"),
                Some("write restart = \"restart\" or restart = \"signal:HUP\"".to_owned()),
            ),
        }
    }
    for (k, v, slot) in [
        ("exec.debounce", &raw.debounce, &mut out.debounce),
        (
            "exec.kill_timeout",
            &raw.kill_timeout,
            &mut out.kill_timeout,
        ),
        (
            "exec.start_timeout",
            &raw.start_timeout,
            &mut out.start_timeout,
        ),
    ] {
        if let Some(v) = v
            && let Some(d) = duration(r, k, v)
        {
            *slot = d;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::EXAMPLE;
    use super::super::{Config, ConfigError};
    use super::*;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("{EXAMPLE}\n{extra}"),
            Path::new("/id/agent.toml"),
            Path::new("/id"),
        )
    }

    #[test]
    fn exec_env_and_exec_parse_into_the_model() {
        let c = parse(
            r#"
[[exec_env]]
name    = "STRIPE"
mount   = "/kvv2/"
path    = "billing/stripe"
purpose = "billing-stripe"

[[exec_env]]
name  = "DB_URL"
mount = "kvv2"
path  = "billing/config"
field = "db_url"

[exec]
restart      = "signal:SIGUSR1"
debounce     = "1s"
kill_timeout = "3s"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.exec_env.len(), 2);
        assert_eq!(c.exec_env[0].mount, "kvv2");
        assert_eq!(c.exec_env[0].field, None);
        assert_eq!(c.exec_env[1].field.as_deref(), Some("db_url"));
        assert_eq!(c.exec.restart, ExecRestart::Signal(Signal::SIGUSR1));
        assert_eq!(c.exec.debounce, Duration::from_secs(1));
        assert_eq!(c.exec.kill_timeout, Duration::from_secs(3));
        assert_eq!(c.exec.start_timeout, ExecSettings::default().start_timeout);
        // Without them: nothing to export, the defaults.
        let plain = parse("").unwrap();
        assert!(plain.exec_env.is_empty());
        assert_eq!(plain.exec, ExecSettings::default());
    }

    #[test]
    fn mistakes_are_named_at_their_line() {
        let err = parse(
            r#"
[[exec_env]]
name  = "1BAD"
mount = "kvv2"
path  = "billing/../x"

[[exec_env]]
name  = "OK"
mount = "kvv2"
path  = "billing/stripe"

[[exec_env]]
name  = "OK"
mount = "kvv2"
path  = "billing/config"

[exec]
restart = "signal:HUPP"
"#,
        )
        .expect_err("invalid")
        .to_string();
        assert!(
            err.contains("`1BAD` is not an environment variable name"),
            "{err}"
        );
        assert!(err.contains("exec_env[0].path"), "{err}");
        assert!(
            err.contains("two [[exec_env]] entries are called `OK`"),
            "{err}"
        );
        assert!(err.contains("unknown signal `HUPP`"), "{err}");
        assert!(err.contains("/id/agent.toml:"), "{err}");
        let err = parse("[exec]\nrestart = \"reboot\"\n")
            .expect_err("invalid")
            .to_string();
        assert!(
            err.contains("neither `restart` nor `signal:<SIGNAL>`"),
            "{err}"
        );
    }

    #[test]
    fn env_names() {
        assert!(valid_env_name("STRIPE_API_KEY"));
        assert!(valid_env_name("_x1"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name("A-B"));
        assert!(!valid_env_name(""));
        assert!(!valid_env_name("A=B"));
    }

    /// Red team (issue 17): whoever may write the KV secret must not be able to run code in
    /// the service through the loader or its interpreter.
    #[test]
    fn loader_and_interpreter_variables_are_refused() {
        for bad in [
            "LD_PRELOAD",
            "ld_library_path",
            "PATH",
            "BASH_ENV",
            "NODE_OPTIONS",
            "NODE_TLS_REJECT_UNAUTHORIZED",
            "SSL_CERT_FILE",
        ] {
            let err = parse(&format!(
                "[[exec_env]]\nname = \"{bad}\"\nmount = \"kvv2\"\npath = \"a/b\"\nfield = \"v\"\n"
            ))
            .expect_err(bad)
            .to_string();
            assert!(err.contains("may not be set from a secret"), "{bad}: {err}");
        }
        // A prefix that builds `LD_<KEY>` names.
        let err = parse("[[exec_env]]\nname = \"LD\"\nmount = \"kvv2\"\npath = \"a/b\"\n")
            .expect_err("LD prefix")
            .to_string();
        assert!(err.contains("may not be set from a secret"), "{err}");
        assert_eq!(reserved_env_name("STRIPE_API_KEY"), None);
        assert_eq!(reserved_env_name("DB"), None);
    }

    #[test]
    fn paths() {
        assert!(clean_path("billing/stripe"));
        assert!(clean_path("/kvv2/"));
        assert!(!clean_path("a//b"));
        assert!(!clean_path("a/../b"));
        assert!(!clean_path("a b"));
    }
}
