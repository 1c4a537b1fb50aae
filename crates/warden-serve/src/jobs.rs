//! The jobs the spec asks for in one environment, when each is due, and what running it does.
//!
//! | job id | due when | does |
//! |---|---|---|
//! | `rotate-signing-key/<app>/<key>` | the key's newest version is older than the key's `interval` (or no version exists) | [`warden_keys::rotate_if_current`] on the version seen, so a rotation someone else made in between is refused, never stacked |
//! | `posture` | once per `--posture-every` period | [`warden_registry::posture::collect`]; the worst status and the count per status are recorded |
//!
//! Purpose rules first (fail closed, [`warden_spec::rules`]): a key no purpose governs, a
//! revoked purpose's key, or a key left unrotated past its purpose's interval + grace is
//! refused and recorded once per due run; it is never rotated by serve.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_bao::Client;
use warden_keys::{SigningKeyConfig, SystemClock};
use warden_spec::rules::{Contract, Refusal, check_contract};
use warden_spec::{CredentialKind, Environment, Spec};

use crate::error::{Error, Result};

/// One scheduled job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id: where its record lives (`serve/jobs/<id>`) and how events name it.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobKind {
    /// Rotate `app`'s signing key `key` when its interval has passed.
    RotateSigningKey {
        /// The app.
        app: String,
        /// The key's name.
        key: String,
        /// `<app>/signing-key/<key>`: what purposes cover.
        credential: String,
    },
    /// Judge posture.
    Posture,
}

/// Every job of `env`: one rotation per signing key living there, then the posture sweep.
pub fn jobs_for(spec: &Spec, env: &Environment) -> Vec<Job> {
    let mut out = Vec::new();
    for c in spec.credentials() {
        let CredentialKind::SigningKey(name) = &c.kind else {
            continue;
        };
        if !c.environments.contains(&env.name) {
            continue;
        }
        let app = c.identity.to_string();
        out.push(Job {
            id: format!("rotate-signing-key/{app}/{name}"),
            kind: JobKind::RotateSigningKey {
                app,
                key: name.clone(),
                credential: c.id.clone(),
            },
        });
    }
    out.push(Job {
        id: "posture".into(),
        kind: JobKind::Posture,
    });
    out
}

/// What a due check decided.
#[derive(Debug)]
pub(crate) enum Due {
    /// Not due yet.
    Later,
    /// Due, but a purpose rule refuses it.
    Refused { slot: String, reason: Refusal },
    /// Due: run `work` for the due run `slot`.
    Run { slot: String, work: Work },
}

/// The work of a due run, fixed at the due check (the rotation's expected version).
#[derive(Debug)]
pub(crate) enum Work {
    Rotate {
        config: Box<SigningKeyConfig>,
        from: u64,
    },
    Posture {
        now_s: i64,
    },
}

/// Is `job` due at `now_ms` (server's clock)?
pub(crate) async fn due(
    job: &Job,
    spec: &Spec,
    env: &Environment,
    client: &Client,
    now_ms: u64,
    posture_every: Duration,
) -> Result<Due> {
    let now_s = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    match &job.kind {
        JobKind::Posture => {
            let period = posture_every.as_secs().max(1);
            Ok(Due::Run {
                slot: format!("t{}", now_ms / 1000 / period),
                work: Work::Posture { now_s },
            })
        }
        JobKind::RotateSigningKey {
            app,
            key,
            credential,
        } => {
            let Some((identity, sk)) = spec.identity(app).and_then(|i| {
                i.signing_keys
                    .iter()
                    .find(|k| k.name.as_str() == key)
                    .map(|k| (i, k))
            }) else {
                return Ok(Due::Later);
            };
            let config = SigningKeyConfig::from_spec(spec, env, &identity.name, sk);
            let (from, created) = newest_version(client, env, &config).await?;
            let slot = format!("v{from}");
            if let Some(created) = created
                && created.saturating_add(secs(sk.interval.0)) > now_s
            {
                return Ok(Due::Later);
            }
            let Some(purpose) = spec.purpose_of(credential) else {
                return Ok(Due::Refused {
                    slot,
                    reason: Refusal::Ungoverned {
                        credential: credential.clone(),
                    },
                });
            };
            if let Err(reason) = check_contract(&Contract::of(purpose), created, now_s) {
                return Ok(Due::Refused { slot, reason });
            }
            Ok(Due::Run {
                slot,
                work: Work::Rotate {
                    config: Box::new(config),
                    from,
                },
            })
        }
    }
}

/// The key's highest version and when the newest readable one was written (Unix seconds);
/// `(0, None)` when it does not exist.
async fn newest_version(
    client: &Client,
    env: &Environment,
    config: &SigningKeyConfig,
) -> Result<(u64, Option<i64>)> {
    let loc = &config.location;
    let meta = match client.kv2(&loc.mount).metadata(&loc.path).await {
        Ok(m) => m,
        Err(warden_bao::KvError::NotFound { .. }) => return Ok((0, None)),
        Err(source) => {
            return Err(Error::Kv {
                env: env.name.to_string(),
                what: format!("reading {loc}'s versions"),
                source: Box::new(source),
            });
        }
    };
    let created = meta
        .versions
        .iter()
        .rev()
        .find(|(_, s)| s.readable())
        .and_then(|(_, s)| OffsetDateTime::parse(&s.created_time, &Rfc3339).ok())
        .map(OffsetDateTime::unix_timestamp);
    Ok((meta.current_version, created))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Runs the work; returns what it did in words (no secret).
pub(crate) async fn run(
    work: Work,
    spec: &Spec,
    env: &Environment,
    client: &Client,
) -> Result<String> {
    match work {
        Work::Rotate { config, from } => {
            let r = warden_keys::rotate_if_current(client, &config, &SystemClock, from)
                .await
                .map_err(|source| Error::Keys {
                    env: env.name.to_string(),
                    source: Box::new(source),
                })?;
            Ok(format!(
                "{} v{from} → v{} (kid {})",
                r.location, r.version, r.kid
            ))
        }
        Work::Posture { now_s } => {
            let report = warden_registry::posture::collect(client, spec, env, now_s)
                .await
                .map_err(|e| Error::Posture(Box::new(e)))?;
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for p in &report.purposes {
                for c in &p.credentials {
                    *counts.entry(c.status.as_str()).or_default() += 1;
                }
            }
            let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{s}={n}")).collect();
            Ok(format!(
                "worst {}; {}",
                report.worst.as_str(),
                if counts.is_empty() {
                    "no credentials".to_owned()
                } else {
                    counts.join(" ")
                }
            ))
        }
    }
}
