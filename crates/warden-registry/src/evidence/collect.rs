//! The payload of a packet: for every purpose of one evidence component in one environment,
//! its contract, the registry entry `apply` published, posture, and per credential who can
//! reach it and its rotation history; plus the policies in force. Reads only, and only
//! metadata: KV through `metadata/`, transit keys through their description, reveals through
//! their records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use serde_json::{Value, json};
use warden_bao::{Client, paged};
use warden_spec::naming::policy::{Grant, MANAGED_MARK};
use warden_spec::naming::{self, Location};
use warden_spec::{Credential, Delivery, Environment, Purpose, Spec};

use super::readers::{GrantIndex, access_paths, policy_holders, readers_indexed};
use super::{EvidenceError, canonical};
use crate::posture::{self, rfc3339};
use crate::reveal;

/// Statements the packet makes about what it cannot show.
const NOTES: [&str; 3] = [
    "readers lists ACL policies; root tokens bypass policies and are not listed",
    "no value, key or token is included: KV is read through metadata, transit keys through their public description, reveals through their records",
    "history lists what OpenBao keeps: KV versions (up to max_versions), transit key versions, reveal records",
];

/// Reads in flight at once (policies, KV metadata, transit keys).
const READ_CONCURRENCY: usize = 16;

/// Everything one export reads, before it is shaped into JSON.
pub(crate) struct Inputs<'a> {
    pub(crate) client: &'a Client,
    pub(crate) spec: &'a Spec,
    pub(crate) env: &'a Environment,
    pub(crate) component: &'a str,
    pub(crate) purposes: Vec<&'a Purpose>,
    pub(crate) now: i64,
}

impl Inputs<'_> {
    fn env_name(&self) -> &str {
        self.env.name.as_str()
    }

    fn read_err(&self, what: impl Into<String>) -> impl FnOnce(warden_bao::Error) -> EvidenceError {
        let (env, what) = (self.env_name().to_owned(), what.into());
        move |source| EvidenceError::Read { env, what, source }
    }
}

/// Credentials described (read, shaped and serialised) per batch: the packet's memory is
/// bounded by a batch, not by the number of credentials.
const BATCH: usize = 512;

