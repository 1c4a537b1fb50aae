//! Template rendering against a real `bao server -dev`: secrets written with the root token,
//! read back by templates, and every failure checked for its template name, line and the
//! absence of secret values.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use warden_bao::{Client, ClientConfig, ExposeSecret, Idempotent, MountOptions, RetryPolicy};
use warden_testkit::BaoDev;

use super::*;

const PASSWORD: &str = "s3cr3t-Pa55word-QX7";
const API_KEY: &str = "sk_live_ABCDEF123456";

fn client(dev: &BaoDev, token: warden_bao::SecretString) -> Client {
    Client::new(
        ClientConfig::from_address(dev.addr())
            .expect("dev address")
            .with_token(token)
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client")
}

fn root(dev: &BaoDev) -> Client {
    client(dev, dev.root_token().clone())
}

/// A dev server with a KV v2 secret at `secret/billing/config`, a KV v1 mount `legacy` with
/// `legacy/stripe`, and an index secret naming another path (for dependent reads).
async fn seeded() -> (BaoDev, Client) {
    let dev = BaoDev::start().await;
    let c = root(&dev);
    c.write(
        "secret/data/billing/config",
        &json!({"data": {"user": "billing", "password": PASSWORD, "port": 5432, "replicas": ["a", "b"]}}),
        Idempotent::No,
    )
    .await
    .expect("write kv v2");
    c.write(
        "secret/data/billing/index",
        &json!({"data": {"target": "billing/config"}}),
        Idempotent::No,
    )
    .await
    .expect("write index");
    c.enable_secrets_engine(
        "legacy",
        "kv",
        &MountOptions::default().with_option("version", "1"),
    )
    .await
    .expect("mount kv v1");
    c.write(
        "legacy/stripe",
        &json!({"api_key": API_KEY}),
        Idempotent::Yes,
    )
    .await
    .expect("write kv v1");
    (dev, c)
}

fn ctx(client: &Client) -> RenderContext<'_> {
    RenderContext {
        client,
        trust_anchor_pem: "",
        now: OffsetDateTime::now_utc(),
        databases: None,
    }
}

fn inline(name: &str, text: &str) -> TemplateOutput {
    TemplateOutput {
        name: name.to_owned(),
        source: TemplateSource::Inline(text.to_owned()),
        file_name: "out.env".to_owned(),
        mode: 0o600,
    }
}

async fn render(client: &Client, name: &str, text: &str) -> Result<String, RenderError> {
    let r = inline(name, text).render(&ctx(client)).await?;
    assert_eq!(r.files.len(), 1);
    assert_eq!(r.files[0].name, "out.env");
    assert_eq!(r.files[0].mode, 0o600);
    assert!(r.not_after.is_none() && r.serial.is_none());
    Ok(String::from_utf8(r.files[0].contents.to_vec()).expect("utf-8"))
}

/// The error as a `Template` variant's parts; panics on any other variant.
fn template_err(err: &RenderError) -> (&str, &str, usize, &str) {
    match err {
        RenderError::Template {
            output,
            template,
            line,
            message,
        } => (output, template, *line, message),
        other => panic!("expected a template error, got {other:?}"),
    }
}

fn assert_no_secrets(text: &str) {
    for s in [PASSWORD, API_KEY] {
        assert!(!text.contains(s), "secret leaked into: {text}");
    }
}

#[tokio::test]
async fn kv_v2_kv_v1_filters_and_loops_render() {
    let (_dev, c) = seeded().await;
    let text = r#"{% set cfg = kv("secret", "billing/config") -%}
DB_USER={{ cfg.user }}
DB_PASSWORD={{ cfg.password }}
DB_PORT={{ cfg.port }}
STRIPE={{ kv1("legacy", "stripe").api_key }}
B64={{ cfg.user | b64encode }}
JSON={{ cfg.replicas | tojson }}
{% for k, v in kv1("legacy", "stripe") | items %}{{ k }};{% endfor %}
{% for r in cfg.replicas %}{{ r }}{% if not loop.last %},{% endif %}{% endfor %}
"#;
    let out = render(&c, "config", text).await.expect("renders");
    assert_eq!(
        out,
        format!(
            "DB_USER=billing\nDB_PASSWORD={PASSWORD}\nDB_PORT=5432\nSTRIPE={API_KEY}\nB64=YmlsbGluZw==\nJSON=[\"a\", \"b\"]\napi_key;\na,b\n"
        ),
        "the trailing newline is kept and nothing is HTML-escaped"
    );
    // No HTML escaping even for a template named like an HTML file.
    let r = TemplateOutput {
        source: TemplateSource::Inline("{{ '<&>' }}".into()),
        ..inline("page.html", "")
    }
    .render(&ctx(&c))
    .await
    .expect("renders");
    assert_eq!(&r.files[0].contents[..], b"<&>");
}

