//! docs/dr.md walked: each runbook section's `warden` commands are constants here, the test
//! runs them in order against a real lab, and `the_runbook_lists_the_commands_the_tests_run`
//! checks the doc's code blocks are exactly these commands (placeholders in capitals: `LAB`,
//! `SPEC`, `BACKUP`, …, filled in by the test). What is not a `warden` command (killing a
//! node, wiping its disk) is done by the test where the doc says it happens.

#![allow(clippy::print_stderr)] // step timings go to the test log on purpose

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use warden_testkit::cli::{Cli, on_lab, path_str, refs, text};
use warden_testkit::{LabEnv, spec_with_backup};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));
const DR_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/dr.md");

/// The runbook's status check, the step every wait repeats.
const LAB_STATUS: &str = "warden lab status --dir LAB --output json";

/// "Lose one node": after node 3 is killed and its disk wiped.
const LOSE_ONE_NODE: &[&str] = &[
    "warden lab status --dir LAB --output json",
    "warden backup create --spec SPEC --lab LAB --env test",
    "warden lab up --dir LAB",
    "warden lab status --dir LAB --output json",
];

/// "Lose one node", a lost disk: after node N is killed and its raft directory deleted.
const LOSE_A_DISK: &[&str] = &[
    "warden break-glass open --spec SPEC --lab LAB --env test --reason DR-PEER --ttl 1h --token-file BG_TOKEN --share SHARE_1 --identity CUSTODIAN_1 --share SHARE_2 --identity CUSTODIAN_2",
    "warden server remove-peer --spec SPEC --lab LAB --env test --node NODE_ID --token-file BG_TOKEN --confirm NODE_ID",
    "warden lab up --dir LAB",
    "warden lab status --dir LAB --output json",
    "warden break-glass close --spec SPEC --lab LAB --env test",
];

/// "Lose every node", before the loss (kept off the hosts).
const BEFORE_THE_LOSS: &[&str] = &[
    "warden evidence key --spec SPEC --lab LAB --env test > EVIDENCE_PEM",
    "warden backup create --spec SPEC --lab LAB --env test --output json",
];

/// "Lose every node", after every node and its disk is gone.
const LOSE_EVERY_NODE: &[&str] = &[
    "warden lab up --dir LAB --no-spec",
    "warden break-glass open --spec SPEC --lab LAB --env test --reason DR-REBUILD --ttl 1h --token-file BG_TOKEN --share NEW_SHARE_1 --identity CUSTODIAN_1 --share NEW_SHARE_2 --identity CUSTODIAN_2",
    "warden restore --spec SPEC --lab LAB --env test --from BACKUP --key EVIDENCE_PEM --identity RESTORER_KEY --token-file BG_TOKEN --force --confirm test",
    "warden unseal --spec SPEC --lab LAB --env test --state-dir OLD_STATE --share OLD_SHARE_1 --identity CUSTODIAN_1",
    "warden unseal --spec SPEC --lab LAB --env test --state-dir OLD_STATE --share OLD_SHARE_2 --identity CUSTODIAN_2",
    "warden posture --spec SPEC --lab LAB --env test --output json",
];

fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A three-node lab, a work directory, and in it the example spec with backups (to a
/// recipient nobody here restores with: these walks never decrypt a backup).
async fn cluster_with_backup() -> (LabEnv, tempfile::TempDir, PathBuf) {
    install_crypto_provider();
    let lab = LabEnv::start_with_nodes(&["test"], 3).await;
    let dir = tempfile::Builder::new()
        .prefix("warden-dr-runbook-")
        .tempdir()
        .expect("tempdir");
    let g = warden_custody::generate_identity();
    let spec = spec_with_backup(dir.path(), &[&g.recipient], 5);
    (lab, dir, spec)
}

/// Runs one runbook line with its placeholders filled; `> FILE` writes stdout there.
/// Returns the output; the caller says which exit code the step expects.
fn step(line: &str, vars: &HashMap<&str, String>) -> std::process::Output {
    let (cmd, to) = match line.split_once(" > ") {
        Some((c, f)) => (c, Some(f.trim())),
        None => (line, None),
    };
    let args: Vec<String> = cmd
        .split_whitespace()
        .skip(1)
        .map(|w| vars.get(w).cloned().unwrap_or_else(|| w.to_owned()))
        .collect();
    let t = Instant::now();
    let out = WARDEN.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    eprintln!(
        "[{:>6.1}s] {line} -> {:?}",
        t.elapsed().as_secs_f64(),
        out.status.code()
    );
    // Identity files and shares are passed by path; their contents never reach the output.
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !text(stream).contains("AGE-SECRET-KEY-"),
            "{line} printed an age identity"
        );
    }
    if let Some(f) = to {
        let path = vars.get(f).unwrap_or_else(|| panic!("no value for {f}"));
        std::fs::write(path, &out.stdout).expect("write stdout");
    }
    out
}

/// `posture`: its exit code is the worst status (0, or 10–14), not a failure of the step.
fn posture(line: &str, vars: &HashMap<&str, String>) -> Value {
    let out = step(line, vars);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || (10..=14).contains(&code),
        "{line}: exit {code}\n{}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("posture json")
}

