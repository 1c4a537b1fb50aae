//! The offline root CA's backup: its directory in one age-encrypted archive, and its passphrase
//! split among custodians so that no one person can bring the root back alone
//! (docs/adr/0012-offline-ca-backup.md).
//!
//! - [`make`] builds, in memory, the archive (every file of the CA directory and a
//!   [`Manifest`]: root fingerprint, the ledger's tip, each file's SHA-256) encrypted to the
//!   given custodians, and, when asked, one passphrase share per custodian ([`Split`]), each
//!   encrypted to that custodian alone and bound to the root, the split, its index and the
//!   threshold. [`Backup::write`] writes them all owner-only and atomically, or none.
//! - [`open`] decrypts an archive with a custodian's identity and checks every file against the
//!   manifest and the manifest against the ledger inside; [`combine`] opens K shares and
//!   recombines the passphrase in memory. What to write is then `warden_pki`'s business
//!   ([`warden_pki::CaFiles`]: key proof, no rollback, all-or-nothing write).
//!
//! The root key stays encrypted under its passphrase inside the archive: the archive alone, or
//! one custodian's identity, does not give the root. The Shamir split is `blahaj` (a maintained
//! fork of `sharks`, whose biased coefficients were RUSTSEC-2024-0398); the passphrase is padded
//! to [`MAX_PASSPHRASE`] + 2 bytes first, so a share does not reveal its length.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use warden_pki::{CaFiles, LedgerTip};
use zeroize::Zeroizing;

use crate::envelope::{open_with, seal_bytes};
use crate::error::Error;
use crate::identity::{Custodian, IdentityFile};

/// The `warden` field of an archive's payload.
const ARCHIVE_KIND: &str = "ca-backup";
/// The `warden` field of a passphrase share's payload.
const SHARE_KIND: &str = "ca-passphrase-share";
/// Largest archive read (the CA directory is a few KiB plus a ledger line per signature).
const ARCHIVE_LIMIT: u64 = 64 * 1024 * 1024;
/// Largest share file read.
const SHARE_LIMIT: u64 = 64 * 1024;
/// Longest passphrase that can be split, in bytes.
pub const MAX_PASSPHRASE: usize = 254;
/// What `errors` call the offline CA where custody errors name an environment.
const OFFLINE: &str = "offline root CA";

/// What the archive says about itself; checked against its contents on [`open`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// SHA-256 of the root certificate's DER, lower-case hex (as in `ca.json`).
    pub root_sha256: String,
    /// The root's subject.
    pub root_subject: String,
    /// The ledger when the backup was made.
    pub ledger: LedgerTip,
    /// When the backup was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Every file, by name, with its size and SHA-256.
    pub files: Vec<FileDigest>,
    /// Custodians the archive is encrypted to (any one of them opens it).
    pub recipients: Vec<String>,
    /// The passphrase split, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_split: Option<SplitInfo>,
}

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// File name in the CA directory.
    pub name: String,
    /// Size in bytes.
    pub size: usize,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// How the passphrase was split (no share material: the archive only says who holds what).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitInfo {
    /// Random id of this split: shares of two splits never mix.
    pub id: String,
    /// Shares needed.
    pub threshold: u8,
    /// Custodians holding a share, in index order (index 1 first).
    pub custodians: Vec<String>,
}

/// The passphrase split to make: `threshold` of the `custodians`' shares recombine it.
pub struct Split<'a> {
    /// The root key's passphrase (prove it first: [`CaFiles::check_passphrase`]).
    pub passphrase: &'a SecretString,
    /// Shares needed.
    pub threshold: u8,
    /// One share each, in this order.
    pub custodians: &'a [Custodian],
}

/// A backup made in memory: the encrypted archive and the encrypted shares.
pub struct Backup {
    /// What the archive holds.
    pub manifest: Manifest,
    archive: Vec<u8>,
    shares: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for Backup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backup")
            .field("manifest", &self.manifest)
            .field("archive_bytes", &self.archive.len())
            .field("shares", &self.shares.len())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveBody {
    warden: String,
    version: u32,
    manifest: Manifest,
    /// File name → contents, base64.
    files: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    warden: String,
    version: u32,
    root_sha256: String,
    split_id: String,
    custodian: String,
    index: u8,
    threshold: u8,
    shares: u8,
    /// The share (x, then y), hex.
    share: String,
}

impl Drop for ShareBody {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.share);
    }
}

