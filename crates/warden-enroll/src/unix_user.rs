//! Who owns an identity's files on the host.
//!
//! On a real host (running as root, no root directory given) every identity gets its own
//! system user, created if missing, and the identity directory belongs to it: a compromised
//! service can read its own key and nobody else's. Everywhere else (not root, or a
//! `--root-dir` staging area) the files belong to whoever runs the command, which is what makes
//! the whole flow testable without root.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};
use serde::Serialize;

use crate::error::{Error, Result};

/// `useradd`, by absolute path: this runs as root, so `PATH` is not trusted to find it.
pub const USERADD: &str = "/usr/sbin/useradd";

/// Who should own the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The user running the command; nothing is created or chowned.
    CurrentUser,
    /// A dedicated system user, created with `useradd` if missing; the identity directory tree
    /// is chowned to it.
    ServiceUser {
        /// The user name (the identity's name unless overridden).
        name: String,
    },
}

impl Owner {
    /// The rule the CLI applies: a dedicated user only when running as root on the real host
    /// layout (no `root_dir`); `user` overrides the identity's name as the user name.
    pub fn for_host(
        running_as_root: bool,
        root_dir_given: bool,
        identity: &str,
        user: Option<&str>,
    ) -> Self {
        if running_as_root && !root_dir_given {
            Self::ServiceUser {
                name: user.unwrap_or(identity).to_owned(),
            }
        } else {
            Self::CurrentUser
        }
    }
}

/// Whether this process runs with effective uid 0.
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// What happened about the owner, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerReport {
    /// The user owning the layout.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// `service-user` (a dedicated user owns the tree) or `current-user`.
    pub mode: &'static str,
    /// Whether `useradd` created the user during this run.
    pub created: bool,
}

/// A resolved owner: the report plus the ids to chown to (`None` when nothing is chowned).
#[derive(Debug, Clone)]
pub(crate) struct ResolvedOwner {
    pub(crate) report: OwnerReport,
    pub(crate) chown_to: Option<(Uid, Gid)>,
}

/// Checks a user name against what `useradd` accepts on Debian-like systems (and what cannot
/// be mistaken for a command-line option): 1-32 characters of `a-z 0-9 _ -`, starting with a
/// letter or `_`.
pub fn validate_user_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidUserName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 32 {
        return bad("it must be 1 to 32 characters long");
    }
    if !name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return bad("it must start with a lower-case letter or '_'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return bad("only a-z, 0-9, '_' and '-' are allowed");
    }
    Ok(())
}

/// The exact argv that creates `user`: a system account without a home directory or a login
/// shell, with its own group (so the gid is predictable rather than a distribution default).
pub fn useradd_argv(user: &str) -> Vec<String> {
    [
        USERADD,
        "--system",
        "--user-group",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--",
        user,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Resolves `owner`, creating the service user if it is missing.
pub(crate) async fn resolve(owner: &Owner) -> Result<ResolvedOwner> {
    match owner {
        Owner::CurrentUser => {
            let uid = nix::unistd::geteuid();
            let gid = nix::unistd::getegid();
            let user = User::from_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name);
            Ok(ResolvedOwner {
                report: OwnerReport {
                    user,
                    uid: uid.as_raw(),
                    gid: gid.as_raw(),
                    mode: "current-user",
                    created: false,
                },
                chown_to: None,
            })
        }
        Owner::ServiceUser { name } => {
            validate_user_name(name)?;
            let (user, created) = match lookup(name)? {
                Some(u) => (u, false),
                None => {
                    useradd(name).await?;
                    let u =
                        lookup(name)?.ok_or_else(|| Error::UserVanished { user: name.clone() })?;
                    (u, true)
                }
            };
            Ok(ResolvedOwner {
                report: OwnerReport {
                    user: user.name.clone(),
                    uid: user.uid.as_raw(),
                    gid: user.gid.as_raw(),
                    mode: "service-user",
                    created,
                },
                chown_to: Some((user.uid, user.gid)),
            })
        }
    }
}

fn lookup(name: &str) -> Result<Option<User>> {
    User::from_name(name).map_err(|source| Error::UserLookup {
        user: name.to_owned(),
        source,
    })
}

async fn useradd(user: &str) -> Result<()> {
    let argv = useradd_argv(user);
    tracing::info!(user, "creating system user");
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| Error::UserAddSpawn {
            program: USERADD,
            user: user.to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::UserAdd {
        program: USERADD,
        user: user.to_owned(),
        status: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr)
            .trim()
            .chars()
            .take(300)
            .collect(),
    })
}

/// Chowns `dir` and everything below it to `uid:gid`, without following symlinks (a link
/// planted in the tree must not hand some other file to the service user).
pub(crate) fn chown_tree(dir: &Path, uid: Uid, gid: Gid) -> Result<()> {
    let io = |path: &Path, step: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, step, source }
    };
    std::os::unix::fs::lchown(dir, Some(uid.as_raw()), Some(gid.as_raw()))
        .map_err(io(dir, "chown"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir, "inspect"))?;
    if !meta.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(io(dir, "list"))? {
        let entry = entry.map_err(io(dir, "list"))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path, "inspect"))?;
        if kind.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(io(&path, "chown"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_on_the_real_layout_gets_a_service_user() {
        assert_eq!(
            Owner::for_host(true, false, "billing", None),
            Owner::ServiceUser {
                name: "billing".to_owned()
            }
        );
        assert_eq!(
            Owner::for_host(true, false, "billing", Some("svc-billing")),
            Owner::ServiceUser {
                name: "svc-billing".to_owned()
            }
        );
        assert_eq!(
            Owner::for_host(true, true, "billing", None),
            Owner::CurrentUser
        );
        assert_eq!(
            Owner::for_host(false, false, "billing", Some("x")),
            Owner::CurrentUser
        );
    }

    #[test]
    fn user_names_that_useradd_or_argv_would_misread_are_refused() {
        for ok in ["billing", "edge", "_svc", "a-b_c9"] {
            validate_user_name(ok).unwrap();
        }
        for bad in [
            "",
            "-rf",
            "9lives",
            "Billing",
            "a b",
            "a/b",
            "x".repeat(33).as_str(),
        ] {
            assert!(
                matches!(validate_user_name(bad), Err(Error::InvalidUserName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn useradd_argv_is_explicit_and_ends_options_before_the_name() {
        let argv = useradd_argv("billing");
        assert_eq!(argv[0], "/usr/sbin/useradd");
        assert!(argv.contains(&"--system".to_owned()));
        assert!(argv.contains(&"--no-create-home".to_owned()));
        let shell = argv.iter().position(|a| a == "--shell").unwrap();
        assert_eq!(argv[shell + 1], "/usr/sbin/nologin");
        assert_eq!(&argv[argv.len() - 2..], ["--", "billing"]);
    }

    #[tokio::test]
    async fn the_current_user_owns_without_creating_anything() {
        let r = resolve(&Owner::CurrentUser).await.unwrap();
        assert!(r.chown_to.is_none());
        assert!(!r.report.created);
        assert_eq!(r.report.mode, "current-user");
        assert_eq!(r.report.uid, nix::unistd::geteuid().as_raw());
    }

    #[test]
    fn chown_tree_to_ourselves_reaches_every_entry_and_skips_symlink_targets() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("id");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        chown_tree(&d, uid, gid).unwrap();
        assert!(d.join("link").is_symlink());
        // Fails only if an entry was unreadable; a missing dir is an error naming it.
        let err = chown_tree(&tmp.path().join("missing"), uid, gid).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
