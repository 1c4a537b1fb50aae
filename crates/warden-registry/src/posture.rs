//! Posture: every purpose's credentials in one environment, judged at an instant from live
//! state. Each credential kind is read where its truth lives:
//!
//! | credential | source |
//! |---|---|
//! | `<app>/certificate`, `<id>/identity-cert` | the agent's delivery report (`warden/…/delivered/<identity>`, ADR 0036): OpenBao keeps no copy (`no_store`) |
//! | `<id>/secret/<name>`, `<app>/signing-key/<name>` | KV v2 metadata: the current version's `created_time`; for a signing key its agent renders as files, the agent's report too (the deployed `kid`, a refused delivery) |
//! | `<app>/transit/<key>` | the transit key's latest version and its creation time |
//! | `<container>/secret-id` | the AppRole role's secret-ids (accessor metadata, never the id) |
//! | `<app>/database/<db>` | the live leases under `<mount>/creds/<role>` |
//! | `<pipeline>/ci-token` | the JWT role: tokens live at most `token_max_ttl`, minted per run |
//! | `domain/<name>` | the stored certificate's `not_after` and its version's time |
//!
//! Nothing here reads a secret value: KV is read through `metadata/`, domain certificates
//! through the non-secret fields of their entry, secret-ids through accessors.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_bao::{Client, KvMetadata};
use warden_spec::naming::{self, KvEntry, Location};
use warden_spec::rules::{Observed, judge};
use warden_spec::{Credential, CredentialKind, Environment, Purpose, Spec, Status};

/// Why posture could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A read failed for a reason other than "absent".
    #[error("{env}: reading {what}: {source}")]
    Bao {
        /// Environment.
        env: String,
        /// What was being read.
        what: String,
        /// The client's error.
        #[source]
        source: warden_bao::Error,
    },
}

/// Posture of one environment at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Environment.
    pub env: String,
    /// The instant judged (Unix seconds).
    pub at: i64,
    /// Purposes with at least one credential here, in id order.
    pub purposes: Vec<PurposePosture>,
    /// The worst status of any credential (healthy when there is none).
    pub worst: Status,
    /// Break-glass tokens still usable here (neither expired nor closed).
    pub break_glass: Vec<crate::break_glass::Record>,
}

/// One purpose and its credentials.
#[derive(Debug, Clone, Serialize)]
pub struct PurposePosture {
    /// Purpose id.
    pub purpose: String,
    /// Owner.
    pub owner: String,
    /// Storage tier.
    pub tier: &'static str,
    /// Delivery mode.
    pub delivery: &'static str,
    /// Evidence component id: the evidence link.
    pub evidence: String,
    /// Worst status of its credentials.
    pub status: Status,
    /// Its credentials here.
    pub credentials: Vec<CredentialPosture>,
}

/// One credential's posture.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialPosture {
    /// Reference (`billing/certificate`).
    pub id: String,
    /// The consuming identity.
    pub identity: String,
    /// Kind, in words (`certificate`, `secret`, ...).
    pub kind: &'static str,
    /// Status.
    pub status: Status,
    /// Why.
    pub reason: String,
    /// When the current one was issued (Unix seconds).
    pub issued_at: Option<i64>,
    /// When it expires by itself.
    pub expires_at: Option<i64>,
    /// When rotation is due.
    pub rotation_due_at: Option<i64>,
    /// Where the facts came from.
    pub source: &'static str,
    /// Non-secret facts: serial, version, digest, last reload...
    pub detail: BTreeMap<String, String>,
}

/// What an agent reports it delivered, at `warden/…/delivered/<identity>` (written by the
/// identity itself; docs/registry.md has the format).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DeliveryReport {
    /// When the agent wrote this report (RFC 3339).
    #[serde(default)]
    pub reported_at: String,
    /// One entry per delivered output.
    #[serde(default)]
    pub outputs: Vec<DeliveredOutput>,
    /// SHA-256 (hex) of each root certificate the agent's trust file holds, read when the
    /// report was built; `None` from an agent older than root rollovers (ADR 0030). The agent
    /// writes its own report, so junk here must neither drop the whole report (the agent would
    /// vanish from the rollover's count of agents behind) nor count as a root: anything but a
    /// list reads as `None`, and entries that are not SHA-256 hex are left out, so such an
    /// agent counts as unknown.
    #[serde(
        default,
        deserialize_with = "lenient_roots",
        skip_serializing_if = "Option::is_none"
    )]
    pub trust_roots: Option<Vec<String>>,
    /// The same for the roots the agent's connection to OpenBao trusts: the trust file as it
    /// was when the agent started (a root shipped later reaches the connection only at a
    /// restart). Read as leniently as `trust_roots`.
    #[serde(
        default,
        deserialize_with = "lenient_roots",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_roots: Option<Vec<String>>,
    /// The agent's `[renewal] issuer_window` in seconds (ADR 0035); `None` from an older agent,
    /// or when what the agent wrote is not a positive whole number (an agent writes its own
    /// report: junk here must not drop the rest of it).
    #[serde(
        default,
        deserialize_with = "lenient_window",
        skip_serializing_if = "Option::is_none"
    )]
    pub issuer_window_s: Option<u64>,
}

fn lenient_window<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Value::deserialize(d)?.as_u64().filter(|w| *w > 0))
}

fn lenient_roots<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let Value::Array(items) = Value::deserialize(d)? else {
        return Ok(None);
    };
    Ok(Some(
        items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase)
            .collect(),
    ))
}

