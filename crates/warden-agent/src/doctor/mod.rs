//! `warden doctor`: checks one identity on its host, as that identity, with nothing but what
//! `warden identity enroll` put in its directory (no root token, no operator credentials).
//!
//! Each check is named, ends `ok`, `warn` or `fail` (or `skipped` when an earlier failure
//! leaves nothing to check with), says what it saw, and on a failure or warning what to do:
//!
//! | check           | what it proves                                                              |
//! |-----------------|-----------------------------------------------------------------------------|
//! | `config`        | `agent.toml` reads and validates as the agent would                         |
//! | `files`         | the layout exists, no symlinks, owner-only key (0600), nothing writable by others, one owner |
//! | `trust`         | the trust file parses and the identity certificate chains to it (the offline root) |
//! | `certificate`   | the identity certificate is valid now, how long it has left, renewal not overdue |
//! | `tls`           | the mTLS handshake with every configured OpenBao address                    |
//! | `login`         | cert login succeeds and the token carries the identity's policy             |
//! | `permissions`   | every grant `agent.toml`'s outputs need (`sys/capabilities-self`)           |
//! | `least-privilege` | a sample the identity must not have is denied (policy writes, token minting, another identity's secret) |
//! | `agent`         | the running agent's health through its control socket, and its last delivery report |
//! | `clock`         | this host's clock against the server's `Date`                               |
//!
//! Nothing here writes: the one token it mints is revoked before it returns.

mod files;
pub mod grants;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use time::OffsetDateTime;
use warden_bao::{Client, ClientConfig, ClientIdentity, Idempotent, RetryPolicy};

use crate::config::{AuthMethod, Config};
use crate::health::Overall;
use grants::Need;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but will not for long or needs a look; does not fail the run.
    Warn,
    /// Broken: the identity cannot do its work (or can do more than it should).
    Fail,
    /// Not checked: an earlier failure left nothing to check with.
    Skipped,
}

impl Status {
    /// The spelling in the text report and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Skipped => "skipped",
        }
    }
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Its name (see the module documentation).
    pub name: &'static str,
    /// Its verdict.
    pub status: Status,
    /// What it saw.
    pub detail: String,
    /// What to do, on `warn` and `fail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn skipped(name: &'static str, why: &str) -> Self {
        Self {
            name,
            status: Status::Skipped,
            detail: format!("not checked: {why}"),
            fix: None,
        }
    }
}

/// Everything the doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The identity (from `agent.toml`, else the directory's name).
    pub identity: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// No check failed (warnings allowed).
    pub ok: bool,
}

impl Report {
    /// The check called `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Thresholds and test seams.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Skew at which `clock` warns.
    pub skew_warn: Duration,
    /// Skew at which `clock` fails. 30 s: OpenBao back-dates certificates' `not_before` by
    /// 30 s, so a host further behind than that sees fresh certificates as not yet valid.
    pub skew_fail: Duration,
    /// Seconds added to this host's clock in the `clock` check only. Zero except in tests
    /// (a server's `Date` cannot be faked, so the host's side is shifted instead).
    pub clock_offset_secs: i64,
    /// Per-request timeout against OpenBao.
    pub request_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            skew_warn: Duration::from_secs(5),
            skew_fail: Duration::from_secs(30),
            clock_offset_secs: 0,
            request_timeout: Duration::from_secs(10),
        }
    }
}

const CONFIG: &str = "config";
const FILES: &str = "files";
const TRUST: &str = "trust";
const CERTIFICATE: &str = "certificate";
const TLS: &str = "tls";
const LOGIN: &str = "login";
const PERMISSIONS: &str = "permissions";
const LEAST: &str = "least-privilege";
const AGENT: &str = "agent";
const CLOCK: &str = "clock";
const AFTER_CONFIG: [&str; 9] = [
    FILES,
    TRUST,
    CERTIFICATE,
    TLS,
    LOGIN,
    PERMISSIONS,
    LEAST,
    AGENT,
    CLOCK,
];

