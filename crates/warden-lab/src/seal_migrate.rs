//! `warden seal migrate --env E --to transit|static` in the lab: OpenBao's seal migration on a
//! live environment, from Shamir to an auto-seal or from one auto-seal to the other, without
//! losing data.
//!
//! Plan first ([`Lab::plan_seal_migration`]): every precondition is checked before anything
//! changes (every node runs unsealed with the old seal, enough shares of the old seal are in
//! custody — unseal shares when leaving Shamir, recovery keys when leaving an auto-seal — and
//! the seal-keeper answers when either seal is transit), and the plan says what will change
//! and which nodes restart, standbys first and the active node last.
//! Then [`Lab::migrate_seal`]: the seal being left is recorded (`seal/previous.json`), the new
//! seal is written into the environment's settings, and each node restarts with the new seal
//! (and the old auto-seal, `disabled`), gets the old seal's shares with `migrate=true` when it
//! waits for them, and must report the new seal before the next one restarts. Shamir shares
//! become the recovery keys; recovery keys stay what they were.
//!
//! A migration that stopped half-way is resumed by running the same command again: the
//! recorded seal says one is under way, and only the waiting nodes get the shares.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::Serialize;
use warden_node::SealKind;

use crate::bring_up::{Progress, Shared};
use crate::client;
use crate::cluster;
use crate::config::{EnvConfig, LabConfig};
use crate::custody;
use crate::error::Error;
use crate::lab::Lab;
use crate::layout::EnvLayout;
use crate::nodes::Node;
use crate::seal::{self, EnvSeal};
use crate::seal_keeper;
use crate::server::{self, ProcessState};

/// How long a node may take to finish the migration once unsealed.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a seal migration will do. Built by reading only.
#[derive(Debug, Clone, Serialize)]
pub struct SealMigrationPlan {
    /// The environment.
    pub env: String,
    /// Its seal now.
    pub from: SealKind,
    /// The seal it gets.
    pub to: SealKind,
    /// The seal-keeper (transit).
    pub seal_keeper: Option<String>,
    /// The lab has no seal-keeper yet: one is created and started first.
    pub create_seal_keeper: bool,
    /// The nodes restarted, one at a time, in this order.
    pub nodes_to_restart: Vec<String>,
    /// A node already waits in migration mode (an earlier run stopped half-way): only the
    /// shares are submitted.
    pub resume: bool,
    /// Unseal shares the lab holds for the environment.
    pub shares_in_custody: usize,
    /// Shares the migration needs.
    pub threshold: u8,
    /// The steps, in order, for humans.
    pub steps: Vec<String>,
}

/// What a seal migration did.
#[derive(Debug, Clone, Serialize)]
pub struct SealMigrationReport {
    /// The plan it carried out.
    pub plan: SealMigrationPlan,
    /// The seal type the server reports afterwards (`sys/seal-status`).
    pub seal_type: String,
    /// Recovery key shares / threshold afterwards (the former unseal shares).
    pub recovery_shares: u8,
    /// Recovery threshold afterwards.
    pub recovery_threshold: u8,
    /// Where the recovery keys are now: the custody ledger (kind `recovery`; the shares stay
    /// encrypted to the lab custodians), or a legacy lab's clear file.
    pub recovery_keys: PathBuf,
    /// Wall time of the migration, restart included (seconds).
    pub seconds: f64,
}

fn refuse(env: &str, what: impl Into<String>) -> Error {
    Error::SealPrecondition {
        env: env.to_owned(),
        what: what.into(),
    }
}

