//! The only writer of outputs.
//!
//! * A single file (template, CA chain) goes through `warden_files::write_atomic`: the old file
//!   or the new one, never a partial one, whatever happens (crash, `kill -9`, full disk).
//! * A certificate set is first **verified** ([`verify_certificate_set`]: key matches the
//!   certificate, the chain verifies to the trust anchor, the leaf does not outlive its issuer,
//!   the names are exactly the profile's), then written into a new versioned directory
//!   `<dir>.d/<version>/` (every file fsynced, then the directory), and published by replacing
//!   the symlink `<dir>` → `<dir>.d/<version>` atomically (a symlink under a temporary name,
//!   renamed over the old one). A reader of `<dir>/cert.pem` and `<dir>/key.pem` therefore
//!   sees one complete set or the other, never a new certificate with an old key. The version
//!   before is kept (a service that opened the old path keeps working), older ones removed.
//!
//! Whether anything changed is decided by SHA-256 of the new content against what is on disk,
//! so an unchanged render writes nothing and triggers no reload.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::output::certificate::{CERT, CHAIN, FULLCHAIN, KEY, pem_blocks};
use super::output::{Rendered, RenderedFile};
use super::state::sha256_hex;

/// Whether a delivery changed anything on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything on disk already had this content (and mode); nothing was written.
    Unchanged,
    /// New content is in place.
    Changed,
}

/// Why a delivery did not happen. Whatever was on disk before is still there, intact.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliverError {
    /// The rendered set failed a check (key, chain, lifetime, names); nothing was written.
    #[error("output {output}: refused to deliver: {reason}")]
    Refused {
        /// The output.
        output: String,
        /// Which check failed and how.
        reason: String,
    },
    /// Writing a file failed (full disk, read-only directory, a symlink planted at the
    /// target...). See [`DeliverError::is_disk_full`].
    #[error("output {output}: {source}")]
    Write {
        /// The output.
        output: String,
        /// The write error (names the path and step).
        #[source]
        source: warden_files::Error,
    },
    /// Another filesystem step failed (creating a directory, the symlink swap, a chown).
    #[error("output {output}: could not {step} {path}: {source}")]
    Io {
        /// The output.
        output: String,
        /// What was being done.
        step: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `owner` or `group` names nobody on this host.
    #[error("output {output}: unknown {what} `{name}`")]
    UnknownOwner {
        /// The output.
        output: String,
        /// "user" or "group".
        what: &'static str,
        /// The name.
        name: String,
    },
}

impl DeliverError {
    /// The disk (or quota) is full: the previous files are intact and the delivery is retried.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Write { source, .. } => source.is_disk_full(),
            Self::Io { source, .. } => matches!(source.raw_os_error(), Some(28 | 122)),
            _ => false,
        }
    }
}

/// Who the delivered files belong to. `None` = whoever runs the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    /// uid to chown to.
    pub uid: Option<u32>,
    /// gid to chown to.
    pub gid: Option<u32>,
}

impl Ownership {
    /// Resolves `owner`/`group` names. Looked up at delivery time, so a service user created
    /// after the agent started is found.
    pub fn resolve(
        output: &str,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<Self, DeliverError> {
        let unknown = |what: &'static str, name: &str| DeliverError::UnknownOwner {
            output: output.to_owned(),
            what,
            name: name.to_owned(),
        };
        let uid = match owner {
            None => None,
            Some(n) => Some(
                nix::unistd::User::from_name(n)
                    .ok()
                    .flatten()
                    .ok_or_else(|| unknown("user", n))?
                    .uid
                    .as_raw(),
            ),
        };
        let gid = match group {
            None => None,
            Some(n) => Some(
                nix::unistd::Group::from_name(n)
                    .ok()
                    .flatten()
                    .ok_or_else(|| unknown("group", n))?
                    .gid
                    .as_raw(),
            ),
        };
        Ok(Self { uid, gid })
    }

    fn is_some(self) -> bool {
        self.uid.is_some() || self.gid.is_some()
    }

    fn apply(self, output: &str, path: &Path) -> Result<(), DeliverError> {
        if !self.is_some() {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, self.uid, self.gid).map_err(|source| DeliverError::Io {
            output: output.to_owned(),
            step: "chown",
            path: path.to_path_buf(),
            source,
        })
    }
}

