//! End-to-end: the custody ceremony, `warden unseal` and break-glass through the real `warden`
//! binary against real OpenBao servers.
//!
//! - ceremony: 5 custodians, threshold 3, identities generated here, on an uninitialised server
//!   ([`BareBao`]); no share, root token or decrypted share anywhere on disk, in any output, in
//!   argv or environment (scanned for the bytes, hex and base64); each share opens only with its
//!   holder's identity; 2 shares leave the server sealed at 2/3, 3 unseal it; a wrong share,
//!   another environment's share, the same share twice, an unknown custodian and a foreign
//!   identity are each refused with a clear message and the progress unchanged.
//! - rekey: a new custodian set from the spec; the old shares stop matching, the new ones unseal.
//! - break-glass (on a lab, which ran the ceremony itself): a token that works, is visible in
//!   posture and evidence, and is refused after its TTL; the generated root token is revoked
//!   within the same command.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use warden_bao::{Client, ClientConfig};
use warden_custody::{Custodian, IdentityFile};
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::{BareBao, EXAMPLE_SPEC, LabEnv};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A test's world: custodians' identities, spec, state and output directories, and every
/// command run (argv, environment, output) for the scan at the end.
struct World {
    dir: tempfile::TempDir,
    runs: Vec<(Vec<String>, Output)>,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("warden-custody-")
            .tempdir()
            .expect("temp dir");
        for d in ["ids", "state", "out"] {
            std::fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        Self {
            dir,
            runs: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Generates `name`'s identity (owner-only file) and returns the recipient.
    fn identity(&self, name: &str) -> String {
        let g = warden_custody::generate_identity();
        warden_testkit::files::write_private(&self.id_path(name), g.file_text.as_bytes());
        g.recipient
    }

    fn id_path(&self, name: &str) -> PathBuf {
        self.path(&format!("ids/{name}.key"))
    }

    fn open_id(&self, name: &str) -> IdentityFile {
        IdentityFile::read(&self.id_path(name)).expect("identity")
    }

    /// `warden ARGS --spec SPEC --state-dir STATE`.
    fn warden(&mut self, args: &[&str]) -> Output {
        let mut v: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        v.extend([
            "--spec".into(),
            path_str(&self.path("warden.toml")).into(),
            "--state-dir".into(),
            path_str(&self.path("state")).into(),
        ]);
        let out = WARDEN.run(&v);
        self.runs.push((v, out.clone()));
        out
    }

    fn ok(&mut self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.warden(&a);
        assert!(
            out.status.success(),
            "warden {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Runs a command that must be refused with `message` on stderr.
    fn refused(&mut self, args: &[&str], message: &str) -> String {
        let out = self.warden(args);
        let err = text(&out.stderr);
        assert!(
            !out.status.success(),
            "warden {args:?} was not refused:\n{}",
            text(&out.stdout)
        );
        assert!(
            err.contains(message),
            "warden {args:?}: expected {message:?} in:\n{err}"
        );
        assert!(
            err.contains("hint:"),
            "a refusal says what to do next:\n{err}"
        );
        err
    }
}

fn env_block(
    name: &str,
    addr: &str,
    ca: &Path,
    threshold: u8,
    custodians: &[(&str, String)],
) -> String {
    let mut s = format!(
        "[environments.{name}]\naddress = \"{addr}\"\nca_cert = \"{}\"\ndomain = \"{name}.example.internal\"\n\n[environments.{name}.custody]\nthreshold = {threshold}\n",
        ca.display()
    );
    for (c, r) in custodians {
        s.push_str(&format!(
            "\n[[environments.{name}.custody.custodians]]\nname = \"{c}\"\nrecipient = \"{r}\"\n"
        ));
    }
    s.push('\n');
    s
}

fn client(server: &BareBao) -> Client {
    let cfg = ClientConfig::from_address(server.addr())
        .expect("address")
        .with_ca_file(server.ca_path())
        .expect("ca");
    Client::new(cfg).expect("client")
}

/// The unseal progress the server reports (and that it is still sealed).
async fn progress(c: &Client) -> (bool, u8) {
    let s = c.seal_status().await.expect("seal status");
    (s.sealed, s.progress)
}

/// Every encoding of a share OpenBao returns: hex (as in `keys`) and base64 (`keys_base64`),
/// with and without padding.
fn encodings(share_hex: &str) -> Vec<String> {
    let bytes = hex::decode(share_hex).expect("hex share");
    vec![
        share_hex.to_owned(),
        share_hex.to_uppercase(),
        base64::engine::general_purpose::STANDARD.encode(&bytes),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes),
    ]
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&p, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceremony_five_custodians_threshold_three_leaves_no_secret_and_refuses_bad_shares() {
    install_crypto_provider();
    let prod = BareBao::start().await;
    let other = BareBao::start().await;
    let mut w = World::new();
    let prod_custodians: Vec<(&str, String)> = NAMES.iter().map(|n| (*n, w.identity(n))).collect();
    // alice and bob also keep `test`: the same person, the same identity, another environment.
    let test_custodians = vec![prod_custodians[0].clone(), prod_custodians[1].clone()];
    let spec = format!(
        "version = 1\n\n{}{}",
        env_block("prod", prod.addr(), &prod.ca_path(), 3, &prod_custodians),
        env_block("test", other.addr(), &other.ca_path(), 2, &test_custodians)
    );
    std::fs::write(w.path("warden.toml"), spec).expect("spec");

    // The ceremony, in both environments.
    let out_prod = w.path("out/prod");
    let out_test = w.path("out/test");
    let report = w.ok(&[
        "custody",
        "init",
        "--env",
        "prod",
        "--out",
        path_str(&out_prod),
    ]);
    assert_eq!(report["shares"], 5);
    assert_eq!(report["threshold"], 3);
    assert_eq!(report["custodians"].as_array().map(Vec::len), Some(5));
    w.ok(&[
        "custody",
        "init",
        "--env",
        "test",
        "--out",
        path_str(&out_test),
    ]);
    // A second ceremony is refused, changing nothing.
    w.refused(
        &[
            "custody",
            "init",
            "--env",
            "prod",
            "--out",
            path_str(&w.path("out/again")),
        ],
        "a custody ledger already exists",
    );

    // Each share opens with its holder's identity only; collect every secret for the scan.
    let mut needles: Vec<String> = Vec::new();
    let mut prod_fps = Vec::new();
    for (i, holder) in NAMES.iter().enumerate() {
        let file = out_prod.join(format!("{holder}.prod.share.age"));
        assert_eq!(
            warden_testkit::files::mode(&file) & 0o077,
            0,
            "{file:?} is owner-only"
        );
        for (j, other_name) in NAMES.iter().enumerate() {
            let opened = warden_custody::envelope::open_share(&file, &w.open_id(other_name));
            match (i == j, opened) {
                (true, Ok(share)) => {
                    assert_eq!(
                        (share.custodian.as_str(), share.environment.as_str()),
                        (*holder, "prod")
                    );
                    prod_fps.push(share.fingerprint.clone());
                    needles.extend(encodings(share.secret().expose_secret()));
                }
                (false, Err(warden_custody::Error::IdentityDoesNotOpen { .. })) => {}
                (mine, r) => {
                    panic!("{holder}'s share with {other_name}'s identity (own: {mine}): {r:?}")
                }
            }
        }
    }
    for name in ["alice", "bob"] {
        let share = warden_custody::envelope::open_share(
            &out_test.join(format!("{name}.test.share.age")),
            &w.open_id(name),
        )
        .expect("test share");
        needles.extend(encodings(share.secret().expose_secret()));
    }
    for (env, dir) in [("prod", &out_prod), ("test", &out_test)] {
        let token = warden_custody::root::open_bootstrap_token(
            &dir.join(format!("root-token.{env}.age")),
            env,
            &w.open_id("alice"),
        )
        .expect("bootstrap token opens for a custodian");
        assert!(token.expose_secret().starts_with("s."));
        needles.push(token.expose_secret().to_owned());
    }

    // Unseal: 2 shares leave the node sealed at 2/3.
    let prod_client = client(&prod);
    let share = |n: &str| out_prod.join(format!("{n}.prod.share.age"));
    for (n, expect) in [("alice", 1), ("bob", 2)] {
        let r = w.ok(&[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&share(n)),
            "--identity",
            path_str(&w.id_path(n)),
        ]);
        assert_eq!(r["custodian"], n);
        assert_eq!(r["nodes"][0]["sealed"], true);
        assert_eq!(r["nodes"][0]["progress"], expect);
        assert_eq!(r["nodes"][0]["threshold"], 3);
    }
    assert_eq!(progress(&prod_client).await, (true, 2));

    // Refusals: each with a clear message, the progress unchanged.
    let unseal = |share: &Path, id: &Path| -> Vec<String> {
        [
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(share),
            "--identity",
            path_str(id),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            unseal(&share("alice"), &w.id_path("alice")),
            "already submitted in this unseal round",
        ),
        (
            unseal(&out_test.join("alice.test.share.age"), &w.id_path("alice")),
            "is a share of environment `test`, not of `prod`",
        ),
        (unseal(&share("carol"), &w.id_path("dave")), "does not open"),
    ];
    for (args, message) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        w.refused(&args, message);
        assert_eq!(
            progress(&prod_client).await,
            (true, 2),
            "refused {message:?} changed the progress"
        );
    }
    // A forged share for carol (right environment, right recipient, wrong bytes).
    let carol = Custodian::new("carol", &prod_custodians[2].1).expect("carol");
    let forged = warden_custody::envelope::seal_share(
        "prod",
        &carol,
        3,
        1,
        &SecretString::from("00".repeat(33)),
    )
    .expect("forge")
    .0;
    let forged_path = w.path("out/forged-carol.prod.share.age");
    std::fs::write(&forged_path, forged).expect("write forged");
    w.refused(
        &[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&forged_path),
            "--identity",
            path_str(&w.id_path("carol")),
        ],
        "is not the share the custody ledger of `prod` records for `carol`",
    );
    // A share for someone who is no custodian of prod.
    let mallory_recipient = w.identity("mallory");
    let mallory = Custodian::new("mallory", &mallory_recipient).expect("mallory");
    let stranger = warden_custody::envelope::seal_share(
        "prod",
        &mallory,
        6,
        1,
        &SecretString::from("11".repeat(33)),
    )
    .expect("seal")
    .0;
    let stranger_path = w.path("out/mallory.prod.share.age");
    std::fs::write(&stranger_path, stranger).expect("write");
    w.refused(
        &[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&stranger_path),
            "--identity",
            path_str(&w.id_path("mallory")),
        ],
        "who is not a custodian of `prod`",
    );
    assert_eq!(
        progress(&prod_client).await,
        (true, 2),
        "refusals changed nothing"
    );

