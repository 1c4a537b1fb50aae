//! End-to-end: `warden revoke` against a real lab, with identities enrolled and their agents
//! run. Revoking `billing` puts its identity certificate on the CRL the proxy `edge`'s agent
//! delivers (and OpenBao serves), kills the
//! token it holds, and refuses its next login with its real certificate, while `ledger` keeps
//! working. An unknown identity, a malformed serial and a serial OpenBao never stored are each
//! refused with a clear error and nothing changed.

use std::path::Path;

use serde_json::Value;
use warden_bao::{Client, ClientIdentity};
use warden_enroll::IdentityLayout;
use warden_testkit::cli::{Cli, text};
use warden_testkit::identity::{EnvAccess, approle_credentials, login_approle, login_cert};
use warden_testkit::{SpecLab, agent_once, agent_once_and_read};
use x509_parser::prelude::FromDer;

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const SPEC: &str = r#"version = 1

[environments.test]
domain = "test.warden.internal"

[apps.billing]
environments = ["test"]

[apps.ledger]
environments = ["test"]

[proxies.edge]
environments = ["test"]

[containers.worker]
environments = ["test"]

# The host that starts the worker container holds its transport certificate (ADR 0010).
[transport.worker-host]
environments = ["test"]
carries = ["worker"]

[purposes.bootstrap]
description = "container secret-ids"
owner = "platform"
tier = "ephemeral"
delivery = "reveal_once"
rotation = { interval = "1h", grace = "15m" }
evidence = "EV-BOOTSTRAP"
covers = ["*/secret-id"]

[purposes.identity]
description = "identities' mTLS certificates"
owner = "platform"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "20d", grace = "5d", max_age = "30d" }
evidence = "EV-IDENTITY"
covers = ["*/identity-cert", "*/certificate"]
"#;

/// A client presenting `name`'s enrolled identity certificate, logged in by cert auth.
async fn logged_in(access: &EnvAccess, root: &Path, name: &str) -> Result<Client, String> {
    let layout = IdentityLayout::under_root(root, "test", name);
    let id = ClientIdentity::from_files(&layout.client_cert(), &layout.client_key())
        .map_err(|e| format!("identity files: {e}"))?;
    let client = access.client_with(id);
    login_cert(&client, name)
        .await
        .map_err(|e| format!("login: {e}"))?;
    Ok(client)
}

/// The serials (lowercase hex, no separators) on the CRL OpenBao serves for `pki_int`.
async fn crl_serials(op: &Client) -> Vec<String> {
    let crl = op.read("pki_int/cert/crl").await.expect("read the CRL");
    let pem = crl.data.expect("data")["certificate"]
        .as_str()
        .expect("CRL PEM")
        .to_owned();
    serials_of_crl(&pem)
}

/// The serials (lowercase hex, no separators) on the CRL `edge`'s agent delivered, after
/// running it once more.
fn delivered_crl_serials(root: &Path) -> Vec<String> {
    serials_of_crl(&agent_once_and_read(
        &WARDEN,
        root,
        "edge",
        "out/ca/crl.pem",
    ))
}

fn serials_of_crl(pem: &str) -> Vec<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("CRL PEM");
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&pem.contents)
        .expect("CRL DER");
    crl.iter_revoked_certificates()
        .map(|r| hex::encode(r.user_certificate.to_bytes_be()))
        .collect()
}