/// Builds the backup of `files` (checked first; `origin` names them in errors), encrypted to
/// `recipients`, with the passphrase split per `split`.
pub fn make(
    files: &CaFiles,
    origin: &Path,
    recipients: &[Custodian],
    split: Option<&Split<'_>>,
    now: OffsetDateTime,
) -> Result<Backup, Error> {
    let summary = files.check(origin)?;
    if recipients.is_empty() {
        return Err(bad_custodians("the archive needs at least one recipient"));
    }
    let split_info = split.map(check_split).transpose()?;
    let manifest = Manifest {
        root_sha256: summary.metadata.root_sha256.clone(),
        root_subject: summary.root.subject.clone(),
        ledger: summary.tip,
        created_at: now,
        files: files
            .iter()
            .map(|(name, bytes)| FileDigest {
                name: name.to_owned(),
                size: bytes.len(),
                sha256: warden_pki::sha256_hex(bytes),
            })
            .collect(),
        recipients: recipients.iter().map(|c| c.name.clone()).collect(),
        passphrase_split: split_info.clone(),
    };
    let mut body = ArchiveBody {
        warden: ARCHIVE_KIND.to_owned(),
        version: 1,
        manifest: manifest.clone(),
        files: files
            .iter()
            .map(|(n, b)| (n.to_owned(), B64.encode(b)))
            .collect(),
    };
    let plain = Zeroizing::new(serde_json::to_vec(&body).expect("archive serialises"));
    for v in body.files.values_mut() {
        zeroize::Zeroize::zeroize(v);
    }
    let archive = seal_bytes(&plain, recipients)?;

    let mut shares = Vec::new();
    if let (Some(split), Some(info)) = (split, &split_info) {
        let padded = pad(split.passphrase)?;
        let sharks = blahaj::Sharks(split.threshold);
        for (i, (share, custodian)) in sharks
            .dealer(&padded)
            .zip(split.custodians.iter())
            .enumerate()
        {
            let bytes = Zeroizing::new(Vec::from(&share));
            let body = ShareBody {
                warden: SHARE_KIND.to_owned(),
                version: 1,
                root_sha256: manifest.root_sha256.clone(),
                split_id: info.id.clone(),
                custodian: custodian.name.clone(),
                index: u8::try_from(i + 1).expect("at most 255 custodians"),
                threshold: split.threshold,
                shares: u8::try_from(split.custodians.len()).expect("checked"),
                share: hex::encode(&*bytes),
            };
            let plain = Zeroizing::new(serde_json::to_vec(&body).expect("share serialises"));
            shares.push((
                custodian.name.clone(),
                seal_bytes(&plain, std::slice::from_ref(custodian))?,
            ));
        }
    }
    Ok(Backup {
        manifest,
        archive,
        shares,
    })
}

fn bad_custodians(reason: &str) -> Error {
    Error::BadCustodians {
        env: OFFLINE.to_owned(),
        reason: reason.to_owned(),
    }
}

fn check_split(split: &Split<'_>) -> Result<SplitInfo, Error> {
    let n = split.custodians.len();
    if split.threshold < 2 || usize::from(split.threshold) > n || n > 255 {
        return Err(bad_custodians(&format!(
            "a split needs 2 ≤ threshold ≤ custodians ≤ 255, got {} of {n}",
            split.threshold
        )));
    }
    let mut names = BTreeSet::new();
    for c in split.custodians {
        // The name becomes part of the share's file name (`share_path`): a `/` or `..` would
        // put the share somewhere else, a newline would forge lines in the summary.
        warden_spec::Slug::parse(&c.name)
            .map_err(|e| bad_custodians(&format!("custodian name: {e}")))?;
        if !names.insert(c.name.as_str()) {
            return Err(bad_custodians(&format!(
                "custodian `{}` is named twice; each holds one share",
                c.name
            )));
        }
    }
    let mut id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| bad_custodians("no randomness for a split id"))?;
    Ok(SplitInfo {
        id: hex::encode(id),
        threshold: split.threshold,
        custodians: split.custodians.iter().map(|c| c.name.clone()).collect(),
    })
}

/// The passphrase as `[len_hi, len_lo, bytes…, 0…]`, `MAX_PASSPHRASE + 2` bytes long.
fn pad(passphrase: &SecretString) -> Result<Zeroizing<Vec<u8>>, Error> {
    let p = passphrase.expose_secret().as_bytes();
    if p.is_empty() || p.len() > MAX_PASSPHRASE {
        return Err(Error::PassphraseTooLong {
            len: p.len(),
            max: MAX_PASSPHRASE,
        });
    }
    let mut out = Zeroizing::new(vec![0u8; MAX_PASSPHRASE + 2]);
    let len = u16::try_from(p.len()).expect("≤ 254");
    out[..2].copy_from_slice(&len.to_be_bytes());
    out[2..2 + p.len()].copy_from_slice(p);
    Ok(out)
}

