//! Lab custody: the real ceremony, with custodians the lab generates for itself.
//!
//! Each environment is initialised by `warden_custody::ceremony::init` (the code `warden
//! custody init` runs): one share per lab custodian, each encrypted to that custodian alone,
//! the root token encrypted to all of them, the ledger in `<lab>/state/custody/<env>/`. What
//! makes it a lab is that the custodians' age identities are generated here and kept beside
//! the shares (`custody/custodians/`, owner-only), so `lab up` can unseal unattended and open
//! the bootstrap root token in memory. The [`LAB_ONLY_NOTICE`] says so wherever it matters.
//!
//! An auto-sealed environment goes through the same ceremony with its recovery keys
//! (`record_ceremony`, ledger kind `recovery`): nothing of its custody is in clear either.
//!
//! Labs made before the ceremony (clear `unseal-keys.json` or `recovery-keys.json`, and
//! `root-token`) still come up: their custody mode is reported as legacy.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use warden_bao::Client;
use warden_custody::{Custodian, IdentityFile, Ledger, ShareKind, StateDir};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::layout::EnvLayout;

/// Printed by `lab up` and written into every custody directory.
pub const LAB_ONLY_NOTICE: &str = "LAB ONLY: the lab runs the real custody ceremony (shares \
encrypted with age to one custodian each), but it generates its custodians' identities itself and \
keeps them owner-only in custody/custodians/ beside the shares, so that the lab can restart \
unattended; whoever can read them can unseal the lab and open its bootstrap root token. The root CA \
passphrase is stored unencrypted (owner-only) in custody/. Never use this custody for a real \
deployment: there, each custodian keeps their own identity (`warden custody init`).";

/// How an environment's unseal shares are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CustodyMode {
    /// The ceremony with lab-generated custodians (every lab made by this version).
    LabCeremony,
    /// Clear shares and root token in owner-only files (labs made before the ceremony).
    LegacyClear,
    /// Not initialised yet.
    #[default]
    None,
}

impl CustodyMode {
    /// In words, for `lab up` and `lab status`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::LabCeremony => {
                "ceremony with lab-generated custodians (age-encrypted shares; identities kept in the lab: LAB ONLY)"
            }
            Self::LegacyClear => {
                "legacy: clear shares and root token in owner-only files (LAB ONLY; recreate the lab for the ceremony)"
            }
            Self::None => "not initialised",
        }
    }
}

/// Creates a custody directory (0700) with the notice file in it.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), Error> {
    warden_files::ensure_private_dir(dir)?;
    warden_files::write_atomic(
        &dir.join("LAB-ONLY-NOTICE.txt"),
        format!("{LAB_ONLY_NOTICE}\n").as_bytes(),
        warden_files::Mode::OwnerOnly,
    )?;
    Ok(())
}

