//! End-to-end: a CI pipeline logs in with its OIDC token (`warden ci login`) against a real lab
//! provisioned by `warden apply`, and then does exactly what its role allows through
//! `warden secret --token-file`.
//!
//! The CI system is played by `CiSigner`: an ES256 key generated here whose public half the
//! spec lists in `validation_pubkeys`, signing tokens with Gitea-like claims. One lab per
//! test; the steps run in order.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use secrecy::ExposeSecret;
use serde_json::json;
use warden_bao::Client;

use warden_testkit::cli::path_str;
use warden_testkit::files::write_private;
use warden_testkit::identity::{self, CiSigner, ci_claims};

use super::support::{AUDIENCE, ISSUER, Platform};

const CONFIG_VALUE: &str = "ci-written-config-value-31337";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_logs_in_and_writes_only_its_apps_config() {
    let ci = CiSigner::generate();
    let p = Platform::start(&ci.public_pem()).await;
    let operator = p.lab.client("test");
    let jwt = |name: &str, repository: &str, git_ref: &str| {
        let token = ci.sign(&ci_claims(ISSUER, AUDIENCE, repository, git_ref));
        let path = p.path(name);
        write_private(&path, token.expose_secret().as_bytes());
        path
    };
    let wrong_branch = jwt("dev.jwt", "platform/billing", "refs/heads/dev");
    let wrong_repo = jwt("ledger.jwt", "platform/ledger", "refs/heads/main");
    let right = jwt("main.jwt", "platform/billing", "refs/heads/main");
    let token_out = p.path("run/token");
    std::fs::create_dir(p.path("run")).expect("mkdir");

    refused_claims(&p, &wrong_branch, &wrong_repo, &token_out);
    let token = logs_in(&p, &right, &token_out);
    writes_only_its_own(&p, &operator, &token_out, &token).await;
    token_sources_and_logout(&p, &right).await;
}

fn login_args<'a>(jwt: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "--role",
        "gitea_cicd_billing",
        "--jwt-file",
        path_str(jwt),
        "--token-out",
        path_str(out),
    ]
}

/// Wrong branch, wrong repository: refused, the claim and both values named, no token file.
fn refused_claims(p: &Platform, wrong_branch: &Path, wrong_repo: &Path, out: &Path) {
    let run = p.run(&["ci", "login"], &login_args(wrong_branch, out), None, &[]);
    run.expect_code(1)
        .says("login as `gitea_cicd_billing` refused")
        .says("`ref` claim is refs/heads/dev; the role accepts refs/heads/main")
        .says("hint: run this step from an allowed branch");
    let run = p.run(&["ci", "login"], &login_args(wrong_repo, out), None, &[]);
    run.expect_code(1)
        .says("`repository` claim is platform/ledger; the role accepts platform/billing");
    assert!(!out.exists(), "a refused login must not leave a token file");

    // A role no pipeline has, and a missing place for the token.
    let run = p.run(
        &["ci", "login"],
        &[
            "--role",
            "gitea_cicd_biling",
            "--jwt-file",
            path_str(wrong_branch),
        ],
        None,
        &[],
    );
    run.expect_code(1)
        .says("did you mean `gitea_cicd_billing`?");
    let mut cmd_args = login_args(wrong_branch, out);
    cmd_args.truncate(4); // no --token-out
    let run = p.run(
        &["ci", "login"],
        &cmd_args,
        None,
        &[("XDG_RUNTIME_DIR", "")],
    );
    run.expect_code(1)
        .says("XDG_RUNTIME_DIR is not set")
        .says("--token-out");
}