/// One delivered output in a [`DeliveryReport`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DeliveredOutput {
    /// The credential reference it delivers (`billing/certificate`).
    pub credential: String,
    /// The output's name in `agent.toml`.
    #[serde(default)]
    pub output: String,
    /// Certificate serial, if a certificate.
    #[serde(default)]
    pub serial: Option<String>,
    /// Certificate `notBefore` / secret version time (RFC 3339).
    #[serde(default)]
    pub issued_at: Option<String>,
    /// Certificate `notAfter` (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// SHA-256 of the delivered file set.
    #[serde(default)]
    pub digest: Option<String>,
    /// When it was last delivered (RFC 3339).
    #[serde(default)]
    pub delivered_at: Option<String>,
    /// Outcome of the last reload (`ok`, `failed: …`, `none`).
    #[serde(default)]
    pub last_reload: Option<String>,
    /// The agent's own view (`fresh`, `stale`, `failed`).
    #[serde(default)]
    pub state: Option<String>,
    /// Why the agent's last refresh failed (a purpose's refusal, …), while not fresh.
    #[serde(default)]
    pub error: Option<String>,
    /// For certificates: the key id of the issuer that signed it (its AuthorityKeyIdentifier,
    /// hex), so CA status counts the live leaves of each intermediate (ADR 0029).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

fn ts(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Formats Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

fn kind_word(k: &CredentialKind) -> &'static str {
    match k {
        CredentialKind::IdentityCert => "identity-cert",
        CredentialKind::Certificate => "certificate",
        CredentialKind::Secret(_) => "secret",
        CredentialKind::Database(_) => "database",
        CredentialKind::SecretId => "secret-id",
        CredentialKind::CiToken => "ci-token",
        CredentialKind::TransitKey(_) => "transit-key",
        CredentialKind::SigningKey(_) => "signing-key",
        CredentialKind::DomainCert(_) => "domain-cert",
    }
}

/// The facts about one credential, before judging.
#[derive(Default)]
struct Facts {
    seen: Observed,
    source: &'static str,
    detail: BTreeMap<String, String>,
    /// A status the facts force regardless of time (an agent reporting `stale`).
    floor: Option<(Status, String)>,
}

/// The spec's purposes, each marked `revoked` when its registry entry says so (a live
/// revocation the spec has not caught up with). An entry this reader cannot read leaves the
/// purpose as the spec has it: posture reads, it does not enforce (agents and serve do).
async fn live_revoked(client: &Client, spec: &Spec, creds: &[Credential]) -> Vec<Purpose> {
    let mut out = Vec::with_capacity(spec.purposes.len());
    for p in &spec.purposes {
        let mut p = p.clone();
        if !p.revoked && creds.iter().any(|c| p.covers(&c.id)) {
            p.revoked = crate::revoke::revoked_live(client, p.id.as_str())
                .await
                .unwrap_or(false);
        }
        out.push(p);
    }
    out
}

/// Reads posture of `env` for `spec` as of `now` (Unix seconds). Reads only.
pub async fn collect(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    now: i64,
) -> Result<Report, Error> {
    let creds: Vec<Credential> = spec
        .credentials()
        .into_iter()
        .filter(|c| c.environments.contains(&env.name))
        .collect();
    let kv = kv_metadata(client, spec, env, &creds).await?;
    collect_with(client, spec, env, now, &creds, Arc::new(kv)).await
}

/// [`collect`] over scans already made (evidence makes them once for posture and for its
/// own history of each secret).
pub(crate) async fn collect_with(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    now: i64,
    creds: &[Credential],
    kv: Arc<KvScans>,
) -> Result<Report, Error> {
    // Delivery reports first: one LIST says which identities have one, then only those are
    // read (10,000 identities without agents cost one request, not 10,000 404s).
    let reports = delivery_reports(client, env, creds).await?;
    let reader = Reader {
        client,
        spec,
        env,
        now,
        reports,
        kv,
    };
    // A purpose revoked live (`warden revoke purpose`, ADR 0032) is judged revoked before the
    // spec says so: its registry entry is what agents obey.
    let purposes_here = live_revoked(client, spec, creds).await;
    // Only credentials some purpose governs are read, each once, a bounded number at a time.
    let governed: Vec<(&Purpose, &Credential)> = creds
        .iter()
        .filter_map(|c| {
            purposes_here
                .iter()
                .find(|p| p.covers(&c.id))
                .map(|p| (p, c))
        })
        .collect();
    let judged_all = warden_bao::bounded::run(governed, READ_CONCURRENCY, |(p, c)| {
        let reader = &reader;
        async move { Ok::<_, Error>((p.id.as_str(), judged(p, c, reader.facts(c).await?, now))) }
    })
    .await;
    let mut by_purpose: BTreeMap<&str, Vec<CredentialPosture>> = BTreeMap::new();
    for r in judged_all {
        let (purpose, posture) = r?;
        by_purpose.entry(purpose).or_default().push(posture);
    }
    let mut purposes = Vec::new();
    for p in &spec.purposes {
        let Some(credentials) = by_purpose.remove(p.id.as_str()) else {
            continue;
        };
        let status = credentials
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Healthy);
        purposes.push(PurposePosture {
            purpose: p.id.to_string(),
            owner: p.owner.clone(),
            tier: p.tier.as_str(),
            delivery: p.delivery.as_str(),
            evidence: p.evidence.clone(),
            status,
            credentials,
        });
    }
    let worst = purposes
        .iter()
        .map(|p| p.status)
        .max()
        .unwrap_or(Status::Healthy);
    // A registry a reader may not list shows no break-glass rather than failing posture.
    let break_glass = crate::break_glass::list(client, env.name.as_str())
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.state(now) == "active")
        .collect();
    Ok(Report {
        env: env.name.to_string(),
        at: now,
        purposes,
        worst,
        break_glass,
    })
}