/// Runs every check on the identity whose `agent.toml` is `config_path` (its directory is the
/// file's, as `warden identity enroll` lays it out).
pub async fn run(config_path: &Path, opts: Options) -> Report {
    let mut checks = Vec::new();
    let dir = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fallback_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cfg = match Config::load_trusted(config_path) {
        Ok(cfg) => {
            checks.push(Check::ok(
                CONFIG,
                format!(
                    "{}: identity `{}` ({}) in `{}`",
                    config_path.display(),
                    cfg.identity.name,
                    cfg.identity.kind.as_str(),
                    cfg.identity.env
                ),
            ));
            cfg
        }
        Err(e) => {
            checks.push(Check::fail(
                CONFIG,
                e.to_string(),
                "re-run `warden identity enroll` for this identity to rewrite agent.toml (and check its owner and mode)",
            ));
            checks.extend(
                AFTER_CONFIG
                    .iter()
                    .map(|n| Check::skipped(n, "agent.toml is not usable")),
            );
            return finish(fallback_name, dir, checks);
        }
    };
    Doctor { cfg: &cfg, opts }.run(dir, &mut checks).await;
    finish(cfg.identity.name.clone(), dir, checks)
}

fn finish(identity: String, dir: &Path, checks: Vec<Check>) -> Report {
    Report {
        identity,
        dir: dir.to_path_buf(),
        ok: !checks.iter().any(|c| c.status == Status::Fail),
        checks,
    }
}

struct Doctor<'a> {
    cfg: &'a Config,
    opts: Options,
}

