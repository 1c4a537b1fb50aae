//! The ceremony with 5 custodians and threshold 3, `warden unseal` and its refusals, and the scan
//! for secrets everywhere they must not be.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use warden_bao::Client;
use warden_custody::Custodian;
use warden_testkit::BareBao;
use warden_testkit::cli::path_str;

use crate::support::*;

/// Two environments, each with its ceremony done: `prod` (5 custodians, threshold 3) and `test`
/// (alice and bob again: the same people, another environment).
struct Ceremony {
    prod: BareBao,
    other: BareBao,
    w: World,
    recipients: Vec<(&'static str, String)>,
    out_prod: PathBuf,
    out_test: PathBuf,
}

impl Ceremony {
    async fn run() -> Self {
        let prod = BareBao::start().await;
        let other = BareBao::start().await;
        let mut w = World::new();
        let recipients: Vec<(&str, String)> = NAMES.iter().map(|n| (*n, w.identity(n))).collect();
        let test_custodians = vec![recipients[0].clone(), recipients[1].clone()];
        let spec = format!(
            "version = 1\n\n{}{}",
            env_block("prod", prod.addr(), &prod.ca_path(), 3, &recipients),
            env_block("test", other.addr(), &other.ca_path(), 2, &test_custodians)
        );
        std::fs::write(w.path("warden.toml"), spec).expect("spec");
        let (out_prod, out_test) = (w.path("out/prod"), w.path("out/test"));
        let report = w.ok(&[
            "custody",
            "init",
            "--env",
            "prod",
            "--out",
            path_str(&out_prod),
        ]);
        assert_eq!(
            (report["shares"].as_u64(), report["threshold"].as_u64()),
            (Some(5), Some(3))
        );
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
        let again = w.path("out/again");
        w.refused(
            &[
                "custody",
                "init",
                "--env",
                "prod",
                "--out",
                path_str(&again),
            ],
            "a custody ledger already exists",
        );
        Self {
            prod,
            other,
            w,
            recipients,
            out_prod,
            out_test,
        }
    }

    fn share(&self, name: &str) -> PathBuf {
        self.out_prod.join(format!("{name}.prod.share.age"))
    }

    /// `warden unseal --env prod --share SHARE --identity <name>'s`.
    fn unseal_args(&self, share: &Path, name: &str) -> Vec<String> {
        self.w.unseal_args("prod", share, name)
    }

    /// Each prod share opens with its holder's identity only. Returns every secret (shares in
    /// every encoding, both root tokens) and prod's fingerprints in custodian order.
    fn open_everything(&self) -> (Vec<String>, Vec<String>) {
        let mut needles = Vec::new();
        let mut fps = Vec::new();
        for (i, holder) in NAMES.iter().enumerate() {
            let file = self.share(holder);
            assert_eq!(
                warden_testkit::files::mode(&file) & 0o077,
                0,
                "{file:?} is owner-only"
            );
            for (j, other) in NAMES.iter().enumerate() {
                match (
                    i == j,
                    warden_custody::envelope::open_share(&file, &self.w.open_id(other)),
                ) {
                    (true, Ok(share)) => {
                        assert_eq!(
                            (share.custodian.as_str(), share.environment.as_str()),
                            (*holder, "prod")
                        );
                        fps.push(share.fingerprint.clone());
                        needles.extend(encodings(share.secret().expose_secret()));
                    }
                    (false, Err(warden_custody::Error::IdentityDoesNotOpen { .. })) => {}
                    (own, r) => {
                        panic!("{holder}'s share with {other}'s identity (own: {own}): {r:?}")
                    }
                }
            }
        }
        for name in ["alice", "bob"] {
            let file = self.out_test.join(format!("{name}.test.share.age"));
            let share = warden_custody::envelope::open_share(&file, &self.w.open_id(name))
                .expect("test share");
            needles.extend(encodings(share.secret().expose_secret()));
        }
        for (env, dir) in [("prod", &self.out_prod), ("test", &self.out_test)] {
            let file = dir.join(format!("root-token.{env}.age"));
            let token =
                warden_custody::root::open_bootstrap_token(&file, env, &self.w.open_id("alice"))
                    .expect("the bootstrap token opens for a custodian");
            assert!(token.expose_secret().starts_with("s."));
            needles.push(token.expose_secret().to_owned());
        }
        (needles, fps)
    }

    /// A share sealed here (not by the ceremony) to `custodian`'s recipient, with made-up bytes.
    fn forge(&mut self, custodian: &str, recipient: &str, bytes: &str) -> PathBuf {
        let c = Custodian::new(custodian, recipient).expect("custodian");
        let (file, _) = warden_custody::envelope::seal_share(
            "prod",
            &c,
            3,
            1,
            &SecretString::from(bytes.repeat(33)),
        )
        .expect("seal");
        let path = self
            .w
            .path(&format!("out/forged-{custodian}.prod.share.age"));
        std::fs::write(&path, file).expect("write forged share");
        path
    }

