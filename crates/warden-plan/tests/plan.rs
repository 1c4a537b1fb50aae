//! `warden-plan` against a real lab (OpenBao over HTTPS + mTLS, from the testkit), through its
//! public functions only: the example spec's desired state is planned, applied, planned again
//! (nothing left to do); a policy changed out of band shows up as a field diff and is put back;
//! an owned object that left the spec is pruned only when asked, and an object Warden did not
//! create never is.
//!
//! One lab for the whole binary's one test (≈ 10 s to start): the steps build on each other.

use std::sync::Arc;

use warden_bao::Client;
use warden_plan::{Action, Desired, EnvInputs, EnvPlan, Kind, apply_env, desired_state, plan_env};
use warden_spec::Spec;
use warden_testkit::LabEnv;

const ENV: &str = "test";
/// Reads and writes in flight at once, as the CLI's default.
const CONCURRENCY: usize = 4;

/// The example spec's desired state for `test`, its identity roles pinned to the lab's
/// intermediate (what `warden apply` reads before planning).
async fn desired(spec: &Spec, operator: &Client) -> Vec<Desired> {
    let env = spec.environment(ENV).expect("a test environment");
    let inputs = EnvInputs {
        identity_ca_pem: operator
            .pki_ca_cert(&env.mounts.pki)
            .await
            .expect("the lab's intermediate"),
        ..EnvInputs::default()
    };
    desired_state(spec, env, &inputs)
}

async fn plan(operator: &Client, desired: Vec<Desired>, prune: bool) -> EnvPlan {
    plan_env(operator, ENV, desired, prune, CONCURRENCY)
        .await
        .unwrap_or_else(|e| panic!("plan: {e}"))
}

async fn apply(operator: &Client, plan: &EnvPlan) {
    apply_env(operator, plan, CONCURRENCY, Arc::new(|_, _| {}))
        .await
        .unwrap_or_else(|e| panic!("apply: {e}"));
}

/// Every change as `action path`, for messages.
fn summary(plan: &EnvPlan) -> Vec<String> {
    plan.changes
        .iter()
        .map(|c| format!("{:?} {} ({})", c.action, c.path, c.reason))
        .collect()
}

