//! `warden ca backup` and `warden ca restore` through the real binary, on real files: the
//! runbook "Losing the offline CA host" (docs/ca.md) step by step, and every refusal checked to
//! leave the CA directory byte-for-byte as it was and nothing beside it.
//!
//! Secrets only ever travel in owner-only files: every run's argv is checked to hold no
//! passphrase, and its output to show neither a passphrase nor key material.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use warden_testkit::cli::{Cli, Run};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const PASS: &str = "a long offline passphrase";
const NEW_PASS: &str = "the passphrase after the restore";
const CUSTODIANS: [&str; 3] = ["alice", "bob", "carol"];

struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let site = Self {
            tmp: tempfile::Builder::new()
                .prefix("warden-cabackup-")
                .tempdir()
                .unwrap(),
        };
        site.write_private("pass", &format!("{PASS}\n"));
        site.write_private("new-pass", &format!("{NEW_PASS}\n"));
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn write_private(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// Runs `warden ARGS` in the site, checking no secret is in argv or printed.
    fn run(&self, args: &[&str]) -> Run {
        for a in args {
            assert!(
                !a.contains(PASS) && !a.contains(NEW_PASS),
                "secret in argv: {a}"
            );
        }
        let run = WARDEN.invoke(args).current_dir(self.tmp.path()).run();
        run.never_shows(PASS)
            .never_shows(NEW_PASS)
            .never_shows("PRIVATE KEY")
            .never_shows("AGE-SECRET-KEY");
        run
    }

    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        run.ok();
        run
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        self.ok(&all).json()
    }

    /// `warden custody keygen` for each custodian: `<name>.key`, and `name=age1…` to pass.
    fn custodians(&self, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|n| {
                let key = self.s(&format!("{n}.key"));
                let v = self.json(&["custody", "keygen", "--identity", &key]);
                format!("{n}={}", v["recipient"].as_str().unwrap())
            })
            .collect()
    }

    fn init(&self, dir: &str) {
        self.ok(&[
            "ca",
            "init",
            "--dir",
            &self.s(dir),
            "--passphrase-file",
            &self.s("pass"),
        ]);
    }

    /// Signs a fresh intermediate CSR with the CA in `dir`; the passphrase file is `pass`.
    fn sign(&self, dir: &str, pass: &str) -> Run {
        let key = warden_pki::generate_key(warden_pki::KeyAlgorithm::EcdsaP256).unwrap();
        let csr = self.path("int.csr");
        std::fs::write(
            &csr,
            warden_pki::make_csr(&key, "Prod Intermediate", &[], &[]).unwrap(),
        )
        .unwrap();
        let out = self.path("int.pem");
        let _ = std::fs::remove_file(&out);
        self.run(&[
            "ca",
            "sign-intermediate",
            "--dir",
            &self.s(dir),
            "--env",
            "prod",
            "--csr",
            &csr.display().to_string(),
            "--out",
            &out.display().to_string(),
            "--passphrase-file",
            &self.s(pass),
        ])
    }

    fn ledger(&self, dir: &str) -> String {
        std::fs::read_to_string(self.path(dir).join("ledger.jsonl")).unwrap()
    }

    /// `warden ca backup` of `dir` to `to`, 2 of the custodians' shares.
    fn backup(&self, dir: &str, to: &str, custodians: &[String]) -> Value {
        let mut args = vec!["ca", "backup", "--dir"];
        let d = self.s(dir);
        let t = self.s(to);
        let p = self.s("pass");
        args.extend([d.as_str(), "--to", t.as_str()]);
        for c in custodians {
            args.extend(["--custodian", c.as_str()]);
        }
        args.extend(["--threshold", "2", "--passphrase-file", p.as_str()]);
        self.json(&args)
    }
}

