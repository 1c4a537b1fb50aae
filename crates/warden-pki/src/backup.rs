//! The CA directory as files in memory: what a backup carries ([`CaDir::files`]) and what a
//! restore checks and writes ([`CaFiles::check`], [`CaFiles::write_to`]).
//!
//! How the files are encrypted, and to whom, is custody's business (`warden-custody`'s
//! `ca_backup`); this module only knows what a *sound* CA directory is: `ca.json` names the root
//! in `root.crt`, the key in `root.key.p8` is an encrypted PKCS#8 document that (given the
//! passphrase) belongs to that root, and the ledger parses and starts with the root's own
//! signature. A restore never rolls a ledger back: an existing directory's ledger must be a prefix
//! of the one being written.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Serialize;
use warden_files::Mode;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::inspect::{CertInfo, parse_one};
use crate::keystore;
use crate::ledger::{self, LedgerEntry};
use crate::pem::sha256_hex;
use crate::root::{CaDir, CaMetadata, LEDGER, METADATA, ROOT_CERT, ROOT_KEY};

/// Largest file taken into a backup: the CA directory holds PEM, JSON and a ledger of a few
/// hundred bytes per signature, so anything bigger is not CA material.
const FILE_LIMIT: u64 = 16 * 1024 * 1024;

/// Every file of a CA directory, by name, in memory (zeroized on drop: one of them is the
/// encrypted root key). `Debug` shows names and sizes only.
pub struct CaFiles {
    files: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for CaFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.files.iter().map(|(n, b)| (n, b.len())))
            .finish()
    }
}

/// Where the ledger stands: how many signatures it holds and which was the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LedgerTip {
    /// Number of entries (the root's self-signature is entry 1).
    pub entries: usize,
    /// SHA-256 of the last entry's line, as written (without its newline), lower-case hex.
    pub last_entry_sha256: String,
    /// Serial of the certificate the last entry records.
    pub last_serial: String,
    /// SHA-256 of the whole ledger file, lower-case hex.
    pub ledger_sha256: String,
}

impl LedgerTip {
    /// The tip of ledger text `bytes` (`path` names it in errors).
    pub fn of(path: &Path, bytes: &[u8]) -> Result<(Self, Vec<LedgerEntry>)> {
        let entries = ledger::parse(path, bytes)?;
        let last_line = bytes
            .split(|b| *b == b'\n')
            .rfind(|l| !l.iter().all(u8::is_ascii_whitespace))
            .unwrap_or_default();
        let Some(last) = entries.last() else {
            return Err(Error::CorruptCaFile {
                path: path.to_path_buf(),
                reason: "the ledger is empty; it always starts with the root's own signature"
                    .to_owned(),
            });
        };
        Ok((
            Self {
                entries: entries.len(),
                last_entry_sha256: sha256_hex(last_line),
                last_serial: last.serial.clone(),
                ledger_sha256: sha256_hex(bytes),
            },
            entries,
        ))
    }
}

/// What [`CaFiles::check`] found: a sound CA, which root, and where its ledger stands.
#[derive(Debug, Clone)]
pub struct CaSummary {
    /// `ca.json`.
    pub metadata: CaMetadata,
    /// The root certificate.
    pub root: CertInfo,
    /// The ledger's tip.
    pub tip: LedgerTip,
}

impl CaDir {
    /// Reads every regular file of the directory into memory, under the signing lock so no
    /// signature lands half-way through. Hidden files (an interrupted atomic write's temporary)
    /// are left out; a symlink or a subdirectory is refused, since the CA directory never holds
    /// one and a backup must not follow it.
    pub fn files(&self) -> Result<CaFiles> {
        let _lock = self.lock()?;
        let mut files = BTreeMap::new();
        let entries = std::fs::read_dir(&self.dir).map_err(Error::io("list", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(Error::io("list", &self.dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(Error::CorruptCaFile {
                    path,
                    reason: "its name is not UTF-8; a CA directory holds only Warden's files"
                        .to_owned(),
                });
            };
            if name.starts_with('.') {
                continue;
            }
            let bytes = warden_files::read_regular(&path, FILE_LIMIT).map_err(|e| {
                Error::CorruptCaFile {
                    path: path.clone(),
                    reason: format!("not a regular file of at most 16 MiB ({e})"),
                }
            })?;
            files.insert(name, bytes);
        }
        Ok(CaFiles { files })
    }
}

impl CaFiles {
    /// Files by name (as they come out of a backup). Names must be plain file names.
    pub fn from_files(files: impl IntoIterator<Item = (String, Zeroizing<Vec<u8>>)>) -> Self {
        Self {
            files: files.into_iter().collect(),
        }
    }

    /// Names and contents, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(n, b)| (n.as_str(), b.as_slice()))
    }

    /// One file's contents.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(|b| b.as_slice())
    }

