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
//! public key and subject as the directory's current listener CA, and the node's server
//! certificate must verify under it (and it under the root the file carries, if any). Only the roots the
//! certificate chains to are added to `ca.pem`: another self-signed certificate in the file is
//! not trusted for being there. The directory is opened once; every file is read and written
//! relative to that descriptor, never through a symlink (a symlink at a name is refused, at read
//! and at write). Each file is replaced atomically ([`warden_files::Dir::write`]) with the owner,
//! group and permission bits it had: a file only its owner could read stays so, and a file the
//! node's user owned is still its. `server.crt` is written last, so the served chain changes
//! only once every CA file beside it trusts the new certificate. Re-running with the same file
//! changes nothing.

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use warden_files::{Dir, Mode};
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
    /// It certifies the same key under another subject: the certificates the listener CA issued
    /// name their issuer by subject, so they would not verify under it.
    #[error(
        "{given} names another subject than the current listener CA {current} in {dir}: the certificates it issued name {current} as their issuer"
    )]
    DifferentSubject {
        /// The directory.
        dir: PathBuf,
        /// The certificate given (subject).
        given: String,
        /// The current listener CA (subject).
        current: String,
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

/// One file of the directory as read: its text, permission bits, owner and group.
#[derive(Debug)]
struct Found {
    name: &'static str,
    text: String,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Every write of one directory, checked and computed, not yet done.
#[derive(Debug)]
pub struct Plan {
    report: ListenerCaInstall,
    /// The directory as opened when it was read: the writes go to the same one.
    dir: Dir,
    writes: Vec<(Found, String)>,
}

impl Plan {
    /// What [`Plan::apply`] will do.
    pub fn report(&self) -> &ListenerCaInstall {
        &self.report
    }

    /// Writes the files, each atomically with the mode, owner and group it had, `server.crt`
    /// last.
    pub fn apply(self) -> Result<ListenerCaInstall, ListenerCaError> {
        let euid = rustix::process::geteuid().as_raw();
        let egid = rustix::process::getegid().as_raw();
        for (found, text) in &self.writes {
            // Handed back to whoever owned it (the node's user, when root runs this); no chown
            // when it is this process's own.
            let owner = (found.uid != euid || found.gid != egid)
                .then_some((Some(found.uid), Some(found.gid)));
            self.dir.write(
                found.name,
                text.as_bytes(),
                Mode::Custom(found.mode & 0o777),
                owner,
            )?;
        }
        Ok(self.report)
    }
}

/// The file `name` of `dir` if it exists: a regular file (a symlink is refused, not followed;
/// a FIFO or device refused without blocking) of at most [`LIMIT`] bytes, with its mode and
/// owner as the open file has them.
fn read_optional(dir: &Dir, name: &'static str) -> Result<Option<Found>, ListenerCaError> {
    let err = |reason: String| ListenerCaError::Read {
        path: dir.entry_path(name),
        reason,
    };
    let (contents, meta) = match dir.read_bounded(name, LIMIT) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        Err(warden_files::Error::Symlink { .. }) => {
            return Err(err(
                "a symbolic link, which is not followed: give the real directory".to_owned(),
            ));
        }
        Err(e) => return Err(err(format!("{e} (it must be a regular file)"))),
    };
    let text = String::from_utf8(contents.bytes).map_err(|_| err("not UTF-8 text".to_owned()))?;
    Ok(Some(Found {
        name,
        text,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
    }))
}

/// `text` with every certificate block certifying key `key_sha256` replaced by `new_block`, in
/// place: everything else (a leaf, identity CAs, a key or comments a hand-made file carries,
/// its line endings) kept byte for byte.
fn swap_blocks(text: &str, key_sha256: &str, new_block: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for block in warden_pki::pem_blocks(text) {
        let Some(at) = text[cursor..].find(block) else {
            continue;
        };
        let start = cursor + at;
        out.push_str(&text[cursor..start]);
        let same_key = warden_pki::public_key_sha256(block).as_deref() == Some(key_sha256);
        out.push_str(if same_key {
            new_block.trim_end()
        } else {
            block
        });
        cursor = start + block.len();
    }
    out.push_str(&text[cursor..]);
    out
}

/// The listener CA the file given holds: its first certificate (PEM block and facts) and the
/// self-signed roots after it that it chains to. Checked: PEM, a CA, valid at `now`, and
/// chaining to one of those roots when the file carries any.
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
    let candidates: Vec<String> = blocks
        .iter()
        .zip(&infos)
        .skip(1)
        .filter(|(_, i)| i.self_signed)
        .map(|(b, _)| (*b).to_owned())
        .collect();
    if candidates.is_empty() {
        return Ok(((*first).to_owned(), info, candidates));
    }
    // Only the roots it chains to are returned (to be added to `ca.pem`): another self-signed
    // certificate riding along in the file is not trusted for being there.
    let roots: Vec<String> = candidates
        .iter()
        .filter(|r| warden_pki::verify_chain(first, Some(r), now).is_ok_and(|report| report.valid))
        .cloned()
        .collect();
    if roots.is_empty() {
        // Why, against the first root (what `verify_chain_any` reports when none verifies).
        let problems = match warden_pki::verify_chain_any(first, &candidates, now) {
            Ok(report) => report.problems_text(),
            Err(e) => e.to_string(),
        };
        return Err(ListenerCaError::RootMismatch {
            given: info.subject,
            problems,
        });
    }
    Ok(((*first).to_owned(), info, roots))
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
    let handle = Dir::open_unchecked(dir).map_err(|e| ListenerCaError::Read {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let mut files = Vec::new();
    for name in CA_FILES.into_iter().chain([ROOTS_FILE]) {
        if let Some(found) = read_optional(&handle, name)? {
            files.push(found);
        }
    }
    let text_of = |name: &str| {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| (dir.join(f.name), f.text.as_str()))
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
    let current_subject = warden_pki::parse_pem_bundle(&current)
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|c| c.subject)
        .ok_or_else(|| unreadable("current listener CA"))?;
    let given_key =
        warden_pki::public_key_sha256(&new_block).ok_or_else(|| unreadable("certificate given"))?;
    if current_key != given_key {
        return Err(ListenerCaError::DifferentKey {
            dir: dir.to_owned(),
            given: info.subject,
            current: current_subject,
            given_key,
            current_key,
        });
    }
    // The same subject too: checked here because a directory without server.crt (a `server tls
    // --out` directory) has no leaf to prove it, and its client certificates name the subject.
    if current_subject != info.subject {
        return Err(ListenerCaError::DifferentSubject {
            dir: dir.to_owned(),
            given: info.subject,
            current: current_subject,
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
                problems: report.problems_text(),
            });
        }
    }
    let mut writes = Vec::new();
    let mut root_added = false;
    for found in files {
        let want = if found.name == ROOTS_FILE {
            let mut t = found.text.trim_end().to_owned();
            t.push('\n');
            let mut have: Vec<String> = warden_pki::parse_pem_bundle(&found.text)
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.sha256)
                .collect();
            for root in &roots {
                let sha = warden_pki::parse_pem_bundle(root)
                    .ok()
                    .and_then(|c| c.into_iter().next())
                    .map(|c| c.sha256);
                if let Some(sha) = sha.filter(|s| !have.contains(s)) {
                    t.push_str(root.trim_end());
                    t.push('\n');
                    have.push(sha);
                    root_added = true;
                }
            }
            t
        } else {
            swap_blocks(&found.text, &current_key, &new_block)
        };
        if want != found.text {
            writes.push((found, want));
        }
    }
    // ca.pem before server.crt: the order of CA_FILES with the roots moved ahead.
    writes.sort_by_key(|(f, _)| f.name == "server.crt");
    let replaced = writes.iter().map(|(f, _)| f.name.to_owned()).collect();
    Ok(Plan {
        report: ListenerCaInstall {
            dir: dir.to_owned(),
            listener_ca: info,
            replaced,
            root_added,
        },
        dir: handle,
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
    use std::os::unix::fs::PermissionsExt as _;

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
        /// The listener CA's key, PEM (a test key made here).
        ca_key_pem: String,
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
            ca_key_pem: ca_key.serialize_pem(),
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
        // The same key under another subject (a `--out` directory, no server.crt to prove it).
        let renamed = ca_params("Other Listener CA")
            .signed_by(
                &KeyPair::from_pem(&p.ca_key_pem).unwrap(),
                &Issuer::new(ca_params("New Root"), &p.new_root_key),
            )
            .unwrap()
            .pem();
        let out_dir = tempfile::tempdir().unwrap();
        std::fs::write(out_dir.path().join("listener-ca.crt"), &p.old_ca).unwrap();
        let e = install_listener_ca(out_dir.path(), Path::new("g"), &renamed, now()).unwrap_err();
        assert!(matches!(e, ListenerCaError::DifferentSubject { .. }), "{e}");
        assert_eq!(
            std::fs::read_to_string(out_dir.path().join("listener-ca.crt")).unwrap(),
            p.old_ca
        );
        // A directory without a listener CA.
        let empty = tempfile::tempdir().unwrap();
        let e = install_listener_ca(empty.path(), Path::new("g"), &p.new_ca, now()).unwrap_err();
        assert!(matches!(e, ListenerCaError::NoCurrent { .. }), "{e}");
    }

    #[test]
    fn only_the_root_the_ca_chains_to_is_added_to_ca_pem() {
        let p = pki();
        let tmp = node_dir(&p);
        let d = tmp.path();
        // A self-signed CA riding along after the real root: not trusted for being there.
        let stray = ca_params("Stray Root")
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .pem();
        let given = format!("{}{}{}", p.new_ca, p.new_root, stray);
        let done = install_listener_ca(d, Path::new("given.pem"), &given, now()).unwrap();
        assert!(done.root_added);
        let roots = std::fs::read_to_string(d.join("ca.pem")).unwrap();
        assert!(roots.contains(p.new_root.trim()), "the new root is added");
        assert!(
            !roots.contains(stray.trim()),
            "the stray root is not: {roots}"
        );
    }

    #[test]
    fn each_file_keeps_its_mode_owner_and_group() {
        use std::os::unix::fs::MetadataExt as _;
        let p = pki();
        let tmp = node_dir(&p);
        let d = tmp.path();
        let set = |n: &str, m: u32| {
            std::fs::set_permissions(d.join(n), std::fs::Permissions::from_mode(m)).unwrap();
        };
        // Group-readable (the node's group), and owner-read-only.
        set("client-ca.pem", 0o640);
        set("listener-ca.crt", 0o444);
        set("server.crt", 0o640);
        let root = rustix::process::geteuid().is_root();
        if root {
            // A directory the node's user owns, as root runs the command.
            for n in ["client-ca.pem", "server.crt"] {
                std::os::unix::fs::chown(d.join(n), Some(4321), Some(4322)).unwrap();
            }
        }
        let given = format!("{}{}", p.new_ca, p.new_root);
        let done = install_listener_ca(d, Path::new("given.pem"), &given, now()).unwrap();
        assert!(done.replaced.contains(&"client-ca.pem".to_owned()));
        let meta = |n: &str| std::fs::metadata(d.join(n)).unwrap();
        assert_eq!(meta("client-ca.pem").mode() & 0o7777, 0o640);
        assert_eq!(meta("listener-ca.crt").mode() & 0o7777, 0o444);
        assert_eq!(meta("server.crt").mode() & 0o7777, 0o640);
        assert_eq!(meta("ca.pem").mode() & 0o7777, 0o644);
        if root {
            for n in ["client-ca.pem", "server.crt"] {
                assert_eq!((meta(n).uid(), meta(n).gid()), (4321, 4322), "{n}");
            }
        }
    }

    #[test]
    fn what_else_a_file_holds_is_kept_byte_for_byte() {
        let p = pki();
        let tmp = node_dir(&p);
        let d = tmp.path();
        // A hand-made node.crt carrying its key block (a stand-in, not a key) and a comment;
        // and a client-ca.pem without the listener CA at all.
        let stand_in = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let node = format!("# node certificate\n{}{}{stand_in}", p.leaf, p.old_ca);
        std::fs::write(d.join("node.crt"), &node).unwrap();
        let identity_only = format!("# identity CA\n{}\n\n", p.old_root.trim_end());
        std::fs::write(d.join("client-ca.pem"), &identity_only).unwrap();
        let given = format!("{}{}", p.new_ca, p.new_root);
        let done = install_listener_ca(d, Path::new("given.pem"), &given, now()).unwrap();
        assert!(
            !done.replaced.contains(&"client-ca.pem".to_owned()),
            "{:?}",
            done.replaced
        );
        assert_eq!(
            std::fs::read_to_string(d.join("client-ca.pem")).unwrap(),
            identity_only
        );
        let after = std::fs::read_to_string(d.join("node.crt")).unwrap();
        assert_eq!(
            after,
            format!(
                "# node certificate\n{}{}\n{stand_in}",
                p.leaf,
                p.new_ca.trim_end()
            ),
            "only the listener CA's block changed"
        );
    }

    #[test]
    fn a_fifo_in_the_directory_is_refused_without_blocking() {
        let p = pki();
        let tmp = node_dir(&p);
        let d = tmp.path();
        std::fs::remove_file(d.join("node.crt")).ok();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            d.join("node.crt"),
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let before = snapshot_files(d);
        let given = format!("{}{}", p.new_ca, p.new_root);
        let e = install_listener_ca(d, Path::new("given.pem"), &given, now()).unwrap_err();
        assert!(matches!(e, ListenerCaError::Read { .. }), "{e}");
        assert_eq!(snapshot_files(d), before);
    }

    /// [`snapshot`] of the regular files only.
    fn snapshot_files(d: &Path) -> Vec<(String, String)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| {
                let e = e.unwrap();
                e.file_type().unwrap().is_file().then(|| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap(),
                    )
                })
            })
            .collect();
        v.sort();
        v
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
