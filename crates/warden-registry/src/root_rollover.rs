//! The online side of a root rollover (ADR 0030): an environment's PKI mount moves from the
//! intermediate signed by the old root to the **same intermediate** (same key, same subject,
//! same name constraints) signed by the new root, while every trust holds both roots.
//!
//! | step | where | what |
//! |---|---|---|
//! | `warden ca rollover-root begin` | offline host | the new root, cross certificates both ways |
//! | [`csr`] | online | a CSR for the key the default issuer already has (nothing is generated) |
//! | `warden ca rollover-root resign` | offline host | the new root signs it with the ledger's constraints; the bundle carries the re-signed intermediate, the new root and the cross certificate the old root signed |
//! | [`import`] | online | checks the bundle (same key and subject as the current intermediate, chains to a new root that the old root cross-signed, constraints kept), imports intermediate + new root beside the old — not yet default; record `imported` |
//! | (the caller) | online | trust both: cert-auth roles, the listener's client-CA bundle, and the trust files (a lab's are rewritten; in production the operator ships the two-root bundle) |
//! | [`activate`] | online | the re-signed intermediate becomes the default; record `active` |
//! | `warden ca rollover-root finish` | offline host | the new root becomes the CA directory's root |
//! | [`finish`] | online | refused while an agent's trust file lacks the new root (unless forced, recorded); deletes the old-root-signed intermediate and the old root from the mount; record `finished` |
//!
//! Nothing has to be re-issued: a leaf names its issuer's key, and that key is the same under
//! either root. What moves is the trust: proxies' CA-chain outputs deliver every intermediate
//! that verifies against a root of their trust file, then those roots, so during the overlap a
//! proxy holds both chains and after [`finish`] only the new one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use warden_bao::Client;
use warden_spec::naming;
use warden_spec::{Environment, Spec};

use crate::ca::{CaError, RotationState, bao, rfc};
use crate::posture::DeliveryReport;

/// Where an environment's root rollover stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloverState {
    /// The re-signed intermediate and the new root are in the mount, not yet default.
    Imported,
    /// The re-signed intermediate is the default; both roots are trusted (the overlap).
    Active,
    /// The old root and the intermediate it signed are gone from the mount.
    Finished,
}

impl RolloverState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Imported => "imported",
            Self::Active => "active",
            Self::Finished => "finished",
        }
    }
}

/// The record of an environment's root rollover (`warden/data/ca/root-rollover`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloverRecord {
    /// Environment.
    pub env: String,
    /// Where it stands.
    pub state: RolloverState,
    /// SHA-256 of the old root.
    pub old_root_sha256: String,
    /// SHA-256 of the new root.
    pub new_root_sha256: String,
    /// The new root's subject.
    pub new_root_subject: String,
    /// The intermediate the old root signed (the default before).
    pub old_issuer_id: String,
    /// The old root's issuer in the mount, if it was there.
    #[serde(default)]
    pub old_root_issuer_id: Option<String>,
    /// The re-signed intermediate.
    pub new_issuer_id: String,
    /// The new root's issuer in the mount.
    #[serde(default)]
    pub new_root_issuer_id: Option<String>,
    /// The key both intermediates share (SubjectKeyIdentifier, hex).
    #[serde(default)]
    pub key_id: Option<String>,
    /// When each step happened (RFC 3339).
    pub imported_at: String,
    /// When the re-signed intermediate became the default.
    #[serde(default)]
    pub activated_at: Option<String>,
    /// When the old root left the mount.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Why it finished while trust files still lacked the new root.
    #[serde(default)]
    pub forced_because: Option<String>,
    /// The agents whose trust file lacked the new root when it finished.
    #[serde(default)]
    pub behind: Vec<String>,
    /// The reason `activate --force` gave for going ahead with agents behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate_forced_because: Option<String>,
    /// The agents whose trust file was not known to hold the new root at `activate --force`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activated_behind: Vec<String>,
}

