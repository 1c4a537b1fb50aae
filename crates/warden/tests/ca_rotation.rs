//! Issue 14 parts 1 and 2, end to end: an intermediate rotation with running agents (ADR 0029).
//!
//! A real lab (`warden lab up` with a spec: app `billing` with a server certificate, proxy
//! `edge` with a CA-chain output, every agent running). While a loop does TLS handshakes —
//! `billing`'s server presenting only its current leaf, a client trusting only `edge`'s current
//! delivered chain, files re-read at every handshake — the operator rotates the intermediate
//! with the CLI across the "two machines" (`begin`, the offline `ca sign-intermediate`,
//! `activate`, `retire`). The test asserts: no handshake fails during the whole rotation; every
//! leaf and identity certificate moves to the new issuer; an identity certificate from the old
//! issuer still logs in during the overlap; `retire` is refused while leaves chain to the old
//! issuer; after retirement the old issuer is in no cert-auth role, not in the listener's
//! client-CA bundle, not in the proxy's chain, and the old identity no longer logs in.

#![allow(clippy::print_stderr)] // agent logs on a failure and the handshake count go to the test log on purpose

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use warden_bao::{Client, ClientConfig, ClientIdentity};
use warden_lab::Lab;
use warden_testkit::LabGuard;
use warden_testkit::tls::{HandshakeLoop, handshake};

#[path = "common/ca_lab.rs"]
mod ca_lab;
use ca_lab::{
    HOST, WARDEN, first_info, ok, read, run, show_agent_logs, spec_with_window, status, wait_for,
    wait_until,
};

