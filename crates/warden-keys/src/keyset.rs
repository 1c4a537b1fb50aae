//! One signing key's versions as a service sees them: the current version, which signs, and
//! every version that still verifies, each with the end of its grace window.
//!
//! # The rule
//! Version N verifies while it is the newest live version, or while
//! `now < created(M) + max(grace(M), lifetime(N))`, where M is the next live version after N:
//! the rotation that replaced N decides (through the grace it recorded) how long N keeps
//! verifying, and never less than the longest token N could have signed needs
//! (`lifetime(N)`, N's recorded `max_token_lifetime`, 0 when N declared none).
//! `created` is the KV version's `created_time`, the server's clock at the rotation. Deleted
//! or destroyed versions are skipped: deleting a version revokes it at once.
//!
//! # Token lifetimes
//! A version that records a `max_token_lifetime` refuses, in [`KeySet::sign_at`] (and so
//! [`KeySet::sign`], [`crate::SigningKeys::sign`]), claims without a numeric `exp` or whose
//! `exp` is more than that lifetime after the signer's `now`
//! ([`Error::TokenLifetime`]). So every token N signed up to its replacement expires by
//! `created(M) + lifetime(N)`, and the rule above keeps N verifying until then: a token
//! signed just before a rotation verifies until its own `exp`, whatever the grace. Two
//! things this does not cover, and the grace must: a signer that keeps signing with N after
//! M was written (until its watcher or a reload notices, up to one poll interval), and clock
//! skew between the signer and OpenBao. That is why the spec refuses a grace shorter than
//! the lifetime, and why a grace of lifetime + poll interval is the safe choice.
//!
//! # Layout of one version's data
//! | field | content |
//! |---|---|
//! | `algorithm` | `es256` or `eddsa` (the spec's spelling) |
//! | `kid` | RFC 7638 thumbprint of the public key |
//! | `public_jwk` | the public JWK (with `kid`, `alg`, `use`) |
//! | `private_key` | PKCS#8 PEM |
//! | `not_before` | RFC 3339, the writer's clock when it rotated (informational) |
//! | `grace_seconds` | how long the version this one replaced keeps verifying (at least) |
//! | `max_token_lifetime_seconds` | optional: the longest token this version signs |
//!
//! `algorithm` is `rs256` for RSA keys of either size: the modulus size is the key's own
//! (read from the key, 2048 or 3072 bits), so a version never states it twice.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_bao::KvData;
use warden_spec::SigningAlgorithm;
use zeroize::Zeroizing;

use crate::error::{Error, Result, VerifyError};
use crate::jwk::{Jwk, Jwks};
use crate::jws::{self, Claims, KeyLookup};
use crate::kv::{self, KvLocation, VersionInfo};
use crate::material::{PrivateKey, PublicKey};

/// One version's verification key and its window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionKey {
    /// KV version.
    pub version: u64,
    /// Its `kid`.
    pub kid: String,
    /// JWS algorithm (`ES256`, `EdDSA`, `RS256`).
    pub alg: &'static str,
    /// When it was written (server time).
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it stops verifying; `None` while it is the current version.
    #[serde(with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
    /// The grace this version grants the one it replaced.
    #[serde(skip)]
    pub grace: Duration,
    /// The longest token lifetime this version declared (`None`: not declared): it signs no
    /// token living longer, and once replaced verifies at least that long after the rotation.
    #[serde(skip)]
    pub max_token_lifetime: Option<Duration>,
    #[serde(skip)]
    public: PublicKey,
}

impl VersionKey {
    /// Whether it verifies at `now`.
    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.valid_until.is_none_or(|until| now < until)
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
}

/// The current signing key and the verification set of one signing key, as loaded at one
/// moment. Windows are absolute times, so the set stays correct as time passes without being
/// reloaded: a retired version simply stops verifying.
pub struct KeySet {
    location: KvLocation,
    signing: PrivateKey,
    /// Newest first; the first is the signing version.
    keys: Vec<VersionKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("location", &self.location.to_string())
            .field("signing", &self.signing)
            .field("keys", &self.keys)
            .finish()
    }
}