/// Which root each agent's trust file holds, by identity, from the delivery reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrustFiles {
    /// Trust files holding the new root (with or without the old).
    pub holding_new: Vec<String>,
    /// Trust files holding only the old root: these agents cannot verify the new chain.
    pub old_root_only: Vec<String>,
    /// Agents that do not report their trust file (older than this change), or whose trust
    /// file holds neither root.
    pub unknown: Vec<String>,
    /// Agents whose connection to OpenBao still trusts only the old root (started before the
    /// new root reached their trust file): they must be restarted before the listener's
    /// certificate moves to the new root, or they lose the server.
    #[serde(default)]
    pub connection_old_root_only: Vec<String>,
    /// Agents with a trust file that do not report what their connection trusts (`tls_roots`):
    /// older than the agents whose connection follows the trust file, their connection keeps
    /// the file's text as it was when they started, which may be the old root alone. Held back
    /// with [`TrustFiles::connection_old_root_only`] before the listener moves.
    #[serde(default)]
    pub connection_unknown: Vec<String>,
}

impl TrustFiles {
    /// Every agent not known to hold the new root.
    pub fn behind(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .old_root_only
            .iter()
            .chain(&self.unknown)
            .cloned()
            .collect();
        v.sort();
        v
    }
}

/// The rollover and the trust files, as `ca status` and posture show them.
#[derive(Debug, Clone, Serialize)]
pub struct RolloverStatus {
    /// The record.
    pub record: RolloverRecord,
    /// Whose trust file holds which root.
    pub trust_files: TrustFiles,
}

/// Sorts the agents of `reports` by what their trust file holds: pure.
pub fn trust_files(
    reports: &BTreeMap<String, DeliveryReport>,
    old_root: &str,
    new_root: &str,
) -> TrustFiles {
    let mut out = TrustFiles::default();
    for (identity, report) in reports {
        let holds = |sha: &str| {
            report
                .trust_roots
                .as_ref()
                .is_some_and(|r| r.iter().any(|x| x.eq_ignore_ascii_case(sha)))
        };
        if holds(new_root) {
            out.holding_new.push(identity.clone());
        } else if holds(old_root) {
            out.old_root_only.push(identity.clone());
        } else {
            out.unknown.push(identity.clone());
        }
        let connection_holds = |sha: &str| {
            report
                .tls_roots
                .as_ref()
                .is_some_and(|r| r.iter().any(|x| x.eq_ignore_ascii_case(sha)))
        };
        if connection_holds(old_root) && !connection_holds(new_root) {
            out.connection_old_root_only.push(identity.clone());
        } else if report.trust_roots.is_some() && report.tls_roots.is_none() {
            out.connection_unknown.push(identity.clone());
        }
    }
    out
}

/// The environment's root rollover record, if any.
pub async fn read_record(
    client: &Client,
    env: &Environment,
) -> Result<Option<RolloverRecord>, CaError> {
    let path = naming::ca_root_rollover().data_path();
    let record: Option<RolloverRecord> = crate::ca::read_json(client, env, &path).await?;
    // The digests are compared with certificates' and shown abbreviated: one that is not
    // SHA-256 hex (a hand edit) is refused here, like any record that does not parse.
    if let Some(r) = &record {
        for (field, v) in [
            ("old_root_sha256", &r.old_root_sha256),
            ("new_root_sha256", &r.new_root_sha256),
        ] {
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CaError::BadRecord {
                    env: env.name.to_string(),
                    path,
                    reason: format!("{field} is not a SHA-256 in hex"),
                });
            }
        }
    }
    Ok(record)
}

async fn write_record(
    client: &Client,
    env: &Environment,
    record: &RolloverRecord,
) -> Result<(), CaError> {
    crate::ca::write_json(client, env, &naming::ca_root_rollover().data_path(), record).await
}

fn out_of_order(
    env: &Environment,
    step: &'static str,
    record: Option<&RolloverRecord>,
    expected: &'static str,
) -> CaError {
    CaError::RolloverOutOfOrder {
        env: env.name.to_string(),
        step,
        state: format!(
            "the root rollover is {}",
            record.map_or("none", |r| r.state.as_str())
        ),
        expected,
    }
}

