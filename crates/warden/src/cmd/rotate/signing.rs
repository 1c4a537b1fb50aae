//! `warden rotate signing-key`: shows which keys will rotate (environment, key, KV path,
//! version N → N+1), then rotates each with check-and-set on the version it showed, so a
//! rotation someone else made in between is refused rather than silently stacked.
//! Prints the old and new `kid` and until when the old key verifies; never key material.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use warden_bao::Client;
use warden_keys::{Rotation, SigningKeyConfig, SystemClock};
use warden_spec::Environment;

use super::SigningKeyArgs;
use super::select::{self, KeyRef};
use crate::hint::HintExt;
use crate::output::Output;

/// One key in one environment, as previewed and then rotated.
#[derive(Debug, Serialize)]
struct Entry {
    env: String,
    app: String,
    key: String,
    credential: String,
    purpose: String,
    location: String,
    algorithm: &'static str,
    /// The RSA modulus size of an RS256 key.
    #[serde(skip_serializing_if = "Option::is_none")]
    rsa_bits: Option<u32>,
    grace_seconds: u64,
    /// The longest token lifetime the key declares (the new version records it).
    #[serde(skip_serializing_if = "Option::is_none")]
    max_token_lifetime_seconds: Option<u64>,
    /// The highest version before (0: the key does not exist yet).
    from_version: u64,
    /// `create` (first version) or `rotate`.
    action: &'static str,
    /// What happened; absent with `--dry-run`.
    rotation: Option<Rotation>,
    #[serde(skip)]
    config: SigningKeyConfig,
}

#[derive(Debug, Serialize)]
struct Report {
    dry_run: bool,
    keys: Vec<Entry>,
}

