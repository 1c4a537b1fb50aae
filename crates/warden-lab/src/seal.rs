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
//! envs/<env>/custody/recovery-keys.json   LAB ONLY: recovery key shares of an auto-sealed env
//! ```
//!
//! Custody goes through four functions here and nowhere else, so the custody ceremony can take
//! it over: `init_auto` (recovery keys and the initial root token of an auto-sealed
//! environment), `store_recovery_keys`, `unseal_shares` (what a migration submits) and
//! `shares_became_recovery_keys`. The seal-keeper's own share stays LAB ONLY
//! (`keeper_store_share`).

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use warden_bao::Client;
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
    match std::fs::read_to_string(&path) {
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
    std::fs::read_to_string(layout.server_config())
        .map(|c| c.contains("seal \"static\""))
        .unwrap_or(false)
}

pub(crate) fn seal_err(env: &EnvConfig, e: warden_node::SealError) -> Error {
    Error::SealPrecondition {
        env: env.name.clone(),
        what: e.to_string(),
    }
}

/// Initialises an auto-sealed environment: recovery shares instead of unseal shares, kept
/// through `store_recovery_keys`. Hook for `bring_up`.
pub(crate) async fn init_auto(
    env: &EnvConfig,
    layout: &EnvLayout,
    client: &Client,
    shares: u8,
    threshold: u8,
) -> Result<(), Error> {
    let init = client
        .init_with_recovery(shares, threshold)
        .await
        .map_err(Error::bao(&env.name, "initialise with recovery keys"))?;
    custody::prepare_dir(&layout.custody_dir())?;
    store_recovery_keys(layout, shares, threshold, &init.recovery_keys)?;
    custody::write_secret(&layout.root_token(), &init.root_token)?;
    Ok(())
}

/// Where the lab keeps an environment's recovery keys.
pub fn recovery_keys_file(layout: &EnvLayout) -> PathBuf {
    layout.custody_dir().join("recovery-keys.json")
}

/// Keeps recovery key shares. LAB ONLY custody, like the unseal shares; this is the one
/// function to re-point when the custody ceremony takes them over.
pub(crate) fn store_recovery_keys(
    layout: &EnvLayout,
    shares: u8,
    threshold: u8,
    keys: &[SecretString],
) -> Result<(), Error> {
    custody::write_unseal_keys(&recovery_keys_file(layout), shares, threshold, keys)
}

/// Reads the recovery key shares, if the lab holds any.
pub fn read_recovery_keys(layout: &EnvLayout) -> Result<Option<Vec<SecretString>>, Error> {
    custody::read_unseal_keys(&recovery_keys_file(layout))
}

/// The seal-keeper's own unseal share: LAB ONLY custody, so the lab restarts unattended (a
/// real seal-keeper is unsealed by its custodians). Kept apart from the environments' custody
/// on purpose: the ceremony that takes over theirs does not have to take over this one.
pub(crate) fn keeper_store_share(layout: &EnvLayout, keys: &[SecretString]) -> Result<(), Error> {
    custody::write_unseal_keys(&layout.unseal_keys(), 1, 1, keys)
}

/// The seal-keeper's unseal share, if the lab holds it.
pub(crate) fn keeper_shares(layout: &EnvLayout) -> Result<Option<Vec<SecretString>>, Error> {
    custody::read_unseal_keys(&layout.unseal_keys())
}

/// The Shamir unseal shares a seal migration submits. LAB ONLY custody today; the second
/// function to re-point when the custody ceremony holds the shares (with the custodians'
/// shares decrypted in memory).
pub(crate) fn unseal_shares(layout: &EnvLayout) -> Result<Vec<SecretString>, Error> {
    Ok(custody::read_unseal_keys(&layout.unseal_keys())?.unwrap_or_default())
}

/// The old seal's shares a migration submits with `migrate=true`: the Shamir unseal shares
/// when leaving Shamir, the recovery keys when leaving an auto-seal.
pub(crate) fn migration_shares(
    layout: &EnvLayout,
    from: SealKind,
) -> Result<Vec<SecretString>, Error> {
    if from == SealKind::Shamir {
        unseal_shares(layout)
    } else {
        Ok(read_recovery_keys(layout)?.unwrap_or_default())
    }
}

/// Where `migration_shares` looks, for messages.
pub(crate) fn migration_shares_source(layout: &EnvLayout, from: SealKind) -> String {
    if from == SealKind::Shamir {
        unseal_shares_source(layout)
    } else {
        recovery_keys_file(layout).display().to_string()
    }
}

/// Where `unseal_shares` looks, for messages.
pub(crate) fn unseal_shares_source(layout: &EnvLayout) -> String {
    layout.unseal_keys().display().to_string()
}

/// After a migration the Shamir shares are the recovery keys: kept through
/// `store_recovery_keys`, and the unseal-share file goes (it unseals nothing any more).
pub(crate) fn shares_became_recovery_keys(
    layout: &EnvLayout,
    shares: u8,
    threshold: u8,
    keys: &[SecretString],
) -> Result<(), Error> {
    store_recovery_keys(layout, shares, threshold, keys)?;
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