/// Reads a one-line secret file (passphrase, legacy token).
pub(crate) fn read_secret(path: &Path) -> Result<Option<SecretString>, Error> {
    match crate::read_text(path) {
        Ok(s) => {
            let s = Zeroizing::new(s);
            Ok(Some(SecretString::from(s.trim_end().to_owned())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "read", e)),
    }
}

/// Writes a one-line secret file, owner-only and atomically.
pub(crate) fn write_secret(path: &Path, secret: &SecretString) -> Result<(), Error> {
    let mut line = Zeroizing::new(secret.expose_secret().to_owned());
    line.push('\n');
    warden_files::write_atomic(path, line.as_bytes(), warden_files::Mode::OwnerOnly)?;
    Ok(())
}

/// A fresh random passphrase for the lab's root CA key (256 bits, hex).
pub(crate) fn random_passphrase() -> SecretString {
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(bytes.as_mut()).expect("system RNG");
    SecretString::from(hex::encode(&bytes[..]))
}

/// The lab's state directory (`<lab>/state`): the custody ledgers, as `warden custody` finds
/// them with `--lab`.
pub fn custody_state_dir(layout: &EnvLayout) -> StateDir {
    let lab = layout
        .dir()
        .parent()
        .and_then(Path::parent)
        .unwrap_or(layout.dir());
    StateDir::new(lab.join("state"))
}

/// The environment's custody ledger (`<lab>/state/custody/<env>/ledger.json`).
pub fn custody_ledger_path(layout: &EnvLayout) -> PathBuf {
    custody_state_dir(layout).ledger(&env_name(layout))
}

/// `custody/custodians/`: the lab custodians' identities (LAB ONLY).
pub fn custodians_dir(layout: &EnvLayout) -> PathBuf {
    layout.custody_dir().join("custodians")
}

/// `custody/shares/`: the encrypted shares and root token, as the ceremony wrote them.
pub fn shares_dir(layout: &EnvLayout) -> PathBuf {
    layout.custody_dir().join("shares")
}

fn identity_path(layout: &EnvLayout, custodian: &str) -> PathBuf {
    custodians_dir(layout).join(format!("{custodian}.age-identity"))
}

fn env_name(layout: &EnvLayout) -> String {
    layout
        .dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn custody_err(env: &str) -> impl FnOnce(warden_custody::Error) -> Error {
    let env = env.to_owned();
    move |e| Error::Custody {
        env,
        source: Box::new(e),
    }
}

/// Where the bootstrap root token is: the ceremony's encrypted file, or a legacy clear one.
/// Whoever ends bootstrap (revoking the token) may remove this file.
pub fn root_token_path(layout: &EnvLayout) -> PathBuf {
    match custody_mode(layout) {
        CustodyMode::LegacyClear => layout.root_token(),
        _ => shares_dir(layout).join(warden_custody::ceremony::root_token_file_name(&env_name(
            layout,
        ))),
    }
}

/// Which custody an environment has.
pub fn custody_mode(layout: &EnvLayout) -> CustodyMode {
    if custody_state_dir(layout).ledger(&env_name(layout)).exists() {
        CustodyMode::LabCeremony
    } else if layout.unseal_keys().exists() || crate::seal::recovery_keys_file(layout).exists() {
        CustodyMode::LegacyClear
    } else {
        CustodyMode::None
    }
}

/// Clear shares in an owner-only JSON file: the format of legacy labs (unseal shares, recovery
/// keys), and of the one share the lab keeps outside any ceremony (the seal-keeper's own).
#[derive(Serialize, Deserialize)]
struct ClearSharesFile {
    shares: u8,
    threshold: u8,
    keys: Vec<String>,
}

impl Drop for ClearSharesFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.keys.zeroize();
    }
}

/// Writes clear shares (LAB ONLY), owner-only and atomically.
pub(crate) fn write_unseal_keys(
    path: &Path,
    shares: u8,
    threshold: u8,
    keys: &[SecretString],
) -> Result<(), Error> {
    let file = ClearSharesFile {
        shares,
        threshold,
        keys: keys.iter().map(|k| k.expose_secret().to_owned()).collect(),
    };
    let text = Zeroizing::new(serde_json::to_string_pretty(&file).expect("serialises"));
    warden_files::write_atomic(path, text.as_bytes(), warden_files::Mode::OwnerOnly)?;
    Ok(())
}

/// Reads clear shares; `Ok(None)` if the file does not exist.
pub(crate) fn read_unseal_keys(path: &Path) -> Result<Option<Vec<SecretString>>, Error> {
    let text = match crate::read_text(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, "read", e)),
    };
    let file: ClearSharesFile = serde_json::from_str(&text).map_err(|e| Error::CorruptLab {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Some(
        file.keys
            .iter()
            .map(|k| SecretString::from(k.clone()))
            .collect(),
    ))
}

/// The lab's custodians `lab-custodian-1`…`lab-custodian-<shares>`: their identities are
/// generated into `custody/custodians/` (owner-only, LAB ONLY) unless an earlier attempt whose
/// init never happened left them there. Called before `sys/init`, so a failure here costs no
/// share.
pub(crate) fn lab_custodians(layout: &EnvLayout, shares: u8) -> Result<Vec<Custodian>, Error> {
    let env = env_name(layout);
    prepare_dir(&layout.custody_dir())?;
    warden_files::ensure_private_dir(&custodians_dir(layout))?;
    let mut custodians = Vec::new();
    for i in 1..=shares {
        let name = format!("lab-custodian-{i}");
        let path = identity_path(layout, &name);
        let recipient = match IdentityFile::read(&path) {
            // Kept from an earlier attempt whose init never happened.
            Ok(_) => read_recipient(&path)?,
            Err(_) => {
                let g = warden_custody::generate_identity();
                warden_files::write_atomic(
                    &path,
                    g.file_text.as_bytes(),
                    warden_files::Mode::OwnerOnly,
                )?;
                g.recipient
            }
        };
        custodians.push(Custodian::new(&name, &recipient).map_err(custody_err(&env))?);
    }
    Ok(custodians)
}

