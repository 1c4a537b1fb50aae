//! The jobs the spec asks for in one environment, when each is due, and what running it does.
//!
//! | job id | due when | does |
//! |---|---|---|
//! | `rotate-signing-key/<app>/<key>` | the key's newest version is older than the key's `interval` (or no version exists) | [`warden_keys::rotate_if_current`] on the version seen, so a rotation someone else made in between is refused, never stacked |
//! | `renew-domain/<slug>` | the stored domain certificate is missing, inside its `renew_before` or expired | [`warden_keys::DomainStore::renew_if_due`] (check-and-set on the version it read) |
//! | `posture` | once per `--posture-every` period | [`warden_registry::posture::collect`]; the worst status and the count per status are recorded |
//! | `backup` | once per `[environments.E.backup] every` period | [`warden_backup::create`] into the spec's `backup.dir`, retention after it ([`crate::ops`]) |
//! | `dr-drill` | once per `drill_every` period (lab only, with drill inputs) | [`warden_backup::drill::drill`] of the newest backup; RTO/RPO recorded, report signed ([`crate::ops`]) |
//!
//! Purpose rules first (fail closed, [`warden_spec::rules`]): a key or domain no purpose
//! governs, a revoked purpose's, or one left unrotated past its purpose's interval + grace (a
//! domain also: an issuer that would expire before the leaf) is refused and recorded once per
//! due run; serve never renews it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_bao::Client;
use warden_keys::{DomainStore, Issuer, SigningKeyConfig, SystemClock};
use warden_spec::rules::{Contract, Refusal, check_contract, check_domain_renewal};
use warden_spec::{CredentialKind, DomainCert, Environment, Spec};

use crate::error::{Error, Result};
use crate::ops::{BackupTarget, Done};

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
    /// Renew the domain certificate of `domain` (the DNS name) when it is due.
    RenewDomain {
        /// The DNS name.
        domain: String,
    },
    /// Judge posture.
    Posture,
    /// Take a backup of the environment (retention after it).
    Backup {
        /// The spec's `every`.
        every: Duration,
    },
    /// Drill the newest backup in a scratch cluster.
    Drill {
        /// The spec's `drill_every`.
        every: Duration,
    },
}

/// Every job of `env`: one rotation per signing key living there, one renewal per domain
/// certificate, then the posture sweep.
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
    for d in &spec.domains {
        if d.environments.contains(&env.name) {
            out.push(Job {
                id: format!("renew-domain/{}", d.slug),
                kind: JobKind::RenewDomain {
                    domain: d.domain.clone(),
                },
            });
        }
    }
    out.push(Job {
        id: "posture".into(),
        kind: JobKind::Posture,
    });
    if let Some(b) = &env.backup {
        if let Some(every) = b.every {
            out.push(Job {
                id: BACKUP_JOB.into(),
                kind: JobKind::Backup { every },
            });
        }
        if let Some(every) = b.drill_every {
            out.push(Job {
                id: DRILL_JOB.into(),
                kind: JobKind::Drill { every },
            });
        }
    }
    out
}

/// Whether `env`'s spec schedules the backup or drill job `job` (no other job is asked).
pub(crate) fn jobs_for_env_has(env: &Environment, job: &str) -> bool {
    env.backup.as_ref().is_some_and(|b| match job {
        BACKUP_JOB => b.every.is_some(),
        DRILL_JOB => b.drill_every.is_some(),
        _ => false,
    })
}

/// The backup job's id (and record name).
pub const BACKUP_JOB: &str = "backup";
/// The DR drill job's id.
pub const DRILL_JOB: &str = "dr-drill";

