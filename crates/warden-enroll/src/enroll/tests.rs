use super::*;

const SPEC: &str = include_str!("../../../../examples/lab/warden.toml");

fn spec() -> Spec {
    warden_spec::parse(SPEC, "warden.toml").unwrap()
}

#[test]
fn only_apps_and_proxies_in_their_environments_are_enrollable() {
    let spec = spec();
    let test = spec.environment("test").unwrap();
    let prod = spec.environment("prod").unwrap();
    assert_eq!(
        enrollable(&spec, test, "billing").unwrap().name.as_str(),
        "billing"
    );
    assert_eq!(
        enrollable(&spec, prod, "edge").unwrap().name.as_str(),
        "edge"
    );

    let e = enrollable(&spec, test, "worker").unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotEnrollable {
                kind: "container",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("AppRole"), "{e}");
    let e = enrollable(&spec, test, "billing-ci").unwrap_err();
    assert!(e.to_string().contains("JWT"), "{e}");
    // worker lives only in test; the kind is the first thing wrong, so it is what is said.
    assert!(matches!(
        enrollable(&spec, prod, "worker"),
        Err(Error::NotEnrollable { .. })
    ));

    let e = enrollable(&spec, test, "biling").unwrap_err();
    assert_eq!(
        e.to_string(),
        "the spec has no identity `biling`; did you mean `billing`?"
    );
    let e = enrollable(&spec, test, "zzzzzzzz").unwrap_err();
    assert_eq!(e.to_string(), "the spec has no identity `zzzzzzzz`");
}

#[test]
fn an_identity_outside_the_environment_is_refused_with_where_it_lives() {
    let text = SPEC.replace(
        "[apps.ledger]\nenvironments = [\"test\", \"prod\"]",
        "[apps.ledger]\nenvironments = [\"test\"]",
    );
    assert_ne!(text, SPEC, "the example spec changed shape");
    let spec = warden_spec::parse(&text, "warden.toml").unwrap();
    let prod = spec.environment("prod").unwrap();
    let e = enrollable(&spec, prod, "ledger").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`ledger` does not live in `prod` (it is in: test)"
    );
}

#[test]
fn names_follow_the_spec() {
    let spec = spec();
    let test = spec.environment("test").unwrap();
    let n = Names::new(&spec, test, spec.identity("billing").unwrap());
    assert_eq!(n.common_name, "billing.identity.test.warden.internal");
    assert_eq!(n.sign_path, "pki_int/sign/billing-identity");
    assert_eq!(n.cert_mount, "cert");
    assert_eq!(n.cert_role, "billing");
    assert_eq!(n.policy, "billing");
}

