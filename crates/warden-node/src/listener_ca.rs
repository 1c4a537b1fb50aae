//! Installing a listener CA re-signed by a new root (`warden server tls --install-listener-ca`,
//! and the lab's `ca rollover-root finish --listener-ca`; ADR 0030).
//!
//! A root rollover re-signs the environment's listener CA under the next root for the **same
//! key** (`ca rollover-root resign --profile listener-ca`). Every certificate the listener CA
//! issued (the nodes' server and join certificates, the ceremony's clients) names its issuer by
//! subject and key, so it verifies under the re-signed certificate as under the old one:
//! nothing is re-issued. What changes is the chain the node *serves* and the CA files beside it:
//!
//! | file | change |
//! |---|---|
//! | `server.crt` | the listener CA after the leaf is the re-signed one: the served chain ends in the new root |
//! | `node.crt` | the same, when it carries the listener CA |
//! | `client-ca.pem` | the listener CA block is swapped; identity CAs stay |
//! | `listener-ca.crt` | replaced (a `warden server tls --out` directory, the lab's `tls/`) |
//! | `ca.pem` | the new root appended when the file given carries it (the old root stays until the trust files move) |
//!
//! Everything is checked before anything is written ([`plan`]), for every directory, so a refusal
//! changes nothing: the file must be PEM, its first certificate a CA valid now, for the same
//! public key as the directory's current listener CA, and the node's server certificate must
//! verify under it (and it under the root the file carries, if any). Each file is then replaced
//! by [`warden_files::write_atomic`] (never through a symlink), keeping owner-only files
//! owner-only; `server.crt` is written last, so the served chain changes only once every CA
//! file beside it trusts the new certificate. Re-running with the same file changes nothing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use warden_files::Mode;
use warden_pki::CertInfo;

/// The files of a node TLS directory that may hold the listener CA, in the order they are
/// written (`server.crt` last: what the listener serves moves only after the CA files).
const CA_FILES: [&str; 4] = ["listener-ca.crt", "client-ca.pem", "node.crt", "server.crt"];
/// The file of root certificates beside them.
const ROOTS_FILE: &str = "ca.pem";
/// The most a certificate file may hold.
const LIMIT: u64 = 1024 * 1024;

/// Why a listener CA is not installed. Nothing was written when one of these is returned by
/// [`plan`]; [`Plan::apply`] returns only [`ListenerCaError::Files`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenerCaError {
    /// The certificate given holds no PEM certificate, or one that does not parse.
    #[error("{path} is not a PEM certificate: {reason}")]
    NotPem {
        /// The file given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Its first certificate is not a CA (BasicConstraints CA:false or absent).
    #[error("{subject} is not a CA certificate (a listener CA needs CA:true)")]
    NotACa {
        /// The certificate's subject.
        subject: String,
    },
    /// It is not valid yet at `now`.
    #[error("{subject} is not valid before {not_before}")]
    NotYetValid {
        /// The certificate's subject.
        subject: String,
        /// Its start of validity.
        not_before: OffsetDateTime,
    },
    /// It expired before `now`.
    #[error("{subject} expired at {not_after}")]
    Expired {
        /// The certificate's subject.
        subject: String,
        /// Its end of validity.
        not_after: OffsetDateTime,
    },
    /// It certifies another key than the directory's current listener CA: the node's
    /// certificates would not verify under it.
    #[error(
        "{given} certifies another key than the current listener CA {current} in {dir} (key sha256 {given_key} ≠ {current_key})"
    )]
    DifferentKey {
        /// The directory.
        dir: PathBuf,
        /// The certificate given (subject).
        given: String,
        /// The current listener CA (subject).
        current: String,
        /// SHA-256 of the given certificate's SubjectPublicKeyInfo.
        given_key: String,
        /// SHA-256 of the current one's.
        current_key: String,
    },
    /// The directory has no listener CA to replace (neither `listener-ca.crt` nor a
    /// `server.crt` carrying one).
    #[error(
        "{dir} holds no listener CA (no listener-ca.crt, no server.crt with a CA after the leaf)"
    )]
    NoCurrent {
        /// The directory.
        dir: PathBuf,
    },
    /// The node's server certificate does not verify under the certificate given.
    #[error("{dir}/server.crt does not verify under {given}: {problems}")]
    ServerDoesNotVerify {
        /// The directory.
        dir: PathBuf,
        /// The certificate given (subject).
        given: String,
        /// What the chain check found.
        problems: String,
    },
    /// The file carries root certificates, and the certificate given chains to none of them.
    #[error("{given} does not chain to the root(s) the file carries: {problems}")]
    RootMismatch {
        /// The certificate given (subject).
        given: String,
        /// What the chain check found.
        problems: String,
    },
    /// A file of the directory could not be read, is not a regular file (a symlink is
    /// refused), or does not parse.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Writing a file failed (that file is intact; files before it are replaced).
    #[error(transparent)]
    Files(#[from] warden_files::Error),
}

