//! How each lab environment is sealed: Shamir (the default), OpenBao's `static` seal (a key
//! file beside the node), or the `transit` seal against the lab's seal-keeper
//! ([`crate::seal_keeper`]). Chosen with `warden lab up --seal`, kept per environment in
//! `lab.json`, changed by `warden seal migrate`.
//!
//! The stanza comes from `warden_node::Seal`, the generator production uses; this module only
//! says where the lab keeps the files a seal reads:
//!
//! ```text
//! envs/<env>/seal/static.key              static seal key, 64 hex characters (0600)
//! envs/<env>/seal/keeper-ca.pem           trust anchor for the seal-keeper's listener
//! envs/<env>/seal/keeper-client.{crt,key} the environment's client certificate at the seal-keeper
//! envs/<env>/seal/keeper-token            the seal's periodic token, nothing else in it (0600)
//! envs/<env>/seal/keeper-token.accessor   its accessor (to check it is alive, or revoke it)
//! envs/<env>/custody/recovery-keys.json   legacy labs only: clear recovery keys (still read)
//! ```
//!
//! Recovery keys go through the custody ceremony like unseal shares: `init_auto` records them
//! with the lab custodians (ledger kind `recovery`), `unseal_shares`/`migration_shares` open
//! them in memory, and `shares_became_recovery_keys` turns a migrated Shamir ledger into a
//! recovery one. The seal-keeper's own share stays LAB ONLY in clear (`keeper_store_share`): a
//! real seal-keeper is unsealed by its custodians.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use warden_bao::Client;
use warden_custody::ShareKind;
use warden_node::{Seal, SealFiles, SealKind, StaticSeal, TransitSeal};

use crate::bring_up::Shared;
use crate::config::{EnvConfig, LabConfig};
use crate::custody;
use crate::error::Error;
use crate::layout::{EnvLayout, LabLayout};

/// One environment's seal, as `lab.json` records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum EnvSeal {
    /// Shamir unseal shares (LAB ONLY custody, or the custody ceremony).
    #[default]
    Shamir,
    /// OpenBao's `static` seal with a key file beside the node.
    Static {
        /// `current_key_id`.
        key_id: String,
    },
    /// OpenBao's `transit` seal against the lab's seal-keeper.
    Transit {
        /// The seal-keeper's API address.
        address: String,
        /// Its transit mount.
        mount: String,
        /// The transit key of this environment.
        key_name: String,
    },
}

impl EnvSeal {
    /// The kind, as OpenBao names it.
    pub fn kind(&self) -> SealKind {
        match self {
            Self::Shamir => SealKind::Shamir,
            Self::Static { .. } => SealKind::Static,
            Self::Transit { .. } => SealKind::Transit,
        }
    }

    /// Shamir (for `skip_serializing_if`: a Shamir lab's `lab.json` stays as it was).
    pub fn is_shamir(&self) -> bool {
        *self == Self::Shamir
    }

    /// The settings for environment `env` sealed with `kind`; `keeper` is the seal-keeper's
    /// address (needed for transit).
    pub(crate) fn new(kind: SealKind, env: &str, keeper: Option<&str>) -> Self {
        match (kind, keeper) {
            (SealKind::Shamir, _) => Self::Shamir,
            (SealKind::Static, _) => Self::Static {
                key_id: warden_node::seal::static_key_id(env),
            },
            (SealKind::Transit, keeper) => {
                let grant = warden_node::KeeperGrant::for_env(env);
                Self::Transit {
                    address: keeper.unwrap_or_default().to_owned(),
                    mount: grant.mount,
                    key_name: grant.key_name,
                }
            }
        }
    }

    /// One line for humans: `transit (seal-keeper https://127.0.0.1:N, key seal-test)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Shamir => "shamir".to_owned(),
            Self::Static { key_id } => format!("static (key {key_id})"),
            Self::Transit {
                address, key_name, ..
            } => format!("transit (seal-keeper {address}, key {key_name})"),
        }
    }
}

/// Where one environment of the lab keeps its seal's files (`envs/<env>/seal/`).
pub(crate) fn seal_files(layout: &EnvLayout) -> SealFiles {
    SealFiles::in_dir(layout.dir().join("seal"))
}

/// The node-side seal of `env`, with the lab's file paths.
pub(crate) fn node_seal(env: &EnvConfig, layout: &EnvLayout) -> Seal {
    let to = seal_of(&env.seal, layout);
    // During a migration away from an auto-seal the old one stays, disabled, until every
    // node has moved (OpenBao needs both to rewrap the root key).
    match read_previous(layout) {
        Ok(Some(previous)) if previous != env.seal => Seal::Migration {
            from: Box::new(seal_of(&previous, layout)),
            to: Box::new(to),
        },
        _ => to,
    }
}

