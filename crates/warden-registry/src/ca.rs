//! The CAs of an environment's chain and the rotation of its PKI intermediate (ADR 0029).
//!
//! **Status** ([`status`]): every issuer in the environment's PKI mount — the root imported
//! with each bundle and every intermediate — with its age, `not_after`, when rotation is due by
//! the spec's `[ca]` policy, and how many live leaves chain to it, counted from what agents
//! report they delivered (each certificate's issuer key id). OpenBao keeps no copy of leaves
//! (`no_store`), so the reports are the only place that knows what is deployed.
//!
//! **Rotation**, in steps an operator can run across two machines:
//!
//! | step | where | what |
//! |---|---|---|
//! | [`begin`] | online | a new key inside OpenBao and its CSR; the record `warden/ca/rotation` says `begun` |
//! | `warden ca sign-intermediate` | offline host | the root signs the CSR (constraints from the spec) |
//! | [`import`] | online | checks the signed bundle (the key is the one `begin` made, same root, constraints kept), imports it next to the old issuer — not yet default |
//! | (the caller) | online | trust both: cert-auth roles (`apply`), the listener's client-CA bundle |
//! | [`activate`] | online | makes the new issuer the default; agents see the change and re-issue within the reissue window; the overlap starts |
//! | [`retire`] | online | deletes the old issuer once no live leaf chains to it, or the overlap is over, or with a recorded reason |
//!
//! Every step reads the record first and refuses out of order, so a step run twice, or on the
//! wrong machine's state, changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_bao::{Client, Idempotent};
use warden_pki::MountIntermediate;
use warden_spec::naming;
use warden_spec::{CaPolicy, Environment, RateCheck, Spec};

use crate::posture::{DeliveryReport, delivery_reports};

/// Why a CA status or rotation step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A request to OpenBao failed.
    #[error("{env}: {what}: {source}")]
    Bao {
        /// Environment.
        env: String,
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: warden_bao::Error,
    },
    /// The step does not follow the recorded state of the rotation.
    #[error("{env}: {step}: the rotation is {state}, not {expected}")]
    OutOfOrder {
        /// Environment.
        env: String,
        /// The step attempted.
        step: &'static str,
        /// The recorded state (`none` when there is no record).
        state: String,
        /// The state the step needs.
        expected: &'static str,
    },
    /// The signed bundle is not acceptable as the new intermediate.
    #[error("{env}: the signed intermediate is refused: {reason}")]
    BadIntermediate {
        /// Environment.
        env: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Live leaves still chain to the old issuer and the overlap is not over.
    #[error(
        "{env}: {count} live certificate(s) still chain to the old intermediate ({identities}); the overlap ends at {overlap_ends_at}"
    )]
    LeavesRemain {
        /// Environment.
        env: String,
        /// How many live leaves.
        count: usize,
        /// The identities holding them, comma-separated.
        identities: String,
        /// When the overlap ends (RFC 3339).
        overlap_ends_at: String,
    },
    /// The rotation's spread would put the busiest minute above `[ca] reissue_rate`
    /// (ADR 0035).
    #[error(
        "{env}: {certificates} live certificate(s) over a reissue window of {window} average {mean:.0} re-issues a minute; the busiest minute would reach about {busiest}, above [ca] reissue_rate = {rate}{shorter}",
        shorter = shorter_windows_note(check),
        certificates = check.certificates,
        window = warden_spec::format_duration(std::time::Duration::from_secs(check.window_secs)),
        mean = check.mean_per_minute,
        busiest = check.busiest_minute,
        rate = check.rate
    )]
    OverRate {
        /// Environment.
        env: String,
        /// The figures.
        check: RateCheck,
        /// Identities whose agents use a shorter `[renewal] issuer_window` than the spec's.
        short_windows: Vec<String>,
    },
    /// `[ca] reissue_rate` is declared but the certificates that would move cannot be counted:
    /// the intermediate the rotation replaces is not in the mount, or has no key identifier to
    /// match leaves by. Refused rather than counted as zero, which would always "hold".
    #[error(
        "{env}: cannot judge the rotation against [ca] reissue_rate: the intermediate it replaces ({issuer}) is not an issuer of the mount with a key identifier, so the certificates that would move cannot be counted"
    )]
    RateUnknown {
        /// Environment.
        env: String,
        /// The issuer id the rotation's record names.
        issuer: String,
    },
    /// `--force` was given without a reason.
    #[error("a forced retirement needs a reason")]
    NoReason,
    /// A root rollover step does not follow the recorded state, or the other kind of change
    /// (an intermediate rotation, a root rollover) is under way (ADR 0030).
    #[error("{env}: {step}: {state}, not {expected}")]
    RolloverOutOfOrder {
        /// Environment.
        env: String,
        /// The step attempted.
        step: &'static str,
        /// What the records say (`the root rollover is active`, `an intermediate rotation is begun`).
        state: String,
        /// What the step needs.
        expected: &'static str,
    },
    /// The re-signed intermediate bundle is not acceptable for the root rollover.
    #[error("{env}: the re-signed intermediate is refused: {reason}")]
    BadResigned {
        /// Environment.
        env: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A record Warden keeps in OpenBao does not parse (edited by hand, or written by another
    /// version): no step runs over a state it cannot read.
    #[error(
        "{env}: the record at {path} is not readable ({reason}); nothing was changed. Inspect it with `bao kv get`, and restore it from its previous KV version (`bao kv rollback`) rather than deleting it"
    )]
    BadRecord {
        /// Environment.
        env: String,
        /// The record's API path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Agents whose trust file lacks the new root would stop verifying once the old root is
    /// gone.
    #[error(
        "{env}: {count} agent(s) have a trust file without the new root: {old_root_only} holding only the old root ({old_names}), {unknown} not saying ({unknown_names})"
    )]
    TrustFilesBehind {
        /// Environment.
        env: String,
        /// How many in all.
        count: usize,
        /// How many hold only the old root.
        old_root_only: usize,
        /// Their identities, comma-separated.
        old_names: String,
        /// How many do not report their trust file (older agents).
        unknown: usize,
        /// Their identities, comma-separated.
        unknown_names: String,
    },
    /// Agents whose connection to OpenBao trusts only the old root would lose the server once
    /// the listener serves a chain to the new root.
    #[error(
        "{env}: {count} agent(s) connect to OpenBao trusting only the old root, or do not report what their connection trusts (agents older than `tls_roots`, which keep the anchors they started with) ({names}): they would lose the server once the listener's chain ends in the new root"
    )]
    ConnectionsOnOldRoot {
        /// Environment.
        env: String,
        /// How many.
        count: usize,
        /// Their identities, comma-separated.
        names: String,
    },
}