fn judged(p: &Purpose, c: &Credential, facts: Facts, now: i64) -> CredentialPosture {
    let mut j = judge(p, &facts.seen, now);
    if let Some((floor, why)) = facts.floor
        && floor > j.status
    {
        j.status = floor;
        j.reason = why;
    }
    CredentialPosture {
        id: c.id.clone(),
        identity: c.identity.to_string(),
        kind: kind_word(&c.kind),
        status: j.status,
        reason: j.reason,
        issued_at: facts.seen.issued_at,
        expires_at: facts.seen.expires_at,
        rotation_due_at: j.rotation_due_at,
        source: facts.source,
        detail: facts.detail,
    }
}

/// Reads in flight at once: keeps one keep-alive client busy without flooding the server.
const READ_CONCURRENCY: usize = 16;

/// The delivery reports of the identities whose credentials posture judges from them, by
/// identity. Absent from the map: no report.
///
/// Agents write their report as their entry's custom metadata (ADR 0036), so one `SCAN` of
/// the folder's `detailed-metadata` answers every identity's report at once: 10,000 agents
/// cost one request, not 10,000 reads. A report written as data (an older agent, one too big
/// for the metadata, or a policy without the metadata grant) is read on its own. A reader that
/// may not scan lists the folder and reads each entry's metadata, then its data if that is
/// where the latest report is.
pub(crate) async fn delivery_reports(
    client: &Client,
    env: &Environment,
    creds: &[Credential],
) -> Result<BTreeMap<String, DeliveryReport>, Error> {
    let mut wanted: Vec<&str> = creds
        .iter()
        .filter(|c| {
            matches!(
                c.kind,
                CredentialKind::IdentityCert
                    | CredentialKind::Certificate
                    | CredentialKind::Database(_)
                    | CredentialKind::SigningKey(_)
            )
        })
        .map(|c| c.identity.as_str())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let bao = |what: String| {
        let env = env.name.to_string();
        move |source| Error::Bao { env, what, source }
    };
    let kv = client.kv2(naming::META_MOUNT);
    let folder = format!("{}/", naming::DELIVERED_PREFIX);
    let mut found: Vec<(&str, ReportAt)> = Vec::new();
    match kv.scan_metadata(&folder).await {
        Ok(mut scanned) => {
            // Each entry is dropped once its report is parsed: at 10,000 identities the
            // scan's metadata and the parsed reports are not held side by side.
            for identity in wanted {
                if let Some(md) = scanned.remove(&format!("{folder}{identity}")) {
                    found.push((identity, report_at(&md)));
                }
            }
        }
        Err(warden_bao::KvError::Api { source, .. })
            if !source.is_permission_denied()
                && !matches!(source.status(), Some(400 | 404 | 405)) =>
        {
            return Err(bao(format!(
                "scan {}/detailed-metadata/{folder}",
                naming::META_MOUNT
            ))(source));
        }
        Err(e) => {
            tracing::warn!(
                "cannot scan the delivery reports ({e}); reading each entry (one request per identity: grant `scan` on {}/detailed-metadata/{folder}, ADR 0036)",
                naming::META_MOUNT
            );
            let list = naming::delivery_reports().metadata_path();
            match client.list(&list).await {
                Ok(keys) => {
                    let have: std::collections::BTreeSet<&str> =
                        keys.iter().map(String::as_str).collect();
                    wanted.retain(|i| have.contains(i));
                }
                Err(e) if e.is_not_found() || matches!(e.status(), Some(400 | 405)) => {
                    wanted.clear();
                }
                // A reader that may not list reads each entry (a 404 is "no report").
                Err(e) if e.is_permission_denied() => {}
                Err(source) => return Err(bao(format!("list {list}"))(source)),
            }
            let read = warden_bao::bounded::run(wanted, READ_CONCURRENCY, |identity| async move {
                Ok::<_, Error>((identity, locate(client, env, identity).await?))
            })
            .await;
            for r in read {
                found.push(r?);
            }
        }
    }
    // Only the reports whose latest copy is in the data (or may be) cost a read more.
    let settled = warden_bao::bounded::run(found, READ_CONCURRENCY, |(identity, at)| async move {
        Ok::<_, Error>(
            settle(client, env, identity, at)
                .await?
                .map(|r| (identity.to_owned(), r)),
        )
    })
    .await;
    let mut out = BTreeMap::new();
    for r in settled {
        if let Some((identity, report)) = r? {
            out.insert(identity, report);
        }
    }
    Ok(out)
}

/// One identity's delivery report, wherever its agent wrote it (ADR 0036): its entry's
/// metadata, then its data when that is where the latest is. `None`: no report.
pub(crate) async fn delivery_report_of(
    client: &Client,
    env: &Environment,
    identity: &str,
) -> Result<Option<DeliveryReport>, Error> {
    let at = locate(client, env, identity).await?;
    settle(client, env, identity, at).await
}

/// Where `identity`'s latest report is, from one read of its entry's metadata.
async fn locate(client: &Client, env: &Environment, identity: &str) -> Result<ReportAt, Error> {
    let entry = naming::delivery_report(identity);
    match client.kv2(naming::META_MOUNT).metadata(&entry.path).await {
        Ok(md) => Ok(report_at(&md)),
        // A reader that may read the data only (a policy written before ADR 0036).
        Err(e) if e.is_permission_denied() => Ok(ReportAt::Data),
        Err(warden_bao::KvError::Api { source, .. })
            if !source.is_not_found() && !matches!(source.status(), Some(400 | 405)) =>
        {
            Err(Error::Bao {
                env: env.name.to_string(),
                what: format!("read {}", entry.metadata_path()),
                source,
            })
        }
        Err(_) => Ok(ReportAt::Nowhere),
    }
}

