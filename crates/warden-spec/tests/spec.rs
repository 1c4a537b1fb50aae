//! Spec parsing and validation: the example file, and what a wrong spec says.

use warden_spec::{IdentityKind, KeyType, parse};

const EXAMPLE: &str = include_str!("../../../examples/lab/warden.toml");

#[test]
fn example_spec_validates() {
    let spec = parse(EXAMPLE, "warden.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.environments.len(), 2);
    let kinds: Vec<_> = spec
        .identities
        .iter()
        .map(|i| (i.kind, i.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (IdentityKind::App, "billing"),
            (IdentityKind::App, "ledger"),
            (IdentityKind::Proxy, "edge"),
            (IdentityKind::Container, "worker"),
            (IdentityKind::Pipeline, "billing-ci"),
        ]
    );
    let billing = spec.identity("billing").unwrap();
    assert_eq!(spec.naming.policy.render(&billing.name), "billing");
    assert_eq!(spec.naming.ops_policy.render(&billing.name), "billing-ops");
    assert_eq!(
        spec.naming.ci_role.render(&billing.name),
        "gitea_cicd_billing"
    );
    let cert = billing.certificate.as_ref().unwrap();
    assert_eq!(cert.ttl.as_secs(), 72 * 3600);
    assert_eq!(
        spec.identity("ledger")
            .unwrap()
            .certificate
            .as_ref()
            .unwrap()
            .key_type,
        KeyType::Rsa2048
    );
    let ci = spec
        .identity("billing-ci")
        .unwrap()
        .pipeline
        .as_ref()
        .unwrap();
    assert_eq!(ci.app.as_str(), "billing");
    assert_eq!(spec.environment("prod").unwrap().mounts.kv, "kvv2");
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, "w.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.diagnostics.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn unknown_key_names_line_and_suggests() {
    let text = "version = 1\n[environments.test]\ndomain = \"t.internal\"\n[apps.a]\nenvironmnets = [\"test\"]\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("w.toml:5:1: unknown key `environmnets`"),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].contains("did you mean `environments`?"),
        "{}",
        errs[0]
    );
}

#[test]
fn unknown_environment_is_located_and_suggested() {
    let text = "version = 1\n[environments.test]\ndomain = \"t.internal\"\n[environments.prod]\ndomain = \"p.internal\"\n[apps.a]\nenvironments = [\"test\", \"prdo\"]\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("w.toml:7:25: apps.a.environments: unknown environment `prdo`"),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains("did you mean `prod`?"));
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = r#"version = 1
[environments.test]
domain = "t.internal"
[apps.a]
environments = ["test"]
secrets = ["../other/config"]
[apps.a.certificate]
ttl = "3 weeks"
key_type = "ec-p265"
[proxies.a]
environments = ["test"]
[pipelines.ci]
app = "b"
environments = ["test"]
repository = "org/repo"
[[waivers]]
rule = "sudoo"
identity = "a"
reason = "short"
"#;
    let errs = errors(text).join("\n");
    for needle in [
        "w.toml:6:12: apps.a: `../other/config` is not a secret name",
        "w.toml:8:7: apps.a.certificate.ttl:",
        "unknown key type `ec-p265`",
        "did you mean `ec-p256`?",
        "w.toml:10:10: proxies.a: `a` is already declared as an app",
        "pipelines.ci.app: unknown app `b`",
        "environment `test` has no CI identity provider",
        "unknown lint rule `sudoo`",
        "did you mean `sudo`?",
        "a waiver needs a real reason",
    ] {
        assert!(errs.contains(needle), "missing {needle:?} in:\n{errs}");
    }
}

#[test]
fn proxies_cannot_declare_secrets() {
    let text = "version = 1\n[environments.test]\ndomain = \"t.internal\"\n[proxies.p]\nenvironments = [\"test\"]\nsecrets = [\"config\"]\n";
    let errs = errors(text);
    assert!(errs[0].contains("6:1: unknown key `secrets`"), "{errs:?}");
}

#[test]
fn naming_templates_must_use_the_slug() {
    let text = "version = 1\n[naming]\npolicy = \"fixed\"\nops_policy = \"<app>-<env>\"\n[environments.test]\ndomain = \"t.internal\"\n";
    let errs = errors(text).join("\n");
    assert!(
        errs.contains("w.toml:3:10: naming.policy: a naming template must contain `<app>`"),
        "{errs}"
    );
    assert!(
        errs.contains("naming.ops_policy: only the `<app>` placeholder"),
        "{errs}"
    );
}

