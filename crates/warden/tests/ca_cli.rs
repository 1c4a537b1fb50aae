//! `warden ca` as an operator uses it: the real binary, real files, passphrases from a file or
//! `WARDEN_CA_PASSPHRASE`. Every refusal is checked to leave the CA directory byte-for-byte
//! unchanged.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use predicates::prelude::*;
use warden_testkit::cli::Cli;

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const PASS: &str = "a long offline passphrase";

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        env.write_private("pass", &format!("{PASS}\n"));
        env.write_private("wrong-pass", "not the passphrase\n");
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("ca")
    }

    fn write_private(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// `warden` with a clean environment (no `WARDEN_CA_PASSPHRASE`, `WARDEN_CA_DIR`, ...), as
    /// an `assert_cmd` command for its output predicates.
    fn warden(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::from_std(WARDEN.command::<&str>(&[]));
        cmd.current_dir(self.tmp.path())
            .timeout(std::time::Duration::from_secs(60));
        cmd
    }

    fn init(&self, extra: &[&str]) {
        self.warden()
            .args(["ca", "init", "--dir"])
            .arg(self.ca())
            .arg("--passphrase-file")
            .arg(self.path("pass"))
            .args(extra)
            .assert()
            .success()
            .stdout(predicate::str::contains("Created the offline root CA"));
    }

    /// A fresh CSR for an intermediate named `cn`, written to `<name>.csr`.
    fn csr(&self, name: &str, cn: &str) -> PathBuf {
        let key = warden_pki::generate_key(warden_pki::KeyAlgorithm::EcdsaP256).unwrap();
        let pem = warden_pki::make_csr(&key, cn, &[], &[]).unwrap();
        let p = self.path(&format!("{name}.csr"));
        std::fs::write(&p, pem).unwrap();
        p
    }

    fn sign(&self, csr: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
        self.warden()
            .args(["ca", "sign-intermediate", "--env", "test", "--dir"])
            .arg(self.ca())
            .arg("--csr")
            .arg(csr)
            .args(extra)
            .assert()
    }

    fn ledger_lines(&self) -> usize {
        std::fs::read_to_string(self.ca().join("ledger.jsonl"))
            .unwrap()
            .lines()
            .count()
    }

    /// Name → (mode, content) of every file in the CA directory, plus the directory's own mode.
    fn snapshot(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut map: BTreeMap<_, _> = std::fs::read_dir(self.ca())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let mode = e.metadata().unwrap().permissions().mode();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    (mode, std::fs::read(e.path()).unwrap()),
                )
            })
            .collect();
        let dir_mode = std::fs::metadata(self.ca()).unwrap().permissions().mode();
        map.insert(".".to_owned(), (dir_mode, Vec::new()));
        map
    }
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn init_sign_show_and_verify() {
    let env = Env::new();
    env.init(&[]);
    let ca = env.ca();
    for (name, mode) in [
        ("root.crt", 0o644),
        ("root.key.p8", 0o600),
        ("ledger.jsonl", 0o644),
        ("ca.json", 0o644),
    ] {
        let m = std::fs::metadata(ca.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{name}");
    }
    assert_eq!(env.ledger_lines(), 1);

    let csr = env.csr("test", "OpenBao test PKI");
    let out = env.path("test-int.pem");
    env.sign(
        &csr,
        &[
            "--out",
            out.to_str().unwrap(),
            "--permitted-dns",
            "test.internal",
            "--validity",
            "2y",
            "--passphrase-file",
            env.path("pass").to_str().unwrap(),
        ],
    )
    .success()
    .stdout(predicate::str::contains("Signed CN=OpenBao test PKI"));
    assert_eq!(env.ledger_lines(), 2);
    let certs = warden_pki::parse_pem_bundle(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(certs.len(), 1);
    assert!(certs[0].is_ca);
    assert_eq!(certs[0].path_len, Some(0));
    assert_eq!(certs[0].permitted_dns, ["test.internal"]);
    assert_eq!(certs[0].issuer, "CN=Warden Offline Root CA");

    // show --output json carries the root and the ledger.
    let a = env
        .warden()
        .args(["ca", "show", "--output", "json", "--dir"])
        .arg(&ca)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(v["root"]["subject"], "CN=Warden Offline Root CA");
    assert_eq!(v["root"]["self_signed"], true);
    assert_eq!(v["metadata"]["algorithm"], "ecdsa-p256");
    let ledger = v["ledger"].as_array().unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0]["profile"], "root");
    assert_eq!(ledger[1]["environment"], "test");
    assert_eq!(ledger[1]["profile"], "vault-pki");
    assert_eq!(ledger[1]["sha256"], certs[0].sha256);
    assert_eq!(ledger[1]["serial"], certs[0].serial);

    // show as text has the table.
    env.warden()
        .args(["ca", "show", "--dir"])
        .arg(&ca)
        .assert()
        .success()
        .stdout(predicate::str::contains("Ledger (2 signature(s))"))
        .stdout(predicate::str::contains("vault-pki"));

    // The intermediate alone: the root is missing, exit 3.
    env.warden()
        .args(["ca", "verify"])
        .arg(&out)
        .assert()
        .code(3)
        .stdout(predicate::str::contains(
            "intermediate only — the root is missing for validation",
        ))
        .stderr(predicate::str::contains(
            "is not valid: 1 problem(s)\n  hint: pass the root with --root",
        ));
    let a = env
        .warden()
        .args(["ca", "verify", "-o", "json"])
        .arg(&out)
        .assert()
        .code(3);
    let v: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["kind"], "missing_root");

    // With the root, by file or by CA directory: valid, exit 0.
    env.warden()
        .args(["ca", "verify"])
        .arg(&out)
        .arg("--root")
        .arg(ca.join("root.crt"))
        .assert()
        .success()
        .stdout(predicate::str::contains("valid: every link verifies"));
    env.warden()
        .args(["ca", "verify"])
        .arg(&out)
        .arg("--dir")
        .arg(&ca)
        .assert()
        .success();

    // Two years from now the intermediate has expired.
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(800))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    env.warden()
        .args(["ca", "verify", "--at", &later])
        .arg(&out)
        .arg("--dir")
        .arg(&ca)
        .assert()
        .code(3)
        .stdout(predicate::str::contains("CN=OpenBao test PKI expired at"));
}