#[test]
fn agent_config_follows_the_spec_and_passes_the_agents_checks() {
    let spec = spec();
    let test = spec.environment("test").unwrap();
    let cfg_for = |name: &str| {
        let id = spec.identity(name).unwrap();
        agent_config(
            &spec,
            test,
            id,
            &Names::new(&spec, test, id),
            &["https://127.0.0.1:8200/"],
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let check = |cfg: &AgentConfig| {
        let path = tmp.path().join("agent.toml");
        std::fs::write(&path, cfg.to_toml(&path).unwrap()).unwrap();
        warden_agent::Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    };

    let billing = cfg_for("billing");
    let names: Vec<&str> = billing.outputs.iter().map(|o| o.name.as_str()).collect();
    // The example's billing uses the lab database `main` in `test` (issue 17).
    assert_eq!(
        names,
        ["tls", "secret-config", "secret-stripe", "database-main"]
    );
    let tls = &billing.outputs[0];
    assert_eq!(
        tls.common_name.as_deref(),
        Some("billing.test.warden.internal")
    );
    assert_eq!(tls.sans, ["billing-api.test.warden.internal"]);
    assert_eq!(tls.ttl.as_deref(), Some("3d"));
    assert_eq!(tls.role.as_deref(), Some("billing"));
    assert_eq!(
        tls.reload.as_deref(),
        Some(
            &[
                "systemctl".to_owned(),
                "reload".to_owned(),
                "billing".to_owned()
            ][..]
        )
    );
    assert_eq!(
        billing.outputs[1].contents.as_deref(),
        Some("{{ kv(\"kvv2\", \"billing/config\") | tojson }}\n")
    );
    assert_eq!(
        billing.outputs[2].path.as_deref(),
        Some("out/secrets/stripe.json")
    );
    assert_eq!(
        billing.auth.identity_role.as_deref(),
        Some("billing-identity")
    );
    let parsed = check(&billing);
    assert_eq!(parsed.auth.mount, "cert");
    assert_eq!(parsed.outputs.len(), 4);

    let ledger = cfg_for("ledger");
    assert_eq!(ledger.outputs[0].key_type.as_deref(), Some("rsa-2048"));
    check(&ledger);

    let edge = cfg_for("edge");
    assert_eq!(edge.outputs.len(), 2);
    assert_eq!(edge.outputs[0].kind, "ca_chain");
    assert_eq!(edge.outputs[0].full_chain, Some(true));
    assert_eq!(edge.outputs[0].path.as_deref(), Some("out/ca/chain.pem"));
    // The CRL, next to the chain, reloaded the same way.
    assert_eq!(edge.outputs[1].kind, "crl");
    assert_eq!(edge.outputs[1].path.as_deref(), Some("out/ca/crl.pem"));
    assert_eq!(edge.outputs[1].reload, edge.outputs[0].reload);
    assert_eq!(check(&edge).outputs.len(), 2);
}

#[test]
fn an_app_with_a_database_gets_a_source_and_a_credentials_file() {
    // The example's billing lists `databases = ["main"]`, declared in `test` (issue 17).
    let spec = spec();
    let test = spec.environment("test").unwrap();
    let id = spec.identity("billing").unwrap();
    let cfg = agent_config(
        &spec,
        test,
        id,
        &Names::new(&spec, test, id),
        &["https://127.0.0.1:8200/"],
    );
    assert_eq!(
        cfg.databases,
        [DatabaseSection {
            name: "main".into(),
            path: "postgres/creds/billing".into(),
        }]
    );
    let out = cfg
        .outputs
        .iter()
        .find(|o| o.name == "database-main")
        .expect("a database output");
    assert_eq!(out.kind, "template");
    assert_eq!(
        out.contents.as_deref(),
        Some("{{ database(\"main\") | tojson }}\n")
    );
    assert_eq!(out.path.as_deref(), Some("out/database/main.json"));
    assert_eq!(out.mode.as_deref(), Some("0600"));
    assert_eq!(out.reload, id.reload);
    // What enroll writes is what the agent accepts.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("agent.toml");
    std::fs::write(&path, cfg.to_toml(&path).unwrap()).unwrap();
    let parsed = warden_agent::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.databases.len(), 1);
    // An identity without a database gets neither.
    let ledger = spec.identity("ledger").unwrap();
    let cfg = agent_config(
        &spec,
        test,
        ledger,
        &Names::new(&spec, test, ledger),
        &["https://127.0.0.1:8200/"],
    );
    assert!(cfg.databases.is_empty());
    assert!(!cfg.outputs.iter().any(|o| o.name.starts_with("database-")));
    // Nor does billing where the database is not declared.
    let prod = spec.environment("prod").unwrap();
    let cfg = agent_config(
        &spec,
        prod,
        id,
        &Names::new(&spec, prod, id),
        &["https://127.0.0.1:8200/"],
    );
    assert!(cfg.databases.is_empty());
    assert!(!cfg.outputs.iter().any(|o| o.name.starts_with("database-")));
}

#[test]
fn serials_print_like_openbao() {
    assert_eq!(colon_serial("0a1b2c"), "0a:1b:2c");
    assert_eq!(colon_serial("00ff10"), "ff:10");
    assert_eq!(colon_serial("0010"), "00:10");
}

#[test]
fn the_presented_chain_leaves_out_self_signed_roots() {
    let root_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let root = p.self_signed(&root_key).unwrap();
    let int_key = rcgen::KeyPair::generate().unwrap();
    let mut ip = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::from_params(&p, &root_key);
    let int = ip.signed_by(&int_key, &issuer).unwrap();
    let chain = client_chain("LEAF", &[int.pem(), root.pem()], "");
    assert!(chain.starts_with("LEAF\n"));
    assert!(chain.contains(int.pem().trim()));
    assert!(!chain.contains(root.pem().trim()));
    // Without ca_chain, the issuing CA is used.
    let chain = client_chain("LEAF", &[], &int.pem());
    assert!(chain.contains(int.pem().trim()));
}

#[test]
fn report_serialises_action_and_reason_for_scripts() {
    let report = EnrollReport {
        identity: "billing".into(),
        kind: "app",
        env: "test".into(),
        action: CertAction::Issued,
        reason: Some(IssueReason::New),
        certificate: CertificateReport {
            common_name: "cn".into(),
            serial: "01".into(),
            issuer: "CN=i".into(),
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
            sha256: "00".into(),
        },
        paths: PathsReport {
            dir: "/d".into(),
            client_key: "/d/identity/client.key".into(),
            client_cert: "/d/identity/client.crt".into(),
            ca_bundle: "/d/trust/ca.pem".into(),
            out_dir: "/d/out".into(),
            state_dir: "/d/state".into(),
            agent_config: "/d/agent.toml".into(),
        },
        owner: OwnerReport {
            user: "root".into(),
            uid: 0,
            gid: 0,
            mode: "current-user",
            created: false,
        },
        verification: Verification {
            auth_mount: "cert".into(),
            cert_role: "billing".into(),
            policies: vec!["billing".into()],
            test_token_revoked: true,
            revoked_by: Some("token"),
        },
    };
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["action"], "issued");
    assert_eq!(v["reason"], "new");
    assert!(!v.to_string().contains("PRIVATE KEY"));
}

