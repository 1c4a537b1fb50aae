//! Where a passphrase comes from. Never argv: a flag names a *file*, an environment variable
//! carries the value for automation, and otherwise we prompt on the terminal.

use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::SecretString;

use crate::hint::HintExt;

/// The environment variable automation uses to pass the CA passphrase.
pub(crate) const CA_PASSPHRASE_ENV: &str = "WARDEN_CA_PASSPHRASE";

/// Reads the CA passphrase from `file`, else `$WARDEN_CA_PASSPHRASE`, else a terminal prompt
/// (asked twice when `confirm`, for a new passphrase).
pub(crate) fn ca_passphrase(file: Option<&Path>, confirm: bool) -> anyhow::Result<SecretString> {
    if let Some(path) = file {
        return read_passphrase_file(path);
    }
    if let Ok(v) = std::env::var(CA_PASSPHRASE_ENV) {
        if v.is_empty() {
            anyhow::bail!("{CA_PASSPHRASE_ENV} is set but empty");
        }
        return Ok(SecretString::from(v));
    }
    let first = rpassword::prompt_password("CA passphrase: ")
        .context("could not read a passphrase from the terminal")
        .with_hint(|| {
            format!("pass --passphrase-file FILE or set {CA_PASSPHRASE_ENV} when no terminal is available")
        })?;
    if confirm {
        let second = rpassword::prompt_password("Repeat the passphrase: ")
            .context("could not read a passphrase from the terminal")?;
        if first != second {
            anyhow::bail!("the two passphrases differ");
        }
    }
    if first.is_empty() {
        anyhow::bail!("an empty passphrase is not allowed");
    }
    Ok(SecretString::from(first))
}

/// Prompts for a passphrase without echo (twice when `confirm`); never reads the environment.
pub(crate) fn prompt_passphrase(prompt: &str, confirm: bool) -> anyhow::Result<SecretString> {
    let first = zeroize::Zeroizing::new(
        rpassword::prompt_password(prompt)
            .context("could not read a passphrase from the terminal")
            .hint("pass the passphrase in a file instead (--passphrase-file FILE, or /dev/fd/N)")?,
    );
    if confirm {
        let second = zeroize::Zeroizing::new(
            rpassword::prompt_password("Repeat the passphrase: ")
                .context("could not read a passphrase from the terminal")?,
        );
        if *first != *second {
            anyhow::bail!("the two passphrases differ");
        }
    }
    if first.is_empty() {
        anyhow::bail!("an empty passphrase is not allowed");
    }
    Ok(SecretString::from(first.to_string()))
}

/// Reads a passphrase file: the first line, without its newline. The file should be owner-only.
pub(crate) fn read_passphrase_file(path: &Path) -> anyhow::Result<SecretString> {
    let raw =
        crate::input::read_named_text(path, "passphrase file", crate::input::SECRET_FILE_LIMIT)?;
    let line = raw.lines().next().unwrap_or("");
    if line.is_empty() {
        anyhow::bail!("passphrase file {} is empty", path.display());
    }
    Ok(SecretString::from(line.to_owned()))
}

/// A `PathBuf` argument helper so clap help reads well.
#[allow(dead_code)]
pub(crate) type PassphraseFile = Option<PathBuf>;