/// What installing the listener CA does (did) to one directory.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerCaInstall {
    /// The directory.
    pub dir: PathBuf,
    /// The listener CA installed.
    pub listener_ca: CertInfo,
    /// The files replaced (names within `dir`); empty when all were already so.
    pub replaced: Vec<String>,
    /// Whether the root the file carries was added to `ca.pem`.
    pub root_added: bool,
}

/// Every write of one directory, checked and computed, not yet done.
#[derive(Debug)]
pub struct Plan {
    report: ListenerCaInstall,
    writes: Vec<(PathBuf, String, Mode)>,
}

impl Plan {
    /// What [`Plan::apply`] will do.
    pub fn report(&self) -> &ListenerCaInstall {
        &self.report
    }

    /// Writes the files, each atomically, `server.crt` last.
    pub fn apply(self) -> Result<ListenerCaInstall, ListenerCaError> {
        for (path, text, mode) in &self.writes {
            warden_files::write_atomic(path, text.as_bytes(), *mode)?;
        }
        Ok(self.report)
    }
}

/// The text of `path` if it exists: a regular file (a symlink is refused, not followed) of at
/// most [`LIMIT`] bytes, with its mode.
fn read_optional(path: &Path) -> Result<Option<(String, Mode)>, ListenerCaError> {
    let err = |reason: String| ListenerCaError::Read {
        path: path.to_owned(),
        reason,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    if !meta.file_type().is_file() {
        return Err(err(
            "not a regular file (a symbolic link is not followed: give the real directory)"
                .to_owned(),
        ));
    }
    let bytes = warden_files::read_regular(path, LIMIT).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| err("not UTF-8 text".to_owned()))?;
    // Owner-only where it was: a file nobody else could read stays so.
    let mode = if meta.permissions().mode() & 0o077 == 0 {
        Mode::OwnerOnly
    } else {
        Mode::Public
    };
    Ok(Some((text, mode)))
}

/// `text` with every certificate block certifying key `key_sha256` replaced by `new_block`;
/// other blocks (a leaf, identity CAs) kept byte for byte.
fn swap_blocks(text: &str, key_sha256: &str, new_block: &str) -> String {
    let mut out = String::new();
    for block in warden_pki::pem_blocks(text) {
        let same_key = warden_pki::public_key_sha256(block).as_deref() == Some(key_sha256);
        let b = if same_key { new_block } else { block };
        out.push_str(b.trim_end());
        out.push('\n');
    }
    out
}