fn unpad(padded: &[u8]) -> Option<SecretString> {
    let len = usize::from(u16::from_be_bytes([*padded.first()?, *padded.get(1)?]));
    let bytes = padded.get(2..2 + len)?;
    if len == 0 || padded.len() != MAX_PASSPHRASE + 2 {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    Some(SecretString::from(text.to_owned()))
}

/// The files a [`Backup`] writes: the archive, and each custodian's share beside it.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// The archive.
    pub archive: PathBuf,
    /// Custodian → share file.
    pub shares: Vec<(String, PathBuf)>,
}

/// Where custodian `name`'s share of the backup `archive` goes: `<archive>.<name>.share.age`
/// beside it, so a share always names the backup it belongs to.
pub fn share_path(archive: &Path, name: &str) -> PathBuf {
    let mut file = archive.file_name().unwrap_or_default().to_os_string();
    file.push(format!(".{name}.share.age"));
    archive.with_file_name(file)
}

impl Backup {
    /// Where [`Backup::write`] will put everything.
    pub fn paths(&self, archive: &Path) -> Written {
        Written {
            archive: archive.to_path_buf(),
            shares: self
                .shares
                .iter()
                .map(|(n, _)| (n.clone(), share_path(archive, n)))
                .collect(),
        }
    }

    /// Writes the shares and then the archive, owner-only and atomically; refuses (before
    /// writing anything) if any of them exists, and removes what it wrote if a later write
    /// fails, so a backup is all there or not there.
    pub fn write(&self, archive: &Path) -> Result<Written, Error> {
        let written = self.paths(archive);
        let all: Vec<(&Path, &[u8])> = self
            .shares
            .iter()
            .zip(&written.shares)
            .map(|((_, bytes), (_, path))| (path.as_path(), bytes.as_slice()))
            .chain(std::iter::once((archive, self.archive.as_slice())))
            .collect();
        for (path, _) in &all {
            if path.symlink_metadata().is_ok() {
                return Err(Error::OutputExists {
                    path: path.to_path_buf(),
                });
            }
        }
        for (i, (path, bytes)) in all.iter().enumerate() {
            if let Err(e) = warden_files::write_atomic(path, bytes, warden_files::Mode::OwnerOnly) {
                for (done, _) in &all[..i] {
                    let _ = std::fs::remove_file(done);
                }
                return Err(e.into());
            }
        }
        Ok(written)
    }
}

/// An archive opened and checked: its manifest and files.
#[derive(Debug)]
pub struct Opened {
    /// The manifest, checked against the files.
    pub manifest: Manifest,
    /// The CA directory's files.
    pub files: CaFiles,
}

/// Decrypts the archive at `path` with whichever of `identities` it was encrypted to and checks
/// it: every file against its manifest digest, no file missing or extra, the files a sound CA
/// ([`CaFiles::check`]) whose root and ledger tip are the manifest's.
pub fn open(path: &Path, identities: &[&IdentityFile]) -> Result<Opened, Error> {
    let plain = open_with(path, identities, ARCHIVE_LIMIT).map_err(|e| match e {
        Error::NotAgeFile { path, reason } => Error::NotABackup { path, reason },
        other => other,
    })?;
    let not_backup = |reason: String| Error::NotABackup {
        path: path.to_path_buf(),
        reason,
    };
    let body: ArchiveBody = serde_json::from_slice(&plain)
        .map_err(|e| not_backup(format!("its content is not a Warden CA backup ({e})")))?;
    if body.warden != ARCHIVE_KIND || body.version != 1 {
        return Err(not_backup(format!(
            "it holds a {} (version {}), not a CA backup (version 1)",
            body.warden, body.version
        )));
    }
    let tampered = |file: &str, reason: String| Error::BackupTampered {
        path: path.to_path_buf(),
        file: file.to_owned(),
        reason,
    };
    let listed: BTreeSet<&str> = body
        .manifest
        .files
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    if let Some(extra) = body.files.keys().find(|n| !listed.contains(n.as_str())) {
        return Err(tampered(extra, "it is not in the manifest".to_owned()));
    }
    let mut files = Vec::new();
    for want in &body.manifest.files {
        let Some(text) = body.files.get(&want.name) else {
            return Err(tampered(&want.name, "it is missing".to_owned()));
        };
        let bytes = Zeroizing::new(
            B64.decode(text)
                .map_err(|e| tampered(&want.name, format!("not base64: {e}")))?,
        );
        let got = warden_pki::sha256_hex(&bytes);
        if got != want.sha256 || bytes.len() != want.size {
            return Err(tampered(
                &want.name,
                format!(
                    "its SHA-256 is {got} ({} bytes), the manifest says {} ({} bytes)",
                    bytes.len(),
                    want.sha256,
                    want.size
                ),
            ));
        }
        files.push((want.name.clone(), bytes));
    }
    let files = CaFiles::from_files(files);
    let summary = files.check(path)?;
    if summary.metadata.root_sha256 != body.manifest.root_sha256 {
        return Err(tampered(
            warden_pki::METADATA,
            format!(
                "it names the root {}, the manifest {}",
                summary.metadata.root_sha256, body.manifest.root_sha256
            ),
        ));
    }
    if summary.tip != body.manifest.ledger {
        return Err(tampered(
            warden_pki::LEDGER,
            format!(
                "its last entry is #{} ({}), the manifest records #{} ({})",
                summary.tip.entries,
                summary.tip.last_entry_sha256,
                body.manifest.ledger.entries,
                body.manifest.ledger.last_entry_sha256
            ),
        ));
    }
    Ok(Opened {
        manifest: body.manifest.clone(),
        files,
    })
}