/// The report `at` says is the latest, reading the data when that is (or may be) where it is;
/// only the outputs `identity` may speak for ([`own_outputs`]).
async fn settle(
    client: &Client,
    env: &Environment,
    identity: &str,
    at: ReportAt,
) -> Result<Option<DeliveryReport>, Error> {
    let report = match at {
        ReportAt::Metadata(r) => Some(r),
        ReportAt::Nowhere => None,
        ReportAt::Data => read_data_report(client, env, identity).await?,
        ReportAt::Either(r) => Some(later(r, read_data_report(client, env, identity).await?)),
    };
    Ok(report.map(|r| own_outputs(identity, r)))
}

/// The report in `identity`'s entry's data (agents before ADR 0036, or too big for metadata).
async fn read_data_report(
    client: &Client,
    env: &Environment,
    identity: &str,
) -> Result<Option<DeliveryReport>, Error> {
    let path = naming::delivery_report(identity).data_path();
    match client.read(&path).await {
        Ok(s) => Ok(s
            .data
            .and_then(|mut d| d.get_mut("data").map(Value::take))
            .and_then(|d| serde_json::from_value::<DeliveryReport>(d).ok())),
        Err(e) if e.is_not_found() || matches!(e.status(), Some(400 | 405)) => Ok(None),
        Err(source) => Err(Error::Bao {
            env: env.name.to_string(),
            what: path,
            source,
        }),
    }
}

/// The most outputs one report is read with: an agent delivers a handful; a report claiming
/// thousands is junk (or hostile) and is cut rather than carried through every judgement.
const MAX_REPORTED_OUTPUTS: usize = 256;

/// `report` as written by `identity`'s own agent may speak for: its own certificates, identity
/// certificate and database credentials. An agent writes its own report, so an output naming
/// another identity's certificate (to inflate a rotation's count of live leaves, or to have
/// `revoke identity` revoke a victim's serial) is dropped. Signing keys may be another
/// identity's (a verifier delivers its issuer's public keys) and are kept.
fn own_outputs(identity: &str, mut report: DeliveryReport) -> DeliveryReport {
    let own = format!("{identity}/");
    report.outputs.retain(|o| {
        let c = o.credential.as_str();
        let issued_to_someone = c.ends_with("/certificate")
            || c.ends_with("/identity-cert")
            || c.contains("/database/");
        !issued_to_someone || c.starts_with(&own)
    });
    report.outputs.truncate(MAX_REPORTED_OUTPUTS);
    report
}

/// Where an identity's latest delivery report is, by its entry's metadata (ADR 0036).
enum ReportAt {
    /// In the custom metadata (parsed; a report that does not parse counts as none).
    Metadata(DeliveryReport),
    /// In the data: read it.
    Data,
    /// In both, and the server cannot say which was written last (Vault, OpenBao before 2.4:
    /// a metadata write leaves `updated_time` alone; such a server reports no
    /// `current_metadata_version`): read the data and keep the later `reported_at`.
    Either(DeliveryReport),
    /// Nowhere.
    Nowhere,
}

/// The later of two reports of one identity by `reported_at` (the metadata's when either
/// does not parse as RFC 3339).
fn later(metadata: DeliveryReport, data: Option<DeliveryReport>) -> DeliveryReport {
    let at = |r: &DeliveryReport| OffsetDateTime::parse(&r.reported_at, &Rfc3339).ok();
    match data {
        Some(d) if at(&d).is_some_and(|t| at(&metadata).is_some_and(|m| t > m)) => d,
        _ => metadata,
    }
}

/// The report in the metadata is the latest unless the data was written after it: a data
/// write sets the entry's `updated_time` to the new version's `created_time`, a metadata write
/// sets it later than any version's (verified on OpenBao 2.7.2).
fn report_at(md: &KvMetadata) -> ReportAt {
    let data_written_last = md.current_version > 0
        && md
            .versions
            .get(&md.current_version)
            .is_some_and(|v| v.created_time == md.updated_time);
    let in_metadata = naming::report_from_metadata(&md.custom_metadata)
        .and_then(|text| serde_json::from_str::<DeliveryReport>(&text).ok());
    match in_metadata {
        Some(r) if md.current_version > 0 && md.current_metadata_version.is_none() => {
            ReportAt::Either(r)
        }
        Some(r) if !data_written_last => ReportAt::Metadata(r),
        _ if md.current_version > 0 => ReportAt::Data,
        _ => ReportAt::Nowhere,
    }
}

/// The KV v2 metadata of the secrets and signing keys posture judges, read ahead with one
/// `SCAN` of `detailed-metadata` per mount (ADR 0027): 10,000 secrets cost one request instead
/// of 10,000 metadata reads. By mount, then by path inside it (absent: no such secret). A mount
/// missing here — the token may not scan it (`warden serve`'s identity has exact read grants
/// only), or the server has no such endpoint — has its secrets read one by one, as before.
#[derive(Default)]
pub(crate) struct KvScans(BTreeMap<String, (String, BTreeMap<String, KvMetadata>)>);

impl KvScans {
    /// What the scans say of `e`: `None` when no scan covered it (read it), `Some(None)` when
    /// the scan of its folder did not find it (no such secret).
    pub(crate) fn lookup(&self, e: &KvEntry) -> Option<Option<&KvMetadata>> {
        let (folder, found) = self.0.get(&e.mount)?;
        e.path
            .starts_with(folder.as_str())
            .then(|| found.get(&e.path))
    }
}