/// What a certificate set must name.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The subject CN (OpenBao also puts it in the DNS SANs).
    pub common_name: &'a str,
    /// The other DNS SANs.
    pub sans: &'a [String],
}

/// Checks a certificate set (as rendered, or as read back from disk) before it is trusted:
/// the key belongs to the certificate; `fullchain.pem` is `cert.pem` + `chain.pem`; the chain
/// verifies to one of the trust anchors at `now`; the leaf does not outlive its issuer; the
/// subject CN and the DNS SANs are exactly the profile's.
pub fn verify_certificate_set(
    output: &str,
    files: &[RenderedFile],
    trust_anchors_pem: &str,
    expected: Expected<'_>,
    now: OffsetDateTime,
) -> Result<(), DeliverError> {
    let refuse = |reason: String| DeliverError::Refused {
        output: output.to_owned(),
        reason,
    };
    let get = |name: &str| {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.contents)
            .ok_or_else(|| refuse(format!("the set has no {name}")))
    };
    let text = |name: &str| -> Result<String, DeliverError> {
        String::from_utf8(get(name)?.to_vec()).map_err(|_| refuse(format!("{name} is not text")))
    };
    let cert = text(CERT)?;
    let chain = text(CHAIN)?;
    let fullchain = text(FULLCHAIN)?;
    let key = get(KEY)?;

    warden_bao::ClientIdentity::from_pem(cert.as_bytes().to_vec(), Zeroizing::new(key.to_vec()))
        .map_err(|e| refuse(format!("the key does not belong to the certificate: {e}")))?;
    let blocks = |t: &str| {
        pem_blocks(t)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut expected_full = blocks(&cert);
    expected_full.extend(blocks(&chain));
    if blocks(&fullchain) != expected_full {
        return Err(refuse(format!(
            "{FULLCHAIN} is not {CERT} followed by {CHAIN}"
        )));
    }
    if blocks(&cert).len() != 1 {
        return Err(refuse(format!("{CERT} must hold exactly one certificate")));
    }

    let anchors = pem_blocks(trust_anchors_pem);
    if anchors.is_empty() {
        return Err(refuse(
            "the trust anchor file holds no certificate".to_owned(),
        ));
    }
    let mut last_problem = String::new();
    let mut report = None;
    for anchor in anchors {
        match warden_pki::verify_chain(&fullchain, Some(anchor), now) {
            Ok(r) if r.valid => {
                report = Some(r);
                break;
            }
            Ok(r) => {
                last_problem = r
                    .problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            Err(e) => last_problem = e.to_string(),
        }
    }
    let Some(report) = report else {
        return Err(refuse(format!(
            "the chain does not verify to the trust anchor: {last_problem}"
        )));
    };
    let leaf = &report.certs[0];
    let issuer_not_after = report
        .certs
        .get(1)
        .or(report.trust_anchor.as_ref())
        .map(|c| c.not_after);
    if let Some(ina) = issuer_not_after
        && leaf.not_after > ina
    {
        return Err(refuse(format!(
            "the certificate ({}) outlives its issuer ({})",
            leaf.not_after, ina
        )));
    }

    let cn = warden_pki::common_name(&cert).unwrap_or_default();
    if cn != expected.common_name {
        return Err(refuse(format!(
            "the certificate names CN `{cn}`, the profile says `{}`",
            expected.common_name
        )));
    }
    let mut want: Vec<String> = std::iter::once(expected.common_name)
        .chain(expected.sans.iter().map(String::as_str))
        .map(|n| format!("dns:{}", n.to_ascii_lowercase()))
        .collect();
    want.sort();
    want.dedup();
    let mut got: Vec<String> = leaf
        .subject_alt_names
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    got.sort();
    got.dedup();
    if got != want {
        return Err(refuse(format!(
            "the certificate's names [{}] are not the profile's [{}]",
            got.join(", "),
            want.join(", ")
        )));
    }
    Ok(())
}

/// Delivers one file at `path`: written atomically unless the same bytes and mode are already
/// there.
pub fn deliver_file(
    output: &str,
    path: &Path,
    file: &RenderedFile,
    owner: Ownership,
) -> Result<Outcome, DeliverError> {
    if same_file(path, &file.contents, file.mode) {
        return Ok(Outcome::Unchanged);
    }
    if let Some(parent) = path.parent() {
        create_dirs(output, parent, dir_mode(file.mode))?;
    }
    warden_files::write_atomic(path, &file.contents, warden_files::Mode::Custom(file.mode))
        .map_err(|source| DeliverError::Write {
            output: output.to_owned(),
            source,
        })?;
    // After the rename, so briefly owned by the agent's user: that only ever narrows who can
    // read it, never widens it.
    owner.apply(output, path)?;
    Ok(Outcome::Changed)
}

/// Delivers a file set into `<dir>.d/<version>/` and points the symlink `<dir>` at it. See the
/// module documentation. `version` must be a plain name (a certificate serial).
pub fn deliver_set(
    output: &str,
    dir: &Path,
    version: &str,
    files: &[RenderedFile],
    owner: Ownership,
) -> Result<Outcome, DeliverError> {
    let io = |step: &'static str, path: &Path| {
        let output = output.to_owned();
        let path = path.to_path_buf();
        move |source| DeliverError::Io {
            output,
            step,
            path,
            source,
        }
    };
    let refuse = |reason: String| DeliverError::Refused {
        output: output.to_owned(),
        reason,
    };
    if version.is_empty()
        || version.starts_with('.')
        || !version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(refuse(format!("`{version}` is not a usable version name")));
    }
    let (parent, name) =
        split(dir).ok_or_else(|| refuse(format!("{} has no parent", dir.display())))?;
    let versions = parent.join(format!("{name}.d"));
    let widest = files.iter().fold(0, |m, f| m | f.mode);
    create_dirs(output, &parent, dir_mode(widest))?;
    create_dirs(output, &versions, dir_mode(widest))?;

    let current = current_target(dir).map_err(io("inspect", dir))?;
    if current.as_deref() == Some(version) {
        if set_matches(&versions.join(version), files) {
            return Ok(Outcome::Unchanged);
        }
        // The same version with other bytes: never rewrite the directory the live symlink
        // points at (a reader could see a mix).
        return Err(refuse(format!(
            "version {version} is live with other contents; it is never rewritten in place"
        )));
    }

    // 1. The new version, complete and fsynced, under a temporary name.
    let pid = std::process::id();
    let tmp = versions.join(format!(".tmp-{version}-{pid}"));
    remove_dir_if_present(&tmp).map_err(io("remove", &tmp))?;
    fs::create_dir(&tmp).map_err(io("create directory", &tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700)).map_err(io("chmod", &tmp))?;
    let written = (|| {
        for f in files {
            let path = tmp.join(&f.name);
            warden_files::write_atomic(&path, &f.contents, warden_files::Mode::Custom(f.mode))
                .map_err(|source| DeliverError::Write {
                    output: output.to_owned(),
                    source,
                })?;
            owner.apply(output, &path)?;
        }
        owner.apply(output, &tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(dir_mode(widest)))
            .map_err(io("chmod", &tmp))?;
        sync_dir(&tmp).map_err(io("fsync", &tmp))?;
        // A directory of this name that is not live is a leftover of an interrupted delivery.
        let final_dir = versions.join(version);
        remove_dir_if_present(&final_dir).map_err(io("remove", &final_dir))?;
        fs::rename(&tmp, &final_dir).map_err(io("rename into place", &final_dir))?;
        sync_dir(&versions).map_err(io("fsync", &versions))
    })();
    if let Err(e) = written {
        let _ = remove_dir_if_present(&tmp);
        return Err(e);
    }

    // 2. The swap: a symlink under a temporary name renamed over `<dir>`.
    let target = PathBuf::from(format!("{name}.d")).join(version);
    let link_tmp = parent.join(format!(".{name}.link-{pid}"));
    let _ = fs::remove_file(&link_tmp);
    std::os::unix::fs::symlink(&target, &link_tmp).map_err(io("create symlink", &link_tmp))?;
    owner.apply(output, &link_tmp)?;
    if let Err(e) = fs::rename(&link_tmp, dir) {
        let _ = fs::remove_file(&link_tmp);
        return Err(io("swap the symlink", dir)(e));
    }
    sync_dir(&parent).map_err(io("fsync", &parent))?;

    // 3. Keep the live and the previous version; everything else goes, with temporary
    //    symlinks an interrupted swap may have left.
    prune(&versions, version, current.as_deref());
    prune_links(&parent, &name);
    Ok(Outcome::Changed)
}

