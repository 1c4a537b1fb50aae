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

/// What a one-line secret file holds, for its messages.
struct SecretFile {
    /// "passphrase file".
    file: &'static str,
    /// What a writer of the file picks.
    secret: &'static str,
    /// What to do once it may have been read.
    replace: &'static str,
}

const PASSPHRASE: SecretFile = SecretFile {
    file: "passphrase file",
    secret: "passphrase",
    replace: "consider changing the passphrase",
};

const SEAL_TOKEN: SecretFile = SecretFile {
    file: "seal-keeper token file",
    secret: "token",
    replace: "replace that token (revoke it on the seal keeper, then issue or generate a new one)",
};

/// Reads a passphrase file: the first line, without its newline. The file should be owner-only.
pub(crate) fn read_passphrase_file(path: &Path) -> anyhow::Result<SecretString> {
    read_secret_file(path, &PASSPHRASE)
}

/// Reads a seal-keeper token file like [`read_passphrase_file`].
pub(crate) fn read_seal_token_file(path: &Path) -> anyhow::Result<SecretString> {
    read_secret_file(path, &SEAL_TOKEN)
}

fn read_secret_file(path: &Path, kind: &SecretFile) -> anyhow::Result<SecretString> {
    let raw = crate::input::read_named_text(path, kind.file, crate::input::SECRET_FILE_LIMIT)?;
    let line = raw.lines().next().unwrap_or("");
    if line.is_empty() {
        anyhow::bail!("{} {} is empty", kind.file, path.display());
    }
    if let Some(exposed) = exposure(path, kind) {
        // Warned, not refused: the secret has already been exposed by the file, and refusing
        // would only stop the command that is about to protect something with it.
        crate::output::warn(exposed);
    }
    Ok(SecretString::from(line.to_owned()))
}

/// What is wrong with the regular file at `path` as a place for a secret, if anything:
/// another user can rewrite it (group or others may write it, or it belongs to someone other
/// than this user or root, who may write it whatever its mode) and so chooses the secret, or
/// other users can read it.
fn exposure(path: &Path, kind: &SecretFile) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    let mode = meta.mode() & 0o7777;
    let owner = meta.uid();
    let foreign = owner != 0 && owner != rustix::process::geteuid().as_raw();
    let SecretFile {
        file,
        secret,
        replace,
    } = kind;
    if foreign || mode & 0o022 != 0 {
        return Some(format!(
            "{file} {} can be rewritten by another user (owner uid {owner}, mode {mode:04o}): whoever rewrites it chooses the {secret}, and its owner can read it; keep it in a file of yours (`chown` it to yourself, `chmod 600`) and {replace}",
            path.display()
        ));
    }
    readable_by_others(path).map(|mode| {
        format!(
            "{file} {} is readable by other users (mode {mode:04o}): anyone on this host may have read it; `chmod 600` it, and {replace}",
            path.display()
        )
    })
}

/// The permission bits of the regular file at `path` when its group or others may read it
/// (a FIFO or `/dev/fd/N` from process substitution is not a file anyone else can open).
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o7777;
    (meta.is_file() && mode & 0o044 != 0).then_some(mode)
}

/// A `PathBuf` argument helper so clap help reads well.
#[allow(dead_code)]
pub(crate) type PassphraseFile = Option<PathBuf>;

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_passphrase_file_others_can_read_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pass");
        std::fs::write(&f, "correct horse\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(readable_by_others(&f), Some(0o644));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(readable_by_others(&f), Some(0o640));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(readable_by_others(&f), None);
        assert_eq!(
            read_passphrase_file(&f).unwrap().expose_secret(),
            "correct horse"
        );
    }

    /// A hostile local user who owns or can rewrite the file chooses the passphrase (a new CA
    /// key or backup is then protected by one they know), whatever the read bits say.
    #[test]
    fn a_passphrase_file_another_user_can_rewrite_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pass");
        std::fs::write(&f, "correct horse\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o602)).unwrap();
        let e = exposure(&f, &PASSPHRASE).expect("others may write it");
        assert!(e.contains("rewritten") && e.contains("0602"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(exposure(&f, &PASSPHRASE).is_some_and(|e| e.contains("rewritten")));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(exposure(&f, &PASSPHRASE), None);
        if rustix::process::geteuid().is_root() {
            // Owned by someone else, even 0600: its owner can rewrite (and read) it.
            std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
            let e = exposure(&f, &PASSPHRASE).expect("owned by another user");
            assert!(e.contains("rewritten") && e.contains("65534"), "{e}");
        }
    }

    /// `seal grant --token-file` reads a seal-keeper token: its warning says token, and what to
    /// do with an exposed token, not "change the passphrase".
    #[test]
    fn an_exposed_token_file_is_called_a_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s.abc\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        for e in [exposure(&f, &SEAL_TOKEN).unwrap(), {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
            exposure(&f, &SEAL_TOKEN).unwrap()
        }] {
            assert!(e.contains("token file") && !e.contains("passphrase"), "{e}");
        }
        assert!(
            exposure(&f, &PASSPHRASE)
                .unwrap()
                .contains("passphrase file")
        );
    }
}
