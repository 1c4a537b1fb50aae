//! The agent's template and CA chain outputs end to end, through the `warden` binary against a
//! real lab (HTTPS + mTLS OpenBao, offline root, `warden apply` of the example spec):
//!
//! * a proxy agent follows an intermediate rotation signed by the offline root — both
//!   intermediates on disk during the overlap, each verified, one reload per real change — and
//!   its token cannot issue certificates;
//! * a container agent logs in with a response-wrapped AppRole secret-id in `--once`, and the
//!   spent wrapping token fails the next run clearly;
//! * a template with a syntax error fails `--once` naming the template and line, while the
//!   other outputs are still delivered.
//!
//! Every agent config is written by hand from the documented format (`docs/agent.md`), so the
//! tests pin the contract rather than whatever `identity enroll` generates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use warden_bao::{Client, ClientConfig, Idempotent, KeyType};
use warden_files::Mode;
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::files::{line_count, mode};
use warden_testkit::identity::{approle_role_id, wrapped_secret_id};
use warden_testkit::{EXAMPLE_SPEC, LabEnv, Poll, RunningAgent};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// `warden apply` of the example spec, then `warden identity enroll NAME` into `root`.
/// Returns the identity directory.
fn apply_and_enroll(lab: &LabEnv, root: &Path, name: &str) -> PathBuf {
    let lab_dir = path_str(lab.dir());
    WARDEN.ok(&[
        "apply",
        "--spec",
        EXAMPLE_SPEC,
        "--lab",
        lab_dir,
        "--env",
        "test",
    ]);
    WARDEN.ok(&[
        "identity",
        "enroll",
        name,
        "--spec",
        EXAMPLE_SPEC,
        "--lab",
        lab_dir,
        "--env",
        "test",
        "--root-dir",
        path_str(root),
    ]);
    root.join("test").join(name)
}

fn api_address(lab: &LabEnv) -> String {
    lab.lab().env("test").expect("test env").address()
}

fn write_secret(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        warden_files::ensure_private_dir(dir).expect("private dir");
    }
    warden_files::write_atomic(path, bytes, Mode::OwnerOnly).expect("write");
}

fn chain_subjects(pem: &str) -> Vec<String> {
    warden_pki::parse_pem_bundle(pem)
        .expect("PEM chain")
        .into_iter()
        .map(|c| c.subject)
        .collect()
}

