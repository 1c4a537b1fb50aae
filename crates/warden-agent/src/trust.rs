//! The agent's trust file (`[openbao] ca_file`, the identity's `trust/ca.pem`), re-read while
//! the agent runs.
//!
//! During a root rollover (ADR 0030) the operator ships a trust file holding both roots, and
//! later one holding only the new root. Agents must pick it up without a restart: the CA-chain
//! output delivers only intermediates that verify against a root of this file, certificate
//! outputs and identity renewals check what OpenBao issued against it, and the delivery report
//! says which roots it holds (`trust_roots`), so posture can list the agents still behind.
//!
//! The file is read at start and re-read on each use (and before each login, so an agent that
//! cannot log in over its current anchors still picks up a fixed file) by one function,
//! [`read`], so the agent
//! never trusts a file later that it would refuse at start: an absolute path walked from `/`
//! without following a symlink at any depth (the file included), through directories only root
//! or the agent's user can change (`warden_files::Trusted`), to a regular file of at most 1 MiB
//! that only root or the agent's user owns and can write, holding at least one PEM certificate
//! and nothing unparsable. Whoever could swap a name on that way could choose the roots the
//! agent trusts. A read that fails keeps the last good text (trust never drops to nothing) and
//! is logged once per distinct reason.
//!
//! The connection to OpenBao follows the file too: when a re-read finds new text, the agent's
//! clients ([`TrustFile::anchor`]) are re-anchored on it (`warden_bao::Client::set_ca_pem`), so
//! every connection opened from then on verifies the listener against the file's roots. That is
//! what lets an agent started before its trust file gained the new root follow a listener whose
//! chain moves to it (`ca rollover-root finish --listener-ca`, `warden server tls
//! --install-listener-ca`), and then lose the old root. The rule is the file's: a text that
//! fails to read, or that no certificate of can anchor a TLS connection, keeps the last good
//! anchor — the connection never drops to an empty trust. The delivery report's `tls_roots`
//! are the roots the connection trusts now.

use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The most a trust file may hold: a bundle of a few roots is a few KiB.
const LIMIT: u64 = 1024 * 1024;

/// Reads the trust file at `path` under the rule in the module documentation; `Err` says why
/// it was refused.
pub(crate) fn read(path: &Path) -> Result<String, String> {
    // A relative path (an agent.toml named relative to the working directory) is taken from
    // the working directory, which the agent never changes.
    let path = &std::path::absolute(path).map_err(|e| e.to_string())?;
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err("the path names no file".into());
    };
    let mut rel = PathBuf::new();
    for c in parent.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => rel.push(n),
            _ => return Err("the path holds `.` or `..`; give the plain path".into()),
        }
    }
    let root = warden_files::Dir::open_root(Path::new("/"), warden_files::Trusted::process())
        .map_err(|e| e.to_string())?;
    let dir = if rel.as_os_str().is_empty() {
        root
    } else {
        root.open(&rel).map_err(|e| {
            format!("{e} (the trust file is read without following symlinks: give its real path)")
        })?
    };
    let (contents, meta) = match dir.read_bounded(name, LIMIT) {
        Ok(Some(found)) => found,
        Ok(None) => return Err("it does not exist".into()),
        Err(warden_files::Error::Symlink { .. }) => {
            return Err(
                "it is a symbolic link, which the agent does not follow: give the real path".into(),
            );
        }
        Err(e) => return Err(e.to_string()),
    };
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    if meta.uid != 0 && meta.uid != euid {
        return Err(format!(
            "it is owned by uid {}, who could choose the roots the agent trusts; only root or \
             the agent's user may own it (chown it)",
            meta.uid
        ));
    }
    let foreign_group = meta.gid != 0 && meta.gid != egid;
    if meta.mode & 0o002 != 0 || (meta.mode & 0o020 != 0 && foreign_group) {
        return Err(format!(
            "its mode {:04o} lets other users choose the roots the agent trusts (chmod go-w it)",
            meta.mode
        ));
    }
    let text = String::from_utf8(contents.bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
    if warden_pki::pem_blocks(&text).is_empty() {
        return Err("it holds no PEM certificate".into());
    }
    warden_pki::parse_pem_bundle(&text)
        .map_err(|e| format!("it holds a certificate that does not parse: {e}"))?;
    Ok(text)
}