impl Doctor<'_> {
    async fn run(&self, dir: &Path, checks: &mut Vec<Check>) {
        let tls = self.cfg.auth.tls_identity.as_ref();
        checks.push(self.files(dir));
        let trust_pem = self.trust(checks);
        checks.push(self.certificate());
        let Some(trust_pem) = trust_pem else {
            for n in [TLS, LOGIN, PERMISSIONS, LEAST, AGENT, CLOCK] {
                checks.push(Check::skipped(n, "no usable trust file"));
            }
            return;
        };
        let Some(tls) = tls else {
            checks.push(Check::skipped(TLS, "agent.toml names no TLS identity"));
            for n in [LOGIN, PERMISSIONS, LEAST] {
                checks.push(Check::skipped(n, "only cert login is checked"));
            }
            checks.push(self.agent(None).await);
            checks.push(Check::skipped(CLOCK, "no connection to the server"));
            return;
        };
        let client = match self
            .handshake(&trust_pem, &tls.cert_file, &tls.key_file)
            .await
        {
            Ok((client, detail)) => {
                checks.push(Check::ok(TLS, detail));
                client
            }
            Err(check) => {
                checks.push(check);
                for n in [LOGIN, PERMISSIONS, LEAST] {
                    checks.push(Check::skipped(n, "no connection to the server"));
                }
                checks.push(self.agent(None).await);
                checks.push(Check::skipped(CLOCK, "no connection to the server"));
                return;
            }
        };
        let logged_in = match self.login(&client).await {
            Ok(detail) => {
                checks.push(Check::ok(LOGIN, detail));
                true
            }
            Err(check) => {
                checks.push(check);
                for n in [PERMISSIONS, LEAST] {
                    checks.push(Check::skipped(n, "no token"));
                }
                false
            }
        };
        if logged_in {
            let required = grants::required(self.cfg).await;
            let forbidden = grants::forbidden(self.cfg, &required);
            match capabilities(&client, required.iter().chain(&forbidden)).await {
                Ok(caps) => {
                    checks.push(permissions(&required, &caps, &self.cfg.auth.policy));
                    checks.push(least_privilege(&forbidden, &caps, &self.cfg.auth.policy));
                }
                Err(e) => {
                    let fix = "the identity's policy must grant `sys/capabilities-self` (OpenBao's default policy does): was the default policy removed from its cert role?";
                    checks.push(Check::fail(PERMISSIONS, e.to_string(), fix));
                    checks.push(Check::fail(LEAST, e.to_string(), fix));
                }
            }
        }
        checks.push(self.agent(logged_in.then_some(&client)).await);
        checks.push(self.clock(&client));
        if logged_in {
            // The doctor's own token: gone as soon as it is done.
            let _ = client.token_revoke_self().await;
        }
    }

    fn files(&self, dir: &Path) -> Check {
        let owner = match std::fs::symlink_metadata(dir) {
            Ok(m) => std::os::unix::fs::MetadataExt::uid(&m),
            Err(e) => {
                return Check::fail(
                    FILES,
                    format!("{}: {e}", dir.display()),
                    "run the doctor as the identity's user",
                );
            }
        };
        let tls = self.cfg.auth.tls_identity.as_ref();
        let paths = files::layout(
            dir,
            &self.cfg.path,
            tls.map(|t| t.key_file.as_path()),
            tls.map(|t| t.cert_file.as_path()),
            self.cfg.openbao.ca_file.as_deref(),
            &self.cfg.state_dir,
        );
        let mut problems: Vec<files::Problem> = Vec::new();
        // The rule the agent's own writes obey (`warden_files::Dir`): a directory it writes
        // under is owned by root or its user and writable by nobody else.
        if let Err(e) = warden_files::Dir::open_root(
            dir,
            warden_files::Trusted::process().with_owner(Some(owner), None),
        ) {
            problems.push(files::Problem {
                what: e.to_string(),
                fix: format!("chown {owner} {d} && chmod 0700 {d}", d = dir.display()),
            });
        }
        problems.extend(
            paths
                .iter()
                .filter_map(|(p, rule)| files::check(p, *rule, owner)),
        );
        if problems.is_empty() {
            let key = tls.map_or(String::new(), |t| {
                format!(", key {} 0600", t.key_file.display())
            });
            return Check::ok(
                FILES,
                format!("{} paths owned by uid {owner}{key}", paths.len()),
            );
        }
        let euid = nix::unistd::geteuid().as_raw();
        let mut fix: Vec<String> = problems.iter().map(|p| p.fix.clone()).collect();
        if euid != owner && euid != 0 {
            fix.push(format!(
                "run the doctor as the identity's user (uid {owner}), not uid {euid}"
            ));
        }
        Check::fail(
            FILES,
            problems
                .iter()
                .map(|p| p.what.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            fix.join("; "),
        )
    }

    /// The trust file's PEM when it parses; pushes the `trust` check.
    fn trust(&self, checks: &mut Vec<Check>) -> Option<String> {
        let fix_reinstall = "put the environment's CA bundle back (`warden identity enroll` re-installs it as trust/ca.pem); on a real host compare it with the offline root: `warden ca verify`";
        let Some(path) = &self.cfg.openbao.ca_file else {
            checks.push(Check::fail(
                TRUST,
                "agent.toml names no `[openbao] ca_file`: the system store would decide whom this identity trusts",
                "re-run `warden identity enroll` for this identity",
            ));
            return None;
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                checks.push(Check::fail(
                    TRUST,
                    format!("{}: {e}", path.display()),
                    fix_reinstall,
                ));
                return None;
            }
        };
        let anchors = warden_pki::pem_blocks(&text);
        let parsed = warden_pki::parse_pem_bundle(&text);
        let anchors_info = match parsed {
            Ok(info) if !info.is_empty() && !anchors.is_empty() => info,
            Ok(_) => {
                checks.push(Check::fail(
                    TRUST,
                    format!("{} holds no certificate", path.display()),
                    fix_reinstall,
                ));
                return None;
            }
            Err(e) => {
                checks.push(Check::fail(
                    TRUST,
                    format!("{} does not parse: {e}", path.display()),
                    fix_reinstall,
                ));
                return None;
            }
        };
        let Some(tls) = &self.cfg.auth.tls_identity else {
            checks.push(Check::ok(
                TRUST,
                format!("{}: {} certificate(s)", path.display(), anchors_info.len()),
            ));
            return Some(text);
        };
        let cert = match std::fs::read_to_string(&tls.cert_file) {
            Ok(c) => c,
            Err(e) => {
                checks.push(Check::fail(
                    TRUST,
                    format!("{}: {e}", tls.cert_file.display()),
                    "re-run `warden identity enroll` for this identity",
                ));
                return Some(text);
            }
        };
        let now = OffsetDateTime::now_utc();
        let mut first_problem = None;
        for (anchor, info) in anchors.iter().zip(&anchors_info) {
            match warden_pki::verify_chain(&cert, Some(anchor), now) {
                Ok(r) if r.valid => {
                    checks.push(Check::ok(
                        TRUST,
                        format!(
                            "{} chains to `{}` in {} (expires {})",
                            tls.cert_file.display(),
                            info.subject,
                            path.display(),
                            info.not_after.date()
                        ),
                    ));
                    return Some(text);
                }
                Ok(r) => {
                    first_problem.get_or_insert_with(|| {
                        r.problems
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    });
                }
                Err(e) => {
                    first_problem.get_or_insert_with(|| e.to_string());
                }
            }
        }
        checks.push(Check::fail(
            TRUST,
            format!(
                "{} does not chain to any certificate in {} ({})",
                tls.cert_file.display(),
                path.display(),
                first_problem.unwrap_or_default()
            ),
            format!(
                "{fix_reinstall}; if the trust file is right, the identity certificate is from another CA: re-enroll it"
            ),
        ));
        Some(text)
    }

    fn certificate(&self) -> Check {
        let Some(tls) = &self.cfg.auth.tls_identity else {
            return Check::skipped(CERTIFICATE, "agent.toml names no TLS identity");
        };
        let reenroll = "re-run `warden identity enroll` for this identity (an operator signs a new certificate)";
        let leaf = std::fs::read_to_string(&tls.cert_file)
            .map_err(|e| e.to_string())
            .and_then(|pem| warden_pki::parse_pem_bundle(&pem).map_err(|e| e.to_string()))
            .and_then(|v| {
                v.into_iter()
                    .next()
                    .ok_or_else(|| "no certificate".to_owned())
            });
        let leaf = match leaf {
            Ok(l) => l,
            Err(e) => {
                return Check::fail(
                    CERTIFICATE,
                    format!("{}: {e}", tls.cert_file.display()),
                    reenroll,
                );
            }
        };
        let now = OffsetDateTime::now_utc();
        let left = leaf.not_after - now;
        if left.is_negative() {
            return Check::fail(
                CERTIFICATE,
                format!("`{}` expired at {}", leaf.subject, ts(leaf.not_after)),
                reenroll,
            );
        }
        if leaf.not_before > now {
            return Check::fail(
                CERTIFICATE,
                format!(
                    "`{}` is not valid before {}",
                    leaf.subject,
                    ts(leaf.not_before)
                ),
                "check this host's clock (see the `clock` check)",
            );
        }
        let detail = format!(
            "`{}` serial {}, expires {} ({} left)",
            leaf.subject,
            leaf.serial,
            ts(leaf.not_after),
            human(left.unsigned_abs())
        );
        let lifetime = (leaf.not_after - leaf.not_before).as_seconds_f64();
        let renew_at = leaf.not_before
            + time::Duration::seconds_f64(
                lifetime * (self.cfg.renewal.fraction + self.cfg.renewal.jitter).min(1.0),
            );
        let overdue = now > renew_at
            || left.unsigned_abs() < self.cfg.renewal.margin
            || left.unsigned_abs() < Duration::from_secs(3600);
        if overdue && tls.renew_with.is_some() {
            return Check::warn(
                CERTIFICATE,
                format!("{detail}; past its renewal point"),
                "the agent renews it: is it running and logged in? (see the `agent` check)",
            );
        }
        Check::ok(CERTIFICATE, detail)
    }

    fn client_config(&self, trust_pem: &str) -> Result<ClientConfig, warden_bao::Error> {
        Ok(ClientConfig::with_addresses(&self.cfg.openbao.addresses)?
            .with_ca_pem(trust_pem.as_bytes().to_vec())
            .with_retry(RetryPolicy::no_retries())
            .with_request_timeout(self.opts.request_timeout))
    }

    async fn handshake(
        &self,
        trust_pem: &str,
        cert: &Path,
        key: &Path,
    ) -> Result<(Client, String), Check> {
        let identity = ClientIdentity::from_files(cert, key).map_err(|e| {
            Check::fail(
                TLS,
                format!("the TLS identity does not load: {e}"),
                "re-run `warden identity enroll` for this identity (certificate and key must match)",
            )
        })?;
        let fail = |what: String| {
            Check::fail(
                TLS,
                what,
                "check the address in agent.toml answers (is OpenBao up?), that trust/ca.pem is the environment's CA bundle and that the server trusts the identity's issuing CA for client certificates",
            )
        };
        let mut answered = Vec::new();
        for address in &self.cfg.openbao.addresses {
            let one = ClientConfig::with_addresses(std::slice::from_ref(address))
                .map(|c| {
                    c.with_ca_pem(trust_pem.as_bytes().to_vec())
                        .with_client_identity(identity.clone())
                        .with_retry(RetryPolicy::no_retries())
                        .with_request_timeout(self.opts.request_timeout)
                })
                .and_then(Client::new)
                .map_err(|e| fail(format!("{address}: {e}")))?;
            match one.health().await {
                Ok(h) if h.sealed => {
                    return Err(Check::fail(
                        TLS,
                        format!("{address}: handshake ok, but the server is sealed"),
                        "unseal the environment (`warden unseal`)",
                    ));
                }
                Ok(_) => answered.push(address.as_str()),
                Err(e) => return Err(fail(format!("{address}: {e}"))),
            }
        }
        let client = self
            .client_config(trust_pem)
            .map(|c| c.with_client_identity(identity))
            .and_then(Client::new)
            .map_err(|e| fail(e.to_string()))?;
        Ok((client, format!("mutual TLS with {}", answered.join(", "))))
    }

    async fn login(&self, client: &Client) -> Result<String, Check> {
        let AuthMethod::Cert { role } = &self.cfg.auth.method else {
            return Err(Check::skipped(LOGIN, "only cert login is checked"));
        };
        let mount = self.cfg.auth.mount.as_str();
        let auth = client.login_cert(mount, Some(role)).await.map_err(|e| {
            Check::fail(
                LOGIN,
                format!("auth/{mount}/login as `{role}`: {e}"),
                "an operator checks the identity still exists and is not revoked (`warden plan`, `warden revoke`), then re-enrolls it",
            )
        })?;
        let policy = &self.cfg.auth.policy;
        if !auth.token_policies.iter().any(|p| p == policy) {
            return Err(Check::fail(
                LOGIN,
                format!(
                    "logged in, but the token carries {:?}, not `{policy}`",
                    auth.token_policies
                ),
                "an operator runs `warden apply` to restore the identity's cert role",
            ));
        }
        client.set_token(auth.client_token);
        Ok(format!(
            "cert login at auth/{mount} as `{role}`: policies {}",
            auth.token_policies.join(", ")
        ))
    }

    async fn agent(&self, client: Option<&Client>) -> Check {
        let report = match client {
            Some(c) => report_age(c, &self.cfg.identity.name).await,
            None => None,
        };
        let report = report.map_or_else(String::new, |r| format!("; {r}"));
        let Some(control) = &self.cfg.control else {
            return Check::warn(
                AGENT,
                format!("agent.toml has no [control] socket to ask{report}"),
                "add `[control] socket = \"state/control.sock\"` (as `warden identity enroll` writes it)",
            );
        };
        let snap = match crate::control::status(&control.socket).await {
            Ok(s) => s,
            Err(e) if e.is_not_running() => {
                return Check::fail(
                    AGENT,
                    format!("no agent answers at {}{report}", control.socket.display()),
                    format!(
                        "start it: `systemctl start warden-agent@{}` (or `warden agent --config {}`)",
                        self.cfg.identity.name,
                        self.cfg.path.display()
                    ),
                );
            }
            Err(e) => {
                return Check::fail(
                    AGENT,
                    format!("{e}{report}"),
                    "run the doctor as the identity's user; look at the agent's log",
                );
            }
        };
        let now = OffsetDateTime::now_utc();
        let newest = snap.outputs.iter().filter_map(|o| o.last_render).max();
        let rendered = newest.map_or_else(
            || "nothing rendered yet".to_owned(),
            |t| format!("last render {} ago", human((now - t).unsigned_abs())),
        );
        let detail = format!(
            "{} ({} outputs, {rendered}, logged in: {}){report}",
            overall_str(snap.overall()),
            snap.outputs.len(),
            snap.auth.logged_in
        );
        let failing: Vec<String> = snap
            .outputs
            .iter()
            .filter_map(|o| o.last_error.as_ref().map(|e| format!("{}: {e}", o.name)))
            .collect();
        let look = format!(
            "see `warden agent status --socket {}` and the agent's log{}",
            control.socket.display(),
            if failing.is_empty() {
                String::new()
            } else {
                format!(" ({})", failing.join("; "))
            }
        );
        match snap.overall() {
            Overall::Ok if snap.auth.logged_in => Check::ok(AGENT, detail),
            Overall::Ok | Overall::Degraded => Check::warn(AGENT, detail, look),
            Overall::Failing => Check::fail(AGENT, detail, look),
        }
    }

    fn clock(&self, client: &Client) -> Check {
        let Some(server) = client.last_server_date() else {
            return Check::warn(
                CLOCK,
                "the server sent no readable `Date` header",
                "nothing to do unless certificates look not-yet-valid; then check NTP on both sides",
            );
        };
        // This host's time when the server's answer arrived.
        let local = SystemTime::now()
            .checked_sub(server.received.elapsed())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        };
        let skew = secs(local) + self.opts.clock_offset_secs - secs(server.date);
        let abs = Duration::from_secs(skew.unsigned_abs());
        let detail = format!(
            "this host is {} {} the server (the `Date` header has 1 s resolution)",
            human(abs),
            if skew >= 0 { "ahead of" } else { "behind" }
        );
        let fix = "synchronise this host's clock (NTP: `timedatectl set-ntp true`, check `chronyc tracking`)";
        if abs >= self.opts.skew_fail {
            Check::fail(
                CLOCK,
                format!(
                    "{detail}: at {}s or more, fresh certificates look not yet valid or expire early",
                    self.opts.skew_fail.as_secs()
                ),
                fix,
            )
        } else if abs >= self.opts.skew_warn {
            Check::warn(CLOCK, detail, fix)
        } else {
            Check::ok(CLOCK, detail)
        }
    }
}

