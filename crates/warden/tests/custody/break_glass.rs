//! Break-glass on a lab whose environments went through the lab's ceremony: a token that works,
//! is visible in posture and evidence, and is refused after its TTL; the generated root token is
//! revoked within the same command.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde_json::Value;
use warden_testkit::cli::{path_str, text};
use warden_testkit::{EXAMPLE_SPEC, LabEnv};

use crate::support::*;

/// An applied lab and its lab custodians' files.
struct Glass {
    lab: LabEnv,
    dir: tempfile::TempDir,
    spec: PathBuf,
    custodians: Vec<String>,
    threshold: usize,
}

impl Glass {
    async fn start() -> Self {
        let lab = LabEnv::start(&["test"]).await;
        let dir = tempfile::tempdir().expect("tmp");
        let spec = dir.path().join("warden.toml");
        std::fs::copy(EXAMPLE_SPEC, &spec).expect("spec");
        let mut g = Self {
            lab,
            dir,
            spec,
            custodians: Vec::new(),
            threshold: 0,
        };
        g.run(&["apply"]);
        // The lab ran the real ceremony: its custody status lists the lab custodians, and the
        // ledger's digest in the registry matches.
        let st = g.run(&["custody", "status", "-o", "json"]);
        g.custodians = st["ledger"]["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["custodian"].as_str().map(str::to_owned))
            .collect();
        g.threshold = st["ledger"]["threshold"].as_u64().expect("threshold") as usize;
        assert_eq!(
            st["registry"], "match",
            "lab up published the ledger digest: {st}"
        );
        g
    }

    /// `warden ARGS --spec SPEC --lab LAB --env test`.
    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        v.extend([
            "--spec".into(),
            path_str(&self.spec).into(),
            "--lab".into(),
            path_str(self.lab.dir()).into(),
            "--env".into(),
            "test".into(),
        ]);
        v
    }

    fn run(&self, args: &[&str]) -> Value {
        let args = self.args(args);
        let out = WARDEN.run(&args);
        assert!(
            out.status.success(),
            "warden {args:?}:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// `warden posture -o json`: its exit code is the worst status, which is not this test's.
    fn posture(&self) -> String {
        let out = WARDEN.run(&self.args(&["posture", "-o", "json"]));
        let v: Value = serde_json::from_slice(&out.stdout).expect("posture JSON");
        v.to_string()
    }

    /// `break-glass open` with the first THRESHOLD lab custodians' shares.
    fn open(&self, ttl: &str, token_file: &Path) -> Value {
        let layout = self.lab.lab().layout().env("test");
        let (ids, shares) = (
            warden_lab::custodians_dir(&layout),
            warden_lab::shares_dir(&layout),
        );
        let mut args: Vec<String> = [
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
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for c in self.custodians.iter().take(self.threshold) {
            args.extend([
                "--share".into(),
                path_str(&shares.join(format!("{c}.test.share.age"))).into(),
                "--identity".into(),
                path_str(&ids.join(format!("{c}.age-identity"))).into(),
            ]);
        }
        let started = std::time::Instant::now();
        let v = self.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        eprintln!(
            "figure: warden break-glass open (threshold {}): {} ms",
            self.threshold,
            started.elapsed().as_millis()
        );
        v
    }

    /// A client holding the token written to `file`.
    fn token_client(&self, file: &Path) -> warden_bao::Client {
        let t = std::fs::read_to_string(file).expect("token file");
        let c = self.lab.client("test");
        c.set_token(SecretString::from(t.trim().to_owned()));
        c
    }

    /// Works now, refused after its TTL; the root token it came from is gone at once.
    async fn short_lived(&self) {
        let file = self.dir.path().join("short.token");
        let opened = self.open("4s", &file);
        assert_eq!(warden_testkit::files::mode(&file) & 0o777, 0o600);
        let record = &opened["record"];
        let bg = self.token_client(&file);
        let me = bg
            .token_lookup_self()
            .await
            .expect("the break-glass token works");
        assert!(me.orphan, "an orphan: revoking root leaves it");
        assert_eq!(me.accessor, record["accessor"].as_str().expect("accessor"));
        let root_accessor = record["root_accessor"].as_str().expect("root accessor");
        let gone = self
            .lab
            .client("test")
            .token_lookup_accessor(root_accessor)
            .await;
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
    }

    /// Visible in posture and evidence while open, gone from posture once closed.
    async fn visible_until_closed(&self) {
        let file = self.dir.path().join("long.token");
        let opened = self.open("10m", &file);
        let id = opened["record"]["id"].as_str().expect("id").to_owned();
        let listed = self.posture();
        assert!(
            listed.contains(&id) && listed.contains("INC-123"),
            "posture shows it: {listed}"
        );
        let shown = text(&WARDEN.run(&self.args(&["posture"])).stdout);
        assert!(shown.contains("BREAK-GLASS"), "{shown}");
        let packet = self.dir.path().join("ev.json");
        self.run(&[
            "evidence",
            "export",
            "EV-PAYMENTS",
            "--out",
            path_str(&packet),
            "-o",
            "json",
        ]);
        let raw = std::fs::read_to_string(&packet).expect("packet");
        let v: Value = serde_json::from_str(&raw).expect("packet JSON");
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
        let secret = std::fs::read_to_string(&file).expect("token");
        assert!(!raw.contains(secret.trim()), "no token in evidence");

        self.run(&["break-glass", "close", "-o", "json"]);
        assert!(
            self.token_client(&file).token_lookup_self().await.is_err(),
            "closed means revoked"
        );
        let posture = self.posture();
        assert!(
            !posture.contains(&id),
            "a closed break-glass leaves posture"
        );
        let status = self.run(&["break-glass", "status", "-o", "json"]);
        let states: Vec<&str> = status
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|r| r["state"].as_str())
            .collect();
        assert_eq!(states, ["expired", "closed"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_token_works_is_visible_and_dies_with_its_ttl_and_root_is_revoked() {
    install_crypto_provider();
    let g = Glass::start().await;
    g.short_lived().await;
    g.visible_until_closed().await;
}
