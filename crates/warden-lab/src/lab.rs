//! The lab as a whole: `up`, `status` and `down` over every environment.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use serde::Serialize;
use time::OffsetDateTime;
use warden_pki::{CaDir, KeyAlgorithm, RootOptions};

use crate::bring_up::{self, EnvUpReport, Progress, Shared};
use crate::config::{DEFAULT_PKI_MOUNT, EnvConfig, LabConfig, NewLabOptions};
use crate::custody;
use crate::error::Error;
use crate::layout::LabLayout;
use crate::postgres::{LabPostgres, PostgresConfig, PostgresUpReport};
use crate::process;
use crate::server;
use crate::status::{self, EnvStatus};

/// How many fresh ports a new lab PostgreSQL tries before giving up.
const PORT_ATTEMPTS: u32 = 3;

/// Validity of a lab's offline root.
const ROOT_VALIDITY: time::Duration = time::Duration::days(10 * 365);

/// What `up` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    /// The lab directory.
    pub dir: PathBuf,
    /// The lab was created by this run.
    pub created: bool,
    /// Per-environment results, in lab order.
    pub environments: Vec<EnvUpReport>,
    /// The seal-keeper's address, when environments are transit-sealed.
    pub seal_keeper: Option<String>,
}

/// What `down` did.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    /// The lab directory.
    pub dir: PathBuf,
    /// Environments whose server was stopped.
    pub stopped: Vec<String>,
    /// The lab directory was removed.
    pub purged: bool,
}

/// An existing lab.
#[derive(Debug, Clone)]
pub struct Lab {
    layout: LabLayout,
    config: LabConfig,
}