/// Writes the payload's canonical bytes ([`super::canonical`]) to `out` as it is built. The
/// credential lists, the bulk of a large packet, are read, serialised and written a batch at
/// a time and never held whole; what is held is the posture report, the policies in force and
/// the spec (issue 16: a packet over 30,000 credentials held 823 MB when built in memory).
///
/// The canonical form sorts keys, so the payload is written in key order: `policies` (which
/// lists the policies the credentials cite) comes before `purposes`, hence a first pass that
/// finds the cited policies (pure, no reads) before anything is written.
pub(crate) async fn write_payload(
    i: &Inputs<'_>,
    out: &mut dyn Write,
) -> Result<(), EvidenceError> {
    let env = i.env_name();
    let generated_by = i
        .client
        .token_lookup_self()
        .await
        .ok()
        .map(|t| t.display_name)
        .unwrap_or_default();
    let creds: Vec<Credential> = i
        .spec
        .credentials()
        .into_iter()
        .filter(|c| c.environments.contains(&i.env.name))
        .collect();
    let posture_err = |source| EvidenceError::Posture {
        env: env.to_owned(),
        source,
    };
    // The large reads one after the other, so their answers (each several MB at 10,000
    // identities, held whole while they are decoded) are never in memory together: every KV
    // secret's versions in one request per mount (ADR 0027, ADR 0034) and the posture report
    // over those same scans — made once, so the verdicts and the histories describe one moment
    // and the server scans once — then the policies in force (one request).
    let scans = std::sync::Arc::new(
        posture::kv_metadata(i.client, i.spec, i.env, &creds)
            .await
            .map_err(posture_err)?,
    );
    let report = posture::collect_with(
        i.client,
        i.spec,
        i.env,
        i.now,
        &creds,
        std::sync::Arc::clone(&scans),
    )
    .await
    .map_err(posture_err)?;
    let (policies, grants, unreadable) = live_policies(i).await?;
    let holders = policy_holders(i.spec, env);
    let index = GrantIndex::new(&grants);

    let covered: Vec<Vec<&Credential>> = i
        .purposes
        .iter()
        .map(|p| creds.iter().filter(|c| p.covers(&c.id)).collect())
        .collect();
    // First pass: which policies the packet cites (every identity's, and every reader's).
    let mut cited: BTreeSet<&str> = holders.keys().map(String::as_str).collect();
    for c in covered.iter().flatten() {
        let paths = access_paths(i.spec, i.env, c);
        for r in readers_indexed(&paths, &grants, &index, &holders) {
            if let Some((name, _)) = policies.get_key_value(&r.policy) {
                cited.insert(name.as_str());
            }
        }
    }
    let worst = i
        .purposes
        .iter()
        .filter_map(|p| report.purposes.iter().find(|x| x.purpose == p.id.as_str()))
        .map(|pp| pp.status)
        .max()
        .unwrap_or(warden_spec::Status::Healthy);
    let break_glass: Vec<Value> = crate::break_glass::list(i.client, env)
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| json!({ "record": r, "state": r.state(i.now) }))
        .collect();
    // The one error type of an export; a write error is as rare as any other.
    #[allow(clippy::result_large_err)]
    let w = |out: &mut dyn Write, bytes: &[u8]| {
        out.write_all(bytes).map_err(|source| EvidenceError::Write {
            env: env.to_owned(),
            source,
        })
    };
    // Keys before `policies`, in canonical order (the object without its closing brace).
    let head = canonical::to_bytes(&json!({
        "break_glass": break_glass,
        "component": i.component,
        "env": env,
        "generated_at": i.now,
        "generated_at_utc": rfc3339(i.now),
        "generated_by": generated_by,
        "notes": NOTES,
    }));
    w(out, &head[..head.len() - 1])?;
    // The cited policies one at a time, in name order as the canonical array has them: at
    // 10,000 identities they are about 13 MB of text, which a JSON tree of them and its bytes
    // would have held twice more beside the map.
    w(out, b",\"policies\":[")?;
    let mut first = true;
    for (n, text) in policies.iter().filter(|(n, _)| cited.contains(n.as_str())) {
        if !first {
            w(out, b",")?;
        }
        first = false;
        w(
            out,
            &canonical::to_bytes(&json!({
                "name": n,
                "identities": holders.get(n).cloned().unwrap_or_default(),
                "managed_by_warden": text.starts_with(MANAGED_MARK),
                "text": text,
            })),
        )?;
    }
    w(out, b"]")?;
    // The texts are written; the grants (what the readers are computed from) stay.
    drop(cited);
    drop(policies);
    w(out, b",\"purposes\":[")?;
    for (n, (p, covered)) in i.purposes.iter().zip(covered).enumerate() {
        if n > 0 {
            w(out, b",")?;
        }
        let pp = report.purposes.iter().find(|x| x.purpose == p.id.as_str());
        let reveals = if p.delivery == Delivery::RevealOnce {
            Some(
                reveal::list(i.client, i.spec, env, p.id.as_str(), i.now)
                    .await
                    .map_err(|source| EvidenceError::Reveal {
                        env: env.to_owned(),
                        source,
                    })?,
            )
        } else {
            None
        };
        let judged: HashMap<&str, &posture::CredentialPosture> = pp
            .map(|pp| pp.credentials.iter().map(|x| (x.id.as_str(), x)).collect())
            .unwrap_or_default();
        // Keys sort as `covers` < `credentials` < everything else of a purpose.
        w(out, b"{\"covers\":")?;
        w(out, &canonical::to_bytes(&json!(p.covers)))?;
        w(out, b",\"credentials\":[")?;
        let mut first = true;
        let mut covered = covered.into_iter().peekable();
        while covered.peek().is_some() {
            let batch: Vec<&Credential> = covered.by_ref().take(BATCH).collect();
            // Each credential's history is one read: a bounded number in flight.
            let described = warden_bao::bounded::run(batch, READ_CONCURRENCY, |c| {
                let (reveals, grants, index, holders, judged, scans) =
                    (&reveals, &grants, &index, &holders, &judged, &scans);
                async move {
                    let paths = access_paths(i.spec, i.env, c);
                    let who = readers_indexed(&paths, grants, index, holders);
                    let history = match reveals {
                        Some(l) => json!({
                            "source": "reveal-records",
                            "reveals": l.reveals.iter().filter(|r| r.record.credential == c.id).map(|r| json!({
                                "accessor": r.record.accessor,
                                "created_at": r.record.created_at,
                                "expires_at": r.record.expires_at,
                                "created_by": r.record.created_by,
                                "state": r.state,
                                "verifier_sha256": r.record.verifier_sha256,
                            })).collect::<Vec<_>>(),
                        }),
                        None => history(i, c, scans).await?,
                    };
                    // Serialised at once: only bytes wait for the batch to be written.
                    Ok::<_, EvidenceError>(canonical::to_bytes(&json!({
                        "id": c.id,
                        "identity": c.identity.as_str(),
                        "posture": judged.get(c.id.as_str()),
                        "access": paths,
                        "readers": who,
                        "history": history,
                    })))
                }
            })
            .await;
            for d in described {
                if !first {
                    w(out, b",")?;
                }
                first = false;
                w(out, &d?)?;
            }
        }
        w(out, b"]")?;
        let rest = canonical::to_bytes(&json!({
            "id": p.id.as_str(),
            "description": p.description,
            "owner": p.owner,
            "tier": p.tier.as_str(),
            "delivery": p.delivery.as_str(),
            "rotation": {
                "interval_secs": p.rotation.interval.as_secs(),
                "grace_secs": p.rotation.grace.as_secs(),
                "max_age_secs": p.rotation.max_age.as_secs(),
            },
            "custody": p.custody,
            "evidence": p.evidence,
            "revoked": p.revoked,
            "status": pp.map(|pp| pp.status),
            "registry": registry_entry(i, p).await?,
        }));
        // The rest of the purpose's keys all sort after `credentials`: `{…}` becomes `,…}`.
        w(out, b",")?;
        w(out, &rest[1..])?;
    }
    w(out, b"]")?;
    // Keys after `purposes`, in canonical order: `{…}` becomes `,…}`, closing the payload.
    let tail = canonical::to_bytes(&json!({
        "server": i.client.address().as_str(),
        "status": worst,
        "unreadable_policies": unreadable,
    }));
    w(out, b",")?;
    w(out, &tail[1..])?;
    Ok(())
}

