//! The provider against a real OpenBao dev server (and a real PostgreSQL for database
//! credentials), logged in with AppRole credentials read from files, as a service is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use warden_bao::{
    Client, ClientConfig, Idempotent, KvData, MountOptions, RetryPolicy, SecretValue,
};
use warden_provider::{Error, Login, ProviderConfig, SecretPath, SecretProvider, Settings};
use warden_testkit::{BaoDev, Postgres, files, identity, wait_for_async};

/// What the service's AppRole may do: its own KV paths, its database role, its transit key.
const POLICY: &str = r#"
path "secret/data/app/*" { capabilities = ["read", "create", "update"] }
path "secret/metadata/app/*" { capabilities = ["read"] }
path "kv1/app/*" { capabilities = ["read"] }
path "database/creds/app" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
path "transit/encrypt/app" { capabilities = ["update"] }
path "transit/decrypt/app" { capabilities = ["update"] }
path "transit/sign/app-signing" { capabilities = ["update"] }
path "transit/verify/app-signing" { capabilities = ["update"] }
"#;

struct Fixture {
    root: Client,
    dir: tempfile::TempDir,
    login: Login,
}

async fn fixture(dev: &BaoDev) -> Fixture {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let root = Client::new(
        ClientConfig::from_address(dev.addr())
            .expect("address")
            .with_token(dev.root_token().clone())
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("root client");
    root.enable_auth("approle", "approle")
        .await
        .expect("approle");
    root.put_policy("app", POLICY).await.expect("policy");
    root.write(
        "auth/approle/role/app",
        &json!({ "token_policies": ["app"], "token_ttl": "1h" }),
        Idempotent::Yes,
    )
    .await
    .expect("role");
    let (role_id, secret_id) = identity::approle_credentials(&root, "app").await;
    let dir = tempfile::tempdir().expect("tmp");
    let (r, s) = (dir.path().join("role-id"), dir.path().join("secret-id"));
    files::write_private(&r, role_id.as_bytes());
    files::write_private(&s, secret_id.expose_secret().as_bytes());
    Fixture {
        root,
        dir,
        login: Login::approle(r, s),
    }
}

fn config(dev: &BaoDev, f: &Fixture) -> ProviderConfig {
    ProviderConfig::new(
        ClientConfig::from_address(dev.addr()).expect("address"),
        f.login.clone(),
    )
    .with_settings(settings(10, 1))
}

fn settings(init_s: u64, watch_s: u64) -> Settings {
    Settings::from_env_with(|name| match name {
        "VAULT_INIT_TIMEOUT_SEC" => Some(init_s.to_string()),
        "VAULT_WATCH_INTERVAL_SEC" => Some(watch_s.to_string()),
        _ => None,
    })
    .expect("settings")
}

fn data(pairs: &[(&str, &str)]) -> KvData {
    let mut d = KvData::new();
    for (k, v) in pairs {
        d.insert(*k, SecretValue::text((*v).to_owned()));
    }
    d
}

/// KV v2 and v1 reads, dual-key rotation with check-and-set, a watch that sees the rotation,
/// transit with the service's own keys and a refusal for a key that is not its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_rotation_watch_and_transit_through_the_provider() {
    let dev = BaoDev::start().await;
    let f = fixture(&dev).await;
    let root = &f.root;
    root.enable_secrets_engine("kv1", "kv", &MountOptions::default())
        .await
        .expect("kv v1");
    root.enable_secrets_engine("transit", "transit", &MountOptions::default())
        .await
        .expect("transit");
    root.transit("transit")
        .create_key("app", "aes256-gcm96")
        .await
        .expect("key");
    root.transit("transit")
        .create_key("app-signing", "ecdsa-p256")
        .await
        .expect("key");
    root.transit("transit")
        .create_key("other", "aes256-gcm96")
        .await
        .expect("key");
    root.kv2("secret")
        .write("app/db", &data(&[("password", "pw-v1-SENTINEL")]), None)
        .await
        .expect("kv2 write");
    root.kv1("kv1")
        .write("app/api", &data(&[("key", "api-SENTINEL")]))
        .await
        .expect("kv1 write");

    let p = SecretProvider::connect(config(&dev, &f))
        .await
        .expect("connect");

    let db = p.kv2("secret", "app/db").await.expect("kv2 get");
    assert_eq!(db.version(), Some(1));
    assert!(!db.is_stale());
    assert_eq!(
        db.field("password").expect("field").expose_secret(),
        "pw-v1-SENTINEL"
    );
    assert!(!format!("{db:?}").contains("SENTINEL"), "{db:?}");
    let api = p.kv1("kv1", "app/api").await.expect("kv1 get");
    assert_eq!(api.version(), None);
    assert_eq!(
        api.field("key").expect("field").expose_secret(),
        "api-SENTINEL"
    );
    // Not its own: denied, and the error says where.
    let err = p.kv2("secret", "other/db").await.unwrap_err();
    assert!(err.to_string().contains("other/db"), "{err}");

    // Dual-key rotation, watched.
    let first = p
        .rotate_secret("secret", "app/session", &SecretString::from("session-A"))
        .await
        .expect("first rotation");
    assert_eq!((first.version, first.previous.is_none()), (1, true));
    // A service loads, then watches: the loaded version is the baseline.
    let seen = Arc::new(AtomicU64::new(0));
    let seen_cb = seen.clone();
    let watch = p.watch(SecretPath::kv2("secret", "app/session"), move |s| {
        seen_cb.store(s.version().unwrap_or(0), Ordering::SeqCst);
    });
    let second = p
        .rotate_secret("secret", "app/session", &SecretString::from("session-B"))
        .await
        .expect("second rotation");
    assert_eq!(second.version, 2);
    assert_eq!(second.current.expose_secret(), "session-B");
    assert_eq!(
        second.previous.as_ref().expect("previous").expose_secret(),
        "session-A"
    );
    let read = p
        .dual_secret("secret", "app/session")
        .await
        .expect("dual read");
    assert_eq!(
        (read.version, read.current.expose_secret()),
        (2, "session-B")
    );
    // Someone else writes between a reader's view and its rotation: check-and-set refuses,
    // nothing is lost. (Simulated by writing version 3 behind the provider's back, then
    // rotating from a stale expectation through the raw client.)
    root.kv2("secret")
        .write(
            "app/session",
            &data(&[("current", "session-C"), ("previous", "session-B")]),
            Some(2),
        )
        .await
        .expect("v3 by another writer");
    let stale_cas = root
        .kv2("secret")
        .write("app/session", &data(&[("current", "x")]), Some(2))
        .await
        .unwrap_err();
    assert!(
        matches!(stale_cas, warden_bao::KvError::CasMismatch { .. }),
        "{stale_cas}"
    );
    let third = p
        .rotate_secret("secret", "app/session", &SecretString::from("session-D"))
        .await
        .expect("rotation over v3");
    assert_eq!(
        third.previous.as_ref().expect("prev").expose_secret(),
        "session-C"
    );
    wait_for_async(Duration::from_secs(30), "the watch sees version 4", || {
        (seen.load(Ordering::SeqCst) == 4).then_some(())
    })
    .await;
    assert!(watch.changes() >= 1 && watch.failures() == 0);

    // Transit with its own keys.
    let ct = p
        .encrypt("app", b"card 4111-SENTINEL")
        .await
        .expect("encrypt");
    assert!(ct.starts_with("vault:v1:"), "{ct}");
    assert_eq!(
        &*p.decrypt("app", &ct).await.expect("decrypt"),
        b"card 4111-SENTINEL"
    );
    let sig = p.sign("app-signing", b"statement").await.expect("sign");
    assert!(
        p.verify("app-signing", b"statement", &sig)
            .await
            .expect("verify")
    );
    assert!(
        !p.verify("app-signing", b"tampered", &sig)
            .await
            .expect("verify")
    );
    let denied = p.encrypt("other", b"x").await.unwrap_err();
    assert!(
        matches!(&denied, Error::Transit(t) if t.is_permission_denied()),
        "{denied}"
    );
}