pub(crate) async fn kv_metadata(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    creds: &[Credential],
) -> Result<KvScans, Error> {
    // The folders to scan: per mount, the deepest folder holding every wanted secret, so a
    // spec with one secret scans that identity's folder, not the whole mount.
    let mut folders: BTreeMap<String, String> = BTreeMap::new();
    for c in creds {
        if !matches!(
            c.kind,
            CredentialKind::Secret(_) | CredentialKind::SigningKey(_)
        ) {
            continue;
        }
        let Some(Location::Kv(e)) = naming::location(spec, env, c) else {
            continue;
        };
        let folder = match e.path.rfind('/') {
            Some(i) => &e.path[..=i],
            None => "",
        };
        folders
            .entry(e.mount)
            .and_modify(|f| *f = common_folder(f, folder).to_owned())
            .or_insert_with(|| folder.to_owned());
    }
    let mut out = KvScans::default();
    for (mount, folder) in folders {
        match client.kv2(&mount).scan_metadata(&folder).await {
            Ok(found) => {
                out.0.insert(mount, (folder, found));
            }
            // Anything but "may not" or "no such endpoint/mount" is a failure of posture.
            Err(warden_bao::KvError::Api { source, .. })
                if !source.is_permission_denied()
                    && !matches!(source.status(), Some(400 | 404 | 405)) =>
            {
                return Err(Error::Bao {
                    env: env.name.to_string(),
                    what: format!("scan {mount}/detailed-metadata/{folder}"),
                    source,
                });
            }
            Err(e) => {
                tracing::debug!(%mount, "cannot scan KV metadata ({e}); reading each secret");
            }
        }
    }
    Ok(out)
}

/// The longest common folder (ending in `/`, or `""`) of two folders.
fn common_folder<'a>(a: &'a str, b: &str) -> &'a str {
    let mut end = 0;
    for ((i, x), y) in a.char_indices().zip(b.chars()) {
        if x != y {
            break;
        }
        if x == '/' {
            end = i + 1;
        }
    }
    &a[..end]
}

struct Reader<'a> {
    client: &'a Client,
    spec: &'a Spec,
    env: &'a Environment,
    now: i64,
    reports: BTreeMap<String, DeliveryReport>,
    kv: Arc<KvScans>,
}

