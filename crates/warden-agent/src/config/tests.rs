use super::*;

pub(crate) const EXAMPLE: &str = r#"
version = 1

[identity]
name        = "billing"
kind        = "app"
env         = "test"
common_name = "billing.identity.test.warden.internal"

[openbao]
address  = "https://127.0.0.1:8200"
ca_file  = "trust/ca.pem"

[auth]
method        = "cert"
mount         = "cert"
role          = "billing"
policy        = "billing"
cert_file     = "identity/client.crt"
key_file      = "identity/client.key"
pki_mount     = "pki_int"
identity_role = "billing-identity"

[renewal]
fraction = 0.667
jitter   = 0.05
margin   = "2m"
poll     = "5m"

[[output]]
name        = "tls"
type        = "certificate"
pki_mount   = "pki_int"
role        = "billing"
common_name = "billing.test.warden.internal"
sans        = ["billing-api.test.warden.internal"]
ttl         = "72h"
key_type    = "ec-p256"
dir         = "out/tls"
mode        = "0640"
reload      = ["systemctl", "reload", "billing"]

[[output]]
name     = "config"
type     = "template"
template = "templates/config.env.j2"
path     = "out/config.env"
mode     = "0600"
reload_signal = { pid_file = "/run/billing.pid", signal = "HUP" }

[[output]]
name       = "ca"
type       = "ca_chain"
pki_mount  = "pki_int"
path       = "out/ca/chain.pem"
full_chain = true
reload     = ["systemctl", "reload", "nginx"]

[[database]]
name = "main"
path = "postgres/creds/billing"

[health]
listen = "127.0.0.1:0"
[control]
socket = "state/control.sock"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/id/agent.toml"), Path::new("/id"))
}

fn errors(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn the_documented_example_parses_into_the_model() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.identity.kind, IdentityKind::App);
    assert_eq!(
        c.openbao.ca_file.as_deref(),
        Some(Path::new("/id/trust/ca.pem"))
    );
    assert_eq!(
        c.auth.method,
        AuthMethod::Cert {
            role: "billing".into()
        }
    );
    let tls = c.auth.tls_identity.as_ref().unwrap();
    assert_eq!(tls.key_file, Path::new("/id/identity/client.key"));
    assert_eq!(
        tls.renew_with,
        Some(("pki_int".to_owned(), "billing-identity".to_owned()))
    );
    assert_eq!(c.renewal.margin, Duration::from_secs(120));
    assert_eq!(c.renewal.poll, Duration::from_secs(300));
    assert_eq!(c.outputs.len(), 3);
    let OutputKind::Certificate(cert) = &c.outputs[0].kind else {
        panic!("certificate")
    };
    assert_eq!(cert.dir, Path::new("/id/out/tls"));
    assert_eq!(cert.mode, 0o640);
    assert_eq!(cert.key_mode, 0o600);
    assert_eq!(cert.ttl, Some(Duration::from_secs(72 * 3600)));
    assert_eq!(cert.key_type.as_str(), "ec-p256");
    assert!(matches!(
        &c.outputs[1].reload,
        Some(Reload::Signal {
            signal: nix::sys::signal::Signal::SIGHUP,
            ..
        })
    ));
    let OutputKind::CaChain(ca) = &c.outputs[2].kind else {
        panic!("ca_chain")
    };
    assert!(ca.full_chain);
    assert_eq!(c.health.unwrap().listen.port(), 0);
    assert_eq!(
        c.control.unwrap().socket,
        Path::new("/id/state/control.sock")
    );
    assert_eq!(c.state_dir, Path::new("/id/state"));
    assert_eq!(
        c.databases,
        [DatabaseSource {
            name: "main".into(),
            path: "postgres/creds/billing".into(),
        }]
    );
}

