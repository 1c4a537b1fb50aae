//! Rolling the offline root over to a new one (ADR 0030), offline side.
//!
//! A root cannot be rotated like an intermediate: every relying party holds it as a trust
//! anchor, and they move at their own pace. So the rollover keeps both roots valid and linked
//! for an overlap:
//!
//! | step | files | ledger |
//! |---|---|---|
//! | [`CaDir::begin_rollover`] | `next-root.crt`, `next-root.key.p8` (same passphrase, 0600), `cross-next-by-current.crt` (the next root's subject and key, signed by the current root), `cross-current-by-next.crt` (the other way), then `rollover.json` (`begun`) | the next root's self-signature and both cross certificates (`environment` = `offline`) |
//! | [`CaDir::resign_intermediate`] | none: the certificate goes to the caller | the environment's intermediate signed by the next root, for the **same key and subject** (a CSR made from the key OpenBao already holds), with the constraints its latest intermediate has in the ledger (ADR 0013) — never new ones |
//! | [`CaDir::finish_rollover`] | the current root kept as `retired-root-<serial>.crt` / `.key.p8`; the next root becomes `root.crt` / `root.key.p8`; `ca.json` follows; `rollover.json` says `finished` | none |
//!
//! Because the re-signed intermediate keeps its key, every leaf it ever issued chains to either
//! root: nothing has to be re-issued. Each step refuses out of order and leaves the directory
//! as it was; `finish` can be run again after an interruption.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyUsagePurpose};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use warden_files::Mode;

use crate::error::{Error, Result};
use crate::inspect::{CertInfo, Parsed, parse_der, parse_one};
use crate::keys::{GeneratedKey, KeyAlgorithm};
use crate::ledger::{self, LedgerEntry, OFFLINE};
use crate::root::{CaDir, CaMetadata, LEDGER, METADATA, ROOT_CERT, ROOT_KEY, RootOptions};
use crate::sign::{IntermediateRequest, SignedIntermediate};
use crate::{keystore, params};

/// The next root's certificate during a rollover.
pub const NEXT_ROOT_CERT: &str = "next-root.crt";
/// The next root's key, encrypted under the CA's passphrase.
pub const NEXT_ROOT_KEY: &str = "next-root.key.p8";
/// The next root's subject and key, signed by the current root: a relying party that holds
/// only the current root reaches the next one through it.
pub const CROSS_NEXT_BY_CURRENT: &str = "cross-next-by-current.crt";
/// The current root's subject and key, signed by the next root: a relying party that holds
/// only the next root reaches what the current one signed through it.
pub const CROSS_CURRENT_BY_NEXT: &str = "cross-current-by-next.crt";
/// The rollover's record.
pub const ROLLOVER: &str = "rollover.json";
/// Where `promote` stages the next root's key, certificate and `ca.json` before renaming them
/// into place.
const PROMOTE_KEY: &str = "promote-root.key.p8";
const PROMOTE_CERT: &str = "promote-root.crt";
const PROMOTE_META: &str = "promote-ca.json";
/// The profile recorded for a cross certificate.
pub const CROSS_PROFILE: &str = "cross";

/// Where a rollover stands in the CA directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloverState {
    /// The next root and both cross certificates exist; intermediates may be re-signed.
    Begun,
    /// `finish` started swapping the files (run it again to complete).
    Finishing,
    /// The next root is the directory's root; the old one is kept as `retired-root-*`.
    Finished,
}

impl RolloverState {
    /// The word used in messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Begun => "begun",
            Self::Finishing => "finishing",
            Self::Finished => "finished",
        }
    }
}

/// `rollover.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloverRecord {
    /// Where it stands.
    pub state: RolloverState,
    /// SHA-256 of the root being replaced.
    pub old_root_sha256: String,
    /// Its serial.
    pub old_root_serial: String,
    /// SHA-256 of the next root.
    pub new_root_sha256: String,
    /// Its serial.
    pub new_root_serial: String,
    /// Its common name.
    pub common_name: String,
    /// Its key algorithm.
    pub algorithm: KeyAlgorithm,
    /// Its pathLenConstraint.
    pub path_len: u8,
    /// When `begin` ran.
    #[serde(with = "time::serde::rfc3339")]
    pub begun_at: OffsetDateTime,
    /// When `finish` completed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Intermediates promoted without a re-signed counterpart (`promote --force`), as
    /// `environment profile (serial …)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promoted_without: Vec<String>,
    /// The reason given for that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_because: Option<String>,
}

