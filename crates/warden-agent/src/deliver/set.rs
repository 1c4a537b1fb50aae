//! Certificate sets: versioned directories `<dir>.d/<version>/`, the live symlink `<dir>`, and
//! pruning of old versions.
//!
//! **What pruning may delete.** Only a directory that is, at the same time: an entry of the
//! `<dir>.d` directory the agent opened itself (no symlink on the way, every directory owned
//! as the threat model says); named like a version (or like the agent's own temporary
//! directory); a real directory, not a symlink; and holding the agent's marker
//! [`MARKER`] — a regular file owned by the agent's own uid whose text names this output and
//! this version. The agent writes the marker first into each version it creates, so it is the
//! ownership record: another user cannot make a file owned by the agent's uid, and a
//! directory without one (the operator's notes, a backup) is never touched. Contents are
//! removed with `unlinkat` relative to the version directory's descriptor, never by path and
//! never recursively: a version holding a subdirectory (the agent never makes one) is left
//! in place with a warning. The marker goes last, so an interrupted prune is finished later.

use std::io;
use std::path::{Path, PathBuf};

use warden_files::{Dir, Kind};
use zeroize::Zeroizing;

use super::{
    DeliverError, Outcome, Ownership, READ_LIMIT, dir_mode, open_parent, read_bounded, same_file,
};
use crate::output::RenderedFile;

/// The marker the agent writes into every version directory it creates (see the module
/// documentation).
pub(crate) const MARKER: &str = ".warden-version";
/// The most read of a marker (the agent's is under 200 bytes).
const MARKER_LIMIT: u64 = 4096;

/// Delivers a file set into `<dir>.d/<version>/` and points the symlink `<dir>` at it
/// (`root` is the identity directory). See the module documentation of `deliver`. `version`
/// must be a plain name (a certificate serial).
pub fn deliver_set(
    output: &str,
    root: &Path,
    dir: &Path,
    version: &str,
    files: &[RenderedFile],
    owner: Ownership,
) -> Result<Outcome, DeliverError> {
    let refuse = |reason: String| DeliverError::Refused {
        output: output.to_owned(),
        reason,
    };
    let write = |source| DeliverError::Write {
        output: output.to_owned(),
        source,
    };
    if !is_version_name(version) {
        return Err(refuse(format!("`{version}` is not a usable version name")));
    }
    let widest = files.iter().fold(0, |m, f| m | f.mode);
    let (parent, name) = open_parent(root, dir, owner, Some(dir_mode(widest))).map_err(write)?;
    let versions_name = format!("{name}.d");
    let versions = parent
        .create_dirs(Path::new(&versions_name), dir_mode(widest))
        .map_err(write)?;

    let current = current_version(output, &parent, &name)?;
    if current.as_deref() == Some(version) {
        let live = versions.open(Path::new(version)).map_err(write)?;
        if set_matches(&live, files, owner) {
            return Ok(Outcome::Unchanged);
        }
        // The same version with other bytes: never rewrite the directory the live symlink
        // points at (a reader could see a mix).
        return Err(refuse(format!(
            "version {version} is live with other contents; it is never rewritten in place"
        )));
    }

    // 1. The new version, complete and fsynced, under a temporary name.
    let tmp = format!(".tmp-{version}-{}", std::process::id());
    remove_version(output, &versions, &tmp)?;
    let placed =
        write_version(output, &versions, &tmp, version, files, owner, widest).and_then(|()| {
            // A directory of this name that is not live is a leftover of an interrupted
            // delivery; one the agent did not make stays, and this delivery is refused.
            remove_version(output, &versions, version)?;
            versions.rename(&tmp, version).map_err(write)?;
            versions.sync().map_err(write)
        });
    if let Err(e) = placed {
        let _ = remove_version(output, &versions, &tmp);
        return Err(e);
    }

    // 2. The swap: a symlink under a temporary name renamed over `<dir>`.
    let target = PathBuf::from(&versions_name).join(version);
    parent
        .replace_symlink(&name, &target, owner.pair())
        .map_err(write)?;

    // 3. Keep the live and the previous version; every other version the agent made goes,
    //    with temporary symlinks an interrupted swap may have left.
    prune(output, &versions, version, current.as_deref());
    prune_links(&parent, &name);
    Ok(Outcome::Changed)
}

/// Writes the marker, then every file, into the new directory `tmp` and fsyncs it.
fn write_version(
    output: &str,
    versions: &Dir,
    tmp: &str,
    version: &str,
    files: &[RenderedFile],
    owner: Ownership,
    widest: u32,
) -> Result<(), DeliverError> {
    let write = |source| DeliverError::Write {
        output: output.to_owned(),
        source,
    };
    let dir = versions.create_dir(tmp, 0o700).map_err(write)?;
    dir.write(
        MARKER,
        marker_text(output, version).as_bytes(),
        warden_files::Mode::OwnerOnly,
        None,
    )
    .map_err(write)?;
    for f in files {
        if f.name == MARKER {
            return Err(DeliverError::Refused {
                output: output.to_owned(),
                reason: format!("{MARKER} is the agent's own file name"),
            });
        }
        dir.write(
            &f.name,
            &f.contents,
            warden_files::Mode::Custom(f.mode),
            owner.pair(),
        )
        .map_err(write)?;
    }
    dir.chown(owner.uid, owner.gid).map_err(write)?;
    dir.set_mode(dir_mode(widest)).map_err(write)?;
    dir.sync().map_err(write)
}