fn ok(line: &str, vars: &HashMap<&str, String>) -> std::process::Output {
    let out = step(line, vars);
    assert!(
        out.status.success(),
        "{line}\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// The `warden` lines of the code blocks between `## {heading}` and the next `## `.
fn doc_commands(heading: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(DR_MD).expect("docs/dr.md");
    let start = doc
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("docs/dr.md has no section `## {heading}`"));
    let rest = &doc[start + 4..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.split(" # ").next().unwrap_or("").trim();
        let continued = line.strip_suffix('\\');
        pending.push_str(continued.unwrap_or(line).trim());
        if continued.is_some() {
            pending.push(' ');
            continue;
        }
        if pending.starts_with("warden ") {
            out.push(pending.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        pending.clear();
    }
    out
}

#[test]
fn the_runbook_lists_the_commands_the_tests_run() {
    let want = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut one = want(LOSE_ONE_NODE);
    one.extend(want(LOSE_A_DISK));
    assert_eq!(doc_commands("Lose one node"), one);
    let mut every = want(BEFORE_THE_LOSS);
    every.extend(want(LOSE_EVERY_NODE));
    assert_eq!(doc_commands("Lose every node"), every);
}

fn lab_status(out: &std::process::Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("lab status json: {e}: {}", text(&out.stdout)));
    let envs = v.as_array().expect("lab status is an array");
    let env = envs
        .iter()
        .find(|e| e["name"] == "test" || e["env"] == "test")
        .unwrap_or_else(|| panic!("environment test in {v}"));
    env["nodes"].as_array().cloned().unwrap_or_default()
}

/// Lose one node of three: a follower killed (a crash, its disk kept). The cluster keeps
/// serving (a backup is taken with two nodes); `lab up` brings it back, it rejoins and catches
/// up with what was committed while it was gone. (A node whose disk is gone is not walked:
/// see docs/dr.md.)
#[tokio::test(flavor = "multi_thread")]
async fn lose_one_node_the_cluster_serves_and_the_node_rejoins_and_catches_up() {
    let (lab, _dir, spec) = cluster_with_backup().await;
    WARDEN.ok(&refs(&on_lab(&["apply"], &spec, lab.dir())));
    let vars: HashMap<&str, String> = HashMap::from([
        ("LAB", path_str(lab.dir()).to_owned()),
        ("SPEC", path_str(&spec).to_owned()),
    ]);
    // The loss: a follower's process and disk.
    let victim = (1..=3u8)
        .rev()
        .find(|i| Some(*i) != futures_leader(&lab))
        .expect("a follower");
    lab.kill_node("test", victim);

    let down = step(LOSE_ONE_NODE[0], &vars);
    assert_eq!(down.status.code(), Some(3), "{}", text(&down.stderr));
    let nodes = lab_status(&down);
    assert_eq!(nodes[usize::from(victim) - 1]["role"], "down", "{nodes:?}");
    ok(LOSE_ONE_NODE[1], &vars);
    ok(LOSE_ONE_NODE[2], &vars);
    let back = ok(LOSE_ONE_NODE[3], &vars);
    let nodes = lab_status(&back);
    assert_eq!(nodes.len(), 3);
    for n in &nodes {
        assert_eq!(n["sealed"], false, "{nodes:?}");
        assert!(n["role"] == "leader" || n["role"] == "standby", "{nodes:?}");
    }
    // Caught up: the rejoined node applied what the cluster committed while it was gone.
    let leader = nodes
        .iter()
        .find(|n| n["role"] == "leader")
        .expect("leader");
    let want = leader["raft_committed_index"].as_u64().expect("index");
    wait_applied(victim, want, &vars);
}

/// Waits until node `index` has applied the leader's commit index (`lab status`).
fn wait_caught_up(index: u8, vars: &HashMap<&str, String>) {
    let nodes = lab_status(&ok(LAB_STATUS, vars));
    let leader = nodes
        .iter()
        .find(|n| n["role"] == "leader")
        .expect("leader");
    let want = leader["raft_committed_index"].as_u64().expect("index");
    wait_applied(index, want, vars);
}

/// Waits (at most a minute) until node `index` has applied raft index `want` (`lab status`).
fn wait_applied(index: u8, want: u64, vars: &HashMap<&str, String>) {
    let t = Instant::now();
    loop {
        let n = &lab_status(&ok(LAB_STATUS, vars))[usize::from(index) - 1];
        if n["raft_applied_index"].as_u64().unwrap_or(0) >= want {
            return;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "node {index} did not catch up to {want}: {n}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Lose one node's disk: a follower killed and its raft directory deleted. Brought back empty
/// under its old id it cannot rejoin while the leader lists it; after `server remove-peer`
/// (a break-glass token) `lab up` brings it back, it rejoins and catches up.
#[tokio::test(flavor = "multi_thread")]
async fn lose_one_nodes_disk_remove_the_peer_and_it_rejoins_empty() {
    let (lab, dir, spec) = cluster_with_backup().await;
    let layout = lab.lab().layout().env("test");
    let ids = warden_lab::custodians_dir(&layout);
    let shares = warden_lab::shares_dir(&layout);
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("LAB", path_str(lab.dir()).to_owned()),
        ("SPEC", path_str(&spec).to_owned()),
        (
            "BG_TOKEN",
            path_str(&dir.path().join("bg.token")).to_owned(),
        ),
    ]);
    for (i, c) in custodian_names(&shares).iter().take(2).enumerate() {
        vars.insert(
            ["CUSTODIAN_1", "CUSTODIAN_2"][i],
            path_str(&ids.join(format!("{c}.age-identity"))).to_owned(),
        );
        vars.insert(
            ["SHARE_1", "SHARE_2"][i],
            path_str(&shares.join(format!("{c}.test.share.age"))).to_owned(),
        );
    }
    let victim = (1..=3u8)
        .rev()
        .find(|i| Some(*i) != futures_leader(&lab))
        .expect("a follower");
    vars.insert("NODE_ID", format!("test-{victim}"));
    lab.kill_node("test", victim);
    std::fs::remove_dir_all(layout.node(victim).data_dir()).expect("wipe the node's disk");

    ok(LOSE_A_DISK[0], &vars);
    // The leader is refused (it would drop the cluster's leader), and so is a typo.
    let leader = futures_leader(&lab).expect("leader");
    let mut refused = vars.clone();
    refused.insert("NODE_ID", format!("test-{leader}"));
    let out = step(LOSE_A_DISK[1], &refused);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is the active node"),
        "{}",
        text(&out.stderr)
    );
    refused.insert("NODE_ID", "test-9".to_owned());
    let out = step(LOSE_A_DISK[1], &refused);
    assert!(
        text(&out.stderr).contains("is not in the raft peer set"),
        "{}",
        text(&out.stderr)
    );
    let removed = ok(LOSE_A_DISK[1], &vars);
    assert!(
        !text(&removed.stdout).contains(&format!("test-{victim} ")),
        "{}",
        text(&removed.stdout)
    );
    ok(LOSE_A_DISK[2], &vars);
    let back = ok(LOSE_A_DISK[3], &vars);
    for n in &lab_status(&back) {
        assert_eq!(n["sealed"], false, "{n}");
    }
    wait_caught_up(victim, &vars);
    ok(LOSE_A_DISK[4], &vars);
}

fn futures_leader(lab: &LabEnv) -> Option<u8> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(lab.leader("test")))
}