#[tokio::test]
async fn dependent_reads_and_the_ca_chain_function() {
    let (_dev, c) = seeded().await;
    // The path of the second read comes out of the first: two rounds of reads.
    let out = render(
        &c,
        "dep",
        r#"{{ kv("secret", kv("secret", "billing/index").target).user }}"#,
    )
    .await
    .expect("renders");
    assert_eq!(out, "billing");
    // A branch that only a real value opens still gets its read.
    let out = render(
        &c,
        "branch",
        r#"{% if kv("secret", "billing/config").user == "billing" %}{{ kv1("legacy", "stripe").api_key | length }}{% endif %}"#,
    )
    .await
    .expect("renders");
    assert_eq!(out, API_KEY.len().to_string());

    c.enable_secrets_engine("pki", "pki", &MountOptions::default())
        .await
        .expect("mount pki");
    c.write(
        "pki/root/generate/internal",
        &json!({"common_name": "Dev Root", "ttl": "24h"}),
        Idempotent::No,
    )
    .await
    .expect("root");
    let want = c.pki_ca_chain("pki").await.expect("chain");
    assert!(want.contains("BEGIN CERTIFICATE"));
    let out = render(&c, "ca", r#"{{ ca_chain("pki") }}"#)
        .await
        .expect("renders");
    assert_eq!(out, want);
}

#[tokio::test]
async fn undefined_key_is_an_error_with_its_line_and_no_secret() {
    let (_dev, c) = seeded().await;
    let text = "{% set cfg = kv(\"secret\", \"billing/config\") %}\nok={{ cfg.user }}\nbad={{ cfg.pasword }}\n";
    let err = render(&c, "config", text).await.unwrap_err();
    let (output, template, line, message) = template_err(&err);
    assert_eq!((output, template, line), ("config", "inline:config", 3));
    assert!(message.contains("undefined"), "{message}");
    assert!(
        message.contains("cfg.pasword"),
        "names the expression: {message}"
    );
    assert!(!err.is_transient());
    assert_no_secrets(&err.to_string());
    assert_no_secrets(&format!("{err:?}"));

    // An unknown variable, too; and a fallback only when the template asks for one.
    let err = render(&c, "config", "a\n{{ nope }}").await.unwrap_err();
    assert_eq!(template_err(&err).2, 2);
    let out = render(
        &c,
        "config",
        r#"{{ kv("secret", "billing/config").missing | default("fallback") }}"#,
    )
    .await
    .expect("explicit default");
    assert_eq!(out, "fallback");
}

#[tokio::test]
async fn syntax_errors_name_template_and_line() {
    let (_dev, c) = seeded().await;
    let err = render(&c, "broken", "line one\nline two\n{% if %}\n")
        .await
        .unwrap_err();
    let (_, template, line, message) = template_err(&err);
    assert_eq!((template, line), ("inline:broken", 3));
    assert!(message.starts_with("syntax error"), "{message}");
    assert!(
        err.to_string()
            .starts_with("output broken: template inline:broken line 3: syntax error"),
        "{err}"
    );

    // From a file: errors name the file; the file is read at each render.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.env.j2");
    std::fs::write(&path, "x={{ kv(\"secret\", \"billing/config\").user }}\n").expect("write");
    let out = TemplateOutput {
        name: "file".into(),
        source: TemplateSource::File(path.clone()),
        file_name: "config.env".into(),
        mode: 0o640,
    };
    let r = out.render(&ctx(&c)).await.expect("renders");
    assert_eq!(&r.files[0].contents[..], b"x=billing\n");
    assert_eq!(
        (r.files[0].name.as_str(), r.files[0].mode),
        ("config.env", 0o640)
    );
    std::fs::write(&path, "ok\n{% for %}\n").expect("write");
    let err = out.render(&ctx(&c)).await.unwrap_err();
    let (_, template, line, _) = template_err(&err);
    assert_eq!((template, line), (path.display().to_string().as_str(), 2));
    std::fs::remove_file(&path).expect("rm");
    let err = out.render(&ctx(&c)).await.unwrap_err();
    let (_, _, line, message) = template_err(&err);
    assert_eq!(line, 0);
    assert!(
        message.contains("cannot use the template file"),
        "{message}"
    );

    // Whoever can write a template picks the secrets in its output: a world-writable one is
    // refused. A FIFO at its name is refused at once rather than hanging the output.
    std::fs::write(
        &path,
        "x={{ kv(\"secret\", \"billing/config\").password }}\n",
    )
    .expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let err = out.render(&ctx(&c)).await.unwrap_err();
    let (_, _, _, message) = template_err(&err);
    assert!(message.contains("lets other users change"), "{message}");
    std::fs::remove_file(&path).expect("rm");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let err = tokio::time::timeout(Duration::from_secs(5), out.render(&ctx(&c)))
        .await
        .expect("a FIFO at the template's name must not hang the render")
        .unwrap_err();
    let (_, _, _, message) = template_err(&err);
    assert!(message.contains("is not a regular file"), "{message}");
}

#[tokio::test]
async fn missing_and_deleted_secrets_are_errors_at_the_calling_line() {
    let (_dev, c) = seeded().await;
    let err = render(&c, "t", "first\n{{ kv(\"secret\", \"billing/nope\").x }}")
        .await
        .unwrap_err();
    let (_, _, line, message) = template_err(&err);
    assert_eq!(line, 2);
    assert!(
        message.starts_with(r#"kv("secret", "billing/nope"): nothing at secret/data/billing/nope"#),
        "{message}"
    );

    // The wrong engine version: a v2 mount read as v1 says which function to use.
    let err = render(&c, "t", "{{ kv1(\"secret\", \"billing/config\") }}")
        .await
        .unwrap_err();
    let (_, _, line, message) = template_err(&err);
    assert_eq!(line, 1);
    assert!(
        message.contains("use kv() for a version 2 mount"),
        "{message}"
    );

    // A deleted current version is missing, not empty.
    c.delete("secret/data/billing/config")
        .await
        .expect("soft delete");
    let err = render(&c, "t", "\n\n{{ kv(\"secret\", \"billing/config\").user }}")
        .await
        .unwrap_err();
    let (_, _, line, message) = template_err(&err);
    assert_eq!(line, 3);
    assert!(message.contains("is deleted or destroyed"), "{message}");

    // A PKI mount without an issuer has no chain to render.
    c.enable_secrets_engine("pki", "pki", &MountOptions::default())
        .await
        .expect("mount pki");
    let err = render(&c, "t", "{{ ca_chain(\"pki\") }}")
        .await
        .unwrap_err();
    assert!(template_err(&err).3.contains("no default issuer"), "{err}");

    // Bad path arguments never reach the server.
    let err = render(&c, "t", "\n{{ kv(\"secret\", \"../sys/mounts\") }}")
        .await
        .unwrap_err();
    let (_, _, line, message) = template_err(&err);
    assert_eq!(line, 2);
    assert!(message.contains("is not a valid path"), "{message}");
}

#[tokio::test]
async fn permission_denied_keeps_the_client_error() {
    let (dev, c) = seeded().await;
    c.put_policy(
        "billing-read",
        r#"path "secret/data/billing/config" { capabilities = ["read"] }"#,
    )
    .await
    .expect("policy");
    let created = c
        .write(
            "auth/token/create",
            &json!({"policies": ["billing-read"], "no_default_policy": true, "ttl": "10m"}),
            Idempotent::No,
        )
        .await
        .expect("token")
        .and_then(|s| s.auth)
        .expect("auth block");
    let limited = client(&dev, created.client_token.clone());
    let out = render(
        &limited,
        "t",
        "{{ kv(\"secret\", \"billing/config\").user }}",
    )
    .await
    .expect("allowed read");
    assert_eq!(out, "billing");
    let err = render(&limited, "t", "{{ kv1(\"legacy\", \"stripe\").api_key }}")
        .await
        .unwrap_err();
    match &err {
        RenderError::Bao {
            output,
            what,
            source,
        } => {
            assert_eq!(output, "t");
            assert!(source.is_permission_denied(), "{source:?}");
            assert!(
                what.contains(r#"kv1("legacy", "stripe") reads legacy/stripe"#),
                "{what}"
            );
        }
        other => panic!("expected a client error, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert!(!format!("{err:?}").contains(created.client_token.expose_secret()));

    // Denied on a path built from a secret: the client error would quote the path, so it is
    // reported redacted, at its line, instead.
    let err = render(
        &limited,
        "t",
        "{% set cfg = kv(\"secret\", \"billing/config\") %}\n{{ kv(\"secret\", cfg.password) }}",
    )
    .await
    .unwrap_err();
    let (_, _, line, message) = template_err(&err);
    assert_eq!(line, 2);
    assert!(message.contains("(status 403)"), "{message}");
    assert_no_secrets(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn secret_values_are_redacted_from_errors_and_debug() {
    let (_dev, c) = seeded().await;
    // A secret used as a path: the failure message would quote it.
    let err = render(
        &c,
        "t",
        "{% set cfg = kv(\"secret\", \"billing/config\") %}\n{{ kv(\"secret\", cfg.password).x }}",
    )
    .await
    .unwrap_err();
    let (_, _, line, message) = template_err(&err);
    assert_eq!(line, 2);
    assert!(message.contains("<redacted>"), "{message}");
    assert_no_secrets(&err.to_string());
    assert_no_secrets(&format!("{err:?}"));

    // A secret with a space used as a path fails validation, quoting it — also redacted.
    c.write(
        "secret/data/spaced",
        &json!({"data": {"v": format!("{PASSWORD} {API_KEY}")}}),
        Idempotent::No,
    )
    .await
    .expect("write");
    let err = render(
        &c,
        "t",
        "{{ kv(\"secret\", kv(\"secret\", \"spaced\").v) }}",
    )
    .await
    .unwrap_err();
    assert!(
        template_err(&err).3.contains("is not a valid path"),
        "{err}"
    );
    assert_no_secrets(&err.to_string());

    // What rendered fine still never shows in Debug.
    let out = inline("t", "{{ kv(\"secret\", \"billing/config\").password }}");
    let rendered = out.render(&ctx(&c)).await.expect("renders");
    assert_eq!(&rendered.files[0].contents[..], PASSWORD.as_bytes());
    assert_no_secrets(&format!("{rendered:?} {out:?}"));
}

#[tokio::test]
async fn runaway_templates_are_bounded() {
    let (_dev, c) = seeded().await;
    let started = std::time::Instant::now();
    let err = render(
        &c,
        "loop",
        "x\n{% for i in range(10000) %}{% for j in range(10000) %}.{% endfor %}{% endfor %}",
    )
    .await
    .unwrap_err();
    let (_, _, line, message) = template_err(&err);
    assert_eq!(line, 2);
    assert!(message.contains("fuel"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A loop that builds paths is stopped before it sends anything.
    let err = render(
        &c,
        "many",
        "{% for i in range(200) %}{{ kv(\"secret\", \"n/\" ~ i) }}{% endfor %}",
    )
    .await
    .unwrap_err();
    assert!(
        template_err(&err)
            .3
            .contains(&format!("more than {MAX_READS} secrets")),
        "{err}"
    );

    // No loader: other files are out of reach.
    let err = render(&c, "inc", "{% include \"/etc/passwd\" %}")
        .await
        .unwrap_err();
    assert!(template_err(&err).3.contains("template not found"), "{err}");

    // b64encode refuses what is not text instead of guessing.
    let err = render(&c, "b", "{{ 42 | b64encode }}").await.unwrap_err();
    assert!(
        template_err(&err).3.contains("b64encode needs a string"),
        "{err}"
    );
}

#[tokio::test]
async fn a_sealed_server_is_a_transient_client_error() {
    let (dev, c) = seeded().await;
    c.seal().await.expect("seal");
    let err = render(&c, "t", "{{ kv(\"secret\", \"billing/config\").user }}")
        .await
        .unwrap_err();
    assert!(matches!(err, RenderError::Bao { .. }), "{err:?}");
    assert!(err.is_transient(), "{err:?}");
    drop(dev);
}

#[test]
fn the_render_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let out = inline("t", "x");
    let client = Client::new(ClientConfig::from_address("http://127.0.0.1:1").expect("addr"))
        .expect("client");
    let ctx = ctx(&client);
    let fut = out.render(&ctx);
    assert_send(&fut);
}

// ---- database() -----------------------------------------------------------------------------

const DB_PASSWORD: &str = "A1a-dynamic-db-PASSWORD-9z";

/// A lease book stand-in: hands out fixed credentials for `main`, fails like a sealed server
/// for `sealed`, and records who asked.
#[derive(Default)]
struct FakeBook {
    calls: Mutex<Vec<(String, String)>>,
}

impl super::super::DatabaseCredentials for FakeBook {
    fn credentials<'a>(
        &'a self,
        source: &'a str,
        output: &'a str,
    ) -> super::super::BoxFuture<'a, Result<super::super::DbCredentials, DbCredentialsError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push((source.to_owned(), output.to_owned()));
            match source {
                "main" => Ok(super::super::DbCredentials {
                    username: "v-cert-billing-main-x1".to_owned(),
                    password: DB_PASSWORD.to_owned().into(),
                    expires: time::macros::datetime!(2030-01-01 00:00:20 UTC),
                    generation: 3,
                }),
                "sealed" => Err(DbCredentialsError::Bao {
                    path: "postgres/creds/billing".to_owned(),
                    source: Box::new(warden_bao::Error::Sealed {
                        address: "https://127.0.0.1:8200".to_owned(),
                    }),
                }),
                other => Err(DbCredentialsError::UnknownSource {
                    name: other.to_owned(),
                    known: vec!["main".to_owned(), "sealed".to_owned()],
                }),
            }
        })
    }
}

fn nowhere() -> Client {
    // database() never reads OpenBao itself: a client to a closed port proves it.
    Client::new(
        ClientConfig::from_address("http://127.0.0.1:9")
            .expect("address")
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client")
}

async fn render_db(book: &FakeBook, name: &str, text: &str) -> Result<Rendered, RenderError> {
    let c = nowhere();
    let ctx = RenderContext {
        client: &c,
        trust_anchor_pem: "",
        now: OffsetDateTime::now_utc(),
        databases: Some(book),
    };
    inline(name, text).render(&ctx).await
}

#[tokio::test]
async fn database_credentials_render_and_record_their_generation() {
    let book = FakeBook::default();
    let text = "{% set db = database(\"main\") -%}\nuser={{ db.username }}\npass={{ db.password }}\nexp={{ db.expires }}\njson={{ database(\"main\") | tojson }}\n";
    let r = render_db(&book, "db", text).await.expect("renders");
    let out = String::from_utf8(r.files[0].contents.to_vec()).unwrap();
    assert_eq!(
        out,
        format!(
            "user=v-cert-billing-main-x1\npass={DB_PASSWORD}\nexp=2030-01-01T00:00:20Z\njson={{\"expires\": \"2030-01-01T00:00:20Z\", \"password\": \"{DB_PASSWORD}\", \"username\": \"v-cert-billing-main-x1\"}}\n"
        )
    );
    assert_eq!(
        r.database_generations,
        [("main".to_owned(), 3)].into_iter().collect()
    );
    // One call per render however often the template names the source, by this output.
    assert_eq!(
        *book.calls.lock().unwrap(),
        [("main".to_owned(), "db".to_owned())]
    );
}

#[tokio::test]
async fn database_failures_name_the_line_and_never_the_password() {
    let book = FakeBook::default();
    let err = render_db(&book, "db", "ok\n{{ database(\"mian\").username }}\n")
        .await
        .unwrap_err();
    let (_, _, line, message) = template_err(&err);
    assert_eq!(line, 2);
    assert!(
        message.contains("database(\"mian\"): no [[database]] source called \"mian\""),
        "{message}"
    );
    assert!(message.contains("declared: main, sealed"), "{message}");
    assert!(!err.is_transient());

    // A key that is not there: the error names the expression, not the values.
    let err = render_db(&book, "db", "{{ database(\"main\").pasword }}")
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(DB_PASSWORD), "{text}");

    // A sealed server is a client error the runtime retries.
    let err = render_db(&book, "db", "{{ database(\"sealed\").password }}")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("postgres/creds/billing"), "{err}");

    // Not a source name at all.
    let err = render_db(&book, "db", "{{ database(\"../x\") }}")
        .await
        .unwrap_err();
    assert!(
        template_err(&err).3.contains("is not a source name"),
        "{err}"
    );

    // No [[database]] at all.
    let c = nowhere();
    let err = inline("db", "{{ database(\"main\").password }}")
        .render(&ctx(&c))
        .await
        .unwrap_err();
    assert!(
        template_err(&err)
            .3
            .contains("declares no [[database]] sources"),
        "{err}"
    );
}
