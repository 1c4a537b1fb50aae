//! Lab custody of the things a real deployment would never keep on one disk: the root CA
//! passphrase, Shamir unseal shares and root tokens.
//!
//! This is deliberately simple and deliberately loud. A lab must come back up unattended after
//! `down`, so the shares are stored owner-only next to the server; the [`LAB_ONLY_NOTICE`] is
//! written beside them and printed by `lab up`. Production custody (shares encrypted to separate
//! custodians, auto-unseal) is a separate feature.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;

/// Printed by `lab up` and written into every custody directory.
pub const LAB_ONLY_NOTICE: &str = "LAB ONLY: unseal shares, root tokens and the root CA passphrase \
of this lab are stored unencrypted (owner-only files) under its custody/ directories, so that the \
lab can restart unattended. Never use this custody for a real deployment.";

/// Creates a custody directory (0700) with the notice file in it.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), Error> {
    warden_files::ensure_private_dir(dir)?;
    let notice = dir.join("LAB-ONLY-NOTICE.txt");
    if !notice.exists() {
        warden_files::write_atomic(
            &notice,
            format!("{LAB_ONLY_NOTICE}\n").as_bytes(),
            warden_files::Mode::OwnerOnly,
        )?;
    }
    Ok(())
}

/// Reads a one-line secret file (passphrase, token).
pub(crate) fn read_secret(path: &Path) -> Result<Option<SecretString>, Error> {
    match std::fs::read_to_string(path) {
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

#[derive(Serialize, Deserialize)]
struct UnsealFile {
    shares: u8,
    threshold: u8,
    keys: Vec<String>,
}

impl Drop for UnsealFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.keys.zeroize();
    }
}

/// Stores the unseal shares of one environment.
pub(crate) fn write_unseal_keys(
    path: &Path,
    shares: u8,
    threshold: u8,
    keys: &[SecretString],
) -> Result<(), Error> {
    let file = UnsealFile {
        shares,
        threshold,
        keys: keys.iter().map(|k| k.expose_secret().to_owned()).collect(),
    };
    let text = Zeroizing::new(serde_json::to_string_pretty(&file).expect("serialises"));
    warden_files::write_atomic(path, text.as_bytes(), warden_files::Mode::OwnerOnly)?;
    Ok(())
}

/// Reads the unseal shares of one environment; `Ok(None)` if the file does not exist.
pub(crate) fn read_unseal_keys(path: &Path) -> Result<Option<Vec<SecretString>>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, "read", e)),
    };
    let file: UnsealFile = serde_json::from_str(&text).map_err(|e| Error::CorruptLab {
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

/// A fresh random passphrase for the lab's root CA key (256 bits, hex).
pub(crate) fn random_passphrase() -> SecretString {
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(bytes.as_mut()).expect("system RNG");
    SecretString::from(hex::encode(bytes.as_ref()))
}