/// `; N of them on agents whose issuer_window is shorter than the spec's`, or nothing.
pub fn shorter_windows_note(check: &RateCheck) -> String {
    if check.on_shorter_windows == 0 {
        String::new()
    } else {
        format!(
            " ({} of them on agents whose [renewal] issuer_window is shorter than the spec's, which crowds the first minute)",
            check.on_shorter_windows
        )
    }
}

pub(crate) fn bao(
    env: &Environment,
    what: impl Into<String>,
) -> impl FnOnce(warden_bao::Error) -> CaError {
    let env = env.name.to_string();
    let what = what.into();
    move |source| CaError::Bao { env, what, source }
}

pub(crate) fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

// ---- status -------------------------------------------------------------------------------

/// One CA of the chain as the mount holds it.
#[derive(Debug, Clone, Serialize)]
pub struct CaRow {
    /// OpenBao's issuer id.
    pub issuer_id: String,
    /// `root` or `intermediate`.
    pub role: &'static str,
    /// Whether new leaves come from it.
    pub is_default: bool,
    /// Subject DN.
    pub subject: String,
    /// Its key id (SubjectKeyIdentifier, hex): what leaves name as their issuer.
    pub key_id: Option<String>,
    /// Serial, hex.
    pub serial: String,
    /// Validity start and end (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// Age at the instant judged, in seconds.
    pub age_secs: i64,
    /// When rotation is due by the `[ca]` policy (RFC 3339).
    pub rotation_due_at: String,
    /// Whether it is due at the instant judged.
    pub rotation_due: bool,
    /// Whether it has expired.
    pub expired: bool,
    /// Permitted DNS subtrees (intermediates; ADR 0013).
    pub permitted_dns: Vec<String>,
    /// Live leaves (unexpired certificates and identity certificates agents report) signed by
    /// it. Counted for intermediates only.
    pub live_leaves: usize,
    /// The identities holding them.
    pub identities: Vec<String>,
}

/// The CAs of one environment.
#[derive(Debug, Clone, Serialize)]
pub struct CaStatus {
    /// Environment.
    pub env: String,
    /// The instant judged (RFC 3339).
    pub at: String,
    /// The PKI mount.
    pub mount: String,
    /// Root first, then intermediates (default first).
    pub cas: Vec<CaRow>,
    /// The rotation in progress or last finished, if any.
    pub rotation: Option<RotationRecord>,
    /// Live leaves whose issuer is not in the mount (retired, or another mount's): they no
    /// longer verify against the environment's trust.
    pub orphan_leaves: usize,
    /// Identities with a live leaf from an intermediate that is not the default: who has not
    /// moved yet.
    pub unmoved: Vec<String>,
    /// Certificates agents still report that are revoked (on their issuer's CRL, or of an
    /// identity whose identity certificate is): not counted as live leaves, so `retire` does
    /// not wait for them.
    pub revoked_leaves: usize,
    /// The root rollover in progress or last finished, with whose trust file holds which root
    /// (ADR 0030).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_rollover: Option<crate::root_rollover::RolloverStatus>,
    /// Where rotating the default intermediate now would put the busiest minute against
    /// `[ca] reissue_rate` (ADR 0035); absent when no ceiling is declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<RateCheck>,
}

/// A live leaf an agent reports: identity and issuer key id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiveLeaf {
    identity: String,
    issuer: Option<String>,
}

fn live_leaves(reports: &BTreeMap<String, DeliveryReport>, now: i64) -> Vec<LiveLeaf> {
    let mut out = Vec::new();
    for (identity, report) in reports {
        for o in &report.outputs {
            let is_cert =
                o.credential.ends_with("/certificate") || o.credential.ends_with("/identity-cert");
            let live = o
                .expires_at
                .as_deref()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                .is_some_and(|t| t.unix_timestamp() > now);
            if is_cert && live && o.state.as_deref() != Some("failed") {
                out.push(LiveLeaf {
                    identity: identity.clone(),
                    issuer: o.issuer.clone(),
                });
            }
        }
    }
    out
}