#[test]
fn env_passphrase_stdout_pem_and_bundle_order() {
    let env = Env::new();
    env.init(&["--algorithm", "ecdsa-p384", "--common-name", "Lab Root"]);
    let csr = env.csr("prod", "OpenBao prod PKI");
    // Passphrase from the environment; no --out: stdout is exactly the PEM bundle.
    let a = env
        .warden()
        .env("WARDEN_CA_PASSPHRASE", PASS)
        .args([
            "ca",
            "sign-intermediate",
            "--env",
            "prod",
            "--bundle",
            "--dir",
        ])
        .arg(env.ca())
        .arg("--csr")
        .arg(&csr)
        .assert()
        .success()
        .stdout(predicate::str::starts_with("-----BEGIN CERTIFICATE-----"));
    let bundle = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    let certs = warden_pki::parse_pem_bundle(&bundle).unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[1].subject, "CN=Lab Root");
    assert_eq!(certs[1].key_algorithm, "ECDSA P-384");
    let bundle_path = env.path("bundle.pem");
    std::fs::write(&bundle_path, &bundle).unwrap();
    env.warden()
        .args(["ca", "verify"])
        .arg(&bundle_path)
        .assert()
        .success();

    // The same two certificates the wrong way round.
    let pems: Vec<&str> = bundle
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    let swapped = env.path("swapped.pem");
    std::fs::write(&swapped, format!("{}{}", pems[1], pems[0])).unwrap();
    env.warden()
        .args(["ca", "verify"])
        .arg(&swapped)
        .assert()
        .code(3)
        .stdout(predicate::str::contains("wrong order"));
}