impl Lab {
    /// Checks every precondition of migrating `env` to `to` and says what would change.
    /// Changes nothing.
    pub async fn plan_seal_migration(
        &self,
        env: &str,
        to: SealKind,
    ) -> Result<SealMigrationPlan, Error> {
        let cfg = self.env(env)?;
        let layout = self.layout().env(env);
        // A migration under way (recorded before its first restart) is resumed, whatever the
        // nodes say; otherwise the environment's seal is the one being left.
        let previous = seal::read_previous(&layout)?;
        let resume = previous.is_some();
        let from = previous.as_ref().map_or(cfg.seal.kind(), EnvSeal::kind);
        if to == SealKind::Shamir {
            return Err(refuse(
                env,
                "migrating to shamir is not supported: warden migrates to static or transit",
            ));
        }
        if resume && cfg.seal.kind() != to {
            return Err(refuse(
                env,
                format!(
                    "a migration from {from} to {} is under way; finish it with --to {}",
                    cfg.seal.kind(),
                    cfg.seal.kind()
                ),
            ));
        }
        if !resume && from == to {
            return Err(refuse(
                env,
                format!("already sealed by {to}; nothing to do"),
            ));
        }
        let survey = survey(cfg, &layout).await?;
        let status = survey.status;
        if !status.initialized {
            return Err(refuse(env, "the server is not initialised"));
        }
        if !resume && (status.sealed || status.migration || status.seal_type != from.as_str()) {
            return Err(refuse(
                env,
                format!(
                    "the server must be running unsealed with {from} (it reports seal {}, sealed {}, migration {})",
                    status.seal_type, status.sealed, status.migration
                ),
            ));
        }
        let shares = seal::migration_shares(&layout, from)?;
        let threshold = status.threshold.max(1);
        if shares.len() < usize::from(threshold) {
            let what = if from == SealKind::Shamir {
                "unseal shares"
            } else {
                "recovery keys"
            };
            return Err(refuse(
                env,
                format!(
                    "{what} missing: {} in custody ({}), {threshold} needed to migrate",
                    shares.len(),
                    seal::migration_shares_source(&layout, from)
                ),
            ));
        }
        // The old seal must still answer during a migration away from transit; the new one
        // before the first restart.
        let keeper_needed = to == SealKind::Transit || from == SealKind::Transit;
        let (seal_keeper, create_seal_keeper) = match (keeper_needed, &self.config().seal_keeper) {
            (true, Some(k)) => {
                keeper_reachable(k, self)
                    .await
                    .map_err(|w| refuse(env, w))?;
                (Some(k.address()), false)
            }
            (true, None) if to == SealKind::Transit => (None, true),
            (true, None) => {
                return Err(refuse(
                    env,
                    "transit-sealed, but lab.json has no seal-keeper",
                ));
            }
            (false, _) => (None, false),
        };
        let nodes_to_restart = if resume { Vec::new() } else { survey.order };
        let steps = plan_steps(env, from, to, resume, create_seal_keeper, &nodes_to_restart);
        Ok(SealMigrationPlan {
            env: env.to_owned(),
            from,
            to,
            seal_keeper,
            create_seal_keeper,
            nodes_to_restart,
            resume,
            shares_in_custody: shares.len(),
            threshold,
            steps,
        })
    }

