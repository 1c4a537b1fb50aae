//! `warden rotate signing-key | jwks` and `warden domain status | renew` end to end: one real
//! lab (`test` over HTTPS + mTLS) provisioned by `warden apply` from a spec with a signing key
//! (10 s grace), a domain and the purposes covering them. The JWKS the CLI prints is checked
//! against tokens signed through the library, at instants inside and past the grace period
//! (`--at`), so nothing waits for the clock.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_keys::{Jwks, ManualClock, SigningKeyConfig, SigningKeys, VerifyError};
use warden_spec::SigningAlgorithm;
use warden_testkit::LabEnv;
use warden_testkit::cli::{Cli, path_str, text};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const DOMAIN: &str = "shop.test.warden.internal";
const ROLE: &str = "domain-shop-test-warden-internal";

const SPEC: &str = r#"
version = 1

[environments.test]
domain        = "test.warden.internal"
runtime_owner = "warden-test"
app_root      = "/srv/warden/test"

[apps.issuer]
environments = ["test"]
signing_keys = [
  { name = "jwt", algorithm = "es256", grace = "10s" },
  { name = "oidc", algorithm = "rs256", rsa_bits = 3072, grace = "2h", max_token_lifetime = "1h" },
]

[domains."shop.test.warden.internal"]
environments = ["test"]
app          = "issuer"
ttl          = "72h"
renew_before = "24h"

[purposes.workload-identity]
description = "Each identity's own mTLS client certificate"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = { interval = "20d", grace = "5d", max_age = "30d" }
evidence    = "EV-IDENTITY"
covers      = ["*/identity-cert"]

[purposes.service-tls]
description = "Server certificates of the apps"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = { interval = "48h", grace = "24h", max_age = "72h" }
evidence    = "EV-PKI"
covers      = ["*/certificate"]

[purposes.token-signing]
description = "Signs issuer's session tokens; dual-key rotation with a JWKS"
owner       = "issuer"
tier        = "vault_kv"
delivery    = "api"
rotation    = { interval = "90d", grace = "24h" }
evidence    = "EV-TOKENS"
covers      = ["issuer/signing-key/jwt"]

[purposes.oidc-signing]
description = "Signs issuer's OIDC ID tokens (RS256, what every relying party accepts)"
owner       = "issuer"
tier        = "vault_kv"
delivery    = "api"
rotation    = { interval = "90d", grace = "24h" }
evidence    = "EV-TOKENS"
covers      = ["issuer/signing-key/oidc"]

[purposes.public-tls]
description = "Certificates of public domains"
owner       = "platform"
tier        = "vault_kv"
delivery    = "agent_file"
rotation    = { interval = "20d", grace = "5d", max_age = "30d" }
evidence    = "EV-PKI"
covers      = ["domain/*"]
"#;

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON: {e}: {}", text(&out.stdout)))
}