/// Reads the files of the set `<dir>` points at, or `None` when any is missing or unreadable,
/// or when `<dir>` is not the agent's symlink into `<dir>.d` (nothing is read through a
/// symlink the agent did not make, nor through a symlinked directory on the way).
pub fn read_set(
    root: &Path,
    dir: &Path,
    names: &[&str],
    owner: Ownership,
) -> Option<Vec<RenderedFile>> {
    let (parent, name) = match open_parent(root, dir, owner, None) {
        Ok(p) => p,
        Err(e) if is_not_found(&e) => return None,
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "not reading the certificate set");
            return None;
        }
    };
    let version = live_version(&parent, &name).ok()??;
    let live = parent
        .open(&Path::new(&format!("{name}.d")).join(&version))
        .inspect_err(|e| tracing::warn!(error = %e, "not reading the certificate set"))
        .ok()?;
    names
        .iter()
        .map(|n| {
            let f = read_bounded(&live, n, READ_LIMIT).ok()??;
            Some(RenderedFile {
                name: (*n).to_owned(),
                contents: Zeroizing::new(f.bytes),
                mode: f.mode,
            })
        })
        .collect()
}

/// Every version the agent keeps for `<dir>` (`<dir>.d/<version>`, its marker inside), each with
/// the files `names`, read without following a symlink anywhere: the material a repair can
/// restore when the live symlink is gone. Versions that are incomplete or not the agent's are
/// left out.
pub fn read_versions(
    root: &Path,
    dir: &Path,
    names: &[&str],
    owner: Ownership,
) -> Vec<(String, Vec<RenderedFile>)> {
    let Ok((parent, name)) = open_parent(root, dir, owner, None) else {
        return Vec::new();
    };
    let Ok(Some(versions)) = parent.try_open(Path::new(&format!("{name}.d"))) else {
        return Vec::new();
    };
    let Ok(entries) = versions.entries() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (version, _) in entries {
        if !is_version_name(&version) {
            continue;
        }
        let Ok(dir) = versions.open(Path::new(&version)) else {
            continue;
        };
        if read_bounded(&dir, MARKER, MARKER_LIMIT)
            .ok()
            .flatten()
            .is_none()
        {
            continue;
        }
        let files: Option<Vec<RenderedFile>> = names
            .iter()
            .map(|n| {
                let f = read_bounded(&dir, n, READ_LIMIT).ok()??;
                Some(RenderedFile {
                    name: (*n).to_owned(),
                    contents: Zeroizing::new(f.bytes),
                    mode: f.mode,
                })
            })
            .collect();
        if let Some(files) = files {
            out.push((version, files));
        }
    }
    out
}

fn is_not_found(e: &warden_files::Error) -> bool {
    matches!(e, warden_files::Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// The version `<dir>` points at, if it is the agent's symlink into `<dir>.d`. A real
/// directory or file at `<dir>` is an error: it was not made by the agent, and replacing it
/// would destroy someone's data. A symlink pointing anywhere else is replaced (the swap
/// renames over the link itself, never follows it) and its target never considered a version.
fn current_version(output: &str, parent: &Dir, name: &str) -> Result<Option<String>, DeliverError> {
    live_version(parent, name).map_err(|kind| DeliverError::Io {
        output: output.to_owned(),
        step: "inspect",
        path: parent.entry_path(name),
        source: io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "it exists ({}) and is not the symlink the agent manages; move it away",
                match kind {
                    Some(Kind::Dir) => "a directory",
                    Some(Kind::File) => "a file",
                    _ => "not a symlink",
                }
            ),
        ),
    })
}

/// `Ok(Some(version))` for the agent's symlink `<name>` → `<name>.d/<version>`, `Ok(None)` when
/// absent or pointing elsewhere, `Err(kind)` when something else is there (`None` = unreadable).
fn live_version(parent: &Dir, name: &str) -> Result<Option<String>, Option<Kind>> {
    match parent.read_link(name) {
        Ok(None) => Ok(None),
        Ok(Some(Err(kind))) => Err(Some(kind)),
        Err(_) => Err(None),
        Ok(Some(Ok(target))) => {
            let versions = format!("{name}.d");
            let mut parts = target.iter();
            let ok = parts.next().is_some_and(|p| p == versions.as_str());
            let version = parts.next().and_then(|v| v.to_str()).map(str::to_owned);
            Ok(version.filter(|v| ok && parts.next().is_none() && is_version_name(v)))
        }
    }
}