// ---- (a) proxy ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_agent_follows_an_intermediate_rotation_and_cannot_issue() {
    let lab = LabEnv::start(&["test"]).await;
    let root = tempfile::tempdir().expect("tempdir");
    let edge = apply_and_enroll(&lab, root.path(), "edge");
    let anchor = std::fs::read_to_string(edge.join("trust/ca.pem")).expect("trust anchor");
    let reloads = edge.join("reloads.log");
    let chain_file = edge.join("out/ca/chain.pem");
    let config = edge.join("agent-test.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1

[identity]
name        = "edge"
kind        = "proxy"
env         = "test"
common_name = "edge.identity.test.warden.internal"

[openbao]
address = "{address}"
ca_file = "trust/ca.pem"

[auth]
method        = "cert"
mount         = "cert"
role          = "edge"
policy        = "edge"
cert_file     = "identity/client.crt"
key_file      = "identity/client.key"
pki_mount     = "pki_int"
identity_role = "edge-identity"

[renewal]
poll = "1s"

[[output]]
name       = "ca"
type       = "ca_chain"
pki_mount  = "pki_int"
path       = "out/ca/chain.pem"
full_chain = true
mode       = "0644"
reload     = ["/bin/sh", "-c", "echo reload >> {reloads}"]
"#,
            address = api_address(&lab),
            reloads = path_str(&reloads),
        ),
    )
    .expect("agent config");

    let log = edge.join("agent.log");
    let mut agent = RunningAgent::spawn(
        WARDEN.command(&["agent", "--config", path_str(&config)]),
        &log,
    );
    let first = Poll::new(Duration::from_secs(60))
        .showing_log(&log)
        .until("the first CA chain", || {
            std::fs::read_to_string(&chain_file).ok()
        });
    let report = warden_pki::verify_chain(&first, Some(&anchor), OffsetDateTime::now_utc())
        .expect("parse chain");
    assert!(report.valid, "{:?}", report.problems);
    assert_eq!(report.certs.len(), 2, "intermediate + root");
    assert!(report.certs[1].self_signed, "ends in the root");
    assert_eq!(mode(&chain_file), 0o644);
    let old_serial = report.certs[0].serial.clone();
    // Let a few polls pass: an unchanged chain is not rewritten and not reloaded.
    std::thread::sleep(Duration::from_secs(3));
    agent.assert_alive();
    let reloads_before = line_count(&reloads);
    assert!(
        reloads_before <= 1,
        "reloaded {reloads_before} times without a change"
    );
    assert_eq!(std::fs::read_to_string(&chain_file).expect("chain"), first);

    // Rotation: a new intermediate key in OpenBao, signed by the offline root, imported, made
    // the default issuer.
    let operator = lab.client("test");
    let csr = operator
        .pki_generate_intermediate_csr(
            "pki_int",
            "Warden test PKI intermediate (rotated)",
            KeyType::EcP256,
        )
        .await
        .expect("new intermediate CSR");
    let work = tempfile::tempdir().expect("tempdir");
    let csr_file = work.path().join("int.csr");
    let signed_file = work.path().join("int.pem");
    std::fs::write(&csr_file, &csr.csr_pem).expect("write CSR");
    let layout = lab.lab().layout();
    WARDEN.ok(&[
        "ca",
        "sign-intermediate",
        "--dir",
        path_str(&layout.ca_dir()),
        "--csr",
        path_str(&csr_file),
        "--env",
        "test",
        "--passphrase-file",
        path_str(&layout.ca_passphrase_file()),
        "--bundle",
        "--out",
        path_str(&signed_file),
    ]);
    let bundle = std::fs::read_to_string(&signed_file).expect("signed bundle");
    let imported = operator
        .pki_set_signed("pki_int", &bundle)
        .await
        .expect("import the new intermediate");
    let new_issuer = imported
        .mapping
        .iter()
        .find(|(_, key)| !key.is_empty())
        .map(|(issuer, _)| issuer.clone())
        .unwrap_or_else(|| panic!("no keyed issuer imported: {imported:?}"));
    operator
        .write(
            "pki_int/config/issuers",
            &json!({ "default": new_issuer }),
            Idempotent::Yes,
        )
        .await
        .expect("make the new intermediate the default issuer");
    let new_chain = operator.pki_ca_chain("pki_int").await.expect("new chain");
    let new_serial = warden_pki::parse_pem_bundle(&new_chain).expect("parse")[0]
        .serial
        .clone();
    assert_ne!(new_serial, old_serial);

    // The agent picks it up at once (it watches the mount's issuers): both intermediates while
    // both are in the mount — the rotation's overlap, ADR 0029 — the new default first, each
    // verifying against the root, then the root once.
    let second =
        Poll::new(Duration::from_secs(30))
            .showing_log(&log)
            .until("the rotated CA chain", || {
                std::fs::read_to_string(&chain_file).ok().filter(|t| {
                    warden_pki::parse_pem_bundle(t)
                        .ok()
                        .is_some_and(|c| c[0].serial == new_serial)
                })
            });
    let certs = warden_pki::parse_pem_bundle(&second).expect("parse chain");
    assert_eq!(
        certs.len(),
        3,
        "new, old, root: {:?}",
        chain_subjects(&second)
    );
    assert_eq!(certs[1].serial, old_serial, "the old intermediate second");
    assert!(certs[2].self_signed, "the root last");
    for int in warden_pki::pem_blocks(&second).iter().take(2) {
        let report = warden_pki::verify_chain(
            &format!("{}\n{anchor}", int.trim_end()),
            Some(&anchor),
            OffsetDateTime::now_utc(),
        )
        .expect("parse chain");
        assert!(report.valid, "{:?}", report.problems);
    }
    assert_eq!(
        chain_subjects(&second)[0],
        "CN=Warden test PKI intermediate (rotated)"
    );
    Poll::new(Duration::from_secs(30))
        .showing_log(&log)
        .until("the reload", || {
            (line_count(&reloads) > reloads_before).then_some(())
        });
    std::thread::sleep(Duration::from_secs(3));
    agent.assert_alive();
    // Two real changes at most (the import, then the new default); never one per poll.
    let reloads_after = line_count(&reloads);
    assert!(
        (reloads_before + 1..=reloads_before + 2).contains(&reloads_after),
        "{reloads_after} reloads after {reloads_before}: one per real change"
    );
    assert_eq!(std::fs::read_to_string(&chain_file).expect("chain"), second);
    drop(agent);

    // The proxy's own token reads trust material and cannot issue anything.
    let proxy = Client::new(
        ClientConfig::from_address(&api_address(&lab))
            .expect("address")
            .with_ca_file(edge.join("trust/ca.pem"))
            .expect("ca")
            .with_client_cert_files(
                edge.join("identity/client.crt"),
                edge.join("identity/client.key"),
            )
            .expect("identity"),
    )
    .expect("client");
    let auth = proxy.login_cert("cert", Some("edge")).await.expect("login");
    assert_eq!(auth.policies, ["edge"]);
    proxy.set_token(auth.client_token.clone());
    assert!(
        !proxy
            .pki_ca_chain("pki_int")
            .await
            .expect("read chain")
            .is_empty()
    );
    let err = proxy
        .write(
            "pki_int/issue/billing",
            &json!({"common_name": "billing.test.warden.internal"}),
            Idempotent::No,
        )
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "issue: {err:?}");
    let key = warden_pki::generate_key(warden_pki::KeyAlgorithm::EcdsaP256).expect("key");
    let csr = warden_pki::make_csr(&key, "billing.test.warden.internal", &[], &[]).expect("csr");
    let err = proxy
        .write(
            "pki_int/sign/billing",
            &json!({"csr": csr, "common_name": "billing.test.warden.internal"}),
            Idempotent::No,
        )
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "sign: {err:?}");
}

