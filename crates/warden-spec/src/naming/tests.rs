use super::*;
use crate::{Spec, parse};

/// Every template and mount differs from its default and from the identity's name, so each
/// expected path shows which template and which mount it came from.
const SPEC: &str = r#"
version = 1

[naming]
policy        = "<app>-rt"
ops_policy    = "<app>-ops"
kv_prefix     = "apps/<app>"
db_role       = "<app>-db"
db_group      = "<app>_group"
ci_role       = "ci-<app>"
pki_role      = "<app>-leaf"
cert_role     = "<app>-cert"
approle_role  = "<app>-ar"
identity_role = "<app>-id"

[environments.test]
domain        = "t.example"
runtime_owner = "w"
app_root      = "/srv"

[environments.test.mounts]
pki      = "pki_t"
kv       = "kv_t"
kv_v1    = "kv1_t"
transit  = "transit_t"
database = "db_t"
approle  = "approle_t"
jwt      = "jwt_t"

[environments.test.ci]
issuer   = "https://ci.example"
audience = "openbao-test"

[apps.billing]
environments = ["test"]
secrets      = ["config", "db/readonly"]
databases    = ["main"]
transit_keys = [{ name = "payments", type = "aes256-gcm96" }]
signing_keys = [{ name = "jwt", algorithm = "es256" }]

[apps.billing.certificate]
ttl = "24h"

[proxies.edge]
environments = ["test"]

[containers.worker]
environments = ["test"]

[pipelines.billing-ci]
app          = "billing"
environments = ["test"]
repository   = "platform/billing"
branches     = ["main"]

[databases.main]
environments   = ["test"]
connection_url = "postgresql://{{username}}:{{password}}@db:5432/app"
username       = "admin"
password_file  = "db.pass"

[domains."shop.example.com"]
environments = ["test"]
app          = "billing"
"#;

