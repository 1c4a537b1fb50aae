//! `warden rotate jwks APP KEY`: the RFC 7517 JWK Set of every version of a signing key that
//! verifies now (or at `--at TIME`), as verifiers should be served it. Public keys only.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_keys::{Clock, ManualClock, SigningKeyConfig, SystemClock};
use warden_spec::Environment;

use super::JwksArgs;
use super::signing::ts;
use crate::context::Resolved;
use crate::hint::HintExt;
use crate::output::Output;

pub(crate) async fn run(args: JwksArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let at = match &args.at {
        Some(s) => Some(
            OffsetDateTime::parse(s, &Rfc3339)
                .with_context(|| format!("--at {s} is not an RFC 3339 time"))
                .hint("for example --at 2026-11-24T12:00:00Z")?,
        ),
        None => None,
    };
    let resolved = args.target.resolve()?;
    let spec = &resolved.spec;
    let (app, key) = super::select::lookup(spec, &args.app, &args.key)?;
    let env = one_env(&resolved, app, &args.target.envs)?;
    let client = resolved.client(env)?;
    let config = SigningKeyConfig::from_spec(spec, env, &app.name, key);
    let clock: Arc<dyn Clock> = match at {
        Some(t) => Arc::new(ManualClock::new(t)),
        None => Arc::new(SystemClock),
    };
    let set = warden_keys::load(&client, &config.location, &*clock)
        .await
        .map_err(|e| {
            let not_yet = matches!(e, warden_keys::Error::NotProvisioned { .. });
            let err = anyhow::Error::new(e).context(format!(
                "{}: could not read the signing key {}/{}",
                env.name, args.app, args.key
            ));
            if not_yet {
                err.context(crate::hint::Hint(format!(
                    "create its first version with `warden rotate signing-key --app {} --key {}`",
                    args.app, args.key
                )))
            } else {
                err
            }
        })?;
    let now = clock.now();
    for v in set.versions() {
        let window = match v.valid_until {
            None => "current: signs and verifies".to_owned(),
            Some(u) if now < u => format!("verifies until {}", ts(u)),
            Some(u) => format!("retired at {}", ts(u)),
        };
        out.progress(format!("v{}  {}  {}  {window}", v.version, v.alg, v.kid));
    }
    let jwks = set.jwks(now);
    out.emit(&jwks, || {
        serde_json::to_string_pretty(&jwks).unwrap_or_default()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The environment to read: `--env` when given, else the only one the app lives in.
fn one_env<'r>(
    resolved: &'r Resolved,
    app: &warden_spec::Identity,
    asked: &[String],
) -> anyhow::Result<&'r Environment> {
    let here: Vec<&Environment> = resolved
        .envs
        .iter()
        .filter(|e| app.in_env(e.name.as_str()))
        .collect();
    match here.as_slice() {
        [one] => Ok(one),
        [] => Err(anyhow::anyhow!(
            "`{}` does not live in --env {}",
            app.name,
            asked.join(",")
        ))
        .with_hint(|| {
            let envs: Vec<&str> = app.environments.iter().map(|e| e.as_str()).collect();
            format!("it lives in: {}", envs.join(", "))
        }),
        many => Err(anyhow::anyhow!(
            "`{}` lives in several environments ({}); each has its own keys",
            app.name,
            many.iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .hint("pick one with --env NAME"),
    }
}