/// Lose every node: processes and disks gone. The lab is rebuilt (a new cluster, a new
/// keyring), the newest backup restored into it, unsealed with the backup era's shares; the
/// data and the operator's login come back.
#[tokio::test(flavor = "multi_thread")]
async fn lose_every_node_rebuild_restore_and_unseal_with_the_old_shares() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test"]).await;
    let dir = tempfile::Builder::new()
        .prefix("warden-dr-runbook-")
        .tempdir()
        .expect("tempdir");
    let g = warden_custody::generate_identity();
    let restorer = dir.path().join("restorer.key");
    std::fs::write(&restorer, g.file_text.as_bytes()).expect("identity");
    std::fs::set_permissions(&restorer, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let spec = spec_with_backup(dir.path(), &[&g.recipient], 5);
    let layout = lab.lab().layout().env("test");
    let ids = warden_lab::custodians_dir(&layout);
    let shares = warden_lab::shares_dir(&layout);
    let off = dir.path().join("off-host");
    let old_shares = off.join("shares");
    let old_state = off.join("state");
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("LAB", path_str(lab.dir()).to_owned()),
        ("SPEC", path_str(&spec).to_owned()),
        (
            "EVIDENCE_PEM",
            path_str(&off.join("evidence.pem")).to_owned(),
        ),
        ("RESTORER_KEY", path_str(&restorer).to_owned()),
        (
            "BG_TOKEN",
            path_str(&dir.path().join("bg.token")).to_owned(),
        ),
        ("OLD_STATE", path_str(&old_state).to_owned()),
    ]);
    WARDEN.ok(&refs(&on_lab(&["apply"], &spec, lab.dir())));
    // What the environment holds before: its purposes as posture reports them.
    let before = posture(LOSE_EVERY_NODE[5], &vars);

    std::fs::create_dir_all(&off).expect("mkdir");
    ok(BEFORE_THE_LOSS[0], &vars);
    let created = ok(BEFORE_THE_LOSS[1], &vars);
    let created: Value = serde_json::from_slice(&created.stdout).expect("json");
    vars.insert(
        "BACKUP",
        created["snapshot"].as_str().expect("snapshot").to_owned(),
    );

    // The custodians hold their shares and the ledger of that era off the hosts.
    copy_dir(&shares, &old_shares);
    let ledger = warden_lab::custody_state_dir(&layout).ledger("test");
    let rel = ledger
        .strip_prefix(lab.dir().join("state"))
        .expect("the ledger is under the lab's state dir");
    let old_ledger = old_state.join(rel);
    std::fs::create_dir_all(old_ledger.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&ledger, &old_ledger).expect("ledger");

    // The loss: every node's process and disk; the custody ledger and shares on the lab
    // host go with them (the rebuild makes new ones).
    lab.kill_node("test", 1);
    std::fs::remove_dir_all(layout.node(1).data_dir()).expect("wipe");
    std::fs::remove_file(&ledger).expect("ledger");
    std::fs::remove_dir_all(&shares).expect("shares");

    let t0 = Instant::now();
    ok(LOSE_EVERY_NODE[0], &vars);
    // The rebuilt cluster's custodians (the same people, new shares) open break-glass.
    let custodians = custodian_names(&old_shares);
    assert!(custodians.len() >= 2, "{custodians:?}");
    for (i, c) in custodians.iter().take(2).enumerate() {
        let k = ["CUSTODIAN_1", "CUSTODIAN_2"][i];
        vars.insert(
            k,
            path_str(&ids.join(format!("{c}.age-identity"))).to_owned(),
        );
        let s = format!("{c}.test.share.age");
        vars.insert(
            ["NEW_SHARE_1", "NEW_SHARE_2"][i],
            path_str(&shares.join(&s)).to_owned(),
        );
        vars.insert(
            ["OLD_SHARE_1", "OLD_SHARE_2"][i],
            path_str(&old_shares.join(&s)).to_owned(),
        );
    }
    ok(LOSE_EVERY_NODE[1], &vars);
    let restored = step(LOSE_EVERY_NODE[2], &vars);
    let err = text(&restored.stderr);
    assert_eq!(
        restored.status.code(),
        Some(5),
        "{err}\n{}",
        text(&restored.stdout)
    );
    assert!(err.contains("restoring with snapshot-force"), "{err}");
    assert!(err.contains("sealed after the restore"), "{err}");
    ok(LOSE_EVERY_NODE[3], &vars);
    ok(LOSE_EVERY_NODE[4], &vars);
    let after = posture(LOSE_EVERY_NODE[5], &vars);
    eprintln!(
        "RTO (rebuild → restored and serving): {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let purposes = |v: &Value| -> Vec<String> {
        let mut p: Vec<String> = v["environments"][0]["purposes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        p["purpose"]
                            .as_str()
                            .or(p["id"].as_str())
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        p.sort();
        p
    };
    assert!(!purposes(&before).is_empty(), "{before}");
    assert_eq!(purposes(&after), purposes(&before));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("ls").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn custodian_names(shares: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(shares)
        .expect("ls")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".test.share.age")
                .map(str::to_owned)
        })
        .collect();
    v.sort();
    v
}

