//! What every local user may read: the body of `/health`.
//!
//! `/health` listens on loopback TCP, and any process on the host, of any uid, can connect to
//! it. So it serves the snapshot without its free text: each `last_error` message (which names
//! files under the identity's directory, OpenBao paths and the server's own error text) is
//! replaced by an [`ErrorKind`], enough for a supervisor or a dashboard to tell "sealed" from
//! "bad template" and no more. Names, states, serials, times and counters stay: they are what
//! a health check is for, and `/metrics` serves the same figures anyway. The full messages are
//! on the control socket, which only the agent's own user and root may open
//! (`warden agent status`).
//!
//! The reduction is done on the serialised snapshot (every `last_error` key, wherever it sits),
//! not by listing the fields to keep, so a field added to the snapshot types is served here
//! without a second list to keep in step, and free text can only be added by a key of another
//! name, which the tests below would show.

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::view::{Overall, Snapshot};

/// The class of a failure, as `/health` shows it in place of the message.
///
/// Derived from the message the runtime recorded, by the phrases the agent's and the OpenBao
/// client's errors use; a message none of them matches is [`ErrorKind::Other`], never a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// OpenBao is sealed.
    Sealed,
    /// OpenBao could not be reached: connection refused, TLS failure, timeout.
    Unreachable,
    /// OpenBao refused the token (403), or the credential was refused at login.
    PermissionDenied,
    /// Nothing at the OpenBao path (a missing secret, mount or role).
    NotFound,
    /// A template did not render.
    Template,
    /// The agent refused what OpenBao returned or what it was about to deliver (a chain that
    /// does not verify, names that do not match the profile, a target it will not replace).
    Refused,
    /// Reading or writing a local file failed (permissions, disk full, a missing directory).
    Filesystem,
    /// Anything else; the message is on the control socket.
    Other,
}

impl ErrorKind {
    /// The kind of a recorded failure message.
    pub fn of(message: &str) -> Self {
        let m = message.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
        // Order matters: a refused TCP connection is "(os error 111)", so the network phrases
        // come before the operating system's; a file's EACCES reads "permission denied (os
        // error 13)", so the filesystem comes before OpenBao's 403.
        if has(&["is sealed", "openbao nodes sealed"]) {
            Self::Sealed
        } else if has(&[
            "connection refused",
            "could not connect",
            "cannot reach",
            "timed out",
            "tls with openbao",
            "http exchange with openbao",
            "unreachable",
            // A cluster whose nodes all failed in different ways, or a leaderless standby.
            "openbao nodes failed",
            "standby that cannot serve",
            "dns error",
        ]) {
            Self::Unreachable
        } else if has(&[
            "(os error",
            "disk full",
            "no space left",
            "could not read",
            "cannot read",
            "could not write",
            // A path the agent will not write through (a symlink, a directory someone else
            // owns, a file where a directory should be): a local file problem, not OpenBao's.
            "refusing ",
            "is not a directory",
            "is a symbolic link",
            "is owned by uid",
            "writable by other users",
        ]) {
            Self::Filesystem
        } else if has(&["permission denied", "rejected the request"]) {
            Self::PermissionDenied
        } else if has(&["nothing found at", "nothing at "]) {
            // Before templates: a template's `kv()` of a missing secret is a missing secret.
            Self::NotFound
        } else if has(&["template"]) {
            Self::Template
        } else if has(&["refused"]) {
            Self::Refused
        } else {
            Self::Other
        }
    }
}

/// The key a snapshot's messages sit under, and the one their kind is served under.
const MESSAGE_KEY: &str = "last_error";
const KIND_KEY: &str = "error_kind";

/// The `/health` body of `snapshot` and its verdict: the snapshot with each message replaced by
/// its kind, plus the verdict and each expiry as seconds from now.
pub fn health_body(snapshot: &Snapshot) -> (Overall, String) {
    #[derive(Serialize)]
    struct Body {
        status: Overall,
        identity: String,
        #[serde(with = "time::serde::rfc3339")]
        checked_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339::option")]
        started_at: Option<OffsetDateTime>,
        auth: Value,
        requests_total: u64,
        auth_errors_total: u64,
        server: Option<String>,
        outputs: Vec<Value>,
        databases: Vec<Value>,
    }
    let now = snapshot.taken_at;
    let expires_in = |t: Option<OffsetDateTime>| t.map(|t| (t - now).whole_seconds());
    let overall = snapshot.overall();
    let body = Body {
        status: overall,
        identity: snapshot.identity.clone(),
        checked_at: now,
        started_at: snapshot.started_at,
        auth: public(&snapshot.auth, None),
        requests_total: snapshot.requests_total,
        auth_errors_total: snapshot.auth_errors_total,
        server: snapshot.server.clone(),
        outputs: snapshot
            .outputs
            .iter()
            .map(|o| public(o, Some(expires_in(o.not_after))))
            .collect(),
        databases: snapshot
            .databases
            .iter()
            .map(|d| public(d, Some(expires_in(d.expires))))
            .collect(),
    };
    let mut json = serde_json::to_string_pretty(&body).unwrap_or_else(|_| "{}".to_owned());
    json.push('\n');
    (overall, json)
}