/// The trust file and its last good text.
#[derive(Debug)]
pub(crate) struct TrustFile {
    path: Option<PathBuf>,
    /// What the TLS connection to OpenBao trusts: the text read at start, then each new text
    /// the clients were re-anchored on.
    connection: Mutex<Connection>,
    last: Mutex<String>,
    /// Why the last re-read was refused, to log each new reason once rather than on every use.
    refused: Mutex<Option<String>>,
}

impl TrustFile {
    /// `text` as read at start from `path` (`None`: no trust file, the system roots).
    pub(crate) fn new(path: Option<PathBuf>, text: String) -> Self {
        Self {
            path,
            connection: Mutex::new(Connection {
                clients: Vec::new(),
                roots: roots_of(&text),
                pem: text.clone(),
            }),
            last: Mutex::new(text),
            refused: Mutex::new(None),
        }
    }

    /// Re-anchors `client` (built from the text given to [`TrustFile::new`]) whenever the file
    /// changes from now on.
    pub(crate) fn anchor(&self, client: warden_bao::Client) {
        if self.path.is_some() {
            self.connection().clients.push(client);
        }
    }

    /// The text the connection trusts now, for a client built later (`None` without a trust
    /// file: the system roots).
    pub(crate) fn connection_pem(&self) -> Option<String> {
        self.path.as_ref()?;
        Some(self.connection().pem.clone())
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves every anchored client to `text`'s certificates. The bundle is checked by building
    /// the first client's verifier: if that fails nothing moves, and the next change of the
    /// file tries again.
    fn reanchor(&self, path: &Path, text: &str) {
        let mut conn = self.connection();
        if conn.pem == text {
            return;
        }
        for (i, client) in conn.clients.iter().enumerate() {
            if let Err(e) = client.set_ca_pem(text.as_bytes()) {
                // Only the first can fail this way (the same bundle builds the same verifier).
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    moved = i,
                    "the trust file's certificates cannot anchor the connection to OpenBao; keeping its last anchor"
                );
                return;
            }
        }
        conn.roots = roots_of(text);
        text.clone_into(&mut conn.pem);
        if !conn.clients.is_empty() {
            tracing::info!(
                path = %path.display(),
                roots = conn.roots.len(),
                "the connection to OpenBao now trusts the trust file's roots"
            );
        }
    }

    /// The trust anchors, PEM: the file as it is now, or the last good text.
    pub(crate) fn pem(&self) -> String {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(path) = &self.path else {
            return last.clone();
        };
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        match read(path) {
            Ok(text) => {
                *refused = None;
                if *last != text {
                    tracing::info!(path = %path.display(), "the trust file changed; using it from now on");
                    last.clone_from(&text);
                    self.reanchor(path, &text);
                }
            }
            Err(reason) => {
                if refused.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(
                        path = %path.display(),
                        %reason,
                        "refusing the trust file as it is now; keeping the last good one"
                    );
                    *refused = Some(reason);
                }
            }
        }
        last.clone()
    }

    /// SHA-256 (hex) of each self-signed certificate the trust file holds now, sorted: which
    /// roots this agent trusts. `None` without a trust file.
    pub(crate) fn root_digests(&self) -> Option<Vec<String>> {
        self.path.as_ref()?;
        Some(roots_of(&self.pem()))
    }

    /// The same for the roots the connection to OpenBao trusts: the file's as of the last
    /// re-read that could anchor it (the file at start until then). Status lists an agent whose
    /// connection still trusts only the old root before the listener's certificate moves.
    /// `None` without a trust file.
    pub(crate) fn connection_root_digests(&self) -> Option<Vec<String>> {
        self.path.as_ref()?;
        Some(self.connection().roots.clone())
    }
}