pub(crate) async fn run(args: SigningKeyArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let spec = &resolved.spec;
    let keys =
        match (&args.purpose, &args.app, &args.key) {
            (Some(p), None, None) => select::by_purpose(spec, p)?,
            (None, Some(a), Some(k)) => vec![select::by_name(spec, a, k)?],
            _ => {
                return Err(anyhow::anyhow!(
                "say which signing keys to rotate: a PURPOSE, or one key with --app APP --key NAME"
            ))
            .hint("`warden rotate signing-key token-signing` rotates every key the purpose covers");
            }
        };
    let targets = in_selected_envs(&keys, &resolved.envs, &args.target.envs)?;

    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    let mut entries = Vec::new();
    for (env, k) in targets {
        let name = env.name.to_string();
        if !clients.contains_key(&name) {
            clients.insert(name.clone(), resolved.client(env)?);
        }
        let client = &clients[&name];
        // A purpose revoked live (`warden revoke purpose`) before the spec says so (ADR 0032).
        if warden_registry::revoke::revoked_live(client, k.purpose.id.as_str())
            .await
            .map_err(|e| anyhow::Error::new(e).context(name.clone()))?
        {
            return Err(crate::hint::revoked_purpose_live(
                k.purpose.id.as_str(),
                &format!("`{}`", k.credential()),
            ));
        }
        let config = SigningKeyConfig::from_spec(spec, env, &k.app.name, k.key);
        let from_version = warden_keys::current_version(client, &config.location)
            .await
            .with_context(|| format!("{name}: could not read {}", config.location))?;
        entries.push(Entry {
            env: name,
            app: k.app.name.to_string(),
            key: k.key.name.to_string(),
            credential: k.credential(),
            purpose: k.purpose.id.to_string(),
            location: config.location.to_string(),
            algorithm: k.key.algorithm.jws_alg(),
            rsa_bits: k.key.rsa_bits,
            grace_seconds: config.grace.as_secs(),
            max_token_lifetime_seconds: config.max_token_lifetime.map(|d| d.as_secs()),
            from_version,
            action: if from_version == 0 {
                "create"
            } else {
                "rotate"
            },
            rotation: None,
            config,
        });
    }
    out.stderr_block(&render_plan(&entries, args.dry_run));

    if !args.dry_run {
        let mut done: Vec<String> = Vec::new();
        for e in &mut entries {
            let client = &clients[&e.env];
            let rotation =
                warden_keys::rotate_if_current(client, &e.config, &SystemClock, e.from_version)
                    .await
                    .map_err(|err| explain(err, e, &done))?;
            done.push(render_line(e, &rotation));
            e.rotation = Some(rotation);
        }
    }
    let report = Report {
        dry_run: args.dry_run,
        keys: entries,
    };
    out.emit(&report, || render_done(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// Each selected key in each chosen environment its app lives in.
fn in_selected_envs<'a, 's>(
    keys: &[KeyRef<'s>],
    envs: &'a [Environment],
    asked: &[String],
) -> anyhow::Result<Vec<(&'a Environment, KeyRef<'s>)>> {
    let mut out = Vec::new();
    for k in keys {
        for env in envs {
            if k.app.in_env(env.name.as_str()) {
                out.push((env, *k));
            }
        }
    }
    if out.is_empty() {
        let lives: Vec<String> = keys
            .iter()
            .map(|k| {
                let envs: Vec<&str> = k.app.environments.iter().map(|e| e.as_str()).collect();
                format!("{} in {}", k.app.name, envs.join(", "))
            })
            .collect();
        return Err(anyhow::anyhow!(
            "none of the selected keys lives in --env {}",
            asked.join(",")
        ))
        .with_hint(|| format!("their apps live: {}", lives.join("; ")));
    }
    Ok(out)
}

/// The error with what to do next, and what had already been rotated (those rotations stand).
fn explain(err: warden_keys::Error, e: &Entry, done: &[String]) -> anyhow::Error {
    let hint = if err.is_conflict() {
        Some(format!(
            "{} changed after the preview (another rotation won); nothing was written for it: run the command again to rotate from the new version",
            e.location
        ))
    } else if err
        .bao_error()
        .is_some_and(warden_bao::Error::is_permission_denied)
    {
        Some(format!(
            "the token needs read on {0}/metadata/… and create/update on {0}/data/… for this key",
            e.config.location.mount
        ))
    } else {
        None
    };
    let mut what = format!("{}: could not rotate {}", e.env, e.credential);
    if !done.is_empty() {
        let _ = write!(
            what,
            " (already rotated, and staying so: {})",
            done.join("; ")
        );
    }
    let err = anyhow::Error::new(err).context(what);
    match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    }
}

pub(super) fn human(secs: u64) -> String {
    warden_spec::format_duration(std::time::Duration::from_secs(secs))
}

pub(super) fn ts(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn render_plan(entries: &[Entry], dry_run: bool) -> String {
    let mut s = String::new();
    let verb = if dry_run { "Would rotate" } else { "Rotating" };
    let _ = writeln!(s, "{verb} {} signing key(s):", entries.len());
    for e in entries {
        let change = if e.from_version == 0 {
            "create v1".to_owned()
        } else {
            format!("v{} → v{}", e.from_version, e.from_version + 1)
        };
        let algorithm = match e.rsa_bits {
            Some(bits) => format!("{} {bits}-bit", e.algorithm),
            None => e.algorithm.to_owned(),
        };
        let lifetime = e
            .max_token_lifetime_seconds
            .map(|l| format!(", tokens live at most {}", human(l)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {}  {}/{}  {}  {change}  ({algorithm}, old key verifies {} after the rotation{lifetime}; purpose {})",
            e.env,
            e.app,
            e.key,
            e.location,
            human(e.grace_seconds),
            e.purpose
        );
    }
    s
}

fn render_line(e: &Entry, r: &Rotation) -> String {
    match &r.previous {
        None => format!(
            "{}  {}/{}  v{} created  kid {}",
            e.env, e.app, e.key, r.version, r.kid
        ),
        Some(p) => format!(
            "{}  {}/{}  v{} → v{}  kid {} → {}  old key verifies until {} (grace {})",
            e.env,
            e.app,
            e.key,
            p.version,
            r.version,
            p.kid.as_deref().unwrap_or("(unreadable)"),
            r.kid,
            ts(p.verifies_until),
            human(r.grace_seconds)
        ),
    }
}

fn render_done(report: &Report) -> String {
    if report.dry_run {
        return "Dry run: nothing was written.".to_owned();
    }
    let mut s = format!("Rotated {} signing key(s):\n", report.keys.len());
    for e in &report.keys {
        if let Some(r) = &e.rotation {
            let _ = writeln!(s, "  {}", render_line(e, r));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_spec() {
        assert_eq!(human(86_400), "1d");
        assert_eq!(human(24 * 3600 * 3), "3d");
        assert_eq!(human(7200), "2h");
        assert_eq!(human(90), "1m30s");
        assert_eq!(human(600), "10m");
        assert_eq!(human(0), "0s");
    }
}
