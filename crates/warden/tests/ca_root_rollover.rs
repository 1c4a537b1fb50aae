//! Issue 14 part 3, end to end: a root rollover with running agents (ADR 0030).
//!
//! A real lab (`warden lab up` with a spec: app `billing` with a server certificate, proxy
//! `edge` with a CA-chain output, both agents running). While a loop does TLS handshakes —
//! billing's server presenting its current leaf, a client trusting only edge's current
//! delivered chain, once with every certificate of the chain as an anchor and once anchored at
//! the chain's roots alone (the server then presents the chain's intermediates) — the operator
//! rolls the root over with the CLI across the "two machines": offline `begin`, online `csr`,
//! offline `resign`, online `import` and `activate`, offline `promote`, online `finish
//! --listener-ca` (the listener CA re-signed by the new root installed on the lab's node).
//!
//! Asserted: no handshake fails during the whole rollover; a trust file holding only the old
//! root is listed by `ca status` and posture and holds `finish` back; bad input (steps out of
//! order, a re-signed intermediate for another key, one without the name constraints, the
//! current root's own bundle) is refused with a hint and changes neither the CA directory nor
//! the mount; afterwards every leaf chains to the new root, the old root is in no proxy chain
//! and no issuer of the mount, and the CA directory's root is the new one. After `finish
//! --listener-ca` the listener's chain ends in the new root (a connection anchored at the new
//! root alone succeeds, at the old one fails), the lab's trust files hold only the new root,
//! and the agents, started before the rollover, report that their connection follows (issue
//! 14: installing the listener CA); a listener CA that is not PEM, for another key, or the one
//! in use (signed by the old root) is refused with nothing changed, the mount included; a
//! finish after an interrupted install (files replaced, nodes not restarted) still restarts
//! the nodes before the trust files lose the old root.

#![allow(clippy::print_stderr)] // the handshake count and agent logs on a failure go to the test log

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use warden_lab::Lab;
use warden_testkit::LabGuard;
use warden_testkit::tls::{HandshakeError, HandshakeLoop, handshake};

#[path = "common/ca_lab.rs"]
mod ca_lab;
use ca_lab::{
    HOST, WARDEN, first_info, ok, read, run, show_agent_logs, spec_with_window, status, wait_for,
    wait_until,
};

/// Every file of a directory with its SHA-256: "unchanged" made checkable.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                warden_pki::sha256_hex(&std::fs::read(e.path()).unwrap_or_default()),
            )
        })
        .collect()
}

/// The certificates of a PEM text, split into (self-signed roots, the others), each PEM.
fn roots_and_others(pem: &str) -> (String, String) {
    let (mut roots, mut others) = (String::new(), String::new());
    for b in warden_pki::pem_blocks(pem) {
        let self_signed = first_info(b).is_some_and(|c| c.self_signed);
        let to = if self_signed { &mut roots } else { &mut others };
        to.push_str(b.trim_end());
        to.push('\n');
    }
    (roots, others)
}

/// One round of the loop: both handshakes against edge's chain as it is now.
fn round(chain_file: &Path, tls: &Path) -> Result<(), HandshakeError> {
    let chain = read(chain_file);
    let leaf_text = read(&tls.join("cert.pem"));
    let key = read(&tls.join("key.pem"));
    let leaf = warden_pki::first_certificate(&leaf_text).unwrap_or_default();
    // Every certificate of the proxy's chain trusted (how the rotation test checks).
    handshake(&chain, leaf, &key, HOST)?;
    // Anchored at the chain's roots only; the server presents the chain's intermediates, so
    // an intermediate delivered without the root it chains to would fail here.
    let (roots, ints) = roots_and_others(&chain);
    if roots.is_empty() {
        return Err(HandshakeError::Failed(
            "edge's chain holds no root".to_owned(),
        ));
    }
    handshake(&roots, &format!("{}\n{ints}", leaf.trim_end()), &key, HOST)
}

fn refused(out: &std::process::Output, says: &str, what: &str) {
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} was not refused");
    assert!(
        text.contains(says) && text.contains("hint:"),
        "{what}: expected {says:?} and a hint in:\n{text}"
    );
}