impl Reader<'_> {
    /// GET that maps "absent" (404, or a path under a backend that is not mounted) to `None`.
    async fn get(&self, path: &str) -> Result<Option<Value>, Error> {
        match self.client.read(path).await {
            Ok(s) => Ok(s.data),
            Err(e) if e.is_not_found() || matches!(e.status(), Some(400 | 405)) => Ok(None),
            Err(source) => Err(Error::Bao {
                env: self.env.name.to_string(),
                what: path.to_owned(),
                source,
            }),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, Error> {
        match self.client.list(path).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() || matches!(e.status(), Some(400 | 405)) => Ok(Vec::new()),
            Err(source) => Err(Error::Bao {
                env: self.env.name.to_string(),
                what: format!("list {path}"),
                source,
            }),
        }
    }

    fn report(&self, identity: &str) -> Option<&DeliveryReport> {
        self.reports.get(identity)
    }

    async fn facts(&self, c: &Credential) -> Result<Facts, Error> {
        match (&c.kind, naming::location(self.spec, self.env, c)) {
            (CredentialKind::IdentityCert | CredentialKind::Certificate, _) => {
                self.delivered(c).await
            }
            (CredentialKind::Secret(_), Some(Location::Kv(e))) => self.kv_version(&e).await,
            (CredentialKind::SigningKey(_), Some(Location::Kv(e))) => {
                let mut f = self.kv_version(&e).await?;
                // A key its agent renders as files (`type = "signing_key"`): the agent's
                // report says which version is deployed and whether delivering failed.
                if let Some(o) = self
                    .report(c.identity.as_str())
                    .and_then(|r| r.outputs.iter().find(|o| o.credential == c.id))
                {
                    apply_report(&mut f, o);
                }
                Ok(f)
            }
            (CredentialKind::TransitKey(_), Some(Location::TransitKey { mount, key })) => {
                self.transit_key(&mount, &key).await
            }
            (CredentialKind::SecretId, Some(Location::AppRole { mount, role })) => {
                self.secret_ids(&mount, &role).await
            }
            (CredentialKind::Database(_), Some(Location::DatabaseRole { mount, role })) => {
                self.database_leases(c, &mount, &role).await
            }
            (CredentialKind::CiToken, location) => self.ci_token(location).await,
            (CredentialKind::DomainCert(slug), location) => self.domain_cert(slug, location).await,
            // Each kind's location has the shape matched above (`naming::location`).
            _ => Ok(Facts::default()),
        }
    }

    /// A transit key: its latest version and when that version was created.
    async fn transit_key(&self, mount: &str, key: &str) -> Result<Facts, Error> {
        let mut f = Facts {
            source: "transit key",
            ..Facts::default()
        };
        if let Some(d) = self.get(&format!("{mount}/keys/{key}")).await? {
            let latest = d.get("latest_version").and_then(Value::as_u64).unwrap_or(0);
            f.detail.insert("version".into(), latest.to_string());
            if let Some(min) = d.get("min_decryption_version").and_then(Value::as_u64) {
                f.detail
                    .insert("min_decryption_version".into(), min.to_string());
            }
            // `keys` maps version → creation time (symmetric) or → an object with
            // `creation_time` (asymmetric).
            let created = d
                .get("keys")
                .and_then(|k| k.get(latest.to_string()))
                .and_then(|v| match v {
                    Value::Number(n) => n.as_i64(),
                    Value::Object(o) => o.get("creation_time").and_then(Value::as_str).and_then(ts),
                    _ => None,
                });
            f.seen.issued_at = created;
        }
        Ok(f)
    }

    /// A container's secret-ids: how many are live, and the newest one's issuance and expiry,
    /// read through their accessors.
    async fn secret_ids(&self, mount: &str, role: &str) -> Result<Facts, Error> {
        let base = format!("auth/{mount}/role/{role}/secret-id");
        let mut f = Facts {
            source: "approle secret-id metadata",
            ..Facts::default()
        };
        let accessors = self.list(&base).await?;
        f.detail.insert("live".into(), accessors.len().to_string());
        if accessors.is_empty() {
            f.floor = Some((
                Status::Unknown,
                "no live secret-id (`warden reveal create` mints one)".to_owned(),
            ));
        }
        // The newest live secret-id decides: issuance time and expiry, never the id.
        for a in accessors {
            let Ok(s) = self
                .client
                .write(
                    &format!("{base}-accessor/lookup"),
                    &serde_json::json!({ "secret_id_accessor": a }),
                    warden_bao::Idempotent::Yes,
                )
                .await
            else {
                continue;
            };
            let Some(d) = s.and_then(|s| s.data) else {
                continue;
            };
            let created = d.get("creation_time").and_then(Value::as_str).and_then(ts);
            let expires = d
                .get("expiration_time")
                .and_then(Value::as_str)
                .and_then(ts)
                .filter(|e| *e > 0);
            if created > f.seen.issued_at {
                f.seen.issued_at = created;
                f.seen.expires_at = expires;
            }
        }
        Ok(f)
    }

    /// Database credentials: the newest live lease under the role, then what the agent reports
    /// it has deployed.
    async fn database_leases(
        &self,
        c: &Credential,
        mount: &str,
        role: &str,
    ) -> Result<Facts, Error> {
        let prefix = format!("sys/leases/lookup/{mount}/creds/{role}");
        let mut f = Facts {
            source: "database leases",
            ..Facts::default()
        };
        // OpenBao lists leases only for a token with `sudo` there (operators have it; serve's
        // generated policy never does): without it, the agent's report below is the evidence,
        // and the detail says the leases were not seen.
        let leases = match self.client.list(&prefix).await {
            Err(e) if e.is_permission_denied() => {
                f.detail.insert(
                    "live_leases".into(),
                    "not listable with this token (OpenBao needs sudo to list leases)".into(),
                );
                Vec::new()
            }
            Err(e) if e.is_not_found() || matches!(e.status(), Some(400 | 405)) => {
                f.detail.insert("live_leases".into(), "0".into());
                Vec::new()
            }
            Err(source) => {
                return Err(Error::Bao {
                    env: self.env.name.to_string(),
                    what: format!("list {prefix}"),
                    source,
                });
            }
            Ok(leases) => {
                f.detail
                    .insert("live_leases".into(), leases.len().to_string());
                leases
            }
        };
        for l in leases {
            let lease_id = format!("{mount}/creds/{role}/{l}");
            let Ok(Some(s)) = self
                .client
                .write(
                    "sys/leases/lookup",
                    &serde_json::json!({ "lease_id": lease_id }),
                    warden_bao::Idempotent::Yes,
                )
                .await
            else {
                continue;
            };
            let Some(d) = s.data else { continue };
            let issued = d.get("issue_time").and_then(Value::as_str).and_then(ts);
            let expires = d.get("expire_time").and_then(Value::as_str).and_then(ts);
            if issued > f.seen.issued_at {
                f.seen.issued_at = issued;
                f.seen.expires_at = expires;
            }
        }
        // The agent's report, when there is one, says what is actually deployed.
        if let Some(r) = self.report(c.identity.as_str())
            && let Some(o) = r.outputs.iter().find(|o| o.credential == c.id)
        {
            apply_report(&mut f, o);
        }
        Ok(f)
    }

    /// A pipeline's CI token, judged from its JWT role.
    async fn ci_token(&self, location: Option<Location>) -> Result<Facts, Error> {
        let mut f = Facts {
            source: "jwt role",
            ..Facts::default()
        };
        // No location: not a pipeline of the spec.
        let Some(role @ Location::JwtRole { .. }) = location else {
            return Ok(f);
        };
        if let Some(d) = self.get(&role.to_string()).await? {
            // Tokens are minted per run and live at most token_max_ttl: a token minted
            // now is the worst case.
            let max = d.get("token_max_ttl").and_then(Value::as_i64).unwrap_or(0);
            f.seen.issued_at = Some(self.now);
            f.seen.expires_at = (max > 0).then_some(self.now + max);
            f.detail.insert("token_max_ttl".into(), format!("{max}s"));
        }
        Ok(f)
    }

    /// A domain certificate stored in KV: its `not_after`, issuance and serial, read from the
    /// entry's non-secret fields.
    async fn domain_cert(&self, slug: &str, location: Option<Location>) -> Result<Facts, Error> {
        let mut f = Facts {
            source: "domain certificate in kv",
            ..Facts::default()
        };
        let (Some(d), Some(Location::Kv(entry))) = (
            self.spec.domains.iter().find(|d| d.slug.as_str() == slug),
            location,
        ) else {
            return Ok(f);
        };
        f.seen.renew_before_secs = Some(d.renew_before.as_secs());
        let Some(md) = self.get(&entry.metadata_path()).await? else {
            return Ok(f);
        };
        let version = md
            .get("current_version")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        f.detail.insert("version".into(), version.to_string());
        // The entry also holds the private key: only its non-secret fields are taken from it.
        if let Some(data) = self
            .get(&entry.data_path())
            .await?
            .and_then(|v| v.get("data").cloned())
        {
            let field = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
            f.seen.expires_at = field("not_after").as_deref().and_then(ts);
            f.seen.issued_at = field("issued_at")
                .as_deref()
                .and_then(ts)
                .or_else(|| version_time(&md, version));
            if let Some(s) = field("serial") {
                f.detail.insert("serial".into(), s);
            }
        }
        Ok(f)
    }

    /// A KV v2 secret's current version and its time: from the scan read ahead, else one
    /// metadata read.
    async fn kv_version(&self, e: &KvEntry) -> Result<Facts, Error> {
        let mut f = Facts {
            source: "kv metadata",
            ..Facts::default()
        };
        let read;
        let md = match self.kv.lookup(e) {
            Some(scanned) => scanned,
            None => {
                read = match self.get(&e.metadata_path()).await? {
                    Some(v) => {
                        Some(
                            serde_json::from_value::<KvMetadata>(v).map_err(|err| Error::Bao {
                                env: self.env.name.to_string(),
                                what: e.metadata_path(),
                                source: warden_bao::Error::Decode {
                                    path: e.metadata_path(),
                                    source: err,
                                },
                            })?,
                        )
                    }
                    None => None,
                };
                read.as_ref()
            }
        };
        if let Some(md) = md {
            let v = md.current_version;
            f.detail.insert("version".into(), v.to_string());
            let current = md.versions.get(&v);
            f.seen.issued_at = current.and_then(|x| ts(&x.created_time));
            if current.is_some_and(|x| !x.readable()) {
                f.floor = Some((Status::Unknown, format!("version {v} is deleted")));
            }
        }
        Ok(f)
    }

    async fn delivered(&self, c: &Credential) -> Result<Facts, Error> {
        let mut f = Facts {
            source: "agent report",
            ..Facts::default()
        };
        match self.report(c.identity.as_str()) {
            Some(r) => match r.outputs.iter().find(|o| o.credential == c.id) {
                Some(o) => apply_report(&mut f, o),
                None => {
                    f.floor = Some((
                        Status::Unknown,
                        "the agent's report does not include it".to_owned(),
                    ))
                }
            },
            None => {
                f.floor = Some((
                    Status::Unknown,
                    "no agent has reported a delivery".to_owned(),
                ));
            }
        }
        Ok(f)
    }
}