    // The third share unseals.
    let r = w.ok(&[
        "unseal",
        "--env",
        "prod",
        "--share",
        path_str(&share("carol")),
        "--identity",
        path_str(&w.id_path("carol")),
    ]);
    assert_eq!(r["nodes"][0]["sealed"], false, "{r}");
    assert!(!progress(&prod_client).await.0);

    // Status and verify: the ledger records who holds which fingerprint.
    let status = w.ok(&["custody", "status", "--env", "prod"]);
    let entries = status["ledger"]["entries"]
        .as_array()
        .expect("entries")
        .clone();
    let fps: Vec<String> = entries
        .iter()
        .map(|e| e["fingerprint"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(fps, prod_fps);
    assert!(entries.iter().all(|e| e["last_verified_at"].is_null()));
    let v = w.ok(&[
        "custody",
        "verify",
        "--env",
        "prod",
        "--share",
        path_str(&share("dave")),
        "--identity",
        path_str(&w.id_path("dave")),
    ]);
    assert_eq!(v["verified"]["custodian"], "dave");
    assert!(v["verified"]["last_verified_at"].is_string());

    // The scan: no secret on disk (servers' data and logs, state, outputs, identities), in any
    // command's output, argv or environment, or in the servers' argv and environment.
    let mut files = Vec::new();
    for d in [prod.dir(), other.dir(), w.dir.path()] {
        files_under(d, &mut files);
    }
    assert!(
        files.iter().any(|f| f.ends_with("server.log")),
        "the server logs are scanned"
    );
    assert!(
        files.iter().any(|f| f.ends_with("ledger.json")),
        "the ledger is scanned"
    );
    let mut haystacks: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| {
            (
                f.display().to_string(),
                std::fs::read(f).unwrap_or_default(),
            )
        })
        .collect();
    for (args, out) in &w.runs {
        haystacks.push((
            format!("argv of warden {args:?}"),
            args.join("\0").into_bytes(),
        ));
        haystacks.push((format!("stdout of warden {args:?}"), out.stdout.clone()));
        haystacks.push((format!("stderr of warden {args:?}"), out.stderr.clone()));
    }
    for pid in [prod.pid(), other.pid()] {
        for what in ["cmdline", "environ"] {
            let p = format!("/proc/{pid}/{what}");
            haystacks.push((p.clone(), std::fs::read(&p).expect("read /proc")));
        }
    }
    // The environment every warden run got: the test's own, minus the testkit's removals.
    let env: Vec<u8> = std::env::vars()
        .flat_map(|(k, v)| format!("{k}={v}\0").into_bytes())
        .collect();
    haystacks.push(("the environment of the warden runs".to_owned(), env));
    assert!(
        needles.len() >= 5 * 4 + 2 * 4 + 2,
        "every secret is looked for"
    );
    // The scan can see: the fingerprints (one-way, so allowed) are found in the ledger.
    assert!(
        haystacks
            .iter()
            .any(|(_, h)| contains(h, prod_fps[0].as_bytes())),
        "the scan reads what the ledger holds"
    );
    for (name, hay) in &haystacks {
        for n in &needles {
            assert!(
                !contains(hay, n.as_bytes()),
                "a secret ({} chars) is in {name}",
                n.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_replaces_a_custodian_and_old_shares_stop_working() {
    install_crypto_provider();
    let server = BareBao::start().await;
    let mut w = World::new();
    let three: Vec<(&str, String)> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| (*n, w.identity(n)))
        .collect();
    let write_spec = |w: &World, custodians: &[(&str, String)]| {
        let spec = format!(
            "version = 1\n\n{}",
            env_block("prod", server.addr(), &server.ca_path(), 2, custodians)
        );
        std::fs::write(w.path("warden.toml"), spec).expect("spec");
    };
    write_spec(&w, &three);
    let gen1 = w.path("out/gen1");
    w.ok(&["custody", "init", "--env", "prod", "--out", path_str(&gen1)]);
    let s1 = |n: &str| gen1.join(format!("{n}.prod.share.age"));
    for n in ["alice", "bob"] {
        w.ok(&[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&s1(n)),
            "--identity",
            path_str(&w.id_path(n)),
        ]);
    }
    let root = warden_custody::root::open_bootstrap_token(
        &gen1.join("root-token.prod.age"),
        "prod",
        &w.open_id("carol"),
    )
    .expect("root token");

    // carol leaves, dave joins (with an identity made by `warden custody keygen`): the spec
    // changes, two current custodians rekey.
    let made = WARDEN.run(&[
        "custody",
        "keygen",
        "--identity",
        path_str(&w.id_path("dave")),
        "-o",
        "json",
    ]);
    assert!(made.status.success(), "keygen: {}", text(&made.stderr));
    let made: Value = serde_json::from_slice(&made.stdout).expect("keygen JSON");
    let dave = made["recipient"].as_str().expect("recipient").to_owned();
    assert_eq!(
        warden_testkit::files::mode(&w.id_path("dave")) & 0o777,
        0o600
    );
    let new_set = vec![three[0].clone(), three[1].clone(), ("dave", dave)];
    write_spec(&w, &new_set);
    let gen2 = w.path("out/gen2");
    let mut args: Vec<String> = [
        "custody",
        "rekey",
        "--env",
        "prod",
        "--out",
        path_str(&gen2),
        "-o",
        "json",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for n in ["alice", "bob"] {
        args.extend([
            "--share".into(),
            path_str(&s1(n)).into(),
            "--identity".into(),
            path_str(&w.id_path(n)).into(),
        ]);
    }
    let mut v = args.clone();
    v.extend([
        "--spec".into(),
        path_str(&w.path("warden.toml")).into(),
        "--state-dir".into(),
        path_str(&w.path("state")).into(),
    ]);
    // The rotation endpoints need a token: the bootstrap root token, before bootstrap ends.
    let out = WARDEN
        .invoke(&v)
        .env("VAULT_TOKEN", root.expose_secret())
        .output();
    assert!(
        out.status.success(),
        "rekey failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(r["rekey"]["generation"], 2);
    assert!(
        r["published"].get("Ok").is_some(),
        "the new ledger's digest is published: {r}"
    );
    let names: Vec<&str> = r["rekey"]["custodians"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["custodian"].as_str())
        .collect();
    assert_eq!(names, ["alice", "bob", "dave"]);

    // Status: the registry holds the new ledger's digest.
    let st = WARDEN
        .invoke(&[
            "custody",
            "status",
            "--env",
            "prod",
            "-o",
            "json",
            "--spec",
            path_str(&w.path("warden.toml")),
            "--state-dir",
            path_str(&w.path("state")),
        ])
        .env("VAULT_TOKEN", root.expose_secret())
        .output();
    let st: Value = serde_json::from_slice(&st.stdout).expect("status JSON");
    assert_eq!(st["registry"], "match", "{st}");

    // Seal, then: carol's old share is refused (no custodian any more), alice's old share is
    // stale; the new shares of alice and dave unseal.
    let c = client(&server);
    c.set_token(root.clone());
    c.seal().await.expect("seal");
    w.refused(
        &[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&s1("carol")),
            "--identity",
            path_str(&w.id_path("carol")),
        ],
        "who is not a custodian of `prod`",
    );
    w.refused(
        &[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&s1("alice")),
            "--identity",
            path_str(&w.id_path("alice")),
        ],
        "is not the share the custody ledger",
    );
    assert_eq!(progress(&c).await, (true, 0));
    for n in ["alice", "dave"] {
        w.ok(&[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&gen2.join(format!("{n}.prod.share.age"))),
            "--identity",
            path_str(&w.id_path(n)),
        ]);
    }
    assert!(!progress(&c).await.0, "the new shares unseal");
}

/// `warden ARGS --spec SPEC --lab LAB --env test`.
fn on_lab(args: &[&str], spec: &Path, lab: &Path) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    v.extend([
        "--spec".into(),
        path_str(spec).into(),
        "--lab".into(),
        path_str(lab).into(),
        "--env".into(),
        "test".into(),
    ]);
    v
}

fn run_ok(args: &[String]) -> Value {
    let out = WARDEN.run(args);
    assert!(
        out.status.success(),
        "warden {args:?}:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_token_works_is_visible_and_dies_with_its_ttl_and_root_is_revoked() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test"]).await;
    let lab_dir = lab.dir().to_path_buf();
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("warden.toml");
    std::fs::copy(EXAMPLE_SPEC, &spec).expect("spec");
    run_ok(&on_lab(&["apply"], &spec, &lab_dir));
    let layout = lab.lab().layout().env("test");
    let ids = warden_lab::custodians_dir(&layout);
    let shares = warden_lab::shares_dir(&layout);
    let operator = lab.client("test");