/// Every file under `dir` (recursively) with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.insert(
                p.clone(),
                (
                    std::fs::read(&p).unwrap(),
                    meta.permissions().mode() & 0o777,
                ),
            );
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The runbook in docs/ca.md, "Losing the offline CA host", step by step: custodians' keys,
/// a backup split 2 of 3, the CA host lost (its directory deleted), a dry run, the restore with
/// two custodians' shares and a new passphrase, a signature that continues the ledger, and a
/// fresh backup under the new passphrase.
#[test]
fn losing_the_offline_ca_host_backup_delete_restore_sign() {
    let site = Site::new();
    // Step 1 (custodians' machines): one age identity each.
    let custodians = site.custodians(&CUSTODIANS);
    site.init("ca");
    site.sign("ca", "pass").ok();
    let ledger_before = site.ledger("ca");
    assert_eq!(ledger_before.lines().count(), 2);

    // Step 2: the backup, encrypted to all three, the passphrase split 2 of 3.
    let b = site.backup("ca", "ca.backup.age", &custodians);
    assert_eq!(b["manifest"]["ledger"]["entries"], 2);
    assert_eq!(b["manifest"]["passphrase_split"]["threshold"], 2);
    assert_eq!(b["shares"].as_array().unwrap().len(), 3);
    let archive = site.path("ca.backup.age");
    assert_eq!(mode(&archive), 0o600);
    let text = std::fs::read_to_string(&archive).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    assert!(!text.contains("BEGIN ENCRYPTED PRIVATE KEY") && !text.contains("ledger"));
    for n in CUSTODIANS {
        let share = site.path(&format!("ca.backup.age.{n}.share.age"));
        assert_eq!(mode(&share), 0o600, "{}", share.display());
    }
    let last_line = ledger_before.lines().last().unwrap();
    assert_eq!(
        b["manifest"]["ledger"]["last_entry_sha256"],
        warden_pki::sha256_hex(last_line.as_bytes())
    );

    // Nothing on disk holds a secret in clear: the passphrase is only in its own file, no
    // file outside the CA directory holds key material or the ledger.
    for (path, (bytes, _)) in snapshot(site.tmp.path()) {
        let text = String::from_utf8_lossy(&bytes);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name != "pass" && name != "new-pass" {
            assert!(
                !text.contains(PASS),
                "{} holds the passphrase",
                path.display()
            );
        }
        if !path.starts_with(site.path("ca")) {
            assert!(
                !text.contains("PRIVATE KEY") && !text.contains("\"serial\""),
                "{} holds CA material in clear",
                path.display()
            );
        }
    }

    // Step 3: the host is lost.
    std::fs::remove_dir_all(site.path("ca")).unwrap();

    // Step 4: a dry run with two custodians (alice and carol) writes nothing.
    let restore = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "ca",
            "restore",
            "--from",
            &site.s("ca.backup.age"),
            "--dir",
            &site.s("ca"),
            "--identity",
            &site.s("alice.key"),
            "--identity",
            &site.s("carol.key"),
            "--share",
            &site.s("ca.backup.age.alice.share.age"),
            "--share",
            &site.s("ca.backup.age.carol.share.age"),
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let dry = restore(&["--dry-run"]);
    let v = site.json(&dry.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["key"], "shares_new_passphrase");
    assert!(!site.path("ca").exists());

    // Step 5: the restore, under a new passphrase.
    let real = restore(&["--new-passphrase-file", &site.s("new-pass")]);
    let v = site.json(&real.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["replaced"], false);
    assert_eq!(v["manifest"]["ledger"]["entries"], 2);
    assert_eq!(site.ledger("ca"), ledger_before);
    assert_eq!(mode(&site.path("ca")), 0o700);
    assert_eq!(mode(&site.path("ca/root.key.p8")), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(site.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Step 6: `ca show` finds the same root and ledger; signing continues the ledger.
    let show = site.json(&["ca", "show", "--dir", &site.s("ca")]);
    assert_eq!(show["root"]["sha256"], b["manifest"]["root_sha256"]);
    assert_eq!(show["ledger"].as_array().unwrap().len(), 2);
    site.sign("ca", "pass")
        .expect_code(1)
        .says("passphrase does not decrypt");
    site.sign("ca", "new-pass").ok();
    let after = site.ledger("ca");
    assert_eq!(after.lines().count(), 3);
    assert!(
        after.starts_with(&ledger_before),
        "the ledger was rewritten"
    );

    // Step 7: a new backup under the new passphrase (the old shares do not open it).
    site.write_private("pass", &format!("{NEW_PASS}\n"));
    let b2 = site.backup("ca", "ca.backup-2.age", &custodians);
    assert_eq!(b2["manifest"]["ledger"]["entries"], 3);
    // The restore of the newer backup over the directory continues it; the older one is refused.
    let over = |from: &str, force: bool| {
        let mut args = vec![
            "ca".to_owned(),
            "restore".to_owned(),
            "--from".to_owned(),
            site.s(from),
            "--dir".to_owned(),
            site.s("ca"),
            "--identity".to_owned(),
            site.s("bob.key"),
        ];
        if force {
            args.push("--force".to_owned());
        }
        site.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    over("ca.backup-2.age", false)
        .expect_code(1)
        .says("already holds a CA");
    let before = snapshot(&site.path("ca"));
    over("ca.backup.age", true)
        .expect_code(1)
        .says("refusing to roll the ledger back");
    assert_eq!(snapshot(&site.path("ca")), before);
    over("ca.backup-2.age", true).ok();
    assert_eq!(site.ledger("ca"), after);
}

/// Each refusal says what is wrong and leaves the CA directory (restored over with --force,
/// where the restore would otherwise succeed) and its parent exactly as they were.
#[test]
fn refused_restores_change_nothing() {
    let site = Site::new();
    // dave has an identity but is no recipient of any backup.
    let custodians = site.custodians(&["alice", "bob", "carol", "dave"]);
    let three = &custodians[..3];
    site.init("ca");
    site.backup("ca", "ca.backup.age", three);
    // Another root, backed up to the same custodians: its shares are foreign here.
    site.init("other");
    site.backup("other", "other.backup.age", three);
    // A share of a second backup of the same root: right root, wrong split.
    site.backup("ca", "ca.second.age", three);

    let archive = std::fs::read(site.path("ca.backup.age")).unwrap();
    std::fs::write(site.path("truncated.age"), &archive[..archive.len() / 2]).unwrap();
    let mut tampered = archive;
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    std::fs::write(site.path("tampered.age"), &tampered).unwrap();
    let share = |backup: &str, who: &str| site.s(&format!("{backup}.{who}.share.age"));
    let mut bad_share = std::fs::read(share("ca.backup.age", "bob")).unwrap();
    let m = bad_share.len() / 2;
    bad_share[m] = if bad_share[m] == b'A' { b'B' } else { b'A' };
    std::fs::write(site.path("bob-tampered.share.age"), &bad_share).unwrap();

    let before = snapshot(site.tmp.path());
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "truncated archive",
            vec![site.s("truncated.age"), site.s("alice.key")],
            "not a readable Warden CA backup",
        ),
        (
            "altered archive",
            vec![site.s("tampered.age"), site.s("alice.key")],
            "not a readable Warden CA backup",
        ),
        (
            "identity the archive was not made for",
            vec![site.s("ca.backup.age"), site.s("dave.key")],
            "does not open",
        ),
    ];
    for (what, args, says) in &cases {
        let run = site.run(&[
            "ca",
            "restore",
            "--force",
            "--from",
            &args[0],
            "--identity",
            &args[1],
            "--dir",
            &site.s("ca"),
            "--passphrase-file",
            &site.s("pass"),
        ]);
        run.expect_code(1).says(says).says("nothing was written to");
        assert_eq!(snapshot(site.tmp.path()), before, "{what} changed files");
    }

    let with_shares = |shares: &[String]| {
        let mut args = vec![
            "ca".to_owned(),
            "restore".to_owned(),
            "--force".to_owned(),
            "--from".to_owned(),
            site.s("ca.backup.age"),
            "--dir".to_owned(),
            site.s("ca"),
            "--new-passphrase-file".to_owned(),
            site.s("new-pass"),
        ];
        for n in CUSTODIANS {
            args.extend(["--identity".to_owned(), site.s(&format!("{n}.key"))]);
        }
        for s in shares {
            args.extend(["--share".to_owned(), s.clone()]);
        }
        site.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let share_cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "too few shares",
            vec![share("ca.backup.age", "alice")],
            "1 share(s) given, the threshold is 2",
        ),
        (
            "a share of another CA",
            vec![
                share("ca.backup.age", "alice"),
                share("other.backup.age", "bob"),
            ],
            "is a passphrase share of the root",
        ),
        (
            "a share of another backup of the same CA",
            vec![
                share("ca.backup.age", "alice"),
                share("ca.second.age", "bob"),
            ],
            "another backup's split",
        ),
        (
            "the same share twice",
            vec![
                share("ca.backup.age", "alice"),
                share("ca.backup.age", "alice"),
            ],
            "given twice",
        ),
        (
            "an altered share",
            vec![
                share("ca.backup.age", "alice"),
                site.s("bob-tampered.share.age"),
            ],
            "not an encrypted Warden custody file",
        ),
    ];
    for (what, shares, says) in &share_cases {
        with_shares(shares)
            .expect_code(1)
            .says(says)
            .says("nothing was written to");
        assert_eq!(snapshot(site.tmp.path()), before, "{what} changed files");
    }
    // The same restore with two good shares goes through: the refusals above were the shares'.
    with_shares(&[
        share("ca.backup.age", "alice"),
        share("ca.backup.age", "carol"),
    ])
    .ok();
}

