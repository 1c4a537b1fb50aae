//! `warden rotate jwks APP KEY`: the RFC 7517 JWK Set of every version of a signing key that
//! verifies now (or at `--at TIME`), as verifiers should be served it. Public keys only.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_keys::{Clock, ManualClock, SigningKeyConfig, SystemClock};

use super::JwksArgs;
use super::signing::ts;
use crate::context::OneEnv;
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
    let env = resolved.one_env("rotate jwks", OneEnv::WhereLives(app))?;
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