/// The listener CA the file given holds: its first certificate (PEM block and facts) and the
/// self-signed roots after it. Checked: PEM, a CA, valid at `now`.
pub fn read_given(
    path: &Path,
    text: &str,
    now: OffsetDateTime,
) -> Result<(String, CertInfo, Vec<String>), ListenerCaError> {
    let not_pem = |reason: &str| ListenerCaError::NotPem {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let blocks = warden_pki::pem_blocks(text);
    let Some(first) = blocks.first() else {
        return Err(not_pem("it holds no -----BEGIN CERTIFICATE----- block"));
    };
    let infos = warden_pki::parse_pem_bundle(text).map_err(|e| not_pem(&e.to_string()))?;
    let info = infos
        .first()
        .cloned()
        .ok_or_else(|| not_pem("no certificate"))?;
    if !info.is_ca {
        return Err(ListenerCaError::NotACa {
            subject: info.subject,
        });
    }
    if now < info.not_before {
        return Err(ListenerCaError::NotYetValid {
            subject: info.subject,
            not_before: info.not_before,
        });
    }
    if now > info.not_after {
        return Err(ListenerCaError::Expired {
            subject: info.subject,
            not_after: info.not_after,
        });
    }
    let roots: Vec<String> = blocks
        .iter()
        .zip(&infos)
        .skip(1)
        .filter(|(_, i)| i.self_signed)
        .map(|(b, _)| (*b).to_owned())
        .collect();
    if !roots.is_empty() {
        let report = warden_pki::verify_chain_any(first, &roots, now).map_err(|e| {
            ListenerCaError::RootMismatch {
                given: info.subject.clone(),
                problems: e.to_string(),
            }
        })?;
        if !report.valid {
            return Err(ListenerCaError::RootMismatch {
                given: info.subject,
                problems: describe(&report),
            });
        }
    }
    Ok(((*first).to_owned(), info, roots))
}

fn describe(report: &warden_pki::ChainReport) -> String {
    report
        .problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks the listener CA in `given_text` (read from `given_path`: the file `ca rollover-root
/// resign --profile listener-ca --out` wrote; its first certificate is the listener CA, the
/// roots after it are added to `ca.pem`) against the node TLS directory `dir`, and computes
/// every write. Writes nothing.
pub fn plan(
    dir: &Path,
    given_path: &Path,
    given_text: &str,
    now: OffsetDateTime,
) -> Result<Plan, ListenerCaError> {
    let (new_block, info, roots) = read_given(given_path, given_text, now)?;
    let mut files = Vec::new();
    for name in CA_FILES.iter().chain([&ROOTS_FILE]) {
        let path = dir.join(name);
        if let Some((text, mode)) = read_optional(&path)? {
            files.push((*name, path, text, mode));
        }
    }
    let text_of = |name: &str| {
        files
            .iter()
            .find(|f| f.0 == name)
            .map(|f| (f.1.clone(), f.2.as_str()))
    };
    // The current listener CA: listener-ca.crt, else the CA after the leaf in server.crt.
    let current = match (text_of("listener-ca.crt"), text_of("server.crt")) {
        (Some((_, t)), _) => warden_pki::first_certificate(t).map(str::to_owned),
        (None, Some((_, t))) => warden_pki::pem_blocks(t).get(1).map(|b| (*b).to_owned()),
        (None, None) => None,
    }
    .ok_or_else(|| ListenerCaError::NoCurrent {
        dir: dir.to_owned(),
    })?;
    let unreadable = |what: &str| ListenerCaError::Read {
        path: dir.to_owned(),
        reason: format!("the {what} does not parse"),
    };
    let current_key =
        warden_pki::public_key_sha256(&current).ok_or_else(|| unreadable("current listener CA"))?;
    let given_key =
        warden_pki::public_key_sha256(&new_block).ok_or_else(|| unreadable("certificate given"))?;
    if current_key != given_key {
        return Err(ListenerCaError::DifferentKey {
            dir: dir.to_owned(),
            given: info.subject,
            current: warden_pki::parse_pem_bundle(&current)
                .ok()
                .and_then(|c| c.into_iter().next())
                .map(|c| c.subject)
                .unwrap_or_default(),
            given_key,
            current_key,
        });
    }
    if let Some((path, text)) = text_of("server.crt") {
        let leaf = warden_pki::first_certificate(text).ok_or_else(|| ListenerCaError::Read {
            path: path.clone(),
            reason: "it holds no certificate".to_owned(),
        })?;
        let report = warden_pki::verify_chain(leaf, Some(&new_block), now).map_err(|e| {
            ListenerCaError::Read {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        if !report.valid {
            return Err(ListenerCaError::ServerDoesNotVerify {
                dir: dir.to_owned(),
                given: info.subject,
                problems: describe(&report),
            });
        }
    }
    let mut writes = Vec::new();
    let mut root_added = false;
    for (name, path, text, mode) in &files {
        let want = if *name == ROOTS_FILE {
            let mut t = text.trim_end().to_owned();
            t.push('\n');
            for root in &roots {
                if !warden_pki::pem_blocks(text).contains(&root.as_str()) {
                    t.push_str(root.trim_end());
                    t.push('\n');
                    root_added = true;
                }
            }
            t
        } else {
            swap_blocks(text, &current_key, &new_block)
        };
        if want != *text {
            writes.push((path.clone(), want, *mode));
        }
    }
    // ca.pem before server.crt: the order of CA_FILES with the roots moved ahead.
    writes.sort_by_key(|(p, _, _)| p.file_name().is_some_and(|n| n == "server.crt"));
    let replaced = writes
        .iter()
        .filter_map(|(p, _, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    Ok(Plan {
        report: ListenerCaInstall {
            dir: dir.to_owned(),
            listener_ca: info,
            replaced,
            root_added,
        },
        writes,
    })
}

/// [`plan`] then [`Plan::apply`] for one directory.
pub fn install_listener_ca(
    dir: &Path,
    given_path: &Path,
    given_text: &str,
    now: OffsetDateTime,
) -> Result<ListenerCaInstall, ListenerCaError> {
    plan(dir, given_path, given_text, now)?.apply()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = now() - time::Duration::days(1);
        p.not_after = now() + time::Duration::days(30);
        p
    }

    /// Old root, new root, the listener CA's key, the listener CA under each root, a leaf.
    struct Pki {
        old_root: String,
        new_root: String,
        old_ca: String,
        new_ca: String,
        leaf: String,
        new_root_key: KeyPair,
    }

    fn pki() -> Pki {
        let (old_key, new_key, ca_key) = (
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
        );
        let old_root = ca_params("Old Root").self_signed(&old_key).unwrap();
        let new_root = ca_params("New Root").self_signed(&new_key).unwrap();
        let old_issuer = Issuer::new(ca_params("Old Root"), &old_key);
        let new_issuer = Issuer::new(ca_params("New Root"), &new_key);
        let old_ca = ca_params("Listener CA")
            .signed_by(&ca_key, &old_issuer)
            .unwrap();
        let new_ca = ca_params("Listener CA")
            .signed_by(&ca_key, &new_issuer)
            .unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut lp = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        lp.distinguished_name.push(DnType::CommonName, "openbao");
        lp.not_before = now() - time::Duration::days(1);
        lp.not_after = now() + time::Duration::days(20);
        let leaf = lp
            .signed_by(&leaf_key, &Issuer::new(ca_params("Listener CA"), &ca_key))
            .unwrap();
        Pki {
            old_root: old_root.pem(),
            new_root: new_root.pem(),
            old_ca: old_ca.pem(),
            new_ca: new_ca.pem(),
            leaf: leaf.pem(),
            new_root_key: new_key,
        }
    }

    /// A node directory as `warden server tls` writes it (plus the key, owner-only).
    fn node_dir(p: &Pki) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let w = |n: &str, t: &str, m: Mode| warden_files::write_atomic(&d.join(n), t.as_bytes(), m);
        w(
            "server.crt",
            &format!("{}{}", p.leaf, p.old_ca),
            Mode::Public,
        )
        .unwrap();
        w("server.key", "not read", Mode::OwnerOnly).unwrap();
        w(
            "client-ca.pem",
            &format!("{}{}", p.old_ca, p.old_root),
            Mode::OwnerOnly,
        )
        .unwrap();
        w("listener-ca.crt", &p.old_ca, Mode::Public).unwrap();
        w("ca.pem", &p.old_root, Mode::Public).unwrap();
        tmp
    }

    fn snapshot(d: &Path) -> Vec<(String, String)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn the_re_signed_listener_ca_replaces_the_served_chain_and_ca_files() {
        let p = pki();
        let tmp = node_dir(&p);
        let d = tmp.path();
        let given = format!("{}{}", p.new_ca, p.new_root);
        let done = install_listener_ca(d, Path::new("given.pem"), &given, now()).unwrap();
        assert_eq!(
            done.replaced,
            ["listener-ca.crt", "client-ca.pem", "ca.pem", "server.crt"]
        );
        assert!(done.root_added);
        let read = |n: &str| std::fs::read_to_string(d.join(n)).unwrap();
        let served = read("server.crt");
        assert!(served.starts_with(p.leaf.trim_end()));
        assert!(served.contains(p.new_ca.trim()) && !served.contains(p.old_ca.trim()));
        // The served chain verifies under the new root alone, not the old one.
        let chain = warden_pki::verify_chain(&served, Some(&p.new_root), now()).unwrap();
        assert!(chain.valid, "{:?}", chain.problems);
        assert!(
            !warden_pki::verify_chain(&served, Some(&p.old_root), now())
                .unwrap()
                .valid
        );
        assert_eq!(read("listener-ca.crt").trim(), p.new_ca.trim());
        assert_eq!(
            read("client-ca.pem"),
            format!("{}\n{}\n", p.new_ca.trim_end(), p.old_root.trim_end()),
            "the identity CA after the listener CA stays"
        );
        assert!(
            read("ca.pem").contains(p.old_root.trim())
                && read("ca.pem").contains(p.new_root.trim())
        );
        let mode = |n: &str| std::fs::metadata(d.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("client-ca.pem"), 0o600, "owner-only where it was");
        assert_eq!(mode("server.crt"), 0o644);
        // Again: nothing to do.
        let again = install_listener_ca(d, Path::new("given.pem"), &given, now()).unwrap();
        assert!(again.replaced.is_empty() && !again.root_added);
    }

    #[test]
    fn refusals_change_nothing() {
        let p = pki();
        let tmp = node_dir(&p);
        let d = tmp.path();
        let before = snapshot(d);
        let refuse = |given: &str| {
            let e = install_listener_ca(d, Path::new("given.pem"), given, now()).unwrap_err();
            assert_eq!(snapshot(d), before, "{e}");
            e
        };
        // Another key, though signed by the new root under the same name.
        let other = ca_params("Listener CA")
            .signed_by(
                &KeyPair::generate().unwrap(),
                &Issuer::new(ca_params("New Root"), &p.new_root_key),
            )
            .unwrap()
            .pem();
        let e = refuse(&format!("{other}{}", p.new_root));
        assert!(matches!(e, ListenerCaError::DifferentKey { .. }), "{e}");
        // Not a CA: the leaf itself.
        let e = refuse(&p.leaf);
        assert!(matches!(e, ListenerCaError::NotACa { .. }), "{e}");
        // Not PEM, and a PEM block that does not parse.
        let e = refuse("hello, not a certificate\n");
        assert!(matches!(e, ListenerCaError::NotPem { .. }), "{e}");
        let e = refuse("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(matches!(e, ListenerCaError::NotPem { .. }), "{e}");
        // Expired, and not yet valid (`now` moved instead of forging the dates).
        let far = now() + time::Duration::days(60);
        let e = install_listener_ca(d, Path::new("given.pem"), &p.new_ca, far).unwrap_err();
        assert!(matches!(e, ListenerCaError::Expired { .. }), "{e}");
        let past = now() - time::Duration::days(2);
        let e = install_listener_ca(d, Path::new("given.pem"), &p.new_ca, past).unwrap_err();
        assert!(matches!(e, ListenerCaError::NotYetValid { .. }), "{e}");
        assert_eq!(snapshot(d), before);
        // A root in the file that the certificate does not chain to.
        let e = refuse(&format!("{}{}", p.new_ca, p.old_root));
        assert!(matches!(e, ListenerCaError::RootMismatch { .. }), "{e}");
        // A directory without a listener CA.
        let empty = tempfile::tempdir().unwrap();
        let e = install_listener_ca(empty.path(), Path::new("g"), &p.new_ca, now()).unwrap_err();
        assert!(matches!(e, ListenerCaError::NoCurrent { .. }), "{e}");
    }

    #[test]
    fn a_symlinked_file_is_refused_not_followed() {
        let p = pki();
        let tmp = node_dir(&p);
        let d = tmp.path();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("ca.pem");
        std::fs::write(&target, &p.old_root).unwrap();
        std::fs::remove_file(d.join("ca.pem")).unwrap();
        std::os::unix::fs::symlink(&target, d.join("ca.pem")).unwrap();
        let given = format!("{}{}", p.new_ca, p.new_root);
        let e = install_listener_ca(d, Path::new("given.pem"), &given, now()).unwrap_err();
        assert!(matches!(e, ListenerCaError::Read { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), p.old_root);
    }
}