/// What [`CaDir::begin_rollover`] made (certificates only; the key stays in the directory).
#[derive(Debug, Clone)]
pub struct RolloverBegun {
    /// The record written.
    pub record: RolloverRecord,
    /// The next root, PEM.
    pub next_root_pem: String,
    /// The next root's facts.
    pub next_root: CertInfo,
    /// The next root cross-signed by the current one, PEM.
    pub cross_next_pem: String,
    /// The current root cross-signed by the next one, PEM.
    pub cross_current_pem: String,
}

fn retired_names(serial: &str) -> (String, String) {
    let short = &serial[..serial.len().min(16)];
    (
        format!("retired-root-{short}.crt"),
        format!("retired-root-{short}.key.p8"),
    )
}

fn out_of_order(dir: &Path, step: &'static str, state: Option<RolloverState>) -> Error {
    Error::RolloverOutOfOrder {
        dir: dir.to_path_buf(),
        step,
        state: state.map_or("none", RolloverState::as_str).to_owned(),
    }
}

fn corrupt(dir: &Path, file: &str, reason: String) -> Error {
    Error::CorruptCaFile {
        path: dir.join(file),
        reason,
    }
}

/// The state `rollover.json` in `dir` records, when it can be read (messages only: every step
/// reads the record itself, under the lock).
pub fn rollover_state(dir: &Path) -> Option<RolloverState> {
    read_record(dir).ok().flatten().map(|r| r.state)
}

fn read_record(dir: &Path) -> Result<Option<RolloverRecord>> {
    let path = dir.join(ROLLOVER);
    match crate::root::read_ca_file(&path) {
        Ok(b) => {
            let record: RolloverRecord =
                serde_json::from_slice(&b).map_err(|e| corrupt(dir, ROLLOVER, e.to_string()))?;
            check_record(dir, &record)?;
            Ok(Some(record))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

/// A record edited by hand must not reach the code that names files after its serials (a
/// serial such as `../x` would write the retired root's key outside the directory, one with a
/// multi-byte character would panic when shortened) or compares its digests.
fn check_record(dir: &Path, r: &RolloverRecord) -> Result<()> {
    let fields = [
        ("old_root_sha256", &r.old_root_sha256, Some(64)),
        ("new_root_sha256", &r.new_root_sha256, Some(64)),
        ("old_root_serial", &r.old_root_serial, None),
        ("new_root_serial", &r.new_root_serial, None),
    ];
    for (field, value, len) in fields {
        let ok = !value.is_empty()
            && value.len() <= 128
            && len.is_none_or(|l| value.len() == l)
            && value.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(corrupt(
                dir,
                ROLLOVER,
                format!(
                    "{field} is {value:?}, not the lower-case hex `warden ca rollover-root begin` \
                     wrote; undo the edit (restore {ROLLOVER} from the backup of the CA \
                     directory) and run the step again"
                ),
            ));
        }
    }
    if r.old_root_sha256.eq_ignore_ascii_case(&r.new_root_sha256) {
        return Err(corrupt(
            dir,
            ROLLOVER,
            "it names the same root as old and new; undo the edit".to_owned(),
        ));
    }
    Ok(())
}

/// Moves the next root of a `begin` that never wrote its record (interrupted, or a record
/// edited to say otherwise) out of the way under a name of its own, so a new `begin` never
/// overwrites a key that may already have signed something.
fn set_aside_unrecorded_next_root(dir: &Path, now: OffsetDateTime) -> Result<()> {
    if std::fs::symlink_metadata(dir.join(NEXT_ROOT_KEY)).is_err() {
        return Ok(());
    }
    let stamp = now.unix_timestamp();
    for (from, to) in [
        (NEXT_ROOT_KEY, format!("abandoned-next-root-{stamp}.key.p8")),
        (NEXT_ROOT_CERT, format!("abandoned-next-root-{stamp}.crt")),
    ] {
        let (from, to) = (dir.join(from), dir.join(to));
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(Error::io("set aside", to)(std::io::Error::from(
                std::io::ErrorKind::AlreadyExists,
            )));
        }
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("set aside", from)(e)),
        }
    }
    Ok(())
}

fn write_record(dir: &Path, record: &RolloverRecord) -> Result<()> {
    let json =
        serde_json::to_vec_pretty(record).map_err(|e| corrupt(dir, ROLLOVER, e.to_string()))?;
    warden_files::write_atomic(&dir.join(ROLLOVER), &json, Mode::Public)?;
    Ok(())
}