    /// Carries out `plan` (from [`Lab::plan_seal_migration`]). Each node restarts with the
    /// new seal, gets the Shamir shares with `migrate=true`, and must report the new seal
    /// before the next one restarts.
    pub async fn migrate_seal(
        &self,
        plan: SealMigrationPlan,
        progress: &dyn Progress,
    ) -> Result<SealMigrationReport, Error> {
        let started = Instant::now();
        let env = plan.env.as_str();
        let layout = self.layout().env(env);
        let passphrase =
            custody::read_secret(&self.layout().ca_passphrase_file())?.ok_or_else(|| {
                Error::CustodyMissing {
                    env: "lab".to_owned(),
                    path: self.layout().ca_passphrase_file(),
                }
            })?;
        let ca = warden_pki::CaDir::open(&self.layout().ca_dir())
            .map_err(Error::pki("lab", "open the offline CA"))?;
        let bao = crate::process::bao_binary().map_err(Error::process("lab"))?;
        let no_constraints = std::collections::BTreeMap::new();
        let shared = Shared {
            ca: &ca,
            passphrase: &passphrase,
            bao: &bao,
            shares: self.config().shares,
            threshold: self.config().threshold,
            progress,
            // Bootstrap ended when the lab was created; a migration never mints a token.
            test_harness_token: false,
            // Intermediates already exist; a migration signs none.
            permitted_dns: &no_constraints,
        };

        // 0. Record the seal being left before anything changes, so a crash is resumed.
        if !plan.resume {
            let current = self.env(env)?.seal.clone();
            seal::write_previous(&layout, &current)?;
        }

        // 1. The new seal in lab.json (the seal-keeper too, if it is new).
        let mut config = self.config().clone();
        if plan.to == SealKind::Transit && config.seal_keeper.is_none() {
            config.seal_keeper = Some(seal_keeper::new_config()?);
        }
        let keeper_addr = config.seal_keeper.as_ref().map(EnvConfig::address);
        let new_seal = EnvSeal::new(plan.to, env, keeper_addr.as_deref());
        set_env_seal(&mut config, env, new_seal.clone());
        let cfg = config
            .env(env)
            .cloned()
            .expect("the plan named a lab environment");

        // 2. What the new seal reads: key file, or seal-keeper key, certificate and token.
        if plan.to == SealKind::Transit {
            let keeper_cfg = config.seal_keeper.as_ref().expect("set above");
            let keeper = seal_keeper::ensure(keeper_cfg, self.layout(), &shared).await?;
            keeper.grant(&cfg, &layout, self.layout()).await?;
            progress.step(
                env,
                &format!("seal-keeper {} holds key seal-{env}", keeper.address()),
            );
        } else {
            seal::prepare_static(&cfg, &layout)?;
            progress.step(env, "static seal key written (owner-only)");
        }
        config.save(&self.layout().config_file())?;

        // 3. Node by node, standbys first and the active node last: restart with the new
        //    seal and submit the shares with migrate=true. When the active node goes, a
        //    migrated standby takes over and performs the migration.
        let shares = seal::migration_shares(&layout, plan.from)?;
        let nodes = cfg.nodes();
        for address in &plan.nodes_to_restart {
            let Some(node) = nodes.iter().find(|n| &n.address() == address) else {
                continue;
            };
            progress.step(
                env,
                &format!("restarting {address} with {}", new_seal.describe()),
            );
            server::stop(&cfg, node, &layout).await?;
            server::start(&cfg, node, &layout, &bao).await?;
            unseal_migrating(&cfg, node, &layout, &shares, progress).await?;
        }
        if plan.resume {
            for node in &nodes {
                unseal_migrating(&cfg, node, &layout, &shares, progress).await?;
            }
        }
        let status = wait_all_migrated(&cfg, &layout, plan.to, progress).await?;

        // 4. The Shamir shares are now the recovery keys (recovery keys stay what they were),
        //    and the next start renders the new seal alone.
        if plan.from == SealKind::Shamir {
            seal::shares_became_recovery_keys(&layout, status.shares, status.threshold, &shares)?;
            progress.step(
                env,
                "the former unseal shares are the recovery keys now (custody ledger kind: recovery)",
            );
            if let Ok(client) = client::operator_client(&cfg, &layout, None) {
                // The ledger changed, so its digest in the registry is stale until republished
                // (best effort: `lab up` publishes it again).
                custody::publish_ledger(&client, &layout).await;
            }
        }
        seal::clear_previous(&layout)?;
        Ok(SealMigrationReport {
            seal_type: status.seal_type.clone(),
            recovery_shares: status.shares,
            recovery_threshold: status.threshold,
            recovery_keys: seal::shares_home(&layout),
            seconds: started.elapsed().as_secs_f64(),
            plan,
        })
    }
}