    // The lab ran the real ceremony: its custody status lists the lab custodians.
    let st = run_ok(&on_lab(
        &["custody", "status", "-o", "json"],
        &spec,
        &lab_dir,
    ));
    let custodians: Vec<String> = st["ledger"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["custodian"].as_str().unwrap_or("").to_owned())
        .collect();
    let threshold = st["ledger"]["threshold"].as_u64().expect("threshold") as usize;
    assert_eq!(
        st["registry"], "match",
        "lab up published the ledger digest: {st}"
    );

    let open = |ttl: &str, token_file: &Path| -> Value {
        let mut args = on_lab(
            &[
                "break-glass",
                "open",
                "--reason",
                "INC-123",
                "--ttl",
                ttl,
                "--token-file",
                path_str(token_file),
                "-o",
                "json",
            ],
            &spec,
            &lab_dir,
        );
        for c in custodians.iter().take(threshold) {
            args.extend([
                "--share".into(),
                path_str(&shares.join(format!("{c}.test.share.age"))).into(),
                "--identity".into(),
                path_str(&ids.join(format!("{c}.age-identity"))).into(),
            ]);
        }
        run_ok(&args)
    };
    let token_client = |file: &Path| {
        let t = std::fs::read_to_string(file).expect("token file");
        let c = lab.client("test");
        c.set_token(SecretString::from(t.trim().to_owned()));
        c
    };