impl KeySet {
    /// Where it was read from.
    pub fn location(&self) -> &KvLocation {
        &self.location
    }

    /// The version that signs.
    pub fn current(&self) -> &VersionKey {
        &self.keys[0]
    }

    /// Every version loaded (still verifying when loaded), newest first, with its window.
    pub fn versions(&self) -> &[VersionKey] {
        &self.keys
    }

    /// The versions that verify at `now`, newest first.
    pub fn valid_at(&self, now: OffsetDateTime) -> impl Iterator<Item = &VersionKey> {
        self.keys.iter().filter(move |k| k.valid_at(now))
    }

    /// The RFC 7517 JWK Set of every key that verifies at `now`.
    pub fn jwks(&self, now: OffsetDateTime) -> Jwks {
        Jwks {
            keys: self.valid_at(now).map(|k| k.public.to_jwk()).collect(),
        }
    }

    /// Signs `claims` with the current version, checking its declared token lifetime
    /// against the system clock (see [`KeySet::sign_at`]).
    pub fn sign(&self, claims: &impl Serialize) -> Result<String> {
        self.sign_at(claims, OffsetDateTime::now_utc())
    }

    /// Signs `claims` with the current version as of `now`. When the current version
    /// declares a `max_token_lifetime`, claims without a numeric `exp`, or with an `exp` more
    /// than that lifetime after `now`, are refused ([`Error::TokenLifetime`]): such a token
    /// could outlive the window its key verifies in after a rotation.
    pub fn sign_at(&self, claims: &impl Serialize, now: OffsetDateTime) -> Result<String> {
        let Some(max) = self.current().max_token_lifetime else {
            return jws::sign(&self.signing, claims);
        };
        let payload = serde_json::to_value(claims).map_err(|e| Error::Claims {
            reason: e.to_string(),
        })?;
        let limit = (now + max).unix_timestamp();
        let exp = payload.get("exp").and_then(jws::numeric_date);
        if exp.is_none_or(|exp| exp > limit) {
            return Err(Error::TokenLifetime {
                exp,
                limit,
                max_token_lifetime: max,
            });
        }
        jws::sign(&self.signing, &payload)
    }

    /// The longest token lifetime the current version declares, if any.
    pub fn max_token_lifetime(&self) -> Option<Duration> {
        self.current().max_token_lifetime
    }

    /// Verifies `token` against the versions valid at `now`.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Claims, VerifyError> {
        jws::verify(token, self, now)
    }

    /// The signing key itself, for callers that sign something other than a JWT.
    pub fn signing_key(&self) -> &PrivateKey {
        &self.signing
    }

    /// Builds the set from versions read newest first (`loaded[0]` is the newest live one),
    /// dropping those whose window had ended at `now`.
    pub(crate) fn assemble(
        location: KvLocation,
        signing: PrivateKey,
        loaded: Vec<VersionKey>,
        now: OffsetDateTime,
    ) -> Self {
        let mut keys = windows(loaded);
        let first = keys.remove(0);
        keys.retain(|k| k.valid_at(now));
        keys.insert(0, first);
        Self {
            location,
            signing,
            keys,
        }
    }
}

impl KeyLookup for KeySet {
    fn lookup(&self, kid: &str, now: OffsetDateTime) -> Result<PublicKey, VerifyError> {
        match self.keys.iter().find(|k| k.kid == kid) {
            Some(k) if k.valid_at(now) => Ok(k.public.clone()),
            Some(k) => Err(VerifyError::KeyRetired {
                kid: kid.to_owned(),
                until: k.valid_until.unwrap_or(now),
            }),
            None => Err(VerifyError::UnknownKey {
                kid: kid.to_owned(),
            }),
        }
    }
}

/// Fills in `valid_until` for versions given newest first: the newest has none, every other
/// ends at its successor's creation plus the longer of its successor's grace and its own
/// declared token lifetime ([`retiring_window`]).
pub(crate) fn windows(mut newest_first: Vec<VersionKey>) -> Vec<VersionKey> {
    let mut successor: Option<(OffsetDateTime, Duration)> = None;
    for k in &mut newest_first {
        k.valid_until = successor
            .map(|(created, grace)| created + retiring_window(grace, k.max_token_lifetime));
        successor = Some((k.created, k.grace));
    }
    newest_first
}

