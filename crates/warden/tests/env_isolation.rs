//! Issue 14, end to end: environment isolation in the chain (ADR 0013).
//!
//! A real two-environment lab from `warden lab up` (servers, the example spec applied, every
//! agent running). Whoever runs one environment widens a PKI role there and issues a leaf and
//! an identity certificate for the *other* environment's names. Both are refused by the other
//! environment's trust — the CA chain its proxy's agent delivered (`out/ca/chain.pem`), checked
//! with OpenSSL (hostname included) and with rustls/webpki — and the identity certificate by
//! the other environment's cert-auth login; certificates the victim issues itself pass the same
//! checks. Then the lab is taken back to before the fix (test's intermediate re-signed without
//! constraints): the same forged leaf is accepted, and `lint` and `posture` flag the break.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::ServerCertVerifier as _;
use serde_json::{Value, json};
use warden_bao::{Client, ClientConfig, ClientIdentity, Idempotent};
use warden_lab::Lab;
use warden_testkit::LabGuard;
use warden_testkit::cli::Cli;

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const ENVS: [&str; 2] = ["test", "prod"];

fn domain(env: &str) -> String {
    format!("{env}.warden.internal")
}

/// A certificate issued in the lab: leaf, the issuing CA, and the leaf's key (kept in memory).
struct Issued {
    leaf: String,
    issuing_ca: String,
    key: String,
}

/// Makes `role` on `env`'s PKI mount allow every name under `names_of`'s domain — what whoever
/// runs `env` can do — and issues `cn` from it.
async fn issue(client: &Client, role: &str, names_of: &str, cn: &str) -> Issued {
    client
        .write(
            &format!("pki_int/roles/{role}"),
            &json!({
                "allowed_domains": [domain(names_of)],
                "allow_subdomains": true,
                "server_flag": true,
                "client_flag": true,
                "key_type": "ec",
                "key_bits": 256,
                "ttl": "1h",
                "no_store": true,
            }),
            Idempotent::Yes,
        )
        .await
        .unwrap_or_else(|e| panic!("write role {role}: {e}"));
    let secret = client
        .write(
            &format!("pki_int/issue/{role}"),
            &json!({ "common_name": cn, "ttl": "1h" }),
            Idempotent::No,
        )
        .await
        .unwrap_or_else(|e| panic!("issue {cn} from {role}: {e}"))
        .expect("an issued certificate");
    let data = secret.data.expect("issue data");
    let field = |k: &str| {
        data[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k}: {data}"))
            .to_owned()
    };
    Issued {
        leaf: field("certificate"),
        issuing_ca: field("issuing_ca"),
        key: field("private_key"),
    }
}