/// `warden ca rollover-root STEP` with the CA directory's passphrase (offline steps).
fn offline(lab: &Lab, args: &[&str]) -> std::process::Output {
    let mut all = vec!["ca", "rollover-root"];
    all.extend(args);
    WARDEN
        .invoke(&all)
        .arg("--dir")
        .arg(lab.layout().ca_dir())
        .arg("--passphrase-file")
        .arg(lab.layout().ca_passphrase_file())
        .output()
}

fn online(args: &[&str], spec: &Path, lab_dir: &Path) -> std::process::Output {
    let mut all = vec!["ca", "rollover-root"];
    all.extend(args);
    all.extend(["--env", "test"]);
    run(&all, spec, lab_dir)
}

/// `warden ca rollover-root resign` for test's intermediate (the `vault-pki` profile unless
/// `profile` names another): `csr` re-signed by the next root, `current` the intermediate it
/// replaces, the bundle written to `out`.
fn resign(
    lab: &Lab,
    profile: Option<&str>,
    csr: &Path,
    current: &Path,
    out: &Path,
) -> std::process::Output {
    let mut args = vec!["resign", "--env", "test"];
    if let Some(profile) = profile {
        args.extend(["--profile", profile]);
    }
    args.extend([
        "--csr",
        csr.to_str().unwrap(),
        "--current",
        current.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    offline(lab, &args)
}

/// `warden ca rollover-root import --cert BUNDLE` for test.
fn import(bundle: &Path, spec: &Path, lab_dir: &Path) -> std::process::Output {
    online(
        &["import", "--cert", bundle.to_str().unwrap()],
        spec,
        lab_dir,
    )
}

/// test's `root_rollover` in `warden ca status` (null when there is none).
fn rollover(spec: &Path, lab_dir: &Path) -> Value {
    status(spec, lab_dir)["environments"][0]["root_rollover"].clone()
}

async fn issuer_count(lab: &Lab) -> usize {
    lab.operator_client("test")
        .unwrap()
        .pki_read_issuers("pki_int")
        .await
        .unwrap()
        .len()
}

/// Signs `csr` as a CA with the next root's key by hand (openssl), with `extensions` (an
/// openssl extension file's lines): what a careless operator could produce outside Warden.
/// `None` when openssl is not installed.
fn forge(lab: &Lab, csr: &Path, extensions: &str, work: &Path, name: &str) -> Option<String> {
    let ca = lab.layout().ca_dir();
    let ext = work.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        format!(
            "basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n{extensions}"
        ),
    )
    .unwrap();
    let out = work.join(format!("{name}.pem"));
    let status = std::process::Command::new("openssl")
        .args(["x509", "-req", "-days", "30", "-in"])
        .arg(csr)
        .arg("-CA")
        .arg(ca.join(warden_pki::NEXT_ROOT_CERT))
        .arg("-CAkey")
        .arg(ca.join(warden_pki::NEXT_ROOT_KEY))
        .arg("-passin")
        .arg(format!(
            "file:{}",
            lab.layout().ca_passphrase_file().display()
        ))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&out)
        .output();
    match status {
        Ok(o) if o.status.success() => Some(read(&out)),
        Ok(o) => panic!("openssl: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{e}"),
    }
}