/// The right branch of the right repository: a token in a 0600 file, never printed.
fn logs_in(p: &Platform, jwt: &Path, out: &Path) -> String {
    let run = p.run(&["ci", "login"], &login_args(jwt, out), None, &[]);
    let text = run.ok();
    assert!(
        text.stdout.contains("policies [billing-ops]"),
        "{}",
        text.stdout
    );
    let mode = std::fs::metadata(out)
        .expect("token file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "token file mode");
    let token = std::fs::read_to_string(out)
        .expect("read token")
        .trim()
        .to_owned();
    assert!(token.starts_with("s."), "an OpenBao token");
    text.never_shows(&token);

    let mut json_args = login_args(jwt, out);
    json_args.extend(["-o", "json"]);
    let run = p.run(&["ci", "login"], &json_args, None, &[]);
    let r = run.ok().json();
    let token = std::fs::read_to_string(out)
        .expect("read token")
        .trim()
        .to_owned();
    run.never_shows(&token);
    assert_eq!(r["policies"], json!(["billing-ops"]), "{r}");
    assert_eq!(r["role"], "gitea_cicd_billing");
    assert!(r["ttl_seconds"].as_u64().is_some_and(|t| t > 0), "{r}");
    assert!(r["accessor"].as_str().is_some_and(|a| !a.is_empty()), "{r}");
    token
}

async fn writes_only_its_own(p: &Platform, operator: &Client, token_file: &Path, token: &str) {
    let as_ci = ["--token-file", path_str(token_file)];
    let put = |app: &'static str, name: &'static str| {
        p.run(
            &["secret", "put", app, name],
            &as_ci,
            Some(format!("setting={CONFIG_VALUE}\n").as_bytes()),
            &[],
        )
    };

    // Its app's config: written, and recorded as written by the pipeline.
    let run = put("billing", "config");
    run.ok().never_shows(CONFIG_VALUE).never_shows(token);
    assert!(run.stdout.contains("version 1 written"), "{}", run.stdout);
    let stored = operator
        .kv2("kvv2")
        .read("billing/config", None)
        .await
        .expect("operator reads billing/config");
    assert_eq!(
        stored.data.get("setting").map(|v| v.expose().clone()),
        Some(json!(CONFIG_VALUE))
    );
    let h = p
        .run(
            &["secret", "history", "billing", "config"],
            &["-o", "json"],
            None,
            &[],
        )
        .ok()
        .json();
    assert_eq!(
        h["versions"][0]["by"], "jwt-repo:platform/billing:ref:refs/heads/main",
        "{h}"
    );

    // Another app's config, and a secret of its own app it is not granted: refused.
    for (app, name) in [("ledger", "config"), ("billing", "admin")] {
        let run = put(app, name);
        run.expect_code(1)
            .says("permission denied")
            .never_shows(token);
        let err = operator
            .kv2("kvv2")
            .read(&format!("{app}/{name}"), None)
            .await
            .expect_err("nothing may have been written");
        assert!(matches!(err, warden_bao::KvError::NotFound { .. }), "{err}");
    }
    operator
        .kv2("kvv2")
        .write(
            "ledger/config",
            &{
                let mut d = warden_bao::KvData::new();
                d.insert(
                    "k",
                    warden_bao::SecretValue::text("ledger-private-value".into()),
                );
                d
            },
            None,
        )
        .await
        .expect("seed ledger/config");
    let run = p.run(&["secret", "get", "ledger", "config"], &as_ci, None, &[]);
    run.expect_code(1)
        .says("permission denied")
        .never_shows("ledger-private-value");
    let run = p.run(
        &["secret", "get", "ledger", "config"],
        &["--token-file", path_str(token_file), "--reveal"],
        None,
        &[],
    );
    run.expect_code(1).never_shows("ledger-private-value");
}

/// `--jwt-file-env` (the variable holds the token file's path), the default location under
/// `$XDG_RUNTIME_DIR`, and logout revoking the token.
async fn token_sources_and_logout(p: &Platform, jwt: &Path) {
    let runtime = p.path("xdg");
    std::fs::create_dir(&runtime).expect("mkdir");
    let run = p.run(
        &["ci", "login"],
        &["--app", "billing", "--jwt-file-env", "CI_OIDC_TOKEN_FILE"],
        None,
        &[
            ("CI_OIDC_TOKEN_FILE", path_str(jwt)),
            ("XDG_RUNTIME_DIR", path_str(&runtime)),
        ],
    );
    run.ok();
    let default = runtime.join("warden").join("token");
    let dir_mode = std::fs::metadata(runtime.join("warden"))
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let token = std::fs::read_to_string(&default).expect("token at the default place");
    run.never_shows(token.trim());

    let run = p.run(
        &["ci", "login"],
        &[
            "--app",
            "billing",
            "--jwt-file-env",
            "NOT_SET_ANYWHERE",
            "--token-out",
            "x",
        ],
        None,
        &[],
    );
    run.expect_code(1)
        .says("--jwt-file-env NOT_SET_ANYWHERE: the variable is not set");

    let run = p.run(
        &["ci", "logout"],
        &["-o", "json"],
        None,
        &[("XDG_RUNTIME_DIR", path_str(&runtime))],
    );
    assert_eq!(run.ok().json()["revoked"], true);
    assert!(!default.exists(), "logout deletes the token file");
    let transport = runner_client(p, &p.runner_transport());
    transport.set_token(warden_bao::SecretString::from(token.trim().to_owned()));
    let err = transport.token_lookup_self().await.expect_err("revoked");
    assert!(err.is_permission_denied(), "{err}");
}

/// A client presenting the transport certificate in `dir`, with no token.
fn runner_client(p: &Platform, dir: &Path) -> Client {
    p.lab
        .lab()
        .workload_client("test", &dir.join("cert.pem"), &dir.join("key.pem"))
        .expect("a client with the runner's transport certificate")
}

/// Issue 18: `warden ci login` rides on the runner's own transport certificate; that
/// certificate opens nothing by itself (no cert-auth role takes it, no read without a token),
/// and once revoked it stops reaching the API when its short lifetime ends, while the apps'
/// identity certificates keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_18_ci_login_rides_on_the_runners_transport_certificate() {
    let ci = CiSigner::generate();
    let p = Platform::start(&ci.public_pem()).await;
    let operator = p.lab.client("test");
    let jwt = p.path("main.jwt");
    let token = ci.sign(&ci_claims(
        ISSUER,
        AUDIENCE,
        "platform/billing",
        "refs/heads/main",
    ));
    write_private(&jwt, token.expose_secret().as_bytes());
    let token_out = p.path("token");

    // No transport certificate: refused before any login, saying how to get one.
    let run = p.run(
        &["ci", "login"],
        &login_args(&jwt, &token_out),
        None,
        &[("WARDEN_TRANSPORT_DIR", "")],
    );
    run.expect_code(1)
        .says("transport certificate, never the operator's")
        .says("warden transport issue --env test --holder ci-runner --out DIR");
    assert!(!token_out.exists());

    // A short-lived one for this test, so its end is observable.
    let short = p.path("short-transport");
    let issued = p
        .run(
            &["transport", "issue"],
            &[
                "--holder",
                "ci-runner",
                "--out",
                path_str(&short),
                "--ttl",
                "25s",
                "-o",
                "json",
            ],
            None,
            &[],
        )
        .ok()
        .json();
    assert_eq!(
        issued["common_name"], "ci-runner.transport.test.warden.internal",
        "{issued}"
    );
    let mode = std::fs::metadata(short.join("key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the transport key is owner-only");
    let serial = issued["serial"].as_str().expect("serial").to_owned();

    // ci login through it works and gets exactly the pipeline's policy.
    let mut args = login_args(&jwt, &token_out);
    args.extend(["--transport", path_str(&short), "-o", "json"]);
    let r = p.run(&["ci", "login"], &args, None, &[]).ok().json();
    assert_eq!(r["policies"], json!(["billing-ops"]), "{r}");

    // The certificate alone: no cert-auth role accepts it (apps' mount, operators' mount)...
    let bare = runner_client(&p, &short);
    for mount in ["cert", "warden-operators"] {
        let err = bare
            .login_cert(mount, None)
            .await
            .expect_err("a transport certificate must not log in by cert auth");
        assert!(
            err.status() == Some(400) || err.is_permission_denied(),
            "{mount}: {err}"
        );
    }
    // ... and without a token it reads nothing.
    operator
        .kv2("kvv2")
        .write(
            "billing/config",
            &{
                let mut d = warden_bao::KvData::new();
                d.insert(
                    "k",
                    warden_bao::SecretValue::text("runner-must-not-see".into()),
                );
                d
            },
            None,
        )
        .await
        .expect("seed billing/config");
    let bare = runner_client(&p, &short);
    let err = bare
        .read("kvv2/data/billing/config")
        .await
        .expect_err("no token, no read");
    assert!(err.is_permission_denied(), "{err}");

    // Revoked: the PKI records it at once...
    let out = p
        .run(
            &["transport", "revoke"],
            &["--holder", "ci-runner", "--yes", "-o", "json"],
            None,
            &[],
        )
        .ok()
        .json();
    assert!(
        out["serials"]
            .as_array()
            .is_some_and(|s| s.iter().any(|v| v == serial.as_str())),
        "{out}"
    );
    let list = p
        .run(
            &["transport", "list"],
            &["--holder", "ci-runner", "-o", "json"],
            None,
            &[],
        )
        .ok()
        .json();
    assert!(
        list["certificates"]
            .as_array()
            .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["revoked"] == true)),
        "{list}"
    );
    // ... but OpenBao 2.7's listener does not read CRLs (verified here, ADR 0010): until the
    // certificate expires it still completes the handshake. Its short lifetime is what ends it.
    let health = runner_client(&p, &short).health().await;
    assert!(
        health.is_ok(),
        "the listener started checking revocation: revisit ADR 0010 ({health:?})"
    );
    let not_after = time::OffsetDateTime::parse(
        issued["not_after"].as_str().expect("not_after"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    let wait = (not_after - time::OffsetDateTime::now_utc()).max(time::Duration::ZERO)
        + time::Duration::seconds(2);
    tokio::time::sleep(std::time::Duration::try_from(wait).expect("non-negative")).await;
    let token2 = p.path("token2");
    let mut args = login_args(&jwt, &token2);
    args.extend(["--transport", path_str(&short)]);
    let run = p.run(&["ci", "login"], &args, None, &[]);
    run.expect_code(1)
        .says("rejected our client certificate")
        .says("hint: the runner's transport certificate is missing, expired or not trusted here");
    let err = runner_client(&p, &short)
        .health()
        .await
        .expect_err("an expired transport certificate is refused at the handshake");
    assert!(err.is_tls(), "{err}");

    // The apps' identities are untouched: billing's identity certificate still logs in.
    let id = identity::enroll(
        &operator,
        "billing-identity",
        "billing.identity.test.warden.internal",
    )
    .await;
    let app = identity::EnvAccess::of(&p.lab, "test").client_with(id);
    identity::login_cert(&app, "billing")
        .await
        .expect("billing's identity certificate still logs in");
}

/// Issue 18: `warden lint` flags a cert-auth role that would log a transport certificate in —
/// and the finding is real: with the role widened by hand, the runner's certificate does log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_18_lint_flags_a_cert_role_that_accepts_a_transport_certificate() {
    let ci = CiSigner::generate();
    let p = Platform::start(&ci.public_pem()).await;
    let operator = p.lab.client("test");
    let lint = || p.run(&["lint"], &["-o", "json"], None, &[]);
    let clean = lint().ok().json();
    assert!(
        !clean.to_string().contains("transport-can-log-in"),
        "{clean}"
    );
    let runner = runner_client(&p, &p.runner_transport());
    identity::login_cert(&runner, "billing")
        .await
        .expect_err("billing's role pins billing's identity name");

    // An operator widens billing's cert-auth role by hand.
    let mut role = operator
        .read("auth/cert/certs/billing")
        .await
        .expect("read the role")
        .data
        .expect("data");
    role["allowed_common_names"] = json!(["*.test.warden.internal"]);
    operator
        .write(
            "auth/cert/certs/billing",
            &role,
            warden_bao::Idempotent::Yes,
        )
        .await
        .expect("widen the role");
    let runner = runner_client(&p, &p.runner_transport());
    identity::login_cert(&runner, "billing")
        .await
        .expect("the widened role now logs the transport certificate in");

    let run = lint();
    run.expect_code(3);
    let findings = run.json();
    let hit = findings
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["rule"] == "transport-can-log-in")
        .unwrap_or_else(|| panic!("no transport-can-log-in finding: {findings:#}"));
    assert_eq!(hit["identity"], "ci-runner", "{hit}");
    assert!(
        hit["message"]
            .as_str()
            .is_some_and(|m| m.contains("auth/cert/certs/billing")),
        "{hit}"
    );
}