/// Every readable ACL policy's text, by name.
type Policies = BTreeMap<String, String>;

/// Every ACL policy on the server (name → text and grants), and those that could not be
/// parsed (they are reported, never silently skipped). One bulk read where the server has it
/// (ADR 0034: 10,000 single reads were most of an export at 10,000 identities), else one read
/// per policy, [`READ_CONCURRENCY`] at a time.
async fn live_policies(
    i: &Inputs<'_>,
) -> Result<(Policies, BTreeMap<String, Vec<Grant>>, Vec<Value>), EvidenceError> {
    let detailed = i
        .client
        .list_policies_detailed()
        .await
        .map_err(i.read_err("sys/policies/detailed/acl"))?;
    let texts: Vec<(String, String)> = match detailed {
        Some(all) => all.into_iter().filter(|(n, _)| n != "root").collect(),
        None => {
            let names = i
                .client
                .list_policies()
                .await
                .map_err(i.read_err("sys/policies/acl"))?;
            let names: Vec<String> = names.into_iter().filter(|n| n != "root").collect();
            let read = warden_bao::bounded::run(names, READ_CONCURRENCY, |name| async move {
                let text = i
                    .client
                    .read_policy(&name)
                    .await
                    .map_err(i.read_err(format!("sys/policies/acl/{name}")));
                (name, text)
            })
            .await;
            let mut texts = Vec::with_capacity(read.len());
            for (name, text) in read {
                texts.push((name, text?));
            }
            texts
        }
    };
    // Texts and grants in two maps, each held once (the matcher indexes the grants by
    // reference; the packet cites texts).
    let mut out = BTreeMap::new();
    let mut grants = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (name, text) in texts {
        match naming::policy::parse(&text) {
            Ok(g) => {
                grants.insert(name.clone(), g);
                out.insert(name, text);
            }
            Err(reason) => unreadable.push(json!({ "name": name, "reason": reason, "text": text })),
        }
    }
    Ok((out, grants, unreadable))
}