#[test]
fn database_sources_are_checked_at_their_line() {
    let text = EXAMPLE.replace(
        "path = \"postgres/creds/billing\"",
        "path = \"postgres/billing\"\nttl = \"1h\"",
    );
    let e = errors(&text);
    let line = text.lines().position(|l| l.starts_with("ttl = ")).unwrap() + 1;
    assert!(
        e.contains(&format!("/id/agent.toml:{line}:1: unknown key `ttl`")),
        "{e}"
    );
    let text = EXAMPLE.replace(
        "path = \"postgres/creds/billing\"",
        "path = \"postgres/billing\"",
    );
    let e = errors(&text);
    let line = text
        .lines()
        .position(|l| l.contains("\"postgres/billing\""))
        .unwrap()
        + 1;
    assert!(
        e.contains(&format!(
            "/id/agent.toml:{line}:8: database.main.path: `postgres/billing` is not a database credentials path"
        )),
        "{e}"
    );
    assert!(e.contains("<mount>/creds/<role>"), "{e}");
    let text =
        format!("{EXAMPLE}\n[[database]]\nname = \"main\"\npath = \"postgres/creds/billing\"\n");
    let e = errors(&text);
    assert!(
        e.contains("two [[database]] sources are called `main`"),
        "{e}"
    );
    assert!(
        e.contains("postgres/creds/billing is already read by another [[database]] source"),
        "{e}"
    );
}

#[test]
fn an_unknown_key_is_reported_at_its_line_with_a_suggestion() {
    let text = EXAMPLE.replace("full_chain = true", "ful_chain = true");
    let e = errors(&text);
    let line = text
        .lines()
        .position(|l| l.starts_with("ful_chain"))
        .unwrap()
        + 1;
    assert!(
        e.starts_with(&format!("/id/agent.toml:{line}:1: unknown key `ful_chain`")),
        "{e}"
    );
    assert!(e.contains("did you mean `full_chain`?"), "{e}");
}

#[test]
fn every_problem_is_reported_at_once_with_the_key() {
    let text = EXAMPLE
        .replace("kind        = \"app\"", "kind        = \"apq\"")
        .replace("fraction = 0.667", "fraction = 1.5")
        .replace("key_type    = \"ec-p256\"", "key_type    = \"ec-p265\"")
        .replace("mode     = \"0600\"", "mode     = \"0666\"")
        .replace("type       = \"ca_chain\"", "type       = \"ca-chain\"");
    let e = errors(&text);
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("/id/")).collect();
    assert_eq!(lines.len(), 5, "{e}");
    assert!(e.contains("identity.kind: unknown kind `apq`"), "{e}");
    assert!(e.contains("help: did you mean `app`?"), "{e}");
    assert!(
        e.contains("renewal.fraction: 1.5 is not between 0 and 1"),
        "{e}"
    );
    assert!(
        e.contains("output.tls.key_type: unknown key type `ec-p265`"),
        "{e}"
    );
    assert!(e.contains("did you mean `ec-p256`?"), "{e}");
    assert!(
        e.contains("output.config.mode: mode 0666 is world-writable"),
        "{e}"
    );
    assert!(
        e.contains("output.ca.type: unknown output type `ca-chain`"),
        "{e}"
    );
    assert!(e.contains("did you mean `ca_chain`?"), "{e}");
    // In file order, each with line and column.
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        lines[0].starts_with(&format!("/id/agent.toml:{}:", line_of("\"apq\""))),
        "{e}"
    );
}

#[test]
fn keys_of_another_type_or_method_are_named() {
    let text = EXAMPLE.replace(
        "path     = \"out/config.env\"",
        "path     = \"out/config.env\"\ndir = \"x\"",
    );
    assert!(
        errors(&text).contains("output.config.dir: `dir` is not used by a template output"),
        "{}",
        errors(&text)
    );
    let text = EXAMPLE.replace(
        "identity_role = \"billing-identity\"",
        "identity_role = \"billing-identity\"\ntoken_file = \"/t\"",
    );
    assert!(errors(&text).contains("auth.token_file: `token_file` is not used by method `cert`"));
    let text = EXAMPLE.replace("role          = \"billing\"\n", "");
    assert!(errors(&text).contains("auth.role: method `cert` needs `role`"));
}