/// Issue 17 (exec_env): a secret whose purpose says `delivery = "exec_env"` gets no file; it
/// becomes an `[[exec_env]]` entry for `warden-agent exec`, governed by its purpose.
#[test]
fn an_exec_env_secret_is_no_file_but_an_exec_env_entry() {
    let text = SPEC.replace(
        "delivery    = \"agent_file\"\nrotation    = { interval = \"30d\", grace = \"7d\" }\ncustody     = \"issued by the provider's dashboard",
        "delivery    = \"exec_env\"\nrotation    = { interval = \"30d\", grace = \"7d\" }\ncustody     = \"issued by the provider's dashboard",
    );
    assert_ne!(text, SPEC, "the example spec changed shape");
    let spec = warden_spec::parse(&text, "warden.toml").unwrap();
    let test = spec.environment("test").unwrap();
    let id = spec.identity("billing").unwrap();
    let cfg = agent_config(
        &spec,
        test,
        id,
        &Names::new(&spec, test, id),
        &["https://127.0.0.1:8200/"],
    );
    let names: Vec<&str> = cfg.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        ["tls", "secret-config", "database-main"],
        "no file for the exec_env secret (the database file is the lab database's, issue 17)"
    );
    assert_eq!(
        cfg.exec_env,
        [ExecEnvSection {
            name: "STRIPE".to_owned(),
            mount: "kvv2".to_owned(),
            path: "billing/stripe".to_owned(),
            field: None,
            purpose: Some("billing-stripe".to_owned()),
        }]
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("agent.toml");
    std::fs::write(&path, cfg.to_toml(&path).unwrap()).unwrap();
    let parsed = warden_agent::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.exec_env[0].path, "billing/stripe");
}

/// A signing key whose purpose delivers it as files gets a `signing_key` output (the agent
/// accepts it); one read through the API, as in the example spec, gets none.
#[test]
fn a_signing_key_delivered_as_files_gets_an_output() {
    let text = SPEC.replacen(
        "delivery    = \"api\"\nrotation    = { interval = \"90d\", grace = \"24h\" }\nevidence    = \"EV-TOKENS\"",
        "delivery    = \"agent_file\"\nrotation    = { interval = \"90d\", grace = \"24h\" }\nevidence    = \"EV-TOKENS\"",
        1,
    );
    assert_ne!(
        text, SPEC,
        "the example's token-signing purpose changed shape"
    );
    let spec = warden_spec::parse(&text, "warden.toml").unwrap();
    let test = spec.environment("test").unwrap();
    let id = spec.identity("billing").unwrap();
    let cfg = agent_config(
        &spec,
        test,
        id,
        &Names::new(&spec, test, id),
        &["https://127.0.0.1:8200/"],
    );
    let out = cfg
        .outputs
        .iter()
        .find(|o| o.kind == "signing_key")
        .expect("a signing_key output");
    assert_eq!(out.name, "signing-jwt");
    assert_eq!(
        (out.kv_mount.as_deref(), out.kv_path.as_deref()),
        (Some("kvv2"), Some("billing/signing/jwt"))
    );
    assert_eq!(out.dir.as_deref(), Some("out/signing/jwt"));
    assert_eq!(out.purpose.as_deref(), Some("token-signing"));
    assert_eq!(out.reload, id.reload);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("agent.toml");
    std::fs::write(&path, cfg.to_toml(&path).unwrap()).unwrap();
    warden_agent::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));

    let example = spec_example_billing_outputs();
    assert!(!example.iter().any(|k| k == "signing_key"), "{example:?}");
}

fn spec_example_billing_outputs() -> Vec<String> {
    let spec = spec();
    let test = spec.environment("test").unwrap();
    let id = spec.identity("billing").unwrap();
    agent_config(
        &spec,
        test,
        id,
        &Names::new(&spec, test, id),
        &["https://127.0.0.1:8200/"],
    )
    .outputs
    .into_iter()
    .map(|o| o.kind)
    .collect()
}
