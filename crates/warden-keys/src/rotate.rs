//! Loading a signing key's versions from KV v2 and rotating it: what the provider, the
//! watcher and `warden rotate signing-key` share.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use warden_bao::Client;
use warden_spec::SigningAlgorithm;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::keyset::{self, KeySet};
use crate::kv::{self, KvLocation, Versions};

/// Versions scanned per load, newest first. KV v2 keeps 10 versions unless the mount says
/// otherwise; this bound only matters for mounts configured to keep many more.
pub const MAX_VERSIONS_SCANNED: usize = 32;

/// Which signing key, and how its rotations are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyConfig {
    /// Where its versions live.
    pub location: KvLocation,
    /// Algorithm of new versions.
    pub algorithm: SigningAlgorithm,
    /// How long the replaced version keeps verifying after a rotation (at least; see
    /// `max_token_lifetime`).
    pub grace: Duration,
    /// Modulus size of new RS256 versions (2048 or 3072; `None`: 2048). Ignored for the
    /// other algorithms.
    pub rsa_bits: Option<u32>,
    /// The longest lifetime of a token the new versions sign, recorded in each version: the
    /// version then refuses to sign a token whose `exp` is further away, and, once replaced,
    /// verifies until at least the rotation plus this lifetime. `None`: not declared (no cap;
    /// the replaced version verifies for `grace` only).
    pub max_token_lifetime: Option<Duration>,
}

impl SigningKeyConfig {
    /// The default grace: 24 hours.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

    /// A key at `<kv_mount>/<path>` with the default grace.
    pub fn new(location: KvLocation, algorithm: SigningAlgorithm) -> Self {
        Self {
            location,
            algorithm,
            grace: Self::DEFAULT_GRACE,
            rsa_bits: None,
            max_token_lifetime: None,
        }
    }

    /// `app`'s signing key `key` of `spec`, where [`warden_spec::naming::signing_key`] puts it
    /// in `env`.
    pub fn from_spec(
        spec: &warden_spec::Spec,
        env: &warden_spec::Environment,
        app: &warden_spec::Slug,
        key: &warden_spec::SigningKey,
    ) -> Self {
        let entry =
            warden_spec::naming::signing_key(&spec.naming, &env.mounts, app, key.name.as_str());
        Self {
            location: entry.into(),
            algorithm: key.algorithm,
            grace: key.grace.0,
            rsa_bits: key.rsa_bits,
            max_token_lifetime: key.max_token_lifetime.map(|t| t.0),
        }
    }

    /// With another grace.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// With another RSA modulus size for new RS256 versions (2048 or 3072).
    #[must_use]
    pub fn with_rsa_bits(mut self, bits: u32) -> Self {
        self.rsa_bits = Some(bits);
        self
    }

    /// Declaring the longest lifetime of a token the key signs (see the field).
    #[must_use]
    pub fn with_max_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_token_lifetime = Some(lifetime);
        self
    }
}

/// The version a rotation replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retiring {
    /// Its KV version.
    pub version: u64,
    /// Its `kid` (`None` if the stored version could not be read).
    pub kid: Option<String>,
    /// When it stops verifying: the new version's creation plus the grace, or plus the
    /// retiring version's recorded `max_token_lifetime` when that is longer.
    #[serde(with = "time::serde::rfc3339")]
    pub verifies_until: OffsetDateTime,
}

/// What a rotation did. Carries no key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rotation {
    /// `<mount>/<path>`.
    pub location: String,
    /// The new version.
    pub version: u64,
    /// Its `kid`.
    pub kid: String,
    /// Its JWS algorithm.
    pub alg: &'static str,
    /// When OpenBao recorded it: the rotation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The grace granted to the version it replaced, in seconds.
    pub grace_seconds: u64,
    /// The version it replaced; `None` for the first version.
    pub previous: Option<Retiring>,
}

