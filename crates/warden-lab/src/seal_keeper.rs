//! The lab's seal-keeper: a separate small OpenBao that holds one transit key per
//! transit-sealed environment (`warden lab up --seal transit`, or `warden seal migrate`).
//!
//! It is an environment of its own, under `<lab>/seal-keeper/` with the same layout as
//! `envs/<env>/`: its own listener CA signed by the offline root, its own server certificate,
//! a listener that accepts client certificates from its own listener CA only, raft storage and
//! an audit log. Each sealed environment gets a client certificate from that CA
//! (`seal@<env>`), the trust anchor, and a periodic orphan token whose only policy is
//! [`warden_node::KeeperGrant::policy_hcl`]. The seal-keeper itself is Shamir-sealed with LAB
//! ONLY custody (one share) so the lab still restarts unattended; a real seal-keeper is
//! unsealed by its custodians.
//!
//! It starts before the environments it seals and stops after them.

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use warden_bao::Client;
use warden_files::{Mode, write_atomic};
use warden_node::KeeperGrant;
use warden_pki::{KeyAlgorithm, LocalIssuer};

use crate::bring_up::Shared;
use crate::client;
use crate::config::{DEFAULT_PKI_MOUNT, EnvConfig};
use crate::custody;
use crate::error::Error;
use crate::layout::{EnvLayout, LabLayout};
use crate::seal::EnvSeal;
use crate::server::{self, ProcessState};
use crate::tls;
use warden_node::SealFiles;

/// The seal-keeper's name in progress lines, errors and its TLS material.
pub const KEEPER_NAME: &str = "seal-keeper";
/// How long a seal token lives without renewal. Every running node renews it at about two
/// thirds of this; a lab stopped for longer gets a new token on its next `up`.
const TOKEN_PERIOD: Duration = Duration::from_secs(72 * 3600);
/// Lifetime of the environments' client certificates at the seal-keeper.
const CLIENT_CERT_VALIDITY: time::Duration = time::Duration::days(365);
/// How long a freshly unsealed seal-keeper may take to become active.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings for a new seal-keeper: two free loopback ports.
pub(crate) fn new_config() -> Result<EnvConfig, Error> {
    let ports = crate::process::free_ports(2)
        .map_err(|e| Error::io(std::path::Path::new("127.0.0.1"), "find free ports on", e))?;
    Ok(EnvConfig {
        name: KEEPER_NAME.to_owned(),
        api_port: ports[0],
        cluster_port: ports[1],
        pki_mount: DEFAULT_PKI_MOUNT.to_owned(),
        seal: EnvSeal::Shamir,
        followers: Vec::new(),
    })
}

/// A running, unsealed seal-keeper with a root client (lab custody).
pub(crate) struct Keeper {
    env: EnvConfig,
    client: Client,
}

/// Starts, initialises and unseals the seal-keeper if needed. Safe to repeat.
pub(crate) async fn ensure(
    keeper: &EnvConfig,
    lab: &LabLayout,
    s: &Shared<'_>,
) -> Result<Keeper, Error> {
    let name = KEEPER_NAME;
    let layout = lab.seal_keeper();
    // One node: a seal-keeper cluster would sit behind one name (the transit seal takes one
    // address).
    let node = keeper.node(1)?;
    if tls::ensure(name, &layout, s.ca, s.passphrase, OffsetDateTime::now_utc())? {
        s.progress.step(
            name,
            "created TLS material (its own listener CA, signed by the root)",
        );
    }
    match server::find(keeper, &node, &layout)? {
        ProcessState::Running(pid) => s
            .progress
            .step(name, &format!("OpenBao already running (pid {pid})")),
        ProcessState::Stopped => {
            s.progress
                .step(name, &format!("starting OpenBao on {}", keeper.address()));
            server::start(keeper, &node, &layout, s.bao).await?;
        }
    }
    let client = client::operator_client(keeper, &layout, None)?;
    let health = client
        .wait_reachable()
        .await
        .map_err(Error::bao(name, "reach the seal-keeper"))?;
    custody::prepare_dir(&layout.custody_dir())?;
    if !health.initialized {
        s.progress
            .step(name, "initialising (1 unseal share, LAB ONLY custody)");
        let init = client
            .init(1, 1)
            .await
            .map_err(Error::bao(name, "initialise"))?;
        crate::seal::keeper_store_share(&layout, &init.keys)?;
        custody::write_secret(&layout.root_token(), &init.root_token)?;
    }
    if client
        .seal_status()
        .await
        .map_err(Error::bao(name, "read seal status"))?
        .sealed
    {
        let keys = crate::seal::keeper_shares(&layout)?.ok_or_else(|| Error::CustodyMissing {
            env: name.to_owned(),
            path: layout.unseal_keys(),
        })?;
        for key in &keys {
            if !client
                .unseal(key)
                .await
                .map_err(Error::bao(name, "unseal"))?
                .sealed
            {
                break;
            }
        }
        s.progress.step(name, "unsealed");
    }
    wait_active(&client).await?;
    let token =
        custody::read_secret(&layout.root_token())?.ok_or_else(|| Error::CustodyMissing {
            env: name.to_owned(),
            path: layout.root_token(),
        })?;
    client.set_token(token);
    Ok(Keeper {
        env: keeper.clone(),
        client,
    })
}