fn seal_of(seal: &EnvSeal, layout: &EnvLayout) -> Seal {
    let files = seal_files(layout);
    match seal {
        EnvSeal::Shamir => Seal::Shamir,
        EnvSeal::Static { key_id } => Seal::Static(StaticSeal {
            key_id: key_id.clone(),
            key_file: files.static_key(),
            disabled: false,
        }),
        EnvSeal::Transit {
            address,
            mount,
            key_name,
        } => Seal::Transit(TransitSeal {
            address: address.clone(),
            mount: mount.clone(),
            key_name: key_name.clone(),
            ca_file: files.keeper_ca(),
            client_cert: files.keeper_cert(),
            client_key: files.keeper_key(),
            token_file: files.token(),
            server_name: None,
            disabled: false,
        }),
    }
}

/// `envs/<env>/seal/previous.json`: the seal being left while a migration from an auto-seal
/// is under way (absent otherwise).
fn previous_file(layout: &EnvLayout) -> PathBuf {
    seal_files(layout).dir().join("previous.json")
}

/// The seal a migration is leaving, if one is under way.
pub(crate) fn read_previous(layout: &EnvLayout) -> Result<Option<EnvSeal>, Error> {
    let path = previous_file(layout);
    match crate::read_text(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::CorruptLab {
                path,
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, "read", e)),
    }
}

/// Records the seal a migration leaves (the nodes' configurations keep it, disabled).
pub(crate) fn write_previous(layout: &EnvLayout, seal: &EnvSeal) -> Result<(), Error> {
    warden_files::ensure_private_dir(seal_files(layout).dir())?;
    let text = serde_json::to_string_pretty(seal).expect("a seal serialises");
    warden_files::write_atomic(
        &previous_file(layout),
        text.as_bytes(),
        warden_files::Mode::OwnerOnly,
    )?;
    Ok(())
}

/// The migration is over: the next start renders the new seal alone.
pub(crate) fn clear_previous(layout: &EnvLayout) -> Result<(), Error> {
    match std::fs::remove_file(previous_file(layout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&previous_file(layout), "remove", e)),
    }
}

/// Creates the files `env`'s seal reads that do not exist yet (the static key; the transit
/// seal's are made by [`crate::seal_keeper`]). Refuses to invent a static key for a server
/// that already holds data: its root key is wrapped by the lost one.
pub(crate) fn prepare_static(env: &EnvConfig, layout: &EnvLayout) -> Result<(), Error> {
    let EnvSeal::Static { .. } = &env.seal else {
        return Ok(());
    };
    let files = seal_files(layout);
    if files.static_key().exists() {
        return Ok(());
    }
    if layout.data_dir().join("vault.db").exists() && env_was_static(layout) {
        return Err(Error::SealPrecondition {
            env: env.name.clone(),
            what: format!(
                "the static seal key {} is missing but the server holds data sealed by it",
                files.static_key().display()
            ),
        });
    }
    warden_files::ensure_private_dir(files.dir())?;
    warden_node::seal::write_static_key(&files.static_key()).map_err(|e| seal_err(env, e))
}

/// Whether the environment's server config already names a static seal (a server that was
/// never sealed by a static key may get a fresh one, for example during a migration).
fn env_was_static(layout: &EnvLayout) -> bool {
    crate::read_text(layout.server_config())
        .map(|c| c.contains("seal \"static\""))
        .unwrap_or(false)
}

pub(crate) fn seal_err(env: &EnvConfig, e: warden_node::SealError) -> Error {
    Error::SealPrecondition {
        env: env.name.clone(),
        what: e.to_string(),
    }
}

/// Initialises an auto-sealed environment: recovery keys instead of unseal shares, through the
/// same ceremony as a Shamir environment's shares (one key per lab custodian, each encrypted to
/// that custodian alone, the root token to all of them, a ledger of kind `recovery`). No
/// recovery key and no root token is written in clear. Hook for `bring_up`.
pub(crate) async fn init_auto(
    env: &EnvConfig,
    layout: &EnvLayout,
    client: &Client,
    shares: u8,
    threshold: u8,
) -> Result<(), Error> {
    // Everything that can fail without the server first: the keys OpenBao hands out once must
    // never wait for a custodian identity or meet an existing ledger.
    custody::check_no_ledger(layout)?;
    let custodians = custody::lab_custodians(layout, shares)?;
    let init = client
        .init_with_recovery(shares, threshold)
        .await
        .map_err(Error::bao(&env.name, "initialise with recovery keys"))?;
    custody::record_ceremony(
        layout,
        &custodians,
        threshold,
        ShareKind::Recovery,
        &init.recovery_keys,
        &init.root_token,
    )?;
    Ok(())
}