/// Refuses `step` of an intermediate rotation while a root rollover is imported or active: the
/// two would change the same default issuer.
pub(crate) async fn refuse_while_rolling(
    client: &Client,
    env: &Environment,
    step: &'static str,
) -> Result<(), CaError> {
    refuse_unless_finished(
        client,
        env,
        step,
        "finished (finish the root rollover first)",
    )
    .await
}

/// Refuses `step` while a root rollover is imported or active (none, or a finished one, lets it
/// through); the error names `expected` as the state `step` wants.
async fn refuse_unless_finished(
    client: &Client,
    env: &Environment,
    step: &'static str,
    expected: &'static str,
) -> Result<(), CaError> {
    let record = read_record(client, env).await?;
    if record
        .as_ref()
        .is_some_and(|r| r.state != RolloverState::Finished)
    {
        return Err(out_of_order(env, step, record.as_ref(), expected));
    }
    Ok(())
}

/// A CSR for the key of `env`'s default issuer, with its common name: what the offline
/// `ca rollover-root resign` signs. Creates nothing in OpenBao. Refused while an intermediate
/// rotation or another root rollover is under way.
pub async fn csr(client: &Client, env: &Environment) -> Result<String, CaError> {
    refuse_while_rotating(client, env, "csr").await?;
    refuse_while_rolling(client, env, "csr").await?;
    let mount = &env.mounts.pki;
    let current = client
        .pki_read_issuer(mount, "default")
        .await
        .map_err(bao(env, format!("read the default issuer of {mount}")))?;
    let cn = warden_pki::common_name(&current.certificate)
        .unwrap_or_else(|| format!("Warden {} PKI intermediate", env.name));
    let csr = client
        .pki_existing_key_csr(mount, &cn, &current.key_id)
        .await
        .map_err(bao(env, "make a CSR for the current intermediate's key"))?;
    Ok(csr.csr_pem)
}