/// Reads the files of the set `<dir>` points at (through the symlink), or `None` when any is
/// missing or unreadable.
pub fn read_set(dir: &Path, names: &[&str]) -> Option<Vec<RenderedFile>> {
    names
        .iter()
        .map(|n| {
            let path = dir.join(n);
            let bytes = fs::read(&path).ok()?;
            let mode = fs::metadata(&path).ok()?.permissions().mode() & 0o7777;
            Some(RenderedFile {
                name: (*n).to_owned(),
                contents: Zeroizing::new(bytes),
                mode,
            })
        })
        .collect()
}

/// The digests of a rendered set, for state.
pub fn digests(rendered: &Rendered) -> BTreeMap<String, String> {
    rendered
        .files
        .iter()
        .map(|f| (f.name.clone(), sha256_hex(&f.contents)))
        .collect()
}

/// The version directory name `<dir>` currently points at, if it is a symlink into `<dir>.d`.
/// A real directory or file at `<dir>` is an error: it was not made by the agent, and replacing
/// it would destroy someone's data.
fn current_target(dir: &Path) -> io::Result<Option<String>> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(dir)?;
            Ok(target.file_name().map(|n| n.to_string_lossy().into_owned()))
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "it exists and is not the symlink the agent manages; move it away",
        )),
    }
}

