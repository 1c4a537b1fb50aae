//! `warden ca backup` and `warden ca restore`: the offline root's directory in one archive
//! encrypted to custodians, its passphrase optionally split among them
//! (`warden_custody::ca_backup`, docs/ca.md "Losing the offline CA host", ADR 0012).
//!
//! Passphrases come from a file (`--passphrase-file`, which may be `/dev/fd/N`) or a prompt
//! without echo; never argv, never the environment: a backup is made once in a while, by a
//! person, and its secrets must not sit in a shell's environment for automation to leak.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use secrecy::SecretString;
use serde::Serialize;
use time::OffsetDateTime;
use warden_custody::ca_backup::{self, Manifest, Split};
use warden_custody::{Custodian, IdentityFile};
use warden_pki::{CaDir, LedgerTip};

use super::{DirArg, pki_error};
use crate::hint::{Hint, HintExt as _};
use crate::output::Output;
use crate::secret_input;

#[derive(Debug, Args)]
pub(super) struct BackupArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The archive to write (a new file; owner-only). Passphrase shares go beside it as
    /// `<archive>.<custodian>.share.age`.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// A custodian the archive is encrypted to, `NAME=age1…` (repeatable; any one of them can
    /// open the archive, none can use the key without the passphrase).
    #[arg(
        long = "custodian",
        value_name = "NAME=RECIPIENT",
        required_unless_present = "custodians_of",
        conflicts_with = "custodians_of"
    )]
    custodians: Vec<String>,
    /// Take the custodians from this environment's custody in the spec
    /// (`[environments.ENV.custody]`, the custodians of its ceremony), and split the passphrase
    /// with its threshold unless --threshold says otherwise.
    #[arg(long, value_name = "ENV")]
    custodians_of: Option<String>,
    /// The spec, for --custodians-of.
    #[arg(
        long,
        value_name = "FILE",
        env = "WARDEN_SPEC",
        default_value = "warden.toml"
    )]
    spec: PathBuf,
    /// Split the root key's passphrase: THRESHOLD of the custodians' shares recombine it (one
    /// share per custodian, each encrypted to that custodian alone).
    #[arg(long, value_name = "THRESHOLD")]
    threshold: Option<u8>,
    /// Read the passphrase (needed to split it) from this file's first line (or /dev/fd/N)
    /// instead of a prompt.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct RestoreArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The archive `warden ca backup` wrote.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// A custodian's age identity file (owner-only; repeatable): opens the archive and the
    /// shares encrypted to it.
    #[arg(long = "identity", value_name = "FILE", required = true)]
    identities: Vec<PathBuf>,
    /// A custodian's passphrase share (repeatable; as many as the backup's threshold, from
    /// different custodians). The recombined passphrase stays in memory: the key is
    /// re-encrypted under a new passphrase (--new-passphrase-file or a prompt).
    #[arg(long = "share", value_name = "FILE")]
    shares: Vec<PathBuf>,
    /// Without shares: prove the key with this passphrase file before writing.
    #[arg(long, value_name = "FILE", conflicts_with = "shares")]
    passphrase_file: Option<PathBuf>,
    /// With shares: the new passphrase for the restored key, from this file instead of a prompt.
    #[arg(long, value_name = "FILE")]
    new_passphrase_file: Option<PathBuf>,
    /// Replace an existing CA directory of the same root whose ledger the backup continues.
    #[arg(long)]
    force: bool,
    /// Check everything (archive, digests, ledger, shares, key) and write nothing.
    #[arg(long)]
    dry_run: bool,
}

fn parse_custodian(s: &str) -> anyhow::Result<Custodian> {
    let (name, recipient) = s
        .split_once('=')
        .with_context(|| format!("--custodian {s:?} is not NAME=RECIPIENT"))
        .hint("write --custodian alice=age1…, one per custodian")?;
    Custodian::new(name.trim(), recipient.trim())
        .map_err(anyhow::Error::new)
        .hint("the recipient is the `# public key: age1…` line of the custodian's identity file (`warden custody keygen`)")
}