/// Opens each share in `shares` with whichever of `identities` it was encrypted to, checks it
/// belongs to `manifest`'s root and split and that no custodian or index repeats, and recombines
/// the passphrase from at least the threshold. The passphrase exists only in memory; prove it
/// with [`CaFiles::check_passphrase`] before relying on it.
pub fn combine(
    manifest: &Manifest,
    archive: &Path,
    shares: &[PathBuf],
    identities: &[&IdentityFile],
) -> Result<SecretString, Error> {
    let Some(split) = &manifest.passphrase_split else {
        return Err(Error::NotABackup {
            path: archive.to_path_buf(),
            reason: "this backup was made without a passphrase split; restore it with the passphrase itself"
                .to_owned(),
        });
    };
    let mut seen = BTreeSet::new();
    let mut parts = Vec::new();
    for path in shares {
        let plain = open_with(path, identities, SHARE_LIMIT)?;
        let body: ShareBody = serde_json::from_slice(&plain).map_err(|e| Error::NotAgeFile {
            path: path.clone(),
            reason: format!("its content is not a CA passphrase share ({e})"),
        })?;
        if body.warden != SHARE_KIND {
            return Err(Error::NotAgeFile {
                path: path.clone(),
                reason: format!("it holds a {}, not a CA passphrase share", body.warden),
            });
        }
        if body.root_sha256 != manifest.root_sha256 {
            return Err(Error::ForeignPassphraseShare {
                path: path.clone(),
                what: format!("the root {}", body.root_sha256),
                expected: format!("root {}", manifest.root_sha256),
            });
        }
        if body.split_id != split.id {
            return Err(Error::ForeignPassphraseShare {
                path: path.clone(),
                what: format!("another backup's split ({})", body.split_id),
                expected: format!("split {}", split.id),
            });
        }
        if !seen.insert(body.index) {
            return Err(Error::DuplicateCustodian {
                custodian: body.custodian.clone(),
                need: split.threshold,
            });
        }
        let bytes = Zeroizing::new(hex::decode(&body.share).map_err(|e| Error::NotAgeFile {
            path: path.clone(),
            reason: format!("its share is not hex ({e})"),
        })?);
        let share = blahaj::Share::try_from(bytes.as_slice()).map_err(|e| Error::NotAgeFile {
            path: path.clone(),
            reason: format!("its share is malformed ({e})"),
        })?;
        if share.x.0 != body.index {
            return Err(Error::NotAgeFile {
                path: path.clone(),
                reason: "its share does not carry its own index".to_owned(),
            });
        }
        parts.push(share);
    }
    if parts.len() < usize::from(split.threshold) {
        return Err(Error::NotEnoughShares {
            env: OFFLINE.to_owned(),
            have: parts.len(),
            need: split.threshold,
        });
    }
    let padded = Zeroizing::new(
        blahaj::Sharks(split.threshold)
            .recover(&parts)
            .map_err(|e| Error::NotABackup {
                path: archive.to_path_buf(),
                reason: format!("the shares do not recombine ({e})"),
            })?,
    );
    unpad(&padded).ok_or_else(|| Error::NotABackup {
        path: archive.to_path_buf(),
        reason: "the shares recombine to no passphrase (one of them was altered)".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::generate_identity;

    #[test]
    fn padding_hides_the_length_and_round_trips() {
        let a = pad(&SecretString::from("short".to_owned())).expect("pad");
        let b = pad(&SecretString::from("a".repeat(200))).expect("pad");
        assert_eq!(a.len(), b.len());
        assert_eq!(unpad(&a).expect("unpad").expose_secret(), "short");
        assert!(pad(&SecretString::from("x".repeat(255))).is_err());
        assert!(unpad(&[0, 0]).is_none());
    }

    #[test]
    fn any_threshold_of_shares_recombines_and_fewer_do_not() {
        let pass = SecretString::from("the root passphrase".to_owned());
        let padded = pad(&pass).expect("pad");
        let shares: Vec<blahaj::Share> = blahaj::Sharks(2).dealer(&padded).take(3).collect();
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let two = [shares[pair[0]].clone(), shares[pair[1]].clone()];
            let got = blahaj::Sharks(2).recover(&two).expect("recover");
            assert_eq!(
                unpad(&got).expect("unpad").expose_secret(),
                "the root passphrase"
            );
        }
        assert!(blahaj::Sharks(2).recover(&shares[..1]).is_err());
    }

    fn custodian(name: &str) -> (Custodian, IdentityFile) {
        let g = generate_identity();
        let id = IdentityFile::parse(Path::new(name), g.file_text.as_bytes()).expect("identity");
        (Custodian::new(name, &g.recipient).expect("recipient"), id)
    }

    /// Anyone who knows a custodian's recipient can encrypt an archive to them, so the archive's
    /// own manifest is checked against what it carries: a forged ledger is refused.
    #[test]
    fn an_archive_whose_files_disagree_with_its_manifest_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let pass = SecretString::from("root passphrase".to_owned());
        let now = OffsetDateTime::now_utc();
        let ca = warden_pki::CaDir::init(
            &tmp.path().join("ca"),
            &warden_pki::RootOptions::default(),
            &pass,
            now,
        )
        .expect("init");
        let files = ca.files().expect("files");
        let (alice, alice_id) = custodian("alice");
        let (bob, bob_id) = custodian("bob");
        let split = Split {
            passphrase: &pass,
            threshold: 2,
            custodians: &[alice.clone(), bob.clone()],
        };
        let backup =
            make(&files, ca.dir(), &[alice.clone(), bob], Some(&split), now).expect("backup");
        assert!(!format!("{backup:?}").contains("root passphrase"));
        let archive = tmp.path().join("ca.backup.age");
        let written = backup.write(&archive).expect("write");
        assert_eq!(written.shares.len(), 2);
        let opened = open(&archive, &[&bob_id]).expect("bob opens the archive");
        let shares: Vec<PathBuf> = written.shares.iter().map(|(_, p)| p.clone()).collect();
        let got =
            combine(&opened.manifest, &archive, &shares, &[&alice_id, &bob_id]).expect("combine");
        assert_eq!(got.expose_secret(), "root passphrase");
        let e =
            combine(&opened.manifest, &archive, &shares[..1], &[&alice_id]).expect_err("1 of 2");
        assert!(
            matches!(
                e,
                Error::NotEnoughShares {
                    have: 1,
                    need: 2,
                    ..
                }
            ),
            "{e}"
        );
        let e = backup.write(&archive).expect_err("exists");
        assert!(matches!(e, Error::OutputExists { .. }), "{e}");

        // Forge: same manifest, one more ledger line.
        let mut body: ArchiveBody = serde_json::from_slice(
            &open_with(&archive, &[&alice_id], ARCHIVE_LIMIT).expect("decrypt"),
        )
        .expect("body");
        let ledger = B64.decode(&body.files[warden_pki::LEDGER]).expect("b64");
        let mut forged = ledger.clone();
        forged.extend_from_slice(&ledger);
        body.files
            .insert(warden_pki::LEDGER.to_owned(), B64.encode(&forged));
        let forged_path = tmp.path().join("forged.age");
        std::fs::write(
            &forged_path,
            seal_bytes(&serde_json::to_vec(&body).expect("json"), &[alice]).expect("seal"),
        )
        .expect("write");
        let e = open(&forged_path, &[&alice_id]).expect_err("forged");
        assert!(
            matches!(&e, Error::BackupTampered { file, .. } if file == warden_pki::LEDGER),
            "{e}"
        );
    }
}