#[test]
fn wrong_passphrase_is_refused_and_changes_nothing() {
    let env = Env::new();
    env.init(&[]);
    let csr = env.csr("x", "int");
    let before = env.snapshot();
    let out = env.path("int.pem");
    let a = env
        .sign(
            &csr,
            &[
                "--out",
                out.to_str().unwrap(),
                "--passphrase-file",
                env.path("wrong-pass").to_str().unwrap(),
            ],
        )
        .code(1);
    let err = stderr_of(&a);
    assert!(err.contains("the passphrase does not decrypt"), "{err}");
    assert!(
        err.contains("hint: check the passphrase; the CA directory was not changed"),
        "{err}"
    );
    assert!(
        !err.contains(PASS) && !err.contains("not the passphrase"),
        "{err}"
    );
    assert_eq!(env.snapshot(), before);
    assert!(!out.exists());
}

#[test]
fn tampered_csr_is_refused_and_changes_nothing() {
    let env = Env::new();
    env.init(&[]);
    let csr = env.csr("x", "int");
    // Change one base64 character near the end: a few bits of the last bytes of the DER, which
    // are the CSR's signature.
    let pem = std::fs::read_to_string(&csr).unwrap();
    let mut body: Vec<u8> = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
        .into_bytes();
    let i = body.iter().rposition(|c| *c != b'=').unwrap() - 5;
    body[i] = if body[i] == b'A' { b'B' } else { b'A' };
    let wrapped: Vec<String> = body
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let tampered = env.path("tampered.csr");
    std::fs::write(
        &tampered,
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            wrapped.join("\n")
        ),
    )
    .unwrap();
    let before = env.snapshot();
    let a = env
        .sign(
            &tampered,
            &["--passphrase-file", env.path("pass").to_str().unwrap()],
        )
        .code(1);
    let err = stderr_of(&a);
    assert!(err.contains("bad certificate signing request"), "{err}");
    assert!(err.contains("signature does not verify"), "{err}");
    assert!(err.contains("the CA directory was not changed"), "{err}");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn an_intermediate_outliving_the_root_is_refused() {
    let env = Env::new();
    env.init(&["--validity", "1y"]);
    let csr = env.csr("x", "int");
    let before = env.snapshot();
    let a = env
        .sign(
            &csr,
            &["--passphrase-file", env.path("pass").to_str().unwrap()],
        )
        .code(1);
    let err = stderr_of(&a);
    assert!(err.contains("the root expires at "), "{err}");
    assert!(err.contains(", before the intermediate would ("), "{err}");
    assert!(err.contains("shorter --validity"), "{err}");
    assert_eq!(env.snapshot(), before);
    // A lifetime that fits is accepted.
    env.sign(
        &csr,
        &[
            "--validity",
            "90d",
            "--passphrase-file",
            env.path("pass").to_str().unwrap(),
        ],
    )
    .success();
    assert_eq!(env.ledger_lines(), 2);
}