// ---- (b) container --------------------------------------------------------------------------

const WORKER_PASSWORD: &str = "w0rker-Qu3ue-S3cret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_agent_logs_in_with_a_wrapped_secret_id_once() {
    let lab = LabEnv::start(&["test"]).await;
    let lab_dir = path_str(lab.dir()).to_owned();
    WARDEN.ok(&[
        "apply",
        "--spec",
        EXAMPLE_SPEC,
        "--lab",
        &lab_dir,
        "--env",
        "test",
    ]);
    let operator = lab.client("test");
    operator
        .write(
            "kvv2/data/worker/config",
            &json!({"data": {"queue": "jobs", "password": WORKER_PASSWORD}}),
            Idempotent::No,
        )
        .await
        .expect("write the worker's secret");
    let role_id = approle_role_id(&operator, "worker").await;
    // The operator asks for the secret-id *wrapped*: OpenBao answers with a single-use
    // wrapping token and the secret-id itself never leaves the server unwrapped.
    let wrapped = wrapped_secret_id(&operator, "worker").await;
    assert_eq!(wrapped.creation_path, "auth/approle/role/worker/secret-id");
    let wrapping_token =
        zeroize::Zeroizing::new(warden_bao::ExposeSecret::expose_secret(&wrapped.token).to_owned());
    drop(wrapped);
    let layout = lab.lab().layout().env("test");

    let dir = tempfile::tempdir().expect("tempdir");
    let id = dir.path().join("worker");
    warden_files::ensure_private_dir(&id).expect("identity dir");
    write_secret(&id.join("approle/role-id"), role_id.as_bytes());
    write_secret(&id.join("approle/secret-id"), wrapping_token.as_bytes());
    let config = id.join("agent.toml");
    // The lab's listener demands a client certificate from everyone. A container has no
    // identity certificate; it presents its host's transport certificate (ADR 0010), which
    // opens nothing: every permission comes from the AppRole login.
    let agent_toml = |transport: &str| {
        format!(
            r#"version = 1

[identity]
name        = "worker"
kind        = "container"
env         = "test"
common_name = "worker.container.test.warden.internal"

[openbao]
address = "{address}"
ca_file = "{ca}"

[auth]
method            = "approle"
mount             = "approle"
policy            = "worker"
role_id_file      = "approle/role-id"
secret_id_file    = "approle/secret-id"
secret_id_wrapped = true
{transport}
[[output]]
name     = "config"
type     = "template"
contents = """
{{% set cfg = kv("kvv2", "worker/config") -%}}
QUEUE={{{{ cfg.queue }}}}
PASSWORD={{{{ cfg.password }}}}
"""
path     = "out/config.env"
mode     = "0600"
"#,
            address = api_address(&lab),
            ca = path_str(&layout.ca_bundle()),
        )
    };

    // Without a transport certificate the handshake is refused before the wrapping token is
    // used, and the failure says how to get one.
    std::fs::write(&config, agent_toml("")).expect("agent config");
    let out = WARDEN.run(&["agent", "--config", path_str(&config), "--once"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "no transport must fail:\n{all}");
    assert!(
        all.contains("requires a client certificate")
            && all.contains("warden transport issue --env ENV --holder HOST --out DIR"),
        "the failure must say how to get a transport certificate:\n{all}"
    );
    assert!(!all.contains(wrapping_token.as_str()), "{all}");

    // The host's own transport certificate (`[transport.worker-host]` of the example spec).
    let transport = id.join("transport");
    WARDEN.ok(&[
        "transport",
        "issue",
        "--spec",
        EXAMPLE_SPEC,
        "--lab",
        &lab_dir,
        "--env",
        "test",
        "--holder",
        "worker-host",
        "--out",
        path_str(&transport),
    ]);
    std::fs::write(
        &config,
        agent_toml(&format!(
            "cert_file         = \"{}\"\nkey_file          = \"{}\"\npki_mount         = \"pki_int\"\nidentity_role     = \"transport-worker-host\"\n",
            path_str(&transport.join("cert.pem")),
            path_str(&transport.join("key.pem")),
        )),
    )
    .expect("agent config");

    let out = WARDEN.run(&["agent", "--config", path_str(&config), "--once"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "--once failed:\n{all}");
    let rendered = id.join("out/config.env");
    assert_eq!(
        std::fs::read_to_string(&rendered).expect("rendered"),
        format!("QUEUE=jobs\nPASSWORD={WORKER_PASSWORD}\n")
    );
    assert_eq!(mode(&rendered), 0o600);
    assert!(
        !id.join("approle/secret-id").exists(),
        "the secret-id file is removed once read"
    );
    for secret in [WORKER_PASSWORD, wrapping_token.as_str()] {
        assert!(
            !all.contains(secret),
            "a secret reached the agent's output:\n{all}"
        );
    }

    // The same wrapping token again: already unwrapped, so the login fails, clearly.
    write_secret(&id.join("approle/secret-id"), wrapping_token.as_bytes());
    let out = WARDEN.run(&["agent", "--config", path_str(&config), "--once"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "a spent wrapping token must fail:\n{all}"
    );
    assert!(
        all.contains("wrapping token is not valid or does not exist")
            && all.contains(path_str(&id.join("approle/secret-id"))),
        "the error should name the file and say the wrapping token is spent:\n{all}"
    );
    assert_eq!(
        std::fs::read_to_string(&rendered).expect("still there"),
        format!("QUEUE=jobs\nPASSWORD={WORKER_PASSWORD}\n"),
        "a failed run leaves what was delivered"
    );
    assert!(!all.contains(wrapping_token.as_str()), "{all}");
}

// ---- (c) a bad template among good outputs -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_template_fails_once_with_its_line_while_other_outputs_are_delivered() {
    let lab = LabEnv::start(&["test"]).await;
    let root = tempfile::tempdir().expect("tempdir");
    let billing = apply_and_enroll(&lab, root.path(), "billing");
    lab.client("test")
        .write(
            "kvv2/data/billing/config",
            &json!({"data": {"db_user": "billing"}}),
            Idempotent::No,
        )
        .await
        .expect("write billing's secret");
    let templates = billing.join("templates");
    std::fs::create_dir_all(&templates).expect("templates dir");
    let bad = templates.join("bad.j2");
    std::fs::write(
        &bad,
        "line one\nline two {{ kv(\"kvv2\", \"billing/config\").db_user }}\n{% if %}\n",
    )
    .expect("bad template");
    let config = billing.join("agent-test.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1

[identity]
name        = "billing"
kind        = "app"
env         = "test"
common_name = "billing.identity.test.warden.internal"

[openbao]
address = "{address}"
ca_file = "trust/ca.pem"

[auth]
method        = "cert"
mount         = "cert"
role          = "billing"
policy        = "billing"
cert_file     = "identity/client.crt"
key_file      = "identity/client.key"
pki_mount     = "pki_int"
identity_role = "billing-identity"

[[output]]
name     = "broken"
type     = "template"
template = "templates/bad.j2"
path     = "out/broken.env"

[[output]]
name     = "good"
type     = "template"
contents = "DB_USER={{{{ kv(\"kvv2\", \"billing/config\").db_user }}}}\n"
path     = "out/good.env"

[[output]]
name       = "ca"
type       = "ca_chain"
pki_mount  = "pki_int"
path       = "out/ca.pem"
full_chain = false
"#,
            address = api_address(&lab),
        ),
    )
    .expect("agent config");

    let out = WARDEN.run(&["agent", "--config", path_str(&config), "--once"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "--once must fail on a bad template:\n{all}"
    );
    assert!(
        all.contains(path_str(&bad)) && all.contains("line 3"),
        "the error names the template and its line:\n{all}"
    );
    assert!(all.contains("syntax error"), "{all}");
    assert!(
        !billing.join("out/broken.env").exists(),
        "nothing written for the bad template"
    );
    assert_eq!(
        std::fs::read_to_string(billing.join("out/good.env")).expect("good output delivered"),
        "DB_USER=billing\n"
    );
    let ca = std::fs::read_to_string(billing.join("out/ca.pem")).expect("CA chain delivered");
    let anchor = std::fs::read_to_string(billing.join("trust/ca.pem")).expect("anchor");
    let report =
        warden_pki::verify_chain(&ca, Some(&anchor), OffsetDateTime::now_utc()).expect("parse");
    assert!(report.valid, "{:?}", report.problems);
    assert_eq!(
        report.certs.len(),
        1,
        "intermediate only without full_chain"
    );
    assert!(!report.certs[0].self_signed);
}

/// Issue 18: the container's agent keeps its host's transport certificate alive by itself —
/// with its own AppRole token, through `transport-worker-host`, under the holder's name — so a
/// short-lived transport certificate does not cut the container off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_agent_renews_its_hosts_transport_certificate() {
    let lab = LabEnv::start(&["test"]).await;
    let lab_dir = path_str(lab.dir()).to_owned();
    let target = ["--spec", EXAMPLE_SPEC, "--lab", &lab_dir, "--env", "test"];
    WARDEN.ok(&[&["apply"][..], &target[..]].concat());
    let operator = lab.client("test");
    operator
        .write(
            "kvv2/data/worker/config",
            &json!({"data": {"queue": "jobs"}}),
            Idempotent::No,
        )
        .await
        .expect("write the worker's secret");
    let role_id = approle_role_id(&operator, "worker").await;
    let wrapped = wrapped_secret_id(&operator, "worker").await;

    let dir = tempfile::tempdir().expect("tempdir");
    let id = dir.path().join("worker");
    write_secret(&id.join("approle/role-id"), role_id.as_bytes());
    write_secret(
        &id.join("approle/secret-id"),
        warden_bao::ExposeSecret::expose_secret(&wrapped.token).as_bytes(),
    );
    let transport = dir.path().join("host-transport");
    let issued = WARDEN
        .ok(&[
            &["transport", "issue"][..],
            &target[..],
            &[
                "--holder",
                "worker-host",
                "--out",
                path_str(&transport),
                "--ttl",
                "40s",
                "-o",
                "json",
            ][..],
        ]
        .concat())
        .stdout
        .clone();
    let issued: serde_json::Value = serde_json::from_slice(&issued).expect("json");
    let first_serial = issued["serial"].as_str().expect("serial").to_owned();
    let layout = lab.lab().layout().env("test");
    let config = id.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1

[identity]
name        = "worker"
kind        = "container"
env         = "test"
common_name = "worker.container.test.warden.internal"

[openbao]
address = "{address}"
ca_file = "{ca}"

[auth]
method            = "approle"
policy            = "worker"
role_id_file      = "approle/role-id"
secret_id_file    = "approle/secret-id"
secret_id_wrapped = true
cert_file         = "{cert}"
key_file          = "{key}"
pki_mount         = "pki_int"
identity_role     = "transport-worker-host"

[[output]]
name     = "config"
type     = "template"
contents = "{{{{ kv(\"kvv2\", \"worker/config\").queue }}}}"
path     = "out/config.txt"
"#,
            address = api_address(&lab),
            ca = path_str(&layout.ca_bundle()),
            cert = path_str(&transport.join("cert.pem")),
            key = path_str(&transport.join("key.pem")),
        ),
    )
    .expect("agent config");

    let log = id.join("agent.log");
    let mut agent = RunningAgent::spawn(
        WARDEN.command(&["agent", "--config", path_str(&config)]),
        &log,
    );
    Poll::new(Duration::from_secs(30))
        .showing_log(&log)
        .until("the worker's config", || {
            std::fs::read_to_string(id.join("out/config.txt"))
                .ok()
                .filter(|t| t == "jobs")
        });
    let norm = |s: &str| s.replace(':', "").to_lowercase();
    let renewed = Poll::new(Duration::from_secs(60)).showing_log(&log).until(
        "a renewed transport certificate",
        || {
            let pem = std::fs::read_to_string(transport.join("cert.pem")).ok()?;
            let leaf = warden_pki::parse_pem_bundle(&pem).ok()?.swap_remove(0);
            (norm(&leaf.serial) != norm(&first_serial)).then_some((pem, leaf))
        },
    );
    // Renewed once, not in a loop: the new 40-second certificate is not due for a while.
    std::thread::sleep(Duration::from_secs(4));
    agent.assert_alive();
    assert_eq!(
        std::fs::read_to_string(transport.join("cert.pem")).expect("cert"),
        renewed.0,
        "renewed again within seconds:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        warden_pki::common_name(&renewed.0).as_deref(),
        Some("worker-host.transport.test.warden.internal"),
        "renewed under the holder's name, not the workload's"
    );
    assert!(renewed.1.not_after > OffsetDateTime::now_utc());
    assert_eq!(mode(&transport.join("key.pem")), 0o600);
    // The renewed certificate still opens nothing by itself.
    let bare = warden_testkit::identity::EnvAccess::of(&lab, "test").client_with(
        warden_bao::ClientIdentity::from_pem(
            renewed.0.into_bytes(),
            zeroize::Zeroizing::new(std::fs::read(transport.join("key.pem")).expect("key")),
        )
        .expect("identity"),
    );
    bare.login_cert("cert", None)
        .await
        .expect_err("no cert-auth role takes the renewed transport certificate");
}
