use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};

use super::*;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A root directory and, beside it, a victim directory with one file that must survive.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("id");
    let victim = tmp.path().join("victim");
    fs::create_dir_all(root.join("out/secrets")).unwrap();
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("keep"), b"precious").unwrap();
    (tmp, root, victim)
}

fn untouched(victim: &Path) {
    let mut names: Vec<_> = fs::read_dir(victim)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["keep"], "something was written into the victim");
    assert_eq!(fs::read(victim.join("keep")).unwrap(), b"precious");
}

fn root_dir(root: &Path) -> Dir {
    Dir::open_root(root, Trusted::process()).unwrap()
}

#[test]
fn a_symlink_at_the_first_component_is_refused() {
    let (_t, root, victim) = setup();
    fs::remove_dir_all(root.join("out")).unwrap();
    symlink(&victim, root.join("out")).unwrap();
    let e = root_dir(&root)
        .create_dirs(Path::new("out/secrets"), 0o700)
        .unwrap_err();
    match &e {
        Error::SymlinkComponent { component, .. } => assert_eq!(component, &root.join("out")),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("is a symbolic link"), "{e}");
    untouched(&victim);
}

#[test]
fn a_symlink_at_a_middle_component_is_refused() {
    let (_t, root, victim) = setup();
    fs::create_dir_all(root.join("a/b")).unwrap();
    symlink(&victim, root.join("a/b/c")).unwrap();
    let e = root_dir(&root)
        .create_dirs(Path::new("a/b/c/d"), 0o700)
        .unwrap_err();
    assert!(
        matches!(&e, Error::SymlinkComponent { component, .. } if component == &root.join("a/b/c")),
        "{e}"
    );
    untouched(&victim);
}

#[test]
fn a_symlink_at_the_last_component_is_refused_for_dirs_files_and_reads() {
    let (_t, root, victim) = setup();
    symlink(&victim, root.join("out/secrets/last")).unwrap();
    let dir = root_dir(&root);
    let e = dir.open(Path::new("out/secrets/last")).unwrap_err();
    assert!(matches!(e, Error::SymlinkComponent { .. }), "{e}");
    // As a file name: neither written through nor read through.
    let secrets = dir.open(Path::new("out/secrets")).unwrap();
    symlink(victim.join("keep"), root.join("out/secrets/f.json")).unwrap();
    let e = secrets
        .write("f.json", b"evil", Mode::OwnerOnly, None)
        .unwrap_err();
    assert!(matches!(e, Error::Symlink { .. }), "{e}");
    assert!(matches!(secrets.read("f.json"), Err(Error::Symlink { .. })));
    untouched(&victim);
}

#[test]
fn a_directory_of_another_user_is_refused_unless_it_is_the_owner() {
    // Handing a directory to another user needs root (the CI and lab hosts run tests as root).
    if !is_root() {
        return;
    }
    let (_t, root, _victim) = setup();
    rustix::fs::chown(
        root.join("out"),
        Some(rustix::fs::Uid::from_raw(65534)),
        None,
    )
    .unwrap();
    let e = root_dir(&root)
        .create_dirs(Path::new("out/secrets"), 0o700)
        .unwrap_err();
    match &e {
        Error::UntrustedOwner { component, uid, .. } => {
            assert_eq!(component, &root.join("out"));
            assert_eq!(*uid, 65534);
        }
        other => panic!("{other}"),
    }
    // Trusted when it is the output's configured owner.
    Dir::open_root(&root, Trusted::process().with_owner(Some(65534), None))
        .unwrap()
        .create_dirs(Path::new("out/secrets"), 0o700)
        .unwrap();
}

#[test]
fn a_directory_writable_by_others_is_refused_unless_sticky() {
    let (_t, root, _victim) = setup();
    let out = root.join("out");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).unwrap();
    let e = root_dir(&root).open(Path::new("out/secrets")).unwrap_err();
    assert!(
        matches!(e, Error::WritableByOthers { mode: 0o777, .. }),
        "{e}"
    );
    fs::set_permissions(&out, fs::Permissions::from_mode(0o1777)).unwrap();
    root_dir(&root).open(Path::new("out/secrets")).unwrap();
}

#[test]
fn a_directory_replaced_by_a_symlink_between_calls() {
    let (_t, root, victim) = setup();
    let dir = root_dir(&root);
    let secrets = dir.create_dirs(Path::new("out/secrets"), 0o700).unwrap();
    secrets
        .write("a.json", b"one", Mode::OwnerOnly, None)
        .unwrap();
    // The attacker moves the directory away and puts a symlink in its place.
    fs::rename(root.join("out/secrets"), root.join("out/moved")).unwrap();
    symlink(&victim, root.join("out/secrets")).unwrap();
    // A new walk refuses it...
    let e = dir
        .create_dirs(Path::new("out/secrets"), 0o700)
        .unwrap_err();
    assert!(matches!(e, Error::SymlinkComponent { .. }), "{e}");
    // ...and the handle already open still points at the directory that was checked.
    secrets
        .write("b.json", b"two", Mode::OwnerOnly, None)
        .unwrap();
    assert_eq!(fs::read(root.join("out/moved/b.json")).unwrap(), b"two");
    untouched(&victim);
}

