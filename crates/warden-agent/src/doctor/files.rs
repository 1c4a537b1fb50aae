//! The identity's files on disk: present, not symlinks, owned by the identity's user, and no
//! wider than `warden identity enroll` wrote them (docs/identity.md, the layout of
//! `warden_enroll::layout`).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// What one path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    /// A directory nobody else may enter (0700).
    PrivateDir,
    /// A private key: a regular file nobody else may read (0600).
    Secret,
    /// A certificate, trust anchor or config: readable by others, writable by nobody else.
    Public,
}

/// One problem, said as what is wrong and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    pub(super) what: String,
    pub(super) fix: String,
}

/// Checks `path` against `rule`; `owner` is the identity's user (the identity directory's
/// owner). Root may own the public files (an image built as root).
pub(super) fn check(path: &Path, rule: Rule, owner: u32) -> Option<Problem> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(Problem {
                what: format!("{shown} is missing"),
                fix: "re-run `warden identity enroll` for this identity (it re-creates the layout and keeps what is still good)".to_owned(),
            });
        }
        Err(e) => {
            return Some(Problem {
                what: format!("{shown}: {e}"),
                fix: "run the doctor as the identity's user (or root)".to_owned(),
            });
        }
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Some(Problem {
            what: format!("{shown} is a symlink"),
            fix: format!(
                "replace the link with the file itself (the agent never reads or writes through a symlink): `rm {shown}` and re-run `warden identity enroll`"
            ),
        });
    }
    let want_dir = rule == Rule::PrivateDir;
    if want_dir != ft.is_dir() || (!want_dir && !ft.is_file()) {
        return Some(Problem {
            what: format!(
                "{shown} is not a {}",
                if want_dir {
                    "directory"
                } else {
                    "regular file"
                }
            ),
            fix: "move it aside and re-run `warden identity enroll`".to_owned(),
        });
    }
    let mode = meta.mode() & 0o7777;
    let (too_wide, want) = match rule {
        Rule::PrivateDir => (mode & 0o077 != 0, 0o700),
        Rule::Secret => (mode & 0o077 != 0, 0o600),
        Rule::Public => (mode & 0o022 != 0, 0o644),
    };
    if too_wide {
        return Some(Problem {
            what: format!("{shown} has mode {mode:04o}, wider than {want:04o}"),
            fix: format!("chmod {want:04o} {shown}"),
        });
    }
    let uid = meta.uid();
    let owner_ok = uid == owner || (rule == Rule::Public && uid == 0);
    if !owner_ok {
        return Some(Problem {
            what: format!("{shown} is owned by uid {uid}, not the identity's user (uid {owner})"),
            fix: format!("chown {owner} {shown}"),
        });
    }
    None
}

/// Every path of the identity that is checked, with its rule.
pub(super) fn layout(
    dir: &Path,
    config: &Path,
    key: Option<&Path>,
    cert: Option<&Path>,
    trust: Option<&Path>,
    state: &Path,
) -> Vec<(PathBuf, Rule)> {
    let mut v = vec![
        (dir.to_path_buf(), Rule::PrivateDir),
        (config.to_path_buf(), Rule::Public),
    ];
    for (p, rule) in [
        (key.and_then(Path::parent), Rule::PrivateDir),
        (key, Rule::Secret),
        (cert, Rule::Public),
        (trust.and_then(Path::parent), Rule::PrivateDir),
        (trust, Rule::Public),
        (Some(state), Rule::PrivateDir),
    ] {
        if let Some(p) = p
            && !v.iter().any(|(q, _)| q == p)
        {
            v.push((p.to_path_buf(), rule));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_widened_key_a_symlink_and_a_missing_file_are_each_named_with_a_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let key = tmp.path().join("client.key");
        std::fs::write(&key, "k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(check(&key, Rule::Secret, me), None);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = check(&key, Rule::Secret, me).expect("0644 key");
        assert!(p.what.contains("mode 0644"), "{p:?}");
        assert!(p.fix.starts_with("chmod 0600 "), "{p:?}");
        // Public files may be read by others, not written.
        assert_eq!(check(&key, Rule::Public, me), None);
        let link = tmp.path().join("link.key");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        assert!(
            check(&link, Rule::Secret, me)
                .unwrap()
                .what
                .contains("symlink")
        );
        let gone = tmp.path().join("gone");
        assert!(
            check(&gone, Rule::Public, me)
                .unwrap()
                .what
                .contains("missing")
        );
        // Another owner.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = check(&key, Rule::Secret, me + 1).expect("another owner");
        assert!(p.what.contains("owned by uid"), "{p:?}");
    }
}