/// Whether the operator can read `path` (absent = 404).
async fn exists(operator: &Client, path: &str) -> bool {
    match operator.read(path).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("read {path}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_converge_show_drift_and_prune_only_owned_objects() {
    let lab = LabEnv::start(&[ENV]).await;
    let operator = lab.client(ENV);
    // The harness lab runs no PostgreSQL: the example without its lab database.
    let spec = warden_testkit::example_spec();
    let want = desired(&spec, &operator).await;
    assert!(
        want.iter().any(|d| d.kind == Kind::Policy),
        "the example grants policies"
    );

    // A fresh lab: everything is to be created, nothing conflicts, nothing is deleted.
    let first = plan(&operator, want.clone(), false).await;
    assert!(first.count(Action::Create) > 0, "{:#?}", summary(&first));
    assert_eq!(first.count(Action::Conflict), 0, "{:#?}", summary(&first));
    assert_eq!(first.count(Action::Delete), 0, "{:#?}", summary(&first));
    apply(&operator, &first).await;

    // Converged: a second plan has nothing to do and counts every object as unchanged.
    let second = plan(&operator, want.clone(), true).await;
    assert!(second.changes.is_empty(), "{:#?}", summary(&second));
    assert_eq!(second.unchanged, want.len());
    assert!(second.orphans.is_empty(), "{:?}", second.orphans);

    // Drift: one of Warden's policies rewritten by hand is one update, with the field that
    // differs, from what the server holds to what the spec wants.
    let policy = want
        .iter()
        .find(|d| d.kind == Kind::Policy)
        .expect("a policy");
    let name = policy.path.rsplit('/').next().expect("policy name");
    let by_hand = "path \"kvv2/data/*\" {\n  capabilities = [\"read\"]\n}\n";
    operator
        .put_policy(name, by_hand)
        .await
        .expect("change the policy out of band");
    let drift = plan(&operator, want.clone(), false).await;
    assert_eq!(drift.changes.len(), 1, "{:#?}", summary(&drift));
    let change = &drift.changes[0];
    assert_eq!(change.action, Action::Update);
    assert_eq!(change.kind, Kind::Policy);
    assert_eq!(change.path, policy.path);
    assert!(!change.fields.is_empty(), "an update names its fields");
    for f in &change.fields {
        assert_ne!(f.from, f.to, "{f:?}");
        assert_eq!(policy.body[&f.field], f.to, "{f:?} goes back to the spec");
    }
    assert!(
        change
            .fields
            .iter()
            .any(|f| f.from.to_string().contains("kvv2/data/*")),
        "the diff shows what the server held: {:?}",
        change.fields
    );
    apply(&operator, &drift).await;
    let healed = plan(&operator, want.clone(), false).await;
    assert!(healed.changes.is_empty(), "{:#?}", summary(&healed));
    let held = operator.read_policy(name).await.expect("read the policy");
    assert!(
        !held.contains("kvv2/data/*"),
        "apply restored the spec's policy"
    );

    // A policy Warden did not create: never pruned, whatever the spec says.
    operator
        .put_policy("hand-made", by_hand)
        .await
        .expect("write a policy by hand");

    // `ledger` leaves the spec: its objects are Warden's own (apply recorded them), so they are
    // orphans without prune and deletions with it.
    let (gone, kept): (Vec<Desired>, Vec<Desired>) = want
        .iter()
        .cloned()
        .partition(|d| d.identity.as_deref() == Some("ledger"));
    let prunable: Vec<&Desired> = gone.iter().filter(|d| d.kind.prunable()).collect();
    assert!(!prunable.is_empty(), "ledger owns prunable objects");
    let kept_plan = plan(&operator, kept.clone(), false).await;
    assert!(kept_plan.changes.is_empty(), "{:#?}", summary(&kept_plan));
    for d in &prunable {
        assert!(
            kept_plan.orphans.contains(&d.id().0),
            "{} is an orphan without prune: {:?}",
            d.path,
            kept_plan.orphans
        );
    }
    let pruning = plan(&operator, kept.clone(), true).await;
    let mut deleted: Vec<&str> = pruning
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.path.as_str())
        .collect();
    deleted.sort_unstable();
    let mut expected: Vec<&str> = prunable.iter().map(|d| d.path.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(deleted, expected, "{:#?}", summary(&pruning));
    assert_eq!(
        pruning.changes.len(),
        deleted.len(),
        "prune only deletes: {:#?}",
        summary(&pruning)
    );
    assert!(
        pruning
            .changes
            .iter()
            .all(|c| !c.path.ends_with("/hand-made")),
        "a hand-made policy is never Warden's to prune"
    );
    apply(&operator, &pruning).await;
    for d in &prunable {
        if d.kind == Kind::Policy {
            let name = d.path.rsplit('/').next().expect("policy name");
            let all = operator.list_policies().await.expect("list policies");
            assert!(!all.iter().any(|p| p == name), "{name} was pruned");
        } else if !matches!(d.kind, Kind::Mount | Kind::Auth) {
            assert!(!exists(&operator, &d.path).await, "{} was pruned", d.path);
        }
    }
    assert!(
        operator
            .read_policy("hand-made")
            .await
            .expect("the hand-made policy is still there")
            .contains("kvv2/data/*"),
        "the hand-made policy is untouched"
    );
    let after = plan(&operator, kept.clone(), true).await;
    assert!(after.changes.is_empty(), "{:#?}", summary(&after));

    // A planner that may not list every policy's text (the LIST refused with 403): policies
    // set aside while the LIST was out, or arriving after, are read one by one instead, and
    // the plan is the same: nothing to do, then the one drifted policy (ADR 0037).
    let reader = planner_without_the_policy_list(&lab, &operator).await;
    assert!(
        reader
            .list_policies_detailed()
            .await
            .expect("a refusal is not an error")
            .is_none(),
        "the planner must not be able to list policy texts"
    );
    let converged = plan(&reader, kept.clone(), false).await;
    assert!(converged.changes.is_empty(), "{:#?}", summary(&converged));
    assert_eq!(converged.unchanged, kept.len());
    let identity_policy = kept
        .iter()
        .find(|d| d.kind == Kind::Policy && d.identity.is_some())
        .expect("an identity's policy");
    operator
        .put_policy(
            identity_policy
                .path
                .rsplit('/')
                .next()
                .expect("policy name"),
            by_hand,
        )
        .await
        .expect("change an identity's policy out of band");
    let drifted = plan(&reader, kept.clone(), false).await;
    assert_eq!(
        summary(&drifted)
            .iter()
            .map(|c| c.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        [format!("Update {}", identity_policy.path)],
        "{:#?}",
        summary(&drifted)
    );
}

/// A client logged in with a token that holds the operator's policy plus a `deny` on
/// `sys/policies/detailed/acl`: it reads everything a plan reads but the policies' texts in
/// one request. Its certificate comes from a PKI role and a cert-auth role made here.
async fn planner_without_the_policy_list(lab: &LabEnv, operator: &Client) -> Client {
    const NAME: &str = "planner-no-policy-list";
    let operator_policy = operator
        .read_policy("warden-operator")
        .await
        .expect("read the operator policy");
    operator
        .put_policy(
            NAME,
            &format!(
                "{operator_policy}\npath \"sys/policies/detailed/acl\" {{\n  capabilities = [\"deny\"]\n}}\n"
            ),
        )
        .await
        .expect("write the planner's policy");
    let cn = format!("{NAME}.identity.test.warden.internal");
    operator
        .write(
            &format!("pki_int/roles/{NAME}"),
            &serde_json::json!({
                "allowed_domains": [cn],
                "allow_bare_domains": true,
                "key_type": "ec",
                "key_bits": 256,
                "client_flag": true,
                "server_flag": false,
                "ttl": "1h",
            }),
            warden_bao::Idempotent::Yes,
        )
        .await
        .expect("a PKI role for the planner");
    let ca = operator
        .pki_ca_cert("pki_int")
        .await
        .expect("the lab's intermediate");
    operator
        .write(
            &format!("auth/cert/certs/{NAME}"),
            &serde_json::json!({
                "certificate": ca,
                "allowed_common_names": [cn],
                "token_policies": [NAME],
                "token_ttl": "10m",
            }),
            warden_bao::Idempotent::Yes,
        )
        .await
        .expect("a cert-auth role for the planner");
    let identity = warden_testkit::identity::enroll(operator, NAME, &cn).await;
    let client = warden_testkit::identity::EnvAccess::of(lab, ENV).client_with(identity);
    warden_testkit::identity::login_cert(&client, NAME)
        .await
        .expect("the planner logs in");
    client
}