/// `openssl verify` of `cert` against `ca_file` (the victim's delivered chain), as a server
/// for `hostname` or as a client; returns whether it verified, and what openssl said.
fn openssl_verify(
    dir: &Path,
    ca_file: &Path,
    cert: &Issued,
    hostname: Option<&str>,
) -> (bool, String) {
    let leaf = dir.join("leaf.pem");
    let untrusted = dir.join("issuing.pem");
    std::fs::write(&leaf, &cert.leaf).unwrap();
    std::fs::write(&untrusted, &cert.issuing_ca).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.arg("verify")
        .arg("-CAfile")
        .arg(ca_file)
        .arg("-untrusted")
        .arg(&untrusted);
    match hostname {
        Some(h) => cmd.args(["-purpose", "sslserver", "-verify_hostname", h]),
        None => cmd.args(["-purpose", "sslclient"]),
    };
    let out = cmd.arg(&leaf).output().expect("run openssl verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn der(pem: &str) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
}

/// rustls/webpki with every certificate of `chain_pem` as a root, as a client checking a server
/// for `hostname` (or, without one, as a server checking a client certificate).
fn rustls_verify(chain_pem: &str, cert: &Issued, hostname: Option<&str>) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes()) {
        roots.add(c.expect("chain PEM")).expect("add root");
    }
    let roots = Arc::new(roots);
    let (leaf, inter) = (der(&cert.leaf), [der(&cert.issuing_ca)]);
    let now = rustls::pki_types::UnixTime::now();
    match hostname {
        Some(h) => {
            let v = rustls::client::WebPkiServerVerifier::builder(roots)
                .build()
                .expect("server verifier");
            let name = rustls::pki_types::ServerName::try_from(h.to_owned()).expect("DNS name");
            v.verify_server_cert(&leaf, &inter, &name, &[], now)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        None => {
            let v = rustls::server::WebPkiClientVerifier::builder(roots)
                .build()
                .expect("client verifier");
            v.verify_client_cert(&leaf, &inter, now)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}

/// Logs in at `env`'s cert auth as identity `billing`, presenting `cert`.
async fn cert_login(lab: &Lab, env: &str, cert: &Issued) -> Result<(), String> {
    let address = lab.env(env).expect("env").address();
    let chain = format!("{}{}", cert.leaf.trim_end(), "\n") + cert.issuing_ca.trim_end() + "\n";
    let identity = ClientIdentity::from_pem(
        chain.into_bytes(),
        zeroize::Zeroizing::new(cert.key.clone().into_bytes()),
    )
    .expect("client identity");
    let mut cfg = ClientConfig::new(address.parse().expect("address"))
        .with_ca_file(lab.layout().env(env).ca_bundle())
        .expect("ca bundle")
        .with_client_identity(identity);
    cfg.retry.startup_timeout = Duration::from_secs(2);
    let client = Client::new(cfg).expect("client");
    client
        .login_cert("cert", Some("billing"))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The CA chain the proxy `edge`'s agent delivered in `env`.
fn delivered_chain(lab_dir: &Path, env: &str) -> PathBuf {
    let path = lab_dir.join(format!("hosts/{env}/edge/out/ca/chain.pem"));
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} was never delivered",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    path
}

fn run(args: &[&str], lab_dir: &Path) -> std::process::Output {
    WARDEN
        .invoke(args)
        .arg("--spec")
        .arg(warden_testkit::EXAMPLE_SPEC)
        .arg("--lab")
        .arg(lab_dir)
        .output()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_a_certificate_from_one_environment_is_refused_by_every_other() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let guard = LabGuard::new(WARDEN);
    let lab_dir = guard.dir();
    let up = WARDEN
        .invoke(&["lab", "up", "--output", "json", "--dir"])
        .arg(&lab_dir)
        .output();
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let lab = Lab::open(&lab_dir).expect("open the lab");
    let scratch = tempfile::tempdir().unwrap();

    // Each PKI intermediate carries its environment's names, and OpenBao serves it.
    for env in ENVS {
        let chain = lab
            .operator_client(env)
            .unwrap()
            .pki_ca_chain("pki_int")
            .await
            .unwrap();
        let certs = warden_pki::parse_pem_bundle(&chain).unwrap();
        let mut want = vec!["shop.warden.example".to_owned(), domain(env)];
        want.sort();
        assert_eq!(certs[0].permitted_dns, want, "{env}: {:?}", certs[0]);
    }

    for (attacker, victim) in [("test", "prod"), ("prod", "test")] {
        let victim_chain_file = delivered_chain(&lab_dir, victim);
        let victim_chain = std::fs::read_to_string(&victim_chain_file).unwrap();
        let host = format!("billing.{}", domain(victim));
        let identity_cn = format!("billing.identity.{}", domain(victim));

        // Whoever runs `attacker` widens a role to the victim's names.
        let a = lab.operator_client(attacker).unwrap();
        let forged_leaf = issue(&a, "issue-14-widened", victim, &host).await;
        let forged_identity = issue(&a, "issue-14-widened", victim, &identity_cn).await;
        // The victim's own certificates for the same names: the checks below can pass.
        let v = lab.operator_client(victim).unwrap();
        let own_leaf = issue(&v, "issue-14-control", victim, &host).await;
        let own_identity = issue(&v, "issue-14-control", victim, &identity_cn).await;

        let what = format!("{attacker} -> {victim}");
        let (ok, text) = openssl_verify(
            scratch.path(),
            &victim_chain_file,
            &forged_leaf,
            Some(&host),
        );
        assert!(!ok, "{what}: openssl accepted the forged leaf:\n{text}");
        assert!(
            text.contains("permitted subtree violation"),
            "{what}: {text}"
        );
        let (ok, text) = openssl_verify(scratch.path(), &victim_chain_file, &forged_identity, None);
        assert!(!ok, "{what}: openssl accepted the forged identity:\n{text}");
        assert!(
            text.contains("permitted subtree violation"),
            "{what}: {text}"
        );
        let (ok, text) = openssl_verify(scratch.path(), &victim_chain_file, &own_leaf, Some(&host));
        assert!(ok, "{what}: the victim's own leaf was refused:\n{text}");
        let (ok, text) = openssl_verify(scratch.path(), &victim_chain_file, &own_identity, None);
        assert!(ok, "{what}: the victim's own identity was refused:\n{text}");

        let e = rustls_verify(&victim_chain, &forged_leaf, Some(&host))
            .expect_err("rustls accepted the forged leaf");
        assert!(e.contains("NameConstraintViolation"), "{what}: {e}");
        let e = rustls_verify(&victim_chain, &forged_identity, None)
            .expect_err("rustls accepted the forged identity");
        assert!(e.contains("NameConstraintViolation"), "{what}: {e}");
        rustls_verify(&victim_chain, &own_leaf, Some(&host))
            .unwrap_or_else(|e| panic!("{what}: rustls refused the victim's leaf: {e}"));
        rustls_verify(&victim_chain, &own_identity, None)
            .unwrap_or_else(|e| panic!("{what}: rustls refused the victim's identity: {e}"));

        // The victim's cert auth: the forged identity does not log in as its billing; the
        // victim's own does.
        let e = cert_login(&lab, victim, &forged_identity)
            .await
            .expect_err("the forged identity logged in");
        // Refused at the handshake: the listener trusts the victim's own intermediate only.
        assert!(e.contains("rejected our client certificate"), "{what}: {e}");
        cert_login(&lab, victim, &own_identity)
            .await
            .unwrap_or_else(|e| panic!("{what}: the victim's own identity could not log in: {e}"));
    }

    // A fresh lab is isolated: lint has no isolation finding, posture reports only the domain
    // certificate the spec deliberately shares.
    let lint = run(&["lint", "--output", "json"], &lab_dir);
    let findings: Value = serde_json::from_slice(&lint.stdout).expect("lint JSON");
    assert!(
        !findings
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "environment-isolation"),
        "{findings:#}"
    );
    let posture = run(
        &["posture", "--output", "json", "--fail-on", "revoked"],
        &lab_dir,
    );
    let report: Value = serde_json::from_slice(&posture.stdout).expect("posture JSON");
    assert_eq!(
        report["isolation"],
        json!([{ "kind": "shared_name", "name": "shop.warden.example", "envs": ["prod", "test"] }]),
        "{report:#}"
    );
    assert_eq!(
        posture.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&posture.stderr)
    );

    // Back to before the fix: test's intermediate re-signed without constraints (with a
    // reason, as the CA now demands) and made the default issuer.
    let t = lab.operator_client("test").unwrap();
    let csr = t
        .pki_generate_intermediate_csr(
            "pki_int",
            "Warden test PKI intermediate (old)",
            warden_bao::KeyType::EcP256,
        )
        .await
        .unwrap();
    let csr_file = scratch.path().join("old.csr");
    std::fs::write(&csr_file, &csr.csr_pem).unwrap();
    let out_file = scratch.path().join("old.pem");
    let signed = WARDEN
        .invoke(&[
            "ca",
            "sign-intermediate",
            "--env",
            "test",
            "--bundle",
            "--unconstrained-because",
            "simulate a lab created before ADR 0013",
            "--dir",
        ])
        .arg(lab.layout().ca_dir())
        .arg("--csr")
        .arg(&csr_file)
        .arg("--out")
        .arg(&out_file)
        .arg("--passphrase-file")
        .arg(lab.layout().ca_passphrase_file())
        .output();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let imported = t
        .pki_set_signed("pki_int", &std::fs::read_to_string(&out_file).unwrap())
        .await
        .unwrap();
    let new_issuer = imported
        .mapping
        .iter()
        .find(|(_, key)| !key.is_empty())
        .map(|(issuer, _)| issuer.clone())
        .expect("the new intermediate's issuer");
    t.write(
        "pki_int/config/issuers",
        &json!({ "default": new_issuer }),
        Idempotent::Yes,
    )
    .await
    .unwrap();

    // The reproduction from the issue: with that intermediate, test impersonates prod.
    let prod_chain = delivered_chain(&lab_dir, "prod");
    let host = format!("billing.{}", domain("prod"));
    let forged = issue(&t, "issue-14-widened", "prod", &host).await;
    let (ok, text) = openssl_verify(scratch.path(), &prod_chain, &forged, Some(&host));
    assert!(
        ok,
        "without constraints the forged leaf is accepted (the issue):\n{text}"
    );

    // lint and posture name the break and the next step.
    let lint = run(&["lint", "--output", "json"], &lab_dir);
    assert_eq!(
        lint.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&lint.stderr)
    );
    let findings: Value = serde_json::from_slice(&lint.stdout).expect("lint JSON");
    let iso: Vec<&Value> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "environment-isolation")
        .collect();
    assert_eq!(iso.len(), 1, "{findings:#}");
    assert_eq!(iso[0]["env"], "test");
    assert!(
        iso[0]["message"]
            .as_str()
            .unwrap()
            .contains("no name constraints"),
        "{findings:#}"
    );
    assert!(
        String::from_utf8_lossy(&lint.stderr).contains("re-sign"),
        "{}",
        String::from_utf8_lossy(&lint.stderr)
    );
    let posture = run(
        &["posture", "--output", "json", "--fail-on", "revoked"],
        &lab_dir,
    );
    assert_eq!(
        posture.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&posture.stderr)
    );
    let report: Value = serde_json::from_slice(&posture.stdout).expect("posture JSON");
    assert!(
        report["isolation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "unconstrained"
                && f["env"] == "test"
                && f["accepted_by"] == json!(["prod"])),
        "{report:#}"
    );
}