/// [`forge`] *without* name constraints, with the current intermediate's key identifier, so
/// only the constraints tell them apart.
fn forge_unconstrained(lab: &Lab, csr: &Path, key_id: &str, work: &Path) -> Option<String> {
    let ski: Vec<String> = (0..key_id.len() / 2)
        .map(|i| key_id[2 * i..2 * i + 2].to_uppercase())
        .collect();
    forge(
        lab,
        csr,
        &format!("subjectKeyIdentifier={}\n", ski.join(":")),
        work,
        "forged",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_root_rollover_with_running_agents_never_fails_a_handshake() {
    let guard = LabGuard::new(WARDEN);
    let lab_dir = guard.dir();
    let work = tempfile::Builder::new()
        .prefix("rollover-test")
        .tempdir()
        .unwrap();
    let w = work.path();
    let spec = w.join("warden.toml");
    std::fs::write(&spec, spec_with_window("20s")).unwrap();
    let up = WARDEN
        .invoke(&["lab", "up", "--env", "test", "--output", "json", "--dir"])
        .arg(&lab_dir)
        .arg("--spec")
        .arg(&spec)
        .output();
    ok(&up, "lab up");
    let lab = Lab::open(&lab_dir).expect("open the lab");
    let ca_dir = lab.layout().ca_dir();
    let hosts = lab_dir.join("hosts/test");
    let (billing, edge) = (hosts.join("billing"), hosts.join("edge"));
    let chain_file = edge.join("out/ca/chain.pem");
    let tls = billing.join("out/tls");
    let idents: Vec<PathBuf> = [&billing, &edge]
        .iter()
        .map(|h| h.join("identity/client.crt"))
        .collect();
    wait_for("the first delivery", Duration::from_secs(90), || {
        first_info(&read(&chain_file)).is_some()
            && first_info(&read(&tls.join("cert.pem"))).is_some()
    });
    let old_root = read(&ca_dir.join(warden_pki::ROOT_CERT));
    let old_root_sha = first_info(&old_root).unwrap().sha256;
    let old_int = first_info(&read(&chain_file)).expect("the old intermediate");
    assert!(
        !old_int.permitted_dns.is_empty(),
        "the lab's intermediate is constrained"
    );

    let looper = {
        let (chain_file, tls) = (chain_file.clone(), tls.clone());
        HandshakeLoop::start(move || round(&chain_file, &tls))
    };

    // Out of order, before anything: re-sign, promote, import of the current chain (its root
    // is the current root), activate, finish. Nothing changes.
    let ca_before = snapshot(&ca_dir);
    let csr = w.join("test.csr");
    std::fs::write(&csr, "x").unwrap();
    refused(
        &resign(&lab, None, &csr, &csr, &w.join("early.pem")),
        "the root rollover is none",
        "resign before begin",
    );
    refused(
        &offline(&lab, &["promote"]),
        "the root rollover is none",
        "promote before begin",
    );
    assert_eq!(snapshot(&ca_dir), ca_before);
    let issuers_before = issuer_count(&lab).await;
    let current_chain = w.join("current.pem");
    std::fs::write(&current_chain, read(&chain_file)).unwrap();
    refused(
        &import(&current_chain, &spec, &lab_dir),
        "its root is the current root",
        "import of the current chain",
    );
    refused(
        &online(&["activate"], &spec, &lab_dir),
        "the root rollover is none, not imported",
        "activate before import",
    );
    refused(
        &online(&["finish"], &spec, &lab_dir),
        "the root rollover is none, not active",
        "finish before activate",
    );
    assert_eq!(issuer_count(&lab).await, issuers_before);

    // 1. offline: begin (the next root, cross certificates, the two-root trust bundle).
    let trust = w.join("trust.pem");
    let out = offline(
        &lab,
        &[
            "begin",
            "--common-name",
            "Warden Lab Root 2",
            "--trust-out",
            trust.to_str().unwrap(),
        ],
    );
    ok(&out, "begin");
    let new_root = read(&ca_dir.join(warden_pki::NEXT_ROOT_CERT));
    let new_root_sha = first_info(&new_root).unwrap().sha256;
    assert_eq!(
        warden_pki::parse_pem_bundle(&read(&trust)).unwrap().len(),
        2,
        "the trust bundle holds both roots"
    );
    let ca_begun = snapshot(&ca_dir);
    refused(
        &offline(&lab, &["begin", "--common-name", "Warden Lab Root 3"]),
        "the root rollover is begun",
        "a second begin",
    );
    assert_eq!(snapshot(&ca_dir), ca_begun);

    // 2. online: the CSR for the intermediate's existing key; 3. offline: re-sign it.
    std::fs::remove_file(&csr).unwrap();
    ok(
        &online(
            &["csr", "--csr-out", csr.to_str().unwrap()],
            &spec,
            &lab_dir,
        ),
        "csr",
    );
    let current = w.join("test.csr.current.pem");
    assert_eq!(
        first_info(&read(&current)).unwrap().sha256,
        old_int.sha256,
        "csr wrote the current intermediate beside the CSR"
    );
    // A CSR for another key is refused offline when the current intermediate is given.
    let stranger = warden_pki::generate_key(warden_pki::KeyAlgorithm::EcdsaP256).unwrap();
    let other_csr = w.join("other.csr");
    std::fs::write(
        &other_csr,
        warden_pki::make_csr(&stranger, "Warden test PKI intermediate", &[], &[]).unwrap(),
    )
    .unwrap();
    let ca_mid = snapshot(&ca_dir);
    refused(
        &resign(&lab, None, &other_csr, &current, &w.join("never.pem")),
        "it is for another key",
        "resign of another key with --current",
    );
    assert_eq!(snapshot(&ca_dir), ca_mid);
    let resigned = w.join("test-resigned.pem");
    ok(&resign(&lab, None, &csr, &current, &resigned), "resign");
    let re_int = first_info(&read(&resigned)).unwrap();
    assert_eq!(re_int.subject_key_id, old_int.subject_key_id, "same key");
    assert_eq!(
        re_int.permitted_dns, old_int.permitted_dns,
        "same constraints"
    );
    // ca verify accepts the intermediate during the rollover (the next root is one of the
    // CA's roots) and judges its isolation from the ledger.
    let int_only = w.join("test-resigned-int.pem");
    std::fs::write(
        &int_only,
        warden_pki::first_certificate(&read(&resigned)).unwrap(),
    )
    .unwrap();
    let out = WARDEN
        .invoke(&["ca", "verify", "--output", "json", "--dir"])
        .arg(&ca_dir)
        .arg(&int_only)
        .output();
    ok(&out, "ca verify of the re-signed bundle");

    // Bad bundles are refused at import with the mount unchanged: another key (Warden's
    // resign refuses it, so it is signed by hand), no constraints.
    let resigned_text = read(&resigned);
    let (_, tail) = resigned_text
        .split_once("-----END CERTIFICATE-----")
        .unwrap();
    let tail = tail.trim_start().to_owned();
    // A bundle file `name`: `int` in place of the re-signed intermediate, before the rest.
    let with_tail = |name: &str, int: &str| {
        let path = w.join(name);
        std::fs::write(&path, format!("{}\n{tail}", int.trim_end())).unwrap();
        path
    };
    let constraints: Vec<String> = old_int
        .permitted_dns
        .iter()
        .map(|d| format!("permitted;DNS:{d}"))
        .collect();
    if let Some(stranger) = forge(
        &lab,
        &other_csr,
        &format!("nameConstraints=critical,{}\n", constraints.join(",")),
        w,
        "stranger",
    ) {
        let other = with_tail("other-resigned.pem", &stranger);
        refused(
            &import(&other, &spec, &lab_dir),
            "is not the current intermediate",
            "import of another key",
        );
    }
    let key_id = old_int
        .subject_key_id
        .clone()
        .expect("the intermediate's key id");
    if let Some(forged) = forge_unconstrained(&lab, &csr, &key_id, w) {
        let bad = with_tail("unconstrained.pem", &forged);
        refused(
            &import(&bad, &spec, &lab_dir),
            "it has no name constraints",
            "import of an unconstrained intermediate",
        );
    } else {
        eprintln!("openssl not installed; the unconstrained import is not tried");
    }
    assert_eq!(issuer_count(&lab).await, issuers_before);
    assert_eq!(rollover(&spec, &lab_dir), Value::Null);

    // 4. online: import (trust both everywhere; the lab's trust files get both roots).
    ok(&import(&resigned, &spec, &lab_dir), "import");
    assert_eq!(issuer_count(&lab).await, issuers_before + 2);
    refused(
        &import(&resigned, &spec, &lab_dir),
        "the root rollover is imported",
        "a second import",
    );
    // A flaky network lost the record after the import: importing again finds the issuers
    // already in the mount and records them, adding nothing.
    lab.operator_client("test")
        .unwrap()
        .delete("warden/data/ca/root-rollover")
        .await
        .unwrap();
    assert_eq!(rollover(&spec, &lab_dir), Value::Null);
    ok(
        &import(&resigned, &spec, &lab_dir),
        "import again after a lost record",
    );
    assert_eq!(issuer_count(&lab).await, issuers_before + 2);
    for t in [&billing, &edge].map(|h| h.join("trust/ca.pem")) {
        assert!(
            read(&t).contains(new_root.trim()),
            "{} holds the new root",
            t.display()
        );
    }
    // The proxy delivers both chains, each with its root.
    wait_for(
        "edge's chain to hold both roots",
        Duration::from_secs(60),
        || {
            let c = read(&chain_file);
            c.contains(new_root.trim()) && c.contains(old_root.trim())
        },
    );

    // 5. online: activate. Not while a host holds only the old root: once the re-signed
    // intermediate is the default, new certificates chain to the new root, which that agent
    // cannot verify.
    let listed = |st: &Value| -> (Vec<String>, Vec<String>) {
        let t = &st["trust_files"];
        let names = |k: &str| -> Vec<String> {
            t[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        (names("old_root_only"), names("holding_new"))
    };
    let trust_text = read(&billing.join("trust/ca.pem"));
    std::fs::write(billing.join("trust/ca.pem"), &old_root).unwrap();
    wait_for(
        "billing listed as holding only the old root before activate",
        Duration::from_secs(60),
        || listed(&rollover(&spec, &lab_dir)).0 == ["billing"],
    );
    refused(
        &online(&["activate"], &spec, &lab_dir),
        "holding only the old root (billing)",
        "activate while a trust file is behind",
    );
    assert_eq!(rollover(&spec, &lab_dir)["record"]["state"], "imported");
    std::fs::write(billing.join("trust/ca.pem"), &trust_text).unwrap();
    wait_for(
        "billing's trust file to hold the new root again",
        Duration::from_secs(60),
        || listed(&rollover(&spec, &lab_dir)).0.is_empty(),
    );
    // Outside a lab (the spec's address, the operator's certificate), activate stops before
    // the default changes until --listeners-updated. With `-o json` it printed nothing on
    // stdout, so a script saw success and no document; it reports the record, still imported.
    let addr = lab.operator_client("test").unwrap().address().to_string();
    let env_layout = lab.layout().env("test");
    let outside = w.join("outside.toml");
    std::fs::write(
        &outside,
        spec_with_window("20s").replacen(
            "domain = \"test.warden.internal\"\n",
            &format!(
                "domain = \"test.warden.internal\"\naddress = \"{addr}\"\nca_cert = \"{}\"\n",
                env_layout.ca_bundle().display()
            ),
            1,
        ),
    )
    .unwrap();
    let out = WARDEN
        .invoke(&[
            "ca",
            "rollover-root",
            "activate",
            "--env",
            "test",
            "--output",
            "json",
            "--spec",
        ])
        .arg(&outside)
        .env("VAULT_CLIENT_CERT", env_layout.operator_cert())
        .env("VAULT_CLIENT_KEY", env_layout.operator_key())
        .output();
    ok(&out, "activate outside a lab, without --listeners-updated");
    let reported: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "activate -o json printed no JSON ({e}): stdout {:?}, stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(reported["state"], "imported", "{reported:#}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--listeners-updated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rollover(&spec, &lab_dir)["record"]["state"], "imported");
    ok(&online(&["activate"], &spec, &lab_dir), "activate");
    assert_eq!(rollover(&spec, &lab_dir)["record"]["state"], "active");

    // A host the operator's tooling missed: billing's trust file holds only the old root.
    std::fs::write(billing.join("trust/ca.pem"), &old_root).unwrap();
    wait_for(
        "billing listed as holding only the old root",
        Duration::from_secs(60),
        || {
            let (old, new) = listed(&rollover(&spec, &lab_dir));
            old == ["billing"] && new == ["edge"]
        },
    );
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
    assert_eq!(
        posture["cas"][0]["root_rollover"]["trust_files"]["old_root_only"],
        serde_json::json!(["billing"]),
        "{posture:#}"
    );
    let text = run(&["ca", "status", "--env", "test"], &spec, &lab_dir);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("ONLY THE OLD ROOT: billing"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    // finish is held back by billing's trust file, and changes nothing.
    refused(
        &online(&["finish"], &spec, &lab_dir),
        "holding only the old root (billing)",
        "finish while a trust file is behind",
    );
    assert_eq!(issuer_count(&lab).await, issuers_before + 2);
    std::fs::write(billing.join("trust/ca.pem"), read(&trust)).unwrap();
    wait_for(
        "every trust file to hold the new root",
        Duration::from_secs(60),
        || {
            let (old, new) = listed(&rollover(&spec, &lab_dir));
            old.is_empty() && new == ["billing", "edge"]
        },
    );

    // 6. offline: promote. Not before every intermediate the old root signed for test has a
    // re-signed counterpart: the lab's listener CA is one (profile listener-ca), and once the
    // next root is promoted `resign` is closed.
    let ca_mid = snapshot(&ca_dir);
    refused(
        &offline(&lab, &["promote"]),
        "has not re-signed test listener-ca",
        "promote before the listener CA is re-signed",
    );
    assert_eq!(snapshot(&ca_dir), ca_mid);
    let env_layout = lab.layout().env("test");
    let listener_key = warden_pki::GeneratedKey::from_pem(&read(&env_layout.listener_ca_key()))
        .expect("the listener CA's key");
    let listener_cert = env_layout.listener_ca_cert();
    let listener_cn = warden_pki::common_name(&read(&listener_cert)).expect("its common name");
    let listener_csr = w.join("listener.csr");
    std::fs::write(
        &listener_csr,
        warden_pki::make_csr(&listener_key, &listener_cn, &[], &[]).unwrap(),
    )
    .unwrap();
    let listener_resigned = w.join("listener-resigned.pem");
    ok(
        &resign(
            &lab,
            Some("listener-ca"),
            &listener_csr,
            &listener_cert,
            &listener_resigned,
        ),
        "resign of the listener CA",
    );
    assert_eq!(
        first_info(&read(&listener_resigned))
            .unwrap()
            .subject_key_id,
        first_info(&read(&listener_cert)).unwrap().subject_key_id,
        "the listener CA keeps its key"
    );
    ok(&offline(&lab, &["promote"]), "promote");
    assert_eq!(
        first_info(&read(&ca_dir.join(warden_pki::ROOT_CERT)))
            .unwrap()
            .sha256,
        new_root_sha
    );
    // The default issuer changed back by hand: finish must not delete it.
    let op = lab.operator_client("test").unwrap();
    let new_default = op.pki_read_issuer("pki_int", "default").await.unwrap();
    let old_default = op
        .pki_issuer_certificates("pki_int")
        .await
        .unwrap()
        .into_iter()
        .find(|i| {
            i.id != new_default.issuer_id
                && first_info(&i.certificate).is_some_and(|c| !c.self_signed)
        })
        .unwrap();
    op.pki_set_default_issuer("pki_int", &old_default.id)
        .await
        .unwrap();
    refused(
        &online(&["finish"], &spec, &lab_dir),
        "not the re-signed intermediate",
        "finish while the old intermediate is the default again",
    );
    assert_eq!(issuer_count(&lab).await, issuers_before + 2);
    op.pki_set_default_issuer("pki_int", &new_default.issuer_id)
        .await
        .unwrap();
    // finish --listener-ca checks the file before anything changes (the mount, the listener's
    // files): not PEM, and a CA for another key (the PKI intermediate re-signed). The same
    // checks through `warden server tls --install-listener-ca` on the node's TLS directory.
    let tls_dir = env_layout.tls_dir();
    let tls_before = snapshot(&tls_dir);
    let garbage = w.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let finish_with = |file: &Path| {
        online(
            &["finish", "--listener-ca", file.to_str().unwrap()],
            &spec,
            &lab_dir,
        )
    };
    refused(
        &finish_with(&garbage),
        "is not a PEM certificate",
        "finish with a listener CA that is not PEM",
    );
    refused(
        &finish_with(&resigned),
        "certifies another key",
        "finish with the PKI intermediate as the listener CA",
    );
    let install = |file: &Path| {
        WARDEN
            .invoke(&["server", "tls", "--install-listener-ca"])
            .arg(file)
            .arg("--tls-dir")
            .arg(&tls_dir)
            .output()
    };
    refused(
        &install(&garbage),
        "is not a PEM certificate",
        "server tls --install-listener-ca of garbage",
    );
    refused(
        &install(&resigned),
        "certifies another key",
        "server tls --install-listener-ca of another key",
    );
    assert_eq!(snapshot(&tls_dir), tls_before);
    assert_eq!(issuer_count(&lab).await, issuers_before + 2);
    assert_eq!(rollover(&spec, &lab_dir)["record"]["state"], "active");
    // The agents' connections followed their trust files to both roots (started before the
    // rollover, they were never restarted): none is listed as trusting only the old root.
    assert_eq!(
        rollover(&spec, &lab_dir)["trust_files"]["connection_old_root_only"],
        serde_json::json!([])
    );

    // The listener CA in use (the old root signed it; same key, so the TLS directory's checks
    // pass) is refused before the mount's step: the old root stays in the mount.
    let in_use = w.join("listener-in-use.pem");
    std::fs::copy(&listener_cert, &in_use).unwrap();
    refused(
        &finish_with(&in_use),
        "is not signed by the rollover's new root",
        "finish with the listener CA the old root signed",
    );
    assert_eq!(issuer_count(&lab).await, issuers_before + 2);
    assert_eq!(rollover(&spec, &lab_dir)["record"]["state"], "active");
    assert_eq!(snapshot(&tls_dir), tls_before);

    // 7. online: finish, and in the lab the listener CA re-signed by the new root is installed
    // (the nodes restart) and the trust files then hold only the new root. First an
    // interrupted finish: the mount's step done (finish without --listener-ca), then the
    // node's files replaced by the install (`server tls`, the nodes not restarted), so the
    // resumed finish has no file left to replace — it must still restart the nodes before any
    // trust file loses the old root.
    ok(
        &online(&["finish"], &spec, &lab_dir),
        "finish (the mount's step)",
    );
    let pre = install(&listener_resigned);
    assert!(
        pre.status.success(),
        "{}",
        String::from_utf8_lossy(&pre.stderr)
    );
    let out = finish_with(&listener_resigned);
    ok(&out, "finish --listener-ca");
    assert_eq!(issuer_count(&lab).await, issuers_before);
    // Run again (an interrupted finish): the mount's step is done, the listener CA is in place.
    ok(
        &finish_with(&listener_resigned),
        "finish --listener-ca again",
    );
    assert_eq!(rollover(&spec, &lab_dir)["record"]["state"], "finished");
    // The lab operator's role is pinned on the re-signed listener CA (the old certificate's
    // expiry would end the operator's logins), and a fresh login works with it.
    let op = lab.operator_client("test").unwrap();
    let role = op.read("auth/warden-operators/certs/lab").await.unwrap();
    let pinned = role.data.unwrap()["certificate"]
        .as_str()
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        first_info(&pinned).unwrap().sha256,
        first_info(&read(&listener_resigned)).unwrap().sha256,
        "the lab operator's role pins the re-signed listener CA"
    );
    lab.operator_client("test")
        .unwrap()
        .read("sys/policies/acl/warden-operator")
        .await
        .expect("the lab operator logs in against the re-pinned role");

    // (a) The listener serves the chain to the new root: a connection anchored at the new root
    // alone succeeds, one anchored at the old root alone fails.
    let served = read(&env_layout.server_cert());
    assert!(
        served.contains(
            warden_pki::first_certificate(&read(&listener_resigned))
                .unwrap()
                .trim()
        ),
        "server.crt carries the re-signed listener CA"
    );
    let address = lab.env("test").unwrap().address();
    let anchored = |root: &str| {
        warden_bao::Client::new(
            warden_bao::ClientConfig::from_address(&address)
                .unwrap()
                .with_ca_pem(root.as_bytes().to_vec())
                .with_client_cert_files(env_layout.operator_cert(), env_layout.operator_key())
                .unwrap()
                .with_retry(warden_bao::RetryPolicy::no_retries()),
        )
        .unwrap()
    };
    anchored(&new_root)
        .health()
        .await
        .expect("a connection anchored at the new root alone");
    match anchored(&old_root).health().await {
        Err(warden_bao::Error::Tls { .. }) => {}
        other => panic!("a connection anchored at the old root alone: {other:?}"),
    }
    // The lab's trust files hold only the new root.
    for t in [&billing, &edge]
        .map(|h| h.join("trust/ca.pem"))
        .into_iter()
        .chain([env_layout.ca_bundle()])
    {
        let (roots, _) = roots_and_others(&read(&t));
        assert_eq!(
            roots.trim(),
            new_root.trim(),
            "{} holds only the new root",
            t.display()
        );
    }
    // (b) The running agents follow: each reports (a request over a connection anchored at
    // what its trust file holds now) that its trust file and its connection trust only the
    // new root.
    let op = lab.operator_client("test").unwrap();
    let only_new = serde_json::json!([new_root_sha]);
    for name in ["billing", "edge"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let report = warden_testkit::delivery_report(&op, name).await;
            if report["trust_roots"] == only_new && report["tls_roots"] == only_new {
                break;
            }
            if std::time::Instant::now() > deadline {
                show_agent_logs(&hosts, &["billing", "edge"]);
                panic!("{name} did not report the new root alone: {report:#}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // The old root is in no issuer of the mount and leaves the proxy's chain.
    let op = lab.operator_client("test").unwrap();
    for i in op.pki_issuer_certificates("pki_int").await.unwrap() {
        let info = first_info(&i.certificate).unwrap();
        assert_ne!(
            info.sha256, old_root_sha,
            "the old root is still in the mount"
        );
        assert_ne!(
            info.issuer, old_int.issuer,
            "an old-root-signed issuer is still in the mount"
        );
    }
    let dropped = wait_until(Duration::from_secs(60), || {
        let c = read(&chain_file);
        !c.is_empty() && !c.contains(old_root.trim()) && c.contains(new_root.trim())
    });
    if !dropped {
        show_agent_logs(&hosts, &["billing", "edge"]);
        panic!(
            "edge's chain still holds the old root:\n{}",
            read(&chain_file)
        );
    }
    // Every leaf chains to the new root alone, through the intermediate edge delivers.
    let chain = read(&chain_file);
    let (_, ints) = roots_and_others(&chain);
    for leaf in idents.iter().chain([&tls.join("cert.pem")]) {
        let leaf = read(leaf);
        let leaf = warden_pki::first_certificate(&leaf).unwrap();
        // The leaf and edge's intermediates, verified with `root` as the only anchor.
        let under = |root: &str| {
            warden_pki::verify_chain(
                &format!("{}\n{ints}", leaf.trim_end()),
                Some(root),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap()
        };
        let report = under(&new_root);
        assert!(
            report.valid,
            "a leaf does not chain to the new root: {:?}",
            report.problems
        );
        let old = under(&old_root);
        assert!(!old.valid, "the old root still verifies edge's chain");
    }
    assert_eq!(rollover(&spec, &lab_dir)["record"]["state"], "finished");

    // A few more handshakes after the rollover, then the verdict.
    let after = looper.count();
    wait_for(
        "handshakes after the rollover",
        Duration::from_secs(30),
        || looper.count() > after + 20,
    );
    let (total, failed) = looper.finish();
    eprintln!("handshakes: {total}, failed: {}", failed.len());
    assert!(total > 100, "only {total} handshakes");
    assert!(failed.is_empty(), "failed handshakes: {failed:#?}");
}
