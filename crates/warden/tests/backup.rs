//! End-to-end: `warden backup create | list | verify` against a real lab (OpenBao over HTTPS +
//! mTLS, raft storage), through the real `warden` binary.
//!
//! - create: a snapshot from the active node, encrypted to the spec's recipients (the file is
//!   age ciphertext, owner-only, no temp file left), with a manifest `warden evidence verify`
//!   accepts offline; `verify` decrypts into a pipe and checks the snapshot's own SHA256SUMS
//!   and raft index; retention keeps `keep` backups.
//! - refusals, each before anything is touched and naming what is wrong (exit 3): a truncated
//!   snapshot, a snapshot encrypted to someone else, a backup of another environment, a
//!   manifest whose signature fails; a sealed server (exit 1, nothing written).

#![allow(clippy::print_stderr)] // figures go to the test log on purpose

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use warden_testkit::cli::{Cli, on_lab, path_str, refs, text};
use warden_testkit::{EXAMPLE_SPEC, LabEnv, spec_with_backup};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("warden-backup-test-")
        .tempdir()
        .expect("temp dir")
}

/// An owner-only age identity file; returns its path and recipient.
fn identity(dir: &Path, name: &str) -> (PathBuf, String) {
    let g = warden_custody::generate_identity();
    let p = dir.join(format!("{name}.key"));
    std::fs::write(&p, g.file_text.as_bytes()).expect("write identity");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (p, g.recipient)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn copy_backup(snap: &Path, manifest: &Path, to: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(to).expect("mkdir");
    let s = to.join(snap.file_name().expect("name"));
    let m = to.join(manifest.file_name().expect("name"));
    std::fs::copy(snap, &s).expect("copy snapshot");
    std::fs::copy(manifest, &m).expect("copy manifest");
    (s, m)
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_are_encrypted_signed_verified_offline_and_refused_when_wrong() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test"]).await;
    let lab_dir = lab.dir().to_path_buf();
    let dir = temp_dir();
    let (alice, alice_r) = identity(dir.path(), "alice");
    let (bob, _) = identity(dir.path(), "bob");
    let spec = spec_with_backup(dir.path(), &[&alice_r], 2);
    WARDEN.ok(&refs(&on_lab(&["apply"], &spec, &lab_dir)));

    // create
    let run = WARDEN.ok(&refs(&on_lab(
        &["backup", "create", "--output", "json"],
        &spec,
        &lab_dir,
    )));
    let created: Value = serde_json::from_slice(&run.stdout).expect("json");
    let snap = PathBuf::from(created["snapshot"].as_str().expect("snapshot"));
    let manifest = PathBuf::from(created["manifest_path"].as_str().expect("manifest"));
    let backups = dir.path().join("backups");
    assert_eq!(snap.parent(), Some(backups.as_path()));
    let bytes = std::fs::read(&snap).expect("snapshot file");
    assert!(
        bytes.starts_with(b"age-encryption.org/v1\n"),
        "the backup is age ciphertext"
    );
    assert_eq!(
        std::fs::metadata(&snap).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(created["manifest"]["env"], "test");
    assert_eq!(created["manifest"]["size"], bytes.len() as u64);
    assert_eq!(created["manifest"]["openbao_version"], "2.7.2");
    let index = created["manifest"]["raft_index"].as_u64().expect("index");
    assert!(index > 0, "raft index from the snapshot's meta.json");
    assert!(
        created["manifest"]["purpose_count"]
            .as_u64()
            .expect("count")
            > 0
    );
    assert_eq!(files_in(&backups).len(), 2, "{:?}", files_in(&backups));

    // The manifest is an evidence packet: `warden evidence verify` accepts it offline.
    let key = WARDEN.ok(&refs(&on_lab(&["evidence", "key"], &spec, &lab_dir)));
    let key_file = dir.path().join("evidence.pem");
    std::fs::write(&key_file, &key.stdout).expect("key file");
    WARDEN.ok(&[
        "evidence",
        "verify",
        path_str(&manifest),
        "--key",
        path_str(&key_file),
    ]);

    // verify: decrypts to a pipe, checks SHA256SUMS and the raft index.
    let verify = |backup: &Path, id: &Path, env: &str| {
        WARDEN.run(&[
            "backup",
            "verify",
            path_str(backup),
            "--key",
            path_str(&key_file),
            "--identity",
            path_str(id),
            "--env",
            env,
            "--output",
            "json",
        ])
    };
    let ok = verify(&snap, &alice, "test");
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let v: Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(v["archive"]["index"], index);
    let members: Vec<&str> = v["archive"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for m in ["meta.json", "state.bin", "SHA256SUMS"] {
        assert!(members.contains(&m), "{members:?}");
    }
    // Named by its manifest too.
    assert!(verify(&manifest, &alice, "test").status.success());

    let refused = |out: &std::process::Output, says: &str| {
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains(says), "expected {says:?} in {err}");
    };
    // Encrypted to someone else.
    refused(&verify(&snap, &bob, "test"), "encrypted to someone else");
    // Another environment's backup.
    refused(
        &verify(&snap, &alice, "prod"),
        "is a backup of environment `test`, not `prod`",
    );
    // Truncated.
    let (t_snap, _) = copy_backup(&snap, &manifest, &dir.path().join("truncated"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&t_snap)
        .expect("open");
    f.set_len(bytes.len() as u64 / 2).expect("truncate");
    refused(&verify(&t_snap, &alice, "test"), "truncated or altered");
    // A manifest whose signature fails (one byte of the payload changed).
    let (s_snap, s_man) = copy_backup(&snap, &manifest, &dir.path().join("forged"));
    let text_m = std::fs::read_to_string(&s_man).expect("manifest");
    let forged = text_m.replacen("\"purpose_count\":", "\"purpose_count\":9", 1);
    assert_ne!(forged, text_m);
    std::fs::write(&s_man, forged).expect("write");
    refused(&verify(&s_snap, &alice, "test"), "signature fails");
    // A manifest missing altogether.
    std::fs::remove_file(&s_man).expect("rm");
    refused(&verify(&s_snap, &alice, "test"), "no manifest");

    // list and retention (keep = 2).
    for _ in 0..2 {
        WARDEN.ok(&refs(&on_lab(&["backup", "create"], &spec, &lab_dir)));
    }
    let listed = WARDEN.ok(&refs(&on_lab(
        &["backup", "list", "--output", "json"],
        &spec,
        &lab_dir,
    )));
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 2, "keep = 2: {listed:?}");
    assert!(!snap.exists(), "the oldest backup was removed by retention");
    assert_eq!(files_in(&backups).len(), 4, "{:?}", files_in(&backups));
    assert!(
        listed[0]["manifest"]["generated_at"].as_i64()
            >= listed[1]["manifest"]["generated_at"].as_i64()
    );

    // A sealed server: a clear error and nothing written.
    let before = files_in(&backups);
    lab.harness_client("test").seal().await.expect("seal");
    let sealed = WARDEN.run(&refs(&on_lab(&["backup", "create"], &spec, &lab_dir)));
    assert_eq!(sealed.status.code(), Some(1), "{}", text(&sealed.stderr));
    assert!(
        text(&sealed.stderr).contains("sealed"),
        "{}",
        text(&sealed.stderr)
    );
    assert_eq!(files_in(&backups), before, "nothing written while sealed");
}

#[test]
fn a_spec_without_backup_recipients_is_refused_where_it_is_written() {
    let dir = temp_dir();
    let example = std::fs::read_to_string(EXAMPLE_SPEC).expect("example spec");
    let spec = dir.path().join("warden.toml");
    std::fs::write(
        &spec,
        format!("{example}\n[environments.test.backup]\nrecipients = []\ndir = \"b\"\n"),
    )
    .expect("write");
    let out = WARDEN.run(&["backup", "list", "--spec", path_str(&spec), "--env", "test"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("environments.test.backup.recipients"), "{err}");
    assert!(err.contains("nobody can open"), "{err}");
}

/// The lab's custodians (names) and threshold, from `custody status`.
fn custodians(spec: &Path, lab: &Path) -> (Vec<String>, usize) {
    let st = WARDEN.ok(&refs(&on_lab(
        &["custody", "status", "-o", "json"],
        spec,
        lab,
    )));
    let st: Value = serde_json::from_slice(&st.stdout).expect("json");
    let names = st["ledger"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["custodian"].as_str().map(str::to_owned))
        .collect();
    (
        names,
        st["ledger"]["threshold"].as_u64().expect("threshold") as usize,
    )
}

/// A root client of the lab's `test` environment, with a break-glass token (see
/// [`break_glass`]) that also stays in `file`.
fn break_glass_root(lab: &LabEnv, spec: &Path, file: &Path) -> warden_bao::Client {
    break_glass(lab, spec, file);
    let root = lab.client("test");
    root.set_token(warden_bao::SecretString::from(
        std::fs::read_to_string(file)
            .expect("token")
            .trim()
            .to_owned(),
    ));
    root
}

/// `warden break-glass open` with the lab custodians' shares; the token goes to `file`.
fn break_glass(lab: &LabEnv, spec: &Path, file: &Path) {
    let (names, threshold) = custodians(spec, lab.dir());
    let layout = lab.lab().layout().env("test");
    let (ids, shares) = (
        warden_lab::custodians_dir(&layout),
        warden_lab::shares_dir(&layout),
    );
    let mut args: Vec<String> = [
        "break-glass",
        "open",
        "--reason",
        "DR-RESTORE-TEST",
        "--ttl",
        "2h",
        "--token-file",
        path_str(file),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for c in names.iter().take(threshold) {
        args.extend([
            "--share".into(),
            path_str(&shares.join(format!("{c}.test.share.age"))).into(),
            "--identity".into(),
            path_str(&ids.join(format!("{c}.age-identity"))).into(),
        ]);
    }
    WARDEN.ok(&refs(&on_lab(&refs(&args), spec, lab.dir())));
}

async fn put(c: &warden_bao::Client, i: usize, value: &str) {
    c.write(
        &format!("kvv2/data/dr/k{i:03}"),
        &serde_json::json!({ "data": { "v": value } }),
        warden_bao::Idempotent::No,
    )
    .await
    .unwrap_or_else(|e| panic!("write dr/k{i:03}: {e}"));
}

/// (created_time, current_version) of `dr/k<i>`, or None when it does not exist.
async fn meta(c: &warden_bao::Client, i: usize) -> Option<(String, u64)> {
    match c.read(&format!("kvv2/metadata/dr/k{i:03}")).await {
        Ok(s) => {
            let d = s.data.expect("metadata");
            Some((
                d["created_time"].as_str().expect("created_time").to_owned(),
                d["current_version"].as_u64().expect("current_version"),
            ))
        }
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("read metadata dr/k{i:03}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_brings_back_the_first_200_writes_and_not_the_50_after_the_backup() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test"]).await;
    let lab_dir = lab.dir().to_path_buf();
    let dir = temp_dir();
    let (alice, alice_r) = identity(dir.path(), "alice");
    let (bob, _) = identity(dir.path(), "bob");
    let spec = spec_with_backup(dir.path(), &[&alice_r], 10);
    WARDEN.ok(&refs(&on_lab(&["apply"], &spec, &lab_dir)));
    // The break-glass token predates the snapshot, so it is still valid in the restored store.
    let token_file = dir.path().join("break-glass.token");
    let root = break_glass_root(&lab, &spec, &token_file);

    for i in 0..200 {
        put(&root, i, &format!("before-{i}")).await;
    }
    let mut before = Vec::new();
    for i in 0..200 {
        before.push(meta(&root, i).await.expect("written"));
    }
    let run = WARDEN.ok(&refs(&on_lab(
        &["backup", "create", "--output", "json"],
        &spec,
        &lab_dir,
    )));
    let created: Value = serde_json::from_slice(&run.stdout).expect("json");
    let snap = PathBuf::from(created["snapshot"].as_str().expect("snapshot"));
    let manifest = PathBuf::from(created["manifest_path"].as_str().expect("manifest"));
    let key = WARDEN.ok(&refs(&on_lab(&["evidence", "key"], &spec, &lab_dir)));
    let key_file = dir.path().join("evidence.pem");
    std::fs::write(&key_file, &key.stdout).expect("key file");

    // 50 more, and a second version of k000.
    for i in 200..250 {
        put(&root, i, &format!("after-{i}")).await;
    }
    put(&root, 0, "after-0").await;
    assert_eq!(meta(&root, 0).await.expect("k000").1, 2);

    let restore = |backup: &Path, id: &Path| {
        WARDEN.run(&refs(&on_lab(
            &[
                "restore",
                "--from",
                path_str(backup),
                "--key",
                path_str(&key_file),
                "--identity",
                path_str(id),
                "--token-file",
                path_str(&token_file),
                "--force",
                "--confirm",
                "test",
                "--output",
                "json",
            ],
            &spec,
            &lab_dir,
        )))
    };
    // Refusals before anything is touched: k249 (written after the backup) survives each.
    let refused = |out: &std::process::Output, says: &str| {
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(says),
            "expected {says:?} in {}",
            text(&out.stderr)
        );
    };
    refused(&restore(&snap, &bob), "encrypted to someone else");
    let (t_snap, _) = copy_backup(&snap, &manifest, &dir.path().join("truncated"));
    let len = std::fs::metadata(&t_snap).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t_snap)
        .expect("open")
        .set_len(len - 1)
        .expect("truncate");
    refused(&restore(&t_snap, &alice), "truncated or altered");
    let (f_snap, f_man) = copy_backup(&snap, &manifest, &dir.path().join("forged"));
    let m = std::fs::read_to_string(&f_man).expect("manifest");
    std::fs::write(&f_man, m.replacen("\"raft_term\":", "\"raft_term\":1", 1)).expect("forge");
    refused(&restore(&f_snap, &alice), "signature fails");
    // Without --force: refused, and it names the environment and the snapshot's age.
    let no_force = WARDEN.run(&refs(&on_lab(
        &[
            "restore",
            "--from",
            path_str(&snap),
            "--key",
            path_str(&key_file),
            "--identity",
            path_str(&alice),
            "--token-file",
            path_str(&token_file),
        ],
        &spec,
        &lab_dir,
    )));
    assert_eq!(no_force.status.code(), Some(1));
    let err = text(&no_force.stderr);
    assert!(
        err.contains("restore environment `test` to the snapshot taken"),
        "{err}"
    );
    assert!(err.contains("without --force"), "{err}");
    assert!(
        meta(&root, 249).await.is_some(),
        "nothing was touched by a refusal"
    );

    // Destroy the data: every dr/ entry, all versions and metadata.
    for i in 0..250 {
        root.delete(&format!("kvv2/metadata/dr/k{i:03}"))
            .await
            .expect("destroy");
    }
    assert!(meta(&root, 0).await.is_none());
    let live_index = lab
        .client("test")
        .leader()
        .await
        .expect("leader")
        .raft_committed_index;

    let out = restore(&snap, &alice);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    eprintln!("figure: restore report {r}");
    assert_eq!(r["restored"]["sealed_after"], false);
    assert_eq!(
        r["restored"]["raft_index"],
        created["manifest"]["raft_index"]
    );
    // RPO as the restore reports it: the raft index gap covers the 51 writes and 250 deletes.
    let gap = r["rpo"]["index_gap"].as_u64().expect("index gap");
    assert!(gap >= 301, "gap {gap}");
    assert!(
        live_index - created["manifest"]["raft_index"].as_u64().expect("index") <= gap,
        "{live_index}"
    );
    assert!(r["posture_worst"].is_string(), "{r}");
    assert!(r["plan_changes"].is_u64(), "{r}");

    // The first 200 are back with their metadata; the 50 and k000's second version are not.
    for (i, want) in before.iter().enumerate() {
        assert_eq!(meta(&root, i).await.as_ref(), Some(want), "dr/k{i:03}");
    }
    for i in 200..250 {
        assert!(
            meta(&root, i).await.is_none(),
            "dr/k{i:03} was written after the backup"
        );
    }
    let v = root.read("kvv2/data/dr/k000").await.expect("read");
    assert_eq!(v.data.expect("data")["data"]["v"], "before-0");
    // The operator still logs in with its certificate (the cert role is in the snapshot).
    WARDEN.ok(&refs(&on_lab(&["backup", "list"], &spec, &lab_dir)));
}

/// Backs up a fresh applied lab of `nodes` nodes and drills it; returns the drill report.
async fn drill_on_lab(nodes: u8) -> Value {
    install_crypto_provider();
    let lab = LabEnv::start_with_nodes(&["test"], nodes).await;
    let lab_dir = lab.dir().to_path_buf();
    let dir = temp_dir();
    let (alice, alice_r) = identity(dir.path(), "alice");
    let spec = spec_with_backup(dir.path(), &[&alice_r], 5);
    WARDEN.ok(&refs(&on_lab(&["apply"], &spec, &lab_dir)));
    WARDEN.ok(&refs(&on_lab(&["backup", "create"], &spec, &lab_dir)));
    let key = WARDEN.ok(&refs(&on_lab(&["evidence", "key"], &spec, &lab_dir)));
    let key_file = dir.path().join("evidence.pem");
    std::fs::write(&key_file, &key.stdout).expect("key file");
    // Something written after the backup: the RPO index gap must count it.
    WARDEN.ok(&refs(&on_lab(
        &[
            "backup",
            "create",
            "--dir",
            path_str(&dir.path().join("other")),
        ],
        &spec,
        &lab_dir,
    )));

    if nodes == 1 {
        // A failed drill exits 3, names the failed check, and is still recorded (signed).
        let (bob, _) = identity(dir.path(), "bob");
        let failed_packet = dir.path().join("failed-drill.json");
        let out = WARDEN.run(&refs(&on_lab(
            &[
                "dr",
                "drill",
                "--key",
                path_str(&key_file),
                "--identity",
                path_str(&bob),
                "--out",
                path_str(&failed_packet),
            ],
            &spec,
            &lab_dir,
        )));
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("the DR drill failed: backup verifies offline"),
            "{err}"
        );
        WARDEN.ok(&[
            "evidence",
            "verify",
            path_str(&failed_packet),
            "--key",
            path_str(&key_file),
        ]);
        let recorded: Value =
            serde_json::from_slice(&std::fs::read(&failed_packet).expect("packet")).expect("json");
        assert_eq!(recorded["payload"]["passed"], false);
    }
    let packet = dir.path().join("drill.json");
    let out = WARDEN.run(&refs(&on_lab(
        &[
            "dr",
            "drill",
            "--key",
            path_str(&key_file),
            "--identity",
            path_str(&alice),
            "--out",
            path_str(&packet),
            "--output",
            "json",
        ],
        &spec,
        &lab_dir,
    )));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success(),
        "{}\n{}",
        serde_json::to_string_pretty(&r).unwrap_or_default(),
        text(&out.stderr)
    );
    eprintln!(
        "figure: DR drill on a {nodes}-node lab: RTO {:.1} s, RPO {} s / {} raft entries",
        r["rto_seconds"].as_f64().unwrap_or(-1.0),
        r["rpo_seconds"],
        r["rpo_index_gap"]
    );
    assert_eq!(r["passed"], true, "{r}");
    let checks = r["checks"].as_array().expect("checks");
    for name in [
        "backup verifies offline",
        "scratch cluster starts",
        "snapshot restores",
        "unsealed with the environment's shares",
        "a live certificate logs in",
        "PKI chain verifies to the offline root",
        "every registered purpose resolves",
        "secrets read back with the same version metadata",
        "scratch cluster torn down",
    ] {
        let c = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name:?}: {r}"));
        assert_eq!(c["ok"], true, "{c}");
    }
    assert_eq!(r["nodes"], u64::from(nodes));
    assert!(r["rpo_index_gap"].as_u64().expect("gap") > 0, "{r}");
    // The live environment was not touched: still unsealed and answering as before.
    WARDEN.ok(&refs(&on_lab(&["backup", "list"], &spec, &lab_dir)));
    // The signed packet verifies offline, and fails after a one-byte change.
    WARDEN.ok(&[
        "evidence",
        "verify",
        path_str(&packet),
        "--key",
        path_str(&key_file),
    ]);
    let mut bytes = std::fs::read(&packet).expect("packet");
    let at = text(&bytes).find("\"rto_seconds\":").expect("rto") + 14;
    bytes[at] = if bytes[at] == b'9' { b'8' } else { b'9' };
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, &bytes).expect("write");
    let bad = WARDEN.run(&[
        "evidence",
        "verify",
        path_str(&tampered),
        "--key",
        path_str(&key_file),
    ]);
    assert_eq!(bad.status.code(), Some(3), "{}", text(&bad.stderr));
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_on_a_one_node_lab_is_green_measured_and_signed() {
    let r = drill_on_lab(1).await;
    assert!(
        r["rto_seconds"].as_f64().expect("rto") < 60.0,
        "RTO target for a one-node lab: under 60 s ({r})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_on_a_three_node_lab_is_green_and_reports_its_rto() {
    let r = drill_on_lab(3).await;
    assert!(r["rto_seconds"].as_f64().expect("rto") > 0.0);
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop (even when the test panics).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None (with a message) when not root: mounting needs it.
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).expect("mkdir");
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED the full-disk part: mounting a small tmpfs needs root");
            return None;
        }
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        if !st.success() {
            eprintln!("SKIPPED the full-disk part: mount -t tmpfs failed ({st})");
            return None;
        }
        Some(Self(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem holding `dir` up to the last byte with `filler`.
fn fill(dir: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let block = vec![0x5au8; 4096];
    while f.write_all(&block).is_ok() {}
    for _ in 0..64 {
        let _ = f.write_all(&[0]);
    }
    let _ = f.sync_all();
}

fn tmp_files(dir: &Path) -> Vec<String> {
    files_in(dir)
        .into_iter()
        .filter(|f| f.starts_with(".warden-backup-") || f.ends_with(".tmp"))
        .collect()
}

/// A hostile local user and a flaky world: a full disk, a symlinked backup directory, a
/// pre-created target, swapped and lying manifests, a frozen server. Each is a clear error,
/// leaves no partial file and loses no older backup.
#[tokio::test(flavor = "multi_thread")]
async fn backups_survive_a_full_disk_a_frozen_server_symlinks_and_swapped_manifests() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test"]).await;
    let lab_dir = lab.dir().to_path_buf();
    let dir = temp_dir();
    let (alice, alice_r) = identity(dir.path(), "alice");
    let spec = spec_with_backup(dir.path(), &[&alice_r], 1);
    WARDEN.ok(&refs(&on_lab(&["apply"], &spec, &lab_dir)));
    let key = WARDEN.ok(&refs(&on_lab(&["evidence", "key"], &spec, &lab_dir)));
    let key_file = dir.path().join("evidence.pem");
    std::fs::write(&key_file, &key.stdout).expect("key file");
    let create_in = |d: &Path, extra: &[&str]| {
        let mut a = vec!["backup", "create", "--output", "json", "--dir", path_str(d)];
        a.extend_from_slice(extra);
        WARDEN.run(&refs(&on_lab(&a, &spec, &lab_dir)))
    };
    let created = |out: &std::process::Output| -> (PathBuf, PathBuf) {
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        (
            PathBuf::from(v["snapshot"].as_str().expect("snapshot")),
            PathBuf::from(v["manifest_path"].as_str().expect("manifest")),
        )
    };
    let verify = |backup: &Path| {
        WARDEN.run(&[
            "backup",
            "verify",
            path_str(backup),
            "--key",
            path_str(&key_file),
            "--identity",
            path_str(&alice),
            "--env",
            "test",
        ])
    };

    // Two backups; modes: directory 0700, snapshot 0600, manifest public (0644).
    let good = dir.path().join("good");
    let (a_snap, a_man) = created(&create_in(&good, &[]));
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&good), 0o700);
    assert_eq!(mode(&a_snap), 0o600);
    assert_eq!(mode(&a_man), 0o644);
    // keep = 1 removes A; keep its files aside for the attacks below.
    let old = dir.path().join("old");
    let (old_snap, old_man) = copy_backup(&a_snap, &a_man, &old);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (b_snap, b_man) = created(&create_in(&good, &[]));
    assert!(!a_snap.exists(), "keep = 1");

    // A swapped manifest: the older backup's signed manifest and snapshot copied over the
    // newer one's names. Every byte is validly signed; only the name says otherwise. Refused.
    let swap = dir.path().join("swapped");
    std::fs::create_dir_all(&swap).expect("mkdir");
    let s_snap = swap.join(b_snap.file_name().expect("name"));
    let s_man = swap.join(b_man.file_name().expect("name"));
    std::fs::copy(&old_snap, &s_snap).expect("copy");
    std::fs::copy(&old_man, &s_man).expect("copy");
    let out = verify(&s_snap);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("belongs to another backup"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        verify(&old_snap).status.success(),
        "the original still verifies"
    );
    let restore = |from: &Path, env: &str| {
        WARDEN.run(&[
            "restore",
            "--spec",
            path_str(&spec),
            "--lab",
            path_str(&lab_dir),
            "--env",
            env,
            "--from",
            path_str(from),
            "--key",
            path_str(&key_file),
            "--identity",
            path_str(&alice),
            "--token-file",
            path_str(&dir.path().join("no-token-needed-yet")),
        ])
    };
    // restore refuses the swapped pair before contacting anything.
    let out = restore(&s_snap, "test");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("belongs to another backup"));
    // A stale pick: the older backup beside a newer one is named before the confirmation.
    let stale = dir.path().join("stale");
    copy_backup(&b_snap, &b_man, &stale);
    let (st_snap, _) = copy_backup(&old_snap, &old_man, &stale);
    let out = restore(&st_snap, "test");
    let err = text(&out.stderr);
    assert!(
        err.contains("a newer backup of `test` is beside this one"),
        "{err}"
    );
    assert!(
        err.contains("without --force; nothing was touched"),
        "{err}"
    );

    // A manifest that names a file outside the directory (`../victim`): never listed, so
    // retention cannot delete through it.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"not a backup").expect("victim");
    let liar_dir = dir.path().join("liar");
    let (_, l_man) = copy_backup(&old_snap, &old_man, &liar_dir);
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(&l_man).expect("manifest")).expect("json");
    // Rewriting the payload breaks the signature, which `list` does not check: exactly the
    // case retention must survive.
    m["payload"]["file"] = Value::from("../victim");
    m["payload"]["generated_at"] = Value::from(0);
    std::fs::write(&l_man, m.to_string()).expect("write");
    std::fs::create_dir_all(&liar_dir).expect("mkdir");
    let out = create_in(&liar_dir, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        victim.exists(),
        "retention deleted a file outside the backup directory"
    );
    let listed = WARDEN.run(&refs(&on_lab(
        &["backup", "list", "--dir", path_str(&liar_dir)],
        &spec,
        &lab_dir,
    )));
    assert!(
        text(&listed.stderr).contains("is not a readable backup manifest"),
        "{}",
        text(&listed.stderr)
    );

    // The backup directory is a symlink: refused, nothing written through it.
    let real = dir.path().join("real");
    std::fs::create_dir_all(&real).expect("mkdir");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let out = create_in(&link, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("it is a symbolic link"),
        "{}",
        text(&out.stderr)
    );
    assert!(files_in(&real).is_empty(), "{:?}", files_in(&real));

    // A full disk: a clear error, no temp file, the older backup kept (retention did not
    // run).
    let full = dir.path().join("full");
    if let Some(_mount) = Tmpfs::mount(&full, "2m") {
        let (f_snap, f_man) = copy_backup(&b_snap, &b_man, &full);
        fill(&full);
        let out = create_in(&full, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        assert!(err.contains("no partial backup was left behind"), "{err}");
        assert!(err.contains("free space in the backup directory"), "{err}");
        assert!(tmp_files(&full).is_empty(), "{:?}", files_in(&full));
        assert!(
            f_snap.exists() && f_man.exists(),
            "the older backup is kept"
        );
        assert_eq!(files_in(&full).len(), 3, "{:?}", files_in(&full));
        // Space back: the next backup works and retention (keep = 1) runs then.
        std::fs::remove_file(full.join("filler")).expect("rm filler");
        let (n_snap, _) = created(&create_in(&full, &[]));
        assert!(n_snap.exists() && !f_snap.exists());
    }

    // A frozen server: SIGSTOP the node in the middle of the stream. Bounded by
    // --stall-timeout, a clear error, no temp file. A few MB of incompressible data make the
    // stream long enough to stop it half way.
    let token_file = dir.path().join("break-glass.token");
    let root = break_glass_root(&lab, &spec, &token_file);
    for i in 0..120 {
        let noise: String = (0..24_000)
            .map(|j| {
                let x = (i * 7_919 + j * 104_729) as u64;
                let x = x.wrapping_mul(6_364_136_223_846_793_005).rotate_left(17);
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        put(&root, i, &noise).await;
    }
    let frozen = dir.path().join("frozen");
    std::fs::create_dir_all(&frozen).expect("mkdir");
    let pid = lab
        .lab()
        .node_pid("test", 1)
        .expect("pid")
        .expect("running");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(refs(&on_lab(
            &[
                "backup",
                "create",
                "--dir",
                path_str(&frozen),
                "--stall-timeout",
                "3s",
            ],
            &spec,
            &lab_dir,
        )))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Mid-stream: the temp file has bytes (the writer's 256 KiB buffer was flushed).
    let t0 = std::time::Instant::now();
    let mut stopped = false;
    while t0.elapsed() < std::time::Duration::from_secs(30) {
        let mid = std::fs::read_dir(&frozen).ok().and_then(|rd| {
            rd.flatten().find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".warden-backup-")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        });
        if mid.is_some() {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
            stopped = true;
            break;
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let stopped_at = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    let took = stopped_at.elapsed();
    if stopped {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    }
    assert!(
        stopped,
        "the snapshot stream finished before it could be stopped: {}",
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    eprintln!("frozen server: failed after {took:?}: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Frozen during the stream, or just after it while the manifest is signed: both within
    // the same bound.
    assert!(
        err.contains("sent nothing for 3s") || err.contains("did not finish within 3s"),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
    assert!(files_in(&frozen).is_empty(), "{:?}", files_in(&frozen));
}
