//! The cases of the permission test: the matrix's columns, the certificate requests a PKI
//! role must refuse, and the logins that must be refused (or, across environments, allowed).

use serde_json::{Value, json};
use warden_bao::{Client, Idempotent};
use warden_pki::{KeyAlgorithm, generate_key, make_csr};

use crate::matrix::{Case, Op, Outcome, Request, classify_login, classify_role_refusal};
use crate::{ISSUER, TEST_DOMAIN};
use warden_testkit::identity::{
    CiSigner, EnvAccess, approle_credentials, ci_claims, enroll, login_approle, login_cert,
    login_jwt,
};

/// The matrix's columns: every identity's own operations and operator operations nobody may
/// perform (harmless if wrongly allowed: a policy and a mount named `matrix-probe`).
pub(crate) fn operations() -> Vec<Op> {
    let csr = |alg: KeyAlgorithm, cn: &str, sans: &[&str]| {
        let key = generate_key(alg).expect("key");
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        make_csr(&key, cn, &sans, &[]).expect("csr")
    };
    let server = |app: &str| format!("{app}.{TEST_DOMAIN}");
    let ident = |name: &str| format!("{name}.identity.{TEST_DOMAIN}");
    let billing_csr = csr(
        KeyAlgorithm::EcdsaP256,
        &server("billing"),
        &[&format!("billing-api.{TEST_DOMAIN}")],
    );
    let ledger_csr = csr(KeyAlgorithm::Rsa3072, &server("ledger"), &[]);
    let billing_id_csr = csr(KeyAlgorithm::EcdsaP256, &ident("billing"), &[]);
    let edge_id_csr = csr(KeyAlgorithm::EcdsaP256, &ident("edge"), &[]);
    let sign = |role: &str, csr: &str, cn: String| {
        Request::Write(
            format!("pki_int/sign/{role}"),
            json!({ "csr": csr, "common_name": cn }),
        )
    };
    let read = |p: &str| Request::Read(p.to_owned());
    let kv_write = |p: &str| {
        Request::Write(
            format!("kvv2/data/{p}"),
            json!({ "data": { "written-by": "matrix" } }),
        )
    };
    let everyone = vec!["billing", "ledger", "edge", "worker", "billing-ci"];
    vec![
        Op {
            label: "billing's server certificate",
            request: sign("billing", &billing_csr, server("billing")),
            allowed: vec!["billing"],
        },
        Op {
            label: "ledger's server certificate (RSA)",
            request: sign("ledger", &ledger_csr, server("ledger")),
            allowed: vec!["ledger"],
        },
        Op {
            label: "billing renews its identity cert",
            request: sign("billing-identity", &billing_id_csr, ident("billing")),
            allowed: vec!["billing"],
        },
        Op {
            label: "edge renews its identity cert",
            request: sign("edge-identity", &edge_id_csr, ident("edge")),
            allowed: vec!["edge"],
        },
        Op {
            label: "server-side key generation (never granted)",
            request: Request::Write(
                "pki_int/issue/billing".into(),
                json!({ "common_name": server("billing") }),
            ),
            allowed: vec![],
        },
        Op {
            label: "issue an identity (never granted)",
            request: Request::Write(
                "pki_int/issue/edge-identity".into(),
                json!({ "common_name": ident("edge") }),
            ),
            allowed: vec![],
        },
        Op {
            label: "sign verbatim (never granted)",
            request: Request::Write(
                "pki_int/sign-verbatim/edge-identity".into(),
                json!({ "csr": edge_id_csr }),
            ),
            allowed: vec![],
        },
        Op {
            label: "CA chain (unauthenticated in PKI)",
            request: read("pki_int/cert/ca_chain"),
            allowed: everyone.clone(),
        },
        Op {
            label: "billing's config",
            request: read("kvv2/data/billing/config"),
            allowed: vec!["billing", "billing-ci"],
        },
        Op {
            label: "billing's stripe key",
            request: read("kvv2/data/billing/stripe"),
            allowed: vec!["billing", "billing-ci"],
        },
        Op {
            label: "ledger's config",
            request: read("kvv2/data/ledger/config"),
            allowed: vec!["ledger"],
        },
        Op {
            label: "worker's config",
            request: read("kvv2/data/worker/config"),
            allowed: vec!["worker"],
        },
        Op {
            label: "deploy billing's config",
            request: kv_write("billing/config"),
            allowed: vec!["billing-ci"],
        },
        Op {
            label: "write ledger's config",
            request: kv_write("ledger/config"),
            allowed: vec![],
        },
        Op {
            label: "operator: write a policy",
            request: Request::Write(
                "sys/policies/acl/matrix-probe".into(),
                json!({ "policy": "path \"*\" { capabilities = [\"sudo\", \"read\"] }" }),
            ),
            allowed: vec![],
        },
        Op {
            label: "operator: enable a mount",
            request: Request::Write("sys/mounts/matrix-probe".into(), json!({ "type": "kv" })),
            allowed: vec![],
        },
        Op {
            label: "operator: write a cert role",
            request: Request::Write(
                "auth/cert/certs/matrix-probe".into(),
                json!({ "display_name": "matrix-probe" }),
            ),
            allowed: vec![],
        },
        Op {
            label: "operator: list policies",
            request: Request::List("sys/policies/acl".into()),
            allowed: vec![],
        },
        Op {
            label: "mint a child token",
            request: Request::Write("auth/token/create".into(), json!({})),
            allowed: vec![],
        },
        Op {
            label: "token self-lookup (granted by exact path)",
            request: read("auth/token/lookup-self"),
            allowed: everyone.clone(),
        },
        Op {
            label: "token self-renewal (granted by exact path)",
            request: Request::Write("auth/token/renew-self".into(), json!({})),
            allowed: everyone.clone(),
        },
        Op {
            label: "token's own capabilities (granted by exact path, for `warden doctor`)",
            request: Request::Write(
                "sys/capabilities-self".into(),
                json!({ "paths": ["sys/policies/acl/default"] }),
            ),
            allowed: everyone.clone(),
        },
        // Last: it ends the row's token.
        Op {
            label: "token self-revocation (granted by exact path)",
            request: Request::Write("auth/token/revoke-self".into(), json!({})),
            allowed: everyone,
        },
    ]
}