/// The next root as the directory holds it, checked against the record.
fn read_next(dir: &Path, record: &RolloverRecord) -> Result<(String, Parsed)> {
    let pem = crate::root::read_required(dir, NEXT_ROOT_CERT)?;
    let next = parse_one(&pem).map_err(|e| corrupt(dir, NEXT_ROOT_CERT, e.to_string()))?;
    if next.info.sha256 != record.new_root_sha256 {
        return Err(corrupt(
            dir,
            NEXT_ROOT_CERT,
            format!(
                "its SHA-256 is {}, but {ROLLOVER} records {}",
                next.info.sha256, record.new_root_sha256
            ),
        ));
    }
    Ok((pem, next))
}

/// A CA certificate for `subject`'s name and key, signed by `signer` with `key`: a cross
/// certificate. It ends when the first of the two roots ends.
fn cross_sign(
    subject: &Parsed,
    signer: &Parsed,
    key: &GeneratedKey,
    path_len: u8,
    now: OffsetDateTime,
) -> Result<(String, Parsed)> {
    let bad = |reason: String| Error::BadCertificate {
        index: None,
        reason,
    };
    let (not_before, _) = params::window(now, Duration::SECOND)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = params::dn_from_x509(subject.x509().subject()).map_err(bad)?;
    p.serial_number = Some(params::random_serial()?);
    p.not_before = not_before;
    p.not_after = subject.info.not_after.min(signer.info.not_after);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.use_authority_key_identifier_extension = true;
    let spki = rcgen::SubjectPublicKeyInfo::from_der(subject.x509().public_key().raw)
        .map_err(|e| bad(format!("unsupported public key: {e}")))?;
    let issuer = rcgen::Issuer::from_ca_cert_der(&signer.der.as_slice().into(), &key.inner)
        .map_err(Error::rcgen("load the signing root"))?;
    let cert = p
        .signed_by(&spki, &issuer)
        .map_err(Error::rcgen("cross-sign the root"))?;
    let parsed = parse_der(cert.der())?;
    if !parsed.is_signed_by(signer)
        || parsed.x509().public_key().raw != subject.x509().public_key().raw
    {
        return Err(bad(
            "the freshly made cross certificate failed its own check".to_owned(),
        ));
    }
    Ok((cert.pem(), parsed))
}

fn ledger_entry(
    c: &Parsed,
    profile: &str,
    signed_by: Option<&Parsed>,
    now: OffsetDateTime,
) -> LedgerEntry {
    LedgerEntry {
        serial: c.info.serial.clone(),
        subject: c.info.subject.clone(),
        environment: OFFLINE.to_owned(),
        profile: profile.to_owned(),
        not_before: c.info.not_before,
        not_after: c.info.not_after,
        sha256: c.info.sha256.clone(),
        signed_at: now,
        path_len: c.info.path_len.and_then(|n| u8::try_from(n).ok()),
        permitted_dns: Vec::new(),
        unconstrained_because: None,
        signed_by: signed_by.map(|s| s.info.sha256.clone()),
    }
}

impl CaDir {
    /// The rollover's record, if one was ever begun.
    pub fn rollover(&self) -> Result<Option<RolloverRecord>> {
        read_record(&self.dir)
    }

    /// The next root, PEM, while a rollover is begun.
    pub fn next_root_pem(&self) -> Result<Option<String>> {
        match self.rollover()? {
            Some(r) if r.state == RolloverState::Begun => Ok(Some(read_next(&self.dir, &r)?.0)),
            _ => Ok(None),
        }
    }

    /// The cross certificate that links the next root to the current one (signed by the
    /// current), PEM, while a rollover is begun.
    pub fn cross_next_pem(&self) -> Result<Option<String>> {
        match self.rollover()? {
            Some(r) if r.state == RolloverState::Begun => Ok(Some(crate::root::read_required(
                &self.dir,
                CROSS_NEXT_BY_CURRENT,
            )?)),
            _ => Ok(None),
        }
    }

    /// Every root a chain of this CA may end in now: the root, and the next root while a
    /// rollover is begun (current first).
    pub fn trusted_roots_pem(&self) -> Result<Vec<String>> {
        let mut roots = vec![self.root_pem.clone()];
        roots.extend(self.next_root_pem()?);
        Ok(roots)
    }