#[test]
fn plain_http_addresses_are_refused() {
    let text = "version = 1\n[environments.test]\ndomain = \"t.internal\"\naddress = \"http://127.0.0.1:8200\"\n";
    let errs = errors(text);
    assert!(errs[0].contains("HTTPS only"), "{errs:?}");
}

const NODES: &str = r#"version = 1
[environments.prod]
domain = "p.internal"
[[environments.prod.nodes]]
name = "prod-1"
address = "https://10.0.0.11:8200"
cluster_address = "https://10.0.0.11:8201"
[[environments.prod.nodes]]
name = "prod-2"
address = "https://10.0.0.12:8200/"
cluster_address = "https://10.0.0.12:8201"
"#;

#[test]
fn nodes_give_the_api_addresses_in_order() {
    let spec = parse(NODES, "w.toml").unwrap_or_else(|e| panic!("{e}"));
    let prod = spec.environment("prod").unwrap();
    assert_eq!(prod.nodes.len(), 2);
    assert_eq!(prod.nodes[0].name.as_str(), "prod-1");
    assert_eq!(prod.nodes[1].cluster_address, "https://10.0.0.12:8201");
    assert_eq!(
        prod.api_addresses(),
        ["https://10.0.0.11:8200", "https://10.0.0.12:8200"],
        "in declaration order, trailing slash dropped"
    );
    assert_eq!(prod.address, None);

    let one =
        "version = 1\n[environments.test]\ndomain = \"t.internal\"\naddress = \"https://b:8200\"\n";
    let spec = parse(one, "w.toml").unwrap();
    assert_eq!(spec.environments[0].api_addresses(), ["https://b:8200"]);
    let lab = "version = 1\n[environments.test]\ndomain = \"t.internal\"\n";
    assert!(
        parse(lab, "w.toml").unwrap().environments[0]
            .api_addresses()
            .is_empty()
    );
}

#[test]
fn bad_nodes_are_each_located() {
    let text = r#"version = 1
[environments.prod]
domain = "p.internal"
address = "https://lb:8200"
[[environments.prod.nodes]]
name = "prod-1"
address = "https://10.0.0.11:8200"
cluster_address = "https://10.0.0.11:8201"
[[environments.prod.nodes]]
name = "prod-1"
address = "https://10.0.0.12:8200"
cluster_address = "https://10.0.0.12:8201"
[[environments.prod.nodes]]
name = "prod-3"
address = "http://10.0.0.13:8200"
cluster_address = "https://10.0.0.11:8200"
[[environments.prod.nodes]]
name = "Prod 4"
address = "https://10.0.0.14:8200"
cluster_address = "https://10.0.0.14:8201"
[[environments.prod.nodes]]
name = "prod-5"
address = "https://10.0.0.15:8200/v1"
cluster_address = "https://10.0.0.15:8201"
"#;
    let errs = errors(text).join("\n");
    for want in [
        "w.toml:4:11: environments.prod.address: `address` and `nodes` are exclusive",
        "w.toml:10:8: environments.prod.nodes.name: node `prod-1` is declared twice",
        "w.toml:15:11: environments.prod.nodes.address: `http://10.0.0.13:8200` is not HTTPS",
        "w.toml:16:19: environments.prod.nodes.cluster_address: `https://10.0.0.11:8200` is already used by node `prod-1` (address)",
        "w.toml:18:8: environments.prod.nodes.name: `Prod 4` is not a valid name",
        "w.toml:23:11: environments.prod.nodes.address: `https://10.0.0.15:8200/v1` has a path",
    ] {
        assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
    }
    assert!(
        errs.contains("help: clients fail over across the nodes' addresses"),
        "{errs}"
    );

    let empty = "version = 1\n[environments.prod]\ndomain = \"p.internal\"\nnodes = []\n";
    let errs = errors(empty).join("\n");
    assert!(
        errs.contains("w.toml:4:9: environments.prod.nodes: an empty node list"),
        "{errs}"
    );
    let unknown = NODES.replace("name = \"prod-1\"", "name = \"prod-1\"\nraft_port = 8201");
    assert!(
        all_errors(&unknown).contains("raft_port"),
        "unknown keys are refused"
    );
}