fn version_time(md: &Value, v: u64) -> Option<i64> {
    md.get("versions")
        .and_then(|vs| vs.get(v.to_string()))
        .and_then(|x| x.get("created_time"))
        .and_then(Value::as_str)
        .and_then(ts)
}

fn apply_report(f: &mut Facts, o: &DeliveredOutput) {
    f.source = "agent report";
    f.seen.issued_at = o.issued_at.as_deref().and_then(ts).or(f.seen.issued_at);
    f.seen.expires_at = o.expires_at.as_deref().and_then(ts).or(f.seen.expires_at);
    for (k, v) in [
        ("serial", &o.serial),
        ("digest", &o.digest),
        ("delivered_at", &o.delivered_at),
        ("last_reload", &o.last_reload),
        ("agent_state", &o.state),
        ("agent_error", &o.error),
    ] {
        if let Some(v) = v {
            f.detail.insert(k.to_owned(), v.clone());
        }
    }
    // The agent's words (docs/agent.md): `fresh`; `pending` (nothing delivered yet);
    // `stale` (usable material on disk, the last refresh failed); `failed` (nothing usable).
    let floor = match o.state.as_deref() {
        None | Some("fresh") => None,
        Some("pending") => Some((
            Status::Unknown,
            "the agent has not delivered it yet".to_owned(),
        )),
        Some("stale") => Some((
            Status::Stale,
            match &o.error {
                Some(e) => format!(
                    "the agent reports this output stale: what is on disk works, renewing it fails: {e}"
                ),
                None => {
                    "the agent reports this output stale: what is on disk works, renewing it fails"
                        .to_owned()
                }
            },
        )),
        Some("failed") => Some((
            Status::Expired,
            "the agent reports this output failed: nothing usable is on disk".to_owned(),
        )),
        Some(other) => Some((
            Status::Unknown,
            format!("the agent reports this output in an unknown state `{other}`"),
        )),
    };
    if floor.is_some() {
        f.floor = floor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_junk_issuer_window_reads_as_unknown_and_keeps_the_report() {
        let read = |w: Value| -> DeliveryReport {
            serde_json::from_value(serde_json::json!({
                "reported_at": "2026-12-06T00:00:00Z",
                "outputs": [{ "credential": "a/certificate", "output": "tls", "state": "fresh" }],
                "issuer_window_s": w,
            }))
            .expect("the report parses whatever the agent wrote there")
        };
        assert_eq!(read(serde_json::json!(330)).issuer_window_s, Some(330));
        for junk in [
            serde_json::json!(0),
            serde_json::json!(-5),
            serde_json::json!("60"),
            serde_json::json!(1.5),
            serde_json::json!({ "s": 1 }),
        ] {
            let r = read(junk.clone());
            assert_eq!(r.issuer_window_s, None, "{junk}");
            assert_eq!(r.outputs.len(), 1, "{junk}");
        }
    }

    #[test]
    fn the_agent_states_floor_posture_by_their_documented_meaning() {
        let floor = |state: Option<&str>| {
            let mut f = Facts::default();
            apply_report(
                &mut f,
                &DeliveredOutput {
                    state: state.map(str::to_owned),
                    ..DeliveredOutput::default()
                },
            );
            f.floor.map(|(s, _)| s)
        };
        assert_eq!(floor(None), None);
        assert_eq!(floor(Some("fresh")), None);
        assert_eq!(floor(Some("pending")), Some(Status::Unknown));
        assert_eq!(floor(Some("stale")), Some(Status::Stale));
        assert_eq!(floor(Some("failed")), Some(Status::Expired));
        assert_eq!(floor(Some("sideways")), Some(Status::Unknown));
    }

    #[test]
    fn the_scanned_folder_is_the_deepest_one_holding_every_secret() {
        assert_eq!(common_folder("app-00001/", "app-00002/"), "");
        assert_eq!(common_folder("team/a/", "team/b/"), "team/");
        assert_eq!(common_folder("team/a/", "team/a/"), "team/a/");
        assert_eq!(common_folder("x/", "x/y/"), "x/");
        assert_eq!(common_folder("x/y/", "x/"), "x/");
        assert_eq!(common_folder("", "x/"), "");
    }

    /// The latest report wins between the metadata and the data, by OpenBao's own times: a
    /// data write makes `updated_time` its version's `created_time`, a metadata write makes it
    /// later (ADR 0036).
    #[test]
    fn the_latest_report_is_found_in_the_metadata_or_the_data() {
        let report = r#"{"reported_at":"2026-01-01T00:00:00Z","outputs":[{"credential":"billing/certificate","output":"tls","state":"fresh"}]}"#;
        let chunks = naming::report_to_metadata(report).expect("fits");
        let md = |custom: &BTreeMap<String, String>, version: u64, v_time: &str, updated: &str| {
            let versions = if version == 0 {
                serde_json::json!({})
            } else {
                serde_json::json!({ version.to_string(): { "created_time": v_time } })
            };
            serde_json::from_value::<KvMetadata>(serde_json::json!({
                "current_version": version,
                "current_metadata_version": 1,
                "updated_time": updated,
                "custom_metadata": custom,
                "versions": versions,
            }))
            .expect("metadata")
        };
        let none = BTreeMap::new();
        let (t1, t2) = ("2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z");
        // Metadata only (a new agent).
        assert!(matches!(
            report_at(&md(&chunks, 0, "", t1)),
            ReportAt::Metadata(r) if r.outputs.len() == 1
        ));
        // Data only (an older agent, or a report too big for the metadata).
        assert!(matches!(report_at(&md(&none, 3, t1, t1)), ReportAt::Data));
        // Data, then metadata (an agent upgraded): the metadata.
        assert!(matches!(
            report_at(&md(&chunks, 3, t1, t2)),
            ReportAt::Metadata(_)
        ));
        // Metadata, then data (the report outgrew the metadata): the data.
        assert!(matches!(report_at(&md(&chunks, 4, t2, t2)), ReportAt::Data));
        // Nothing at all; junk in the metadata counts as no report.
        assert!(matches!(
            report_at(&md(&none, 0, "", t1)),
            ReportAt::Nowhere
        ));
        let junk = naming::report_to_metadata("{not json").unwrap();
        assert!(matches!(
            report_at(&md(&junk, 0, "", t1)),
            ReportAt::Nowhere
        ));
        // A server whose metadata writes leave `updated_time` alone (no
        // `current_metadata_version`: Vault, OpenBao before 2.4) cannot say; both are read and
        // the later `reported_at` wins.
        let mut old_server = md(&chunks, 3, t1, t1);
        old_server.current_metadata_version = None;
        let ReportAt::Either(meta) = report_at(&old_server) else {
            panic!("both must be read");
        };
        let mut newer = meta.clone();
        newer.reported_at = "2026-02-01T00:00:00Z".to_owned();
        assert_eq!(
            later(meta.clone(), Some(newer)).reported_at,
            "2026-02-01T00:00:00Z"
        );
        let mut older = meta.clone();
        older.reported_at = "2025-12-01T00:00:00Z".to_owned();
        assert_eq!(
            later(meta.clone(), Some(older)).reported_at,
            meta.reported_at
        );
        assert_eq!(later(meta.clone(), None).reported_at, meta.reported_at);
    }

    /// An agent writes its own report: it may not speak for another identity's certificates
    /// (a rotation's live-leaf count, `revoke identity`'s serials), and a report claiming
    /// thousands of outputs is cut.
    #[test]
    fn a_report_speaks_only_for_its_own_identity() {
        let out = |credential: &str| DeliveredOutput {
            credential: credential.to_owned(),
            ..DeliveredOutput::default()
        };
        let report = DeliveryReport {
            outputs: vec![
                out("billing/certificate"),
                out("billing/identity-cert"),
                out("billing/database/main"),
                out("victim/certificate"),
                out("victim/identity-cert"),
                out("victim/database/main"),
                out("billing-2/certificate"),
                // A verifier delivers its issuer's public keys: another identity's signing key.
                out("issuer/signing/jwt"),
            ],
            ..DeliveryReport::default()
        };
        let kept: Vec<String> = own_outputs("billing", report)
            .outputs
            .into_iter()
            .map(|o| o.credential)
            .collect();
        assert_eq!(
            kept,
            [
                "billing/certificate",
                "billing/identity-cert",
                "billing/database/main",
                "issuer/signing/jwt"
            ]
        );
        let many = DeliveryReport {
            outputs: (0..10_000).map(|_| out("billing/certificate")).collect(),
            ..DeliveryReport::default()
        };
        assert_eq!(
            own_outputs("billing", many).outputs.len(),
            MAX_REPORTED_OUTPUTS
        );
    }
}
