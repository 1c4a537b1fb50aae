//! Bringing one environment to "running, initialised, unsealed, PKI intermediate in place".
//!
//! Every step first looks at what is there and only does what is missing, so `up` is safe to
//! repeat: after a crash, after `down`, or on a healthy lab (where it changes nothing).

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;
use warden_bao::Client;
use warden_pki::{CaDir, IntermediateRequest};

use crate::cluster;
use crate::config::EnvConfig;
use crate::custody;
use crate::error::Error;
use crate::layout::EnvLayout;
use crate::server;
use crate::tls;

/// Lifetime of each environment's PKI intermediate in the lab.
const INTERMEDIATE_VALIDITY: time::Duration = time::Duration::days(2 * 365);

/// What `up` did for one environment.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EnvUpReport {
    /// Environment name.
    pub name: String,
    /// The API address.
    pub address: String,
    /// TLS material was created.
    pub tls_created: bool,
    /// The server process was started (it was not running).
    pub started: bool,
    /// The server was initialised by this run.
    pub initialized: bool,
    /// The server was unsealed by this run.
    pub unsealed: bool,
    /// The PKI intermediate was created and signed by this run.
    pub intermediate_created: bool,
    /// The server was restarted to pick up a new client CA bundle.
    pub restarted: bool,
    /// Which seal protects it (`shamir`, `static (key ..)`, `transit (seal-keeper ..)`).
    pub seal: String,
    /// Bootstrap ended in this run: the root token was revoked (operators act from now on).
    pub root_revoked: bool,
    /// How the unseal shares are held.
    pub custody: custody::CustodyMode,
}

/// Receives progress lines for humans ("test: starting OpenBao on ...").
pub trait Progress: Send + Sync {
    /// One step of one environment.
    fn step(&self, env: &str, message: &str);
}

/// Progress that goes nowhere (for tests and JSON output).
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn step(&self, _env: &str, _message: &str) {}
}

pub(crate) struct Shared<'a> {
    pub(crate) ca: &'a CaDir,
    pub(crate) passphrase: &'a SecretString,
    pub(crate) bao: &'a Path,
    pub(crate) shares: u8,
    pub(crate) threshold: u8,
    pub(crate) progress: &'a dyn Progress,
    /// See [`crate::NewLabOptions::test_harness_token`].
    pub(crate) test_harness_token: bool,
    /// See [`crate::NewLabOptions::permitted_dns`].
    pub(crate) permitted_dns: &'a std::collections::BTreeMap<String, Vec<String>>,
}