    fn required(&self, origin: &Path, name: &'static str) -> Result<&[u8]> {
        self.get(name).ok_or_else(|| Error::NotACaDir {
            dir: origin.to_path_buf(),
            what: name,
        })
    }

    /// Checks that the files make a sound CA directory (see the module documentation);
    /// `origin` (the backup file, or the directory) names them in errors. Needs no passphrase.
    pub fn check(&self, origin: &Path) -> Result<CaSummary> {
        for name in self.files.keys() {
            if name.is_empty() || name.starts_with('.') || name.contains('/') || name == ".." {
                return Err(Error::CorruptCaFile {
                    path: origin.to_path_buf(),
                    reason: format!("it names a file {name:?}, which is not a plain file name"),
                });
            }
        }
        let corrupt = |name: &str, reason: String| Error::CorruptCaFile {
            path: origin.join(name),
            reason,
        };
        let meta: CaMetadata = serde_json::from_slice(self.required(origin, METADATA)?)
            .map_err(|e| corrupt(METADATA, e.to_string()))?;
        let root_pem = std::str::from_utf8(self.required(origin, ROOT_CERT)?)
            .map_err(|e| corrupt(ROOT_CERT, e.to_string()))?;
        let root = parse_one(root_pem).map_err(|e| corrupt(ROOT_CERT, e.to_string()))?;
        if root.info.sha256 != meta.root_sha256 {
            return Err(corrupt(
                ROOT_CERT,
                format!(
                    "its SHA-256 is {}, but {METADATA} records {}",
                    root.info.sha256, meta.root_sha256
                ),
            ));
        }
        let key = std::str::from_utf8(self.required(origin, ROOT_KEY)?)
            .map_err(|e| corrupt(ROOT_KEY, e.to_string()))?;
        if !key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(corrupt(
                ROOT_KEY,
                "it is not an encrypted PKCS#8 key; a CA directory never holds the key in clear"
                    .to_owned(),
            ));
        }
        let (tip, entries) = LedgerTip::of(&origin.join(LEDGER), self.required(origin, LEDGER)?)?;
        // The first line is a root's own signature; after a rollover (ADR 0030) the current
        // root's is a later line.
        let root_signed = entries
            .iter()
            .any(|e| e.profile == "root" && e.sha256 == meta.root_sha256);
        if entries[0].profile != "root" || !root_signed {
            return Err(corrupt(
                LEDGER,
                "its first entry is not the root's own signature".to_owned(),
            ));
        }
        Ok(CaSummary {
            metadata: meta,
            root: root.info,
            tip,
        })
    }

    /// Proves `passphrase` decrypts the root key and that the key is the root's.
    pub fn check_passphrase(&self, origin: &Path, passphrase: &SecretString) -> Result<()> {
        self.unlock(origin, passphrase).map(drop)
    }

    fn unlock(&self, origin: &Path, passphrase: &SecretString) -> Result<crate::GeneratedKey> {
        let path = origin.join(ROOT_KEY);
        let pem = Zeroizing::new(
            String::from_utf8(self.required(origin, ROOT_KEY)?.to_vec()).map_err(|e| {
                Error::CorruptCaFile {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?,
        );
        let key = keystore::open(&path, &pem, passphrase)?;
        let root =
            parse_one(std::str::from_utf8(self.required(origin, ROOT_CERT)?).unwrap_or_default())?;
        if key.public_key_der() != root.x509().public_key().raw {
            return Err(Error::CorruptCaFile {
                path,
                reason: format!("the key does not belong to {ROOT_CERT}"),
            });
        }
        Ok(key)
    }

    /// Re-encrypts the root key under `new` (after proving `old` opens it), in memory: a
    /// restore from passphrase shares hands the CA to whoever restores it under a passphrase of
    /// their own, and the recombined one never leaves memory.
    ///
    /// Every sealed key of the directory moves to the new passphrase, not only the root's: a
    /// root rollover's next root (`next-root.key.p8`) and the keys kept beside it
    /// (`retired-root-*`, `abandoned-next-root-*`) were sealed under the same passphrase, and
    /// one left behind would stay under a passphrase that now exists only as the shares —
    /// `promote` would then install a root key nobody can open. A key the old passphrase does
    /// not open is refused by name, before anything changes.
    pub fn reseal(&mut self, origin: &Path, old: &SecretString, new: &SecretString) -> Result<()> {
        let key = self.unlock(origin, old)?;
        let mut resealed = vec![(ROOT_KEY.to_owned(), keystore::seal(&key, new)?)];
        for (name, bytes) in &self.files {
            if name == ROOT_KEY || !name.ends_with(".key.p8") {
                continue;
            }
            let path = origin.join(name);
            let pem = std::str::from_utf8(bytes).map_err(|e| Error::CorruptCaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let key = keystore::open(&path, pem, old)?;
            resealed.push((name.clone(), keystore::seal(&key, new)?));
        }
        for (name, pem) in resealed {
            self.files
                .insert(name, Zeroizing::new(pem.as_bytes().to_vec()));
        }
        Ok(())
    }

    /// Refuses to replace `existing` with these files when that would lose history: a different
    /// root, or a ledger that is not `existing`'s ledger with (perhaps) more lines after it.
    pub fn check_no_rollback(&self, existing: &CaDir) -> Result<()> {
        let dir = existing.dir();
        let ours = self.required(dir, LEDGER)?;
        let theirs = crate::root::read_ca_file(&dir.join(LEDGER))
            .map_err(Error::io("read", dir.join(LEDGER)))?;
        let meta: CaMetadata =
            serde_json::from_slice(self.required(dir, METADATA)?).map_err(|e| {
                Error::CorruptCaFile {
                    path: dir.join(METADATA),
                    reason: e.to_string(),
                }
            })?;
        if meta.root_sha256 != existing.metadata().root_sha256 {
            return Err(Error::RestoreDifferentRoot {
                dir: dir.to_path_buf(),
                existing: existing.metadata().root_sha256.clone(),
                backup: meta.root_sha256,
            });
        }
        let (existing_tip, _) = LedgerTip::of(&dir.join(LEDGER), &theirs)?;
        let (backup_tip, _) = LedgerTip::of(&dir.join(LEDGER), ours)?;
        // Whole lines: "…B" must not pass as a prefix of "…BX".
        let mut prefix = theirs.trim_ascii_end().to_vec();
        prefix.push(b'\n');
        let continues =
            ours.starts_with(&prefix) || ours.trim_ascii_end() == &prefix[..prefix.len() - 1];
        if !continues || backup_tip.entries < existing_tip.entries {
            return Err(Error::RestoreWouldRollBack {
                dir: dir.to_path_buf(),
                existing_entries: existing_tip.entries,
                backup_entries: backup_tip.entries,
            });
        }
        Ok(())
    }

    /// Writes the files as the CA directory `dir`, all or nothing: into a fresh owner-only
    /// directory beside it, then one `rename` into place. `dir` must be missing or empty unless
    /// `replace` is set; then the old directory is swapped out and removed only once the new one
    /// is in place. Check first ([`CaFiles::check`], [`CaFiles::check_no_rollback`]).
    pub fn write_to(&self, dir: &Path, replace: bool) -> Result<()> {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name =
            dir.file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::CorruptCaFile {
                    path: dir.to_path_buf(),
                    reason: "not a directory name".to_owned(),
                })?;
        // A symlink at --dir: the rename below would put the CA where the link is and leave
        // (or, with `replace`, unlink) the link, so a dangling one failed half-way with "Not a
        // directory". Refused up front, nothing written.
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Write(warden_files::Error::Symlink {
                path: dir.to_path_buf(),
            }));
        }
        let occupied = match std::fs::read_dir(dir) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io("list", dir)(e)),
        };
        if occupied && !replace {
            return Err(Error::DirNotEmpty {
                dir: dir.to_path_buf(),
            });
        }
        let unique = format!(
            "{}-{}",
            std::process::id(),
            hex::encode(crate::params::random_bytes::<6>()?)
        );
        let staging = parent.join(format!(".{name}.restore-{unique}"));
        let result = (|| {
            warden_files::ensure_private_dir(&staging)?;
            for (file, bytes) in &self.files {
                let mode = match file.as_str() {
                    ROOT_CERT | LEDGER | METADATA => Mode::Public,
                    _ => Mode::OwnerOnly,
                };
                warden_files::write_atomic(&staging.join(file), bytes, mode)?;
            }
            if occupied {
                let old = parent.join(format!(".{name}.replaced-{unique}"));
                std::fs::rename(dir, &old).map_err(Error::io("move aside", dir))?;
                if let Err(e) = std::fs::rename(&staging, dir) {
                    let _ = std::fs::rename(&old, dir);
                    return Err(Error::io("rename into place", dir)(e));
                }
                std::fs::remove_dir_all(&old).map_err(Error::io("remove", &old))?;
            } else {
                // rename(2) replaces an empty directory, and fails if one appeared meanwhile.
                std::fs::rename(&staging, dir).map_err(Error::io("rename into place", dir))?;
            }
            File::open(&parent)
                .and_then(|d| d.sync_all())
                .map_err(Error::io("sync", &parent))
        })();
        if result.is_err() && staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::tests::{NOW, new_ca, pass};
    use crate::{IntermediateRequest, RootOptions};
    use std::os::unix::fs::PermissionsExt;

    fn csr() -> String {
        let key = crate::generate_key(crate::KeyAlgorithm::EcdsaP256).unwrap();
        crate::make_csr(&key, "Test Intermediate", &[], &[]).unwrap()
    }

    fn sign(ca: &CaDir) {
        let req = IntermediateRequest {
            environment: "test".to_owned(),
            profile: "vault-pki".to_owned(),
            validity: time::Duration::days(30),
            path_len: 0,
            permitted_dns: vec!["test.warden.internal".to_owned()],
            unconstrained_because: None,
        };
        ca.sign_intermediate(&csr(), &req, &pass(), NOW).unwrap();
    }

    /// `ca restore --dir LINK`: a dangling symlink failed at the last rename ("Not a
    /// directory"), one to a CA directory was swapped for a real directory with `--force`.
    #[test]
    fn a_symlink_at_the_restore_directory_is_refused_and_left_alone() {
        let (tmp, ca) = new_ca(&RootOptions::default());
        let files = ca.files().unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), &link).unwrap();
        let e = files.write_to(&link, false).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(ca.dir(), &link).unwrap();
        let e = files.write_to(&link, true).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!tmp.path().join("elsewhere").exists());
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".restore-")), "{names:?}");
    }

    #[test]
    fn files_round_trip_into_a_new_directory_and_keep_modes() {
        let (tmp, ca) = new_ca(&RootOptions::default());
        sign(&ca);
        let files = ca.files().unwrap();
        assert!(!format!("{files:?}").contains("BEGIN"));
        let summary = files.check(ca.dir()).unwrap();
        assert_eq!(summary.tip.entries, 2);
        assert_eq!(summary.root.sha256, ca.metadata().root_sha256);
        files.check_passphrase(ca.dir(), &pass()).unwrap();
        let err = files
            .check_passphrase(ca.dir(), &SecretString::from("nope"))
            .unwrap_err();
        assert!(matches!(err, Error::WrongPassphrase { .. }), "{err}");

        let to = tmp.path().join("restored");
        files.write_to(&to, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&to), 0o700);
        assert_eq!(mode(&to.join(ROOT_KEY)), 0o600);
        assert_eq!(mode(&to.join(LEDGER)), 0o644);
        let again = CaDir::open(&to).unwrap();
        assert_eq!(again.ledger().unwrap(), ca.ledger().unwrap());
        // Nothing left beside it.
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A second write without `replace` is refused.
        let err = files.write_to(&to, false).unwrap_err();
        assert!(matches!(err, Error::DirNotEmpty { .. }), "{err}");
    }

    #[test]
    fn an_older_ledger_or_another_root_is_refused() {
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let old = ca.files().unwrap();
        sign(&ca);
        let err = old.check_no_rollback(&ca).unwrap_err();
        assert!(
            matches!(
                err,
                Error::RestoreWouldRollBack {
                    existing_entries: 2,
                    backup_entries: 1,
                    ..
                }
            ),
            "{err}"
        );
        ca.files().unwrap().check_no_rollback(&ca).unwrap();
        // A backup whose ledger has the same number of lines but an edited last one (and one
        // more after it) is no continuation either.
        let ledger = std::fs::read_to_string(ca.dir().join(LEDGER)).unwrap();
        let last = ledger.lines().last().unwrap();
        let edited = format!(
            "{}{}\n{last}\n",
            &ledger[..ledger.len() - last.len() - 1],
            last.replace("\"test\"", "\"prod\"")
        );
        let files: Vec<_> = ca
            .files()
            .unwrap()
            .iter()
            .map(|(n, b)| {
                let b = if n == LEDGER { edited.as_bytes() } else { b };
                (n.to_owned(), Zeroizing::new(b.to_vec()))
            })
            .collect();
        let err = CaFiles::from_files(files)
            .check_no_rollback(&ca)
            .unwrap_err();
        assert!(matches!(err, Error::RestoreWouldRollBack { .. }), "{err}");
        let (_t2, other) = new_ca(&RootOptions::default());
        let err = other.files().unwrap().check_no_rollback(&ca).unwrap_err();
        assert!(matches!(err, Error::RestoreDifferentRoot { .. }), "{err}");
    }

    #[test]
    fn reseal_changes_the_passphrase_in_memory() {
        let (tmp, ca) = new_ca(&RootOptions::default());
        let mut files = ca.files().unwrap();
        let new = SecretString::from("a new passphrase");
        files.reseal(ca.dir(), &pass(), &new).unwrap();
        files.check_passphrase(ca.dir(), &new).unwrap();
        let to = tmp.path().join("re");
        files.write_to(&to, false).unwrap();

        let reopened = CaDir::open(&to).unwrap();
        assert!(reopened.unlock(&new).is_ok());
        assert!(reopened.unlock(&pass()).is_err());
    }

    #[test]
    fn reseal_moves_a_rollovers_next_root_key_too() {
        // A backup taken mid-rollover and restored under a new passphrase: the next root's key
        // must follow, or promote would install a root key sealed under a passphrase that only
        // the shares still make.
        let (tmp, ca) = new_ca(&RootOptions::default());
        let opts = RootOptions {
            common_name: "Warden Offline Root CA 2".to_owned(),
            path_len: 2,
            ..RootOptions::default()
        };
        ca.begin_rollover(&opts, &pass(), NOW).unwrap();
        let mut files = ca.files().unwrap();
        let new = SecretString::from("a new passphrase");
        files.reseal(ca.dir(), &pass(), &new).unwrap();
        let to = tmp.path().join("re");
        files.write_to(&to, false).unwrap();
        let pem = std::fs::read_to_string(to.join(crate::NEXT_ROOT_KEY)).unwrap();
        let path = to.join(crate::NEXT_ROOT_KEY);
        assert!(keystore::open(&path, &pem, &new).is_ok());
        assert!(keystore::open(&path, &pem, &pass()).is_err());
        // A sealed key the old passphrase does not open is refused by name, nothing changed.
        let mut bad = ca.files().unwrap();
        let other = keystore::seal(
            &crate::generate_key(crate::KeyAlgorithm::EcdsaP256).unwrap(),
            &SecretString::from("someone else's"),
        )
        .unwrap();
        bad.files.insert(
            "abandoned-next-root-1.key.p8".to_owned(),
            Zeroizing::new(other.as_bytes().to_vec()),
        );
        let before: Vec<Vec<u8>> = bad.iter().map(|(_, b)| b.to_vec()).collect();
        let e = bad.reseal(ca.dir(), &pass(), &new).unwrap_err();
        assert!(
            e.to_string().contains("abandoned-next-root-1.key.p8"),
            "{e}"
        );
        let after: Vec<Vec<u8>> = bad.iter().map(|(_, b)| b.to_vec()).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_key_in_clear_or_a_ledger_without_the_root_is_refused() {
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let good = ca.files().unwrap();
        let with = |name: &str, bytes: &[u8]| {
            let mut files: Vec<_> = good
                .iter()
                .map(|(n, b)| (n.to_owned(), Zeroizing::new(b.to_vec())))
                .collect();
            for f in &mut files {
                if f.0 == name {
                    f.1 = Zeroizing::new(bytes.to_vec());
                }
            }
            CaFiles::from_files(files)
        };
        let clear = crate::generate_key(crate::KeyAlgorithm::EcdsaP256)
            .unwrap()
            .private_key_pem();
        let err = with(ROOT_KEY, clear.as_bytes())
            .check(ca.dir())
            .unwrap_err();
        assert!(err.to_string().contains("in clear"), "{err}");
        let err = with(LEDGER, b"").check(ca.dir()).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