/// Once a restarted node answers: if it waits in migration mode, submits the shares with
/// `migrate=true`; a node that unseals itself (the migration already done by another node)
/// needs nothing.
async fn unseal_migrating(
    cfg: &EnvConfig,
    node: &Node,
    layout: &EnvLayout,
    shares: &[SecretString],
    progress: &dyn Progress,
) -> Result<(), Error> {
    let env = cfg.name.as_str();
    let client = cluster::node_client(cfg, node, layout)?;
    client
        .wait_reachable()
        .await
        .map_err(Error::bao(env, "reach the restarted server"))?;
    let deadline = Instant::now() + MIGRATE_TIMEOUT;
    loop {
        let st = client.seal_status().await;
        match st {
            Ok(st) if !st.sealed => return Ok(()),
            Ok(st) if st.migration => {
                warden_node::migrate::submit_shares(&client, shares)
                    .await
                    .map_err(|e| Error::SealMigration {
                        env: env.to_owned(),
                        source: Box::new(e),
                    })?;
                progress.step(
                    env,
                    &format!("{}: shares accepted with migrate=true", node.id),
                );
                return Ok(());
            }
            Ok(st) if Instant::now() >= deadline => {
                return Err(Error::ServerState {
                    env: env.to_owned(),
                    what: format!(
                        "{} stayed sealed without asking for a migration (seal {})",
                        node.id, st.seal_type
                    ),
                });
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::bao(env, "read seal status")(e));
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Waits until every node reports the new seal with no migration pending, then until the
/// cluster has an active node; returns the active node's seal status.
async fn wait_all_migrated(
    cfg: &EnvConfig,
    layout: &EnvLayout,
    to: SealKind,
    progress: &dyn Progress,
) -> Result<warden_bao::SealStatus, Error> {
    let env = cfg.name.as_str();
    let mig = |e| Error::SealMigration {
        env: env.to_owned(),
        source: Box::new(e),
    };
    for node in cfg.nodes() {
        let client = cluster::node_client(cfg, &node, layout)?;
        warden_node::migrate::wait_migrated(&client, to, MIGRATE_TIMEOUT)
            .await
            .map_err(mig)?;
    }
    let active = cluster::wait_ready(cfg, layout).await?;
    let status = active
        .seal_status()
        .await
        .map_err(Error::bao(env, "read seal status"))?;
    progress.step(
        env,
        &format!("seal is {} now on every node", status.seal_type),
    );
    Ok(status)
}

/// Every node of the environment, running, in restart order (standbys first, the active node
/// last), and the seal status the migration starts from.
struct Survey {
    order: Vec<String>,
    status: warden_bao::SealStatus,
}

async fn survey(cfg: &EnvConfig, layout: &EnvLayout) -> Result<Survey, Error> {
    let env = cfg.name.as_str();
    let mut standbys = Vec::new();
    let mut active = None;
    let mut status = None;
    for node in cfg.nodes() {
        if !matches!(server::find(cfg, &node, layout)?, ProcessState::Running(_)) {
            return Err(refuse(
                env,
                format!(
                    "node {} is not running; start it with `warden lab up` first",
                    node.id
                ),
            ));
        }
        let client = cluster::node_client(cfg, &node, layout)?;
        let st = client
            .seal_status()
            .await
            .map_err(Error::bao(env, "read seal status"))?;
        let standby = client.health().await.map(|h| h.standby).unwrap_or(true);
        if !standby && !st.sealed {
            active = Some(node.address());
            status = Some(st);
        } else {
            standbys.push(node.address());
            if status.is_none() || st.migration {
                status = Some(st);
            }
        }
    }
    let status = status.ok_or_else(|| refuse(env, "it has no node"))?;
    standbys.extend(active);
    Ok(Survey {
        order: standbys,
        status,
    })
}

fn set_env_seal(config: &mut LabConfig, env: &str, seal: EnvSeal) {
    if let Some(e) = config.environments.iter_mut().find(|e| e.name == env) {
        e.seal = seal;
    }
}

async fn keeper_reachable(keeper: &EnvConfig, lab: &Lab) -> Result<(), String> {
    let layout = lab.layout().seal_keeper();
    let client = client::operator_client(keeper, &layout, None).map_err(|e| e.to_string())?;
    match client.health().await {
        Ok(h) if h.is_ready() => Ok(()),
        Ok(h) => Err(format!(
            "seal-keeper {} is not ready (sealed {}, initialised {}); `warden lab up` starts and unseals it",
            keeper.address(),
            h.sealed,
            h.initialized
        )),
        Err(_) => Err(format!(
            "seal-keeper {} unreachable; `warden lab up` starts it",
            keeper.address()
        )),
    }
}

fn plan_steps(
    env: &str,
    from: SealKind,
    to: SealKind,
    resume: bool,
    create_keeper: bool,
    nodes: &[String],
) -> Vec<String> {
    let shares = if from == SealKind::Shamir {
        "the shamir unseal shares"
    } else {
        "the recovery keys"
    };
    let mut steps = Vec::new();
    if resume {
        steps.push(format!(
            "a migration from {from} to {to} is under way: submit {shares} with migrate=true to every node waiting for them"
        ));
    } else {
        if create_keeper {
            steps.push(
                "create and start the seal-keeper (its own OpenBao, mTLS, LAB ONLY custody)".into(),
            );
        }
        steps.push(match to {
            SealKind::Transit => format!(
                "seal-keeper: transit key seal-{env}, policy seal-{env} (encrypt/decrypt that key only), periodic orphan token for {env}'s nodes"
            ),
            _ => format!("generate a 32-byte static seal key for {env} (owner-only file)"),
        });
        let old = if from == SealKind::Shamir {
            String::new()
        } else {
            format!(" (the {from} seal stays, disabled, until the migration is done)")
        };
        steps.push(format!(
            "write the {to} seal into lab.json and {env}'s server configuration{old}"
        ));
        for n in nodes {
            steps.push(format!(
                "restart {n}, then submit {shares} with migrate=true if it waits for them"
            ));
        }
    }
    steps.push(format!(
        "verify sys/seal-status reports {to}, no migration pending, on every node"
    ));
    steps.push(if from == SealKind::Shamir {
        "keep the former unseal shares as recovery keys (the custody ledger's kind becomes recovery)"
            .into()
    } else {
        "the recovery keys stay what they were".into()
    });
    steps
}