    /// Wrong, foreign, repeated, unknown, unopenable: each refused, the progress unchanged.
    async fn refusals(&mut self, prod: &Client) {
        let forged = self.forge("carol", &self.recipients[2].1.clone(), "00");
        let mallory = self.w.identity("mallory");
        let stranger = self.forge("mallory", &mallory, "11");
        let cases = [
            (
                self.unseal_args(&self.share("alice"), "alice"),
                "already submitted in this unseal round",
            ),
            (
                self.unseal_args(&self.out_test.join("alice.test.share.age"), "alice"),
                "is a share of environment `test`, not of `prod`",
            ),
            (
                self.unseal_args(&self.share("carol"), "dave"),
                "does not open",
            ),
            (
                self.unseal_args(&forged, "carol"),
                "is not the share the custody ledger of `prod` records for `carol`",
            ),
            (
                self.unseal_args(&stranger, "mallory"),
                "who is not a custodian of `prod`",
            ),
        ];
        for (args, message) in &cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.w.refused(&args, message);
            assert_eq!(
                progress(prod).await,
                (true, 2),
                "refused {message:?} changed the progress"
            );
        }
    }

    /// Every file, output, argv and environment the ceremony touched, as (name, bytes).
    fn haystacks(&self) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        for d in [self.prod.dir(), self.other.dir(), self.w.dir.path()] {
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
        let mut hay: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|f| {
                (
                    f.display().to_string(),
                    std::fs::read(f).unwrap_or_default(),
                )
            })
            .collect();
        for (args, out) in &self.w.runs {
            hay.push((
                format!("argv of warden {args:?}"),
                args.join("\0").into_bytes(),
            ));
            hay.push((format!("stdout of warden {args:?}"), out.stdout.clone()));
            hay.push((format!("stderr of warden {args:?}"), out.stderr.clone()));
        }
        for pid in [self.prod.pid(), self.other.pid()] {
            for what in ["cmdline", "environ"] {
                let p = format!("/proc/{pid}/{what}");
                hay.push((p.clone(), std::fs::read(&p).expect("read /proc")));
            }
        }
        // The environment every warden run got: this process's, minus the testkit's removals.
        let env: Vec<u8> = std::env::vars()
            .flat_map(|(k, v)| format!("{k}={v}\0").into_bytes())
            .collect();
        hay.push(("the environment of the warden runs".to_owned(), env));
        hay
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceremony_five_custodians_threshold_three_leaves_no_secret_and_refuses_bad_shares() {
    install_crypto_provider();
    let mut c = Ceremony::run().await;
    let (needles, fps) = c.open_everything();

    // Two shares leave the node sealed at 2/3.
    let prod = client(&c.prod);
    for (n, expect) in [("alice", 1), ("bob", 2)] {
        let args = c.unseal_args(&c.share(n), n);
        let r = c.w.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r["custodian"], n);
        let node = &r["nodes"][0];
        assert_eq!(
            (
                node["sealed"].as_bool(),
                node["progress"].as_u64(),
                node["threshold"].as_u64()
            ),
            (Some(true), Some(expect), Some(3))
        );
    }
    assert_eq!(progress(&prod).await, (true, 2));
    c.refusals(&prod).await;

    // The third share unseals.
    let args = c.unseal_args(&c.share("carol"), "carol");
    let r = c.w.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r["nodes"][0]["sealed"], false, "{r}");
    assert!(!progress(&prod).await.0);

    // Status and verify: the ledger records who holds which fingerprint.
    let status = c.w.ok(&["custody", "status", "--env", "prod"]);
    let entries = status["ledger"]["entries"]
        .as_array()
        .expect("entries")
        .clone();
    let listed: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["fingerprint"].as_str())
        .collect();
    assert_eq!(listed, fps);
    assert!(entries.iter().all(|e| e["last_verified_at"].is_null()));
    let dave = c.w.id_path("dave");
    let v = c.w.ok(&[
        "custody",
        "verify",
        "--env",
        "prod",
        "--share",
        path_str(&c.share("dave")),
        "--identity",
        path_str(&dave),
    ]);
    assert_eq!(v["verified"]["custodian"], "dave");
    assert!(v["verified"]["last_verified_at"].is_string());

    // The scan: no secret on disk (servers' data and logs, state, outputs, identities), in any
    // command's output, argv or environment, or in the servers' argv and environment.
    let hay = c.haystacks();
    assert!(
        needles.len() >= 5 * 4 + 2 * 4 + 2,
        "every secret is looked for"
    );
    assert!(
        hay.iter().any(|(_, h)| contains(h, fps[0].as_bytes())),
        "the scan reads what the ledger holds"
    );
    for (name, h) in &hay {
        for n in &needles {
            assert!(
                !contains(h, n.as_bytes()),
                "a secret ({} chars) is in {name}",
                n.len()
            );
        }
    }
}