impl Lab {
    /// Opens the lab in `dir`; fails with [`Error::NotALab`] when there is none.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let layout = LabLayout::new(dir);
        let config = LabConfig::load(&layout.config_file())?.ok_or_else(|| Error::NotALab {
            dir: dir.to_path_buf(),
        })?;
        Ok(Self { layout, config })
    }

    /// Creates the lab if needed, then starts, initialises and unseals every environment and
    /// installs its PKI intermediate. Safe to repeat; an existing lab keeps its settings and
    /// `options` only apply to a new one.
    pub async fn up(
        dir: &Path,
        options: &NewLabOptions,
        progress: &dyn Progress,
    ) -> Result<UpReport, Error> {
        options.validate()?;
        let layout = LabLayout::new(dir);
        // A lab directory made beforehand by someone else (or writable by others) is theirs to
        // rearrange: its servers' configuration, custody shares and CA would live where that
        // user can swap them. Refused before anything is written or made owner-only.
        if layout.root().exists() {
            warden_files::Dir::open_root(layout.root(), warden_files::Trusted::process())?;
        }
        warden_files::ensure_private_dir(layout.root())?;
        let (config, created) = match LabConfig::load(&layout.config_file())? {
            Some(c) => (c, false),
            None => {
                let mut c = new_config(options)?;
                crate::seal::configure_new(&mut c, options.seal)?;
                c.save(&layout.config_file())?;
                (c, true)
            }
        };
        custody::prepare_dir(&layout.custody_dir())?;
        let passphrase = match custody::read_secret(&layout.ca_passphrase_file())? {
            Some(p) => p,
            None => {
                let p = custody::random_passphrase();
                custody::write_secret(&layout.ca_passphrase_file(), &p)?;
                p
            }
        };
        let ca = open_or_init_ca(&layout, &passphrase)?;
        let bao = process::bao_binary().map_err(Error::process("lab"))?;
        process::check_bao_version(&bao).map_err(Error::process("lab"))?;

        let lab = Arc::new(Self { layout, config });
        let shared = Shared {
            ca: &ca,
            passphrase: &passphrase,
            bao: &bao,
            shares: lab.config.shares,
            threshold: lab.config.threshold,
            progress,
            test_harness_token: options.test_harness_token,
            permitted_dns: &options.permitted_dns,
        };
        // The seal-keeper first: transit-sealed nodes cannot start without it.
        crate::seal::prepare_all(&lab.layout, &lab.config, &shared).await?;
        // Environments come up concurrently: they share nothing but the offline CA, whose
        // ledger appends are single atomic writes.
        let futures = lab.config.environments.iter().map(|env| {
            let env_layout = lab.layout.env(&env.name);
            let shared = &shared;
            async move { bring_up::ensure_env(env, &env_layout, shared).await }
        });
        let mut environments = Vec::new();
        for result in join_all(futures).await {
            environments.push(result?);
        }
        Ok(UpReport {
            dir: dir.to_path_buf(),
            created,
            environments,
            seal_keeper: lab.config.seal_keeper.as_ref().map(EnvConfig::address),
        })
    }

    /// Rewrites `name`'s listener client-CA bundle as the listener CA plus every intermediate
    /// its PKI mount trusts now (both during an intermediate rotation's overlap, ADR 0029) and,
    /// when that changed the file, restarts and unseals the environment's nodes: OpenBao reads
    /// the file at start only. Returns whether it restarted.
    pub async fn refresh_client_ca(&self, name: &str) -> Result<bool, Error> {
        let env = self.env(name)?;
        let layout = self.layout.env(name);
        let client = self.operator_client(name)?;
        let bundle = bring_up::trusted_identity_cas(env, &client).await?;
        if bundle.trim().is_empty() || !crate::tls::ensure_client_ca(&layout, &bundle)? {
            return Ok(false);
        }
        self.restart(name).await?;
        Ok(true)
    }

    /// Installs a listener CA the next root re-signed (`given_text`, read from `given`: the
    /// file `ca rollover-root resign --profile listener-ca --out` wrote) in `name`'s TLS
    /// directory with the code `warden server tls --install-listener-ca` runs
    /// (`warden_node::listener_ca`: checked first, refused with nothing changed), then restarts
    /// and unseals the environment's nodes so the listener serves the chain to the new root.
    /// The restart happens even when no file changed: an earlier run (or `warden server tls
    /// --install-listener-ca`) may have replaced the files and been interrupted before the
    /// nodes restarted, and the nodes read their TLS files only at start. Returns what was
    /// installed.
    pub async fn install_listener_ca(
        &self,
        name: &str,
        given: &Path,
        given_text: &str,
    ) -> Result<warden_node::ListenerCaInstall, Error> {
        self.env(name)?;
        let layout = self.layout.env(name);
        let installed = warden_node::install_listener_ca(
            &layout.tls_dir(),
            given,
            given_text,
            OffsetDateTime::now_utc(),
        )
        .map_err(|source| match source {
            warden_node::ListenerCaError::Files(f) => Error::Files(f),
            source => Error::ListenerCa {
                env: name.to_owned(),
                source: Box::new(source),
            },
        })?;
        self.restart(name).await?;
        // The lab operator's role is pinned on the listener CA certificate: re-pinned on the
        // one just installed, and proven by the login that writes it.
        let client = self.operator_client(name)?;
        crate::operators::write_lab_operator_role(&client, name, &layout).await?;
        Ok(installed)
    }

    /// Stops, starts and unseals `name`'s nodes and waits until they serve: OpenBao reads its
    /// TLS files at start.
    async fn restart(&self, name: &str) -> Result<(), Error> {
        let env = self.env(name)?;
        let layout = self.layout.env(name);
        let bao = process::bao_binary().map_err(Error::process("lab"))?;
        server::stop_all(env, &layout).await?;
        crate::cluster::start_stopped(env, &layout, &bao, &bring_up::Quiet).await?;
        crate::cluster::unseal_nodes(env, &layout, 1).await?;
        crate::cluster::wait_ready(env, &layout).await?;
        Ok(())
    }

    /// Status of every environment (read-only).
    pub async fn status(&self) -> Vec<EnvStatus> {
        let roots = CaDir::open(&self.layout.ca_dir())
            .ok()
            .and_then(|ca| ca.trusted_roots_pem().ok())
            .unwrap_or_default();
        let futures = self.config.environments.iter().map(|env| {
            let env_layout = self.layout.env(&env.name);
            let roots = roots.as_slice();
            async move { status::env_status(env, &env_layout, roots).await }
        });
        join_all(futures).await
    }

    /// Stops every environment's server; with `purge`, also deletes the lab directory.
    pub async fn down(&self, purge: bool) -> Result<DownReport, Error> {
        let mut stopped = Vec::new();
        for env in &self.config.environments {
            if server::stop_all(env, &self.layout.env(&env.name)).await? {
                stopped.push(env.name.clone());
            }
        }
        // PostgreSQL first: the environments' engines only lose their connections.
        if let Some(pg) = self.postgres()?
            && pg.stop().map_err(Error::postgres)?
        {
            stopped.push("postgres".to_owned());
        }
        // The seal-keeper last: nodes it seals may still need it while they stop.
        if let Some(keeper) = &self.config.seal_keeper
            && server::stop_all(keeper, &self.layout.seal_keeper()).await?
        {
            stopped.push(keeper.name.clone());
        }
        if purge {
            // `open` already proved lab.json is here, so this is a lab directory and not, say,
            // a mistyped home directory.
            std::fs::remove_dir_all(self.layout.root())
                .map_err(|e| Error::io(self.layout.root(), "remove", e))?;
        }
        Ok(DownReport {
            dir: self.layout.root().to_path_buf(),
            stopped,
            purged: purge,
        })
    }

    /// The lab's PostgreSQL, once one was started (`lab.json` holds its port).
    pub fn postgres(&self) -> Result<Option<LabPostgres>, Error> {
        self.config
            .postgres
            .map(|c| LabPostgres::new(self.layout.root(), c.port).map_err(Error::postgres))
            .transpose()
    }

    /// Points the spec's lab databases (host `lab-postgres`) at the lab's PostgreSQL
    /// ([`crate::postgres::bind`]); a lab that runs none has none of them
    /// ([`crate::postgres::without_lab_databases`]).
    pub fn bind_postgres(&self, spec: &mut warden_spec::Spec) {
        match self.config.postgres {
            Some(c) => crate::postgres::bind(spec, self.layout.root(), c.port),
            None => crate::postgres::without_lab_databases(spec),
        }
    }

    /// Brings up the lab's PostgreSQL when `spec` declares a lab database or the lab already
    /// has one (`None` otherwise): chooses its port the first time (saved in `lab.json`),
    /// initialises, starts, and with a spec creates the roles, schemas and grants its lab
    /// databases need ([`LabPostgres::up`]). Safe to repeat.
    pub async fn postgres_up(
        &mut self,
        spec: Option<&warden_spec::Spec>,
    ) -> Result<Option<PostgresUpReport>, Error> {
        let fresh = self.config.postgres.is_none();
        if fresh && !spec.is_some_and(LabPostgres::wanted_by) {
            return Ok(None);
        }
        // A port chosen now can be taken by another process before PostgreSQL binds it; as
        // no engine knows it yet, a fresh one is chosen then. A known port is kept: the
        // engines' connections name it.
        let mut attempts = 0;
        loop {
            if fresh {
                let port = process::free_port()
                    .map_err(|e| Error::io(Path::new("127.0.0.1"), "find a free port on", e))?;
                self.config.postgres = Some(PostgresConfig { port });
                self.config.save(&self.layout.config_file())?;
            }
            let pg = self.postgres()?.expect("configured above");
            attempts += 1;
            match pg.up(spec).await {
                Ok(report) => return Ok(Some(report)),
                Err(e) if fresh && attempts < PORT_ATTEMPTS && e.is_port_taken() => {
                    tracing::debug!(address = pg.address(), "postgres lost its port; another");
                    pg.stop().map_err(Error::postgres)?;
                }
                Err(e) => return Err(Error::postgres(e)),
            }
        }
    }

    /// The lab's settings.
    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// The lab's paths.
    pub fn layout(&self) -> &LabLayout {
        &self.layout
    }

    /// The environment called `name`.
    pub fn env(&self, name: &str) -> Result<&EnvConfig, Error> {
        self.config
            .env(name)
            .ok_or_else(|| Error::UnknownEnvironment {
                name: name.to_owned(),
                known: self
                    .config
                    .environments
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// An operator client for `name`, presenting the operator certificate: it carries the
    /// lab's root token while bootstrap is pending, and afterwards logs in as the lab operator on
    /// its first request.
    pub fn operator_client(&self, name: &str) -> Result<warden_bao::Client, Error> {
        let env = self.env(name)?;
        let layout = self.layout.env(name);
        let token = custody::bootstrap_root_token(&layout)?;
        crate::client::operator_client(env, &layout, token)
    }

    /// A client for environment `name` that presents the transport certificate `cert`/`key`
    /// (ADR 0010) and carries no token: what a container or CI job of the lab uses for its
    /// AppRole or JWT login. It trusts the lab's root, like every lab client.
    pub fn workload_client(
        &self,
        name: &str,
        cert: &Path,
        key: &Path,
    ) -> Result<warden_bao::Client, Error> {
        let env = self.env(name)?;
        crate::client::workload_client(env, &self.layout.env(name), cert, key)
    }
}

fn new_config(options: &NewLabOptions) -> Result<LabConfig, Error> {
    let per_env = 2 * usize::from(options.nodes.max(1));
    let ports = process::free_ports(options.environments.len() * per_env)
        .map_err(|e| Error::io(Path::new("127.0.0.1"), "find free ports on", e))?;
    let environments = options
        .environments
        .iter()
        .zip(ports.chunks(per_env))
        .map(|(name, p)| EnvConfig {
            name: name.clone(),
            api_port: p[0],
            cluster_port: p[1],
            pki_mount: DEFAULT_PKI_MOUNT.to_owned(),
            seal: Default::default(),
            followers: crate::nodes::follower_ports(&p[2..]),
        })
        .collect();
    Ok(LabConfig {
        version: 1,
        shares: options.shares,
        threshold: options.threshold,
        environments,
        seal_keeper: None,
        postgres: None,
    })
}

fn open_or_init_ca(layout: &LabLayout, passphrase: &SecretString) -> Result<CaDir, Error> {
    let dir = layout.ca_dir();
    if dir.join("root.crt").exists() {
        return CaDir::open(&dir).map_err(Error::pki("lab", "open the offline CA"));
    }
    let options = RootOptions {
        common_name: "Warden Lab Offline Root CA".to_owned(),
        algorithm: KeyAlgorithm::EcdsaP256,
        validity: ROOT_VALIDITY,
        path_len: 1,
    };
    CaDir::init(&dir, &options, passphrase, OffsetDateTime::now_utc())
        .map_err(Error::pki("lab", "create the offline root CA"))
}

/// Runs futures concurrently on the current task and returns their outputs in order. (A tiny
/// `join_all`, to avoid a dependency for one function.)
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future completed"))
        .collect()
}