/// How moving the live leaves of the issuer whose key id is `key` would load the server
/// against `[ca] reissue_rate` (ADR 0035), each agent's certificates at the window its report
/// says it uses when that is shorter than the spec's. `None` without a declared ceiling.
fn rate_for(
    policy: &CaPolicy,
    reports: &BTreeMap<String, DeliveryReport>,
    leaves: &[LiveLeaf],
    key: Option<&str>,
) -> Option<RateCheck> {
    rate_and_short(policy, reports, leaves, key).0
}

/// [`rate_for`], with the identities whose agents use a shorter window than the spec's.
fn rate_and_short(
    policy: &CaPolicy,
    reports: &BTreeMap<String, DeliveryReport>,
    leaves: &[LiveLeaf],
    key: Option<&str>,
) -> (Option<RateCheck>, Vec<String>) {
    if policy.reissue_rate.is_none() {
        return (None, Vec::new());
    }
    let spec_window = policy.reissue_window.as_secs();
    let mine: Vec<&LiveLeaf> = leaves
        .iter()
        .filter(|l| key.is_some() && l.issuer.as_deref() == key)
        .collect();
    let mut shorter: BTreeMap<u64, u64> = BTreeMap::new();
    let mut who: BTreeSet<String> = BTreeSet::new();
    for l in &mine {
        if let Some(w) = reports.get(&l.identity).and_then(|r| r.issuer_window_s)
            && w < spec_window
        {
            *shorter.entry(w).or_default() += 1;
            who.insert(l.identity.clone());
        }
    }
    let shorter: Vec<(u64, u64)> = shorter.into_iter().map(|(w, n)| (n, w)).collect();
    (
        policy.rate_check_with(u64::try_from(mine.len()).unwrap_or(u64::MAX), &shorter),
        who.into_iter().collect(),
    )
}

/// Every issuer of `mount` with its certificate, parsed; intermediates also as the trust set.
async fn mount_issuers(
    client: &Client,
    env: &Environment,
) -> Result<Vec<(String, bool, warden_pki::CertInfo)>, CaError> {
    let mount = &env.mounts.pki;
    let issuers = client
        .pki_issuer_certificates(mount)
        .await
        .map_err(bao(env, format!("read the issuers of {mount}")))?;
    Ok(issuers
        .into_iter()
        .filter_map(|i| {
            let info = warden_pki::parse_pem_bundle(&i.certificate)
                .ok()?
                .into_iter()
                .next()?;
            Some((i.id, i.is_default, info))
        })
        .collect())
}