/// Red team: a job's token may renew its runner's transport certificate, and nothing more. It
/// cannot stretch the certificate past the holder's lifetime (OpenBao honours a requested
/// `not_after` beyond the role's `max_ttl` unless the role forbids it, and the listener reads
/// no CRL, so the lifetime is all that ends a leaked certificate), backdate it, or have it name
/// anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_team_a_jobs_token_cannot_stretch_backdate_or_rename_a_transport_certificate() {
    let ci = CiSigner::generate();
    let p = Platform::start(&ci.public_pem()).await;
    let jwt = p.path("main.jwt");
    let token = ci.sign(&ci_claims(
        ISSUER,
        AUDIENCE,
        "platform/billing",
        "refs/heads/main",
    ));
    write_private(&jwt, token.expose_secret().as_bytes());
    let token_out = p.path("job-token");
    p.run(&["ci", "login"], &login_args(&jwt, &token_out), None, &[])
        .ok();
    let job = runner_client(&p, &p.runner_transport());
    job.set_token(warden_bao::SecretString::from(
        std::fs::read_to_string(&token_out)
            .expect("token")
            .trim()
            .to_owned(),
    ));
    let cn = "ci-runner.transport.test.warden.internal";
    // A CSR for `name` with `dns`/`ip` SANs, signed with `body`'s extra fields.
    let sign_csr =
        |name: &str, dns: Vec<String>, ip: Vec<std::net::IpAddr>, body: serde_json::Value| {
            let job = &job;
            let key = warden_pki::generate_key(warden_pki::KeyAlgorithm::EcdsaP256).expect("key");
            let csr = warden_pki::make_csr(&key, name, &dns, &ip).expect("CSR");
            let mut body = body;
            body["csr"] = json!(csr);
            body["common_name"] = json!(name);
            async move {
                job.write(
                    "pki_int/sign/transport-ci-runner",
                    &body,
                    warden_bao::Idempotent::No,
                )
                .await
                .map(|s| {
                    let pem = s.and_then(|s| s.data).expect("data")["certificate"]
                        .as_str()
                        .expect("certificate")
                        .to_owned();
                    warden_pki::parse_pem_bundle(&pem).expect("pem").remove(0)
                })
            }
        };
    let sign = |body: serde_json::Value| {
        let name = body["common_name"].as_str().unwrap_or(cn).to_owned();
        sign_csr(&name, Vec::new(), Vec::new(), body)
    };
    let now = time::OffsetDateTime::now_utc();
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .expect("rfc3339")
    };

    // Renewal, what the grant is for, works and lives the holder's 24h at most, whatever TTL
    // is asked for.
    let renewed = sign(json!({ "common_name": cn, "ttl": "8760h" }))
        .await
        .expect("a carried job renews its runner's certificate");
    assert!(
        renewed.not_after <= now + time::Duration::hours(24) + time::Duration::minutes(2),
        "the role's max_ttl caps a requested ttl: {}",
        renewed.not_after
    );

    // A requested not_after past max_ttl: refused, not honoured.
    let err = sign(json!({
        "common_name": cn,
        "not_after": rfc(now + time::Duration::days(300)),
    }))
    .await
    .expect_err("a year-long transport certificate must not be signed");
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("not_after"), "{err}");
    // Backdated: refused.
    let err = sign(json!({
        "common_name": cn,
        "not_before": rfc(now - time::Duration::days(30)),
    }))
    .await
    .expect_err("a backdated transport certificate must not be signed");
    assert_eq!(err.status(), Some(400), "{err}");

    // Another holder's, an identity's, an operator's or a wildcard name: refused.
    for name in [
        "other.transport.test.warden.internal",
        "billing.identity.test.warden.internal",
        "alice.operator.test.warden.internal",
        "*.transport.test.warden.internal",
        "x.ci-runner.transport.test.warden.internal",
    ] {
        let err = sign(json!({ "common_name": name })).await.expect_err(name);
        assert_eq!(err.status(), Some(400), "{name}: {err}");
    }
    // Extra names carried in the CSR (the role takes its SANs from there): refused.
    let err = sign_csr(
        cn,
        vec!["billing.identity.test.warden.internal".to_owned()],
        Vec::new(),
        json!({}),
    )
    .await
    .expect_err("a CSR with another name as SAN");
    assert_eq!(err.status(), Some(400), "{err}");
    let err = sign_csr(cn, Vec::new(), vec![[127, 0, 0, 1].into()], json!({}))
        .await
        .expect_err("a CSR with an IP SAN");
    assert_eq!(err.status(), Some(400), "{err}");
    // Names asked for in the request are not taken at all.
    let c = sign(json!({
        "common_name": cn,
        "alt_names": "billing.identity.test.warden.internal",
        "ip_sans": "127.0.0.1",
        "uri_sans": "spiffe://test/billing",
    }))
    .await
    .expect("request SANs are ignored, not honoured");
    assert_eq!(c.subject_alt_names, [format!("DNS:{cn}")], "{c:?}");
    // Nor another signing path.
    for path in [
        "pki_int/sign-verbatim/transport-ci-runner",
        "pki_int/issue/transport-ci-runner",
        "pki_int/sign/billing-identity",
    ] {
        let err = job
            .write(
                path,
                &json!({ "common_name": cn }),
                warden_bao::Idempotent::No,
            )
            .await
            .expect_err(path);
        assert!(err.is_permission_denied(), "{path}: {err}");
    }

    // `transport issue --out` into a directory another user planted (owned by them, or open
    // to everyone, or a symlink): refused before anything changes, so its owner cannot swap
    // the key under the workloads; the directory keeps its mode and gets no key.
    let issue_into = |dir: &Path| {
        p.run(
            &["transport", "issue"],
            &["--holder", "ci-runner", "--out", path_str(dir)],
            None,
            &[],
        )
    };
    let planted = p.path("planted");
    std::fs::create_dir(&planted).expect("mkdir");
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    nix::unistd::chown(&planted, Some(nix::unistd::Uid::from_raw(65534)), None)
        .expect("chown (the tests run as root)");
    let open = p.path("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let link = p.path("link");
    std::os::unix::fs::symlink(&open, &link).expect("symlink");
    for (dir, says, mode) in [
        (&planted, "is owned by uid 65534", 0o755),
        (&open, "is writable by other users", 0o777),
        (&link, "symbolic link", 0o777),
    ] {
        let run = issue_into(dir);
        run.expect_code(1);
        assert!(run.all().contains(says), "{}: {}", dir.display(), run.all());
        let meta = std::fs::metadata(dir).expect("still there");
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{}", dir.display());
        assert!(!dir.join("key.pem").exists(), "{}", dir.display());
    }
    // A directory of our own is taken, and made private.
    let own = p.path("own");
    std::fs::create_dir(&own).expect("mkdir");
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    issue_into(&own).ok();
    let meta = std::fs::metadata(&own).expect("own");
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let key = std::fs::metadata(own.join("key.pem")).expect("key");
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
}