/// Where labs made before recovery keys went through the ceremony keep them in clear (LAB
/// ONLY, legacy): still read, never written for a ceremony lab.
pub(crate) fn recovery_keys_file(layout: &EnvLayout) -> PathBuf {
    layout.custody_dir().join("recovery-keys.json")
}

/// The seal-keeper's own unseal share: LAB ONLY custody, so the lab restarts unattended (a
/// real seal-keeper is unsealed by its custodians). Kept apart from the environments' custody
/// on purpose: the seal-keeper is the lab's unattended root of trust, and it stays clear.
pub(crate) fn keeper_store_share(layout: &EnvLayout, keys: &[SecretString]) -> Result<(), Error> {
    custody::write_unseal_keys(&layout.unseal_keys(), 1, 1, keys)
}

/// The seal-keeper's unseal share, if the lab holds it.
pub(crate) fn keeper_shares(layout: &EnvLayout) -> Result<Option<Vec<SecretString>>, Error> {
    custody::read_unseal_keys(&layout.unseal_keys())
}

/// The Shamir unseal shares a seal migration submits: opened in memory by the lab custodians
/// (ceremony), or a legacy lab's clear ones. None at all (no ledger) is an empty list, so the
/// plan can say what is missing.
pub(crate) fn unseal_shares(layout: &EnvLayout) -> Result<Vec<SecretString>, Error> {
    match custody::custody_mode(layout) {
        custody::CustodyMode::None => Ok(Vec::new()),
        _ => custody::unseal_shares(layout),
    }
}

/// The old seal's shares a migration submits with `migrate=true`: the Shamir unseal shares
/// when leaving Shamir, the recovery keys when leaving an auto-seal (the ceremony's, or a
/// legacy lab's clear file).
pub(crate) fn migration_shares(
    layout: &EnvLayout,
    from: SealKind,
) -> Result<Vec<SecretString>, Error> {
    if from == SealKind::Shamir
        || custody::custody_mode(layout) != custody::CustodyMode::LegacyClear
    {
        unseal_shares(layout)
    } else {
        Ok(custody::read_unseal_keys(&recovery_keys_file(layout))?.unwrap_or_default())
    }
}

/// Where `migration_shares` looks, for messages.
pub(crate) fn migration_shares_source(layout: &EnvLayout, from: SealKind) -> String {
    if from == SealKind::Shamir
        || custody::custody_mode(layout) != custody::CustodyMode::LegacyClear
    {
        unseal_shares_source(layout)
    } else {
        recovery_keys_file(layout).display().to_string()
    }
}

/// Where `unseal_shares` looks, for messages: the custody ledger (a legacy lab's clear file).
pub(crate) fn unseal_shares_source(layout: &EnvLayout) -> String {
    shares_home(layout).display().to_string()
}

/// The file that says where an environment's shares (unseal or recovery) are: the ledger of a
/// ceremony lab (also where a lab without custody would get one), a legacy lab's clear file.
pub(crate) fn shares_home(layout: &EnvLayout) -> PathBuf {
    match custody::custody_mode(layout) {
        custody::CustodyMode::LegacyClear if layout.unseal_keys().exists() => layout.unseal_keys(),
        custody::CustodyMode::LegacyClear => recovery_keys_file(layout),
        _ => custody::custody_ledger_path(layout),
    }
}

/// After a migration from Shamir the same shares are the recovery keys: the ledger's kind
/// becomes `recovery` (nothing is written in clear). A legacy lab keeps its clear custody: the
/// shares move to its recovery-keys file and the unseal-share file goes.
pub(crate) fn shares_became_recovery_keys(
    layout: &EnvLayout,
    shares: u8,
    threshold: u8,
    keys: &[SecretString],
) -> Result<(), Error> {
    if custody::custody_mode(layout) != custody::CustodyMode::LegacyClear {
        return custody::mark_recovery(layout);
    }
    custody::write_unseal_keys(&recovery_keys_file(layout), shares, threshold, keys)?;
    std::fs::remove_file(layout.unseal_keys())
        .map_err(|e| Error::io(&layout.unseal_keys(), "remove", e))
}