fn same_file(path: &Path, contents: &[u8], mode: u32) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.file_type().is_file() || meta.permissions().mode() & 0o7777 != mode {
        return false;
    }
    fs::read(path).is_ok_and(|b| {
        let b = Zeroizing::new(b);
        sha256_hex(&b) == sha256_hex(contents)
    })
}

fn set_matches(dir: &Path, files: &[RenderedFile]) -> bool {
    files
        .iter()
        .all(|f| same_file(&dir.join(&f.name), &f.contents, f.mode))
}

fn split(dir: &Path) -> Option<(PathBuf, String)> {
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((parent, name))
}

/// Directory mode that lets exactly the readers of a file of `file_mode` through.
fn dir_mode(file_mode: u32) -> u32 {
    let mut m = 0o700;
    if file_mode & 0o040 != 0 {
        m |= 0o050;
    }
    if file_mode & 0o004 != 0 {
        m |= 0o005;
    }
    m
}

/// Creates missing directories with `mode`; existing ones are left as they are (their mode is
/// the operator's choice).
fn create_dirs(output: &str, dir: &Path, mode: u32) -> Result<(), DeliverError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    for m in missing.iter().rev() {
        let err = |step| {
            let output = output.to_owned();
            let path = m.clone();
            move |source| DeliverError::Io {
                output,
                step,
                path,
                source,
            }
        };
        match fs::create_dir(m) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err("create directory")(e)),
        }
        fs::set_permissions(m, fs::Permissions::from_mode(mode)).map_err(err("chmod"))?;
    }
    Ok(())
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn prune(versions: &Path, live: &str, previous: Option<&str>) {
    let Ok(entries) = fs::read_dir(versions) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == live || Some(name.as_str()) == previous {
            continue;
        }
        let path = entry.path();
        if let Err(e) = remove_dir_if_present(&path) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove an old version");
        }
    }
}