/// How long after its replacement a version keeps verifying: the grace the replacement
/// granted, or the retiring version's own declared token lifetime when that is longer.
pub(crate) fn retiring_window(grace: Duration, max_token_lifetime: Option<Duration>) -> Duration {
    grace.max(max_token_lifetime.unwrap_or_default())
}

/// The data of a new version that declares no token lifetime.
#[cfg(test)]
pub(crate) fn record(key: &PrivateKey, grace: Duration, not_before: OffsetDateTime) -> Value {
    record_with_lifetime(key, grace, None, not_before)
}

/// The data of a new version.
pub(crate) fn record_with_lifetime(
    key: &PrivateKey,
    grace: Duration,
    max_token_lifetime: Option<Duration>,
    not_before: OffsetDateTime,
) -> Value {
    let public = key.public_key();
    let pem = key.to_pkcs8_pem();
    let mut record = json!({
        "algorithm": public.algorithm().as_str(),
        "kid": public.kid(),
        "public_jwk": public.to_jwk(),
        "private_key": pem.as_str(),
        "not_before": not_before.format(&Rfc3339).unwrap_or_default(),
        "grace_seconds": grace.as_secs(),
    });
    if let Some(lifetime) = max_token_lifetime {
        record["max_token_lifetime_seconds"] = json!(lifetime.as_secs());
    }
    record
}