async fn revocation_records(op: &Client) -> Vec<String> {
    op.list("warden/metadata/revocations")
        .await
        .expect("list revocations")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_identity_kills_its_certificate_token_and_login_and_nothing_else() {
    let t = SpecLab::start(WARDEN, SPEC).await;
    let lab = t.lab();
    let run = |extra: &[&str]| t.run(extra);
    t.apply();

    // Every identity enrolled, its agent run once (each reports what it holds).
    let root = tempfile::tempdir().expect("identity root");
    for name in ["billing", "ledger", "edge"] {
        t.enroll(root.path(), name);
        let out = agent_once(&WARDEN, root.path(), name);
        assert!(out.status.success(), "agent {name}: {}", text(&out.stderr));
    }
    let op = lab.client("test");
    let report = warden_testkit::delivery_report(&op, "billing").await;
    let identity_serial = report["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["credential"] == "billing/identity-cert")
        .and_then(|o| o["serial"].as_str())
        .unwrap_or_else(|| panic!("identity serial in the report: {report:#}"))
        .to_owned();
    // The integer's hex, as the CRL lists it: a reported serial keeps DER's 00 pad.
    let bare = |s: &str| {
        let mut h = s.replace([':', '-'], "").to_ascii_lowercase();
        while h.len() > 2 && h.starts_with("00") {
            h.drain(..2);
        }
        h
    };

    let access = EnvAccess::of(lab, "test");
    let billing = logged_in(&access, root.path(), "billing")
        .await
        .expect("billing logs in before");
    let ledger = logged_in(&access, root.path(), "ledger")
        .await
        .expect("ledger logs in before");
    billing
        .token_lookup_self()
        .await
        .expect("billing's token works");

    // Refusals: clear errors, nothing revoked, nothing recorded.
    let refused: [(&[&str], &str); 4] = [
        (
            &["revoke", "identity", "nosuch", "--reason", "x", "--yes"],
            "`nosuch` is not an identity",
        ),
        (
            &["revoke", "cert", "zz:not-hex", "--reason", "x", "--yes"],
            "is not a certificate serial",
        ),
        (
            &["revoke", "cert", "01:02:03:04", "--reason", "x", "--yes"],
            "no certificate with serial 01:02:03:04 is stored",
        ),
        // No terminal to confirm on and no --yes.
        (
            &["revoke", "identity", "billing", "--reason", "x"],
            "refusing to revoke without confirmation",
        ),
    ];
    for (args, want) in refused {
        let out = run(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.contains("nothing was revoked"), "{args:?}: {err}");
    }
    assert!(revocation_records(&op).await.is_empty());
    assert!(!crl_serials(&op).await.contains(&bare(&identity_serial)));
    assert!(!delivered_crl_serials(root.path()).contains(&bare(&identity_serial)));
    billing
        .token_lookup_self()
        .await
        .expect("billing's token survives the refusals");

    // `ca status` counts billing's certificates as live leaves of the default intermediate.
    let ca_status = || {
        let out = run(&["ca", "status", "--output", "json"]);
        assert!(out.status.success(), "ca status: {}", text(&out.stderr));
        let st: Value = serde_json::from_slice(&out.stdout).expect("ca status json");
        let env = st["environments"][0].clone();
        let default = env["cas"]
            .as_array()
            .expect("cas")
            .iter()
            .find(|c| c["is_default"] == true)
            .cloned()
            .unwrap_or_else(|| panic!("a default intermediate: {env:#}"));
        (env, default)
    };
    let (env, default) = ca_status();
    assert_eq!(env["revoked_leaves"], 0, "{env:#}");
    assert!(
        default["identities"]
            .as_array()
            .is_some_and(|i| i.iter().any(|n| n == "billing")),
        "{default:#}"
    );
    let live_before = default["live_leaves"].as_u64().expect("live_leaves");

    // The revocation itself.
    let out = run(&[
        "revoke",
        "identity",
        "billing",
        "--reason",
        "key leaked",
        "--yes",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "revoke: {}", text(&out.stderr));
    let record: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("json: {e}: {}", text(&out.stdout)));
    let revoked: Vec<String> = record["revoked_serials"]
        .as_array()
        .expect("revoked_serials")
        .iter()
        .map(|s| bare(s.as_str().expect("serial")))
        .collect();
    assert!(
        revoked.contains(&bare(&identity_serial)),
        "{record:#} vs {identity_serial}"
    );
    assert_eq!(record["reason"], "key leaked");
    assert_eq!(record["target"], "billing");

    // Its certificate is on the CRL, the one OpenBao serves and the one the proxy delivers.
    assert!(
        crl_serials(&op).await.contains(&bare(&identity_serial)),
        "identity certificate on the CRL"
    );
    assert!(
        delivered_crl_serials(root.path()).contains(&bare(&identity_serial)),
        "identity certificate on the proxy's CRL"
    );
    // Its token is dead.
    let e = billing
        .token_lookup_self()
        .await
        .expect_err("billing's token must be dead");
    assert!(e.is_permission_denied(), "{e}");
    // Its real certificate cannot log in again.
    let again = logged_in(&access, root.path(), "billing").await;
    assert!(again.is_err(), "billing logged in again");
    // Its agent's report still lists its certificates, but they are revoked, not live: a
    // rotation's retire does not wait for an identity that can never move.
    let (env, default) = ca_status();
    let revoked_leaves = env["revoked_leaves"].as_u64().expect("revoked_leaves");
    assert!(revoked_leaves >= 1, "{env:#}");
    assert_eq!(
        default["live_leaves"].as_u64(),
        Some(live_before - revoked_leaves),
        "{default:#}"
    );
    assert!(
        default["identities"]
            .as_array()
            .is_some_and(|i| !i.iter().any(|n| n == "billing")),
        "{default:#}"
    );

    // The other identity is untouched.
    ledger
        .token_lookup_self()
        .await
        .expect("ledger's token still works");
    logged_in(&access, root.path(), "ledger")
        .await
        .expect("ledger still logs in");

    // The record: who, what, why, which serials, when.
    let ids = revocation_records(&op).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    let stored = op
        .read(&format!("warden/data/revocations/{}", ids[0]))
        .await
        .expect("record")
        .data
        .expect("data")["data"]
        .clone();
    assert_eq!(stored["kind"], "identity");
    assert_eq!(stored["reason"], "key leaked");
    assert!(
        stored["by"].as_str().is_some_and(|b| !b.is_empty()),
        "{stored:#}"
    );
    assert!(
        stored["at"].as_str().is_some_and(|t| t.starts_with("20")),
        "{stored:#}"
    );

    // A container: its secret-ids destroyed, its token dead, its login refused.
    let (role_id, used) = approle_credentials(&op, "worker").await;
    let (_, spare) = approle_credentials(&op, "worker").await;
    let worker = access
        .transport_client(&op, "worker-host", "test.warden.internal")
        .await;
    login_approle(&worker, &role_id, &used)
        .await
        .expect("worker logs in before");
    worker
        .token_lookup_self()
        .await
        .expect("worker's token works");
    let out = run(&[
        "revoke",
        "identity",
        "worker",
        "--reason",
        "container compromised",
        "--yes",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "revoke worker: {}", text(&out.stderr));
    let record: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        record["secret_ids_destroyed"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{record:#}"
    );
    assert!(
        op.list("auth/approle/role/worker/secret-id")
            .await
            .expect("list secret-ids")
            .is_empty()
    );
    let e = worker
        .token_lookup_self()
        .await
        .expect_err("worker's token must be dead");
    assert!(e.is_permission_denied(), "{e}");
    assert!(
        login_approle(
            &access
                .transport_client(&op, "worker-host", "test.warden.internal")
                .await,
            &role_id,
            &spare,
        )
        .await
        .is_err(),
        "a destroyed secret-id cannot log in"
    );
    ledger
        .token_lookup_self()
        .await
        .expect("ledger's token still works after worker's revocation");

    // `revoke cert` on ledger's stored identity certificate: on the CRL, login refused.
    let ledger_report = warden_testkit::delivery_report(&op, "ledger").await;
    let ledger_serial = ledger_report["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["credential"] == "ledger/identity-cert")
        .and_then(|o| o["serial"].as_str())
        .expect("ledger's identity serial")
        .to_owned();
    let out = run(&[
        "revoke",
        "cert",
        &ledger_serial,
        "--reason",
        "host retired",
        "--yes",
    ]);
    assert!(out.status.success(), "revoke cert: {}", text(&out.stderr));
    assert!(crl_serials(&op).await.contains(&bare(&ledger_serial)));
    assert!(
        logged_in(&access, root.path(), "ledger").await.is_err(),
        "a revoked certificate cannot log in"
    );
    assert_eq!(revocation_records(&op).await.len(), 3);

    // The same revocation again at once (a script re-run, an operator unsure the first went
    // through): its record was `<unix time>-cert-<serial>`, the same name within one second,
    // so the second replaced the first and its reason was lost. Each gets its own record.
    for reason in ["re-run one", "re-run two"] {
        let out = run(&[
            "revoke",
            "cert",
            &ledger_serial,
            "--reason",
            reason,
            "--yes",
        ]);
        assert!(out.status.success(), "revoke cert: {}", text(&out.stderr));
    }
    let ids = revocation_records(&op).await;
    assert_eq!(ids.len(), 5, "{ids:?}");
    let mut reasons = Vec::new();
    for id in &ids {
        let rec = op
            .read(&format!("warden/data/revocations/{id}"))
            .await
            .expect("read a record");
        let data = rec.data.expect("record data");
        assert_eq!(data["data"]["id"], id.as_str(), "{data}");
        reasons.push(
            data["data"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    for reason in ["host retired", "re-run one", "re-run two"] {
        assert!(reasons.iter().any(|r| r == reason), "{reasons:?}");
    }
}

const FAIL_CLOSED_SPEC: &str = r#"version = 1

[environments.test]
domain = "test.warden.internal"

[apps.billing]
environments = ["test"]
certificate  = { ttl = "10m" }

[apps.ledger]
environments = ["test"]
certificate  = { ttl = "10m" }

[apps.audit]
environments = ["test"]
certificate  = { ttl = "10m" }

[purposes.identity]
description = "identities' mTLS certificates, and audit's server certificate"
owner = "platform"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "20d", grace = "5d", max_age = "30d" }
evidence = "EV-IDENTITY"
covers = ["*/identity-cert", "audit/certificate"]

[purposes.billing-tls]
description = "billing's server certificate"
owner = "billing"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "20d", grace = "5d", max_age = "30d" }
evidence = "EV-TLS"
covers = ["billing/certificate"]

[purposes.ledger-tls]
description = "ledger's server certificate: one second of grace, so a renewal is always late"
owner = "ledger"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "1s", grace = "1s", max_age = "1h" }
evidence = "EV-TLS"
covers = ["ledger/certificate"]
"#;

/// The serial (bare lowercase hex) of the certificate `name`'s agent delivered.
fn serial_on_disk(root: &Path, name: &str) -> String {
    let pem = std::fs::read(root.join(format!("test/{name}/out/tls/cert.pem"))).expect("cert.pem");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
    let cert = pem.parse_x509().expect("certificate");
    hex::encode(cert.tbs_certificate.raw_serial())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_refuse_new_certificates_under_a_revoked_purpose_or_outside_grace_and_keep_theirs() {
    let t = SpecLab::start(WARDEN, FAIL_CLOSED_SPEC).await;
    let run = |extra: &[&str]| t.run(extra);
    t.apply();

    let root = tempfile::tempdir().expect("identity root");
    let apps = ["billing", "ledger", "audit"];
    let once = |name: &str| agent_once(&WARDEN, root.path(), name);
    for name in apps {
        t.enroll(root.path(), name);
        // The first issuance is allowed under every purpose.
        let out = once(name);
        assert!(out.status.success(), "agent {name}: {}", text(&out.stderr));
    }
    let before: Vec<String> = apps
        .iter()
        .map(|n| serial_on_disk(root.path(), n))
        .collect();

    // billing's purpose is revoked the way a purpose is revoked: in the spec, applied.
    let revoked = FAIL_CLOSED_SPEC.replace(
        "covers = [\"billing/certificate\"]",
        "covers = [\"billing/certificate\"]\nrevoked = true",
    );
    std::fs::write(t.spec(), revoked).expect("write spec");
    t.apply();

    // Every agent is now asked to renew (renew at 1 % of the lifetime: due at once).
    for name in apps {
        let config = root.path().join(format!("test/{name}/agent.toml"));
        let toml = std::fs::read_to_string(&config).expect("agent.toml");
        assert!(toml.contains("fraction = 0.667"), "{toml}");
        let toml = toml
            .replace("fraction = 0.667", "fraction = 0.01")
            .replace("jitter = 0.05", "jitter = 0.0");
        std::fs::write(&config, toml).expect("agent.toml");
    }
    let results: Vec<(bool, String)> = apps
        .iter()
        .map(|n| {
            let out = once(n);
            (out.status.success(), text(&out.stderr))
        })
        .collect();
    let after: Vec<String> = apps
        .iter()
        .map(|n| serial_on_disk(root.path(), n))
        .collect();

    // audit, under a healthy purpose, renews: the renewal really was asked for.
    assert!(results[2].0, "audit renews: {}", results[2].1);
    assert_ne!(before[2], after[2], "audit got a new certificate");
    // billing (revoked purpose) and ledger (outside grace) refuse and keep what they have.
    for (i, why) in [
        (0, "purpose `billing-tls` is revoked"),
        (1, "outside the grace window of purpose `ledger-tls`"),
    ] {
        let (ok, err) = &results[i];
        assert!(
            !ok,
            "{}: the refusal is a failure of --once: {err}",
            apps[i]
        );
        assert!(err.contains(why), "{}: {err}", apps[i]);
        assert_eq!(before[i], after[i], "{} keeps its certificate", apps[i]);
    }

    // Posture says why, from the agents' reports.
    let out = run(&["posture", "--output", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("json: {e}\n{}\n{}", text(&out.stdout), text(&out.stderr)));
    let creds: Vec<Value> = report["environments"][0]["purposes"]
        .as_array()
        .expect("purposes")
        .iter()
        .flat_map(|p| p["credentials"].as_array().expect("credentials").clone())
        .collect();
    let by_id = |id: &str| {
        creds
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} in posture: {report:#}"))
            .clone()
    };
    let billing = by_id("billing/certificate");
    assert_eq!(billing["status"], "revoked", "{billing:#}");
    assert!(
        billing["detail"]["agent_error"]
            .as_str()
            .is_some_and(|e| e.contains("purpose `billing-tls` is revoked")),
        "{billing:#}"
    );
    assert_eq!(billing["detail"]["agent_state"], "stale", "{billing:#}");
    let ledger = by_id("ledger/certificate");
    assert!(
        ledger["detail"]["agent_error"]
            .as_str()
            .is_some_and(|e| e.contains("outside the grace window")),
        "{ledger:#}"
    );
    assert_eq!(ledger["status"], "stale", "{ledger:#}");
    assert_eq!(by_id("audit/certificate")["status"], "healthy");

    // The rule is about the certificate in use, not about the agent's record of it: with the
    // record gone and the set on disk unusable (an operator's `rm -rf state out/tls/key.pem`
    // to "unstick" it), ledger still refuses instead of issuing as if for the first time.
    let ledger_dir = root.path().join("test/ledger");
    std::fs::remove_dir_all(ledger_dir.join("state")).expect("rm state");
    std::fs::remove_file(ledger_dir.join("out/tls/key.pem")).expect("rm key.pem");
    let out = once("ledger");
    let err = text(&out.stderr);
    assert!(!out.status.success(), "ledger issued again: {err}");
    assert!(
        err.contains("outside the grace window of purpose `ledger-tls`"),
        "{err}"
    );
    assert_eq!(serial_on_disk(root.path(), "ledger"), before[1]);
}

const PURPOSE_SPEC: &str = r#"version = 1

[environments.test]
domain = "test.warden.internal"

[apps.billing]
environments = ["test"]
certificate  = { ttl = "10m" }

[apps.ledger]
environments = ["test"]
certificate  = { ttl = "10m" }

[purposes.identity]
description = "billing's mTLS certificate"
owner = "platform"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "20d", grace = "5d", max_age = "30d" }
evidence = "EV-IDENTITY"
covers = ["billing/identity-cert"]

[purposes.ledger-identity]
description = "ledger's mTLS certificate"
owner = "ledger"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "20d", grace = "5d", max_age = "30d" }
evidence = "EV-IDENTITY"
covers = ["ledger/identity-cert"]

[purposes.tls]
description = "the apps' server certificates"
owner = "platform"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "20d", grace = "5d", max_age = "30d" }
evidence = "EV-TLS"
covers = ["*/certificate"]
"#;

/// The registry entry of `purpose` as agents read it.
async fn registry_entry(op: &Client, purpose: &str) -> Value {
    op.read(&format!("warden/data/registry/{purpose}"))
        .await
        .expect("registry entry")
        .data
        .expect("data")["data"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_purpose_revokes_its_stored_certificates_and_agents_refuse_and_keep_theirs() {
    let t = SpecLab::start(WARDEN, PURPOSE_SPEC).await;
    let lab = t.lab();
    let run = |extra: &[&str]| t.run(extra);
    t.apply();
    let root = tempfile::tempdir().expect("identity root");
    for name in ["billing", "ledger"] {
        t.enroll(root.path(), name);
        let out = agent_once(&WARDEN, root.path(), name);
        assert!(out.status.success(), "agent {name}: {}", text(&out.stderr));
    }
    let op = lab.client("test");
    let records_before = revocation_records(&op).await.len();

    // Mistakes change nothing: an unknown purpose (with the near miss named), and a dry run.
    let out = run(&["revoke", "purpose", "tsl", "--reason", "x", "--yes"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("`tsl` is not a purpose of the spec")
            && err.contains("did you mean `tls`")
            && err.contains("nothing was revoked"),
        "{err}"
    );
    let out = run(&["revoke", "purpose", "tls", "--reason", "x", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("billing/certificate"),
        "the plan lists the certificates: {}",
        text(&out.stderr)
    );
    assert_eq!(registry_entry(&op, "tls").await["revoked"], false);
    assert_eq!(revocation_records(&op).await.len(), records_before);

    // `revoke purpose tls`: the entry is marked revoked live, with the record's id; the apps'
    // server certificates are not stored by OpenBao, so they are listed, not revoked.
    let serial_before = serial_on_disk(root.path(), "billing");
    let out = run(&[
        "revoke",
        "purpose",
        "tls",
        "--reason",
        "CA compromise drill",
        "--yes",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "revoke purpose: {}",
        text(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout).expect("record json");
    assert_eq!(record["kind"], "purpose");
    assert_eq!(record["target"], "tls");
    assert!(
        record["unrevocable_serials"]
            .as_array()
            .is_some_and(|s| s.len() == 2),
        "both apps' server certificates are reported, not stored: {record:#}"
    );
    let entry = registry_entry(&op, "tls").await;
    assert_eq!(entry["revoked"], true, "{entry:#}");
    assert_eq!(entry["revocation"]["record"], record["id"], "{entry:#}");
    assert_eq!(entry["revocation"]["reason"], "CA compromise drill");
    assert_eq!(revocation_records(&op).await.len(), records_before + 1);

    // billing's agent, asked to renew, refuses under the revoked purpose and keeps its
    // certificate; its identity certificate (another purpose) still logs in.
    let config = root.path().join("test/billing/agent.toml");
    let toml = std::fs::read_to_string(&config).expect("agent.toml");
    let toml = toml
        .replace("fraction = 0.667", "fraction = 0.01")
        .replace("jitter = 0.05", "jitter = 0.0");
    std::fs::write(&config, toml).expect("agent.toml");
    let out = agent_once(&WARDEN, root.path(), "billing");
    assert!(!out.status.success(), "the refusal fails --once");
    assert!(
        text(&out.stderr).contains("purpose `tls` is revoked"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(serial_on_disk(root.path(), "billing"), serial_before);
    // Posture judges by the live revocation before the spec catches up.
    let out = run(&["posture", "--output", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("json: {e}\n{}\n{}", text(&out.stdout), text(&out.stderr)));
    let tls = report["environments"][0]["purposes"]
        .as_array()
        .expect("purposes")
        .iter()
        .find(|p| p["purpose"] == "tls")
        .cloned()
        .unwrap_or_else(|| panic!("tls in posture: {report:#}"));
    assert!(
        tls["credentials"]
            .as_array()
            .expect("credentials")
            .iter()
            .all(|c| c["status"] == "revoked"),
        "{tls:#}"
    );

    // The spec still says revoked = false: plan shows the conflict, apply refuses and does not
    // undo the revocation.
    let out = run(&["plan"]);
    let plan = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        plan.contains("was revoked by `warden revoke purpose`")
            && plan.contains("write `revoked = true` in [purposes.tls]"),
        "{plan}"
    );
    let out = run(&["apply", "--yes"]);
    assert!(
        !out.status.success(),
        "apply refuses while the spec disagrees"
    );
    assert_eq!(registry_entry(&op, "tls").await["revoked"], true);
    // Once the spec agrees, apply goes through and keeps the revocation record.
    let agreed = PURPOSE_SPEC.replace(
        "covers = [\"*/certificate\"]",
        "covers = [\"*/certificate\"]\nrevoked = true",
    );
    std::fs::write(t.spec(), agreed).expect("write spec");
    t.apply();
    let entry = registry_entry(&op, "tls").await;
    assert_eq!(entry["revoked"], true);
    assert_eq!(entry["revocation"]["record"], record["id"], "{entry:#}");

    // A purpose over a stored certificate: ledger's identity certificate goes on the CRL and
    // cannot log in any more.
    let access = EnvAccess::of(lab, "test");
    assert!(logged_in(&access, root.path(), "ledger").await.is_ok());
    let out = run(&[
        "revoke",
        "purpose",
        "ledger-identity",
        "--reason",
        "host lost",
        "--yes",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record: Value = serde_json::from_slice(&out.stdout).expect("record json");
    let revoked = record["revoked_serials"].as_array().expect("serials");
    assert_eq!(revoked.len(), 1, "{record:#}");
    let bare = revoked[0].as_str().unwrap().replace(':', "");
    assert!(crl_serials(&op).await.contains(&bare));
    assert!(
        logged_in(&access, root.path(), "ledger").await.is_err(),
        "a revoked identity certificate cannot log in"
    );
}