/// The serials ([`warden_pki::serial_key`]) on the CRL of any intermediate of `env`'s mount.
/// A list that cannot be read or parsed counts as empty: its certificates then stay counted as
/// live, which only keeps `retire` waiting (never retires early).
async fn revoked_serials(
    client: &Client,
    env: &Environment,
    issuers: &[(String, bool, warden_pki::CertInfo)],
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (id, _, info) in issuers.iter().filter(|(_, _, i)| !i.self_signed) {
        let path = format!("{}/issuer/{id}/crl", env.mounts.pki);
        match crate::revoke::read_crl(client, &path, "crl").await {
            Ok(Some(pem)) => match warden_pki::crl_serials(&pem) {
                Some(serials) => out.extend(serials),
                None => {
                    tracing::warn!(issuer = %info.subject, "the issuer's CRL does not parse; its revoked certificates count as live")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(issuer = %info.subject, error = %e, "could not read the issuer's CRL; its revoked certificates count as live")
            }
        }
    }
    out
}

/// `reports` without what is revoked: a certificate whose serial is on a CRL, and every
/// certificate of an identity whose identity certificate is (`warden revoke identity`: its
/// agent can no longer log in, so its leaf will never move; retiring the issuer is what ends
/// it). Returns the reports kept and how many certificates were left out.
fn without_revoked(
    reports: &BTreeMap<String, DeliveryReport>,
    revoked: &BTreeSet<String>,
) -> (BTreeMap<String, DeliveryReport>, usize) {
    let is_revoked = |o: &crate::posture::DeliveredOutput| {
        o.serial
            .as_deref()
            .is_some_and(|s| revoked.contains(&warden_pki::serial_key(s)))
    };
    let is_cert = |o: &crate::posture::DeliveredOutput| {
        o.credential.ends_with("/certificate") || o.credential.ends_with("/identity-cert")
    };
    let mut left_out = 0;
    let kept = reports
        .iter()
        .map(|(identity, report)| {
            let identity_revoked = report
                .outputs
                .iter()
                .any(|o| o.credential.ends_with("/identity-cert") && is_revoked(o));
            let mut report = report.clone();
            report.outputs.retain(|o| {
                let drop = is_cert(o) && (identity_revoked || is_revoked(o));
                left_out += usize::from(drop);
                !drop
            });
            (identity.clone(), report)
        })
        .collect();
    (kept, left_out)
}

/// The trusted intermediates of `env`'s PKI mount at `now` (default first): the set cert-auth
/// roles pin, the listener's client-CA bundle holds and CA-chain outputs deliver.
pub async fn trusted_intermediates(
    client: &Client,
    env: &Environment,
    now: OffsetDateTime,
) -> Result<Vec<MountIntermediate>, CaError> {
    let mount = &env.mounts.pki;
    let issuers = client
        .pki_issuer_certificates(mount)
        .await
        .map_err(bao(env, format!("read the issuers of {mount}")))?;
    Ok(warden_pki::mount_intermediates(
        issuers
            .into_iter()
            .map(|i| (i.id, i.is_default, i.certificate)),
        now,
    ))
}

/// Every delivery report of `env`'s identities (what agents say they hold).
pub(crate) async fn env_reports(
    client: &Client,
    spec: &Spec,
    env: &Environment,
) -> Result<BTreeMap<String, DeliveryReport>, CaError> {
    let creds: Vec<_> = spec
        .credentials()
        .into_iter()
        .filter(|c| c.environments.contains(&env.name))
        .collect();
    delivery_reports(client, env, &creds)
        .await
        .map_err(|e| CaError::Bao {
            env: env.name.to_string(),
            what: "read the delivery reports".to_owned(),
            source: match e {
                crate::posture::Error::Bao { source, .. } => source,
            },
        })
}

/// The CAs of `env` at `now` by `spec`'s `[ca]` policy, with the live leaves agents report.
pub async fn status(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    now: OffsetDateTime,
) -> Result<CaStatus, CaError> {
    let issuers = mount_issuers(client, env).await?;
    let reports = env_reports(client, spec, env).await?;
    let rotation = read_record(client, env).await?;
    let rollover = crate::root_rollover::read_record(client, env).await?;
    let revoked = revoked_serials(client, env, &issuers).await;
    let (live, revoked_leaves) = without_revoked(&reports, &revoked);
    let mut st = judge(env, &spec.ca, &issuers, &live, rotation, now);
    st.revoked_leaves = revoked_leaves;
    st.root_rollover = rollover.map(|record| crate::root_rollover::RolloverStatus {
        trust_files: crate::root_rollover::trust_files(
            &reports,
            &record.old_root_sha256,
            &record.new_root_sha256,
        ),
        record,
    });
    Ok(st)
}

/// [`status`] from facts already read: pure.
fn judge(
    env: &Environment,
    policy: &CaPolicy,
    issuers: &[(String, bool, warden_pki::CertInfo)],
    reports: &BTreeMap<String, DeliveryReport>,
    rotation: Option<RotationRecord>,
    now: OffsetDateTime,
) -> CaStatus {
    let t = now.unix_timestamp();
    let leaves = live_leaves(reports, t);
    let mut cas: Vec<CaRow> = issuers
        .iter()
        .map(|(id, is_default, info)| {
            let c = policy.cadence(
                info.not_before.unix_timestamp(),
                info.not_after.unix_timestamp(),
                t,
            );
            let mine: Vec<&LiveLeaf> = if info.self_signed {
                Vec::new()
            } else {
                leaves
                    .iter()
                    .filter(|l| l.issuer.is_some() && l.issuer == info.subject_key_id)
                    .collect()
            };
            let identities: BTreeSet<String> = mine.iter().map(|l| l.identity.clone()).collect();
            CaRow {
                issuer_id: id.clone(),
                role: if info.self_signed {
                    "root"
                } else {
                    "intermediate"
                },
                is_default: *is_default,
                subject: info.subject.clone(),
                key_id: info.subject_key_id.clone(),
                serial: info.serial.clone(),
                not_before: rfc(info.not_before),
                not_after: rfc(info.not_after),
                age_secs: (now - info.not_before).whole_seconds(),
                rotation_due_at: OffsetDateTime::from_unix_timestamp(c.rotation_due_at)
                    .map(rfc)
                    .unwrap_or_default(),
                rotation_due: c.rotation_due,
                expired: c.expired,
                permitted_dns: info.permitted_dns.clone(),
                live_leaves: mine.len(),
                identities: identities.into_iter().collect(),
            }
        })
        .collect();
    // Root first, then the default, then newest: the order a reader reads a chain in.
    cas.sort_by(|a, b| {
        (
            a.role != "root",
            !a.is_default,
            std::cmp::Reverse(a.not_before.clone()),
        )
            .cmp(&(
                b.role != "root",
                !b.is_default,
                std::cmp::Reverse(b.not_before.clone()),
            ))
    });
    let known: BTreeSet<&str> = issuers
        .iter()
        .filter_map(|(_, _, i)| i.subject_key_id.as_deref())
        .collect();
    let orphan_leaves = leaves
        .iter()
        .filter(|l| l.issuer.as_deref().is_some_and(|k| !known.contains(k)))
        .count();
    let unmoved: BTreeSet<String> = cas
        .iter()
        .filter(|c| c.role == "intermediate" && !c.is_default)
        .flat_map(|c| c.identities.iter().cloned())
        .collect();
    let next_rotation = cas
        .iter()
        .find(|c| c.role == "intermediate" && c.is_default)
        .and_then(|c| rate_for(policy, reports, &leaves, c.key_id.as_deref()));
    CaStatus {
        env: env.name.to_string(),
        at: rfc(now),
        mount: env.mounts.pki.clone(),
        cas,
        rotation,
        orphan_leaves,
        unmoved: unmoved.into_iter().collect(),
        revoked_leaves: 0,
        root_rollover: None,
        next_rotation,
    }
}

// ---- rotation -----------------------------------------------------------------------------

/// Where a rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationState {
    /// The new key and CSR exist; nothing is trusted yet.
    Begun,
    /// The signed intermediate is in the mount beside the old one, not yet default.
    Imported,
    /// The new intermediate is the default; both are trusted (the overlap).
    Active,
    /// The old intermediate was removed from the mount.
    Retired,
}