/// Stops a lab made by `warden lab up` in the test, even when it panics.
struct LabDown(PathBuf);

impl Drop for LabDown {
    fn drop(&mut self) {
        let _ = WARDEN.run(&["lab", "down", "--dir", path_str(&self.0)]);
    }
}

/// The drill restores and unseals with Shamir shares; an auto-sealed (static) lab has recovery
/// keys only. The drill refuses it up front, naming what is supported, and starts nothing.
#[test]
fn a_drill_of_a_static_seal_lab_is_refused_naming_what_is_supported() {
    let dir = tempfile::Builder::new()
        .prefix("warden-dr-runbook-")
        .tempdir()
        .expect("tempdir");
    let lab = dir.path().join("lab");
    let _down = LabDown(lab.clone());
    WARDEN.ok(&[
        "lab",
        "up",
        "--env",
        "test",
        "--no-spec",
        "--no-agents",
        "--seal",
        "static",
        "--dir",
        path_str(&lab),
    ]);
    let g = warden_custody::generate_identity();
    let spec = spec_with_backup(dir.path(), &[&g.recipient], 5);
    let out = WARDEN.run(&[
        "dr",
        "drill",
        "--spec",
        path_str(&spec),
        "--lab",
        path_str(&lab),
        "--env",
        "test",
        "--key",
        path_str(&dir.path().join("evidence.pem")),
        "--identity",
        path_str(&dir.path().join("restorer.key")),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("supports Shamir-sealed environments only; `test` uses the static seal"),
        "{err}"
    );
    assert!(err.contains("Nothing was started"), "{err}");
    assert!(err.contains("warden backup verify"), "{err}");
    assert!(
        !dir.path().join("backups").exists(),
        "nothing written: {:?}",
        std::fs::read_dir(dir.path()).map(|r| r.count())
    );
}