fn set_matches(dir: &Dir, files: &[RenderedFile], owner: Ownership) -> bool {
    files
        .iter()
        .all(|f| same_file(dir, &f.name, &f.contents, f.mode, owner))
}

/// A certificate serial as the agent names version directories: ASCII letters, digits, `-`
/// and `_`, not starting with `.`.
fn is_version_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The version a temporary directory `.tmp-<version>-<pid>` was being written for.
fn tmp_version(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(".tmp-")?;
    let (version, pid) = rest.rsplit_once('-')?;
    (is_version_name(version) && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .then_some(version)
}

fn marker_text(output: &str, version: &str) -> String {
    format!("warden-agent version directory\noutput {output}\nversion {version}\n")
}

/// Why a directory in `<dir>.d` is not the agent's to remove; `None` when it is.
fn not_ours(output: &str, versions: &Dir, name: &str) -> Option<String> {
    let version = if let Some(v) = tmp_version(name) {
        v
    } else if is_version_name(name) {
        name
    } else {
        return Some("its name is not a version's".to_owned());
    };
    match versions.meta(name) {
        Ok(Some(m)) if m.kind == Kind::Dir => {}
        Ok(Some(_)) => return Some("it is not a directory".to_owned()),
        Ok(None) => return Some("it is gone".to_owned()),
        Err(e) => return Some(e.to_string()),
    }
    let dir = match versions.open(Path::new(name)) {
        Ok(d) => d,
        Err(e) => return Some(e.to_string()),
    };
    let agent = nix::unistd::geteuid().as_raw();
    match (dir.meta(MARKER), read_bounded(&dir, MARKER, MARKER_LIMIT)) {
        (Ok(Some(m)), Ok(Some(f)))
            if m.uid == agent && f.bytes == marker_text(output, version).as_bytes() =>
        {
            None
        }
        _ => Some(format!("it has no {MARKER} written by the agent")),
    }
}

/// Removes the version directory `name` if the agent made it (see the module documentation);
/// `Ok` when it is gone or was never there, a refusal when something else has the name.
fn remove_version(output: &str, versions: &Dir, name: &str) -> Result<(), DeliverError> {
    if versions.meta(name).ok().flatten().is_none() {
        return Ok(());
    }
    // An empty temporary directory is what a crash right after its creation leaves: removing
    // an empty directory cannot destroy anything.
    if tmp_version(name).is_some() && versions.remove_empty_dir(name).is_ok() {
        return Ok(());
    }
    if let Some(why) = not_ours(output, versions, name) {
        return Err(DeliverError::Refused {
            output: output.to_owned(),
            reason: format!(
                "{} is in the way and is not a version the agent made ({why}); move it away",
                versions.entry_path(name).display()
            ),
        });
    }
    let write = |source| DeliverError::Write {
        output: output.to_owned(),
        source,
    };
    let dir = versions.open(Path::new(name)).map_err(write)?;
    let entries = dir.entries().map_err(write)?;
    if let Some((sub, _)) = entries.iter().find(|(_, k)| *k == Kind::Dir) {
        return Err(DeliverError::Refused {
            output: output.to_owned(),
            reason: format!(
                "{} holds a directory ({sub}) the agent did not create; it is left in place",
                dir.path().display()
            ),
        });
    }
    for (entry, _) in entries.iter().filter(|(n, _)| n != MARKER) {
        dir.remove_file(entry).map_err(write)?;
    }
    dir.remove_file(MARKER).map_err(write)?;
    versions.remove_empty_dir(name).map_err(write)?;
    Ok(())
}

fn prune(output: &str, versions: &Dir, live: &str, previous: Option<&str>) {
    let entries = match versions.entries() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(output, error = %e, "could not list old versions");
            return;
        }
    };
    for (name, _) in entries {
        if name == live || Some(name.as_str()) == previous {
            continue;
        }
        if tmp_version(&name).is_none()
            && let Some(why) = not_ours(output, versions, &name)
        {
            tracing::debug!(output, path = %versions.entry_path(&name).display(), why, "left alone");
            continue;
        }
        if let Err(e) = remove_version(output, versions, &name) {
            tracing::warn!(output, error = %e, "could not remove an old version");
        }
    }
    let _ = versions.sync();
}

/// Removes temporary symlinks an interrupted swap left beside `<dir>`: `.<name>.` names that
/// are symlinks (the link only, never what it points at).
fn prune_links(parent: &Dir, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = parent.entries() else {
        return;
    };
    for (entry, kind) in entries {
        let temp = entry.ends_with(".tmp") || entry.starts_with(&format!("{prefix}link-"));
        if kind == Kind::Symlink && entry.starts_with(&prefix) && temp {
            let _ = parent.remove_file(&entry);
        }
    }
}