    /// Starts a rollover: a new root (`opts`; its key sealed under the same `passphrase`) and
    /// the two cross certificates, recorded in the ledger. Refused while a rollover is begun or
    /// finishing, with a wrong passphrase, when the current root is not valid at `now` (it
    /// could not cross-sign), or when the new root would carry the current one's name (relying
    /// parties tell them apart by name first).
    pub fn begin_rollover(
        &self,
        opts: &RootOptions,
        passphrase: &SecretString,
        now: OffsetDateTime,
    ) -> Result<RolloverBegun> {
        let _lock = self.lock()?;
        let state = self.rollover()?.map(|r| r.state);
        if matches!(state, Some(RolloverState::Begun | RolloverState::Finishing)) {
            return Err(out_of_order(&self.dir, "begin", state));
        }
        let current = &self.root;
        if now < current.info.not_before {
            return Err(Error::RootNotYetValid {
                not_before: current.info.not_before,
            });
        }
        if now > current.info.not_after {
            return Err(Error::RootExpired {
                not_after: current.info.not_after,
            });
        }
        let dn = params::common_name_dn(&opts.common_name)?;
        if format!("CN={}", opts.common_name) == current.info.subject {
            return Err(Error::InvalidField {
                field: "common name",
                value: opts.common_name.clone(),
                reason: "the next root needs a name of its own, not the current root's",
            });
        }
        let (not_before, not_after) = params::window(now, opts.validity)?;
        let current_key = self.unlock(passphrase)?;

        let (key, next_pem, next) = crate::root::self_signed_root(
            dn,
            opts,
            (not_before, not_after),
            "self-sign the next root",
        )?;
        let (cross_next_pem, cross_next) =
            cross_sign(&next, current, &current_key, opts.path_len, now)?;
        let (cross_current_pem, cross_current) =
            cross_sign(current, &next, &key, self.meta.path_len, now)?;
        let sealed = keystore::seal(&key, passphrase)?;

        let record = RolloverRecord {
            state: RolloverState::Begun,
            old_root_sha256: current.info.sha256.clone(),
            old_root_serial: current.info.serial.clone(),
            new_root_sha256: next.info.sha256.clone(),
            new_root_serial: next.info.serial.clone(),
            common_name: opts.common_name.clone(),
            algorithm: opts.algorithm,
            path_len: opts.path_len,
            begun_at: now,
            finished_at: None,
            promoted_without: Vec::new(),
            forced_because: None,
        };
        let dir = &self.dir;
        set_aside_unrecorded_next_root(dir, now)?;
        warden_files::write_atomic(&dir.join(NEXT_ROOT_KEY), sealed.as_bytes(), Mode::OwnerOnly)?;
        warden_files::write_atomic(&dir.join(NEXT_ROOT_CERT), next_pem.as_bytes(), Mode::Public)?;
        warden_files::write_atomic(
            &dir.join(CROSS_NEXT_BY_CURRENT),
            cross_next_pem.as_bytes(),
            Mode::Public,
        )?;
        warden_files::write_atomic(
            &dir.join(CROSS_CURRENT_BY_NEXT),
            cross_current_pem.as_bytes(),
            Mode::Public,
        )?;
        let ledger_path = dir.join(LEDGER);
        ledger::append(&ledger_path, &ledger_entry(&next, "root", None, now))?;
        ledger::append(
            &ledger_path,
            &ledger_entry(&cross_next, CROSS_PROFILE, None, now),
        )?;
        ledger::append(
            &ledger_path,
            &ledger_entry(&cross_current, CROSS_PROFILE, Some(&next), now),
        )?;
        // Last: its presence means the rollover's files are complete.
        write_record(dir, &record)?;
        Ok(RolloverBegun {
            record,
            next_root_pem: next_pem,
            next_root: next.info,
            cross_next_pem,
            cross_current_pem,
        })
    }

