//! `warden-registry` against a real lab (OpenBao over HTTPS + mTLS, from the testkit), with the
//! example spec applied through `warden-plan`'s public functions:
//!
//! * posture is judged from live state this test writes (a KV secret, the transit key apply
//!   created), now and at later instants through the injected clock, and never shows a value;
//! * a reveal-once secret-id opens exactly once: the second open is refused as spent;
//! * an evidence packet exported and signed by OpenBao verifies offline with the key's public
//!   half, and fails once a single byte is changed.
//!
//! One lab (≈ 10 s to start) shared by the steps of one test.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use warden_bao::{Client, Idempotent};
use warden_registry::evidence::{self, ExportRequest};
use warden_registry::posture::{self, Report};
use warden_registry::reveal::{self, CreateRequest, RevealKind};
use warden_spec::{Environment, Spec};
use warden_testkit::LabEnv;

const ENV: &str = "test";
const DAY: i64 = 86_400;
/// A value no report may contain.
const STRIPE_KEY: &str = "sk_test_registry_value_5e1f";

fn unix_now() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_secs()).expect("seconds fit i64")
}

/// Applies `spec` to `env` as `warden apply` does: desired state (identity roles pinned to the
/// lab's intermediate), plan, apply.
async fn apply(operator: &Client, spec: &Spec, env: &Environment) {
    let inputs = warden_plan::EnvInputs {
        identity_ca_pem: operator
            .pki_ca_cert(&env.mounts.pki)
            .await
            .expect("the lab's intermediate"),
        ..warden_plan::EnvInputs::default()
    };
    let desired = warden_plan::desired_state(spec, env, &inputs);
    let plan = warden_plan::plan_env(operator, ENV, desired, false, 4)
        .await
        .unwrap_or_else(|e| panic!("plan: {e}"));
    warden_plan::apply_env(operator, &plan, 4, Arc::new(|_, _| {}))
        .await
        .unwrap_or_else(|e| panic!("apply: {e}"));
}

/// A registry entry is rewritten by apply only if it is still the version the plan read: a
/// `revoke purpose` landing between plan and apply makes apply fail on that entry instead of
/// undoing the revocation (ADR 0032), and a new plan sees it.
async fn registry_entry_written_after_the_plan_is_not_overwritten(
    operator: &Client,
    spec: &Spec,
    env: &Environment,
) {
    let purpose = spec.purposes[0].id.to_string();
    let path = format!("warden/data/registry/{purpose}");
    let mut changed = spec.clone();
    changed.purposes[0].owner = "another-team".into();
    let inputs = warden_plan::EnvInputs {
        identity_ca_pem: operator
            .pki_ca_cert(&env.mounts.pki)
            .await
            .expect("the lab's intermediate"),
        ..warden_plan::EnvInputs::default()
    };
    let plan = warden_plan::plan_env(
        operator,
        ENV,
        warden_plan::desired_state(&changed, env, &inputs),
        false,
        4,
    )
    .await
    .unwrap_or_else(|e| panic!("plan: {e}"));
    assert!(
        plan.changes.iter().any(|c| c.path == path),
        "the owner change is planned: {:?}",
        plan.changes.iter().map(|c| &c.path).collect::<Vec<_>>()
    );
    // Between plan and apply, a revocation marks the entry (as `revoke purpose` writes it).
    let live = operator
        .read(&path)
        .await
        .expect("read")
        .data
        .expect("entry");
    let mut data = live["data"].clone();
    data["revoked"] = json!(true);
    data["revocation"] =
        json!({ "record": "1-purpose-race", "reason": "race", "by": "t", "at": "t" });
    operator
        .write(&path, &json!({ "data": data }), Idempotent::No)
        .await
        .expect("mark revoked");
    match warden_plan::apply_env(operator, &plan, 4, Arc::new(|_, _| {})).await {
        Err(warden_plan::Error::Partial { failures, .. }) => assert!(
            failures
                .iter()
                .any(|(_, e)| e.contains("changed after the plan was made")),
            "{failures:?}"
        ),
        other => panic!("apply over a changed registry entry: {other:?}"),
    }
    let after = operator
        .read(&path)
        .await
        .expect("read")
        .data
        .expect("entry");
    assert_eq!(after["data"]["revoked"], true, "the revocation survives");
    assert_eq!(
        after["data"]["owner"], live["data"]["owner"],
        "nothing overwritten"
    );
    // A new plan sees the revocation: a conflict, not an update.
    let replan = warden_plan::plan_env(
        operator,
        ENV,
        warden_plan::desired_state(&changed, env, &inputs),
        false,
        4,
    )
    .await
    .expect("plan again");
    let entry = replan
        .changes
        .iter()
        .find(|c| c.path == path)
        .expect("the entry is in the plan");
    assert_eq!(entry.action, warden_plan::Action::Conflict, "{entry:?}");
    // Undo (the manual way, ADR 0032) so the rest of the test sees the spec's state.
    operator
        .write(&path, &json!({ "data": live["data"] }), Idempotent::No)
        .await
        .expect("restore the entry");
    apply(operator, spec, env).await;
}