/// Why a node of `env` is sealed or not running, when the seal explains it (hook for
/// `lab status`): "sealed: seal-keeper https://127.0.0.1:N unreachable".
pub(crate) async fn explain(env: &EnvConfig, layout: &EnvLayout) -> Option<String> {
    match &env.seal {
        EnvSeal::Shamir => None,
        EnvSeal::Static { .. } => {
            let key = seal_files(layout).static_key();
            (!key.exists()).then(|| format!("sealed: static seal key {} missing", key.display()))
        }
        EnvSeal::Transit { address, .. } => {
            let client = crate::seal_keeper::seal_client(env, layout).ok()?;
            match client.health().await {
                Ok(h) if h.sealed => Some(format!("sealed: seal-keeper {address} is sealed")),
                Ok(h) if !h.initialized => {
                    Some(format!("sealed: seal-keeper {address} is not initialised"))
                }
                Ok(_) => None,
                Err(_) => Some(format!("sealed: seal-keeper {address} unreachable")),
            }
        }
    }
}

/// Seals every environment of a new lab with `kind`; a transit lab gets a seal-keeper.
pub(crate) fn configure_new(config: &mut LabConfig, kind: SealKind) -> Result<(), Error> {
    if kind == SealKind::Transit && config.seal_keeper.is_none() {
        config.seal_keeper = Some(crate::seal_keeper::new_config()?);
    }
    let keeper = config.seal_keeper.as_ref().map(EnvConfig::address);
    for env in &mut config.environments {
        env.seal = EnvSeal::new(kind, &env.name, keeper.as_deref());
    }
    Ok(())
}

/// Before the environments start: brings up the seal-keeper when an environment is
/// transit-sealed and gives each such environment its key, certificate and token; creates
/// missing static keys. Hook for `Lab::up`.
pub(crate) async fn prepare_all(
    lab: &LabLayout,
    config: &LabConfig,
    s: &Shared<'_>,
) -> Result<(), Error> {
    for env in &config.environments {
        prepare_static(env, &lab.env(&env.name))?;
    }
    let transit: Vec<&EnvConfig> = config
        .environments
        .iter()
        .filter(|e| e.seal.kind() == SealKind::Transit)
        .collect();
    let Some(keeper_cfg) = config.seal_keeper.as_ref() else {
        return match transit.first() {
            Some(env) => Err(Error::SealPrecondition {
                env: env.name.clone(),
                what: "transit-sealed, but lab.json has no seal-keeper".to_owned(),
            }),
            None => Ok(()),
        };
    };
    if transit.is_empty() {
        return Ok(());
    }
    let keeper = crate::seal_keeper::ensure(keeper_cfg, lab, s).await?;
    for env in transit {
        if keeper.grant(env, &lab.env(&env.name), lab).await? {
            s.progress.step(
                &env.name,
                &format!(
                    "seal token issued by the seal-keeper {} (policy: its own key only)",
                    keeper.address()
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(seal: EnvSeal) -> EnvConfig {
        EnvConfig {
            name: "test".into(),
            api_port: 8200,
            cluster_port: 8201,
            pki_mount: "pki_int".into(),
            seal,
            followers: Vec::new(),
        }
    }

    #[test]
    fn a_lab_json_without_seal_is_shamir_and_stays_unchanged() {
        let old = r#"{"name":"test","api_port":1,"cluster_port":2,"pki_mount":"pki_int"}"#;
        let cfg: EnvConfig = serde_json::from_str(old).unwrap();
        assert_eq!(cfg.seal, EnvSeal::Shamir);
        assert_eq!(serde_json::to_string(&cfg).unwrap(), old);
    }

    #[test]
    fn transit_settings_round_trip_and_render_with_lab_paths() {
        let seal = EnvSeal::new(SealKind::Transit, "test", Some("https://127.0.0.1:9"));
        let json = serde_json::to_value(&seal).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "transit", "address": "https://127.0.0.1:9",
                "mount": "transit", "key_name": "seal-test"})
        );
        assert_eq!(serde_json::from_value::<EnvSeal>(json).unwrap(), seal);
        let layout = LabLayout::new("/lab").env("test");
        let s = node_seal(&env(seal), &layout).render().unwrap();
        assert!(
            s.contains(r#"token           = "file:///lab/envs/test/seal/keeper-token""#),
            "{s}"
        );
        assert!(s.contains(r#"key_name        = "seal-test""#), "{s}");
    }

    #[test]
    fn an_unrenderable_seal_stops_the_node_rather_than_becoming_shamir() {
        // No seal-keeper address: rendering the node's configuration fails (and the node is
        // not started), it does not fall back to a Shamir configuration.
        let mut cfg = env(EnvSeal::new(SealKind::Transit, "test", None));
        let layout = LabLayout::new("/lab").env("test");
        let node = cfg.node(1).unwrap();
        let e = crate::nodes::render_config(&cfg, &node, &layout).unwrap_err();
        assert!(e.to_string().contains("address"), "{e}");
        cfg.seal = EnvSeal::Shamir;
        let text = crate::nodes::render_config(&cfg, &node, &layout).unwrap();
        assert!(!text.contains("seal \""), "{text}");
    }
}