    /// Signs `csr_pem` with the next root as `environment`'s intermediate again: the CSR must
    /// be made from the key the environment's intermediate already has (OpenBao:
    /// `<pki>/intermediate/generate/existing`), and every extension is copied from that
    /// environment's latest intermediate in the ledger (its name constraints or its recorded
    /// reason to go without: ADR 0013), so a re-signed intermediate can issue exactly what the
    /// old one could. Refused unless a rollover is begun, or when the ledger has no such
    /// intermediate signed by the current root; every refusal of
    /// [`CaDir::sign_intermediate`] applies too.
    ///
    /// `current_pem` is the environment's intermediate as it is now (what `rollover-root csr`
    /// writes beside the CSR). It must be the environment's **latest** intermediate in the
    /// ledger and unexpired, and the CSR must be for its key: the next root then vouches for no
    /// key but the one the current root vouches for today — not a stranger's key from a
    /// compromised online host, nor an older intermediate rotated out (perhaps because its key
    /// leaked).
    #[allow(clippy::too_many_arguments)] // one call site per interface (CLI, tests)
    pub fn resign_intermediate(
        &self,
        csr_pem: &str,
        current_pem: &str,
        environment: &str,
        profile: &str,
        validity: Duration,
        passphrase: &SecretString,
        now: OffsetDateTime,
    ) -> Result<SignedIntermediate> {
        let _lock = self.lock()?;
        let record = self.rollover()?;
        let Some(record) = record.filter(|r| r.state == RolloverState::Begun) else {
            return Err(out_of_order(
                &self.dir,
                "re-sign",
                self.rollover()?.map(|r| r.state),
            ));
        };
        let (_, next) = read_next(&self.dir, &record)?;
        let latest = self
            .ledger()?
            .into_iter()
            .rfind(|e| {
                e.environment == environment
                    && e.profile == profile
                    && e.signed_by.as_deref() != Some(record.new_root_sha256.as_str())
            })
            .ok_or_else(|| Error::NothingToResign {
                environment: environment.to_owned(),
                profile: profile.to_owned(),
            })?;
        let current = parse_one(current_pem)?;
        if current.info.sha256 != latest.sha256 {
            return Err(Error::BadCertificate {
                index: None,
                reason: format!(
                    "{} (serial {}) is not {environment}'s latest {profile} intermediate in the ledger (serial {} is); give the intermediate the environment uses now (`rollover-root csr` writes it beside the CSR)",
                    current.info.subject, current.info.serial, latest.serial
                ),
            });
        }
        if current.info.not_after <= now {
            return Err(Error::BadCertificate {
                index: None,
                reason: format!(
                    "{environment}'s intermediate (serial {}) expired at {}; an expired intermediate is replaced (`ca rotate-intermediate`), not re-signed",
                    current.info.serial, current.info.not_after
                ),
            });
        }
        if crate::sign::csr_public_key(csr_pem)? != current.x509().public_key().raw {
            return Err(Error::BadCsr {
                reason: format!(
                    "it is for another key than {environment}'s current intermediate (serial {}); a re-signed intermediate keeps its key",
                    current.info.serial
                ),
            });
        }
        let req = IntermediateRequest {
            environment: environment.to_owned(),
            profile: profile.to_owned(),
            validity,
            path_len: latest.path_len.unwrap_or(0),
            permitted_dns: latest.permitted_dns,
            unconstrained_because: latest.unconstrained_because,
        };
        self.sign_with(&next, NEXT_ROOT_KEY, csr_pem, &req, passphrase, now)
    }