/// The slot of a periodic job: the number of whole periods since the Unix epoch, so every
/// replica names the same due run the same way and a run recorded `ok` is not repeated in
/// its period, whoever leads.
fn period_slot(now_ms: u64, every: Duration) -> String {
    format!("t{}", now_ms / 1000 / every.as_secs().max(1))
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
    RenewDomain {
        domain: Box<DomainCert>,
    },
    Posture {
        now_s: i64,
    },
    Backup,
    Drill,
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
        JobKind::Posture => Ok(Due::Run {
            slot: period_slot(now_ms, posture_every),
            work: Work::Posture { now_s },
        }),
        JobKind::Backup { every } => Ok(Due::Run {
            slot: period_slot(now_ms, *every),
            work: Work::Backup,
        }),
        JobKind::Drill { every } => Ok(Due::Run {
            slot: period_slot(now_ms, *every),
            work: Work::Drill,
        }),
        JobKind::RenewDomain { domain } => {
            let Some(d) = spec.domains.iter().find(|d| d.domain == *domain) else {
                return Ok(Due::Later);
            };
            let status = domain_store(client, env)
                .status(d)
                .await
                .map_err(|source| Error::Keys {
                    env: env.name.to_string(),
                    source: Box::new(source),
                })?;
            if !status.state.needs_renewal() {
                return Ok(Due::Later);
            }
            let slot = format!("v{}", status.cas_version);
            let issued = status.issued_at.map(OffsetDateTime::unix_timestamp);
            if let Ok(p) = warden_spec::rules::domain_purpose(spec, d)
                && revoked_live(client, env, p.id.as_str()).await?
            {
                return Ok(Due::Refused {
                    slot,
                    reason: Refusal::Revoked {
                        purpose: p.id.to_string(),
                    },
                });
            }
            let issuer_not_after = issuer_not_after(client, env).await?;
            if let Err(reason) = check_domain_renewal(spec, d, issued, issuer_not_after, now_s) {
                return Ok(Due::Refused { slot, reason });
            }
            Ok(Due::Run {
                slot,
                work: Work::RenewDomain {
                    domain: Box::new(d.clone()),
                },
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
            // In milliseconds: the server's time estimate lags by up to a second, so a key is
            // never rotated before its interval has passed, at most a second and a tick after.
            let interval_ms = u64::try_from(sk.interval.0.as_millis()).unwrap_or(u64::MAX);
            if let Some(created_ms) = created
                && created_ms.saturating_add(interval_ms) > now_ms
            {
                return Ok(Due::Later);
            }
            let created = created.map(|ms| i64::try_from(ms / 1000).unwrap_or(i64::MAX));
            let Some(purpose) = spec.purpose_of(credential) else {
                return Ok(Due::Refused {
                    slot,
                    reason: Refusal::Ungoverned {
                        credential: credential.clone(),
                    },
                });
            };
            let mut contract = Contract::of(purpose);
            // `warden revoke purpose` marks the registry entry before the spec says so.
            contract.revoked |= revoked_live(client, env, purpose.id.as_str()).await?;
            if let Err(reason) = check_contract(&contract, created, now_s) {
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

/// Whether purpose `id` is revoked in the registry entry agents read (`warden revoke purpose`
/// writes it before the spec catches up, ADR 0032). One that cannot be read fails the due
/// check (nothing runs).
async fn revoked_live(client: &Client, env: &Environment, id: &str) -> Result<bool> {
    warden_registry::revoke::revoked_live(client, id)
        .await
        .map_err(|e| Error::Registry {
            env: env.name.to_string(),
            source: Box::new(e),
        })
}

/// The key's highest version and when the newest readable one was written (Unix
/// milliseconds); `(0, None)` when it does not exist.
async fn newest_version(
    client: &Client,
    env: &Environment,
    config: &SigningKeyConfig,
) -> Result<(u64, Option<u64>)> {
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
        .map(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0));
    Ok((meta.current_version, created))
}

fn domain_store(client: &Client, env: &Environment) -> DomainStore {
    DomainStore::new(
        client.clone(),
        env.mounts.kv.as_str(),
        Arc::new(SystemClock),
    )
}

/// When the environment's PKI intermediate expires (Unix seconds), when it can be read and
/// parsed: a leaf must not outlive its issuer.
async fn issuer_not_after(client: &Client, env: &Environment) -> Result<Option<i64>> {
    let pem = client
        .pki_ca_cert(&env.mounts.pki)
        .await
        .map_err(|source| Error::Bao {
            env: env.name.to_string(),
            what: format!("reading the {} intermediate", env.mounts.pki),
            source: Box::new(source),
        })?;
    Ok(warden_pki::parse_pem_bundle(&pem)
        .ok()
        .and_then(|certs| certs.first().map(|c| c.not_after.unix_timestamp())))
}

/// Runs the work; returns what it did in words (no secret) and its figures.
pub(crate) async fn run(
    work: Work,
    spec: &Spec,
    env: &Environment,
    client: &Client,
    backups: Option<&BackupTarget>,
) -> Result<Done> {
    let backups = || {
        backups.ok_or_else(|| {
            Error::Settings(format!(
                "{}: no backup directory was given to serve for this environment",
                env.name
            ))
        })
    };
    match work {
        Work::Backup => crate::ops::backup(client, spec, env, backups()?).await,
        Work::Drill => crate::ops::drill(client, spec, env, backups()?).await,
        other => run_words(other, spec, env, client)
            .await
            .map(|detail| Done {
                detail,
                figures: BTreeMap::new(),
                failed: false,
            }),
    }
}

async fn run_words(work: Work, spec: &Spec, env: &Environment, client: &Client) -> Result<String> {
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
        Work::RenewDomain { domain } => {
            // PKI or ACME, as the domain's spec says (ADR 0031).
            let keys_err = |source| Error::Keys {
                env: env.name.to_string(),
                source: Box::new(source),
            };
            let issuer = Issuer::for_domain(client, &env.mounts.kv, &env.mounts.pki, &domain)
                .map_err(keys_err)?;
            let r = domain_store(client, env)
                .renew_if_due(&domain, &issuer, false)
                .await
                .map_err(|source| Error::Keys {
                    env: env.name.to_string(),
                    source: Box::new(source),
                })?;
            Ok(match (r.renewed, r.after.version, r.after.not_after) {
                (true, Some(v), Some(na)) => format!(
                    "{} renewed as v{v}, serial {}, expires {}",
                    domain.domain,
                    r.after.serial.as_deref().unwrap_or("?"),
                    na.format(&Rfc3339).unwrap_or_default()
                ),
                (true, ..) => format!("{} renewed", domain.domain),
                (false, ..) => format!("{} no longer due: nothing issued", domain.domain),
            })
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
        Work::Backup | Work::Drill => Err(Error::Settings(
            "backups and drills are run by jobs::run".into(),
        )),
    }
}