async fn refuse_while_rotating(
    client: &Client,
    env: &Environment,
    step: &'static str,
) -> Result<(), CaError> {
    let rotation = crate::ca::read_record(client, env).await?;
    if let Some(r) = rotation.filter(|r| r.state != RotationState::Retired) {
        return Err(CaError::RolloverOutOfOrder {
            env: env.name.to_string(),
            step,
            state: format!(
                "an intermediate rotation is {}",
                serde_json::to_value(r.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            expected: "retired (finish the rotation first)",
        });
    }
    Ok(())
}

/// The parts of a re-signed bundle: the intermediate, the new root, the cross certificate the
/// old root signed for it (each one PEM block).
struct Bundle {
    int_pem: String,
    int: warden_pki::CertInfo,
    root_pem: String,
    root: warden_pki::CertInfo,
    cross_pem: Option<String>,
}

fn split(bundle: &str) -> Result<Bundle, String> {
    let mut int = None;
    let mut root = None;
    let mut others = Vec::new();
    for block in warden_pki::pem_blocks(bundle) {
        let info = warden_pki::parse_pem_bundle(block)
            .map_err(|e| e.to_string())?
            .remove(0);
        if !info.is_ca {
            return Err(format!("{} is not a CA certificate", info.subject));
        }
        if info.self_signed {
            root.get_or_insert((block.to_owned(), info));
        } else if int.is_none() {
            int = Some((block.to_owned(), info));
        } else {
            others.push((block.to_owned(), info));
        }
    }
    let (int_pem, int) = int.ok_or("it holds no intermediate CA certificate")?;
    let (root_pem, root) =
        root.ok_or("it holds no root: write it with `ca rollover-root resign --out`")?;
    // The same public key, not only the same name and key identifier: both are just fields,
    // and a self-made root can copy them from any certificate the current root ever signed
    // (another environment's intermediate), which would then pass for its cross certificate.
    let root_key = warden_pki::public_key_sha256(&root_pem);
    let cross_pem = others
        .into_iter()
        .find(|(p, c)| {
            c.subject == root.subject
                && c.subject_key_id == root.subject_key_id
                && root_key.is_some()
                && warden_pki::public_key_sha256(p) == root_key
        })
        .map(|(p, _)| p);
    Ok(Bundle {
        int_pem,
        int,
        root_pem,
        root,
        cross_pem,
    })
}

/// Checks `bundle` (from `ca rollover-root resign --out`) and imports the re-signed
/// intermediate and the new root beside the current ones, without changing the default.
/// Refused, with the mount unchanged, when the bundle's intermediate is not the current one's
/// key and subject, does not chain to the bundle's root, when that root is the current one or
/// is not cross-signed by it, or when the name constraints are not kept (ADR 0013). Refused
/// while an intermediate rotation is under way, or a rollover is imported or active.
pub async fn import(
    client: &Client,
    env: &Environment,
    bundle: &str,
    now: OffsetDateTime,
) -> Result<RolloverRecord, CaError> {
    refuse_while_rotating(client, env, "import").await?;
    refuse_unless_finished(client, env, "import", "none or finished").await?;
    let refuse = |reason: String| CaError::BadResigned {
        env: env.name.to_string(),
        reason,
    };
    let b = split(bundle).map_err(refuse)?;
    let mount = &env.mounts.pki;
    let current = client
        .pki_read_issuer(mount, "default")
        .await
        .map_err(bao(env, format!("read the default issuer of {mount}")))?;
    let current_info = warden_pki::parse_pem_bundle(&current.certificate)
        .map_err(|e| refuse(format!("the current intermediate does not parse: {e}")))?
        .remove(0);
    let old_root_pem = crate::ca::root_of(&current).ok_or_else(|| {
        refuse("the current intermediate's chain in OpenBao has no root to check against".into())
    })?;
    let old_root = warden_pki::parse_pem_bundle(&old_root_pem)
        .map_err(|e| refuse(e.to_string()))?
        .remove(0);

    if b.root.sha256 == old_root.sha256 {
        return Err(refuse(
            "its root is the current root: re-sign with the new root (`warden ca rollover-root resign`)"
                .into(),
        ));
    }
    // The same key (so every leaf it issued verifies under both) and the same key identifier
    // (verifiers such as OpenSSL match a leaf's AuthorityKeyIdentifier against it).
    let same_key = warden_pki::public_key_sha256(&b.int_pem).is_some()
        && warden_pki::public_key_sha256(&b.int_pem)
            == warden_pki::public_key_sha256(&current.certificate);
    if !same_key
        || b.int.subject != current_info.subject
        || b.int.subject_key_id != current_info.subject_key_id
    {
        return Err(refuse(format!(
            "it is not the current intermediate ({}, key {}) re-signed: it names {} with key {}; make the CSR with `warden ca rollover-root csr`",
            current_info.subject,
            current_info.subject_key_id.as_deref().unwrap_or("?"),
            b.int.subject,
            b.int.subject_key_id.as_deref().unwrap_or("?")
        )));
    }
    let chain = format!("{}\n{}", b.int_pem.trim_end(), b.root_pem.trim_end());
    let report = warden_pki::verify_chain(&chain, Some(&b.root_pem), now)
        .map_err(|e| refuse(e.to_string()))?;
    if !report.valid {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        return Err(refuse(format!(
            "it does not chain to its new root: {}",
            problems.join("; ")
        )));
    }
    // The old root vouches for the new one: a relying party that holds only the old root can
    // reach the new one, and an operator cannot import a root the offline CA did not make.
    let Some(cross_pem) = &b.cross_pem else {
        return Err(refuse(
            "it lacks the cross certificate (the new root signed by the current root); `ca rollover-root resign --out` appends it"
                .into(),
        ));
    };
    let cross = warden_pki::verify_chain(
        &format!("{}\n{}", cross_pem.trim_end(), old_root_pem.trim_end()),
        Some(&old_root_pem),
        now,
    )
    .map_err(|e| refuse(e.to_string()))?;
    if !cross.valid {
        return Err(refuse(
            "its cross certificate is not signed by the current root: the new root is not this CA's"
                .into(),
        ));
    }
    crate::ca::constraints_kept(&current_info, &b.int).map_err(refuse)?;

    let imported = client
        .pki_set_signed(mount, &chain)
        .await
        .map_err(bao(env, "import the re-signed intermediate"))?;
    let mut new_issuer_id = imported
        .mapping
        .iter()
        .find(|(issuer, key)| **key == current.key_id && **issuer != current.issuer_id)
        .map(|(issuer, _)| issuer.clone());
    let issuers = client
        .pki_issuer_certificates(mount)
        .await
        .map_err(bao(env, format!("read the issuers of {mount}")))?;
    if new_issuer_id.is_none() {
        // Imported by an earlier run whose record write was lost (OpenBao reports nothing new
        // for a certificate it already holds): find it in the mount.
        for i in &issuers {
            let same = warden_pki::parse_pem_bundle(&i.certificate)
                .ok()
                .is_some_and(|v| v[0].sha256 == b.int.sha256);
            if same
                && client
                    .pki_read_issuer(mount, &i.id)
                    .await
                    .is_ok_and(|x| x.key_id == current.key_id)
            {
                new_issuer_id = Some(i.id.clone());
            }
        }
    }
    let Some(new_issuer_id) = new_issuer_id else {
        // A certificate for another key lands as a key-less issuer: undo the import.
        for (issuer, key) in &imported.mapping {
            if key.is_empty() && imported.imported_issuers.contains(issuer) {
                let _ = client.pki_delete_issuer(mount, issuer).await;
            }
        }
        return Err(refuse(
            "OpenBao did not match it to the current intermediate's key".into(),
        ));
    };
    let find_root = |sha: &str| {
        issuers
            .iter()
            .find(|i| {
                warden_pki::parse_pem_bundle(&i.certificate)
                    .ok()
                    .is_some_and(|v| v[0].self_signed && v[0].sha256 == sha)
            })
            .map(|i| i.id.clone())
    };
    let record = RolloverRecord {
        env: env.name.to_string(),
        state: RolloverState::Imported,
        old_root_sha256: old_root.sha256.clone(),
        new_root_sha256: b.root.sha256.clone(),
        new_root_subject: b.root.subject.clone(),
        old_issuer_id: current.issuer_id.clone(),
        old_root_issuer_id: find_root(&old_root.sha256),
        new_issuer_id,
        new_root_issuer_id: find_root(&b.root.sha256),
        key_id: current_info.subject_key_id.clone(),
        imported_at: rfc(now),
        activated_at: None,
        finished_at: None,
        forced_because: None,
        behind: Vec::new(),
        activate_forced_because: None,
        activated_behind: Vec::new(),
    };
    write_record(client, env, &record).await?;
    Ok(record)
}

/// The agents whose trust file is not known to hold the new root, as [`CaError::TrustFilesBehind`]
/// unless `force` gives a reason (then returned, to be recorded). `activate` and `finish` both
/// ask: once the re-signed intermediate is the default, new certificates chain to the new
/// root, and an agent whose trust file holds only the old one cannot verify them (its outputs
/// go stale, its identity cannot renew).
pub async fn trust_gate(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    record: &RolloverRecord,
    force: Option<&str>,
) -> Result<Vec<String>, CaError> {
    let files = fleet_trust(client, spec, env, record, force).await?;
    let behind = files.behind();
    if !behind.is_empty() && force.is_none() {
        return Err(CaError::TrustFilesBehind {
            env: env.name.to_string(),
            count: behind.len(),
            old_root_only: files.old_root_only.len(),
            old_names: files.old_root_only.join(", "),
            unknown: files.unknown.len(),
            unknown_names: files.unknown.join(", "),
        });
    }
    Ok(behind)
}

/// What every agent's trust file and connection hold against the rollover's two roots, for a
/// gate that `force` (a non-empty reason) may override.
async fn fleet_trust(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    record: &RolloverRecord,
    force: Option<&str>,
) -> Result<TrustFiles, CaError> {
    if force.is_some_and(|r| r.trim().is_empty()) {
        return Err(CaError::NoReason);
    }
    let reports = crate::ca::env_reports(client, spec, env).await?;
    Ok(trust_files(
        &reports,
        &record.old_root_sha256,
        &record.new_root_sha256,
    ))
}

/// The agents whose connection to OpenBao trusts only the old root (their delivery report's
/// `tls_roots`), as [`CaError::ConnectionsOnOldRoot`] unless `force` gives a reason (then
/// returned). Asked before the listener's certificate moves to the new root (the listener CA
/// re-signed by it is installed): such an agent could not reconnect. Agents re-anchor their
/// connection when their trust file changes, so this lists only agents older than that, or
/// whose trust file never gained the new root.
pub async fn connection_gate(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    record: &RolloverRecord,
    force: Option<&str>,
) -> Result<Vec<String>, CaError> {
    let files = fleet_trust(client, spec, env, record, force).await?;
    // Agents that do not say what their connection trusts are not known to follow the
    // listener either: an agent older than `tls_roots` never re-anchors its connection.
    let mut behind = files.connection_old_root_only;
    behind.extend(files.connection_unknown);
    behind.sort();
    if !behind.is_empty() && force.is_none() {
        return Err(CaError::ConnectionsOnOldRoot {
            env: env.name.to_string(),
            count: behind.len(),
            names: behind.join(", "),
        });
    }
    Ok(behind)
}

/// The re-signed intermediate becomes the default issuer; the overlap starts. The caller has
/// made both trusted first (cert-auth roles, the listener, the trust files). Refused while an
/// agent's trust file is not known to hold the new root ([`trust_gate`]), unless `force`
/// gives a reason, recorded with those agents.
pub async fn activate(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    force: Option<&str>,
    now: OffsetDateTime,
) -> Result<RolloverRecord, CaError> {
    let record = read_record(client, env).await?;
    let Some(mut record) = record.filter(|r| r.state == RolloverState::Imported) else {
        let r = read_record(client, env).await?;
        return Err(out_of_order(env, "activate", r.as_ref(), "imported"));
    };
    let behind = trust_gate(client, spec, env, &record, force).await?;
    if !behind.is_empty() {
        record.activate_forced_because = force.map(|r| r.trim().to_owned());
        record.activated_behind = behind;
    }
    client
        .pki_set_default_issuer(&env.mounts.pki, &record.new_issuer_id)
        .await
        .map_err(bao(
            env,
            "make the re-signed intermediate the default issuer",
        ))?;
    record.state = RolloverState::Active;
    record.activated_at = Some(rfc(now));
    write_record(client, env, &record).await?;
    Ok(record)
}

/// Removes the old root and the intermediate it signed from the mount. Refused while an
/// agent's trust file lacks the new root (it would stop verifying the chain), unless `force`
/// gives a reason, recorded with the agents that were behind.
pub async fn finish(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    force: Option<&str>,
    now: OffsetDateTime,
) -> Result<RolloverRecord, CaError> {
    if force.is_some_and(|r| r.trim().is_empty()) {
        return Err(CaError::NoReason);
    }
    let record = read_record(client, env).await?;
    let Some(mut record) = record.filter(|r| r.state == RolloverState::Active) else {
        let r = read_record(client, env).await?;
        return Err(out_of_order(env, "finish", r.as_ref(), "active"));
    };
    let behind = trust_gate(client, spec, env, &record, force).await?;
    let mount = &env.mounts.pki;
    // The record names what to delete; the mount says what is in use. If the default issuer
    // is no longer the re-signed intermediate (changed back by hand, or a restore), deleting
    // the recorded old one could remove the issuer every certificate comes from.
    let default = client
        .pki_read_issuer(mount, "default")
        .await
        .map_err(bao(env, format!("read the default issuer of {mount}")))?;
    if default.issuer_id != record.new_issuer_id {
        return Err(CaError::RolloverOutOfOrder {
            env: env.name.to_string(),
            step: "finish",
            state: format!(
                "the default issuer of {mount} is {}, not the re-signed intermediate {}",
                default.issuer_id, record.new_issuer_id
            ),
            expected: "the re-signed intermediate as the default (make it the default again: \
                       `bao write <pki>/config/issuers default=<id>`, then finish)",
        });
    }
    client
        .pki_delete_issuer(mount, &record.old_issuer_id)
        .await
        .map_err(bao(env, "delete the intermediate the old root signed"))?;
    if let Some(old_root) = &record.old_root_issuer_id {
        client
            .pki_delete_issuer(mount, old_root)
            .await
            .map_err(bao(env, "delete the old root from the mount"))?;
    }
    record.state = RolloverState::Finished;
    record.finished_at = Some(rfc(now));
    if !behind.is_empty() {
        record.forced_because = force.map(|r| r.trim().to_owned());
    }
    record.behind = behind;
    write_record(client, env, &record).await?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(roots: Option<&[&str]>) -> DeliveryReport {
        DeliveryReport {
            trust_roots: roots.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
            ..DeliveryReport::default()
        }
    }

    #[test]
    fn trust_files_are_sorted_by_the_roots_they_hold() {
        let mut reports = BTreeMap::new();
        reports.insert("both".to_owned(), report(Some(&["AA", "bb"])));
        reports.insert("new".to_owned(), report(Some(&["bb"])));
        reports.insert("old".to_owned(), report(Some(&["aa"])));
        reports.insert("older-agent".to_owned(), report(None));
        reports.insert("stranger".to_owned(), report(Some(&["cc"])));
        let t = trust_files(&reports, "aa", "bb");
        assert_eq!(t.holding_new, ["both", "new"]);
        assert_eq!(t.old_root_only, ["old"]);
        assert_eq!(t.unknown, ["older-agent", "stranger"]);
        assert_eq!(t.behind(), ["old", "older-agent", "stranger"]);
        assert!(t.connection_old_root_only.is_empty());

        // An agent started before the new root reached its trust file: the file holds both,
        // its connection only the old one.
        let mut started_early = report(Some(&["aa", "bb"]));
        started_early.tls_roots = Some(vec!["aa".to_owned()]);
        let mut restarted = report(Some(&["aa", "bb"]));
        restarted.tls_roots = Some(vec!["aa".to_owned(), "bb".to_owned()]);
        let reports = BTreeMap::from([
            ("early".to_owned(), started_early),
            ("restarted".to_owned(), restarted),
        ]);
        let t = trust_files(&reports, "aa", "bb");
        assert_eq!(t.holding_new, ["early", "restarted"]);
        assert_eq!(t.connection_old_root_only, ["early"]);
        assert!(t.connection_unknown.is_empty());
    }

    /// An agent older than `tls_roots` (its report has a trust file's roots and nothing about
    /// its connection) never re-anchors: its connection is not known to follow the listener,
    /// so the connection gate holds it back too. An agent without a trust file is not listed.
    #[test]
    fn an_agent_that_does_not_report_its_connection_is_not_known_to_follow() {
        let older = report(Some(&["aa", "bb"]));
        assert!(older.tls_roots.is_none());
        let reports = BTreeMap::from([
            ("older".to_owned(), older),
            ("no-trust-file".to_owned(), report(None)),
        ]);
        let t = trust_files(&reports, "aa", "bb");
        assert_eq!(t.connection_unknown, ["older"]);
        assert!(t.connection_old_root_only.is_empty());
    }

    /// An agent writes its own delivery report: junk in `trust_roots` must not drop the report
    /// (the agent would vanish from the count of agents behind, and `finish` would pass
    /// without `--force`) nor count as holding a root.
    #[test]
    fn junk_trust_roots_in_a_report_count_as_unknown() {
        let (old, new) = ("a".repeat(64), "b".repeat(64));
        let junk = [
            serde_json::json!("not a list"),
            serde_json::json!(42),
            serde_json::json!({ "new": new }),
            serde_json::json!([1, null, {"x": 1}, ["nested"]]),
            serde_json::json!([format!("{new} "), "bb", new.repeat(2), "\u{1b}[2J"]),
            serde_json::json!(null),
        ];
        let mut reports = BTreeMap::new();
        for (i, j) in junk.iter().enumerate() {
            let raw = serde_json::json!({
                "reported_at": "2026-01-01T00:00:00Z",
                "outputs": [],
                "trust_roots": j,
            });
            let parsed: DeliveryReport = serde_json::from_value(raw)
                .unwrap_or_else(|e| panic!("junk #{i} {j} dropped the whole report: {e}"));
            reports.insert(format!("hostile-{i}"), parsed);
        }
        let upper: DeliveryReport =
            serde_json::from_value(serde_json::json!({ "trust_roots": [new.to_uppercase()] }))
                .unwrap();
        reports.insert("honest".to_owned(), upper);
        let t = trust_files(&reports, &old, &new);
        assert_eq!(t.holding_new, ["honest"]);
        assert!(t.old_root_only.is_empty());
        assert_eq!(t.unknown.len(), junk.len());
        assert_eq!(t.behind().len(), junk.len());
    }

    /// A self-made root that copies the name and key identifier of a certificate the current
    /// root signed (another environment's intermediate) must not pass for cross-signed.
    #[test]
    fn a_cross_certificate_for_another_key_is_not_the_cross_certificate() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        };
        let old_key = KeyPair::generate().unwrap();
        let old_params = ca("Old Root");
        let old_issuer = Issuer::from_params(&old_params, &old_key);
        // Another environment's intermediate, honestly signed by the old root.
        let other_key = KeyPair::generate().unwrap();
        let other = ca("Warden prod PKI intermediate")
            .signed_by(&other_key, &old_issuer)
            .unwrap();
        let other_ski = warden_pki::parse_pem_bundle(&other.pem()).unwrap()[0]
            .subject_key_id
            .clone()
            .unwrap();
        // The forged root: the same name and key identifier, the attacker's key.
        let evil_key = KeyPair::generate().unwrap();
        let mut evil_params = ca("Warden prod PKI intermediate");
        evil_params.key_identifier_method =
            rcgen::KeyIdMethod::PreSpecified(hex::decode(other_ski.replace(':', "")).unwrap());
        let evil = evil_params.self_signed(&evil_key).unwrap();
        let evil_issuer = Issuer::from_params(&evil_params, &evil_key);
        let int_key = KeyPair::generate().unwrap();
        let int = ca("Warden test PKI intermediate")
            .signed_by(&int_key, &evil_issuer)
            .unwrap();
        let forged = format!("{}{}{}", int.pem(), evil.pem(), other.pem());
        let b = split(&forged).unwrap();
        assert_eq!(
            b.root.subject_key_id.as_deref(),
            Some(other_ski.as_str()),
            "the forgery copies the key identifier"
        );
        assert!(b.cross_pem.is_none(), "a cross certificate for another key");
        // The real thing: the new root's own name and key, signed by the old root.
        let new_key = KeyPair::generate().unwrap();
        let new_params = ca("New Root");
        let new_root = new_params.self_signed(&new_key).unwrap();
        let cross = new_params.signed_by(&new_key, &old_issuer).unwrap();
        let honest = format!("{}{}{}", int.pem(), new_root.pem(), cross.pem());
        assert_eq!(
            split(&honest).unwrap().cross_pem.as_deref().map(str::trim),
            Some(cross.pem().trim())
        );
    }

    #[test]
    fn a_bundle_splits_into_intermediate_root_and_cross() {
        let e = split("not pem").err().unwrap_or_default();
        assert!(!e.is_empty());
    }
}