#[test]
fn an_expired_root_signs_nothing() {
    let env = Env::new();
    env.init(&["--validity", "2s"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let csr = env.csr("x", "int");
    let before = env.snapshot();
    let a = env
        .sign(
            &csr,
            &[
                "--validity",
                "1s",
                "--passphrase-file",
                env.path("pass").to_str().unwrap(),
            ],
        )
        .code(1);
    let err = stderr_of(&a);
    assert!(err.contains("the root expired at "), "{err}");
    assert!(err.contains("warden ca init"), "{err}");
    assert_eq!(env.snapshot(), before);
    env.warden()
        .args(["ca", "show", "--dir"])
        .arg(env.ca())
        .assert()
        .success()
        .stdout(predicate::str::contains("EXPIRED"));
}

#[test]
fn init_refuses_an_existing_ca_and_sign_an_unwritable_out() {
    let env = Env::new();
    env.init(&[]);
    let before = env.snapshot();
    let a = env
        .warden()
        .args(["ca", "init", "--dir"])
        .arg(env.ca())
        .arg("--passphrase-file")
        .arg(env.path("pass"))
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(err.contains("already holds a CA"), "{err}");
    assert!(err.contains("warden ca show"), "{err}");
    assert_eq!(env.snapshot(), before);

    // --out in a directory that does not exist: refused before signing, ledger untouched.
    let csr = env.csr("x", "int");
    let a = env
        .sign(
            &csr,
            &[
                "--out",
                env.path("missing/int.pem").to_str().unwrap(),
                "--passphrase-file",
                env.path("pass").to_str().unwrap(),
            ],
        )
        .code(1);
    assert!(stderr_of(&a).contains("nothing was signed"));
    assert_eq!(env.snapshot(), before);

    // A directory another user can write to: refused before the passphrase is read.
    let open = env.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let a = env
        .warden()
        .args(["ca", "init", "--dir"])
        .arg(&open)
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains("writable by other users") && err.contains("chmod go-w"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);

    // Not a CA directory.
    let a = env
        .warden()
        .args(["ca", "show", "--dir"])
        .arg(env.path("nowhere"))
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("warden ca init"));
}

#[test]
fn verify_rejects_garbage_and_bad_durations_with_usage_errors() {
    let env = Env::new();
    let junk = env.path("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let a = env
        .warden()
        .args(["ca", "verify"])
        .arg(&junk)
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("PEM"), "{}", stderr_of(&a));
    env.warden()
        .args(["ca", "init", "--validity", "ten years", "--dir"])
        .arg(env.ca())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid duration"));
    assert!(!env.ca().exists());
}

/// Issue 14: once the root signs for a second environment, `sign-intermediate` refuses an
/// unconstrained intermediate (nothing written), signs a constrained one, and signs an
/// unconstrained one only with a reason, which the ledger records. `ca verify --dir` then
/// flags the first environment's unconstrained intermediate with the next step, and passes the
/// constrained one.
#[test]
fn issue_14_unconstrained_intermediates_are_refused_and_flagged_once_two_environments_share_the_root()
 {
    let env = Env::new();
    env.init(&[]);
    let pass = env.path("pass");
    let sign = |name: &str, args: &[&str]| {
        let csr = env.csr(name, &format!("OpenBao {name} PKI"));
        let out = env.path(&format!("{name}.pem"));
        let a = env
            .warden()
            .args(["ca", "sign-intermediate", "--bundle", "--dir"])
            .arg(env.ca())
            .arg("--csr")
            .arg(&csr)
            .arg("--out")
            .arg(&out)
            .arg("--passphrase-file")
            .arg(&pass)
            .args(args)
            .assert();
        (a, out)
    };
    // The first environment alone: unconstrained is still allowed (a single-environment root).
    let (a, test_bundle) = sign("test", &["--env", "test"]);
    a.success();

    let before = env.snapshot();
    let (a, _) = sign("prod", &["--env", "prod"]);
    let err = stderr_of(&a.code(1));
    assert!(
        err.contains("refusing to sign an unconstrained intermediate for `prod`")
            && err.contains("prod, test")
            && err.contains("--permitted-dns")
            && err.contains("--unconstrained-because"),
        "{err}"
    );
    assert_eq!(env.snapshot(), before, "a refusal changes nothing");

    let (a, prod_bundle) = sign(
        "prod",
        &["--env", "prod", "--permitted-dns", "prod.warden.internal"],
    );
    a.success();
    let reason = "single-tenant staging, replaced next quarter";
    let (a, staging_bundle) = sign(
        "staging",
        &[
            "--env",
            "staging",
            "--unconstrained-because",
            reason,
            "-o",
            "json",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_slice(&a.success().get_output().stdout).unwrap();
    assert_eq!(report["ledger_entry"]["unconstrained_because"], reason);
    let ledger = std::fs::read_to_string(env.ca().join("ledger.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(ledger.lines().last().unwrap()).unwrap();
    assert_eq!(last["environment"], "staging");
    assert_eq!(last["unconstrained_because"], reason);

    let verify = |bundle: &Path| {
        env.warden()
            .args(["ca", "verify", "-o", "json", "--dir"])
            .arg(env.ca())
            .arg(bundle)
            .assert()
    };
    // test's intermediate predates the second environment: its chain verifies, but it crosses
    // the boundary.
    let a = verify(&test_bundle).code(3);
    let out: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(out["valid"], true, "{out:#}");
    assert_eq!(
        out["isolation"]["findings"][0]["kind"], "unconstrained",
        "{out:#}"
    );
    assert_eq!(out["isolation"]["findings"][0]["env"], "test", "{out:#}");
    assert_eq!(
        out["isolation"]["findings"][0]["accepted_by"],
        serde_json::json!(["prod", "staging"])
    );
    let err = stderr_of(&a);
    assert!(
        err.contains("crosses the environment boundary") && err.contains("re-sign"),
        "{err}"
    );
    // The text form names it too.
    let text = env
        .warden()
        .args(["ca", "verify", "--dir"])
        .arg(env.ca())
        .arg(&test_bundle)
        .assert()
        .code(3);
    let stdout = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(
        stdout.contains("isolation: test's PKI intermediate has no name constraints"),
        "{stdout}"
    );

    let a = verify(&prod_bundle).success();
    let out: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(
        out["isolation"]["findings"],
        serde_json::json!([]),
        "{out:#}"
    );
    assert_eq!(out["isolation"]["judged"], 1, "{out:#}");

    let a = verify(&staging_bundle).success();
    let out: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(out["isolation"]["accepted"][0]["reason"], reason, "{out:#}");

    // Without the CA directory there is no ledger to judge by: the chain check alone.
    env.warden()
        .args(["ca", "verify", "--root"])
        .arg(env.ca().join("root.crt"))
        .arg(&test_bundle)
        .assert()
        .success();
}

/// Red team: a permitted subtree that constrains nothing must not pass for a constraint. Go
/// (OpenBao's cert auth) and NSS read an empty subtree, and `.` once its dot goes, as matching
/// every name, so `--permitted-dns .` would sign an unconstrained intermediate without the
/// reason ADR 0013 asks for; a wildcard or a trailing dot permits nothing at all. Each is
/// refused with nothing written, and blank reasons do not count as reasons.
#[test]
fn red_team_a_permitted_subtree_that_constrains_nothing_is_refused() {
    let env = Env::new();
    env.init(&[]);
    let pass = env.path("pass");
    let pass = pass.to_str().unwrap();
    let csr = env.csr("test", "OpenBao test PKI");
    env.sign(
        &csr,
        &[
            "--permitted-dns",
            "test.warden.internal",
            "--passphrase-file",
            pass,
            "--out",
            env.path("test.pem").to_str().unwrap(),
        ],
    )
    .success();
    let before = env.snapshot();
    let csr = env.csr("prod", "OpenBao prod PKI");
    let sign_prod = |extra: &[&str]| {
        env.warden()
            .args(["ca", "sign-intermediate", "--env", "prod", "--dir"])
            .arg(env.ca())
            .arg("--csr")
            .arg(&csr)
            .args(["--passphrase-file", pass, "--out"])
            .arg(env.path("prod.pem"))
            .args(extra)
            .assert()
    };
    for (subtree, says) in [
        (".", "empty label"),
        ("..", "empty label"),
        ("prod.warden.internal.", "empty label"),
        ("*.prod.warden.internal", "not a wildcard"),
        ("*", "not a wildcard"),
        ("", "it is empty"),
    ] {
        let a = sign_prod(&["--permitted-dns", subtree]).code(1);
        let err = stderr_of(&a);
        assert!(
            err.contains(says) && err.contains("permitted DNS domain"),
            "{subtree:?}: {err}"
        );
        assert_eq!(
            env.snapshot(),
            before,
            "{subtree:?}: a refusal changes nothing"
        );
        assert!(!env.path("prod.pem").exists());
    }
    for reason in ["", "   ", "\t\n"] {
        let a = sign_prod(&["--unconstrained-because", reason]);
        let err = stderr_of(&a.code(1));
        assert!(err.contains("say why"), "{reason:?}: {err}");
        assert_eq!(env.snapshot(), before);
    }
    // A subtree reaching test's names (its parent, a name below it) next to prod's own:
    // refused at signing, not only flagged by `ca verify` later. (test's exact domain reads as
    // a name both share on purpose, like a domain certificate listed for both: the ledger
    // cannot tell the two apart.)
    for reach in [
        "warden.internal",
        "internal",
        "Warden.Internal",
        "billing.test.warden.internal",
        "x.billing.TEST.warden.internal",
    ] {
        let a = sign_prod(&[
            "--permitted-dns",
            "prod.warden.internal",
            "--permitted-dns",
            reach,
        ])
        .code(1);
        let err = stderr_of(&a);
        assert!(
            err.contains("permit `test`'s names (test.warden.internal)")
                && err.contains("never a parent of another environment's domain"),
            "{reach:?}: {err}"
        );
        assert_eq!(
            env.snapshot(),
            before,
            "{reach:?}: a refusal changes nothing"
        );
    }
    // A sibling that merely ends in the same letters is not test's.
    sign_prod(&["--permitted-dns", "xtest.warden.internal"]).success();
    std::fs::remove_file(env.path("prod.pem")).unwrap();
    // A proper subtree, with or without the "subdomains only" dot, is signed.
    sign_prod(&["--permitted-dns", ".prod.warden.internal"]).success();
}

/// Red team: while `ca sign-intermediate` holds the passphrase (and then the decrypted root
/// key), a crash must write no core file. The passphrase comes through a FIFO so the process
/// can be inspected while it waits for it: its core-file limit is 0, soft and hard, and the
/// signature still goes through once the passphrase arrives.
#[test]
fn red_team_no_core_dump_while_the_passphrase_is_in_memory() {
    let env = Env::new();
    env.init(&[]);
    let fifo = env.path("pass.fifo");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    let csr = env.csr("test", "OpenBao test PKI");
    // Started with core dumps allowed, so only warden itself can turn them off.
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -S -c unlimited 2>/dev/null || ulimit -S -c 1024; exec \"$@\"")
        .arg("sh")
        .arg(WARDEN.bin())
        .args(["ca", "sign-intermediate", "--env", "test", "--dir"])
        .arg(env.ca())
        .arg("--csr")
        .arg(&csr)
        .arg("--out")
        .arg(env.path("test.pem"))
        .arg("--passphrase-file")
        .arg(&fifo)
        .env_remove("WARDEN_CA_PASSPHRASE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let limits = format!("/proc/{}/limits", child.id());
    let core_limit = || {
        std::fs::read_to_string(&limits)
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .map(|l| {
                l.split_whitespace()
                    .skip(4)
                    .take(2)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    // It blocks on the FIFO until the passphrase is written; by then it has set its limits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut core = core_limit();
    while core != ["0", "0"] && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        core = core_limit();
    }
    std::fs::write(&fifo, format!("{PASS}\n")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        core,
        ["0", "0"],
        "core-file limit (soft, hard) while holding the passphrase"
    );
    assert!(env.path("test.pem").exists());
}

/// `sign-intermediate --out` at a symlink (`/dev/stdout` is one), a FIFO or a device was only
/// refused by the write, after the signature was recorded: the ledger counted a certificate
/// nobody had, and `--out /dev/null` run as root replaced the device with a plain file. Now
/// each is refused before the passphrase is read, with the CA directory unchanged.
#[test]
fn sign_refuses_an_out_that_is_a_symlink_fifo_or_device_before_signing() {
    let env = Env::new();
    env.init(&[]);
    let before = env.snapshot();
    let csr = env.csr("x", "int");
    std::os::unix::fs::symlink(env.path("elsewhere.pem"), env.path("link.pem")).unwrap();
    let fifo = env.path("fifo.pem");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let dev = PathBuf::from("/dev/null");
    for (out, says) in [
        (env.path("link.pem"), "symbolic link"),
        (fifo.clone(), "not a regular file"),
        (dev.clone(), "not a regular file"),
    ] {
        let a = env
            .sign(
                &csr,
                &[
                    "--out",
                    out.to_str().unwrap(),
                    "--passphrase-file",
                    env.path("pass").to_str().unwrap(),
                ],
            )
            .code(1);
        let err = stderr_of(&a);
        assert!(err.contains(says), "{err}");
        assert!(err.contains("nothing was signed"), "{err}");
        assert_eq!(env.snapshot(), before, "{}", out.display());
    }
    assert!(!env.path("elsewhere.pem").exists());
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    use std::os::unix::fs::FileTypeExt as _;
    assert!(
        std::fs::metadata(&dev)
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

/// `server tls --out DIR` read an existing listener CA with a plain read: a FIFO at
/// `listener-ca.key` hung it for ever, a symlink to `/dev/zero` read until memory ran out, and
/// a dangling symlink at the name counted as no CA, so the root signed a new listener CA (in the
/// ledger) whose key the write then refused. Each is refused at once and signs nothing.
#[test]
fn server_tls_refuses_a_fifo_device_or_symlink_at_the_listener_ca() {
    let env = Env::new();
    env.init(&[]);
    let spec = env.path("nodes.toml");
    std::fs::write(
        &spec,
        "version = 1\n[environments.prod]\ndomain = \"p.internal\"\nruntime_owner = \"warden-test\"\n\
         [[environments.prod.nodes]]\nname = \"prod-1\"\naddress = \"https://127.0.0.1:8201\"\n\
         cluster_address = \"https://127.0.0.1:8202\"\n",
    )
    .unwrap();
    let out = env.path("tls");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o700)).unwrap();
    let tls = || {
        let mut cmd = env.warden();
        cmd.args(["server", "tls", "--env", "prod", "--spec"])
            .arg(&spec)
            .arg("--ca-dir")
            .arg(env.ca())
            .arg("--out")
            .arg(&out)
            .arg("--passphrase-file")
            .arg(env.path("pass"))
            .timeout(std::time::Duration::from_secs(15));
        cmd
    };
    let before = env.snapshot();
    let (crt, key) = (out.join("listener-ca.crt"), out.join("listener-ca.key"));
    let refused = |says: &str| {
        let a = tls().assert().code(1);
        let err = stderr_of(&a);
        assert!(err.contains(says) && err.contains("hint:"), "{err}");
        assert_eq!(env.snapshot(), before);
        assert!(!out.join("prod-1").exists(), "no node files");
    };
    std::fs::write(&crt, "not read").unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    refused("not a regular file");
    std::fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &key).unwrap();
    refused("symbolic link");
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(&crt).unwrap();
    std::os::unix::fs::symlink(env.path("elsewhere.crt"), &crt).unwrap();
    refused("symbolic link");
    assert!(!env.path("elsewhere.crt").exists());
    // With the names clear, the listener CA is created and kept on the next run.
    std::fs::remove_file(&crt).unwrap();
    tls().assert().success();
    assert_eq!(env.ledger_lines(), before_lines(&before) + 1);
    tls().assert().success();
    assert_eq!(env.ledger_lines(), before_lines(&before) + 1);
}

/// `server tls --out DIR` where DIR belongs to someone else (pre-created in a shared place):
/// the owner could swap in a listener CA of their own, which the command kept and signed every
/// node's certificate with. Refused, nothing signed. Needs root to hand the directory away.
#[test]
fn server_tls_refuses_an_out_directory_another_user_owns() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let env = Env::new();
    env.init(&[]);
    let spec = env.path("nodes.toml");
    std::fs::write(
        &spec,
        "version = 1\n[environments.prod]\ndomain = \"p.internal\"\nruntime_owner = \"warden-test\"\n\
         [[environments.prod.nodes]]\nname = \"prod-1\"\naddress = \"https://127.0.0.1:8201\"\n\
         cluster_address = \"https://127.0.0.1:8202\"\n",
    )
    .unwrap();
    let out = env.path("tls");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
    let before = env.snapshot();
    let a = env
        .warden()
        .args(["server", "tls", "--env", "prod", "--spec"])
        .arg(&spec)
        .arg("--ca-dir")
        .arg(env.ca())
        .arg("--out")
        .arg(&out)
        .arg("--passphrase-file")
        .arg(env.path("pass"))
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains("owned by uid 65534") && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(env.snapshot(), before);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o755,
        "the refused run left the directory's mode alone"
    );
}

/// `server tls --out DIR --ca-dir OTHER` (another environment's or an old root's directory)
/// for a node added later: the node's `ca.pem` held OTHER's root while its server certificate
/// chains to the listener CA in DIR, so it could verify none of its peers when joining.
/// Refused before anything is written when the listener CA in DIR does not chain to a root of
/// --ca-dir.
#[test]
fn server_tls_refuses_a_ca_dir_the_listener_ca_does_not_chain_to() {
    let env = Env::new();
    env.init(&[]);
    let other = env.path("other-ca");
    env.warden()
        .args(["ca", "init", "--dir"])
        .arg(&other)
        .arg("--passphrase-file")
        .arg(env.path("pass"))
        .assert()
        .success();
    let spec = env.path("nodes.toml");
    std::fs::write(
        &spec,
        "version = 1\n[environments.prod]\ndomain = \"p.internal\"\nruntime_owner = \"warden-test\"\n\
         [[environments.prod.nodes]]\nname = \"prod-1\"\naddress = \"https://127.0.0.1:8201\"\n\
         cluster_address = \"https://127.0.0.1:8202\"\n\
         [[environments.prod.nodes]]\nname = \"prod-2\"\naddress = \"https://127.0.0.1:8203\"\n\
         cluster_address = \"https://127.0.0.1:8204\"\n",
    )
    .unwrap();
    let out = env.path("tls");
    let tls = |ca: &Path, node: &str| {
        let mut cmd = env.warden();
        cmd.args(["server", "tls", "--env", "prod", "--node", node, "--spec"])
            .arg(&spec)
            .arg("--ca-dir")
            .arg(ca)
            .arg("--out")
            .arg(&out)
            .arg("--passphrase-file")
            .arg(env.path("pass"));
        cmd.assert()
    };
    tls(&env.ca(), "prod-1").success();
    let a = tls(&other, "prod-2").code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains("does not chain to") && err.contains("--ca-dir") && err.contains("hint:"),
        "{err}"
    );
    assert!(!out.join("prod-2").exists(), "nothing written for prod-2");
    // With the right root, prod-2's ca.pem is the root its peers' certificates chain to.
    tls(&env.ca(), "prod-2").success();
    assert_eq!(
        std::fs::read_to_string(out.join("prod-2/ca.pem")).unwrap(),
        std::fs::read_to_string(out.join("prod-1/ca.pem")).unwrap()
    );
}

/// Lines of the ledger in a [`Env::snapshot`].
fn before_lines(snapshot: &BTreeMap<String, (u32, Vec<u8>)>) -> usize {
    String::from_utf8_lossy(&snapshot["ledger.jsonl"].1)
        .lines()
        .count()
}
