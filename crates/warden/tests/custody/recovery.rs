//! Recovery keys through the ceremony (issue 12, item 3): an auto-sealed lab environment's
//! ledger records recovery keys; `warden unseal` refuses them and changes nothing;
//! break-glass takes them (OpenBao's generate-root accepts recovery keys under an auto-seal).

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde_json::Value;
use warden_testkit::LabGuard;
use warden_testkit::cli::{path_str, text};

use crate::support::*;

/// A static-sealed lab made through the CLI, a spec naming its environment, and the lab
/// custodians' files.
struct AutoLab {
    guard: LabGuard,
    spec: PathBuf,
}

impl AutoLab {
    fn start() -> Self {
        let guard = LabGuard::new(WARDEN);
        let out = WARDEN
            .invoke(&[
                "lab",
                "up",
                "--env",
                "test",
                "--no-spec",
                "--no-agents",
                "--seal",
                "static",
                "-o",
                "json",
                "--dir",
            ])
            .arg(guard.dir())
            .output();
        assert!(
            out.status.success(),
            "lab up --seal static:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let spec = guard.temp_dir().join("warden.toml");
        std::fs::write(
            &spec,
            "version = 1\n[environments.test]\ndomain = \"test.internal\"\n",
        )
        .expect("spec");
        Self { guard, spec }
    }

    /// `ARGS --spec SPEC --lab LAB --env test`.
    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        v.extend([
            "--spec".into(),
            path_str(&self.spec).into(),
            "--lab".into(),
            self.guard.dir_str(),
            "--env".into(),
            "test".into(),
        ]);
        v
    }

    fn ok(&self, args: &[&str]) -> Value {
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

    fn layout(&self) -> warden_lab::EnvLayout {
        warden_lab::LabLayout::new(self.guard.dir()).env("test")
    }

    /// `--share F --identity I` of lab custodian `c`.
    fn pair(&self, c: &str) -> [String; 4] {
        let layout = self.layout();
        [
            "--share".into(),
            path_str(&warden_lab::shares_dir(&layout).join(format!("{c}.test.share.age"))).into(),
            "--identity".into(),
            path_str(&warden_lab::custodians_dir(&layout).join(format!("{c}.age-identity"))).into(),
        ]
    }

    fn client(&self) -> warden_bao::Client {
        warden_lab::Lab::open(&self.guard.dir())
            .expect("lab")
            .operator_client("test")
            .expect("client")
    }
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_is_refused_on_a_recovery_ledger_and_break_glass_takes_recovery_keys() {
    install_crypto_provider();
    let lab = AutoLab::start();
    let layout = lab.layout();

    // The ledger says what its shares are; no recovery key or root token sits in clear.
    let st = lab.ok(&["custody", "status", "-o", "json"]);
    assert_eq!(st["ledger"]["kind"], "recovery", "{st}");
    assert_eq!(
        st["registry"], "match",
        "lab up published the ledger digest: {st}"
    );
    let custodians: Vec<String> = st["ledger"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["custodian"].as_str().map(str::to_owned))
        .collect();
    let threshold = st["ledger"]["threshold"].as_u64().expect("threshold") as usize;
    let shown = text(&WARDEN.run(&lab.args(&["custody", "status"])).stdout);
    assert!(shown.contains("recovery keys (kind recovery)"), "{shown}");
    for f in ["recovery-keys.json", "unseal-keys.json", "root-token"] {
        assert!(!layout.custody_dir().join(f).exists(), "clear {f}");
    }

    // `warden unseal` with a lab custodian's own files: refused, and nothing changed.
    let state = warden_lab::custody_state_dir(&layout);
    let (ledger, rounds) = (state.ledger("test"), state.rounds("test"));
    let before = (bytes(&ledger), bytes(&rounds));
    let status_before = lab.client().seal_status().await.expect("seal status");
    let mut args = vec!["unseal".to_owned()];
    args.extend(lab.pair(&custodians[0]));
    let out = WARDEN.run(&lab.args(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "unseal was not refused:\n{err}");
    assert!(
        err.contains(
            "test is auto-unsealed (seal static): its shares are recovery keys; they authorise rekey, generate-root and seal migration, not unseal"
        ),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(
        (bytes(&ledger), bytes(&rounds)),
        before,
        "custody unchanged"
    );
    let status_after = lab.client().seal_status().await.expect("seal status");
    assert_eq!(
        (status_after.sealed, status_after.progress),
        (status_before.sealed, status_before.progress)
    );

    // Break-glass: generate-root takes THRESHOLD recovery keys; the token works, root is gone.
    let token_file = lab.guard.temp_dir().join("bg.token");
    let mut args: Vec<String> = [
        "break-glass",
        "open",
        "--reason",
        "INC-RECOVERY",
        "--ttl",
        "5m",
        "--token-file",
        path_str(&token_file),
        "-o",
        "json",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for c in custodians.iter().take(threshold) {
        args.extend(lab.pair(c));
    }
    let opened = lab.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let bg = lab.client();
    let token = std::fs::read_to_string(&token_file).expect("token file");
    bg.set_token(SecretString::from(token.trim().to_owned()));
    bg.token_lookup_self()
        .await
        .expect("the break-glass token works");
    let root_accessor = opened["record"]["root_accessor"]
        .as_str()
        .expect("root accessor");
    assert!(
        lab.client()
            .token_lookup_accessor(root_accessor)
            .await
            .is_err(),
        "the generated root token was revoked"
    );
    lab.ok(&["break-glass", "close", "-o", "json"]);
    assert!(
        bg.token_lookup_self().await.is_err(),
        "closed means revoked"
    );
}