impl RotationState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Begun => "begun",
            Self::Imported => "imported",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
}

/// The record of an environment's intermediate rotation (`warden/data/ca/rotation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRecord {
    /// Environment.
    pub env: String,
    /// Where it stands.
    pub state: RotationState,
    /// The issuer being replaced.
    pub old_issuer_id: String,
    /// Its key id (SubjectKeyIdentifier, hex).
    #[serde(default)]
    pub old_key_id: Option<String>,
    /// OpenBao's id of the key generated for the new intermediate.
    pub new_openbao_key_id: String,
    /// The CSR (public).
    pub csr: String,
    /// The new issuer, once imported.
    #[serde(default)]
    pub new_issuer_id: Option<String>,
    /// Its key id (SubjectKeyIdentifier, hex).
    #[serde(default)]
    pub new_key_id: Option<String>,
    /// When each step happened (RFC 3339).
    pub begun_at: String,
    /// When the new issuer became the default.
    #[serde(default)]
    pub activated_at: Option<String>,
    /// When the overlap ends: `activated_at + [ca] overlap`.
    #[serde(default)]
    pub overlap_ends_at: Option<String>,
    /// When the old issuer was removed.
    #[serde(default)]
    pub retired_at: Option<String>,
    /// Why it was removed while live leaves still chained to it.
    #[serde(default)]
    pub forced_because: Option<String>,
    /// Identities with live leaves from the old issuer when it was removed.
    #[serde(default)]
    pub unmoved: Vec<String>,
}

/// The environment's rotation record, if any.
pub async fn read_record(
    client: &Client,
    env: &Environment,
) -> Result<Option<RotationRecord>, CaError> {
    read_json(client, env, &naming::ca_rotation().data_path()).await
}

async fn write_record(
    client: &Client,
    env: &Environment,
    record: &RotationRecord,
) -> Result<(), CaError> {
    write_json(client, env, &naming::ca_rotation().data_path(), record).await
}