/// The registry entry `apply` published for `p` here, with its KV version.
async fn registry_entry(i: &Inputs<'_>, p: &Purpose) -> Result<Value, EvidenceError> {
    let at = naming::registry_entry(p.id.as_str());
    match i.client.kv2(&at.mount).read(&at.path, None).await {
        Ok(v) => {
            // A registry entry is metadata only (ADR 0006), so exposing it is safe.
            let mut entry: serde_json::Map<String, Value> = v
                .data
                .iter()
                .map(|(k, s)| (k.to_owned(), s.expose().clone()))
                .collect();
            // Since ADR 0014 the credentials are in pages; an entry written before keeps them
            // inline and is shown as it is.
            if let Some(head) = entry
                .get("credentials_pages")
                .and_then(|h| serde_json::from_value::<paged::PageHead>(h.clone()).ok())
            {
                let folder = naming::record_pages(&at).data_path();
                let creds = paged::read(i.client, &folder, &head)
                    .await
                    .map_err(|source| EvidenceError::Pages {
                        env: i.env_name().to_owned(),
                        purpose: p.id.to_string(),
                        source,
                    })?;
                entry.insert("credentials".into(), json!(creds));
            }
            Ok(json!({
                "path": at.data_path(),
                "version": v.meta.version,
                "written": v.meta.created_time,
                "entry": entry,
            }))
        }
        Err(warden_bao::KvError::NotFound { .. }) => Ok(json!({
            "path": at.data_path(),
            "published": false,
        })),
        Err(e) => Err(EvidenceError::Kv {
            env: i.env_name().to_owned(),
            source: e,
        }),
    }
}

/// What OpenBao keeps of a credential's past: KV versions (from the mount's scan when there
/// is one, else one metadata read) or transit key versions.
async fn history(
    i: &Inputs<'_>,
    c: &Credential,
    scans: &posture::KvScans,
) -> Result<Value, EvidenceError> {
    let location = naming::location(i.spec, i.env, c);
    if let Some(Location::Kv(entry)) = &location {
        let path = entry.metadata_path();
        let read = match scans.lookup(entry) {
            Some(scanned) => match scanned {
                Some(meta) => Ok(meta.clone()),
                None => Err(warden_bao::KvError::NotFound {
                    mount: entry.mount.clone(),
                    path: entry.path.clone(),
                    version: None,
                }),
            },
            None => i.client.kv2(&entry.mount).metadata(&entry.path).await,
        };
        return match read {
            Ok(meta) => Ok(json!({
                "source": "kv-metadata",
                "path": path,
                "current_version": meta.current_version,
                "versions": meta.versions.iter().map(|(v, s)| json!({
                    "version": v,
                    "created_time": s.created_time,
                    "deletion_time": s.deletion_time,
                    "destroyed": s.destroyed,
                })).collect::<Vec<_>>(),
            })),
            Err(warden_bao::KvError::NotFound { .. }) => {
                Ok(json!({ "source": "kv-metadata", "path": path, "absent": true }))
            }
            Err(e) => Err(EvidenceError::Kv {
                env: i.env_name().to_owned(),
                source: e,
            }),
        };
    }
    if let Some(Location::TransitKey { mount, key }) = &location {
        return match i.client.transit(mount).key_info(key).await {
            Ok(info) => Ok(json!({
                "source": "transit",
                "key": format!("{mount}/keys/{key}"),
                "latest_version": info.latest_version,
                "min_decryption_version": info.min_decryption_version,
                "exportable": info.exportable,
                "versions": info.versions.iter().map(|(v, t)| json!({ "version": v, "created": t })).collect::<Vec<_>>(),
            })),
            Err(warden_bao::TransitError::KeyNotFound { .. }) => Ok(json!({
                "source": "transit",
                "key": format!("{mount}/keys/{key}"),
                "absent": true,
            })),
            Err(source) => Err(EvidenceError::Transit {
                env: i.env_name().to_owned(),
                source,
            }),
        };
    }
    Ok(json!({
        "source": "none",
        "note": "issued per request or login and short-lived; OpenBao keeps no version history (see posture)",
    }))
}