fn overall_str(o: Overall) -> &'static str {
    match o {
        Overall::Ok => "healthy",
        Overall::Degraded => "degraded",
        Overall::Failing => "failing",
    }
}

/// When the agent last wrote its delivery report (posture reads it), when the policy lets
/// the identity read it back.
async fn report_age(client: &Client, identity: &str) -> Option<String> {
    // The entry's metadata says when either kind of report (metadata, ADR 0036, or data) was
    // last written; a policy from before ADR 0036 may read only the data.
    let entry = warden_spec::naming::delivery_report(identity);
    let (path, pointer) = match client.read(&entry.metadata_path()).await {
        Err(e) if e.is_permission_denied() => (entry.data_path(), "/metadata/created_time"),
        _ => (entry.metadata_path(), "/updated_time"),
    };
    match client.read(&path).await {
        Ok(secret) => {
            let created = secret.data.as_ref()?.pointer(pointer)?.as_str()?.to_owned();
            let at =
                OffsetDateTime::parse(&created, &time::format_description::well_known::Rfc3339)
                    .ok()?;
            Some(format!(
                "delivery report written {} ago",
                human((OffsetDateTime::now_utc() - at).unsigned_abs())
            ))
        }
        Err(e) if e.is_not_found() => Some("no delivery report yet".to_owned()),
        Err(_) => None,
    }
}