/// Requests the identity's policy lets through but its PKI role must refuse: a name that is
/// not the identity's own can never be certified, so no identity can obtain another's mTLS
/// identity or server name.
pub(crate) async fn issuance_constraints(billing: &Client, edge: &Client) -> Vec<Case> {
    let request = |cn: &str, sans: &[&str]| {
        let key = generate_key(KeyAlgorithm::EcdsaP256).expect("key");
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let csr = make_csr(&key, cn, &sans, &[]).expect("csr");
        json!({ "csr": csr, "common_name": cn })
    };
    let d = TEST_DOMAIN;
    let attempts: [(&str, &Client, &str, Value, bool); 6] = [
        (
            "billing: own server name + own SAN",
            billing,
            "billing",
            request(&format!("billing.{d}"), &[&format!("billing-api.{d}")]),
            true,
        ),
        (
            "billing: ledger's identity name via billing-identity",
            billing,
            "billing-identity",
            request(&format!("ledger.identity.{d}"), &[]),
            false,
        ),
        (
            "billing: own name + SAN ledger.<domain>",
            billing,
            "billing",
            request(&format!("billing.{d}"), &[&format!("ledger.{d}")]),
            false,
        ),
        (
            "billing: wildcard *.<domain>",
            billing,
            "billing",
            request(&format!("*.{d}"), &[]),
            false,
        ),
        (
            "billing: sub-domain x.billing.<domain>",
            billing,
            "billing",
            request(&format!("x.billing.{d}"), &[]),
            false,
        ),
        (
            "edge: billing's identity name via edge-identity",
            edge,
            "edge-identity",
            request(&format!("billing.identity.{d}"), &[]),
            false,
        ),
    ];
    let mut cases = Vec::new();
    for (label, client, role, body, expect_ok) in attempts {
        let r = client
            .write(&format!("pki_int/sign/{role}"), &body, Idempotent::No)
            .await;
        cases.push(Case {
            label: label.to_owned(),
            expect_ok,
            outcome: classify_role_refusal(&r),
        });
    }
    cases
}