/// Reads a version's public half (and, for the signing version, its private key), checking
/// that the stored `kid` is the thumbprint of the stored key.
pub(crate) fn parse_version(
    data: &KvData,
    info: VersionInfo,
    path: &str,
    with_private: bool,
) -> Result<(VersionKey, Option<PrivateKey>)> {
    let malformed = |reason: String| Error::Malformed {
        path: path.to_owned(),
        version: info.version,
        reason,
    };
    let alg_name = kv::field(data, "algorithm", path, info.version)?;
    let algorithm = SigningAlgorithm::parse(alg_name)
        .ok_or_else(|| malformed(format!("unknown algorithm `{alg_name}`")))?;
    let kid = kv::field(data, "kid", path, info.version)?.to_owned();
    let grace = data
        .get("grace_seconds")
        .and_then(|v| v.expose().as_u64())
        .map(Duration::from_secs)
        .ok_or_else(|| malformed("no numeric `grace_seconds`".into()))?;
    let max_token_lifetime = match data.get("max_token_lifetime_seconds") {
        None => None,
        Some(v) => Some(
            v.expose()
                .as_u64()
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    malformed("`max_token_lifetime_seconds` is not a whole number".into())
                })?,
        ),
    };
    let jwk: Jwk = data
        .get("public_jwk")
        .and_then(|v| serde_json::from_value(v.expose().clone()).ok())
        .ok_or_else(|| malformed("no `public_jwk` object".into()))?;
    let public = PublicKey::from_jwk(&jwk).map_err(|e| malformed(format!("public_jwk: {e}")))?;
    if public.algorithm() != algorithm || public.kid() != kid {
        return Err(malformed(
            "`kid`, `algorithm` and `public_jwk` disagree: the version was not written by Warden or was edited by hand".into(),
        ));
    }
    let private = if with_private {
        let pem = Zeroizing::new(kv::field(data, "private_key", path, info.version)?.to_owned());
        let key = PrivateKey::from_pkcs8_pem(algorithm, &pem)
            .map_err(|e| malformed(format!("private_key: {e}")))?;
        if key.public_key() != &public {
            return Err(malformed(
                "`private_key` does not belong to `public_jwk`".into(),
            ));
        }
        Some(key)
    } else {
        None
    };
    Ok((
        VersionKey {
            version: info.version,
            kid,
            alg: algorithm.jws_alg(),
            created: info.created,
            valid_until: None,
            grace,
            max_token_lifetime,
            public,
        },
        private,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).expect("time")
    }

    fn version(n: u64, created: i64, grace: u64) -> (VersionKey, PrivateKey) {
        let key = PrivateKey::generate(SigningAlgorithm::Es256).expect("key");
        let info = VersionInfo {
            version: n,
            created: at(created),
            live: true,
        };
        let data = kv::to_data(record(&key, Duration::from_secs(grace), at(created)));
        let (vk, private) = parse_version(&data, info, "kvv2/data/a/signing/jwt", true)
            .expect("parse what we wrote");
        (vk, private.expect("private key"))
    }

    /// v1 at t=100, v2 at t=200 (grace 50), v3 at t=1000 (grace 500).
    fn three() -> (KeySet, Vec<PrivateKey>) {
        let (k1, p1) = version(1, 100, 10);
        let (k2, p2) = version(2, 200, 50);
        let (k3, p3) = version(3, 1_000, 500);
        let loc = KvLocation::new("kvv2", "a/signing/jwt");
        let set = KeySet::assemble(loc, p3, vec![k3, k2, k1], at(1_001));
        (set, vec![p1, p2])
    }

    #[test]
    fn windows_end_at_successor_creation_plus_successor_grace() {
        let (set, _) = three();
        // v1 ended at 200 + 50 and was dropped at load; v2 ends at 1000 + 500.
        let versions: Vec<(u64, Option<OffsetDateTime>)> = set
            .versions()
            .iter()
            .map(|k| (k.version, k.valid_until))
            .collect();
        assert_eq!(versions, vec![(3, None), (2, Some(at(1_500)))]);
        assert_eq!(set.current().version, 3);
        let valid = |t| set.valid_at(at(t)).map(|k| k.version).collect::<Vec<_>>();
        assert_eq!(valid(1_001), [3, 2]);
        assert_eq!(valid(1_499), [3, 2]);
        assert_eq!(valid(1_500), [3]);
        assert_eq!(set.jwks(at(1_499)).keys.len(), 2);
        assert_eq!(set.jwks(at(1_500)).kids(), [set.current().kid.as_str()]);
    }

    #[test]
    fn old_tokens_verify_until_the_grace_ends_and_new_ones_from_the_start() {
        let (set, old) = three();
        let v2_token = jws::sign(&old[1], &json!({"exp": 10_000})).expect("sign");
        let v1_token = jws::sign(&old[0], &json!({"exp": 10_000})).expect("sign");
        let new_token = set.sign(&json!({"exp": 10_000})).expect("sign");
        assert!(set.verify(&v2_token, at(1_499)).is_ok());
        assert!(matches!(
            set.verify(&v2_token, at(1_500)),
            Err(VerifyError::KeyRetired { until, .. }) if until == at(1_500)
        ));
        // v1 had retired before the set was loaded: it is not known at all.
        assert!(matches!(
            set.verify(&v1_token, at(1_001)),
            Err(VerifyError::UnknownKey { .. })
        ));
        // The current version verifies at its own creation time and forever after.
        assert!(set.verify(&new_token, at(1_000)).is_ok());
        assert!(set.verify(&new_token, at(9_999)).is_ok());
    }

    fn version_with_lifetime(
        n: u64,
        created: i64,
        grace: u64,
        lifetime: Option<u64>,
    ) -> (VersionKey, PrivateKey) {
        let key = PrivateKey::generate(SigningAlgorithm::EdDsa).expect("key");
        let info = VersionInfo {
            version: n,
            created: at(created),
            live: true,
        };
        let record = record_with_lifetime(
            &key,
            Duration::from_secs(grace),
            lifetime.map(Duration::from_secs),
            at(created),
        );
        let (vk, private) = parse_version(&kv::to_data(record), info, "p", true).expect("parse");
        (vk, private.expect("private key"))
    }

    /// v1 (lifetime 3600) replaced at t=1000 by v2 (grace 60, lifetime 600): v1 verifies until
    /// 1000 + max(60, 3600); a v1 token signed at 999 with exp 4599 verifies until 4599.
    #[test]
    fn a_declared_lifetime_longer_than_the_grace_extends_the_window() {
        let (k1, p1) = version_with_lifetime(1, 0, 60, Some(3_600));
        let (k2, p2) = version_with_lifetime(2, 1_000, 60, Some(600));
        let loc = KvLocation::new("kvv2", "a/signing/jwt");
        let old = KeySet::assemble(loc.clone(), p1, vec![k1.clone()], at(999));
        let token = old
            .sign_at(&json!({"sub": "late", "exp": 999 + 3_600}), at(999))
            .expect("within the lifetime");
        let set = KeySet::assemble(loc, p2, vec![k2, k1], at(1_001));
        assert_eq!(set.versions()[1].valid_until, Some(at(4_600)));
        // Past the grace (1060), before its exp (4599): still good.
        assert!(set.verify(&token, at(1_061)).is_ok());
        assert!(set.verify(&token, at(4_598)).is_ok());
        assert_eq!(
            set.verify(&token, at(4_599)),
            Err(VerifyError::Expired { exp: 4_599 })
        );
        assert!(matches!(
            set.verify(&token, at(4_600)),
            Err(VerifyError::KeyRetired { until, .. }) if until == at(4_600)
        ));
        assert_eq!(set.jwks(at(4_599)).keys.len(), 2);
        assert_eq!(set.jwks(at(4_600)).keys.len(), 1);
        // Without a declared lifetime the grace alone decides.
        let (k1, _) = version_with_lifetime(1, 0, 60, None);
        let (k2, p2) = version_with_lifetime(2, 1_000, 60, Some(600));
        let set = KeySet::assemble(KvLocation::new("m", "p"), p2, vec![k2, k1], at(1_001));
        assert_eq!(set.versions()[1].valid_until, Some(at(1_060)));
    }

    #[test]
    fn a_version_with_a_lifetime_refuses_longer_tokens() {
        let (k, p) = version_with_lifetime(1, 0, 60, Some(600));
        let set = KeySet::assemble(KvLocation::new("m", "p"), p, vec![k], at(0));
        assert_eq!(set.max_token_lifetime(), Some(Duration::from_secs(600)));
        assert!(set.sign_at(&json!({"exp": 1_600}), at(1_000)).is_ok());
        let err = set
            .sign_at(&json!({"exp": 1_601}), at(1_000))
            .expect_err("beyond the lifetime");
        assert!(
            matches!(
                err,
                Error::TokenLifetime {
                    exp: Some(1_601),
                    limit: 1_600,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("max_token_lifetime 600s"), "{err}");
        assert!(matches!(
            set.sign_at(&json!({"sub": "no exp"}), at(1_000)),
            Err(Error::TokenLifetime { exp: None, .. })
        ));
        // Without a declared lifetime anything goes (the verifier still requires `exp`).
        let (k, p) = version_with_lifetime(1, 0, 60, None);
        let set = KeySet::assemble(KvLocation::new("m", "p"), p, vec![k], at(0));
        assert!(
            set.sign_at(&json!({"exp": 4_000_000_000_i64}), at(0))
                .is_ok()
        );
    }

    #[test]
    fn a_hand_edited_version_is_refused() {
        let key = PrivateKey::generate(SigningAlgorithm::Es256).expect("key");
        let other = PrivateKey::generate(SigningAlgorithm::Es256).expect("key");
        let info = VersionInfo {
            version: 7,
            created: at(0),
            live: true,
        };
        let mut data = record(&key, Duration::from_secs(1), at(0));
        data["private_key"] = json!(other.to_pkcs8_pem().as_str());
        let err =
            parse_version(&kv::to_data(data.clone()), info, "p", true).expect_err("mismatched key");
        assert!(err.to_string().contains("does not belong"), "{err}");
        data["kid"] = json!("forged");
        let err = parse_version(&kv::to_data(data), info, "p", false).expect_err("mismatched kid");
        assert!(err.to_string().contains("disagree"), "{err}");
    }

    #[test]
    fn debug_of_a_set_shows_no_private_key() {
        let (set, _) = three();
        let pem = set.signing_key().to_pkcs8_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!format!("{set:?}").contains(&body[..24]));
    }
}