/// A rotation or rollover record edited by hand into something else is an error naming it,
/// never "no rotation under way" (which would let a new one start over it).
async fn a_record_that_does_not_parse_stops_the_ca_steps(operator: &Client, env: &Environment) {
    let paths = [
        warden_spec::naming::ca_rotation().data_path(),
        warden_spec::naming::ca_root_rollover().data_path(),
    ];
    for path in &paths {
        operator
            .write(
                path,
                &json!({ "data": { "state": "sideways" } }),
                Idempotent::No,
            )
            .await
            .expect("write a bad record");
    }
    match warden_registry::ca::read_record(operator, env).await {
        Err(e @ warden_registry::ca::CaError::BadRecord { .. }) => {
            assert!(e.to_string().contains(&paths[0]), "{e}");
        }
        other => panic!("a bad rotation record: {other:?}"),
    }
    match warden_registry::root_rollover::read_record(operator, env).await {
        Err(warden_registry::ca::CaError::BadRecord { path, .. }) => assert_eq!(path, paths[1]),
        other => panic!("a bad rollover record: {other:?}"),
    }
    for path in &paths {
        operator
            .delete(&path.replacen("/data/", "/metadata/", 1))
            .await
            .expect("remove the bad record");
    }
    assert!(matches!(
        warden_registry::ca::read_record(operator, env).await,
        Ok(None)
    ));
}

/// The status (as JSON prints it) of credential `id` in `report`.
fn status_of(report: &Report, id: &str) -> String {
    let cred = report
        .purposes
        .iter()
        .flat_map(|p| &p.credentials)
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("{id} is not in the posture of {}", report.env));
    match serde_json::to_value(cred.status).expect("status serializes") {
        Value::String(s) => s,
        other => panic!("status of {id} is not a string: {other}"),
    }
}

