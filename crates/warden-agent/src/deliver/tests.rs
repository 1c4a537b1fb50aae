use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use super::*;

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

/// A killed agent leaves its temporary copy (a whole secret) beside the file: the next
/// delivery removes it, and only files of exactly that shape from another process.
#[test]
fn temporary_files_a_killed_agent_left_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let path = out.join("config.json");
    let stale = out.join(".config.json.4194999-0-123456789.tmp");
    fs::write(&stale, b"the secret before the rotation").unwrap();
    let ours = out.join(format!(".config.json.{}-7-1.tmp", std::process::id()));
    fs::write(&ours, b"in flight").unwrap();
    let unrelated = out.join(".config.json.backup.tmp");
    fs::write(&unrelated, b"someone's").unwrap();
    let f = file("config.json", b"new", 0o600);
    deliver_file("c", tmp.path(), &path, &f, Ownership::default()).unwrap();
    assert!(!stale.exists(), "the stale temporary copy is gone");
    assert!(ours.exists() && unrelated.exists());
    assert_eq!(fs::read(&path).unwrap(), b"new");
}

#[test]
fn a_single_file_is_written_once_and_then_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out/secrets/config.json");
    let f = file("config.json", b"{\"a\":1}", 0o600);
    assert_eq!(
        deliver_file("c", tmp.path(), &path, &f, Ownership::default()).unwrap(),
        Outcome::Changed
    );
    assert_eq!(fs::read(&path).unwrap(), b"{\"a\":1}");
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(mode_of(path.parent().unwrap()), 0o700);
    assert_eq!(
        deliver_file("c", tmp.path(), &path, &f, Ownership::default()).unwrap(),
        Outcome::Unchanged
    );
    // Same bytes, other mode: changed.
    let g = file("config.json", b"{\"a\":1}", 0o640);
    assert_eq!(
        deliver_file("c", tmp.path(), &path, &g, Ownership::default()).unwrap(),
        Outcome::Changed
    );
    assert_eq!(mode_of(&path), 0o640);
    // Edited behind the agent's back: rewritten.
    fs::write(&path, b"tampered").unwrap();
    assert_eq!(
        deliver_file("c", tmp.path(), &path, &g, Ownership::default()).unwrap(),
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
            deliver_set("tls", tmp.path(), &dir, v, &set(v), Ownership::default()).unwrap(),
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
        deliver_set(
            "tls",
            tmp.path(),
            &dir,
            "03",
            &set("03"),
            Ownership::default()
        )
        .unwrap(),
        Outcome::Unchanged
    );
    // Leftovers of an interrupted swap and delivery are cleaned by the next delivery.
    symlink("tls.d/03", tmp.path().join("out/.tls.link-999999")).unwrap();
    fs::create_dir(tmp.path().join("out/tls.d/.tmp-04-999999")).unwrap();
    deliver_set(
        "tls",
        tmp.path(),
        &dir,
        "04",
        &set("04"),
        Ownership::default(),
    )
    .unwrap();
    assert!(!tmp.path().join("out/.tls.link-999999").exists());
    assert!(!tmp.path().join("out/tls.d/.tmp-04-999999").exists());
    // A live version is never rewritten with other bytes.
    let e = deliver_set(
        "tls",
        tmp.path(),
        &dir,
        "04",
        &set("05"),
        Ownership::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("never rewritten in place"), "{e}");
    // No temporary names left behind.
    assert!(
        fs::read_dir(tmp.path().join("out"))
            .unwrap()
            .all(|e| { !e.unwrap().file_name().to_string_lossy().starts_with('.') })
    );
    let read = read_set(
        tmp.path(),
        &dir,
        &["cert.pem", "key.pem"],
        Ownership::default(),
    )
    .unwrap();
    assert_eq!(&read[1].contents[..], b"key 04");
    assert!(read_set(tmp.path(), &dir, &["nope.pem"], Ownership::default()).is_none());
}