/// Logs in at cert auth as `role` presenting `chain`/`key`.
async fn cert_login(lab: &Lab, role: &str, chain: &str, key: &str) -> Result<(), String> {
    let address = lab.env("test").expect("env").address();
    let identity = ClientIdentity::from_pem(
        chain.as_bytes().to_vec(),
        zeroize::Zeroizing::new(key.as_bytes().to_vec()),
    )
    .expect("client identity");
    let mut cfg = ClientConfig::new(address.parse().expect("address"))
        .with_ca_file(lab.layout().env("test").ca_bundle())
        .expect("ca bundle")
        .with_client_identity(identity);
    cfg.retry.startup_timeout = Duration::from_secs(2);
    let client = Client::new(cfg).expect("client");
    client
        .login_cert("cert", Some(role))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// When `identity`'s agent wrote its delivery report (metadata or data, successful writes
/// only), from OpenBao's audit log past byte `from`.
fn report_writes(audit: &std::path::Path, from: u64, identity: &str) -> Vec<String> {
    let text = std::fs::read(audit).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(0).min(text.len());
    let paths = [
        format!("warden/metadata/delivered/{identity}"),
        format!("warden/data/delivered/{identity}"),
    ];
    String::from_utf8_lossy(&text[from..])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["type"] == "response"
                && e["request"]["operation"] == "update"
                && e.get("error").is_none_or(Value::is_null)
                && paths
                    .iter()
                    .any(|p| e["request"]["path"].as_str() == Some(p.as_str()))
        })
        .map(|e| e["time"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `warden ca rotate-intermediate activate --env test --cert CERT` with `spec` on the lab.
fn activate(
    cert: &std::path::Path,
    spec: &std::path::Path,
    lab_dir: &std::path::Path,
) -> std::process::Output {
    WARDEN
        .invoke(&[
            "ca",
            "rotate-intermediate",
            "activate",
            "--env",
            "test",
            "--cert",
        ])
        .arg(cert)
        .arg("--spec")
        .arg(spec)
        .arg("--lab")
        .arg(lab_dir)
        .output()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_intermediate_rotation_with_running_agents_never_fails_a_handshake() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let guard = LabGuard::new(WARDEN);
    let lab_dir = guard.dir();
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("warden.toml");
    std::fs::write(&spec, spec_with_window("40s")).unwrap();
    let up = WARDEN
        .invoke(&["lab", "up", "--env", "test", "--output", "json", "--dir"])
        .arg(&lab_dir)
        .arg("--spec")
        .arg(&spec)
        .output();
    ok(&up, "lab up");
    let lab = Lab::open(&lab_dir).expect("open the lab");
    let hosts = lab_dir.join("hosts/test");
    let billing = hosts.join("billing");
    let edge = hosts.join("edge");
    let chain_file = edge.join("out/ca/chain.pem");
    let tls = billing.join("out/tls");
    let idents: Vec<PathBuf> = [&billing, &edge]
        .iter()
        .map(|h| h.join("identity/client.crt"))
        .collect();
    wait_for("the first delivery", Duration::from_secs(90), || {
        first_info(&read(&chain_file)).is_some()
            && first_info(&read(&tls.join("cert.pem"))).is_some()
            && idents.iter().all(|p| first_info(&read(p)).is_some())
    });

    let old_int = first_info(&read(&chain_file)).expect("the old intermediate");
    let old_key = old_int.subject_key_id.clone().expect("its key id");
    let old_pem = warden_pki::first_certificate(&read(&chain_file))
        .unwrap()
        .to_owned();
    // billing's identity as it is now, kept to log in with during the overlap.
    let old_identity = (
        read(&billing.join("identity/client.crt")),
        read(&billing.join("identity/client.key")),
    );
    assert_eq!(
        first_info(&old_identity.0)
            .unwrap()
            .authority_key_id
            .as_deref(),
        Some(old_key.as_str())
    );

    // Status before: one intermediate, the default, with the live leaves (3: billing's server
    // and identity certificates, edge's identity) once the agents have reported.
    wait_for("the delivery reports", Duration::from_secs(60), || {
        let st = status(&spec, &lab_dir);
        st["environments"][0]["cas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["role"] == "intermediate" && c["live_leaves"] == 3)
    });

    // The handshake loop, for the whole rotation: billing's server presents its current leaf
    // alone, the client trusts only edge's current delivered chain.
    let looper = {
        let (chain_file, tls) = (chain_file.clone(), tls.clone());
        HandshakeLoop::start(move || {
            let leaf = read(&tls.join("cert.pem"));
            let leaf = warden_pki::first_certificate(&leaf).unwrap_or_default();
            handshake(&read(&chain_file), leaf, &read(&tls.join("key.pem")), HOST)
        })
    };

    // 1. online: begin → CSR. A dangling symlink at --csr-out was only refused by the write,
    // after the key and the record existed (the next begin then said "the rotation is begun"):
    // now it is refused first, and the begin below is the first.
    let csr = work.path().join("test.csr");
    std::os::unix::fs::symlink(work.path().join("elsewhere.csr"), &csr).unwrap();
    let out = WARDEN
        .invoke(&[
            "ca",
            "rotate-intermediate",
            "begin",
            "--env",
            "test",
            "--csr-out",
        ])
        .arg(&csr)
        .arg("--spec")
        .arg(&spec)
        .arg("--lab")
        .arg(&lab_dir)
        .output();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("already exists") && text.contains("hint:"),
        "{text}"
    );
    assert!(!work.path().join("elsewhere.csr").exists());
    std::fs::remove_file(&csr).unwrap();
    let out = WARDEN
        .invoke(&[
            "ca",
            "rotate-intermediate",
            "begin",
            "--env",
            "test",
            "--csr-out",
        ])
        .arg(&csr)
        .arg("--spec")
        .arg(&spec)
        .arg("--lab")
        .arg(&lab_dir)
        .output();
    ok(&out, "begin");
    // A second begin is refused while this one is under way.
    let again = WARDEN
        .invoke(&[
            "ca",
            "rotate-intermediate",
            "begin",
            "--env",
            "test",
            "--csr-out",
        ])
        .arg(work.path().join("other.csr"))
        .arg("--spec")
        .arg(&spec)
        .arg("--lab")
        .arg(&lab_dir)
        .output();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("the rotation is begun"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // 2. offline host: the root signs it, with the same constraints as the old intermediate.
    let signed = work.path().join("test-intermediate.pem");
    let mut args = vec!["ca", "sign-intermediate", "--env", "test", "--bundle"];
    for d in &old_int.permitted_dns {
        args.extend(["--permitted-dns", d.as_str()]);
    }
    let out = WARDEN
        .invoke(&args)
        .arg("--dir")
        .arg(lab.layout().ca_dir())
        .arg("--csr")
        .arg(&csr)
        .arg("--out")
        .arg(&signed)
        .arg("--passphrase-file")
        .arg(lab.layout().ca_passphrase_file())
        .output();
    ok(&out, "sign-intermediate");
    let new_key = first_info(&read(&signed))
        .unwrap()
        .subject_key_id
        .expect("new key id");
    assert_ne!(new_key, old_key);

    // Bad input is refused with a next step and changes nothing: not a certificate, and the
    // current intermediate itself (a certificate for another key than begin's).
    for (bad, says) in [
        (csr.clone(), "no PEM CERTIFICATE"),
        (chain_file.clone(), "not for the key"),
    ] {
        let out = activate(&bad, &spec, &lab_dir);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "activate with {}", bad.display());
        assert!(text.contains(says) && text.contains("hint:"), "{text}");
    }
    let st = status(&spec, &lab_dir);
    assert_eq!(
        st["environments"][0]["rotation"]["state"], "begun",
        "{st:#}"
    );
    let listed = lab
        .operator_client("test")
        .unwrap()
        .pki_read_issuers("pki_int")
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        2,
        "root and the old intermediate only: {listed:?}"
    );

    // A declared ceiling the live certificates cannot fit under (three of them within a 40 s
    // window all land in one minute) refuses activate before anything changes, and says how
    // long the window must be (ADR 0035).
    let tight = work.path().join("tight.toml");
    std::fs::write(
        &tight,
        spec_with_window("40s").replace(
            "reissue_window = \"40s\"",
            "reissue_window = \"40s\"\nreissue_rate = 1",
        ),
    )
    .unwrap();
    let out = activate(&signed, &tight, &lab_dir);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "activate over the rate: {text}");
    assert!(
        text.contains("reissue_rate = 1")
            && text.contains("busiest minute")
            && text.contains("lengthen [ca] reissue_window to at least")
            && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(
        status(&spec, &lab_dir)["environments"][0]["rotation"]["state"],
        "begun",
        "a refused activate imports nothing"
    );
    // The agents' own windows count (each reports its `[renewal] issuer_window`): a spec
    // window long enough for three certificates under 2 a minute (50 min) is still refused
    // while the agents spread over the 40 s they were configured with.
    let short = work.path().join("short.toml");
    std::fs::write(
        &short,
        spec_with_window("50m").replace(
            "reissue_window = \"50m\"",
            "reissue_window = \"50m\"\nreissue_rate = 2",
        ),
    )
    .unwrap();
    let out = activate(&signed, &short, &lab_dir);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "activate with short agent windows: {text}"
    );
    assert!(
        text.contains("issuer_window is shorter than the spec's")
            && text.contains("the spec's reissue_window is long enough")
            && text.contains("billing")
            && text.contains("nothing was changed"),
        "{text}"
    );
    let next = &status(&short, &lab_dir)["environments"][0]["next_rotation"];
    assert!(
        next["on_shorter_windows"].as_u64().unwrap() >= 2,
        "{next:#}"
    );
    // `ca status` says the same before anyone tries: the next rotation against the ceiling.
    let next = &status(&tight, &lab_dir)["environments"][0]["next_rotation"];
    assert_eq!(next["rate"], 1, "{next:#}");
    assert!(
        next["busiest_minute"].as_u64().unwrap() >= 2
            && next["min_window_secs"].as_u64().unwrap() > 40,
        "{next:#}"
    );
    assert!(
        status(&spec, &lab_dir)["environments"][0]
            .get("next_rotation")
            .is_none(),
        "no ceiling declared, no check shown"
    );

    // 3. online: activate (import, trust both, wait, default).
    let audit = lab.layout().env("test").audit_log();
    let audit_before = std::fs::metadata(&audit).map_or(0, |m| m.len());
    let out = activate(&signed, &spec, &lab_dir);
    ok(&out, "activate");

    // Both are trusted: the roles pin both, the listener's bundle holds both.
    let op = lab.operator_client("test").unwrap();
    let role = op.read("auth/cert/certs/billing").await.unwrap();
    let pinned = role.data.unwrap()["certificate"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(warden_pki::parse_pem_bundle(&pinned).unwrap().len(), 2);
    let client_ca = read(&lab.layout().env("test").client_ca());
    assert!(client_ca.contains(old_pem.trim()), "old in client-ca");

    // Retire is refused while leaves still chain to the old issuer.
    let early = run(
        &["ca", "rotate-intermediate", "retire", "--env", "test"],
        &spec,
        &lab_dir,
    );
    assert!(!early.status.success(), "retire before the leaves moved");
    let text = String::from_utf8_lossy(&early.stderr);
    assert!(
        text.contains("still chain to the old intermediate") && text.contains("hint:"),
        "{text}"
    );

    // Every leaf and identity certificate moves to the new issuer within the window.
    let moved = wait_until(Duration::from_secs(120), || {
        let leaf = first_info(&read(&tls.join("cert.pem")));
        leaf.and_then(|l| l.authority_key_id).as_deref() == Some(new_key.as_str())
            && idents.iter().all(|p| {
                first_info(&read(p))
                    .and_then(|l| l.authority_key_id)
                    .as_deref()
                    == Some(new_key.as_str())
            })
    });
    if !moved {
        show_agent_logs(&hosts, &["billing", "edge"]);
        panic!("not every certificate moved to the new issuer");
    }
    // The proxy's chain holds both intermediates.
    let both = read(&chain_file);
    assert!(both.contains(old_pem.trim()));
    // The old identity still logs in during the overlap.
    cert_login(&lab, "billing", &old_identity.0, &old_identity.1)
        .await
        .unwrap_or_else(|e| panic!("the old identity could not log in during the overlap: {e}"));
    // Revoked during the overlap, it cannot log in any more: `cert/crl` is now the new
    // default's list alone, so cert auth gets the old intermediate's list beside it.
    let old_serial = first_info(&old_identity.0).unwrap().serial;
    let out = run(
        &[
            "revoke",
            "cert",
            &old_serial,
            "--env",
            "test",
            "--reason",
            "superseded during the overlap",
            "--yes",
        ],
        &spec,
        &lab_dir,
    );
    ok(&out, "revoke the old identity certificate");
    let refused = cert_login(&lab, "billing", &old_identity.0, &old_identity.1).await;
    assert!(
        refused.is_err(),
        "a certificate of the old intermediate revoked during the overlap still logs in"
    );

    // Status: the old issuer has no live leaf any more once the reports caught up.
    wait_for(
        "the reports to show the move",
        Duration::from_secs(60),
        || {
            let st = status(&spec, &lab_dir);
            let cas = st["environments"][0]["cas"].as_array().unwrap().clone();
            cas.iter().any(|c| {
                c["key_id"] == new_key.as_str() && c["is_default"] == true && c["live_leaves"] == 3
            }) && cas
                .iter()
                .any(|c| c["key_id"] == old_key.as_str() && c["live_leaves"] == 0)
        },
    );

    // billing's leaf and identity certificate moved each at its own point of the window, but
    // its agent reported the move once, when both had moved: one write, not one per certificate.
    let writes = report_writes(&audit, audit_before, "billing");
    assert_eq!(
        writes.len(),
        1,
        "billing's delivery report writes during the move (at {writes:?})"
    );

    // 4. retire.
    let out = run(
        &["ca", "rotate-intermediate", "retire", "--env", "test"],
        &spec,
        &lab_dir,
    );
    ok(&out, "retire");

    // The old issuer is trusted nowhere.
    let op = lab.operator_client("test").unwrap();
    let role = op.read("auth/cert/certs/billing").await.unwrap();
    let pinned = role.data.unwrap()["certificate"]
        .as_str()
        .unwrap()
        .to_owned();
    let pinned = warden_pki::parse_pem_bundle(&pinned).unwrap();
    assert_eq!(pinned.len(), 1);
    assert_eq!(pinned[0].subject_key_id.as_deref(), Some(new_key.as_str()));
    assert!(!read(&lab.layout().env("test").client_ca()).contains(old_pem.trim()));
    // The old intermediate's CRL that the revocation during the overlap put in cert auth goes
    // with it: nothing chains to it any more, and one left per rotation would pile up forever.
    let crls = op.list("auth/cert/crls").await.unwrap();
    assert_eq!(crls, ["warden-pki"], "cert auth's CRLs after retire");
    wait_for(
        "the proxy's chain to drop the old issuer",
        Duration::from_secs(60),
        || {
            let c = read(&chain_file);
            !c.is_empty() && !c.contains(old_pem.trim())
        },
    );
    let e = cert_login(&lab, "billing", &old_identity.0, &old_identity.1)
        .await
        .expect_err("the old identity logged in after retirement");
    assert!(!e.is_empty());
    let st = status(&spec, &lab_dir);
    let ints: Vec<&Value> = st["environments"][0]["cas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == "intermediate")
        .collect();
    assert_eq!(ints.len(), 1, "{st:#}");
    assert_eq!(st["environments"][0]["rotation"]["state"], "retired");
    // Activate again, under the ceiling the live certificates exceed: the step is out of order,
    // and that is what it says (the rate is judged only for a rotation ready to activate).
    let again = activate(&signed, &tight, &lab_dir);
    let text = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "{text}");
    assert!(
        text.contains("the rotation is retired") && !text.contains("reissue_rate"),
        "{text}"
    );
    // Posture shows the same CA rows.
    let posture = run(
        &[
            "posture",
            "--env",
            "test",
            "--output",
            "json",
            "--fail-on",
            "revoked",
        ],
        &spec,
        &lab_dir,
    );
    let posture: Value = serde_json::from_slice(&posture.stdout).expect("posture JSON");
    let rows = posture["cas"][0]["cas"]
        .as_array()
        .expect("posture CA rows");
    assert!(rows.iter().any(|c| c["role"] == "root"), "{posture:#}");
    assert!(
        rows.iter()
            .any(|c| c["key_id"] == new_key.as_str() && c["live_leaves"] == 3),
        "{posture:#}"
    );

    // A few more handshakes after retirement, then the verdict.
    let after = looper.count();
    wait_for(
        "handshakes after retirement",
        Duration::from_secs(30),
        || looper.count() > after + 20,
    );
    let (total, failed) = looper.finish();
    eprintln!("handshakes: {total}, failed: {}", failed.len());
    assert!(total > 200, "only {total} handshakes");
    assert!(failed.is_empty(), "failed handshakes: {failed:#?}");
}