pub(crate) async fn ensure_env(
    env: &EnvConfig,
    layout: &EnvLayout,
    s: &Shared<'_>,
) -> Result<EnvUpReport, Error> {
    let name = env.name.as_str();
    let mut report = EnvUpReport {
        name: name.to_owned(),
        address: env.address(),
        seal: env.seal.describe(),
        ..Default::default()
    };
    let now = OffsetDateTime::now_utc();
    report.tls_created = tls::ensure(name, layout, s.ca, s.passphrase, now)?;
    tls::ensure_node_cert(name, layout, now)?;
    if report.tls_created {
        s.progress.step(
            name,
            "created TLS material (listener CA, server and operator certificates)",
        );
    }

    report.started = cluster::start_stopped(env, layout, s.bao, s.progress).await?;

    // Node 1 alone: it is the one initialised, and a client that fails over would move on
    // from an uninitialised node.
    let client = cluster::node_client(env, &env.nodes()[0], layout)?;
    let health = client
        .wait_reachable()
        .await
        .map_err(Error::bao(name, "reach the server"))?;

    if !health.initialized && env.seal.kind().is_auto() {
        s.progress.step(
            name,
            &format!(
                "initialising, {} ({} recovery shares, threshold {})",
                env.seal.describe(),
                s.shares,
                s.threshold
            ),
        );
        crate::seal::init_auto(env, layout, &client, s.shares, s.threshold).await?;
        report.initialized = true;
    } else if !health.initialized {
        s.progress.step(
            name,
            &format!(
                "custody ceremony: {} shares to {} lab custodians, threshold {}",
                s.shares, s.shares, s.threshold
            ),
        );
        let ceremony = custody::run_ceremony(&client, layout, s.shares, s.threshold).await?;
        s.progress.step(
            name,
            &format!(
                "shares encrypted to their custodians; ledger {}",
                ceremony.ledger.display()
            ),
        );
        report.initialized = true;
    }
    report.custody = custody::custody_mode(layout);

    if unseal(&client, name, layout).await? {
        report.unsealed = true;
        s.progress.step(name, "unsealed");
    }
    // Nodes 2..N join node 1's cluster through retry_join once they hold the shares.
    if cluster::unseal_nodes(env, layout, 2).await? {
        s.progress.step(
            name,
            "unsealed the other nodes; they join through retry_join",
        );
    }
    let client = cluster::wait_ready(env, layout).await?;

    // The root token, until bootstrap has revoked it (then the lab operator logs in): opened in
    // memory from the ceremony's file with a lab custodian's identity.
    let root = custody::bootstrap_root_token(layout)?;
    let session = crate::operators::open(&client, env, layout, root).await?;
    custody::publish_ledger(&client, layout).await;
    report.intermediate_created = ensure_pki(env, &client, s, now).await?;
    if report.intermediate_created {
        s.progress.step(
            name,
            &format!(
                "PKI intermediate at {}/ signed by the offline root",
                env.pki_mount
            ),
        );
    }

    // Identities log in with certificates from the PKI intermediate, so the listener must
    // trust it next to the listener CA. OpenBao reads the client CA file at start only.
    let issuing = client
        .pki_ca_cert(&env.pki_mount)
        .await
        .map_err(Error::bao(name, "read the PKI intermediate"))?;
    if tls::ensure_client_ca(layout, &issuing)? {
        s.progress.step(
            name,
            "restarting so the listener trusts identity certificates from the PKI intermediate",
        );
        server::stop_all(env, layout).await?;
        cluster::start_stopped(env, layout, s.bao, &Quiet).await?;
        cluster::unseal_nodes(env, layout, 1).await?;
        cluster::wait_ready(env, layout).await?;
        report.restarted = true;
    }
    cluster::wait_voters(env, &client).await?;
    report.root_revoked = session
        .finish(&client, env, layout, s.test_harness_token)
        .await?;
    if report.root_revoked {
        s.progress.step(
            name,
            "bootstrap done: operator policy and the lab operator's login in place, root token revoked",
        );
    }
    Ok(report)
}

/// Unseals with the custody shares if the server is sealed; returns whether it was.
pub(crate) async fn unseal(client: &Client, name: &str, layout: &EnvLayout) -> Result<bool, Error> {
    let status = client
        .seal_status()
        .await
        .map_err(Error::bao(name, "read seal status"))?;
    // An auto-sealed node unseals itself; one waiting for a seal migration is
    // `warden seal migrate`'s to finish, never `up`'s.
    if !status.sealed || status.seal_type != "shamir" {
        return Ok(false);
    }
    let keys = custody::unseal_shares(layout)?;
    let needed = usize::from(status.threshold.max(1));
    if keys.len() < needed {
        return Err(Error::ServerState {
            env: name.to_owned(),
            what: format!("{} unseal shares in custody, {needed} needed", keys.len()),
        });
    }
    for key in keys.iter().take(needed) {
        let st = client
            .unseal(key)
            .await
            .map_err(Error::bao(name, "unseal"))?;
        if !st.sealed {
            break;
        }
    }
    Ok(true)
}