/// Runs the ceremony on a fresh server with `shares` generated lab custodians
/// (`lab-custodian-1`…), `threshold` of whom unseal.
pub(crate) async fn run_ceremony(
    client: &Client,
    layout: &EnvLayout,
    shares: u8,
    threshold: u8,
) -> Result<warden_custody::ceremony::Report, Error> {
    let env = env_name(layout);
    let custodians = lab_custodians(layout, shares)?;
    let state = custody_state_dir(layout);
    let plan = warden_custody::ceremony::Plan {
        env: &env,
        custodians: &custodians,
        threshold,
        // `init` decides from the server's seal.
        kind: ShareKind::Unseal,
        out_dir: &shares_dir(layout),
        state: &state,
    };
    warden_custody::ceremony::init(client, &plan)
        .await
        .map_err(custody_err(&env))
}

/// Refuses an initialisation whose ceremony could not be recorded because the environment
/// already has a ledger (checked before `sys/init`, so no key is ever handed out for nothing).
pub(crate) fn check_no_ledger(layout: &EnvLayout) -> Result<(), Error> {
    let env = env_name(layout);
    let path = custody_state_dir(layout).ledger(&env);
    if path.exists() {
        return Err(custody_err(&env)(warden_custody::Error::LedgerExists {
            env: env.clone(),
            path,
        }));
    }
    Ok(())
}

/// The ceremony for keys `sys/init` already handed out (recovery keys of an auto-sealed
/// environment): one key per lab custodian (from [`lab_custodians`]), each encrypted to that
/// custodian alone, the root token to all of them, the ledger recording `kind`.
pub(crate) fn record_ceremony(
    layout: &EnvLayout,
    custodians: &[Custodian],
    threshold: u8,
    kind: ShareKind,
    keys: &[SecretString],
    root_token: &SecretString,
) -> Result<warden_custody::ceremony::Report, Error> {
    let env = env_name(layout);
    let state = custody_state_dir(layout);
    let plan = warden_custody::ceremony::Plan {
        env: &env,
        custodians,
        threshold,
        kind,
        out_dir: &shares_dir(layout),
        state: &state,
    };
    warden_custody::ceremony::record_init(&plan, keys, root_token).map_err(custody_err(&env))
}

/// What the ceremony's shares of an environment are, if it had a ceremony.
pub fn custody_kind(layout: &EnvLayout) -> Result<Option<ShareKind>, Error> {
    let env = env_name(layout);
    match Ledger::load(&custody_state_dir(layout), &env) {
        Ok(l) => Ok(Some(l.kind)),
        Err(warden_custody::Error::NoLedger { .. }) => Ok(None),
        Err(e) => Err(custody_err(&env)(e)),
    }
}

/// After a Shamir → auto-seal migration the same shares are the recovery keys: the ledger says
/// so (`kind = recovery`). Its digest changes; `lab up` publishes the new one.
pub(crate) fn mark_recovery(layout: &EnvLayout) -> Result<(), Error> {
    let env = env_name(layout);
    let state = custody_state_dir(layout);
    let mut ledger = Ledger::load(&state, &env).map_err(custody_err(&env))?;
    if ledger.kind != ShareKind::Recovery {
        ledger.kind = ShareKind::Recovery;
        ledger.save(&state).map_err(custody_err(&env))?;
    }
    Ok(())
}

/// The `# public key: age1…` line `generate_identity` writes.
fn read_recipient(path: &Path) -> Result<String, Error> {
    let text = Zeroizing::new(crate::read_text(path).map_err(|e| Error::io(path, "read", e))?);
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_owned))
        .ok_or_else(|| Error::CorruptLab {
            path: path.to_path_buf(),
            reason: "no `# public key:` line".to_owned(),
        })
}