/// `--custodians-of ENV` takes the custodians of an environment's ceremony from the spec, and
/// its threshold: the same people hold the unseal shares and the root's passphrase.
#[test]
fn the_custodians_of_a_ceremony_hold_the_backup() {
    let site = Site::new();
    let custodians = site.custodians(&CUSTODIANS);
    let mut spec = "version = 1\n\n[environments.prod]\naddress = \"https://127.0.0.1:8200\"\ndomain = \"prod.example.internal\"\n\n[environments.prod.custody]\nthreshold = 2\n".to_owned();
    for c in &custodians {
        let (name, recipient) = c.split_once('=').unwrap();
        spec += &format!(
            "\n[[environments.prod.custody.custodians]]\nname = \"{name}\"\nrecipient = \"{recipient}\"\n"
        );
    }
    std::fs::write(site.path("warden.toml"), spec).unwrap();
    site.init("ca");
    let b = site.json(&[
        "ca",
        "backup",
        "--dir",
        &site.s("ca"),
        "--to",
        &site.s("ca.backup.age"),
        "--spec",
        &site.s("warden.toml"),
        "--custodians-of",
        "prod",
        "--passphrase-file",
        &site.s("pass"),
    ]);
    assert_eq!(b["manifest"]["passphrase_split"]["threshold"], 2);
    assert_eq!(
        b["manifest"]["passphrase_split"]["custodians"],
        serde_json::json!(CUSTODIANS)
    );
    let v = site.json(&[
        "ca",
        "restore",
        "--dry-run",
        "--from",
        &site.s("ca.backup.age"),
        "--dir",
        &site.s("restored"),
        "--identity",
        &site.s("bob.key"),
        "--identity",
        &site.s("carol.key"),
        "--share",
        &site.s("ca.backup.age.bob.share.age"),
        "--share",
        &site.s("ca.backup.age.carol.share.age"),
    ]);
    assert_eq!(v["key"], "shares_new_passphrase");
    site.run(&[
        "ca",
        "backup",
        "--dir",
        &site.s("ca"),
        "--to",
        &site.s("other.age"),
        "--spec",
        &site.s("warden.toml"),
        "--custodians-of",
        "test",
    ])
    .expect_code(1)
    .says("has no environment `test`");
    assert!(!site.path("other.age").exists());
}