/// `sys/capabilities-self` for every path, in one request.
async fn capabilities<'a>(
    client: &Client,
    needs: impl Iterator<Item = &'a Need>,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, warden_bao::Error> {
    let mut paths: Vec<&str> = needs.map(|n| n.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    let answer = client
        .write(
            "sys/capabilities-self",
            &serde_json::json!({ "paths": paths }),
            Idempotent::Yes,
        )
        .await?;
    let data = answer.and_then(|s| s.data).unwrap_or_default();
    Ok(paths
        .iter()
        .map(|p| {
            let caps = data
                .get(*p)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            ((*p).to_owned(), caps)
        })
        .collect())
}

fn permissions(
    required: &[Need],
    caps: &std::collections::BTreeMap<String, Vec<String>>,
    policy: &str,
) -> Check {
    let missing: Vec<String> = required
        .iter()
        .filter(|n| {
            !grants::allows(
                caps.get(&n.path).map_or(&[][..], Vec::as_slice),
                n.capability,
            )
        })
        .map(|n| format!("{} on {} ({})", n.capability, n.path, n.why))
        .collect();
    if missing.is_empty() {
        return Check::ok(
            PERMISSIONS,
            format!("all {} grants its outputs need", required.len()),
        );
    }
    Check::fail(
        PERMISSIONS,
        format!("missing: {}", missing.join("; ")),
        format!(
            "an operator runs `warden plan` then `warden apply` to restore policy `{policy}` (if the spec no longer grants it, the output should go from agent.toml: re-enroll)"
        ),
    )
}