#[test]
fn created_directories_get_exactly_their_mode_and_existing_ones_keep_theirs() {
    let (_t, root, _victim) = setup();
    fs::set_permissions(root.join("out"), fs::Permissions::from_mode(0o750)).unwrap();
    let old = rustix::process::umask(RawMode::from_raw_mode(0o077));
    let made = root_dir(&root).create_dirs(Path::new("out/x/y"), 0o755);
    rustix::process::umask(old);
    made.unwrap();
    let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("out"), 0o750);
    assert_eq!(mode("out/x"), 0o755);
    assert_eq!(mode("out/x/y"), 0o755);
}

#[test]
fn names_that_leave_the_root_are_refused() {
    let (_t, root, _victim) = setup();
    let dir = root_dir(&root);
    for rel in ["../victim", "out/../../victim", "/etc"] {
        let e = dir.create_dirs(Path::new(rel), 0o700).unwrap_err();
        assert!(matches!(e, Error::BadName { .. }), "{rel}: {e}");
    }
    for name in ["..", "a/b", "", "."] {
        let e = dir.write(name, b"x", Mode::OwnerOnly, None).unwrap_err();
        assert!(matches!(e, Error::BadName { .. }), "{name:?}: {e}");
    }
}

#[test]
fn writes_replace_atomically_and_leave_no_temporary_file() {
    let (_t, root, _victim) = setup();
    let dir = root_dir(&root).open(Path::new("out/secrets")).unwrap();
    dir.write("k.pem", b"one", Mode::OwnerOnly, None).unwrap();
    dir.write("k.pem", b"two", Mode::Public, None).unwrap();
    let got = dir.read("k.pem").unwrap().unwrap();
    assert_eq!((got.bytes.as_slice(), got.mode), (&b"two"[..], 0o644));
    assert!(dir.read("missing").unwrap().is_none());
    // A directory in the way: the rename fails, nothing is left behind.
    fs::create_dir(root.join("out/secrets/d")).unwrap();
    let e = dir.write("d", b"x", Mode::Public, None).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Io {
                step: "rename into place",
                ..
            }
        ),
        "{e}"
    );
    // The check before an irreversible step refuses it up front.
    let e = dir.check_write_target("d").unwrap_err();
    assert!(matches!(e, Error::NotARegularFile { .. }), "{e}");
    let mut names: Vec<_> = dir.entries().unwrap().into_iter().map(|e| e.0).collect();
    names.sort();
    assert_eq!(names, ["d", "k.pem"]);
    assert!(!format!("{got:?}").contains("two"));
}

#[test]
fn symlink_swap_and_removal_stay_inside_the_directory() {
    let (_t, root, victim) = setup();
    let dir = root_dir(&root).open(Path::new("out")).unwrap();
    dir.replace_symlink("live", Path::new("secrets"), None)
        .unwrap();
    assert_eq!(
        dir.read_link("live").unwrap().unwrap().unwrap(),
        Path::new("secrets")
    );
    assert_eq!(
        dir.read_link("secrets").unwrap().unwrap().unwrap_err(),
        Kind::Dir
    );
    assert!(dir.read_link("nothing").unwrap().is_none());
    // Removing a symlink to the victim removes the link only.
    symlink(&victim, root.join("out/to-victim")).unwrap();
    assert!(dir.remove_file("to-victim").unwrap());
    assert!(!dir.remove_file("to-victim").unwrap());
    // A directory that is not empty is never removed.
    fs::write(root.join("out/secrets/f"), b"x").unwrap();
    assert!(dir.remove_empty_dir("secrets").is_err());
    assert!(root.join("out/secrets/f").exists());
    untouched(&victim);
    let made = dir.create_dir("v1", 0o750).unwrap();
    assert_eq!(made.path(), root.join("out/v1"));
    assert_eq!(dir.meta("v1").unwrap().unwrap().mode, 0o750);
    assert!(dir.create_dir("v1", 0o750).is_err());
}

/// `warden ca sign-intermediate --out /dev/null`, run as root, replaced the device node with a
/// plain file (and a FIFO someone reads from with a file nobody reads): the rename of the
/// temporary file went over whatever was at the name.
#[test]
fn a_fifo_or_device_at_the_name_is_refused_and_left_alone() {
    let (_t, root, _victim) = setup();
    let fifo = root.join("out/fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        FileType::Fifo,
        RawMode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let dir = root_dir(&root).open(Path::new("out")).unwrap();
    let e = crate::write_atomic(&fifo, b"x", Mode::Public).unwrap_err();
    assert!(matches!(e, Error::NotARegularFile { .. }), "{e}");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert!(crate::check_write_target(&fifo).is_err());
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    // Only the FIFO is there: no temporary file left behind.
    let names: Vec<_> = dir.entries().unwrap().into_iter().map(|e| e.0).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    // A character device: checked, never replaced (the check runs before any write).
    let e = crate::check_write_target(Path::new("/dev/null")).unwrap_err();
    assert!(matches!(e, Error::NotARegularFile { .. }), "{e}");
    // A regular file and a new name pass the check.
    fs::write(root.join("out/plain"), b"old").unwrap();
    crate::check_write_target(&root.join("out/plain")).unwrap();
    crate::check_write_target(&root.join("out/new")).unwrap();
    let e = crate::check_write_target(&root.join("missing-dir/new")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    // In a directory Warden delivers to, a FIFO planted at an output's name is replaced (it
    // would block the output's readers); only operator-named paths refuse it.
    dir.write("fifo", b"delivered", Mode::Public, None).unwrap();
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_file());
    assert_eq!(fs::read(&fifo).unwrap(), b"delivered");
}