    /// Ends the rollover: the next root becomes the directory's root (its key included), the
    /// current one is kept as `retired-root-<serial>.crt` / `.key.p8`, and `ca.json` follows.
    /// Reads `rollover.json` rather than opening the directory, so a run interrupted half-way
    /// (state `finishing`) is completed by running it again. Refused unless a rollover is
    /// begun or finishing.
    ///
    /// Before anything changes it proves `passphrase` opens the next root's key and that the
    /// key is the next root's (so the directory never gets a root key nobody can open), and
    /// refuses while an unexpired intermediate the old root signed has no counterpart the next
    /// root re-signed — unless `force` gives the reason, which is recorded with them.
    pub fn finish_rollover(
        dir: &Path,
        passphrase: &SecretString,
        force: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Self> {
        let _lock = crate::root::lock_dir(dir)?;
        // Read under the lock: a concurrent begin or promote cannot change it underneath.
        let record = read_record(dir)?;
        let state = record.as_ref().map(|r| r.state);
        let Some(mut record) =
            record.filter(|r| matches!(r.state, RolloverState::Begun | RolloverState::Finishing))
        else {
            return Err(out_of_order(dir, "promote", state));
        };
        let (next_pem, next) = read_next(dir, &record)?;
        let next_key = zeroize::Zeroizing::new(crate::root::read_required(dir, NEXT_ROOT_KEY)?);
        let opened = keystore::open(&dir.join(NEXT_ROOT_KEY), &next_key, passphrase)?;
        if opened.public_key_der() != next.x509().public_key().raw {
            return Err(corrupt(
                dir,
                NEXT_ROOT_KEY,
                format!("the key does not belong to {}", next.info.subject),
            ));
        }
        drop(opened);
        if record.state == RolloverState::Begun {
            let pending = not_resigned(dir, &record, now)?;
            if !pending.is_empty() {
                match force {
                    Some(reason) if !reason.trim().is_empty() => {
                        record.promoted_without = pending;
                        record.forced_because = Some(reason.trim().to_owned());
                    }
                    _ => {
                        return Err(Error::PromoteBeforeResigned {
                            dir: dir.to_path_buf(),
                            pending: pending.join(", "),
                        });
                    }
                }
            }
        }
        if record.state == RolloverState::Begun {
            // The directory must still be the one the rollover began from.
            let ca = Self::open(dir)?;
            if ca.root.info.sha256 != record.old_root_sha256 {
                return Err(corrupt(
                    dir,
                    ROOT_CERT,
                    format!(
                        "its SHA-256 is {}, but the rollover began from {}",
                        ca.root.info.sha256, record.old_root_sha256
                    ),
                ));
            }
            let (cert_name, key_name) = retired_names(&record.old_root_serial);
            let old_key = crate::root::read_required(dir, ROOT_KEY)?;
            warden_files::write_atomic(&dir.join(&key_name), old_key.as_bytes(), Mode::OwnerOnly)?;
            warden_files::write_atomic(
                &dir.join(&cert_name),
                ca.root_pem.as_bytes(),
                Mode::Public,
            )?;
            record.state = RolloverState::Finishing;
            write_record(dir, &record)?;
        }
        let meta_path = dir.join(METADATA);
        let mut meta: CaMetadata =
            serde_json::from_str(&crate::root::read_required(dir, METADATA)?)
                .map_err(|e| corrupt(dir, METADATA, e.to_string()))?;
        meta.common_name.clone_from(&record.common_name);
        meta.algorithm = record.algorithm;
        meta.path_len = record.path_len;
        meta.root_serial = next.info.serial.clone();
        meta.root_sha256 = next.info.sha256;
        let meta_json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::CorruptCaFile {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
        // Every byte is written under a staging name first, then renamed into place: a full
        // disk (or any failed write) stops before the root's files change, so the current root
        // stays usable and promote can be run again once there is room. Renames need no space.
        let staged = [
            (ROOT_KEY, PROMOTE_KEY, next_key.as_bytes(), Mode::OwnerOnly),
            (ROOT_CERT, PROMOTE_CERT, next_pem.as_bytes(), Mode::Public),
            (METADATA, PROMOTE_META, meta_json.as_slice(), Mode::Public),
        ];
        for (_, stage, bytes, mode) in &staged {
            if let Err(e) = warden_files::write_atomic(&dir.join(stage), bytes, *mode) {
                for (_, s, _, _) in &staged {
                    let _ = std::fs::remove_file(dir.join(s));
                }
                return Err(e.into());
            }
        }
        for (target, stage, _, _) in &staged {
            std::fs::rename(dir.join(stage), dir.join(target))
                .map_err(Error::io("rename", dir.join(stage)))?;
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("fsync", dir))?;
        record.state = RolloverState::Finished;
        record.finished_at = Some(now);
        write_record(dir, &record)?;
        for f in [NEXT_ROOT_CERT, NEXT_ROOT_KEY] {
            match std::fs::remove_file(dir.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", dir.join(f))(e)),
            }
        }
        Self::open(dir)
    }
}

/// The unexpired intermediates the old root signed (latest per environment and profile) that
/// the next root has not re-signed, as `environment profile (serial …)`.
fn not_resigned(dir: &Path, record: &RolloverRecord, now: OffsetDateTime) -> Result<Vec<String>> {
    let ledger = ledger::read(&dir.join(LEDGER))?;
    let mut latest: BTreeMap<(String, String), &LedgerEntry> = BTreeMap::new();
    let mut resigned: BTreeSet<(String, String)> = BTreeSet::new();
    for e in &ledger {
        if e.environment == OFFLINE || e.profile == "root" {
            continue;
        }
        let at = (e.environment.clone(), e.profile.clone());
        if e.signed_by.as_deref() == Some(record.new_root_sha256.as_str()) {
            resigned.insert(at);
        } else if e.signed_by.is_none() {
            latest.insert(at, e);
        }
    }
    Ok(latest
        .into_iter()
        .filter(|(at, e)| e.not_after > now && !resigned.contains(at))
        .map(|((env, profile), e)| format!("{env} {profile} (serial {})", e.serial))
        .collect())
}

#[cfg(test)]
#[path = "rollover_tests.rs"]
mod tests;