/// Database credentials from a real PostgreSQL through the database engine: the user logs in,
/// its lease is renewed in the background, and it still logs in after its first TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_credentials_are_issued_and_renewed() {
    let pg = Postgres::start().await;
    let dev = BaoDev::start().await;
    let f = fixture(&dev).await;
    f.root
        .enable_secrets_engine("database", "database", &MountOptions::default())
        .await
        .expect("database engine");
    f.root
        .write(
            "database/config/pg",
            &json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/{}?sslmode=disable", pg.port(), pg.database()),
                "username": pg.superuser(),
                "password": pg.password().expose_secret(),
                "allowed_roles": ["app"],
                "verify_connection": true,
            }),
            Idempotent::Yes,
        )
        .await
        .expect("database config");
    f.root
        .write(
            "database/roles/app",
            &json!({
                "db_name": "pg",
                "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
                "revocation_statements": ["DROP ROLE IF EXISTS \"{{name}}\";"],
                "default_ttl": 6,
                "max_ttl": 120,
            }),
            Idempotent::Yes,
        )
        .await
        .expect("database role");

    let p = SecretProvider::connect(config(&dev, &f))
        .await
        .expect("connect");
    let creds = p
        .database_credentials("database", "app")
        .await
        .expect("creds");
    let issued = std::time::Instant::now();
    let first = creds.current();
    assert!(!format!("{creds:?}").contains(first.password.expose_secret()));
    assert_eq!(
        query_user(&pg, &first.username, &first.password).await,
        first.username
    );

    // Past the first 6 s lease: renewed, same user, still logs in. The renewal comes at two
    // thirds of the lease; wait for it (not a fixed sleep), then until the first lease would
    // have ended. (A 3 s lease left a loaded CI machine one second to renew.)
    wait_for_async(Duration::from_secs(30), "the first renewal", || {
        (creds.renewals() >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(issued.elapsed())).await;
    assert_eq!(creds.generation(), 0);
    let now = creds.current();
    assert_eq!(now.username, first.username);
    assert_eq!(
        query_user(&pg, &now.username, &now.password).await,
        now.username
    );
    creds.revoke(&p).await.expect("revoke");
}

async fn query_user(pg: &Postgres, user: &str, password: &SecretString) -> String {
    let conn = format!(
        "host={} port={} dbname={} user={user} password={}",
        pg.host(),
        pg.port(),
        pg.database(),
        password.expose_secret()
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("log in with the issued credentials");
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query");
    row.get(0)
}

/// The last good value survives a sealed server and the server going away; a secret never
/// loaded is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_good_value_is_served_when_the_server_is_gone() {
    let dev = BaoDev::start().await;
    let f = fixture(&dev).await;
    f.root
        .kv2("secret")
        .write("app/db", &data(&[("password", "kept")]), None)
        .await
        .expect("write");
    f.root
        .kv2("secret")
        .write("app/never-read", &data(&[("password", "x")]), None)
        .await
        .expect("write");
    let p = SecretProvider::connect(config(&dev, &f))
        .await
        .expect("connect");
    let fresh = p.kv2("secret", "app/db").await.expect("first load");
    assert!(!fresh.is_stale());
    let watch = p.watch(SecretPath::kv2("secret", "app/db"), |_| {});

    // Sealed: OpenBao answers 503; the last good value is served, marked stale.
    f.root.seal().await.expect("seal the dev server");
    let sealed = p
        .kv2("secret", "app/db")
        .await
        .expect("served while sealed");
    assert!(sealed.is_stale());
    assert_eq!(
        sealed.field("password").expect("field").expose_secret(),
        "kept"
    );

    drop(dev); // the server stops; its port now refuses connections

    let stale = p
        .kv2("secret", "app/db")
        .await
        .expect("served from the cache");
    assert!(stale.is_stale());
    assert_eq!(stale.version(), Some(1));
    assert_eq!(
        stale.field("password").expect("field").expose_secret(),
        "kept"
    );
    let err = p.kv2("secret", "app/never-read").await.unwrap_err();
    assert!(
        err.bao_error().is_some_and(warden_bao::Error::is_retryable),
        "{err}"
    );
    // The watch keeps polling, fails, and the value stays.
    wait_for_async(Duration::from_secs(30), "a failed poll", || {
        (watch.failures() >= 1).then_some(())
    })
    .await;
    assert_eq!(
        p.kv2("secret", "app/db")
            .await
            .expect("still cached")
            .field("password")
            .expect("f")
            .expose_secret(),
        "kept"
    );
    drop(f.dir);
}

/// Cert login with the agent-managed identity directory (`WARDEN_IDENTITY_DIR`): on a full
/// TLS + mTLS lab, billing is applied and enrolled the way `warden identity enroll` does, and
/// the provider, configured from environment-style variables only, reads billing's KV secret,
/// uses billing's transit key and signs with billing's signing key. The listener's CA comes
/// from the identity's own `trust/ca.pem`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_login_with_the_agent_managed_identity() {
    use warden_enroll::{EnrollOptions, EnrollRequest, IdentityLayout, Owner};
    use warden_testkit::LabEnv;

    let lab = LabEnv::start(&["test"]).await;
    let operator = lab.client("test");
    // The harness lab runs no PostgreSQL: the example without its lab database.
    let spec = warden_testkit::example_spec();
    let env = spec.environment("test").expect("test env").clone();
    let inputs = warden_plan::EnvInputs {
        identity_ca_pem: operator
            .pki_ca_cert(&env.mounts.pki)
            .await
            .expect("intermediate"),
        ..warden_plan::EnvInputs::default()
    };
    // A KV mount enabled a moment ago answers "upgrading" briefly: plan and apply again.
    let mut attempt = 0;
    loop {
        let desired = warden_plan::desired_state(&spec, &env, &inputs);
        let plan = warden_plan::plan_env(&operator, "test", desired, false, 4)
            .await
            .expect("plan");
        match warden_plan::apply_env(&operator, &plan, 4, Arc::new(|_, _| {})).await {
            Ok(_) => break,
            Err(e) if attempt < 10 && format!("{e:?}").contains("Upgrading from non-versioned") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("apply: {e:?}"),
        }
    }
    let root = tempfile::tempdir().expect("tmp");
    let anchor = std::fs::read_to_string(lab.lab().layout().env("test").ca_bundle()).expect("ca");
    let layout = IdentityLayout::under_root(root.path(), "test", "billing");
    warden_enroll::enroll(
        &operator,
        &EnrollRequest {
            spec: &spec,
            env: &env,
            identity: "billing",
            trust_anchor_pem: &anchor,
            layout: &layout,
        },
        &EnrollOptions {
            force: false,
            owner: Owner::CurrentUser,
        },
    )
    .await
    .expect("enroll billing");
    operator
        .kv2(&env.mounts.kv)
        .write("billing/config", &data(&[("dsn", "dsn-SENTINEL")]), None)
        .await
        .expect("billing's config");
    let billing = spec.identity("billing").expect("billing").name.clone();
    let key = spec
        .identity("billing")
        .and_then(|i| i.signing_keys.first())
        .expect("billing's signing key")
        .clone();
    let key_config = warden_keys::SigningKeyConfig::from_spec(&spec, &env, &billing, &key);
    warden_keys::rotate(&operator, &key_config, &warden_keys::SystemClock)
        .await
        .expect("first signing key");

    let address = lab.lab().env("test").expect("test env").address();
    let identity_dir = layout.dir().to_str().expect("utf-8 path").to_owned();
    let transit_mount = env.mounts.transit.clone();
    let config = ProviderConfig::from_env_with(|name| match name {
        "BAO_ADDR" => Some(address.clone()),
        "WARDEN_IDENTITY_DIR" => Some(identity_dir.clone()),
        "WARDEN_TRANSIT_MOUNT" => Some(transit_mount.clone()),
        "VAULT_INIT_TIMEOUT_SEC" => Some("30".to_owned()),
        _ => None,
    })
    .expect("config from the environment");
    assert!(
        config.client.ca_cert_pem.is_some(),
        "trust/ca.pem is the CA bundle"
    );
    let p = SecretProvider::connect(config).await.expect("cert login");
    let info = p.client().token_lookup_self().await.expect("lookup-self");
    assert!(info.path.starts_with("auth/cert/login"), "{}", info.path);

    let secret = p
        .kv2(&env.mounts.kv, "billing/config")
        .await
        .expect("billing's config");
    assert_eq!(
        secret.field("dsn").expect("dsn").expose_secret(),
        "dsn-SENTINEL"
    );
    let transit_key = warden_spec::naming::transit_key_name(&billing, "payments");
    let ct = p.encrypt(&transit_key, b"4111").await.expect("encrypt");
    assert_eq!(
        &*p.decrypt(&transit_key, &ct).await.expect("decrypt"),
        b"4111"
    );
    let keys = p.signing_keys(key_config).await.expect("signing keys");
    let token = keys
        .sign(&json!({ "sub": "alice", "exp": 4_102_444_800_i64 }))
        .expect("sign");
    assert_eq!(keys.verify(&token).await.expect("verify")["sub"], "alice");
    // Not billing's: another app's secret is denied.
    let err = p.kv2(&env.mounts.kv, "inventory/config").await.unwrap_err();
    assert!(!matches!(err, Error::Unavailable { .. }), "{err}");
}