/// Turns on OpenBao's ACME server on the PKI mount (idempotent; run when the lab creates the
/// PKI), so a domain with
/// `issuer = "acme"` is obtained from `<addr>/v1/<pki>/roles/domain-<slug>/acme/directory`
/// (ADR 0031): the mount passes the headers ACME needs, the cluster path tells OpenBao the URLs
/// to hand out, and the default (role-less) directory is forbidden, so ACME issues only what a
/// role allows. OpenBao's ACME certificates are server certificates only
/// (`allow_role_ext_key_usage = false`).
async fn enable_acme(client: &Client, name: &str, mount: &str) -> Result<(), Error> {
    let w = |path: String, body: serde_json::Value, what: &'static str| async move {
        client
            .write(&path, &body, warden_bao::Idempotent::Yes)
            .await
            .map(drop)
            .map_err(Error::bao(name, what))
    };
    w(
        format!("sys/mounts/{mount}/tune"),
        serde_json::json!({
            "allowed_response_headers": ["Last-Modified", "Replay-Nonce", "Link", "Location"],
            "passthrough_request_headers": ["If-Modified-Since"],
        }),
        "let the PKI mount pass ACME's headers",
    )
    .await?;
    let base = format!(
        "{}/v1/{mount}",
        client.address().as_str().trim_end_matches('/')
    );
    w(
        format!("{mount}/config/cluster"),
        serde_json::json!({ "path": base, "aia_path": base }),
        "set the PKI mount's cluster path",
    )
    .await?;
    w(
        format!("{mount}/config/acme"),
        serde_json::json!({
            "enabled": true,
            "default_directory_policy": "forbid",
            "allow_role_ext_key_usage": false,
        }),
        "turn on ACME on the PKI mount",
    )
    .await
}

/// Mounts the PKI engine and installs an intermediate whose key was generated inside OpenBao
/// and whose CSR the offline root signed. Returns whether anything was created.
async fn ensure_pki(
    env: &EnvConfig,
    client: &Client,
    s: &Shared<'_>,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let name = env.name.as_str();
    let mount = env.pki_mount.as_str();
    let mounts = client
        .list_mounts()
        .await
        .map_err(Error::bao(name, "list secrets engines"))?;
    if !mounts.keys().any(|m| m.trim_end_matches('/') == mount) {
        let max_ttl = Duration::from_secs(INTERMEDIATE_VALIDITY.whole_seconds().unsigned_abs());
        let options = warden_bao::MountOptions::default()
            .with_description("managed-by: warden (lab bootstrap)")
            .with_max_lease_ttl(max_ttl);
        client
            .enable_secrets_engine(mount, "pki", &options)
            .await
            .map_err(Error::bao(name, "mount the PKI engine"))?;
    }
    let chain = client
        .pki_ca_chain(mount)
        .await
        .map_err(Error::bao(name, "read the CA chain"))?;
    if !chain.trim().is_empty() {
        return Ok(false);
    }
    // Only while the PKI is being created: that is bootstrap, under the root token. A later
    // `lab up` runs as the lab operator, whose policy does not tune mounts or configure ACME.
    enable_acme(client, name, mount).await?;
    let csr = client
        .pki_generate_intermediate_csr(
            mount,
            &format!("Warden {name} PKI intermediate"),
            warden_bao::KeyType::EcP256,
        )
        .await
        .map_err(Error::bao(name, "generate the intermediate CSR"))?;
    let request = IntermediateRequest {
        environment: name.to_owned(),
        profile: "vault-pki".to_owned(),
        validity: INTERMEDIATE_VALIDITY,
        path_len: 0,
        // Constrained to the environment's own names, so that no other environment's trust,
        // anchored at the shared root, accepts what this one issues (ADR 0013).
        permitted_dns: s
            .permitted_dns
            .get(name)
            .cloned()
            .unwrap_or_else(|| crate::config::lab_permitted_dns(name)),
        unconstrained_because: None,
    };
    let signed =
        s.ca.sign_intermediate(&csr.csr_pem, &request, s.passphrase, now)
            .map_err(Error::pki(name, "sign the PKI intermediate"))?;
    let root = s.ca.root_pem();
    // Importing intermediate + root makes both chain endpoints return the full chain
    // (docs/openbao.md, difference 5); importing the intermediate alone would not.
    let bundle = format!("{}\n{}\n", signed.cert_pem.trim_end(), root.trim_end());
    client
        .pki_set_signed(mount, &bundle)
        .await
        .map_err(Error::bao(name, "import the signed intermediate"))?;
    Ok(true)
}