#[test]
fn approle_and_jwt_configs_validate() {
    let auth_start = EXAMPLE.find("[auth]").unwrap();
    let auth_end = EXAMPLE.find("[renewal]").unwrap();
    let with_auth =
        |auth: &str| format!("{}{auth}\n{}", &EXAMPLE[..auth_start], &EXAMPLE[auth_end..]);
    let c = parse(&with_auth(
        "[auth]\nmethod = \"approle\"\npolicy = \"worker\"\nrole_id_file = \"approle/role-id\"\nsecret_id_file = \"approle/secret-id\"\nsecret_id_wrapped = true\ncert_file = \"tls/c.crt\"\nkey_file = \"tls/c.key\"\n",
    ))
    .unwrap();
    assert_eq!(c.auth.mount, "approle");
    assert_eq!(
        c.auth.method,
        AuthMethod::AppRole {
            role_id_file: "/id/approle/role-id".into(),
            secret_id_file: "/id/approle/secret-id".into(),
            secret_id_wrapped: true,
        }
    );
    assert!(c.auth.tls_identity.as_ref().unwrap().renew_with.is_none());
    let c = parse(&with_auth(
        "[auth]\nmethod = \"jwt\"\nmount = \"jwt\"\nrole = \"ci\"\npolicy = \"ci\"\ntoken_file = \"/var/run/token\"\n",
    ))
    .unwrap();
    assert!(matches!(c.auth.method, AuthMethod::Jwt { .. }));
    assert!(c.auth.tls_identity.is_none());
    let e = parse(&with_auth("[auth]\nmethod = \"approle\"\npolicy = \"w\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("auth.role_id_file: method `approle` needs `role_id_file`"),
        "{e}"
    );
    assert!(e.contains("auth.secret_id_file"), "{e}");
    let e = parse(&with_auth("[auth]\nmethod = \"certs\"\npolicy = \"w\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `cert`?"), "{e}");
}

#[test]
fn duplicates_and_collisions_are_refused() {
    let text = format!(
        "{EXAMPLE}\n[[output]]\nname = \"tls\"\ntype = \"template\"\ncontents = \"x\"\npath = \"out/config.env\"\n"
    );
    let e = errors(&text);
    assert!(e.contains("two outputs are called `tls`"), "{e}");
    assert!(
        e.contains("out/config.env is already written by another output"),
        "{e}"
    );
}

#[test]
fn certificates_and_chains_need_a_trust_anchor() {
    let text = EXAMPLE.replace("ca_file  = \"trust/ca.pem\"\n", "");
    let e = errors(&text);
    assert!(
        e.contains("openbao.ca_file: output `tls` needs a trust anchor"),
        "{e}"
    );
}

#[test]
fn defaults_apply_when_renewal_is_left_out() {
    let start = EXAMPLE.find("[renewal]").unwrap();
    let end = EXAMPLE.find("[[output]]").unwrap();
    let text = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
    let c = parse(&text).unwrap();
    assert_eq!(c.renewal, RenewalConfig::default());
}

#[test]
fn an_issuer_window_beyond_a_year_is_refused() {
    let text = EXAMPLE.replace(
        "poll     = \"5m\"",
        "poll     = \"5m\"\nissuer_window = \"8000y\"",
    );
    let e = errors(&text);
    assert!(
        e.contains("renewal.issuer_window") && e.contains("at most 365d"),
        "{e}"
    );
    let ok = EXAMPLE.replace(
        "poll     = \"5m\"",
        "poll     = \"5m\"\nissuer_window = \"30d\"",
    );
    assert_eq!(
        parse(&ok).unwrap().renewal.issuer_window,
        Duration::from_secs(30 * 86_400)
    );
}

#[test]
fn a_toml_syntax_error_points_at_its_position() {
    let e = errors("version = 1\n[identity\n");
    assert!(e.starts_with("/id/agent.toml:2:"), "{e}");
}

#[test]
fn several_addresses_are_kept_in_order_and_checked() {
    let cluster = EXAMPLE.replace(
        "address  = \"https://127.0.0.1:8200\"",
        "addresses = [\"https://10.0.0.11:8200\", \"https://10.0.0.12:8200\"]",
    );
    let c = parse(&cluster).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.openbao.addresses,
        ["https://10.0.0.11:8200", "https://10.0.0.12:8200"]
    );
    let one = parse(EXAMPLE).unwrap();
    assert_eq!(one.openbao.addresses, ["https://127.0.0.1:8200"]);

    let both = EXAMPLE.replace(
        "address  = \"https://127.0.0.1:8200\"",
        "address  = \"https://127.0.0.1:8200\"\naddresses = [\"https://10.0.0.12:8200\"]",
    );
    let e = errors(&both);
    assert!(
        e.contains(
            "/id/agent.toml:11:12: openbao.address: `address` and `addresses` are exclusive"
        ),
        "{e}"
    );
    let neither = EXAMPLE.replace("address  = \"https://127.0.0.1:8200\"\n", "");
    assert!(
        errors(&neither).contains("openbao: no server address"),
        "{}",
        errors(&neither)
    );
    let empty = EXAMPLE.replace("address  = \"https://127.0.0.1:8200\"", "addresses = []");
    assert!(
        errors(&empty).contains("11:13: openbao.addresses: an empty address list"),
        "{}",
        errors(&empty)
    );
    let twice = EXAMPLE.replace(
        "address  = \"https://127.0.0.1:8200\"",
        "addresses = [\"https://10.0.0.11:8200\", \"ftp://x\", \"https://10.0.0.11:8200/\"]",
    );
    let e = errors(&twice);
    assert!(
        e.contains("openbao.addresses: the address must be an https://"),
        "{e}"
    );
    assert!(
        e.contains("openbao.addresses: `https://10.0.0.11:8200/` is listed twice"),
        "{e}"
    );
    // Red-team regression: a plain-HTTP node among TLS ones got the token in clear on failover.
    let mixed = EXAMPLE.replace(
        "address  = \"https://127.0.0.1:8200\"",
        "addresses = [\"https://10.0.0.11:8200\", \"http://10.0.0.12:8200\"]",
    );
    let e = errors(&mixed);
    assert!(e.contains("the nodes mix http:// and https://"), "{e}");
}