fn with_code(args: &[&str], code: i32) -> Output {
    let out = WARDEN.run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "warden {args:?}:\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// `args` followed by `target`.
fn plus<'a>(args: &[&'a str], target: &[&'a str]) -> Vec<&'a str> {
    args.iter().chain(target).copied().collect()
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().expect("a time string"), &Rfc3339).expect("RFC 3339")
}

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_jwks_and_domain_renewal_through_the_cli() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_path = dir.path().join("warden.toml");
    std::fs::write(&spec_path, SPEC).expect("write spec");
    let revoked_path = dir.path().join("revoked.toml");
    std::fs::write(
        &revoked_path,
        SPEC.replace(
            "covers      = [\"issuer/signing-key/jwt\"]",
            "covers      = [\"issuer/signing-key/jwt\"]\nrevoked     = true",
        )
        .replace(
            "covers      = [\"domain/*\"]",
            "covers      = [\"domain/*\"]\nrevoked     = true",
        ),
    )
    .expect("write revoked spec");
    let (spec, lab_dir, revoked) = (
        path_str(&spec_path),
        path_str(lab.dir()),
        path_str(&revoked_path),
    );
    let target = ["--spec", spec, "--lab", lab_dir];
    let cmd = |args: &[&'static str]| -> Vec<&str> { plus(args, &target) };
    WARDEN.ok(&cmd(&["apply"]));
    let operator = lab.client("test");
    operator
        .read(&format!("pki_int/roles/{ROLE}"))
        .await
        .expect("`warden apply` provisioned the domain's PKI role");

    // The first "rotation" creates version 1.
    let created = json_of(&WARDEN.ok(&cmd(&[
        "rotate",
        "signing-key",
        "token-signing",
        "-o",
        "json",
    ])));
    let entry = &created["keys"][0];
    assert_eq!(entry["action"], "create");
    assert_eq!(entry["location"], "kvv2/issuer/signing/jwt");
    assert_eq!(entry["credential"], "issuer/signing-key/jwt");
    assert_eq!(entry["rotation"]["version"], 1);
    assert_eq!(entry["rotation"]["previous"], Value::Null);
    let kid1 = entry["rotation"]["kid"].as_str().expect("kid").to_owned();

    // A service signs with version 1.
    let config = SigningKeyConfig::new(
        warden_keys::KvLocation::new("kvv2", "issuer/signing/jwt"),
        SigningAlgorithm::Es256,
    );
    let clock = ManualClock::starting_now();
    let service = SigningKeys::load(operator.clone(), config, Arc::new(clock.clone()))
        .await
        .expect("service loads v1");
    let exp = OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let old_token = service
        .sign(&json!({ "sub": "old", "exp": exp }))
        .expect("sign with v1");

    // A dry run shows v1 → v2 and writes nothing.
    let dry = WARDEN.ok(&cmd(&[
        "rotate",
        "signing-key",
        "token-signing",
        "--dry-run",
    ]));
    let plan = text(&dry.stderr);
    assert!(
        plan.contains("test  issuer/jwt  kvv2/issuer/signing/jwt  v1 → v2"),
        "{plan}"
    );
    assert!(
        plan.contains("old key verifies 10s after the rotation"),
        "{plan}"
    );
    assert!(text(&dry.stdout).contains("nothing was written"));

    // One key by name: v1 → v2.
    let rotated = json_of(&WARDEN.ok(&cmd(&[
        "rotate",
        "signing-key",
        "--app",
        "issuer",
        "--key",
        "jwt",
        "-o",
        "json",
    ])));
    let r = &rotated["keys"][0]["rotation"];
    assert_eq!(rotated["keys"][0]["from_version"], 1);
    assert_eq!(r["version"], 2);
    assert_eq!(r["previous"]["kid"], kid1.as_str());
    let kid2 = r["kid"].as_str().expect("kid").to_owned();
    assert_ne!(kid1, kid2);
    let created2 = time_of(&r["created"]);
    let until = time_of(&r["previous"]["verifies_until"]);
    assert_eq!(until, created2 + Duration::from_secs(10));

    // The JWKS verifiers are served: both keys during the grace period, one after. The old
    // token verifies against the first and not the second; a new token against both.
    let jwks_at = |t: OffsetDateTime| -> Jwks {
        let t = at(t);
        let out = WARDEN.ok(&plus(
            &["rotate", "jwks", "issuer", "jwt", "--at", &t],
            &target,
        ));
        serde_json::from_slice(&out.stdout).expect("JWKS document")
    };
    service.refresh().await.expect("service reloads");
    let new_token = service
        .sign(&json!({ "sub": "new", "exp": exp }))
        .expect("sign with v2");
    let during = jwks_at(created2 + Duration::from_secs(1));
    assert_eq!(during.kids(), [kid2.as_str(), kid1.as_str()]);
    let after = jwks_at(until);
    assert_eq!(after.kids(), [kid2.as_str()]);
    let t_during = created2 + Duration::from_secs(1);
    assert_eq!(
        warden_keys::verify(&old_token, &during, t_during).expect("old in grace")["sub"],
        "old"
    );
    assert_eq!(
        warden_keys::verify(&old_token, &after, until),
        Err(VerifyError::UnknownKey { kid: kid1.clone() })
    );
    for (set, t) in [(&during, created2), (&after, until)] {
        assert_eq!(
            warden_keys::verify(&new_token, set, t).expect("new")["sub"],
            "new"
        );
    }
    let doc = text(&WARDEN.ok(&cmd(&["rotate", "jwks", "issuer", "jwt"])).stdout);
    assert!(!doc.contains("\"d\"") && !doc.contains("PRIVATE"), "{doc}");

    // Text output of a real rotation: old kid → new kid and until when the old one verifies.
    let third = WARDEN.ok(&cmd(&["rotate", "signing-key", "token-signing"]));
    let (stdout, stderr) = (text(&third.stdout), text(&third.stderr));
    assert!(stderr.contains("v2 → v3"), "{stderr}");
    assert!(
        stdout.contains(&format!("kid {kid2} → ")) && stdout.contains("old key verifies until"),
        "{stdout}"
    );
    assert!(!stdout.contains("PRIVATE") && !stderr.contains("PRIVATE"));

    // An RS256 key (3072 bits, tokens of at most 1h) through the same commands: created,
    // rotated, both RSA keys published during the grace period; its service refuses to sign
    // a token living longer than the declared hour.
    let dry = text(
        &WARDEN
            .ok(&cmd(&[
                "rotate",
                "signing-key",
                "oidc-signing",
                "--dry-run",
            ]))
            .stderr,
    );
    assert!(
        dry.contains("create v1  (RS256 3072-bit, old key verifies 2h after the rotation, tokens live at most 1h; purpose oidc-signing)"),
        "{dry}"
    );
    for expected in [1, 2] {
        let out = json_of(&WARDEN.ok(&cmd(&[
            "rotate",
            "signing-key",
            "oidc-signing",
            "-o",
            "json",
        ])));
        let (e, r) = (&out["keys"][0], &out["keys"][0]["rotation"]);
        assert_eq!(
            (r["version"].as_u64(), r["alg"].as_str()),
            (Some(expected), Some("RS256"))
        );
        assert_eq!(
            (
                e["rsa_bits"].as_u64(),
                e["max_token_lifetime_seconds"].as_u64()
            ),
            (Some(3072), Some(3600))
        );
    }
    let oidc = SigningKeys::load(
        operator.clone(),
        SigningKeyConfig::new(
            warden_keys::KvLocation::new("kvv2", "issuer/signing/oidc"),
            SigningAlgorithm::Rs256,
        ),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .expect("service loads the RS256 key");
    assert_eq!(oidc.get().signing_key().public_key().rsa_bits(), Some(3072));
    assert_eq!(
        oidc.get().max_token_lifetime(),
        Some(Duration::from_secs(3600))
    );
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let id_token = oidc
        .sign(&json!({ "sub": "alice", "exp": now + 600 }))
        .expect("sign an RS256 token");
    assert!(matches!(
        oidc.sign(&json!({ "sub": "alice", "exp": now + 7200 })),
        Err(warden_keys::Error::TokenLifetime { .. })
    ));
    let out = WARDEN.ok(&plus(&["rotate", "jwks", "issuer", "oidc"], &target));
    let published: Jwks = serde_json::from_slice(&out.stdout).expect("JWKS document");
    assert_eq!(
        published.keys.len(),
        2,
        "both versions during the grace period"
    );
    assert!(
        published.keys.iter().all(|k| k.kty == "RSA"
            && k.alg.as_deref() == Some("RS256")
            && k.e.as_deref() == Some("AQAB")),
        "{published:?}"
    );
    assert_eq!(
        warden_keys::verify(&id_token, &published, OffsetDateTime::now_utc())
            .expect("the RS256 token verifies against the CLI's JWKS")["sub"],
        "alice"
    );

    // A revoked purpose: refused before anything is written.
    let refused = with_code(
        &[
            "rotate",
            "signing-key",
            "token-signing",
            "--spec",
            revoked,
            "--lab",
            lab_dir,
        ],
        1,
    );
    let err = text(&refused.stderr);
    assert!(err.contains("purpose `token-signing` is revoked"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(
        warden_keys::current_version(
            &operator,
            &warden_keys::KvLocation::new("kvv2", "issuer/signing/jwt")
        )
        .await
        .expect("version"),
        3,
        "nothing was rotated"
    );

    // Domains: missing (exit 3), renewed once, a second run does nothing, --force renews.
    let missing = json_of(&with_code(&cmd(&["domain", "status", "-o", "json"]), 3));
    assert_eq!(missing["domains"][0]["domain"], DOMAIN);
    assert_eq!(missing["domains"][0]["state"], "missing");
    let refused = with_code(&["domain", "renew", "--spec", revoked, "--lab", lab_dir], 1);
    assert!(text(&refused.stderr).contains("purpose `public-tls` is revoked"));
    let first = json_of(&WARDEN.ok(&cmd(&["domain", "renew", "-o", "json"])));
    assert_eq!(
        (first["renewed"].as_u64(), first["kept"].as_u64()),
        (Some(1), Some(0))
    );
    let d = &first["domains"][0];
    assert_eq!(d["after"]["version"], 1);
    assert_eq!(d["after"]["state"], "valid");
    // 72 h from issuance, in whole days from the instant `renew` read its clock (just before
    // the request): 2, or 3 when the server's second of issuance (not_after is whole seconds)
    // began after that instant.
    let days_left = d["after"]["days_left"].as_i64();
    assert!(matches!(days_left, Some(2 | 3)), "{days_left:?}");
    let serial1 = d["after"]["serial"].as_str().expect("serial").to_owned();
    let second = json_of(&WARDEN.ok(&cmd(&["domain", "renew", "-o", "json"])));
    assert_eq!(
        (second["renewed"].as_u64(), second["kept"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(second["domains"][0]["after"]["serial"], serial1.as_str());
    let table = text(&WARDEN.ok(&cmd(&["domain", "status"])).stdout);
    assert!(
        table.contains(DOMAIN) && table.contains(&serial1) && table.contains("valid"),
        "{table}"
    );
    let forced = json_of(&WARDEN.ok(&cmd(&["domain", "renew", DOMAIN, "--force", "-o", "json"])));
    assert_eq!(forced["domains"][0]["after"]["version"], 2);
    assert_ne!(forced["domains"][0]["after"]["serial"], serial1.as_str());
    // The stored certificate chains to the lab's PKI and names the domain.
    let stored = operator
        .kv2("kvv2")
        .read(&format!("domains/{DOMAIN}/cert"), None)
        .await
        .expect("stored");
    let chain = stored
        .data
        .get("certificate")
        .expect("certificate")
        .expose();
    let certs = warden_pki::parse_pem_bundle(chain.as_str().expect("PEM")).expect("chain");
    assert!(certs.len() >= 2, "leaf and intermediate");
    assert!(
        certs[0]
            .subject_alt_names
            .contains(&format!("DNS:{DOMAIN}"))
    );
    assert!(
        !certs[1].self_signed,
        "the root is not part of the served chain"
    );
}

/// `warden plan` refuses a signing key whose grace is shorter than the token lifetime it
/// declares, at the grace's line and column, with the value to write; no server is contacted.
#[test]
fn plan_refuses_a_grace_shorter_than_the_token_lifetime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_path = dir.path().join("warden.toml");
    std::fs::write(
        &spec_path,
        SPEC.replace(
            r#"grace = "2h", max_token_lifetime = "1h""#,
            r#"grace = "15m", max_token_lifetime = "1h""#,
        ),
    )
    .expect("write spec");
    let spec = path_str(&spec_path);
    let out = WARDEN.run(&["plan", "--spec", spec]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(
        err.contains(&format!(
            "{spec}:13:66: apps.issuer.signing_keys.grace: signing key `oidc`: grace 15m is shorter than max_token_lifetime 1h"
        )),
        "{err}"
    );
    assert!(err.contains("help: set grace = \"1h\" or more"), "{err}");
    assert!(err.contains("no server was contacted"), "{err}");
    assert!(text(&out.stdout).is_empty(), "no plan is printed");
}

/// `warden domain renew` over ACME against the lab's own OpenBao (HTTPS + mTLS: the ACME
/// client goes through the operator's TLS client), the http-01 challenge answered by the CLI
/// on a loopback address of this test's own at port 80 (the tests run as root), OpenBao's
/// validator pointed at the testkit's DNS responder through the harness token (the lab's names
/// resolve nowhere). Obtained, renewed, and a failed challenge that leaves KV as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_renew_over_the_labs_acme_directory() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let ip = warden_testkit::dns::random_loopback();
    let dns = warden_testkit::dns::LoopbackDns::start(&[(DOMAIN, ip)]).await;
    lab.harness_client("test")
        .write(
            "pki_int/config/acme",
            &json!({ "dns_resolver": dns.addr().to_string() }),
            warden_bao::Idempotent::Yes,
        )
        .await
        .expect("point the validator at the test's DNS");
    let with_listen = |listen: &str| {
        SPEC.replace(
            "ttl          = \"72h\"\nrenew_before = \"24h\"\n",
            &format!(
                "ttl          = \"72h\"\nrenew_before = \"24h\"\nissuer       = \"acme\"\n[domains.\"{DOMAIN}\".acme]\nlisten            = \"{listen}:80\"\nchallenge_timeout = \"20s\"\n"
            ),
        )
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("warden.toml");
    std::fs::write(&good, with_listen(&ip.to_string())).expect("write spec");
    let mut elsewhere = ip.octets();
    elsewhere[3] = if elsewhere[3] == 254 {
        1
    } else {
        elsewhere[3] + 1
    };
    let bad = dir.path().join("elsewhere.toml");
    std::fs::write(
        &bad,
        with_listen(&std::net::Ipv4Addr::from(elsewhere).to_string()),
    )
    .expect("write spec");
    let lab_dir = path_str(lab.dir());
    let on = |spec: &std::path::Path, args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|s| (*s).to_owned())
            .chain([
                "--spec".into(),
                path_str(spec).to_owned(),
                "--lab".into(),
                lab_dir.to_owned(),
            ])
            .collect()
    };
    let run_ok = |spec: &std::path::Path, args: &[&str]| {
        let a = on(spec, args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        WARDEN.ok(&a)
    };
    run_ok(&good, &["apply"]);

    let first = json_of(&run_ok(&good, &["domain", "renew", "-o", "json"]));
    assert_eq!(first["renewed"], 1, "{first:#}");
    assert_eq!(first["domains"][0]["after"]["version"], 1);
    assert_eq!(first["domains"][0]["after"]["state"], "valid");
    let operator = lab.client("test");
    let account = operator
        .kv2("kvv2")
        .read(&format!("domains/{DOMAIN}/acme-account"), None)
        .await
        .expect("the ACME account is kept in KV");
    assert!(
        account
            .data
            .get("directory")
            .and_then(|v| v.expose().as_str())
            .is_some_and(|d| d.ends_with(&format!("/v1/pki_int/roles/{ROLE}/acme/directory"))),
        "the role's own directory"
    );
    let forced = json_of(&run_ok(
        &good,
        &["domain", "renew", DOMAIN, "--force", "-o", "json"],
    ));
    assert_eq!(forced["domains"][0]["after"]["version"], 2);
    let serial2 = forced["domains"][0]["after"]["serial"].clone();
    assert_ne!(serial2, first["domains"][0]["after"]["serial"]);

    // The challenge answered where the name does not resolve: refused, KV unchanged.
    let a = on(&bad, &["domain", "renew", DOMAIN, "--force"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = with_code(&a, 1);
    let err = text(&out.stderr);
    assert!(
        err.contains("the http-01 challenge failed")
            && err.contains("connection refused")
            && err.contains("the stored certificate is unchanged"),
        "{err}"
    );
    let status = json_of(&run_ok(&good, &["domain", "status", "-o", "json"]));
    assert_eq!(status["domains"][0]["version"], 2, "{status:#}");
    assert_eq!(status["domains"][0]["serial"], serial2);

    // `revoke purpose` over the ACME domain: OpenBao stored its certificate (ACME roles
    // store), so it goes on the CRL; the next `domain renew` is refused by the live
    // revocation before the spec says so.
    let record = json_of(&run_ok(
        &good,
        &[
            "revoke",
            "purpose",
            "public-tls",
            "--env",
            "test",
            "--reason",
            "drill",
            "--yes",
            "-o",
            "json",
        ],
    ));
    assert_eq!(
        record["revoked_serials"],
        json!([serial2]),
        "the stored ACME certificate is revoked: {record:#}"
    );
    let a = on(&good, &["domain", "renew", DOMAIN, "--force"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let err = text(&with_code(&a, 1).stderr);
    assert!(
        err.contains("purpose `public-tls` is revoked in its registry entry")
            && err.contains("write `revoked = true` in [purposes.public-tls]"),
        "{err}"
    );
}
