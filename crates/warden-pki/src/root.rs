//! The offline root CA directory: creating it ([`CaDir::init`]) and opening it
//! ([`CaDir::open`]).
//!
//! Layout (the directory is 0700; no OpenBao ever reads it):
//!
//! | file           | mode | what                                                          |
//! |----------------|------|---------------------------------------------------------------|
//! | `root.crt`     | 0644 | the self-signed root certificate (PEM)                        |
//! | `root.key.p8`  | 0600 | the root key, PKCS#8 encrypted under the passphrase (PEM)     |
//! | `ledger.jsonl` | 0644 | one line per signature, see [`crate::LedgerEntry`]            |
//! | `ca.json`      | 0644 | metadata; written last, so its presence means "init finished" |

use std::fs::File;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyUsagePurpose};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use warden_files::Mode;

use crate::error::{Error, Result};
use crate::inspect::{CertInfo, Parsed, parse_one};
use crate::keys::{GeneratedKey, KeyAlgorithm, generate_key};
use crate::ledger::{self, LedgerEntry};
use crate::{keystore, params};

/// The root certificate.
pub const ROOT_CERT: &str = "root.crt";
/// The encrypted root key.
pub const ROOT_KEY: &str = "root.key.p8";
/// The issuance ledger.
pub const LEDGER: &str = "ledger.jsonl";
/// The CA metadata.
pub const METADATA: &str = "ca.json";

/// How to make a new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootOptions {
    /// The root's subject common name.
    pub common_name: String,
    /// Key algorithm of the root key.
    pub algorithm: KeyAlgorithm,
    /// Lifetime from `now`.
    pub validity: Duration,
    /// pathLenConstraint: how many CA levels may sit below the root. 1 allows an intermediate
    /// (OpenBao's PKI mount) that issues leaves but no further CAs.
    pub path_len: u8,
}

impl Default for RootOptions {
    fn default() -> Self {
        Self {
            common_name: "Warden Offline Root CA".to_owned(),
            algorithm: KeyAlgorithm::EcdsaP256,
            validity: Duration::days(3650),
            path_len: 1,
        }
    }
}

/// `ca.json`: what the CA is, and the fingerprint of its root so a swapped `root.crt` is noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaMetadata {
    /// Layout version of the directory.
    pub format: u32,
    /// The root's common name.
    pub common_name: String,
    /// The root key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// The root's pathLenConstraint.
    pub path_len: u8,
    /// When `init` ran.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The root's serial, lower-case hex.
    pub root_serial: String,
    /// SHA-256 of the root's DER, lower-case hex.
    pub root_sha256: String,
}

/// An opened offline root CA directory.
#[derive(Debug)]
pub struct CaDir {
    pub(crate) dir: PathBuf,
    pub(crate) meta: CaMetadata,
    pub(crate) root: Parsed,
    pub(crate) root_pem: String,
}

