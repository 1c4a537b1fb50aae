//! `warden revoke purpose P`: every certificate of the purpose's credentials that OpenBao
//! stores goes on the CRL (installed for cert auth too), the purpose's registry entry is marked
//! revoked *live* — `revoked = true` plus a `revocation` object (record id, reason, who, when)
//! — and a record is written (ADR 0032).
//!
//! Why the registry entry: it is what every agent reads before each issuance and each signing
//! key delivery (docs/agent.md#fail-closed), so the next attempt of every agent under the
//! purpose refuses and keeps what is on disk, without a restart or a new policy. Why the
//! `revocation` object: the entry is written by `warden apply` from the spec, and an apply
//! from a spec that still says `revoked = false` must not silently undo a revocation —
//! `warden plan` shows such an entry as a conflict (apply refuses) until the spec says
//! `revoked = true`, and then keeps the object on every write.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use warden_bao::{Client, Idempotent};
use warden_spec::{Environment, Spec, naming};

use super::{
    CertRef, RevocationRecord, RevokeError, bao, install_crl, normalise_serial, now_rfc,
    revoke_serials, stored, write_record,
};

/// Whether purpose `id` is revoked in the registry entry agents read — by `warden revoke
/// purpose` before the spec says so, or by an applied `revoked = true`. An entry that does not
/// exist is not revoked. The one reading of a live revocation: serve, posture, `domain renew`
/// and `rotate` ask here.
pub async fn revoked_live(client: &Client, id: &str) -> Result<bool, RevokeError> {
    let path = naming::registry_entry(id).data_path();
    match client.read(&path).await {
        Ok(s) => Ok(s
            .data
            .and_then(|d| d.pointer("/data/revoked").and_then(Value::as_bool))
            .unwrap_or(false)),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(bao(format!("read {path}"))(e)),
    }
}

/// What `revoke purpose` will do, computed without changing anything.
#[derive(Debug, Clone, Serialize)]
pub struct PurposePlan {
    /// The environment.
    pub env: String,
    /// The purpose.
    pub purpose: String,
    /// The credentials it covers in this environment.
    pub credentials: Vec<String>,
    /// Their certificates: reported by agents (identity and app certificates) and the domain
    /// certificates stored in KV.
    pub certificates: Vec<CertRef>,
    /// Whether the registry entry already says `revoked` (a repeat run revokes what is new and
    /// records again).
    pub already_revoked: bool,
    /// `warden/data/registry/<purpose>`.
    pub registry_entry: String,
}