fn prune_links(parent: &Path, name: &str) {
    let prefix = format!(".{name}.link-");
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix)
            && entry.file_type().is_ok_and(|t| t.is_symlink())
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_pki::{KeyAlgorithm, LocalIssuer, generate_key};

    fn file(name: &str, bytes: &[u8], mode: u32) -> RenderedFile {
        RenderedFile {
            name: name.to_owned(),
            contents: Zeroizing::new(bytes.to_vec()),
            mode,
        }
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_single_file_is_written_once_and_then_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("out/secrets/config.json");
        let f = file("config.json", b"{\"a\":1}", 0o600);
        assert_eq!(
            deliver_file("c", &path, &f, Ownership::default()).unwrap(),
            Outcome::Changed
        );
        assert_eq!(fs::read(&path).unwrap(), b"{\"a\":1}");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(path.parent().unwrap()), 0o700);
        assert_eq!(
            deliver_file("c", &path, &f, Ownership::default()).unwrap(),
            Outcome::Unchanged
        );
        // Same bytes, other mode: changed.
        let g = file("config.json", b"{\"a\":1}", 0o640);
        assert_eq!(
            deliver_file("c", &path, &g, Ownership::default()).unwrap(),
            Outcome::Changed
        );
        assert_eq!(mode_of(&path), 0o640);
        // Edited behind the agent's back: rewritten.
        fs::write(&path, b"tampered").unwrap();
        assert_eq!(
            deliver_file("c", &path, &g, Ownership::default()).unwrap(),
            Outcome::Changed
        );
        assert_eq!(fs::read(&path).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn a_set_is_swapped_by_symlink_and_two_versions_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out/tls");
        let set = |v: &str| {
            vec![
                file("cert.pem", format!("cert {v}").as_bytes(), 0o644),
                file("key.pem", format!("key {v}").as_bytes(), 0o600),
            ]
        };
        for v in ["01", "02", "03"] {
            assert_eq!(
                deliver_set("tls", &dir, v, &set(v), Ownership::default()).unwrap(),
                Outcome::Changed
            );
            assert_eq!(
                fs::read_to_string(dir.join("cert.pem")).unwrap(),
                format!("cert {v}")
            );
            assert_eq!(
                fs::read_to_string(dir.join("key.pem")).unwrap(),
                format!("key {v}")
            );
            assert_eq!(fs::read_link(&dir).unwrap(), Path::new("tls.d").join(v));
        }
        let mut kept: Vec<String> = fs::read_dir(tmp.path().join("out/tls.d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(kept, ["02", "03"]);
        assert_eq!(mode_of(&dir.join("key.pem")), 0o600);
        assert_eq!(mode_of(&tmp.path().join("out/tls.d/03")), 0o755);
        // The same set again: nothing written.
        assert_eq!(
            deliver_set("tls", &dir, "03", &set("03"), Ownership::default()).unwrap(),
            Outcome::Unchanged
        );
        // Leftovers of an interrupted swap and delivery are cleaned by the next delivery.
        std::os::unix::fs::symlink("tls.d/03", tmp.path().join("out/.tls.link-999999")).unwrap();
        fs::create_dir(tmp.path().join("out/tls.d/.tmp-04-999999")).unwrap();
        deliver_set("tls", &dir, "04", &set("04"), Ownership::default()).unwrap();
        assert!(!tmp.path().join("out/.tls.link-999999").exists());
        assert!(!tmp.path().join("out/tls.d/.tmp-04-999999").exists());
        // A live version is never rewritten with other bytes.
        let e = deliver_set("tls", &dir, "04", &set("05"), Ownership::default()).unwrap_err();
        assert!(e.to_string().contains("never rewritten in place"), "{e}");
        // No temporary names left behind.
        assert!(
            fs::read_dir(tmp.path().join("out"))
                .unwrap()
                .all(|e| { !e.unwrap().file_name().to_string_lossy().starts_with('.') })
        );
        let read = read_set(&dir, &["cert.pem", "key.pem"]).unwrap();
        assert_eq!(&read[1].contents[..], b"key 04");
        assert!(read_set(&dir, &["nope.pem"]).is_none());
    }

    #[test]
    fn a_set_never_replaces_a_real_directory_and_bad_versions_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("precious"), b"x").unwrap();
        let e = deliver_set(
            "tls",
            &dir,
            "01",
            &[file("a", b"a", 0o600)],
            Ownership::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("not the symlink the agent manages"),
            "{e}"
        );
        assert!(dir.join("precious").exists());
        let e = deliver_set(
            "tls",
            &tmp.path().join("x"),
            "../up",
            &[],
            Ownership::default(),
        )
        .unwrap_err();
        assert!(matches!(e, DeliverError::Refused { .. }), "{e}");
    }

    #[test]
    fn a_failed_write_keeps_the_previous_set() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        deliver_set(
            "tls",
            &dir,
            "01",
            &[file("cert.pem", b"one", 0o644)],
            Ownership::default(),
        )
        .unwrap();
        // A file name that cannot be created (a directory in the way) stands in for a full disk.
        let bad = [
            file("cert.pem", b"two", 0o644),
            file("sub/x.pem", b"two", 0o644),
        ];
        assert!(deliver_set("tls", &dir, "02", &bad, Ownership::default()).is_err());
        assert_eq!(fs::read_to_string(dir.join("cert.pem")).unwrap(), "one");
        assert!(!tmp.path().join("tls.d/02").exists());
        assert!(
            fs::read_dir(tmp.path().join("tls.d")).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
        );
    }

    struct Pki {
        root: LocalIssuer,
        int: LocalIssuer,
    }

    fn pki() -> Pki {
        let now = OffsetDateTime::now_utc();
        let root_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "root");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(3650);
        let root_cert = p.self_signed(&root_key).unwrap();
        let int_key = rcgen::KeyPair::generate().unwrap();
        let mut ip = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ip.distinguished_name.push(rcgen::DnType::CommonName, "int");
        ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ip.not_before = now - time::Duration::days(1);
        ip.not_after = now + time::Duration::days(365);
        let issuer = rcgen::Issuer::from_params(&p, &root_key);
        let int_cert = ip.signed_by(&int_key, &issuer).unwrap();
        Pki {
            root: LocalIssuer::from_pem(&root_cert.pem(), &root_key.serialize_pem()).unwrap(),
            int: LocalIssuer::from_pem(&int_cert.pem(), &int_key.serialize_pem()).unwrap(),
        }
    }

    fn leaf_set(pki: &Pki, names: &[&str], days: i64) -> Vec<RenderedFile> {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let leaf = pki
            .int
            .issue_server(
                &key.public_key_der(),
                &names[0],
                &names,
                &[],
                time::Duration::days(days),
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        let chain = format!("{}\n", pki.int.cert_pem().trim());
        let cert = format!("{}\n", leaf.trim());
        vec![
            file(CERT, cert.as_bytes(), 0o644),
            file(KEY, key.private_key_pem().as_bytes(), 0o600),
            file(CHAIN, chain.as_bytes(), 0o644),
            file(FULLCHAIN, format!("{cert}{chain}").as_bytes(), 0o644),
        ]
    }

    #[test]
    fn a_good_set_verifies_and_each_defect_is_named() {
        let pki = pki();
        let now = OffsetDateTime::now_utc();
        let sans = vec!["b.test".to_owned()];
        let exp = Expected {
            common_name: "a.test",
            sans: &sans,
        };
        let anchor = pki.root.cert_pem();
        let good = leaf_set(&pki, &["a.test", "b.test"], 30);
        verify_certificate_set("tls", &good, anchor, exp, now).unwrap();

        // Another key.
        let other = leaf_set(&pki, &["a.test", "b.test"], 30);
        let mut swapped = leaf_set(&pki, &["a.test", "b.test"], 30);
        swapped[1] = file(KEY, &other[1].contents, 0o600);
        let e = verify_certificate_set("tls", &swapped, anchor, exp, now).unwrap_err();
        assert!(e.to_string().contains("key does not belong"), "{e}");

        // Wrong names.
        let wrong = leaf_set(&pki, &["a.test", "c.test"], 30);
        let e = verify_certificate_set("tls", &wrong, anchor, exp, now).unwrap_err();
        assert!(e.to_string().contains("not the profile's"), "{e}");

        // Another trust anchor.
        let stranger = self::pki();
        let e =
            verify_certificate_set("tls", &good, stranger.root.cert_pem(), exp, now).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not verify to the trust anchor"),
            "{e}"
        );
        // ...but a bundle with the right anchor in it is fine.
        let bundle = format!("{}{}", stranger.root.cert_pem(), anchor);
        verify_certificate_set("tls", &good, &bundle, exp, now).unwrap();

        // fullchain that is not cert + chain.
        let mut bad_full = leaf_set(&pki, &["a.test", "b.test"], 30);
        bad_full[3] = file(FULLCHAIN, &good[0].contents, 0o644);
        let e = verify_certificate_set("tls", &bad_full, anchor, exp, now).unwrap_err();
        assert!(e.to_string().contains("fullchain.pem"), "{e}");

        // Expired by the time it is checked.
        let e = verify_certificate_set("tls", &good, anchor, exp, now + time::Duration::days(31))
            .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn debug_of_a_rendered_file_shows_no_bytes() {
        let f = file(KEY, b"-----BEGIN PRIVATE KEY-----SECRETBYTES", 0o600);
        let d = format!("{f:?}");
        assert!(!d.contains("SECRETBYTES"), "{d}");
    }

    #[test]
    fn directory_modes_follow_the_readers() {
        assert_eq!(dir_mode(0o600), 0o700);
        assert_eq!(dir_mode(0o640), 0o750);
        assert_eq!(dir_mode(0o644), 0o755);
    }
}