/// Start-up refusals: a wrong secret-id is refused at once (waiting cannot fix it); an identity
/// certificate the agent has not written yet is waited for, then the init timeout names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_fails_at_once_and_a_missing_certificate_is_waited_for() {
    let dev = BaoDev::start().await;
    let f = fixture(&dev).await;
    let bad = f.dir.path().join("bad-secret-id");
    files::write_private(&bad, b"00000000-0000-0000-0000-000000000000");
    let Login::AppRole { role_id_file, .. } = &f.login else {
        panic!("approle fixture");
    };
    let started = std::time::Instant::now();
    let err = SecretProvider::connect(
        ProviderConfig::new(
            ClientConfig::from_address(dev.addr()).expect("address"),
            Login::approle(role_id_file, &bad),
        )
        .with_settings(settings(10, 1)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::LoginRefused { .. }), "{err}");
    // At once: well before the 10 s init timeout a retrying login would run into.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    let missing = f.dir.path().join("not-enrolled-yet");
    let started = std::time::Instant::now();
    let err = SecretProvider::connect(
        ProviderConfig::new(
            ClientConfig::from_address(dev.addr()).expect("address"),
            Login::identity_dir(&missing, None),
        )
        .with_settings(settings(2, 1)),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let Error::InitTimeout { attempts, .. } = &err else {
        panic!("init timeout expected: {err}");
    };
    assert!(*attempts >= 3, "{err}");
    assert!(err.to_string().contains("identity/client.crt"), "{err}");
}

/// Red team (issue 17): a server that accepts connections and never answers (SIGSTOPped)
/// held the first login attempt for the client's request timeout (60 s), far past
/// VAULT_INIT_TIMEOUT_SEC=3; the budget now bounds every attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_team_a_frozen_server_still_gives_up_at_the_init_timeout() {
    let dev = BaoDev::start().await;
    let f = fixture(&dev).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(dev.pid()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    struct Resume(nix::unistd::Pid);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
        }
    }
    let _resume = Resume(pid);
    let started = std::time::Instant::now();
    let err = SecretProvider::connect(
        ProviderConfig::new(
            ClientConfig::from_address(dev.addr()).expect("address"),
            f.login.clone(),
        )
        .with_settings(settings(3, 1)),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::InitTimeout { .. }), "{err}");
    assert!(
        took < Duration::from_secs(20),
        "gave up after {took:?}, not at VAULT_INIT_TIMEOUT_SEC=3: {err}"
    );
    assert!(err.to_string().contains("VAULT_INIT_TIMEOUT_SEC"), "{err}");
}