/// Plans the revocation of purpose `id` in `env`: checks it is a purpose of the spec that
/// governs something here and that `warden apply` has written its registry entry, and finds
/// the certificates of its credentials. Changes nothing.
pub async fn plan_purpose(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    id: &str,
) -> Result<PurposePlan, RevokeError> {
    let purpose = spec
        .purposes
        .iter()
        .find(|p| p.id.as_str() == id)
        .ok_or_else(|| RevokeError::UnknownPurpose {
            purpose: id.to_owned(),
        })?;
    let credentials: Vec<String> = spec
        .credentials()
        .into_iter()
        .filter(|c| c.environments.contains(&env.name) && purpose.covers(&c.id))
        .map(|c| c.id)
        .collect();
    if credentials.is_empty() {
        return Err(RevokeError::PurposeNotHere {
            purpose: id.to_owned(),
            env: env.name.to_string(),
        });
    }
    let entry = naming::registry_entry(id).data_path();
    let live = match client.read(&entry).await {
        Ok(s) => s.data.and_then(|d| d.get("data").cloned()),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(bao(format!("read {entry}"))(e)),
    };
    let Some(live) = live else {
        return Err(RevokeError::NotApplied {
            purpose: id.to_owned(),
            env: env.name.to_string(),
        });
    };
    let already_revoked = live.get("revoked").and_then(Value::as_bool) == Some(true);

    let pki = env.mounts.pki.as_str();
    let mut certificates: Vec<CertRef> = Vec::new();
    let add = |certs: &mut Vec<CertRef>, serial: String, credential: String, stored: bool| {
        if !certs.iter().any(|c| c.serial == serial) {
            certs.push(CertRef {
                serial,
                credential: Some(credential),
                stored,
            });
        }
    };
    // What agents delivered: every identity of this environment's report, the outputs whose
    // credential the purpose covers (a CA chain output reports its issuer: never revoked).
    // Every report in one scan (ADR 0036), not one read per identity.
    let env_creds: Vec<_> = spec
        .credentials()
        .into_iter()
        .filter(|c| c.environments.contains(&env.name))
        .collect();
    let reports = crate::posture::delivery_reports(client, env, &env_creds)
        .await
        .map_err(|crate::posture::Error::Bao { what, source, .. }| bao(what)(source))?;
    for report in reports.values() {
        for o in &report.outputs {
            let (Some(serial), true) = (o.serial.as_deref(), purpose.covers(&o.credential)) else {
                continue;
            };
            if !(o.credential.ends_with("/identity-cert") || o.credential.ends_with("/certificate"))
            {
                continue;
            }
            let Ok(serial) = normalise_serial(serial) else {
                continue;
            };
            let is_stored = stored(client, pki, &serial).await?;
            add(&mut certificates, serial, o.credential.clone(), is_stored);
        }
    }
    // Domain certificates: the serial of the newest version in KV.
    for d in spec.domains.iter().filter(|d| {
        d.environments.contains(&env.name)
            && purpose.covers(&warden_spec::rules::domain_credential(d))
    }) {
        let path = format!("{}/data/{}", env.mounts.kv, d.kv_path());
        let serial = match client.read(&path).await {
            Ok(s) => s.data.and_then(|v| {
                v.pointer("/data/serial")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(bao(format!("read {path}"))(e)),
        };
        if let Some(Ok(serial)) = serial.as_deref().map(normalise_serial) {
            let is_stored = stored(client, pki, &serial).await?;
            add(
                &mut certificates,
                serial,
                warden_spec::rules::domain_credential(d),
                is_stored,
            );
        }
    }
    Ok(PurposePlan {
        env: env.name.to_string(),
        purpose: id.to_owned(),
        credentials,
        certificates,
        already_revoked,
        registry_entry: entry,
    })
}

/// Tries a concurrent writer (an apply) gets before `revoke purpose` gives up.
const MARK_ATTEMPTS: usize = 5;

/// Sets `revoked` and the revocation's fields in the registry entry at `path`, keeping
/// everything else as it is: read, change, write with check-and-set on the version read, again
/// if someone (an apply) wrote in between, so neither write undoes the other.
async fn mark_revoked(
    client: &Client,
    path: &str,
    id: &str,
    reason: &str,
    by: &str,
    now: OffsetDateTime,
) -> Result<(), RevokeError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let live = client
            .read(path)
            .await
            .map_err(bao(format!("read {path}")))?
            .data;
        let version = live
            .as_ref()
            .and_then(|d| d.pointer("/metadata/version"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut data = live
            .and_then(|d| d.get("data").cloned())
            .unwrap_or_else(|| json!({}));
        data["revoked"] = Value::Bool(true);
        data["revocation"] =
            json!({ "record": id, "reason": reason, "by": by, "at": now_rfc(now) });
        let body = json!({ "options": { "cas": version }, "data": data });
        match client.write(path, &body, Idempotent::No).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt < MARK_ATTEMPTS && is_cas_mismatch(&e) => continue,
            Err(e) if is_cas_mismatch(&e) => {
                return Err(bao(format!(
                    "mark {path} revoked (it kept changing under {MARK_ATTEMPTS} attempts; the certificates are already revoked — run `warden revoke purpose` again to record it)"
                ))(e));
            }
            Err(e) => return Err(bao(format!("mark {path} revoked"))(e)),
        }
    }
}

/// OpenBao's answer to a KV v2 write whose `cas` is not the current version.
fn is_cas_mismatch(e: &warden_bao::Error) -> bool {
    e.status() == Some(400)
        && e.server_errors()
            .iter()
            .any(|m| m.contains("check-and-set"))
}

/// Carries out `plan`: revokes the stored certificates, installs the CRL for cert auth,
/// marks the registry entry revoked with the record's id, records it. Each step is
/// idempotent, so a failed run can be repeated.
pub async fn revoke_purpose(
    client: &Client,
    env: &Environment,
    plan: &PurposePlan,
    reason: &str,
    by: &str,
    now: OffsetDateTime,
) -> Result<RevocationRecord, RevokeError> {
    if reason.trim().is_empty() {
        return Err(RevokeError::NoReason);
    }
    let (revoked, skipped) = revoke_serials(client, &env.mounts.pki, &plan.certificates).await?;
    let crl = install_crl(client, env, now).await?;
    let id = super::new_record_id(client, now, "purpose", &plan.purpose).await?;
    mark_revoked(client, &plan.registry_entry, &id, reason.trim(), by, now).await?;
    let record = RevocationRecord {
        id,
        kind: "purpose".into(),
        target: plan.purpose.clone(),
        env: plan.env.clone(),
        reason: reason.trim().to_owned(),
        by: by.to_owned(),
        at: now_rfc(now),
        revoked_serials: revoked,
        unrevocable_serials: skipped,
        entity_disabled: None,
        secret_ids_destroyed: 0,
        cert_auth_crl: crl,
    };
    write_record(client, &record).await?;
    Ok(record)
}