/// Reads the key's live versions and assembles the set valid at `clock.now()`.
/// [`Error::NotProvisioned`] when no live version exists.
pub async fn load(client: &Client, location: &KvLocation, clock: &dyn Clock) -> Result<KeySet> {
    let versions = kv::versions(client, location).await?;
    load_versions(client, location, &versions, clock.now()).await
}

pub(crate) async fn load_versions(
    client: &Client,
    location: &KvLocation,
    versions: &Versions,
    now: OffsetDateTime,
) -> Result<KeySet> {
    let path = location.data_path();
    let live: Vec<_> = versions
        .versions
        .iter()
        .rev()
        .filter(|v| v.live)
        .take(MAX_VERSIONS_SCANNED)
        .copied()
        .collect();
    let mut loaded = Vec::new();
    let mut signing = None;
    for info in live {
        let Some(data) = kv::read_version(client, location, info.version).await? else {
            // Deleted between the metadata read and this one: treat as never written.
            continue;
        };
        let first = signing.is_none();
        let (key, private) = keyset::parse_version(&data, info, &path, first)?;
        if let Some(p) = private {
            signing = Some(p);
        }
        loaded.push(key);
    }
    let signing = signing.ok_or(Error::NotProvisioned { path })?;
    Ok(KeySet::assemble(location.clone(), signing, loaded, now))
}

/// Writes a new version with a fresh key pair, conditioned (check-and-set) on the version
/// read just before: of two concurrent rotations one wins, the other gets
/// [`Error::Conflict`] and writes nothing. The first rotation of a key creates it and marks
/// it check-and-set only.
pub async fn rotate(
    client: &Client,
    config: &SigningKeyConfig,
    clock: &dyn Clock,
) -> Result<Rotation> {
    let current = current_version(client, &config.location).await?;
    rotate_if_current(client, config, clock, current).await
}

/// The highest version written (deleted ones included: check-and-set counts them), 0 when
/// the key does not exist yet. What a preview shows and [`rotate_if_current`] takes.
pub async fn current_version(client: &Client, location: &KvLocation) -> Result<u64> {
    Ok(kv::versions(client, location).await?.current)
}

/// [`rotate`], but only if `expected` is still the highest version: a rotation previewed at
/// version N fails with [`Error::Conflict`] if anyone wrote N+1 in the meantime, instead of
/// rotating a key the operator has not seen.
pub async fn rotate_if_current(
    client: &Client,
    config: &SigningKeyConfig,
    clock: &dyn Clock,
    expected: u64,
) -> Result<Rotation> {
    let loc = &config.location;
    let path = loc.data_path();
    let before = kv::versions(client, loc).await?;
    if before.current != expected {
        return Err(Error::Conflict { path, expected });
    }
    let previous = match before.newest_live() {
        Some(info) => {
            let kid = kv::read_version(client, loc, info.version)
                .await?
                .and_then(|data| keyset::parse_version(&data, info, &path, false).ok())
                .map(|(k, _)| (k.kid, k.max_token_lifetime));
            Some((info.version, kid))
        }
        None => None,
    };
    if expected == 0 {
        kv::require_cas(client, loc).await?;
    }
    let key = crate::material::PrivateKey::generate_sized(config.algorithm, config.rsa_bits)?;
    let record =
        keyset::record_with_lifetime(&key, config.grace, config.max_token_lifetime, clock.now());
    let (version, created) = kv::write_cas(client, loc, record, expected).await?;
    let kid = key.public_key().kid();
    tracing::info!(location = %loc, version, kid = %kid, "signing key rotated");
    Ok(Rotation {
        location: loc.to_string(),
        version,
        kid,
        alg: config.algorithm.jws_alg(),
        created,
        grace_seconds: config.grace.as_secs(),
        previous: previous.map(|(version, read)| {
            let lifetime = read.as_ref().and_then(|(_, l)| *l);
            Retiring {
                version,
                kid: read.map(|(kid, _)| kid),
                verifies_until: created + keyset::retiring_window(config.grace, lifetime),
            }
        }),
    })
}

/// A shared clock handle (the provider and its watcher read the same one).
pub(crate) type SharedClock = Arc<dyn Clock>;