impl CaDir {
    /// Creates a new root in `dir` (created 0700 if missing; it must be empty if it exists) and
    /// returns it opened.
    ///
    /// The key never exists on disk unencrypted. If a write fails half-way the directory may
    /// hold some files but no `ca.json`, and `open` refuses it; delete it and start again.
    pub fn init(
        dir: &Path,
        opts: &RootOptions,
        passphrase: &SecretString,
        now: OffsetDateTime,
    ) -> Result<Self> {
        check_empty(dir)?;
        let dn = params::common_name_dn(&opts.common_name)?;
        let (not_before, not_after) = params::window(now, opts.validity)?;
        if secrecy::ExposeSecret::expose_secret(passphrase).is_empty() {
            return Err(Error::EmptyPassphrase);
        }

        let (key, root_pem, root) =
            self_signed_root(dn, opts, (not_before, not_after), "self-sign the root")?;
        debug_assert!(root.info.self_signed);
        let sealed = keystore::seal(&key, passphrase)?;

        let meta = CaMetadata {
            format: 1,
            common_name: opts.common_name.clone(),
            algorithm: opts.algorithm,
            path_len: opts.path_len,
            created_at: now,
            root_serial: root.info.serial.clone(),
            root_sha256: root.info.sha256.clone(),
        };
        let entry = LedgerEntry {
            serial: root.info.serial.clone(),
            subject: root.info.subject.clone(),
            environment: "offline".to_owned(),
            profile: "root".to_owned(),
            not_before,
            not_after,
            sha256: root.info.sha256.clone(),
            signed_at: now,
            path_len: Some(opts.path_len),
            permitted_dns: Vec::new(),
            unconstrained_because: None,
            signed_by: None,
        };

        warden_files::ensure_private_dir(dir)?;
        warden_files::write_atomic(&dir.join(ROOT_KEY), sealed.as_bytes(), Mode::OwnerOnly)?;
        warden_files::write_atomic(&dir.join(ROOT_CERT), root_pem.as_bytes(), Mode::Public)?;
        warden_files::write_atomic(&dir.join(LEDGER), b"", Mode::Public)?;
        ledger::append(&dir.join(LEDGER), &entry)?;
        let meta_json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::CorruptCaFile {
            path: dir.join(METADATA),
            reason: e.to_string(),
        })?;
        warden_files::write_atomic(&dir.join(METADATA), &meta_json, Mode::Public)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            meta,
            root,
            root_pem,
        })
    }

    /// Checks that [`CaDir::init`] would accept `dir` (missing or empty), so a caller can refuse
    /// before asking anyone to type a new passphrase twice.
    pub fn check_can_init(dir: &Path) -> Result<()> {
        check_empty(dir)
    }

    /// Opens an existing CA directory and checks that `root.crt` is the root `ca.json` recorded.
    /// Needs no passphrase: inspecting the CA never touches the key.
    pub fn open(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(METADATA);
        let meta_text = read_required(dir, METADATA)?;
        let meta: CaMetadata =
            serde_json::from_str(&meta_text).map_err(|e| Error::CorruptCaFile {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?;
        let root_path = dir.join(ROOT_CERT);
        let root_pem = read_required(dir, ROOT_CERT)?;
        let root = parse_one(&root_pem).map_err(|e| Error::CorruptCaFile {
            path: root_path.clone(),
            reason: e.to_string(),
        })?;
        if root.info.sha256 != meta.root_sha256 {
            return Err(Error::CorruptCaFile {
                path: root_path,
                reason: format!(
                    "its SHA-256 is {}, but {METADATA} records {}",
                    root.info.sha256, meta.root_sha256
                ),
            });
        }
        if !root.info.self_signed || !root.can_sign_certs {
            return Err(Error::CorruptCaFile {
                path: root_path,
                reason: "it is not a self-signed CA certificate".to_owned(),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            meta,
            root,
            root_pem,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root certificate, PEM: what relying parties (and OpenBao's CA bundle) trust.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The root's facts.
    pub fn root_info(&self) -> CertInfo {
        self.root.info.clone()
    }

    /// The contents of `ca.json`.
    pub fn metadata(&self) -> &CaMetadata {
        &self.meta
    }

    /// Every signature recorded so far, oldest first (the root's own first).
    pub fn ledger(&self) -> Result<Vec<LedgerEntry>> {
        let path = self.dir.join(LEDGER);
        if !path.exists() {
            return Err(Error::NotACaDir {
                dir: self.dir.clone(),
                what: LEDGER,
            });
        }
        ledger::read(&path)
    }

    /// Decrypts the root key and checks it belongs to `root.crt`.
    pub(crate) fn unlock(&self, passphrase: &SecretString) -> Result<GeneratedKey> {
        self.unlock_as(ROOT_KEY, &self.root, passphrase)
    }

    /// Decrypts the key in `key_file` and checks it belongs to `cert` (the root, or the next
    /// root of a rollover).
    pub(crate) fn unlock_as(
        &self,
        key_file: &'static str,
        cert: &Parsed,
        passphrase: &SecretString,
    ) -> Result<GeneratedKey> {
        let path = self.dir.join(key_file);
        let pem = zeroize::Zeroizing::new(read_required(&self.dir, key_file)?);
        let key = keystore::open(&path, &pem, passphrase)?;
        if key.public_key_der() != cert.x509().public_key().raw {
            return Err(Error::CorruptCaFile {
                path,
                reason: format!("the key does not belong to {}", cert.info.subject),
            });
        }
        Ok(key)
    }

    /// An exclusive lock on the directory for the duration of a signature, so two signings never
    /// interleave their checks and ledger lines. `flock` on the directory itself: no lock file,
    /// so a refused request really leaves the directory as it was.
    pub(crate) fn lock(&self) -> Result<nix::fcntl::Flock<File>> {
        lock_dir(&self.dir)
    }
}

/// A new key and its self-signed root certificate (`opts`' algorithm and path length, CA key
/// usages only): a CA directory's first root, and a rollover's next root.
pub(crate) fn self_signed_root(
    dn: rcgen::DistinguishedName,
    opts: &RootOptions,
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
    what: &'static str,
) -> Result<(GeneratedKey, String, Parsed)> {
    let key = generate_key(opts.algorithm)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.serial_number = Some(params::random_serial()?);
    p.not_before = not_before;
    p.not_after = not_after;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(opts.path_len));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key.inner).map_err(Error::rcgen(what))?;
    let pem = cert.pem();
    let parsed = crate::inspect::parse_der(cert.der())?;
    Ok((key, pem, parsed))
}

fn check_empty(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list", dir)(e)),
    };
    // The root key's directory must be this user's (or root's) and writable by no one else:
    // whoever owns it could swap the root certificate or cut the ledger (a directory made
    // beforehand in a shared place is the usual way).
    warden_files::Dir::open_root(dir, warden_files::Trusted::process())?;
    let names: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    if names
        .iter()
        .any(|n| [METADATA, ROOT_CERT, ROOT_KEY].iter().any(|m| n == *m))
    {
        return Err(Error::AlreadyInitialized {
            dir: dir.to_path_buf(),
        });
    }
    if !names.is_empty() {
        return Err(Error::DirNotEmpty {
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// [`CaDir::lock`] for a directory that may not open as a CA right now (a promote under way).
pub(crate) fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<File>> {
    let f = File::open(dir).map_err(Error::io("open", dir))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| {
        Error::Io {
            path: dir.to_path_buf(),
            step: "lock",
            source: errno.into(),
        }
    })
}

/// The most a CA directory's file may hold (a ledger of many thousand signatures fits).
pub(crate) const CA_FILE_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads a file of the CA directory: a regular file of at most [`CA_FILE_LIMIT`] bytes, opened
/// without blocking, so a FIFO at the name fails at once instead of hanging every command and
/// a symlink to `/dev/zero` is refused instead of read until memory runs out. A missing file
/// is `NotFound`, as for `std::fs::read`.
pub(crate) fn read_ca_file(path: &Path) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    warden_files::read_regular(path, CA_FILE_LIMIT)
}

pub(crate) fn read_required(dir: &Path, name: &'static str) -> Result<String> {
    let path = dir.join(name);
    let text = read_ca_file(&path).and_then(|b| {
        std::str::from_utf8(&b)
            .map(str::to_owned)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    });
    match text {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotACaDir {
            dir: dir.to_path_buf(),
            what: name,
        }),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use time::macros::datetime;

    pub(crate) const NOW: OffsetDateTime = datetime!(2030-01-01 12:00 UTC);

    pub(crate) fn pass() -> SecretString {
        SecretString::from("root passphrase")
    }

    pub(crate) fn new_ca(opts: &RootOptions) -> (tempfile::TempDir, CaDir) {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CaDir::init(&tmp.path().join("ca"), opts, &pass(), NOW).unwrap();
        (tmp, ca)
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_writes_the_layout_with_the_right_modes() {
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let d = ca.dir();
        assert_eq!(mode(d), 0o700);
        assert_eq!(mode(&d.join(ROOT_KEY)), 0o600);
        assert_eq!(mode(&d.join(ROOT_CERT)), 0o644);
        assert_eq!(mode(&d.join(LEDGER)), 0o644);
        assert_eq!(mode(&d.join(METADATA)), 0o644);
        let key = std::fs::read_to_string(d.join(ROOT_KEY)).unwrap();
        assert!(
            key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{key}"
        );
        assert!(!key.contains("BEGIN PRIVATE KEY"));
        let names: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    fn root_is_a_policy_built_ca() {
        let opts = RootOptions {
            common_name: "Test Root".to_owned(),
            algorithm: KeyAlgorithm::EcdsaP384,
            validity: Duration::days(100),
            path_len: 2,
        };
        let (_tmp, ca) = new_ca(&opts);
        let info = ca.root_info();
        assert_eq!(info.subject, "CN=Test Root");
        assert_eq!(info.issuer, info.subject);
        assert!(info.self_signed && info.is_ca);
        assert_eq!(info.path_len, Some(2));
        assert_eq!(info.key_algorithm, "ECDSA P-384");
        assert_eq!(info.not_before, NOW - params::BACKDATE);
        assert_eq!(info.not_after, NOW + Duration::days(100));
        assert_eq!(info.serial.len(), 32, "16-byte serial: {}", info.serial);
        let x = ca.root.x509();
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
        assert!(x.basic_constraints().unwrap().unwrap().critical);
        assert!(
            x.iter_extensions().any(|e| matches!(
                e.parsed_extension(),
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(_)
            )),
            "no SKI"
        );
        // Reopening finds the same root and metadata.
        let again = CaDir::open(ca.dir()).unwrap();
        assert_eq!(again.root_info(), info);
        assert_eq!(again.metadata(), ca.metadata());
        assert_eq!(again.metadata().algorithm, KeyAlgorithm::EcdsaP384);
    }

    #[test]
    fn key_decrypts_only_with_the_right_passphrase() {
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let key = ca.unlock(&pass()).unwrap();
        assert_eq!(key.public_key_der(), ca.root.x509().public_key().raw);
        let err = ca.unlock(&SecretString::from("not it")).unwrap_err();
        assert!(matches!(err, Error::WrongPassphrase { .. }), "{err}");
    }

    #[test]
    fn the_ledger_starts_with_the_root() {
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let ledger = ca.ledger().unwrap();
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger[0].profile, "root");
        assert_eq!(ledger[0].sha256, ca.root_info().sha256);
        assert_eq!(ledger[0].serial, ca.root_info().serial);
    }

    #[test]
    fn init_refuses_existing_or_non_empty_directories() {
        let (tmp, ca) = new_ca(&RootOptions::default());
        let before = std::fs::read(ca.dir().join(ROOT_CERT)).unwrap();
        let err = CaDir::init(ca.dir(), &RootOptions::default(), &pass(), NOW).unwrap_err();
        assert!(matches!(err, Error::AlreadyInitialized { .. }), "{err}");
        assert_eq!(std::fs::read(ca.dir().join(ROOT_CERT)).unwrap(), before);

        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("notes.txt"), b"x").unwrap();
        let err = CaDir::init(&other, &RootOptions::default(), &pass(), NOW).unwrap_err();
        assert!(matches!(err, Error::DirNotEmpty { .. }), "{err}");

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        CaDir::init(&empty, &RootOptions::default(), &pass(), NOW).unwrap();

        let err = CaDir::init(
            &tmp.path().join("nopass"),
            &RootOptions::default(),
            &SecretString::from(""),
            NOW,
        )
        .unwrap_err();
        assert!(matches!(err, Error::EmptyPassphrase), "{err}");
        assert!(!tmp.path().join("nopass").exists());
    }

    /// A FIFO at a CA file hung `ca show` (and every step) for ever; a symlink to /dev/zero
    /// read until memory ran out. Each now fails at once, naming the file.
    #[test]
    fn a_fifo_or_device_in_the_ca_directory_fails_at_once() {
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let d = ca.dir().to_path_buf();
        let fifo = |p: &Path| {
            std::fs::remove_file(p).unwrap();
            nix::unistd::mkfifo(
                p,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            )
            .unwrap();
        };
        fifo(&d.join(LEDGER));
        let e = ca.ledger().unwrap_err();
        assert!(e.to_string().contains(LEDGER), "{e}");
        assert!(matches!(e, Error::Io { .. }), "{e}");
        for name in [ROOT_CERT, METADATA] {
            let (_tmp, ca) = new_ca(&RootOptions::default());
            let d = ca.dir().to_path_buf();
            fifo(&d.join(name));
            let e = CaDir::open(&d).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
            std::fs::remove_file(d.join(name)).unwrap();
            std::os::unix::fs::symlink("/dev/zero", d.join(name)).unwrap();
            let e = CaDir::open(&d).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
        let (_tmp, ca) = new_ca(&RootOptions::default());
        fifo(&ca.dir().join(ROOT_KEY));
        assert!(ca.unlock(&pass()).is_err());
    }

    /// `ca init --dir D` where D was made beforehand by another user (or is writable by
    /// others): the root key's directory stayed theirs, free to swap the root certificate or
    /// cut the ledger. Refused before anything is written.
    #[test]
    fn init_refuses_a_directory_someone_else_owns_or_can_write() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = CaDir::init(&open, &RootOptions::default(), &pass(), NOW).unwrap_err();
        assert!(e.to_string().contains("writable by other users"), "{e}");
        assert!(CaDir::check_can_init(&open).is_err());
        assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
        if nix::unistd::geteuid().is_root() {
            let theirs = tmp.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let e = CaDir::init(&theirs, &RootOptions::default(), &pass(), NOW).unwrap_err();
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
            assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
        }
        // A new directory, and an empty one of this user's, are fine.
        CaDir::init(
            &tmp.path().join("new"),
            &RootOptions::default(),
            &pass(),
            NOW,
        )
        .unwrap();
    }

    #[test]
    fn open_refuses_non_ca_and_swapped_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let err = CaDir::open(tmp.path()).unwrap_err();
        assert!(
            matches!(err, Error::NotACaDir { what: METADATA, .. }),
            "{err}"
        );

        let (_t1, a) = new_ca(&RootOptions::default());
        let (_t2, b) = new_ca(&RootOptions::default());
        std::fs::copy(b.dir().join(ROOT_CERT), a.dir().join(ROOT_CERT)).unwrap();
        let err = CaDir::open(a.dir()).unwrap_err();
        assert!(matches!(err, Error::CorruptCaFile { .. }), "{err}");
        assert!(err.to_string().contains("SHA-256"), "{err}");
    }

    /// The emergency path: `openssl pkey` opens the key with the passphrase (given in a file,
    /// never argv). Skipped where no `openssl` binary exists; CI machines have one.
    #[test]
    #[allow(
        clippy::print_stderr,
        reason = "tell why the interop check was skipped"
    )]
    fn openssl_can_open_the_root_key() {
        let (tmp, ca) = new_ca(&RootOptions::default());
        let pass_file = tmp.path().join("pass");
        std::fs::write(&pass_file, "root passphrase\n").unwrap();
        let run = |pass: &Path| {
            std::process::Command::new("openssl")
                .args(["pkey", "-pubout", "-outform", "DER", "-in"])
                .arg(ca.dir().join(ROOT_KEY))
                .arg("-passin")
                .arg(format!("file:{}", pass.display()))
                .output()
        };
        let out = match run(&pass_file) {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("openssl not installed; interop check skipped");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, ca.root.x509().public_key().raw);
        let wrong = tmp.path().join("wrong");
        std::fs::write(&wrong, "nope\n").unwrap();
        assert!(!run(&wrong).unwrap().status.success());
    }

    #[test]
    fn rsa_root_works() {
        let (_tmp, ca) = new_ca(&RootOptions {
            algorithm: KeyAlgorithm::Rsa3072,
            ..RootOptions::default()
        });
        assert_eq!(ca.root_info().key_algorithm, "RSA 3072");
        ca.unlock(&pass()).unwrap();
    }
}