    // A short one: works now, refused after its TTL; root revoked within the command.
    let short_file = dir.path().join("short.token");
    let opened = open("4s", &short_file);
    assert_eq!(warden_testkit::files::mode(&short_file) & 0o777, 0o600);
    let record = &opened["record"];
    let bg = token_client(&short_file);
    let me = bg
        .token_lookup_self()
        .await
        .expect("the break-glass token works");
    assert!(me.orphan, "an orphan: revoking root leaves it");
    assert_eq!(me.accessor, record["accessor"].as_str().expect("accessor"));
    let root_accessor = record["root_accessor"].as_str().expect("root accessor");
    let gone = operator.token_lookup_accessor(root_accessor).await;
    assert!(
        gone.is_err(),
        "the generated root token was revoked: {gone:?}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let after = bg.token_lookup_self().await;
    assert!(
        after.is_err(),
        "a token past its TTL must not work: {after:?}"
    );

    // A longer one: visible in posture and evidence while open, gone from posture once closed.
    let long_file = dir.path().join("long.token");
    let opened = open("10m", &long_file);
    let id = opened["record"]["id"].as_str().expect("id").to_owned();
    let posture = WARDEN.run(&on_lab(&["posture", "-o", "json"], &spec, &lab_dir));
    let posture: Value = serde_json::from_slice(&posture.stdout).expect("posture JSON");
    let listed = posture.to_string();
    assert!(
        listed.contains(&id) && listed.contains("INC-123"),
        "posture shows it: {listed}"
    );
    let text_posture = text(&WARDEN.run(&on_lab(&["posture"], &spec, &lab_dir)).stdout);
    assert!(text_posture.contains("BREAK-GLASS"), "{text_posture}");
    let packet = dir.path().join("ev.json");
    run_ok(&on_lab(
        &[
            "evidence",
            "export",
            "EV-PAYMENTS",
            "--out",
            path_str(&packet),
            "-o",
            "json",
        ],
        &spec,
        &lab_dir,
    ));
    let v: Value =
        serde_json::from_slice(&std::fs::read(&packet).expect("packet")).expect("packet JSON");
    let bgs = v["payload"]["break_glass"]
        .as_array()
        .expect("break_glass in evidence")
        .clone();
    assert!(
        bgs.iter()
            .any(|b| b["record"]["id"] == id.as_str() && b["state"] == "active"),
        "{bgs:?}"
    );
    assert!(
        bgs.iter().any(|b| b["state"] == "expired"),
        "the expired one is in the history: {bgs:?}"
    );
    let secret = std::fs::read_to_string(&long_file).expect("token");
    assert!(
        !std::fs::read_to_string(&packet)
            .expect("packet")
            .contains(secret.trim()),
        "no token in evidence"
    );

    run_ok(&on_lab(
        &["break-glass", "close", "-o", "json"],
        &spec,
        &lab_dir,
    ));
    assert!(
        token_client(&long_file).token_lookup_self().await.is_err(),
        "closed means revoked"
    );
    let posture = text(
        &WARDEN
            .run(&on_lab(&["posture", "-o", "json"], &spec, &lab_dir))
            .stdout,
    );
    assert!(
        !posture.contains(&id),
        "a closed break-glass leaves posture"
    );
    let status = run_ok(&on_lab(
        &["break-glass", "status", "-o", "json"],
        &spec,
        &lab_dir,
    ));
    let states: Vec<&str> = status
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["state"].as_str())
        .collect();
    assert_eq!(states, ["expired", "closed"]);
}
