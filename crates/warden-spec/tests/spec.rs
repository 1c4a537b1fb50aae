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