fn least_privilege(
    forbidden: &[Need],
    caps: &std::collections::BTreeMap<String, Vec<String>>,
    policy: &str,
) -> Check {
    let granted: Vec<String> = forbidden
        .iter()
        .filter_map(|n| {
            let c = caps.get(&n.path)?;
            grants::grants_anything(c).then(|| format!("{} on {} ({})", c.join(","), n.path, n.why))
        })
        .collect();
    if granted.is_empty() {
        return Check::ok(
            LEAST,
            format!("{} paths it must not have are denied", forbidden.len()),
        );
    }
    Check::fail(
        LEAST,
        format!("granted: {}", granted.join("; ")),
        format!(
            "policy `{policy}` is broader than the spec: an operator runs `warden lint` and `warden apply` to put it back, and finds out who widened it (audit log)"
        ),
    )
}

/// RFC 3339, to the second.
fn ts(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `3d 4h`, `12m 5s`: a duration for people.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

/// The report as text: one line per check, its fix under it.
pub fn describe(report: &Report) -> String {
    let mut s = format!("{} ({})\n", report.identity, report.dir.display());
    for c in &report.checks {
        s.push_str(&format!(
            "{:<8} {:<16} {}\n",
            c.status.as_str(),
            c.name,
            c.detail
        ));
        if let Some(fix) = &c.fix {
            s.push_str(&format!("{:<8} {:<16} fix: {fix}\n", "", ""));
        }
    }
    let fails = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    s.push_str(&if fails == 0 {
        "every check passed".to_owned()
    } else {
        format!("{fails} check(s) failed")
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_secs(125)), "2m 5s");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 7200)), "3d 2h");
    }
}