async fn wait_active(client: &Client) -> Result<(), Error> {
    let deadline = Instant::now() + ACTIVE_TIMEOUT;
    loop {
        match client.health().await {
            Ok(h) if h.is_ready() => return Ok(()),
            Ok(h) if Instant::now() >= deadline => {
                return Err(Error::ServerState {
                    env: KEEPER_NAME.to_owned(),
                    what: format!(
                        "not active after {}s (sealed={}, standby={})",
                        ACTIVE_TIMEOUT.as_secs(),
                        h.sealed,
                        h.standby
                    ),
                });
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::bao(KEEPER_NAME, "wait for it to become active")(e));
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Keeper {
    /// The seal-keeper's API address.
    pub(crate) fn address(&self) -> String {
        self.env.address()
    }

    /// Gives environment `env` what its transit seal needs: the key and policy on the
    /// seal-keeper, a client certificate, the trust anchor, and a live token. An existing
    /// token that still exists is kept; a missing or expired one is replaced.
    pub(crate) async fn grant(
        &self,
        env: &EnvConfig,
        env_layout: &EnvLayout,
        lab: &LabLayout,
    ) -> Result<bool, Error> {
        let grant = KeeperGrant::for_env(&env.name);
        let files = crate::seal::seal_files(env_layout);
        warden_files::ensure_private_dir(files.dir())?;
        self.ensure_client_cert(env, &files, lab)?;
        grant
            .ensure_token(&self.client, &files, TOKEN_PERIOD)
            .await
            .map_err(keeper_err)
    }

    fn ensure_client_cert(
        &self,
        env: &EnvConfig,
        files: &SealFiles,
        lab: &LabLayout,
    ) -> Result<(), Error> {
        if files.keeper_cert().exists() && files.keeper_key().exists() && files.keeper_ca().exists()
        {
            return Ok(());
        }
        let kl = lab.seal_keeper();
        let read =
            |p: std::path::PathBuf| crate::read_text(&p).map_err(|e| Error::io(&p, "read", e));
        let ca_cert = read(kl.listener_ca_cert())?;
        let ca_key = zeroize::Zeroizing::new(read(kl.listener_ca_key())?);
        let issuer = LocalIssuer::from_pem(&ca_cert, &ca_key)
            .map_err(Error::pki(KEEPER_NAME, "load the listener CA"))?;
        let key = warden_pki::generate_key(KeyAlgorithm::EcdsaP256)
            .map_err(Error::pki(&env.name, "generate the seal client key"))?;
        let cert = issuer
            .issue_client(
                &key.public_key_der(),
                &format!("seal@{}", env.name),
                CLIENT_CERT_VALIDITY,
                OffsetDateTime::now_utc(),
            )
            .map_err(Error::pki(&env.name, "issue the seal client certificate"))?;
        // Key first: a crash in between leaves no certificate without its key.
        write_atomic(
            &files.keeper_key(),
            key.private_key_pem().as_bytes(),
            Mode::OwnerOnly,
        )?;
        let chain = format!("{}\n{}\n", cert.trim_end(), ca_cert.trim_end());
        write_atomic(&files.keeper_cert(), chain.as_bytes(), Mode::Public)?;
        write_atomic(
            &files.keeper_ca(),
            read(kl.ca_bundle())?.as_bytes(),
            Mode::Public,
        )?;
        Ok(())
    }
}

fn keeper_err(e: warden_node::KeeperError) -> Error {
    Error::SealKeeper {
        source: Box::new(e),
    }
}

/// A client for the seal-keeper with exactly the credentials `env`'s nodes use (its seal
/// client certificate; no token): what `lab status` probes to say why a node is sealed.
pub(crate) fn seal_client(env: &EnvConfig, layout: &EnvLayout) -> Result<Client, Error> {
    let EnvSeal::Transit { address, .. } = &env.seal else {
        return Err(Error::InvalidOption(format!(
            "{} is not transit-sealed",
            env.name
        )));
    };
    let files = crate::seal::seal_files(layout);
    let url = address
        .parse()
        .map_err(|e: url::ParseError| Error::ServerState {
            env: env.name.clone(),
            what: format!("bad seal-keeper address {address}: {e}"),
        })?;
    let cfg = warden_bao::ClientConfig::new(url)
        .with_ca_file(files.keeper_ca())
        .and_then(|c| c.with_client_cert_files(files.keeper_cert(), files.keeper_key()))
        .map_err(Error::bao(&env.name, "load the seal client credentials"))?
        .with_request_timeout(Duration::from_secs(3));
    Client::new(cfg).map_err(Error::bao(&env.name, "build the seal-keeper client"))
}

/// The seal-keeper as `lab status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SealKeeperStatus {
    /// Its API address.
    pub address: String,
    /// Our server process is running.
    pub running: bool,
    /// From `sys/health`, when it answered.
    pub sealed: Option<bool>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

impl crate::lab::Lab {
    /// The seal-keeper's status, when the lab has one. Read-only.
    pub async fn seal_keeper_status(&self) -> Option<SealKeeperStatus> {
        let keeper = self.config().seal_keeper.as_ref()?;
        let layout = self.layout().seal_keeper();
        let mut st = SealKeeperStatus {
            address: keeper.address(),
            running: false,
            sealed: None,
            error: None,
        };
        let node = keeper.node(1).ok()?;
        match server::find(keeper, &node, &layout) {
            Ok(ProcessState::Running(_)) => st.running = true,
            Ok(ProcessState::Stopped) => return Some(st),
            Err(e) => {
                st.error = Some(e.to_string());
                return Some(st);
            }
        }
        match client::operator_client(keeper, &layout, None) {
            Ok(c) => match c.health().await {
                Ok(h) => st.sealed = Some(h.sealed),
                Err(e) => st.error = Some(e.to_string()),
            },
            Err(e) => st.error = Some(e.to_string()),
        }
        Some(st)
    }
}