/// Red team: a custodian's name becomes part of its share's file name, so a name with a `/`
/// (or `..`) would put that share somewhere other than beside the archive (here into a
/// directory planted next to it). Refused before anything is written; the CA is untouched.
#[test]
fn red_team_a_custodian_name_cannot_place_a_share_elsewhere() {
    let site = Site::new();
    site.init("ca");
    let before = snapshot(&site.path("ca"));
    let mut custodians = site.custodians(&CUSTODIANS);
    // `bob`'s recipient under a name that walks into a planted directory.
    let recipient = custodians[1].split_once('=').unwrap().1.to_owned();
    std::fs::create_dir(site.path("ca.backup.age.x")).unwrap();
    for evil in ["x/planted", "../escaped", "Bob\nforged: line"] {
        custodians[1] = format!("{evil}={recipient}");
        let d = site.s("ca");
        let t = site.s("ca.backup.age");
        let p = site.s("pass");
        let mut args = vec!["ca", "backup", "--dir", d.as_str(), "--to", t.as_str()];
        for c in &custodians {
            args.extend(["--custodian", c.as_str()]);
        }
        args.extend(["--threshold", "2", "--passphrase-file", p.as_str()]);
        let run = site.run(&args);
        run.expect_code(1);
        assert!(
            run.all().contains("custodian name"),
            "{evil:?}: {}",
            run.all()
        );
        assert!(
            std::fs::read_dir(site.path("ca.backup.age.x"))
                .unwrap()
                .next()
                .is_none(),
            "{evil:?}: a share landed in the planted directory"
        );
        assert!(!site.path("ca.backup.age").exists(), "{evil:?}");
        assert!(
            !site
                .tmp
                .path()
                .parent()
                .unwrap()
                .join("ca.backup.age.escaped.share.age")
                .exists()
        );
        assert_eq!(snapshot(&site.path("ca")), before);
    }
    // The same custodians under proper names back up fine.
    custodians[1] = format!("bob={recipient}");
    site.backup("ca", "ca.backup.age", &custodians);
}

/// `ca restore --dir LINK`: a dangling symlink was found out only at the last rename, after the
/// custodians had given their shares ("could not rename into place: Not a directory", no
/// hint). Refused first, with nothing written and the link left as it was.
#[test]
fn restore_refuses_a_symlink_at_dir_before_reading_anything() {
    let site = Site::new();
    let custodians = site.custodians(&CUSTODIANS);
    site.init("ca");
    site.backup("ca", "ca.backup.age", &custodians);
    let link = site.path("restored");
    std::os::unix::fs::symlink(site.path("elsewhere"), &link).unwrap();
    site.run(&[
        "ca",
        "restore",
        "--from",
        &site.s("ca.backup.age"),
        "--dir",
        &site.s("restored"),
        "--identity",
        &site.s("alice.key"),
    ])
    .expect_code(1)
    .says("is a symbolic link")
    .says("nothing was written");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!site.path("elsewhere").exists());
}