/// Logins that must be refused: a credential presented for someone else's role, a pipeline
/// token that does not match the role's claims, another environment's certificate; and the
/// pipeline's one legitimate login in prod.
pub(crate) async fn refused_and_cross_env_logins(
    test: &EnvAccess,
    prod: &EnvAccess,
    op: &Client,
    prod_op: &Client,
    ci: &CiSigner,
) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut case = |label: &str, expect_ok: bool, outcome: Outcome| {
        cases.push(Case {
            label: label.to_owned(),
            expect_ok,
            outcome,
        });
    };
    let id_cn = |name: &str| format!("{name}.identity.{TEST_DOMAIN}");

    let billing_cert = enroll(op, "billing-identity", &id_cn("billing")).await;
    let edge_cert = enroll(op, "edge-identity", &id_cn("edge")).await;
    let r = login_cert(&test.client_with(billing_cert.clone()), "ledger").await;
    case("billing cert → role ledger", false, classify_login(&r));
    let r = login_cert(&test.client_with(edge_cert), "billing").await;
    case("edge cert → role billing", false, classify_login(&r));
    let r = login_cert(&prod.client_with(billing_cert), "billing").await;
    case(
        "billing's test cert → prod (other CA)",
        false,
        classify_login(&r),
    );

    let (role_id, _) = approle_credentials(op, "worker").await;
    let made_up = secrecy::SecretString::from("00000000-0000-0000-0000-000000000000".to_owned());
    // Containers and pipelines reach the listener through their host's or runner's transport
    // certificate (ADR 0010), never the operator's.
    let worker_host = test.transport_client(op, "worker-host", TEST_DOMAIN).await;
    let r = login_approle(&worker_host, &role_id, &made_up).await;
    case(
        "worker role-id + made-up secret-id",
        false,
        classify_login(&r),
    );
    let (role_id, secret_id) = approle_credentials(op, "worker").await;
    let prod_runner = prod
        .transport_client(prod_op, "ci-runner", "prod.warden.internal")
        .await;
    let r = login_approle(&prod_runner, &role_id, &secret_id).await;
    case(
        "worker's test credentials → prod (test-only)",
        false,
        classify_login(&r),
    );

    let jwt_case = |aud: &str, repo: &str, git_ref: &str| ci_claims(ISSUER, aud, repo, git_ref);
    let role = "gitea_cicd_billing";
    let attempts: [(&str, &EnvAccess, Value, bool, bool); 7] = [
        (
            "billing-ci: branch refs/heads/dev",
            test,
            jwt_case("openbao-test", "platform/billing", "refs/heads/dev"),
            true,
            false,
        ),
        (
            "billing-ci: repository platform/ledger",
            test,
            jwt_case("openbao-test", "platform/ledger", "refs/heads/main"),
            true,
            false,
        ),
        (
            "billing-ci: prod audience at test",
            test,
            jwt_case("openbao-prod", "platform/billing", "refs/heads/main"),
            true,
            false,
        ),
        (
            "billing-ci: other issuer",
            test,
            ci_claims(
                "https://evil.example",
                "openbao-test",
                "platform/billing",
                "refs/heads/main",
            ),
            true,
            false,
        ),
        (
            "billing-ci: signed by an unknown key",
            test,
            jwt_case("openbao-test", "platform/billing", "refs/heads/main"),
            false,
            false,
        ),
        (
            "billing-ci: prod, prod audience",
            prod,
            jwt_case("openbao-prod", "platform/billing", "refs/heads/main"),
            true,
            true,
        ),
        (
            "billing-ci: prod, test audience",
            prod,
            jwt_case("openbao-test", "platform/billing", "refs/heads/main"),
            true,
            false,
        ),
    ];
    let stranger = CiSigner::generate();
    for (label, env, claims, trusted_key, expect_ok) in attempts {
        let jwt = if trusted_key {
            ci.sign(&claims)
        } else {
            stranger.sign(&claims)
        };
        let (env_op, domain) = if std::ptr::eq(env, test) {
            (op, TEST_DOMAIN)
        } else {
            (prod_op, "prod.warden.internal")
        };
        let runner = env.transport_client(env_op, "ci-runner", domain).await;
        let r = login_jwt(&runner, role, &jwt).await;
        case(label, expect_ok, classify_login(&r));
    }
    let mut expired = jwt_case("openbao-test", "platform/billing", "refs/heads/main");
    let now = expired["iat"].as_u64().expect("iat");
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let runner = test.transport_client(op, "ci-runner", TEST_DOMAIN).await;
    let r = login_jwt(&runner, role, &ci.sign(&expired)).await;
    case("billing-ci: expired an hour ago", false, classify_login(&r));
    cases
}