async fn posture_at(operator: &Client, spec: &Spec, env: &Environment, at: i64) -> Report {
    posture::collect(operator, spec, env, at)
        .await
        .unwrap_or_else(|e| panic!("posture: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posture_reveal_once_and_evidence_against_live_state() {
    let lab = LabEnv::start(&[ENV]).await;
    let operator = lab.client(ENV);
    // The harness lab runs no PostgreSQL: the example without its lab database.
    let spec = warden_testkit::example_spec();
    let env = spec.environment(ENV).expect("a test environment").clone();
    apply(&operator, &spec, &env).await;
    registry_entry_written_after_the_plan_is_not_overwritten(&operator, &spec, &env).await;
    a_record_that_does_not_parse_stops_the_ca_steps(&operator, &env).await;

    // ---- posture from live state -----------------------------------------------------------
    let before = posture_at(&operator, &spec, &env, unix_now()).await;
    assert_ne!(
        status_of(&before, "billing/secret/stripe"),
        "healthy",
        "nothing is written yet"
    );
    operator
        .write(
            &format!("{}/data/billing/stripe", env.mounts.kv),
            &json!({ "data": { "api_key": STRIPE_KEY } }),
            Idempotent::No,
        )
        .await
        .expect("write the stripe key");
    let now = unix_now();
    let fresh = posture_at(&operator, &spec, &env, now).await;
    assert_eq!(fresh.at, now);
    assert_eq!(status_of(&fresh, "billing/secret/stripe"), "healthy");
    // The transit key apply created is judged from its version time.
    assert_eq!(status_of(&fresh, "billing/transit/payments"), "healthy");
    let stripe = fresh
        .purposes
        .iter()
        .flat_map(|p| &p.credentials)
        .find(|c| c.id == "billing/secret/stripe")
        .expect("stripe");
    let issued = stripe.issued_at.expect("issue time from KV metadata");
    assert!(
        (now - 60..=now).contains(&issued),
        "issued {issued}, now {now}"
    );
    // billing-stripe rotates every 30 days with 7 days of grace; payment-encryption every 30
    // days with 30 of grace. The same state, judged later with the injected clock:
    let month = posture_at(&operator, &spec, &env, now + 31 * DAY).await;
    assert_eq!(status_of(&month, "billing/secret/stripe"), "due");
    let later = posture_at(&operator, &spec, &env, now + 40 * DAY).await;
    assert_eq!(status_of(&later, "billing/secret/stripe"), "stale");
    assert_eq!(status_of(&later, "billing/transit/payments"), "due");
    let much_later = posture_at(&operator, &spec, &env, now + 61 * DAY).await;
    assert_eq!(status_of(&much_later, "billing/transit/payments"), "stale");
    for report in [&fresh, &month, &later, &much_later] {
        let dump = serde_json::to_string(report).expect("report serializes");
        assert!(!dump.contains(STRIPE_KEY), "posture never shows a value");
    }
    // The operator reads every secret's versions in one scan (ADR 0027): a soft-deleted
    // current version is seen there as it is in a metadata read, and undeleting brings it back.
    let version = stripe.detail.get("version").expect("version").clone();
    let scanned = operator
        .kv2(&env.mounts.kv)
        .scan_metadata("")
        .await
        .expect("the operator policy grants scan on detailed-metadata");
    assert_eq!(
        scanned["billing/stripe"].current_version.to_string(),
        version,
        "{:?}",
        scanned.keys().collect::<Vec<_>>()
    );
    let folder = operator
        .kv2(&env.mounts.kv)
        .scan_metadata("billing/")
        .await
        .expect("scan one folder");
    assert!(
        folder.contains_key("billing/stripe") && folder.keys().all(|k| k.starts_with("billing/")),
        "{:?}",
        folder.keys().collect::<Vec<_>>()
    );
    // Evidence reads every policy's text in one request (ADR 0034): the bulk answer is exactly
    // what one read per policy returns, and a token without the grant is told to fall back.
    let bulk = operator
        .list_policies_detailed()
        .await
        .expect("the detailed policy list")
        .expect("the operator policy grants the detailed policy list");
    let mut names = operator.list_policies().await.expect("list policies");
    names.sort();
    assert_eq!(
        bulk.keys().collect::<Vec<_>>(),
        names.iter().collect::<Vec<_>>(),
        "the bulk answer names every policy"
    );
    for name in names.iter().filter(|n| *n != "root") {
        let one = operator
            .read_policy(name)
            .await
            .unwrap_or_else(|e| panic!("read policy {name}: {e}"));
        assert_eq!(bulk[name], one, "policy {name}");
    }
    assert!(
        lab.harness_client(ENV)
            .list_policies_detailed()
            .await
            .expect("a refused bulk read is not an error")
            .is_none(),
        "a token without the grant falls back to single reads"
    );
    for (op, status) in [("delete", "unknown"), ("undelete", "healthy")] {
        operator
            .write(
                &format!("{}/{op}/billing/stripe", env.mounts.kv),
                &json!({ "versions": [version.parse::<u64>().expect("a number")] }),
                Idempotent::Yes,
            )
            .await
            .unwrap_or_else(|e| panic!("{op} the stripe key's version: {e}"));
        let report = posture_at(&operator, &spec, &env, unix_now()).await;
        assert_eq!(status_of(&report, "billing/secret/stripe"), status, "{op}");
        let cred = report
            .purposes
            .iter()
            .flat_map(|p| &p.credentials)
            .find(|c| c.id == "billing/secret/stripe")
            .expect("stripe");
        assert_eq!(cred.issued_at, Some(issued), "{op}");
        assert_eq!(
            cred.reason
                .contains(&format!("version {version} is deleted")),
            op == "delete",
            "{op}: {}",
            cred.reason
        );
    }

    // ---- reveal once -----------------------------------------------------------------------
    let created = reveal::create(
        &operator,
        &CreateRequest {
            spec: &spec,
            env: &env,
            purpose: "container-bootstrap",
            identity: Some("worker"),
            credential: None,
            ttl: reveal::DEFAULT_TTL,
            now: unix_now(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("create a reveal: {e}"));
    assert_eq!(created.record.purpose, "container-bootstrap");
    assert_eq!(created.record.credential, "worker/secret-id");
    assert!(
        !format!("{created:?}").contains(secrecy::ExposeSecret::expose_secret(&created.token)),
        "Debug never prints the token"
    );
    // `open` uses the wrapping token alone (it clears the client's own token): a fresh client.
    let opened = reveal::open(&lab.client(ENV), &created.token)
        .await
        .unwrap_or_else(|e| panic!("the first open: {e}"));
    assert_eq!(opened.kind, RevealKind::SecretId);
    assert!(!secrecy::ExposeSecret::expose_secret(&opened.value).is_empty());
    let again = reveal::open(&lab.client(ENV), &created.token).await;
    match again {
        Err(e) => assert!(e.is_spent(), "the second open is refused as spent: {e}"),
        Ok(_) => panic!("a reveal token opened twice"),
    }

    // ---- evidence --------------------------------------------------------------------------
    let exported = evidence::export(
        &operator,
        &ExportRequest {
            spec: &spec,
            env: &env,
            component: "EV-PAYMENTS",
            now: unix_now(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("export: {e}"));
    assert!(!exported.key_created, "apply created the evidence key");
    let mut purposes = exported.purposes.clone();
    purposes.sort();
    assert_eq!(purposes, ["billing-stripe", "payment-encryption"]);
    assert!(
        !String::from_utf8_lossy(&exported.bytes).contains(STRIPE_KEY),
        "a packet never holds a value"
    );
    // Offline: only the key's public half, no server.
    let key = evidence::read_key(&operator, ENV, &env.mounts.transit)
        .await
        .expect("read the evidence key")
        .expect("the evidence key exists");
    let pem = &key.latest().expect("a latest version").pem;
    let keys = evidence::parse_public_keys(pem).expect("the key's PEM parses");
    let verified = evidence::verify(&exported.bytes, &keys);
    assert!(verified.is_ok(), "the packet verifies: {verified:?}");
    // Streamed as it was built (ADR 0014), it is still exactly its own canonical form, and it
    // verifies as a stream too.
    let parsed = evidence::canonical::parse_strict(&exported.bytes).expect("the packet is JSON");
    assert_eq!(evidence::canonical::to_bytes(&parsed), exported.bytes);
    match evidence::verify_stream(&mut std::io::Cursor::new(&exported.bytes), &keys) {
        Ok(evidence::Streamed::Checked(v)) => assert_eq!(v.component, "EV-PAYMENTS"),
        other => panic!("a packet as exported verifies as a stream: {other:?}"),
    }
    // One byte changed (a letter of the component, so the JSON stays valid): tampering.
    let at = exported
        .bytes
        .windows(b"EV-PAYMENTS".len())
        .position(|w| w == b"EV-PAYMENTS")
        .expect("the packet names its component")
        + 3;
    let mut flipped = exported.bytes.clone();
    flipped[at] ^= 0x01;
    match evidence::verify(&flipped, &keys) {
        Err(e) => assert!(e.is_tamper(), "a changed byte is tampering: {e}"),
        Ok(v) => panic!("a changed packet verified: {v:?}"),
    }

    // ---- a packet larger than OpenBao accepts in one request (issue 16) ---------------------
    // OpenBao's default max_request_size is 32 MiB: a payload of 34 MiB could never be sent
    // whole to transit/sign (HTTP 413). Only the fixed-size statement is sent, so it signs,
    // and the packet verifies offline.
    let big_size = 34 * 1024 * 1024;
    let big = json!({ "component": "scale", "env": ENV, "generated_at": unix_now(),
                      "blob": "x".repeat(big_size) });
    let signed = evidence::sign_payload(&operator, ENV, &env.mounts.transit, &big)
        .await
        .unwrap_or_else(|e| panic!("signing a 34 MiB payload: {e}"));
    assert!(signed.bytes.len() > big_size);
    // The premise, checked on this server: the v1 scheme's request (the packet, base64) is
    // refused for its size.
    let whole = json!({ "input": "A".repeat(signed.bytes.len() / 3 * 4), "key_version": 1 });
    match operator
        .write(
            &format!("{}/sign/{}", env.mounts.transit, evidence::EVIDENCE_KEY),
            &whole,
            Idempotent::Yes,
        )
        .await
    {
        Err(e) => assert_eq!(e.status(), Some(413), "refused for its size: {e}"),
        Ok(_) => panic!("OpenBao signed a {} byte request", whole.to_string().len()),
    }
    let verified = evidence::verify(&signed.bytes, &keys)
        .unwrap_or_else(|e| panic!("the 34 MiB packet verifies: {e}"));
    assert_eq!(verified.format, evidence::FORMAT);
    assert_eq!(verified.component, "scale");
    // One byte deep inside the body changed: refused.
    let mut flipped = signed.bytes;
    let mid = flipped.len() / 2;
    assert_eq!(flipped[mid], b'x');
    flipped[mid] = b'y';
    match evidence::verify(&flipped, &keys) {
        Err(e) => assert!(e.is_tamper(), "a changed byte is tampering: {e}"),
        Ok(v) => panic!("a changed 34 MiB packet verified: {v:?}"),
    }
}
