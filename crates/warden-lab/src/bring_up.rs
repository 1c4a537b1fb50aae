//! Bringing one environment to "running, initialised, unsealed, PKI intermediate in place".
//!
//! Every step first looks at what is there and only does what is missing, so `up` is safe to
//! repeat: after a crash, after `down`, or on a healthy lab (where it changes nothing).

use std::path::Path;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use time::OffsetDateTime;
use warden_bao::Client;
use warden_pki::{CaDir, IntermediateRequest};

use crate::client;
use crate::config::EnvConfig;
use crate::custody;
use crate::error::Error;
use crate::layout::EnvLayout;
use crate::server::{self, ProcessState};
use crate::tls;

/// Lifetime of each environment's PKI intermediate in the lab.
const INTERMEDIATE_VALIDITY: time::Duration = time::Duration::days(2 * 365);
/// How long a freshly unsealed single raft node may take to become active.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);

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
        ..Default::default()
    };
    let now = OffsetDateTime::now_utc();
    report.tls_created = tls::ensure(name, layout, s.ca, s.passphrase, now)?;
    if report.tls_created {
        s.progress.step(
            name,
            "created TLS material (listener CA, server and operator certificates)",
        );
    }

    match server::find(env, layout)? {
        ProcessState::Running(pid) => s
            .progress
            .step(name, &format!("OpenBao already running (pid {pid})")),
        ProcessState::Stopped => {
            s.progress
                .step(name, &format!("starting OpenBao on {}", env.address()));
            let pid = server::start(env, layout, s.bao).await?;
            report.started = true;
            s.progress
                .step(name, &format!("OpenBao listening (pid {pid})"));
        }
    }

    let client = client::operator_client(env, layout, None)?;
    let health = client
        .wait_reachable()
        .await
        .map_err(Error::bao(name, "reach the server"))?;

    if !health.initialized {
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
    wait_active(&client, name).await?;

    let token = custody::bootstrap_root_token(layout)?.ok_or_else(|| Error::CustodyMissing {
        env: name.to_owned(),
        path: custody::shares_dir(layout),
    })?;
    client.set_token(token);
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
        server::stop(env, layout).await?;
        server::start(env, layout, s.bao).await?;
        client
            .wait_reachable()
            .await
            .map_err(Error::bao(name, "reach the server"))?;
        unseal(&client, name, layout).await?;
        wait_active(&client, name).await?;
        report.restarted = true;
    }
    Ok(report)
}

/// Unseals with the custody shares if the server is sealed; returns whether it was.
async fn unseal(client: &Client, name: &str, layout: &EnvLayout) -> Result<bool, Error> {
    let status = client
        .seal_status()
        .await
        .map_err(Error::bao(name, "read seal status"))?;
    if !status.sealed {
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

/// Waits until the server is unsealed and active (a single raft node elects itself leader a
/// few seconds after unseal; until then requests get "standby" errors).
async fn wait_active(client: &Client, name: &str) -> Result<(), Error> {
    let deadline = Instant::now() + ACTIVE_TIMEOUT;
    let mut delay = Duration::from_millis(100);
    loop {
        match client.health().await {
            Ok(h) if h.initialized && !h.sealed && !h.standby => return Ok(()),
            Ok(h) if Instant::now() >= deadline => {
                return Err(Error::ServerState {
                    env: name.to_owned(),
                    what: format!(
                        "not active after {}s (initialized={}, sealed={}, standby={})",
                        ACTIVE_TIMEOUT.as_secs(),
                        h.initialized,
                        h.sealed,
                        h.standby
                    ),
                });
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::bao(name, "wait for the server to become active")(e));
            }
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
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
        permitted_dns: Vec::new(),
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