#[test]
fn a_set_never_replaces_a_real_directory_and_bad_versions_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("precious"), b"x").unwrap();
    let e = deliver_set(
        "tls",
        tmp.path(),
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
        tmp.path(),
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
        tmp.path(),
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
    assert!(deliver_set("tls", tmp.path(), &dir, "02", &bad, Ownership::default()).is_err());
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

#[test]
fn directory_modes_follow_the_readers() {
    assert_eq!(dir_mode(0o600), 0o700);
    assert_eq!(dir_mode(0o640), 0o750);
    assert_eq!(dir_mode(0o644), 0o755);
}

fn set(v: &str) -> Vec<RenderedFile> {
    vec![
        file("cert.pem", format!("cert {v}").as_bytes(), 0o644),
        file("key.pem", format!("key {v}").as_bytes(), 0o600),
    ]
}

/// A directory outside the identity directory with contents that must survive byte for byte.
fn victim(base: &Path) -> PathBuf {
    let v = base.join("victim");
    fs::create_dir_all(v.join("sub")).unwrap();
    fs::write(v.join("keep"), b"precious").unwrap();
    fs::write(v.join("sub/inner"), b"inner").unwrap();
    v
}

fn victim_intact(v: &Path) {
    let mut names: Vec<_> = fs::read_dir(v)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["keep", "sub"], "written into the victim");
    assert_eq!(fs::read(v.join("keep")).unwrap(), b"precious");
    assert_eq!(fs::read(v.join("sub/inner")).unwrap(), b"inner");
}

#[test]
fn a_symlinked_directory_at_any_depth_is_never_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("id");
    let v = victim(tmp.path());
    fs::create_dir_all(root.join("out/a")).unwrap();
    symlink(&v, root.join("out/a/secrets")).unwrap();
    let f = file("stripe.json", b"{}", 0o600);
    let e = deliver_file(
        "s",
        &root,
        &root.join("out/a/secrets/stripe.json"),
        &f,
        Ownership::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("out/a/secrets is a symbolic link"),
        "{e}"
    );
    // A certificate set whose versions directory is a symlink.
    symlink(&v, root.join("out/tls.d")).unwrap();
    let e = deliver_set(
        "tls",
        &root,
        &root.join("out/tls"),
        "01",
        &set("01"),
        Ownership::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("tls.d is a symbolic link"), "{e}");
    assert!(
        read_set(
            &root,
            &root.join("out/tls"),
            &["cert.pem"],
            Ownership::default()
        )
        .is_none()
    );
    victim_intact(&v);
}

#[test]
fn pruning_removes_only_the_versions_the_agent_made() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out/tls");
    let versions = tmp.path().join("out/tls.d");
    let v = victim(tmp.path());
    deliver_set(
        "tls",
        tmp.path(),
        &dir,
        "01",
        &set("01"),
        Ownership::default(),
    )
    .unwrap();
    // Someone else's things in the versions directory: a directory of notes, one named like
    // a version, a symlink named like a version, and a version whose marker was tampered with.
    fs::create_dir(versions.join("notes")).unwrap();
    fs::write(versions.join("notes/n.txt"), b"mine").unwrap();
    fs::create_dir(versions.join("0badc0de")).unwrap();
    fs::write(versions.join("0badc0de/cert.pem"), b"mine").unwrap();
    symlink(&v, versions.join("0a0a")).unwrap();
    for n in ["02", "03", "04"] {
        deliver_set("tls", tmp.path(), &dir, n, &set(n), Ownership::default()).unwrap();
        if n == "02" {
            fs::write(versions.join("02").join(set::MARKER), b"forged").unwrap();
        }
    }
    let mut kept: Vec<String> = fs::read_dir(&versions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, ["02", "03", "04", "0a0a", "0badc0de", "notes"]);
    assert_eq!(fs::read(versions.join("notes/n.txt")).unwrap(), b"mine");
    assert_eq!(
        fs::read(versions.join("0badc0de/cert.pem")).unwrap(),
        b"mine"
    );
    victim_intact(&v);
    // A version holding a directory the agent did not create is not emptied either.
    fs::create_dir(versions.join("03/extra")).unwrap();
    deliver_set(
        "tls",
        tmp.path(),
        &dir,
        "05",
        &set("05"),
        Ownership::default(),
    )
    .unwrap();
    assert!(versions.join("03/cert.pem").exists());
    assert!(versions.join("03/extra").exists());
    // Someone else's directory under the name of the next version: refused, left as it was,
    // and the half-made version cleaned up.
    fs::create_dir(versions.join("06")).unwrap();
    fs::write(versions.join("06/x"), b"mine").unwrap();
    let e = deliver_set(
        "tls",
        tmp.path(),
        &dir,
        "06",
        &set("06"),
        Ownership::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("not a version the agent made"),
        "{e}"
    );
    assert_eq!(fs::read(versions.join("06/x")).unwrap(), b"mine");
    assert!(fs::read_dir(&versions).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp-")
    }));
    assert_eq!(fs::read_link(&dir).unwrap(), Path::new("tls.d/05"));
}