#[test]
fn a_signing_key_output_is_owner_only_by_default_and_names_what_it_lacks() {
    let text = format!(
        "{EXAMPLE}\n[[output]]\nname = \"signing-jwt\"\ntype = \"signing_key\"\nkv_mount = \"/kvv2/\"\nkv_path = \"billing/signing/jwt\"\ndir = \"out/signing/jwt\"\npurpose = \"token-signing\"\n"
    );
    let c = parse(&text).unwrap();
    let o = c.outputs.last().unwrap();
    assert_eq!(o.type_name(), "signing_key");
    let OutputKind::SigningKey(k) = &o.kind else {
        panic!("not a signing key output: {o:?}");
    };
    assert_eq!(
        (k.kv_mount.as_str(), k.kv_path.as_str()),
        ("kvv2", "billing/signing/jwt")
    );
    assert_eq!(k.dir, PathBuf::from("/id/out/signing/jwt"));
    assert_eq!((k.mode, k.key_mode), (0o600, 0o600));
    assert_eq!(k.purpose.as_deref(), Some("token-signing"));

    let text = format!(
        "{EXAMPLE}\n[[output]]\nname = \"signing-jwt\"\ntype = \"signing_key\"\ndir = \"out/signing/jwt\"\nkey_mode = \"0644\"\nfull_chain = true\n"
    );
    let e = errors(&text);
    for want in [
        "output.signing-jwt.kv_mount: a signing_key output needs `kv_mount`",
        "output.signing-jwt.kv_path: a signing_key output needs `kv_path`",
        "output.signing-jwt.key_mode: key mode 0644 is world-readable",
        "output.signing-jwt.full_chain: `full_chain` is not used by a signing_key output",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
}

/// `poll` is added to dates (the next look at every output): `8000y` for `8000s` would
/// overflow the calendar and panic the output's task, which then stops silently. Refused like
/// an issuer window beyond a year.
#[test]
fn a_poll_beyond_a_year_is_refused() {
    let text = EXAMPLE.replace("poll     = \"5m\"", "poll     = \"8000y\"");
    let e = errors(&text);
    assert!(
        e.contains("renewal.poll") && e.contains("at most 365d"),
        "{e}"
    );
    let ok = EXAMPLE.replace("poll     = \"5m\"", "poll     = \"365d\"");
    assert_eq!(
        parse(&ok).unwrap().renewal.poll,
        Duration::from_secs(365 * 86_400)
    );
}