/// One view as every user may read it; `expires_in` adds `expires_in_seconds`.
fn public(view: &impl Serialize, expires_in: Option<Option<i64>>) -> Value {
    let mut object = match serde_json::to_value(view) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    if let Some(message) = object.remove(MESSAGE_KEY) {
        let kind = message.as_str().map(ErrorKind::of);
        object.insert(KIND_KEY.to_owned(), serde_json::json!(kind));
    }
    if let Some(seconds) = expires_in {
        object.insert("expires_in_seconds".to_owned(), serde_json::json!(seconds));
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{db, snapshot, view};
    use super::super::view::Freshness;
    use super::*;

    #[test]
    fn messages_become_kinds() {
        for (message, kind) in [
            (
                "output tls: issue certificate: OpenBao at https://127.0.0.1:8200 is sealed: unseal it (`bao operator unseal`) or check auto-unseal",
                ErrorKind::Sealed,
            ),
            (
                "output tls: issue certificate: HTTP exchange with OpenBao for pki_int/sign/billing failed: Connection refused (os error 111)",
                ErrorKind::Unreachable,
            ),
            (
                "output config: could not write /srv/warden/test/billing/out/config.json: Permission denied (os error 13)",
                ErrorKind::Filesystem,
            ),
            (
                "output config: refusing /srv/warden/test/billing/out/blocked: /srv/warden/test/billing/out/blocked is not a directory",
                ErrorKind::Filesystem,
            ),
            (
                "output config: read kvv2/data/billing/config: permission denied on kvv2/data/billing/config: check the token's policies or log in again",
                ErrorKind::PermissionDenied,
            ),
            (
                "output config: read kvv2/data/billing/nope: nothing found at kvv2/data/billing/nope",
                ErrorKind::NotFound,
            ),
            (
                "output config: template inline:config line 1: kv(\"kvv2\", \"billing/x\"): nothing at kvv2/data/billing/x (kv() reads KV version 2 mounts; use kv1() for a version 1 mount)",
                ErrorKind::NotFound,
            ),
            (
                "output config: template /srv/warden/t.j2 line 3: unknown filter",
                ErrorKind::Template,
            ),
            (
                "output config: refusing /srv/warden/test/billing/out/blocked/config.json: /srv/warden/test/billing/out/blocked is not a directory",
                ErrorKind::Filesystem,
            ),
            (
                "output tls: refusing /srv/warden/test/billing/out/tls.d/1a: /srv/warden/test/billing/out/tls.d is a symbolic link; Warden does not follow symlinks on the way to what it writes (make it a real directory)",
                ErrorKind::Filesystem,
            ),
            (
                "output tls: refused to deliver: the chain does not verify",
                ErrorKind::Refused,
            ),
            (
                "login: all 2 OpenBao nodes sealed: https://10.0.0.11:8200: sealed; https://10.0.0.12:8200: sealed",
                ErrorKind::Sealed,
            ),
            (
                "login: all 3 OpenBao nodes unreachable: https://10.0.0.11:8200: Connection refused (os error 111); …",
                ErrorKind::Unreachable,
            ),
            (
                "login: all 2 OpenBao nodes failed: https://10.0.0.11:8200: not initialized; https://10.0.0.12:8200: sealed",
                ErrorKind::Unreachable,
            ),
            ("not logged in", ErrorKind::Other),
        ] {
            assert_eq!(ErrorKind::of(message), kind, "{message}");
        }
    }

    #[test]
    fn health_serves_kinds_never_messages() {
        let mut failing = view("config", Freshness::Failed);
        failing.last_error =
            Some("output config: could not write /srv/warden/billing/out/c.json: disk full".into());
        let mut s = snapshot(vec![view("tls", Freshness::Fresh), failing]);
        s.auth.last_error = Some("could not read the key file /srv/warden/k.pem: gone".into());
        s.databases = vec![db("main", Freshness::Stale)];
        s.databases[0].last_error = Some("OpenBao at https://10.0.0.1:8200 is sealed".into());

        let (overall, body) = health_body(&s);
        assert_eq!(overall, Overall::Failing);
        assert!(!body.contains("/srv"), "no path is served:\n{body}");
        assert!(!body.contains(MESSAGE_KEY), "no message is served:\n{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "failing");
        assert_eq!(v["outputs"][0]["error_kind"], Value::Null);
        assert_eq!(v["outputs"][0]["expires_in_seconds"], 259_200);
        assert_eq!(v["outputs"][0]["not_after"], "2030-01-04T00:00:00Z");
        assert_eq!(v["outputs"][1]["error_kind"], "filesystem");
        assert_eq!(v["outputs"][1]["state"], "failed");
        assert_eq!(v["auth"]["error_kind"], "filesystem");
        assert_eq!(v["databases"][0]["error_kind"], "sealed");
        assert_eq!(v["databases"][0]["expires_in_seconds"], 20);
        assert_eq!(v["databases"][0]["path"], "postgres/creds/billing");
    }

    #[test]
    fn the_public_keys_are_pinned() {
        // Free text can only reach every user through a new key: make that a decision.
        let (_, body) = health_body(&snapshot(vec![view("tls", Freshness::Fresh)]));
        let v: Value = serde_json::from_str(&body).unwrap();
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort_unstable();
            k.join(",")
        };
        assert_eq!(
            keys(&v),
            "auth,auth_errors_total,checked_at,databases,identity,outputs,requests_total,server,started_at,status"
        );
        assert_eq!(
            keys(&v["outputs"][0]),
            "changes,error_kind,expires_in_seconds,kind,last_change,last_reload_ok,last_render,name,next_due,not_after,render_errors,renders,repairs,serial,state"
        );
        assert_eq!(
            keys(&v["auth"]),
            "error_kind,errors,identity_not_after,identity_serial,logged_in,policies_ok,token_expires"
        );
    }
}