/// A step's record (a rotation, a rollover) from the KV v2 `path`: `None` where there is none,
/// an error where there is one that does not parse.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    client: &Client,
    env: &Environment,
    path: &str,
) -> Result<Option<T>, CaError> {
    let data = match client.read(path).await {
        Ok(s) => s.data.and_then(|mut d| d.get_mut("data").map(Value::take)),
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(bao(env, format!("read {path}"))(e)),
    };
    let Some(data) = data.filter(|d| !d.is_null()) else {
        return Ok(None);
    };
    serde_json::from_value(data)
        .map(Some)
        .map_err(|e| CaError::BadRecord {
            env: env.name.to_string(),
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// Writes a step's record to the KV v2 `path`.
pub(crate) async fn write_json<T: Serialize>(
    client: &Client,
    env: &Environment,
    path: &str,
    record: &T,
) -> Result<(), CaError> {
    let data = serde_json::to_value(record).unwrap_or_default();
    client
        .write(path, &json!({ "data": data }), Idempotent::Yes)
        .await
        .map_err(bao(env, format!("write {path}")))?;
    Ok(())
}

fn out_of_order(
    env: &Environment,
    step: &'static str,
    record: Option<&RotationRecord>,
    expected: &'static str,
) -> CaError {
    CaError::OutOfOrder {
        env: env.name.to_string(),
        step,
        state: record.map_or("none", |r| r.state.as_str()).to_owned(),
        expected,
    }
}

/// Step 1: a new key inside OpenBao and its CSR (same common name as the lab's intermediate).
/// Refused while another rotation is under way, unless `restart` discards a `begun` one (its
/// key stays unused in the mount).
pub async fn begin(
    client: &Client,
    env: &Environment,
    restart: bool,
    now: OffsetDateTime,
) -> Result<RotationRecord, CaError> {
    let record = read_record(client, env).await?;
    match record.as_ref().map(|r| r.state) {
        None | Some(RotationState::Retired) => {}
        Some(RotationState::Begun) if restart => {}
        Some(_) => {
            return Err(out_of_order(
                env,
                "begin",
                record.as_ref(),
                "retired or none",
            ));
        }
    }
    crate::root_rollover::refuse_while_rolling(client, env, "begin").await?;
    let mount = &env.mounts.pki;
    let old = client
        .pki_read_issuer(mount, "default")
        .await
        .map_err(bao(env, format!("read the default issuer of {mount}")))?;
    let old_info = warden_pki::parse_pem_bundle(&old.certificate)
        .ok()
        .and_then(|v| v.into_iter().next());
    let csr = client
        .pki_generate_intermediate_csr(
            mount,
            &format!("Warden {} PKI intermediate", env.name),
            warden_bao::KeyType::EcP256,
        )
        .await
        .map_err(bao(env, "generate the new intermediate's key and CSR"))?;
    let record = RotationRecord {
        env: env.name.to_string(),
        state: RotationState::Begun,
        old_issuer_id: old.issuer_id,
        old_key_id: old_info.and_then(|i| i.subject_key_id),
        new_openbao_key_id: csr.key_id,
        csr: csr.csr_pem,
        new_issuer_id: None,
        new_key_id: None,
        begun_at: rfc(now),
        activated_at: None,
        overlap_ends_at: None,
        retired_at: None,
        forced_because: None,
        unmoved: Vec::new(),
    };
    write_record(client, env, &record).await?;
    Ok(record)
}

/// Step 3: checks `bundle` (the new intermediate, optionally followed by the root) and imports
/// it beside the old issuer without making it the default. Refused, with the mount unchanged,
/// when it is not a CA, does not chain to the old intermediate's root, is not for the key
/// `begin` generated, or drops the old intermediate's name constraints (ADR 0013).
pub async fn import(
    client: &Client,
    env: &Environment,
    bundle: &str,
    now: OffsetDateTime,
) -> Result<RotationRecord, CaError> {
    let Some(mut record) = read_record(client, env)
        .await?
        .filter(|r| r.state == RotationState::Begun)
    else {
        let r = read_record(client, env).await?;
        return Err(out_of_order(env, "import", r.as_ref(), "begun"));
    };
    let refuse = |reason: String| CaError::BadIntermediate {
        env: env.name.to_string(),
        reason,
    };
    let mount = &env.mounts.pki;
    let certs = warden_pki::parse_pem_bundle(bundle).map_err(|e| refuse(e.to_string()))?;
    let new = &certs[0];
    if !new.is_ca || new.self_signed {
        return Err(refuse(format!(
            "the first certificate ({}) is not an intermediate CA",
            new.subject
        )));
    }
    let old = client
        .pki_read_issuer(mount, &record.old_issuer_id)
        .await
        .map_err(bao(env, "read the old issuer"))?;
    let old_info = warden_pki::parse_pem_bundle(&old.certificate)
        .map_err(|e| refuse(format!("the old issuer does not parse: {e}")))?
        .remove(0);
    let root = root_of(&old).ok_or_else(|| {
        refuse("the old intermediate's chain in OpenBao has no root to check against".into())
    })?;
    let first = warden_pki::first_certificate(bundle).unwrap_or_default();
    let report =
        warden_pki::verify_chain(&format!("{}\n{root}", first.trim_end()), Some(&root), now)
            .map_err(|e| refuse(e.to_string()))?;
    if !report.valid {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        return Err(refuse(format!(
            "it does not chain to the root that signed the current intermediate: {}",
            problems.join("; ")
        )));
    }
    constraints_kept(&old_info, new).map_err(refuse)?;
    if new.not_after <= now {
        return Err(refuse("it has expired".into()));
    }
    let imported = client
        .pki_set_signed(mount, &format!("{}\n{root}", first.trim_end()))
        .await
        .map_err(bao(env, "import the signed intermediate"))?;
    // The imported issuer is the one whose key `begin` generated; a certificate for another key
    // would land as a key-less issuer that can sign nothing. Undo that import.
    let issuer_id = imported
        .mapping
        .iter()
        .find(|(_, key)| **key == record.new_openbao_key_id)
        .map(|(issuer, _)| issuer.clone());
    let Some(issuer_id) = issuer_id else {
        for (issuer, key) in &imported.mapping {
            if key.is_empty() && imported.imported_issuers.contains(issuer) {
                let info = client.pki_read_issuer(mount, issuer).await.ok();
                let is_root = info
                    .and_then(|i| warden_pki::parse_pem_bundle(&i.certificate).ok())
                    .is_some_and(|v| v[0].self_signed);
                if !is_root {
                    let _ = client.pki_delete_issuer(mount, issuer).await;
                }
            }
        }
        return Err(refuse(
            "it is not for the key `ca rotate-intermediate begin` generated (sign the CSR begin wrote)"
                .into(),
        ));
    };
    record.state = RotationState::Imported;
    record.new_issuer_id = Some(issuer_id);
    record.new_key_id.clone_from(&new.subject_key_id);
    write_record(client, env, &record).await?;
    Ok(record)
}

/// Whether `new` keeps every name constraint of `old` (ADR 0013): refused when `old` is
/// constrained and `new` is not, or leaves one of its subtrees out.
pub(crate) fn constraints_kept(
    old: &warden_pki::CertInfo,
    new: &warden_pki::CertInfo,
) -> Result<(), String> {
    if old.permitted_dns.is_empty() {
        return Ok(());
    }
    if new.permitted_dns.is_empty() {
        return Err(format!(
            "it has no name constraints, and the current intermediate is constrained to {} (ADR 0013)",
            old.permitted_dns.join(", ")
        ));
    }
    let missing: Vec<&str> = old
        .permitted_dns
        .iter()
        .filter(|d| !new.permitted_dns.contains(d))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "its name constraints leave out {} that the current intermediate permits; sign it with the same --permitted-dns",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// The self-signed root at the end of an issuer's chain as OpenBao holds it, PEM.
pub(crate) fn root_of(issuer: &warden_bao::Issuer) -> Option<String> {
    issuer
        .ca_chain
        .iter()
        .flat_map(|p| warden_pki::pem_blocks(p))
        .find(|b| {
            warden_pki::parse_pem_bundle(b)
                .ok()
                .is_some_and(|v| v[0].self_signed)
        })
        .map(str::to_owned)
}

/// Step 5: the new issuer becomes the default; the overlap starts. The caller has made both
/// issuers trusted first (cert-auth roles, the listener's client-CA bundle).
pub async fn activate(
    client: &Client,
    env: &Environment,
    policy: &CaPolicy,
    now: OffsetDateTime,
) -> Result<RotationRecord, CaError> {
    let record = read_record(client, env).await?;
    let Some(mut record) = record.filter(|r| r.state == RotationState::Imported) else {
        let r = read_record(client, env).await?;
        return Err(out_of_order(env, "activate", r.as_ref(), "imported"));
    };
    let new = record.new_issuer_id.clone().unwrap_or_default();
    client
        .pki_set_default_issuer(&env.mounts.pki, &new)
        .await
        .map_err(bao(env, "make the new intermediate the default issuer"))?;
    record.state = RotationState::Active;
    record.activated_at = Some(rfc(now));
    let overlap = time::Duration::try_from(policy.overlap.0).unwrap_or(time::Duration::MAX);
    record.overlap_ends_at = Some(rfc(now + overlap));
    write_record(client, env, &record).await?;
    Ok(record)
}

/// How activating the rotation under way would load the server against `[ca] reissue_rate`
/// (ADR 0035): the live certificates chaining to the intermediate being replaced, spread over
/// the reissue window. `None` when the spec declares no ceiling or no rotation is begun or
/// imported (the step then refuses out of order); [`CaError::OverRate`] when the busiest minute
/// would exceed it. Read before anything changes, so a refusal leaves the
/// rotation where it was.
pub async fn check_rate(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    now: OffsetDateTime,
) -> Result<Option<RateCheck>, CaError> {
    if spec.ca.reissue_rate.is_none() {
        return Ok(None);
    }
    let issuers = mount_issuers(client, env).await?;
    let reports = env_reports(client, spec, env).await?;
    let rotation = read_record(client, env).await?;
    // The certificates that move are those of the intermediate the rotation replaces (the
    // record's). Without a rotation ready to activate there is nothing to judge: the step
    // itself then refuses out of order, which is the error to show, not a rate.
    let Some(replaced) = rotation
        .as_ref()
        .filter(|r| matches!(r.state, RotationState::Begun | RotationState::Imported))
        .map(|r| r.old_issuer_id.clone())
    else {
        return Ok(None);
    };
    let Some(key) = issuers
        .iter()
        .find(|(id, _, info)| !info.self_signed && *id == replaced)
        .and_then(|(_, _, info)| info.subject_key_id.clone())
    else {
        return Err(CaError::RateUnknown {
            env: env.name.to_string(),
            issuer: replaced,
        });
    };
    let revoked = revoked_serials(client, env, &issuers).await;
    let (reports, _) = without_revoked(&reports, &revoked);
    let leaves = live_leaves(&reports, now.unix_timestamp());
    let (check, short) = rate_and_short(&spec.ca, &reports, &leaves, Some(&key));
    let Some(check) = check else {
        return Ok(None);
    };
    if !check.holds() {
        return Err(CaError::OverRate {
            env: env.name.to_string(),
            check,
            short_windows: short,
        });
    }
    Ok(Some(check))
}

/// What [`retire`] would leave behind: the live leaves still from the old issuer.
#[derive(Debug, Clone, Serialize)]
pub struct Remaining {
    /// Live leaves from the old issuer.
    pub count: usize,
    /// Their identities.
    pub identities: Vec<String>,
}

/// Step 6: removes the old issuer from the mount. Refused while live leaves still chain to it
/// and the overlap is not over, unless `force` gives a reason (recorded, with the identities
/// that did not move).
pub async fn retire(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    force: Option<&str>,
    now: OffsetDateTime,
) -> Result<RotationRecord, CaError> {
    if force.is_some_and(|r| r.trim().is_empty()) {
        return Err(CaError::NoReason);
    }
    let record = read_record(client, env).await?;
    let Some(mut record) = record.filter(|r| r.state == RotationState::Active) else {
        let r = read_record(client, env).await?;
        return Err(out_of_order(env, "retire", r.as_ref(), "active"));
    };
    let st = status(client, spec, env, now).await?;
    let old = st.cas.iter().find(|c| c.issuer_id == record.old_issuer_id);
    let remaining = Remaining {
        count: old.map_or(0, |c| c.live_leaves),
        identities: old.map(|c| c.identities.clone()).unwrap_or_default(),
    };
    let overlap_over = record
        .overlap_ends_at
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .is_some_and(|t| now >= t);
    if remaining.count > 0 && !overlap_over && force.is_none() {
        return Err(CaError::LeavesRemain {
            env: env.name.to_string(),
            count: remaining.count,
            identities: remaining.identities.join(", "),
            overlap_ends_at: record.overlap_ends_at.clone().unwrap_or_default(),
        });
    }
    client
        .pki_delete_issuer(&env.mounts.pki, &record.old_issuer_id)
        .await
        .map_err(bao(env, "delete the old issuer"))?;
    record.state = RotationState::Retired;
    record.retired_at = Some(rfc(now));
    if remaining.count > 0 {
        record.forced_because =
            Some(force.map_or_else(|| "the overlap ended".to_owned(), |r| r.trim().to_owned()));
    }
    record.unmoved = remaining.identities;
    write_record(client, env, &record).await?;
    forget_issuer_crl(client, env, &record.old_issuer_id).await;
    Ok(record)
}

/// Removes the CRL a revocation during the overlap installed in cert auth for the retired
/// issuer (`warden-pki-<issuer id>`, [`crate::revoke`]): nothing chains to that issuer any more,
/// and one left per rotation would pile up in cert auth forever. After the retirement is
/// recorded and best effort: a list left behind only names certificates that are revoked.
async fn forget_issuer_crl(client: &Client, env: &Environment, issuer_id: &str) {
    let path = format!(
        "auth/{}/crls/{}-{issuer_id}",
        env.mounts.cert_auth,
        naming::CERT_AUTH_CRL
    );
    match client.delete(&path).await {
        Ok(()) => {}
        // None was installed (no revocation during the overlap).
        Err(e) if e.server_errors().iter().any(|m| m.contains("no such CRL")) => {}
        Err(e) => {
            tracing::warn!(%path, error = %e, "could not remove the retired issuer's CRL from cert auth; it only lists revoked certificates, delete it by hand")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posture::DeliveredOutput;

    fn report(items: &[(&str, &str, Option<&str>, &str)]) -> DeliveryReport {
        DeliveryReport {
            reported_at: String::new(),
            outputs: items
                .iter()
                .map(|(cred, exp, issuer, state)| DeliveredOutput {
                    credential: (*cred).to_owned(),
                    expires_at: Some((*exp).to_owned()),
                    issuer: issuer.map(str::to_owned),
                    state: Some((*state).to_owned()),
                    ..DeliveredOutput::default()
                })
                .collect(),
            trust_roots: None,
            tls_roots: None,
            issuer_window_s: None,
        }
    }

    #[test]
    fn revoked_certificates_and_revoked_identities_are_not_live() {
        let out = |credential: &str, serial: &str| DeliveredOutput {
            credential: credential.into(),
            serial: Some(serial.into()),
            ..Default::default()
        };
        let report = |outputs| DeliveryReport {
            outputs,
            ..Default::default()
        };
        let reports: BTreeMap<String, DeliveryReport> = [
            (
                "billing".to_owned(),
                report(vec![
                    out("billing/certificate", "01:02"),
                    out("billing/identity-cert", "00:91:e3"),
                ]),
            ),
            (
                "ledger".to_owned(),
                report(vec![
                    out("ledger/certificate", "0a:0b"),
                    out("ledger/identity-cert", "0c:0d"),
                    out("ledger/db", "0e"),
                ]),
            ),
        ]
        .into();
        // billing's identity certificate is on a CRL (as the CRL spells it, no 00 pad): both
        // of its certificates go; of ledger's, only the revoked leaf; a non-certificate stays.
        let revoked: BTreeSet<String> = ["91e3", "0a0b"].map(str::to_owned).into();
        let (kept, left_out) = without_revoked(&reports, &revoked);
        assert_eq!(left_out, 3);
        assert!(kept["billing"].outputs.is_empty());
        let ledger: Vec<_> = kept["ledger"]
            .outputs
            .iter()
            .map(|o| o.credential.as_str())
            .collect();
        assert_eq!(ledger, ["ledger/identity-cert", "ledger/db"]);
        let (kept, left_out) = without_revoked(&reports, &BTreeSet::new());
        assert_eq!(left_out, 0);
        assert_eq!(kept["ledger"].outputs.len(), 3);
    }

    #[test]
    fn live_leaves_are_unexpired_unfailed_certificates() {
        let mut reports = BTreeMap::new();
        reports.insert(
            "billing".to_owned(),
            report(&[
                (
                    "billing/certificate",
                    "2030-01-02T00:00:00Z",
                    Some("aa"),
                    "fresh",
                ),
                (
                    "billing/identity-cert",
                    "2030-01-02T00:00:00Z",
                    Some("bb"),
                    "stale",
                ),
                (
                    "billing/certificate",
                    "2029-12-31T00:00:00Z",
                    Some("aa"),
                    "fresh",
                ),
                ("billing/database/db", "2030-01-02T00:00:00Z", None, "fresh"),
                (
                    "billing/certificate",
                    "2030-01-02T00:00:00Z",
                    Some("aa"),
                    "failed",
                ),
            ]),
        );
        let now = time::macros::datetime!(2030-01-01 00:00 UTC).unix_timestamp();
        let live = live_leaves(&reports, now);
        assert_eq!(live.len(), 2);
        assert_eq!(live[0].issuer.as_deref(), Some("aa"));
        assert_eq!(live[1].issuer.as_deref(), Some("bb"));
    }
}