// ---- purposes, engines, domains, workloads ------------------------------------------------

const BASE: &str = r#"version = 1
[environments.test]
domain = "t.internal"
[apps.billing]
environments = ["test"]
secrets = ["config"]
"#;

const COVER_ALL: &str = r#"
[purposes.all]
description = "d"
owner = "o"
tier = "vault_kv"
delivery = "agent_file"
rotation = { interval = "30d" }
evidence = "E"
covers = ["billing/identity-cert", "billing/certificate", "billing/secret/config"]
"#;

fn all_errors(text: &str) -> String {
    match parse(text, "w.toml") {
        Ok(_) => panic!("expected diagnostics for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_credential_of_the_example_has_exactly_one_purpose() {
    let spec = parse(EXAMPLE, "warden.toml").unwrap_or_else(|e| panic!("{e}"));
    let creds = spec.credentials();
    assert!(creds.len() >= 14, "{creds:?}");
    for c in &creds {
        let p = spec.purpose_of(&c.id);
        assert!(p.is_some(), "{} has no purpose", c.id);
        let n = spec.purposes.iter().filter(|p| p.covers(&c.id)).count();
        assert_eq!(n, 1, "{} is under {n} purposes", c.id);
    }
    let stripe = spec.purpose_of("billing/secret/stripe").unwrap();
    assert_eq!(stripe.id.as_str(), "billing-stripe");
    // max_age defaults to interval + 2 × grace.
    assert_eq!(stripe.rotation.max_age.as_secs(), (30 + 14) * 86_400);
}

#[test]
fn purpose_patterns_must_match_and_never_overlap() {
    let text = format!(
        "{BASE}{COVER_ALL}{}",
        r#"
[purposes.again]
description = "d"
owner = "o"
tier = "vault_kv"
delivery = "agent_file"
rotation = { interval = "30d" }
evidence = "E"
covers = ["*/secret/config", "billing/secret/confg"]
"#
    );
    let e = all_errors(&text);
    assert!(
        e.contains("`billing/secret/config` is already governed by purpose `again`"),
        "{e}"
    );
    assert!(
        e.contains("`billing/secret/confg` matches no credential")
            && e.contains("did you mean `billing/secret/config`"),
        "{e}"
    );
}

#[test]
fn tier_and_delivery_must_fit_the_credential() {
    let text = format!(
        "{}{COVER_ALL}{}",
        BASE.replace(
            "secrets = [\"config\"]",
            "secrets = [\"config\"]\ntransit_keys = [{ name = \"pay\" }]"
        ),
        r#"
[purposes.pay]
description = "d"
owner = "o"
tier = "vault_kv"
delivery = "reveal_once"
rotation = { interval = "30d" }
evidence = "E"
covers = ["billing/transit/pay"]
"#
    );
    let e = all_errors(&text);
    assert!(e.contains("cannot live under tier `vault_kv`"), "{e}");
    assert!(
        e.contains("`billing/transit/pay` cannot be revealed once"),
        "{e}"
    );
}

#[test]
fn max_age_must_cover_interval_and_grace() {
    let text = format!(
        "{BASE}{}",
        COVER_ALL.replace(
            "rotation = { interval = \"30d\" }",
            "rotation = { interval = \"30d\", grace = \"7d\", max_age = \"31d\" }"
        )
    );
    let e = all_errors(&text);
    assert!(
        e.contains("max_age is shorter than interval + grace"),
        "{e}"
    );
}

#[test]
fn databases_need_placeholders_and_a_declaration() {
    let text = format!(
        "{}{COVER_ALL}{}",
        BASE.replace(
            "secrets = [\"config\"]",
            "secrets = [\"config\"]\ndatabases = [\"mian\"]"
        ),
        r#"
[databases.main]
environments   = ["test"]
connection_url = "postgresql://admin:hunter2@db:5432/app"
username       = "admin"
password_file  = "db.pass"
"#
    );
    let e = all_errors(&text);
    assert!(
        e.contains("{{username}} and {{password}} placeholders"),
        "{e}"
    );
    assert!(
        e.contains("unknown database `mian`") && e.contains("did you mean `main`"),
        "{e}"
    );
}

/// A database serves an app where both are declared (the example's lab database is in `test`
/// only, billing in `test` and `prod`); one declared in none of the app's environments is a
/// mistake, named with the environments to pick from.
#[test]
fn a_database_must_share_an_environment_with_the_app_that_uses_it() {
    let with_db = |db_envs: &str| {
        format!(
            "{}{}\n[databases.main]\nenvironments = {db_envs}\nconnection_url = \"postgresql://{{{{username}}}}:{{{{password}}}}@db:5432/app\"\nusername = \"admin\"\npassword_file = \"db.pass\"\n[purposes.db]\ndescription = \"d\"\nowner = \"o\"\ntier = \"ephemeral\"\ndelivery = \"agent_file\"\nrotation = {{ interval = \"1h\" }}\nevidence = \"E\"\ncovers = [\"billing/database/main\"]\n",
            BASE.replace(
                "[environments.test]",
                "[environments.prod]\ndomain = \"p.internal\"\n[environments.test]"
            )
            .replace(
                "environments = [\"test\"]\nsecrets = [\"config\"]",
                "environments = [\"test\"]\nsecrets = [\"config\"]\ndatabases = [\"main\"]"
            ),
            COVER_ALL
        )
    };
    let e = all_errors(&with_db("[\"prod\"]"));
    assert!(
        e.contains("database `main` is declared in none of the app's environments (test)")
            && e.contains("add one of them to [databases.main].environments"),
        "{e}"
    );
    let text = with_db("[\"test\", \"prod\"]");
    parse(&text, "w.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
}

#[test]
fn domains_and_workloads_are_checked() {
    let text = format!(
        "{}{COVER_ALL}{}",
        BASE.replace(
            "secrets = [\"config\"]",
            "secrets = [\"config\"]\nkubernetes = { namespace = \"billing\", service_account = \"billing\" }"
        ),
        r#"
[domains."shop.example.com"]
environments = ["test"]
app          = "biling"

[domains."www.example.com"]
environments = ["test"]
app          = "billing"
ttl          = "10d"
renew_before = "30d"
"#
    );
    let e = all_errors(&text);
    assert!(
        e.contains("environment `test` trusts no service-account token issuer"),
        "{e}"
    );
    assert!(
        e.contains("unknown app `biling`") && e.contains("did you mean `billing`"),
        "{e}"
    );
    assert!(
        e.contains("renew_before is not shorter than the certificate's lifetime"),
        "{e}"
    );
}

#[test]
fn acme_domains_are_parsed_and_their_mistakes_reported() {
    let with = |domains: &str| format!("{}{COVER_ALL}{domains}", BASE);
    let good = with(
        r#"
[domains."shop.example.com"]
environments = ["test"]
app          = "billing"
issuer       = "acme"
[domains."shop.example.com".acme]
contact           = ["mailto:ops@example.com"]
listen            = "127.0.0.7:80"
challenge_timeout = "30s"

[domains."www.example.com"]
environments = ["test"]
app          = "billing"
"#,
    );
    let spec = parse(&good, "w.toml").unwrap_or_else(|e| panic!("{e}\n{good}"));
    let shop = spec
        .domains
        .iter()
        .find(|d| d.domain == "shop.example.com")
        .unwrap();
    let warden_spec::DomainIssuer::Acme(acme) = &shop.issuer else {
        panic!("{:?}", shop.issuer)
    };
    assert_eq!(
        acme.directory, None,
        "no directory: the environment's own OpenBao"
    );
    assert_eq!(acme.listen.to_string(), "127.0.0.7:80");
    assert_eq!(acme.challenge_timeout.0.as_secs(), 30);
    assert_eq!(acme.contact, ["mailto:ops@example.com"]);
    let www = spec
        .domains
        .iter()
        .find(|d| d.domain == "www.example.com")
        .unwrap();
    assert_eq!(www.issuer, warden_spec::DomainIssuer::Pki);

    let e = all_errors(&with(
        r#"
[domains."shop.example.com"]
environments = ["test"]
app          = "billing"
issuer       = "acmee"

[domains."a.example.com"]
environments = ["test"]
app          = "billing"
[domains."a.example.com".acme]
listen = "127.0.0.1:80"

[domains."b.example.com"]
environments = ["test"]
app          = "billing"
issuer       = "acme"
[domains."b.example.com".acme]
directory = "http://ca.example.net/directory"
contact   = ["ops@example.com"]
listen    = "0.0.0.0:80"
"#,
    ));
    for want in [
        "unknown issuer `acmee`",
        "did you mean `acme`",
        "an [acme] table without issuer = \"acme\"",
        "`http://ca.example.net/directory` is not an https:// URL",
        "`ops@example.com` is not a mailto: URL",
        "0.0.0.0:80 is not a loopback address",
        "allow_non_loopback = true",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
    let exposed = with(
        r#"
[domains."b.example.com"]
environments = ["test"]
app          = "billing"
issuer       = "acme"
[domains."b.example.com".acme]
listen             = "0.0.0.0:80"
allow_non_loopback = true
"#,
    );
    parse(&exposed, "w.toml").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn transport_holders_of_the_example_and_their_mistakes() {
    let spec = parse(EXAMPLE, "warden.toml").unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = spec.transport.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ci-runner", "worker-host"]);
    let host = spec.transport_holder("worker-host").unwrap();
    assert_eq!(host.carries[0].as_str(), "worker");
    assert_eq!(host.ttl.as_secs(), 24 * 3600);
    assert!(host.in_env("test") && !host.in_env("prod"));

    let with = |table: &str| format!("{EXAMPLE}\n{table}\n");
    let app = all_errors(&with(
        "[transport.h]\nenvironments = [\"test\"]\ncarries = [\"billing\"]",
    ));
    assert!(
        app.contains("`billing` is an app, which presents its own identity certificate"),
        "{app}"
    );
    let typo = all_errors(&with(
        "[transport.h]\nenvironments = [\"test\"]\ncarries = [\"wroker\"]",
    ));
    assert!(
        typo.contains("unknown container or pipeline `wroker`") && typo.contains("worker"),
        "{typo}"
    );
    let elsewhere = all_errors(&with(
        "[transport.h]\nenvironments = [\"prod\"]\ncarries = [\"worker\"]",
    ));
    assert!(
        elsewhere.contains("`worker` lives in none of this holder's environments"),
        "{elsewhere}"
    );
    let long = all_errors(&with(
        "[transport.h]\nenvironments = [\"test\"]\ncarries = [\"worker\"]\nttl = \"30d\"",
    ));
    assert!(long.contains("between 1m and 7d"), "{long}");
}

// ---- signing keys: RS256 and token lifetimes ----------------------------------------------

/// `BASE` with `keys` as billing's signing keys, and purposes covering everything.
fn with_signing_keys(keys: &str) -> String {
    format!(
        "{}{COVER_ALL}{}",
        BASE.replace(
            "secrets = [\"config\"]",
            &format!("secrets = [\"config\"]\nsigning_keys = [{keys}]")
        ),
        r#"
[purposes.token-signing]
description = "d"
owner = "o"
tier = "vault_kv"
delivery = "api"
rotation = { interval = "90d", grace = "24h" }
evidence = "E"
covers = ["billing/signing-key/*"]
"#
    )
}

#[test]
fn rs256_keys_take_a_modulus_size() {
    let spec = parse(
        &with_signing_keys(
            r#"{ name = "a", algorithm = "rs256" }, { name = "b", algorithm = "rs256", rsa_bits = 3072 }, { name = "c" }"#,
        ),
        "w.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let keys = &spec.identity("billing").unwrap().signing_keys;
    let got: Vec<_> = keys
        .iter()
        .map(|k| (k.algorithm.jws_alg(), k.rsa_bits))
        .collect();
    assert_eq!(
        got,
        [
            ("RS256", Some(2048)),
            ("RS256", Some(3072)),
            ("ES256", None)
        ]
    );

    let e = all_errors(&with_signing_keys(
        r#"{ name = "a", algorithm = "rs256", rsa_bits = 1024 }, { name = "b", algorithm = "eddsa", rsa_bits = 2048 }, { name = "c", algorithm = "rs512" }"#,
    ));
    assert!(e.contains("rsa_bits 1024 is not supported"), "{e}");
    assert!(
        e.contains("help: use rsa_bits = 2048 (the default) or 3072"),
        "{e}"
    );
    assert!(
        e.contains("rsa_bits applies to algorithm = \"rs256\" only, not `eddsa`"),
        "{e}"
    );
    assert!(
        e.contains("unknown signing algorithm `rs512`") && e.contains("`rs256`"),
        "{e}"
    );
}

#[test]
fn grace_must_cover_the_declared_token_lifetime() {
    let spec = parse(
        &with_signing_keys(r#"{ name = "jwt", grace = "2h", max_token_lifetime = "1h" }"#),
        "w.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let key = &spec.identity("billing").unwrap().signing_keys[0];
    assert_eq!(key.max_token_lifetime.map(|t| t.as_secs()), Some(3600));

    // Shorter grace: refused at the grace, with where and what to write.
    let text = with_signing_keys(r#"{ name = "jwt", grace = "10m", max_token_lifetime = "1h" }"#);
    let e = errors(&text).join("\n");
    assert!(
        e.contains("w.toml:7:41: apps.billing.signing_keys.grace: signing key `jwt`: grace 10m is shorter than max_token_lifetime 1h"),
        "{e}"
    );
    assert!(e.contains("help: set grace = \"1h\" or more"), "{e}");
    // The default grace (24h) against a longer lifetime: refused at the lifetime.
    let e = all_errors(&with_signing_keys(
        r#"{ name = "jwt", max_token_lifetime = "2d" }"#,
    ));
    assert!(
        e.contains("apps.billing.signing_keys.max_token_lifetime: signing key `jwt`: grace 1d is shorter than max_token_lifetime 2d"),
        "{e}"
    );
    let e = all_errors(&with_signing_keys(
        r#"{ name = "jwt", max_token_lifetime = "soon" }"#,
    ));
    assert!(e.contains("max_token_lifetime"), "{e}");
}

// ---- [ca]: the chain's cadence (issue 14) ----------------------------------------------------

fn ca_spec(ca: &str) -> String {
    format!("{BASE}{COVER_ALL}\n[ca]\n{ca}\n")
}

#[test]
fn ca_policy_defaults_and_values() {
    let spec = parse(&format!("{BASE}{COVER_ALL}"), "w.toml").unwrap();
    assert_eq!(spec.ca, warden_spec::CaPolicy::default());
    let spec = parse(
        &ca_spec("root_lifetime = \"20y\"\nintermediate_lifetime = \"1y\"\nrotate_at = 0.5\noverlap = \"60d\"\nreissue_window = \"2h\"\nreissue_rate = 120"),
        "w.toml",
    )
    .unwrap();
    assert_eq!(spec.ca.reissue_rate, Some(120));
    assert_eq!(spec.ca.rotate_at.get(), 0.5);
    assert_eq!(spec.ca.overlap.as_secs(), 60 * 86_400);
    assert_eq!(spec.ca.reissue_window.as_secs(), 7_200);
}

#[test]
fn ca_policy_refuses_what_cannot_overlap() {
    let frac = all_errors(&ca_spec("rotate_at = 1.5"));
    assert!(
        frac.contains("ca.rotate_at") && frac.contains("strictly between 0 and 1"),
        "{frac}"
    );
    let nest = all_errors(&ca_spec(
        "root_lifetime = \"1y\"\nintermediate_lifetime = \"2y\"",
    ));
    assert!(nest.contains("must end before the root"), "{nest}");
    let gap = all_errors(&ca_spec(
        "intermediate_lifetime = \"90d\"\nrotate_at = 0.9\noverlap = \"30d\"",
    ));
    assert!(
        gap.contains("ca.overlap") && gap.contains("outlasts"),
        "{gap}"
    );
    let storm = all_errors(&ca_spec("overlap = \"1h\"\nreissue_window = \"2h\""));
    assert!(storm.contains("reissue_window"), "{storm}");
    for bad in ["reissue_rate = 0", "reissue_rate = -5"] {
        let rate = all_errors(&ca_spec(bad));
        assert!(
            rate.contains("ca.reissue_rate") && rate.contains("certificates a minute"),
            "{rate}"
        );
    }
    let typo = all_errors(&ca_spec("overlaps = \"1d\""));
    assert!(typo.contains("overlap"), "{typo}");
}

#[test]
fn a_mount_named_with_an_acl_wildcard_is_refused() {
    for bad in ["+", "kv*", "auth/+"] {
        let text = format!(
            "version = 1\n[environments.test]\ndomain = \"t.internal\"\n[environments.test.mounts]\nkubernetes = \"{bad}\"\n"
        );
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.contains("environments.test.mounts.kubernetes")
                    && e.contains("not a valid mount path")),
            "{bad}: {errs:?}"
        );
    }
}