/// The shares `threshold` lab custodians open in memory (ceremony), or a legacy lab's clear
/// unseal shares: what `lab up` submits, and what a test that seals a lab server submits to
/// bring it back (LAB ONLY: in production each custodian runs `warden unseal`). Whatever the
/// ledger's kind: under an auto-seal they are the recovery keys a seal migration submits (and
/// what a test opens to check that none sits in clear).
pub fn unseal_shares(layout: &EnvLayout) -> Result<Vec<SecretString>, Error> {
    let env = env_name(layout);
    match custody_mode(layout) {
        CustodyMode::LabCeremony => {
            let ledger =
                Ledger::load(&custody_state_dir(layout), &env).map_err(custody_err(&env))?;
            let mut out = Vec::new();
            for entry in ledger.entries.iter().take(usize::from(ledger.threshold)) {
                let identity = IdentityFile::read(&identity_path(layout, &entry.custodian))
                    .map_err(custody_err(&env))?;
                let share = warden_custody::unseal::open_checked(
                    &ledger,
                    &shares_dir(layout).join(&entry.file),
                    &identity,
                )
                .map_err(custody_err(&env))?;
                out.push(share.secret().clone());
            }
            Ok(out)
        }
        CustodyMode::LegacyClear => {
            Ok(read_unseal_keys(&layout.unseal_keys())?.unwrap_or_default())
        }
        CustodyMode::None => Err(Error::CustodyMissing {
            env,
            path: custody_state_dir(layout).ledger(&env_name(layout)),
        }),
    }
}

/// The bootstrap root token of one lab environment, opened in memory by the first lab
/// custodian (ceremony), or read from the legacy clear file. `Ok(None)` before the ceremony.
///
/// This is the hook for bootstrap code: the lab needs the root token only until operator
/// identities exist; whoever ends bootstrap revokes it (after which this returns a token that
/// no longer works, and operator clients must log in with their certificate instead).
pub fn bootstrap_root_token(layout: &EnvLayout) -> Result<Option<SecretString>, Error> {
    let env = env_name(layout);
    match custody_mode(layout) {
        CustodyMode::LabCeremony => {
            let ledger =
                Ledger::load(&custody_state_dir(layout), &env).map_err(custody_err(&env))?;
            let (Some(file), Some(first)) = (&ledger.root_token_file, ledger.entries.first())
            else {
                return Ok(None);
            };
            // Bootstrap may have ended: the token revoked and its file removed.
            if !shares_dir(layout).join(file).exists() {
                return Ok(None);
            }
            let identity = IdentityFile::read(&identity_path(layout, &first.custodian))
                .map_err(custody_err(&env))?;
            warden_custody::root::open_bootstrap_token(
                &shares_dir(layout).join(file),
                &env,
                &identity,
            )
            .map(Some)
            .map_err(custody_err(&env))
        }
        CustodyMode::LegacyClear => read_secret(&layout.root_token()),
        CustodyMode::None => Ok(None),
    }
}

/// Publishes the ledger's digest to the environment's registry (best effort: the lab works
/// without it, and `warden custody publish --lab` can do it later).
pub(crate) async fn publish_ledger(client: &Client, layout: &EnvLayout) -> bool {
    let env = env_name(layout);
    let state = custody_state_dir(layout);
    let (Ok(ledger), Ok(Some(sha))) = (
        Ledger::load(&state, &env),
        Ledger::digest_on_disk(&state, &env),
    ) else {
        return false;
    };
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    ledger.publish(client, &sha, &now).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LabLayout;

    #[test]
    fn a_legacy_lab_is_recognised_and_its_clear_shares_still_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let layout = LabLayout::new(dir.path()).env("test");
        assert_eq!(custody_mode(&layout), CustodyMode::None);
        assert!(bootstrap_root_token(&layout).expect("none yet").is_none());
        prepare_dir(&layout.custody_dir()).expect("custody dir");
        let keys = [
            SecretString::from("k1".to_owned()),
            SecretString::from("k2".to_owned()),
        ];
        write_unseal_keys(&layout.unseal_keys(), 2, 2, &keys).expect("write");
        write_secret(
            &layout.root_token(),
            &SecretString::from("s.legacy".to_owned()),
        )
        .expect("token");
        assert_eq!(custody_mode(&layout), CustodyMode::LegacyClear);
        let read: Vec<String> = unseal_shares(&layout)
            .expect("shares")
            .iter()
            .map(|k| k.expose_secret().to_owned())
            .collect();
        assert_eq!(read, ["k1", "k2"]);
        let token = bootstrap_root_token(&layout)
            .expect("token")
            .expect("present");
        assert_eq!(token.expose_secret(), "s.legacy");
        assert_eq!(root_token_path(&layout), layout.root_token());
    }
}