/// The custodians of `env`'s ceremony in the spec at `path`, and its threshold.
fn spec_custodians(path: &Path, env: &str) -> anyhow::Result<(Vec<Custodian>, u8)> {
    let spec = crate::cmd::server::load_spec(path)?;
    let custody = spec
        .environment(env)
        .with_context(|| format!("{} has no environment `{env}`", path.display()))
        .hint("name an environment of the spec, or list the custodians with --custodian NAME=age1…")?
        .custody
        .as_ref()
        .with_context(|| format!("the spec declares no custodians for `{env}`"))
        .with_hint(|| format!("add [environments.{env}.custody] with its custodians, or list them with --custodian NAME=age1…"))?;
    let list = custody
        .custodians
        .iter()
        .map(|c| Custodian::new(c.name.as_str(), &c.recipient))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::new)?;
    Ok((list, custody.threshold))
}

pub(super) fn backup(a: BackupArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = a.dir.dir;
    let what = || format!("could not back up the CA in {}", dir.display());
    let (custodians, threshold) = match &a.custodians_of {
        Some(env) => {
            let (list, spec_threshold) = spec_custodians(&a.spec, env)?;
            (list, a.threshold.or(Some(spec_threshold)))
        }
        None => (
            a.custodians
                .iter()
                .map(|s| parse_custodian(s))
                .collect::<anyhow::Result<Vec<_>>>()?,
            a.threshold,
        ),
    };
    if threshold.is_none() && a.passphrase_file.is_some() {
        return Err(anyhow::anyhow!(
            "--passphrase-file is only read to split the passphrase"
        ))
        .hint("add --threshold K to split it among the custodians, or drop --passphrase-file");
    }
    let ca = CaDir::open(&dir).map_err(|e| pki_error(e, what(), &dir))?;
    // Refuse an existing output before anyone types a passphrase.
    let mut targets = vec![a.to.clone()];
    if threshold.is_some() {
        targets.extend(
            custodians
                .iter()
                .map(|c| ca_backup::share_path(&a.to, &c.name)),
        );
    }
    if let Some(t) = targets.iter().find(|t| t.symlink_metadata().is_ok()) {
        return Err(anyhow::anyhow!("{} already exists", t.display()))
            .hint("a backup never overwrites a file: choose a new --to (e.g. with today's date)");
    }
    let files = ca.files().map_err(|e| pki_error(e, what(), &dir))?;
    let passphrase = match threshold {
        Some(_) => {
            let p = passphrase(a.passphrase_file.as_deref(), "CA passphrase: ", false)?;
            // Shares of a wrong passphrase would restore nothing: prove it first.
            files
                .check_passphrase(&dir, &p)
                .map_err(|e| pki_error(e, what(), &dir))?;
            Some(p)
        }
        None => None,
    };
    let split = match (threshold, &passphrase) {
        (Some(threshold), Some(p)) => Some(Split {
            passphrase: p,
            threshold,
            custodians: &custodians,
        }),
        _ => None,
    };
    let backup = ca_backup::make(
        &files,
        &dir,
        &custodians,
        split.as_ref(),
        OffsetDateTime::now_utc(),
    )
    .map_err(|e| fail(e, what(), "nothing was written", None))?;
    let written = backup.write(&a.to).map_err(|e| {
        fail(
            e,
            format!("could not write the backup {}", a.to.display()),
            "nothing was left behind",
            None,
        )
    })?;

    #[derive(Serialize)]
    struct ShareOut<'a> {
        custodian: &'a str,
        file: &'a Path,
    }
    #[derive(Serialize)]
    struct Report<'a> {
        dir: &'a Path,
        archive: &'a Path,
        manifest: &'a Manifest,
        shares: Vec<ShareOut<'a>>,
    }
    let m = &backup.manifest;
    let report = Report {
        dir: &dir,
        archive: &written.archive,
        manifest: m,
        shares: written
            .shares
            .iter()
            .map(|(c, f)| ShareOut {
                custodian: c,
                file: f,
            })
            .collect(),
    };
    out.emit(&report, || {
        let mut s = format!(
            "Backed up the offline root CA in {} to {}\n",
            dir.display(),
            written.archive.display()
        );
        s += &format!("  root         {} (sha256 {})\n", m.root_subject, m.root_sha256);
        s += &tip_line(&m.ledger);
        s += &format!(
            "  files        {}\n  readable by  {} (any one; the key inside stays encrypted under its passphrase)\n",
            m.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
            m.recipients.join(", ")
        );
        match &m.passphrase_split {
            Some(split) => {
                s += &format!(
                    "  passphrase   split {} of {} (split {})\n",
                    split.threshold,
                    split.custodians.len(),
                    split.id
                );
                for (c, f) in &written.shares {
                    s += &format!("    {c:<12} {}\n", f.display());
                }
                s += "\nHand each share file to its custodian and keep the archive apart from the CA host.\n";
            }
            None => {
                s += "  passphrase   not in the backup: keep it where the archive is not\n";
            }
        }
        s += &format!(
            "Check it any time with\n  warden ca restore --from {} --identity FILE{} --dir NEW_DIR --dry-run\n",
            written.archive.display(),
            if m.passphrase_split.is_some() { " --share FILE …" } else { "" }
        );
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn restore(a: RestoreArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = a.dir.dir;
    let what = || {
        format!(
            "could not restore {} into {}",
            a.from.display(),
            dir.display()
        )
    };
    let unchanged = if a.dry_run {
        "nothing was written (dry run)".to_owned()
    } else {
        format!("nothing was written to {}", dir.display())
    };
    // The target first: refusing after the custodians have typed would waste their time.
    let existing = existing_ca(&dir, a.force, a.dry_run)?;
    let identities = a
        .identities
        .iter()
        .map(|p| IdentityFile::read(p).map_err(|e| fail(e, what(), &unchanged, None)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ids: Vec<&IdentityFile> = identities.iter().collect();
    let opened = ca_backup::open(&a.from, &ids).map_err(|e| fail(e, what(), &unchanged, None))?;
    let m = &opened.manifest;
    let mut files = opened.files;
    if let Some(ca) = &existing {
        files
            .check_no_rollback(ca)
            .map_err(|e| fail(e.into(), what(), &unchanged, None))?;
    }
    let key = if !a.shares.is_empty() {
        let old = ca_backup::combine(m, &a.from, &a.shares, &ids)
            .map_err(|e| fail(e, what(), &unchanged, Some(m)))?;
        files
            .check_passphrase(&a.from, &old)
            .map_err(|e| fail(e.into(), what(), &unchanged, Some(m)))?;
        if !a.dry_run {
            let new = passphrase(
                a.new_passphrase_file.as_deref(),
                "New CA passphrase: ",
                true,
            )?;
            files
                .reseal(&a.from, &old, &new)
                .map_err(|e| fail(e.into(), what(), &unchanged, Some(m)))?;
        }
        KeyCheck::SharesNewPassphrase
    } else if let Some(file) = &a.passphrase_file {
        let p = secret_input::read_passphrase_file(file)?;
        files
            .check_passphrase(&a.from, &p)
            .map_err(|e| fail(e.into(), what(), &unchanged, None))?;
        KeyCheck::Passphrase
    } else {
        if a.new_passphrase_file.is_some() {
            anyhow::bail!(
                "--new-passphrase-file needs --share: without shares the key keeps its passphrase"
            );
        }
        KeyCheck::NotChecked
    };
    let replaced = existing.is_some();
    if !a.dry_run {
        if replaced {
            out.progress(format!(
                "Replacing {} (same root, its ledger is continued by the backup's)",
                dir.display()
            ));
        }
        files
            .write_to(&dir, replaced)
            .map_err(|e| pki_error(e, what(), &dir))?;
        CaDir::open(&dir)
            .map_err(|e| pki_error(e, "the restored CA does not open".to_owned(), &dir))?;
    }

    #[derive(Serialize)]
    struct Report<'a> {
        dir: &'a Path,
        archive: &'a Path,
        dry_run: bool,
        replaced: bool,
        key: KeyCheck,
        manifest: &'a Manifest,
    }
    let report = Report {
        dir: &dir,
        archive: &a.from,
        dry_run: a.dry_run,
        replaced,
        key,
        manifest: m,
    };
    out.emit(&report, || {
        let mut s = if a.dry_run {
            format!(
                "Checked {}: it restores (nothing was written)\n",
                a.from.display()
            )
        } else {
            format!(
                "Restored the offline root CA into {} from {}\n",
                dir.display(),
                a.from.display()
            )
        };
        s += &format!("  root         {} (sha256 {})\n", m.root_subject, m.root_sha256);
        s += &tip_line(&m.ledger);
        s += &format!(
            "  backup made  {}\n  key          {}\n",
            super::rfc3339(m.created_at),
            match key {
                KeyCheck::SharesNewPassphrase if a.dry_run =>
                    "the custodians' shares recombine to its passphrase",
                KeyCheck::SharesNewPassphrase =>
                    "opened with the custodians' shares, now encrypted under the new passphrase",
                KeyCheck::Passphrase => "opens with the passphrase",
                KeyCheck::NotChecked => "not checked (give --share or --passphrase-file to prove it)",
            }
        );
        if !a.dry_run {
            s += &format!(
                "\nNext: check it with `warden ca show --dir {}`, then take a new backup (`warden ca backup`){}",
                dir.display(),
                if m.passphrase_split.is_some() { " and hand out its shares" } else { "" }
            );
            if key == KeyCheck::SharesNewPassphrase {
                s += ": the new passphrase is in no one's shares yet";
            }
            s += "\n";
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

/// How the restore proved the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum KeyCheck {
    /// Shares recombined the passphrase; the key was re-encrypted under a new one.
    SharesNewPassphrase,
    /// `--passphrase-file` opened it.
    Passphrase,
    /// Not checked.
    NotChecked,
}

/// The CA already in `dir`, if any, when `--force` allows replacing it; refusals otherwise.
fn existing_ca(dir: &Path, force: bool, dry_run: bool) -> anyhow::Result<Option<CaDir>> {
    // Before the custodians type anything: the restore refuses a symlink at --dir.
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(anyhow::anyhow!("--dir {} is a symbolic link", dir.display()))
            .hint("give the real directory (a restore never writes through a symlink); nothing was written");
    }
    let occupied = match std::fs::read_dir(dir) {
        Ok(mut e) => e.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("could not list {}", dir.display())),
    };
    if !occupied {
        return Ok(None);
    }
    if !dir.join(warden_pki::METADATA).exists() {
        return Err(anyhow::anyhow!(
            "{} exists and does not hold a CA; a restore writes only into a missing or empty directory or over a CA",
            dir.display()
        ))
        .hint("choose another --dir; nothing was written");
    }
    // Not `pki_error`: its hint ("restore from the backup") is this command's own job.
    let ca = CaDir::open(dir)
        .map_err(anyhow::Error::new)
        .with_context(|| format!("{} holds a CA that does not open", dir.display()))
        .hint(format!(
            "move it aside (`mv {0} {0}.damaged`) and restore into {0}; nothing was written",
            dir.display()
        ))?;
    if !force && !dry_run {
        return Err(anyhow::anyhow!(
            "{} already holds a CA; refusing to overwrite it",
            dir.display()
        ))
        .hint("restore into a new --dir, or pass --force to replace it (refused if the backup's ledger does not continue the directory's)");
    }
    Ok(Some(ca))
}

fn tip_line(t: &LedgerTip) -> String {
    format!(
        "  ledger       {} signature(s), last serial {}, last entry sha256 {}\n",
        t.entries, t.last_serial, t.last_entry_sha256
    )
}

fn share_hint(m: Option<&Manifest>) -> String {
    match m.and_then(|m| m.passphrase_split.as_ref()) {
        Some(s) => format!(
            "give {} --share files from different custodians of this backup ({}), with their --identity files",
            s.threshold,
            s.custodians.join(", ")
        ),
        None => {
            "give the shares of this backup's custodians, with their --identity files".to_owned()
        }
    }
}

/// A backup or restore error: what failed, and a hint that starts with what was left unchanged
/// and says what to do next. (The library errors carry no advice; `custody`'s own hints speak of
/// environments and unseal shares, so the CA's are here.)
fn fail(
    e: warden_custody::Error,
    what: String,
    unchanged: &str,
    manifest: Option<&Manifest>,
) -> anyhow::Error {
    use warden_custody::Error as E;
    use warden_pki::Error as P;
    let next = match &e {
        E::IdentityTooOpen { path, .. } => format!("chmod 600 {}", path.display()),
        E::IdentityFile { .. } => "pass a custodian's age identity file (`warden custody keygen` wrote it)".to_owned(),
        E::IdentityDoesNotOpen { .. } => "it was encrypted to other custodians: use the identity file of one of the custodians `warden ca backup` named (or of this share's custodian)".to_owned(),
        E::NotABackup { .. } => "use the archive exactly as `warden ca backup` wrote it (a truncated or altered archive never opens), e.g. another copy".to_owned(),
        E::BackupTampered { .. } => "this archive was altered after it was made: use another copy, and find out who could write this one".to_owned(),
        E::ForeignPassphraseShare { .. } | E::NotEnoughShares { .. } | E::DuplicateCustodian { .. } | E::NotAgeFile { .. } => share_hint(manifest),
        E::PassphraseTooLong { max, .. } => format!("passphrases of at most {max} bytes can be split"),
        E::BadCustodians { .. } | E::InvalidRecipient { .. } => "fix the --custodian/--threshold flags".to_owned(),
        E::OutputExists { .. } => "a backup never overwrites a file: choose a new --to".to_owned(),
        E::Pki(P::WrongPassphrase { .. }) if manifest.is_some() => "the shares recombine to a passphrase that does not open this backup's key: they come from another backup of the same root; use the shares written beside this archive".to_owned(),
        E::Pki(P::WrongPassphrase { .. }) => "check the passphrase".to_owned(),
        E::Pki(P::RestoreWouldRollBack { .. }) => "restore a newer backup, or keep the directory: its ledger already holds every signature this backup has".to_owned(),
        E::Pki(P::RestoreDifferentRoot { .. }) => "this backup is of another root CA: restore it into another --dir".to_owned(),
        E::Pki(P::CorruptCaFile { .. } | P::NotACaDir { .. } | P::Ledger { .. }) => "the backup's CA files are not sound: use another backup".to_owned(),
        E::Files(f) | E::Pki(P::Write(f)) if f.is_disk_full() => "free some disk space".to_owned(),
        _ => "see the error above".to_owned(),
    };
    anyhow::Error::new(e)
        .context(what)
        .context(Hint(format!("{unchanged}; {next}")))
}

/// A passphrase from `file` or a prompt without echo (twice when `confirm`); never the
/// environment.
fn passphrase(file: Option<&Path>, prompt: &str, confirm: bool) -> anyhow::Result<SecretString> {
    match file {
        Some(f) => secret_input::read_passphrase_file(f),
        None => secret_input::prompt_passphrase(prompt, confirm),
    }
}