fn spec() -> Spec {
    parse(SPEC, "naming.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// The location of the credential `id` of [`SPEC`] in `test`.
fn at(spec: &Spec, id: &str) -> Location {
    let env = spec.environment("test").expect("test");
    let cred = spec
        .credentials()
        .into_iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no credential {id}"));
    location(spec, env, &cred).unwrap_or_else(|| panic!("{id} has no location"))
}

fn kv(mount: &str, path: &str) -> Location {
    Location::Kv(KvEntry {
        mount: mount.into(),
        path: path.into(),
    })
}

#[test]
fn every_credential_kind_has_its_location() {
    let s = spec();
    let role = |mount: &str, role: &str| (mount.to_owned(), role.to_owned());
    assert_eq!(
        at(&s, "billing/identity-cert"),
        Location::PkiRole {
            mount: "pki_t".into(),
            role: "billing-id".into()
        }
    );
    assert_eq!(
        at(&s, "edge/identity-cert"),
        Location::PkiRole {
            mount: "pki_t".into(),
            role: "edge-id".into()
        }
    );
    assert_eq!(
        at(&s, "billing/certificate"),
        Location::PkiRole {
            mount: "pki_t".into(),
            role: "billing-leaf".into()
        }
    );
    assert_eq!(
        at(&s, "billing/secret/config"),
        kv("kv_t", "apps/billing/config")
    );
    assert_eq!(
        at(&s, "billing/secret/db/readonly"),
        kv("kv_t", "apps/billing/db/readonly")
    );
    assert_eq!(
        at(&s, "billing/signing-key/jwt"),
        kv("kv_t", "apps/billing/signing/jwt")
    );
    assert_eq!(
        at(&s, "domain/shop-example-com"),
        kv("kv_t", "domains/shop.example.com/cert")
    );
    let Location::DatabaseRole { mount, role: r } = at(&s, "billing/database/main") else {
        panic!("database credentials come from a database role");
    };
    assert_eq!((mount, r), role("db_t", "billing-db"));
    let Location::AppRole { mount, role: r } = at(&s, "worker/secret-id") else {
        panic!("a secret-id comes from an AppRole role");
    };
    assert_eq!((mount, r), role("approle_t", "worker-ar"));
    // The pipeline logs in with its app's CI role, not one named after the pipeline.
    let Location::JwtRole { mount, role: r } = at(&s, "billing-ci/ci-token") else {
        panic!("a CI token comes from a JWT role");
    };
    assert_eq!((mount, r), role("jwt_t", "ci-billing"));
    assert_eq!(
        at(&s, "billing/transit/payments"),
        Location::TransitKey {
            mount: "transit_t".into(),
            key: "billing-payments".into()
        }
    );
}

#[test]
fn every_credential_of_the_spec_has_a_location() {
    let s = spec();
    let env = s.environment("test").expect("test");
    let creds = s.credentials();
    assert_eq!(creds.len(), 11, "{creds:#?}");
    for c in &creds {
        assert!(location(&s, env, c).is_some(), "{} has no location", c.id);
    }
}

#[test]
fn a_credential_the_spec_does_not_declare_has_no_location() {
    let s = spec();
    let env = s.environment("test").expect("test");
    let billing = Slug::parse("billing").expect("slug");
    let stranger = Credential::new(
        billing.clone(),
        CredentialKind::DomainCert("nowhere-example".into()),
        vec![],
    );
    assert_eq!(location(&s, env, &stranger), None);
    // `billing` is an app, not a pipeline: it has no CI role.
    let not_a_pipeline = Credential::new(billing, CredentialKind::CiToken, vec![]);
    assert_eq!(location(&s, env, &not_a_pipeline), None);
}

#[test]
fn locations_print_as_api_paths() {
    let s = spec();
    let shown = |id: &str| at(&s, id).to_string();
    assert_eq!(shown("billing/secret/config"), "kv_t/apps/billing/config");
    assert_eq!(shown("billing/certificate"), "pki_t/roles/billing-leaf");
    assert_eq!(shown("billing/database/main"), "db_t/roles/billing-db");
    assert_eq!(shown("worker/secret-id"), "auth/approle_t/role/worker-ar");
    assert_eq!(shown("billing-ci/ci-token"), "auth/jwt_t/role/ci-billing");
    assert_eq!(
        shown("billing/transit/payments"),
        "transit_t/keys/billing-payments"
    );
    let secret = at(&s, "billing/secret/config");
    assert_eq!(secret.mount(), "kv_t");
    assert_eq!(secret.path(), "apps/billing/config");
    let Location::Kv(entry) = secret else {
        panic!("a secret is a KV entry")
    };
    assert_eq!(entry.data_path(), "kv_t/data/apps/billing/config");
    assert_eq!(entry.metadata_path(), "kv_t/metadata/apps/billing/config");
}

#[test]
fn credential_references_are_rendered_from_the_typed_id() {
    let s = spec();
    let ids: Vec<String> = s.credentials().into_iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [
            "billing/identity-cert",
            "billing/certificate",
            "billing/secret/config",
            "billing/secret/db/readonly",
            "billing/database/main",
            "billing/transit/payments",
            "billing/signing-key/jwt",
            "edge/identity-cert",
            "worker/secret-id",
            "billing-ci/ci-token",
            "domain/shop-example-com",
        ]
    );
}

#[test]
fn policies_common_names_and_warden_own_entries() {
    let s = spec();
    let env = s.environment("test").expect("test");
    let id = |n: &str| s.identity(n).expect("identity");
    assert_eq!(policy_name(&s, id("billing")), "billing-rt");
    assert_eq!(policy_name(&s, id("worker")), "worker-rt");
    // A pipeline carries its app's ops policy.
    assert_eq!(policy_name(&s, id("billing-ci")), "billing-ops");
    assert_eq!(
        identity_common_name(id("edge"), env),
        "edge.identity.t.example"
    );
    let billing = &id("billing").name;
    assert_eq!(kv_prefix(&s.naming, billing), "apps/billing");
    assert_eq!(secret_path(&s.naming, billing, "x"), "apps/billing/x");
    assert_eq!(transit_key_name(billing, "k"), "billing-k");
    assert_eq!(ownership_record().data_path(), "warden/data/owned");
    assert_eq!(
        record_pages(&registry_entry("cfg")).data_path(),
        "warden/data/pages/registry/cfg"
    );
    assert_eq!(
        registry_entry("app-config").data_path(),
        "warden/data/registry/app-config"
    );
    assert_eq!(
        delivery_report("billing").data_path(),
        "warden/data/delivered/billing"
    );
    assert_eq!(
        reveal_records("boot").metadata_path(),
        "warden/metadata/reveal/boot"
    );
    assert_eq!(
        reveal_record("boot", "abc").data_path(),
        "warden/data/reveal/boot/abc"
    );
}

/// Every `[naming]` field is rendered into an OpenBao path, so each refuses `.`, `..` and
/// empty segments, at the template's position and with what to write instead.
#[test]
fn every_template_refuses_dot_dotdot_and_empty_segments() {
    const FIELDS: [&str; 10] = [
        "policy",
        "ops_policy",
        "kv_prefix",
        "db_role",
        "db_group",
        "ci_role",
        "pki_role",
        "cert_role",
        "approle_role",
        "identity_role",
    ];
    for field in FIELDS {
        for (bad, what) in [
            ("<app>/../ledger", "a `..` path segment"),
            ("../<app>", "a `..` path segment"),
            ("./<app>", "a `.` path segment"),
            ("<app>//x", "an empty path segment"),
            ("/<app>", "an empty path segment"),
            ("<app>/", "an empty path segment"),
        ] {
            let text = format!(
                "version = 1\n[naming]\n{field} = \"{bad}\"\n[environments.test]\ndomain = \"t.example\"\n"
            );
            let err = match parse(&text, "w.toml") {
                Ok(_) => panic!("naming.{field} = {bad:?} was accepted"),
                Err(e) => e.to_string(),
            };
            let col = field.len() + 4;
            let want = format!("w.toml:3:{col}: naming.{field}: `{bad}` has {what}");
            assert!(err.contains(&want), "{field} = {bad:?}: {err}");
            assert!(
                err.contains("\n  help: write names separated by single '/'"),
                "{err}"
            );
        }
    }
}

#[test]
fn clean_templates_with_folders_and_dots_are_accepted() {
    let text = "version = 1\n[naming]\nkv_prefix = \"team/<app>.v2\"\npki_role = \"<app>..leaf\"\n[environments.test]\ndomain = \"t.example\"\n";
    let s = parse(text, "w.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.naming.kv_prefix.as_str(), "team/<app>.v2");
}

#[test]
fn an_environment_without_mounts_gets_the_default_mounts() {
    let text = "version = 1\n[environments.test]\ndomain = \"t.example\"\n";
    let s = parse(text, "w.toml").unwrap_or_else(|e| panic!("{e}"));
    let m = &s.environment("test").expect("test").mounts;
    use default_mounts as d;
    assert_eq!(
        [
            &m.pki,
            &m.kv,
            &m.kv_v1,
            &m.transit,
            &m.database,
            &m.cert_auth,
            &m.approle,
            &m.jwt,
            &m.kubernetes,
        ],
        [
            d::PKI,
            d::KV,
            d::KV_V1,
            d::TRANSIT,
            d::DATABASE,
            d::CERT_AUTH,
            d::APPROLE,
            d::JWT,
            d::KUBERNETES,
        ]
    );
}

/// Issue 14: what each environment's intermediate must permit, from the example platform.
#[test]
fn environment_names_cover_the_domain_outside_names_and_domain_certificates() {
    let text = r#"
version = 1
[environments.test]
domain = "test.warden.internal"
[environments.prod]
domain = "prod.warden.internal"
[apps.billing]
environments = ["test", "prod"]
[apps.billing.certificate]
common_name = "billing.<domain>"
sans        = ["billing-api.<domain>", "billing.<env>.example.com"]
ttl         = "72h"
key_type    = "ec-p256"
[domains."shop.warden.example"]
environments = ["prod"]
app          = "billing"
"#;
    let spec: Spec = parse(text, "t.toml").unwrap();
    let names = |e: &str| environment_names(&spec, spec.environment(e).unwrap());
    assert_eq!(
        names("test"),
        ["billing.test.example.com", "test.warden.internal"]
    );
    assert_eq!(
        names("prod"),
        [
            "billing.prod.example.com",
            "prod.warden.internal",
            "shop.warden.example"
        ]
    );
    // Identity common names sit inside the domain the intermediate permits.
    let billing = spec
        .identities
        .iter()
        .find(|i| i.name.as_str() == "billing")
        .unwrap();
    let cn = identity_common_name(billing, spec.environment("prod").unwrap());
    assert!(cn.ends_with(".prod.warden.internal"), "{cn}");
}

#[test]
fn outermost_names_match_the_pairwise_rule_and_stay_linear() {
    let pairwise = |names: &[&str]| {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort();
        v.dedup();
        let inside = |n: &str, of: &str| n != of && n.ends_with(&format!(".{of}"));
        v.iter()
            .filter(|n| !v.iter().any(|of| inside(n, of)))
            .cloned()
            .collect::<Vec<_>>()
    };
    let cases: [&[&str]; 4] = [
        &["a.b.c", "b.c", "c", "x.y", "ab.c.d", "b.c.d", "xb.c"],
        &[
            "test.warden.internal",
            "billing.test.warden.internal",
            "billing.test.example.com",
        ],
        &["z", "z", "y.z", "w.y.z", "wy.z"],
        &[],
    ];
    for names in cases {
        let owned: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        assert_eq!(outermost(owned), pairwise(names), "{names:?}");
    }
    // 20,000 names (10,000 identities, a name and a SAN each): linear, not 4·10⁸ comparisons.
    let mut many = vec!["test.warden.internal".to_owned()];
    for i in 0..10_000 {
        many.push(format!("app-{i:05}.test.warden.internal"));
        many.push(format!("app-{i:05}-api.example.com"));
    }
    let start = std::time::Instant::now();
    let out = outermost(many);
    assert_eq!(out.len(), 10_001);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