#[test]
fn a_path_outside_the_identity_directory_is_walked_from_the_filesystem_root() {
    assert_eq!(
        place(Path::new("/srv/id"), Path::new("/srv/id/out/a.pem")),
        (PathBuf::from("/srv/id"), PathBuf::from("out/a.pem"))
    );
    assert_eq!(
        place(Path::new("/srv/id"), Path::new("/etc/nginx/a.pem")),
        (PathBuf::from("/"), PathBuf::from("etc/nginx/a.pem"))
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("id");
    fs::create_dir(&root).unwrap();
    let outside = tmp.path().join("etc-like/certs/ca.pem");
    let f = file("ca.pem", b"chain", 0o644);
    deliver_file("ca", &root, &outside, &f, Ownership::default()).unwrap();
    assert_eq!(fs::read(&outside).unwrap(), b"chain");
    // Every component of such a path is checked, not only those below the identity directory.
    let v = victim(tmp.path());
    fs::rename(tmp.path().join("etc-like"), tmp.path().join("moved")).unwrap();
    symlink(&v, tmp.path().join("etc-like")).unwrap();
    let e = deliver_file("ca", &root, &outside, &f, Ownership::default()).unwrap_err();
    assert!(e.to_string().contains("etc-like is a symbolic link"), "{e}");
    // `..` never climbs out of the identity directory.
    let e = deliver_file(
        "ca",
        &root,
        &root.join("../moved/x.pem"),
        &f,
        Ownership::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a plain name"), "{e}");
    victim_intact(&v);
}

/// The output's owner may grow a file it owns in place (`truncate -s 100G key.pem`: sparse,
/// no disk used). The agent, often root, looks at what is on disk every poll: it must never
/// read such a file whole (it would exhaust its memory and stop renewing everything), but
/// take it as not what it delivered, and replace it.
#[test]
fn a_file_grown_huge_in_place_is_never_read_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let grow = |p: &Path| {
        fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(READ_LIMIT + 1)
            .unwrap();
    };
    // A single file.
    let path = tmp.path().join("out/config.json");
    let f = file("config.json", b"{\"a\":1}", 0o600);
    deliver_file("c", tmp.path(), &path, &f, Ownership::default()).unwrap();
    grow(&path);
    assert!(
        read_file(tmp.path(), &path, Ownership::default()).is_none(),
        "read whole"
    );
    assert_eq!(
        deliver_file("c", tmp.path(), &path, &f, Ownership::default()).unwrap(),
        Outcome::Changed
    );
    assert_eq!(fs::read(&path).unwrap(), b"{\"a\":1}");
    // A set: neither the live version nor a kept one is read.
    let dir = tmp.path().join("out/tls");
    for v in ["01", "02"] {
        deliver_set("tls", tmp.path(), &dir, v, &set(v), Ownership::default()).unwrap();
    }
    grow(&dir.join("key.pem"));
    grow(&tmp.path().join("out/tls.d/01/key.pem"));
    let names = ["cert.pem", "key.pem"];
    assert!(read_set(tmp.path(), &dir, &names, Ownership::default()).is_none());
    assert!(read_versions(tmp.path(), &dir, &names, Ownership::default()).is_empty());
}

/// A file at an output's name with the bytes and mode the agent would write but another owner
/// is not what the agent delivered: someone pre-created it (an output in a sticky directory
/// such as `/tmp`, where anyone may create a name: a CA chain or CRL is public, its bytes easy
/// to copy) or handed it away, and its owner can change it between two polls. It is replaced,
/// so the file belongs to whom the configuration says. Needs root (to hand a file away).
#[test]
fn a_file_with_the_right_bytes_but_another_owner_is_replaced() {
    use std::os::unix::fs::{MetadataExt, chown};
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out/ca.pem");
    let f = file("ca.pem", b"the public chain", 0o644);
    let agent = Ownership::default();
    deliver_file("ca", tmp.path(), &path, &f, agent).unwrap();
    chown(&path, Some(65534), Some(65534)).unwrap();
    assert_eq!(
        deliver_file("ca", tmp.path(), &path, &f, agent).unwrap(),
        Outcome::Changed,
        "a stranger's file is not the delivered one"
    );
    assert_eq!(fs::metadata(&path).unwrap().uid(), 0);
    // With an owner configured: a file that is not theirs is handed to them again.
    let service = Ownership {
        uid: Some(65534),
        gid: Some(65534),
    };
    assert_eq!(
        deliver_file("ca", tmp.path(), &path, &f, service).unwrap(),
        Outcome::Changed
    );
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(
        deliver_file("ca", tmp.path(), &path, &f, service).unwrap(),
        Outcome::Unchanged
    );
}