/// The clients anchored on the trust file, and what they trust.
#[derive(Debug)]
struct Connection {
    clients: Vec<warden_bao::Client>,
    /// SHA-256 of each root of `pem` ([`roots_of`]).
    roots: Vec<String>,
    pem: String,
}

/// SHA-256 (hex) of each self-signed certificate of `pem`, sorted, once each.
fn roots_of(pem: &str) -> Vec<String> {
    let mut roots: Vec<String> = warden_pki::parse_pem_bundle(pem)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.self_signed)
        .map(|c| c.sha256)
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(cn: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn the_file_is_re_read_and_a_broken_one_keeps_the_last_good_text() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ca.pem");
        let (a, b) = (root("Root A"), root("Root B"));
        std::fs::write(&path, &a).unwrap();
        let t = TrustFile::new(Some(path.clone()), a.clone());
        let one = t.root_digests().unwrap();
        assert_eq!(one.len(), 1);
        std::fs::write(&path, format!("{a}{b}")).unwrap();
        assert_eq!(t.root_digests().unwrap().len(), 2);
        std::fs::write(&path, "-----BEGIN CERT").unwrap();
        assert_eq!(
            t.root_digests().unwrap().len(),
            2,
            "kept the last good text"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(t.pem().contains(a.trim()));
        assert_eq!(TrustFile::new(None, String::new()).root_digests(), None);
    }

    /// Issue 14: the connection follows the file (a root rollover moves the listener's chain),
    /// and a file that fails to read keeps the last good anchor.
    #[test]
    fn issue_14_the_connection_is_re_anchored_on_the_new_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ca.pem");
        let (a, b) = (root("Root A"), root("Root B"));
        std::fs::write(&path, &a).unwrap();
        let t = TrustFile::new(Some(path.clone()), read(&path).unwrap());
        let client = warden_bao::Client::new(
            warden_bao::ClientConfig::from_address("https://127.0.0.1:1")
                .unwrap()
                .with_ca_pem(a.clone().into_bytes()),
        )
        .unwrap();
        t.anchor(client);
        let digests = |pem: &str| roots_of(pem);
        assert_eq!(t.connection_root_digests().unwrap(), digests(&a));
        std::fs::write(&path, format!("{a}{b}")).unwrap();
        t.pem();
        assert_eq!(
            t.connection_root_digests().unwrap(),
            digests(&format!("{a}{b}"))
        );
        // Only the new root: the connection trusts only it.
        warden_files::write_atomic(&path, b.as_bytes(), warden_files::Mode::Public).unwrap();
        t.pem();
        assert_eq!(t.connection_root_digests().unwrap(), digests(&b));
        assert_eq!(t.connection_pem().unwrap(), b);
        // Broken or gone: the last good anchor stays.
        std::fs::write(&path, "-----BEGIN CERT").unwrap();
        t.pem();
        std::fs::remove_file(&path).unwrap();
        t.pem();
        assert_eq!(t.connection_root_digests().unwrap(), digests(&b));
        assert_eq!(TrustFile::new(None, String::new()).connection_pem(), None);
    }

    /// A hostile local user's ways of replacing the trust file: none may change what the agent
    /// trusts, none may be accepted at start either, and the last good roots stay in use.
    #[test]
    fn a_replaced_trust_file_the_agent_would_refuse_at_start_keeps_the_last_good_roots() {
        use std::os::unix::fs::{PermissionsExt as _, chown, symlink};
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ca.pem");
        let (a, evil) = (root("Root A"), root("Evil Root"));
        std::fs::write(&path, &a).unwrap();
        let t = TrustFile::new(Some(path.clone()), read(&path).unwrap());
        let good = t.root_digests().unwrap();
        let elsewhere = tmp.path().join("evil.pem");
        std::fs::write(&elsewhere, format!("{a}{evil}")).unwrap();
        let euid = nix::unistd::geteuid().as_raw();
        let other = if euid == 65534 { 65533 } else { 65534 };
        type Attack<'a> = (&'static str, Box<dyn Fn() + 'a>);
        let attacks: Vec<Attack<'_>> = vec![
            (
                "a symlink",
                Box::new(|| symlink(&elsewhere, &path).unwrap()),
            ),
            (
                "a FIFO",
                Box::new(|| {
                    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .unwrap();
                }),
            ),
            (
                "world-writable",
                Box::new(|| {
                    std::fs::write(&path, format!("{a}{evil}")).unwrap();
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
                        .unwrap();
                }),
            ),
            (
                "group-writable, foreign group",
                Box::new(|| {
                    std::fs::write(&path, format!("{a}{evil}")).unwrap();
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664))
                        .unwrap();
                    // Only root may hand a file to another group; as another user the write check
                    // above is what matters.
                    let _ = chown(&path, None, Some(other));
                }),
            ),
            (
                "huge",
                Box::new(|| {
                    let mut big = format!("{a}{evil}");
                    big.push_str(&"x".repeat(2 * 1024 * 1024));
                    std::fs::write(&path, big).unwrap();
                }),
            ),
            (
                "garbage PEM",
                Box::new(|| {
                    std::fs::write(
                        &path,
                        format!(
                            "{a}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
                        ),
                    )
                    .unwrap();
                }),
            ),
            (
                "truncated mid-write",
                Box::new(|| {
                    let both = format!("{a}{evil}");
                    std::fs::write(&path, &both[..both.len() - 40]).unwrap();
                }),
            ),
            ("empty", Box::new(|| std::fs::write(&path, "").unwrap())),
            (
                "binary",
                Box::new(|| std::fs::write(&path, [0xff, 0xfe, 0]).unwrap()),
            ),
            (
                "a directory",
                Box::new(|| std::fs::create_dir(&path).unwrap()),
            ),
        ];
        for (what, attack) in &attacks {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir(&path);
            attack();
            assert!(read(&path).is_err(), "{what}: refused at start");
            assert_eq!(
                t.root_digests().unwrap(),
                good,
                "{what}: kept the last good roots"
            );
        }
        // Another owner: only testable as root, who can hand the file away.
        if euid == 0 {
            let _ = std::fs::remove_dir(&path);
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, format!("{a}{evil}")).unwrap();
            chown(&path, Some(other), None).unwrap();
            assert!(read(&path).unwrap_err().contains("owned by uid"));
            assert_eq!(t.root_digests().unwrap(), good, "another owner");
            // A directory on the way owned by another user, who could rename the file away.
            chown(&path, Some(0), None).unwrap();
            let sub = tmp.path().join("sub");
            std::fs::create_dir(&sub).unwrap();
            std::fs::write(sub.join("ca.pem"), &a).unwrap();
            chown(&sub, Some(other), None).unwrap();
            assert!(
                read(&sub.join("ca.pem")).is_err(),
                "a foreign directory on the way"
            );
        }
        // A symlinked directory on the way is not followed either.
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("ca.pem"), &a).unwrap();
        symlink(&real, tmp.path().join("link")).unwrap();
        assert!(read(&tmp.path().join("link/ca.pem")).is_err());
        assert!(read(&real.join("ca.pem")).is_ok());
        // The rightful rollover bundle (written by the operator, atomically) is picked up.
        let _ = std::fs::remove_dir(&path);
        let _ = std::fs::remove_file(&path);
        let b = root("Root B");
        warden_files::write_atomic(
            &path,
            format!("{a}{b}").as_bytes(),
            warden_files::Mode::Public,
        )
        .unwrap();
        assert_eq!(t.root_digests().unwrap().len(), 2);
    }
}
