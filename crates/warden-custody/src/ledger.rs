//! The custody ledger: which custodian holds which share (by fingerprint), created when, last
//! verified when. One JSON file per environment in Warden's state directory (repo-independent:
//! it describes a server, not a checkout), written atomically and owner-only; its SHA-256 is
//! published to the environment's registry so an edit on disk shows (`warden custody status`).
//!
//! Beside it, `unseal-rounds.json` remembers which fingerprints were submitted under which
//! server unseal nonce, per node: fingerprints only, never a share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_bao::{Client, Idempotent};
use warden_spec::naming;

use crate::envelope::Share;
use crate::error::Error;

/// Largest ledger or round file read.
const LIMIT: u64 = 4 * 1024 * 1024;
/// The ledger's file name in `custody/<env>/`.
const LEDGER_FILE: &str = "ledger.json";
/// The unseal rounds' file name in `custody/<env>/`.
const ROUNDS_FILE: &str = "unseal-rounds.json";

/// Where Warden keeps state that belongs to no checkout: `--state-dir`, else
/// `$WARDEN_STATE_DIR`, else `$XDG_STATE_HOME/warden`, else `~/.local/state/warden`.
#[derive(Debug, Clone)]
pub struct StateDir(PathBuf);

impl StateDir {
    /// A state directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }

    /// The default one, from the environment variables above (`lookup` reads them).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let var = |k: &str| lookup(k).filter(|v| !v.is_empty());
        if let Some(d) = var("WARDEN_STATE_DIR") {
            return Some(Self::new(d));
        }
        if let Some(d) = var("XDG_STATE_HOME") {
            return Some(Self::new(Path::new(&d).join("warden")));
        }
        var("HOME").map(|h| Self::new(Path::new(&h).join(".local/state/warden")))
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.0
    }

    /// `custody/<env>/`.
    pub fn custody_dir(&self, env: &str) -> PathBuf {
        self.0.join("custody").join(env)
    }

    /// Opens `custody/<env>/` for writing, creating what is missing (0700). The root is made
    /// if missing but never re-permissioned, and must be ours (or root's) and writable by
    /// nobody else; below it no component may be a symlink. A state directory someone else
    /// can write to would let them swap the ledger or the unseal rounds under the ceremony,
    /// or steer a write elsewhere, so it is refused rather than used.
    pub fn open_custody_dir(&self, env: &str) -> Result<warden_files::Dir, Error> {
        if std::fs::symlink_metadata(&self.0).is_err() {
            warden_files::ensure_private_dir(&self.0)?;
        }
        let root = warden_files::Dir::open_root(&self.0, warden_files::Trusted::process())?;
        Ok(root.create_dirs(&Path::new("custody").join(env), 0o700)?)
    }

    /// `custody/<env>/ledger.json`.
    pub fn ledger(&self, env: &str) -> PathBuf {
        self.custody_dir(env).join(LEDGER_FILE)
    }

    /// `custody/<env>/unseal-rounds.json`.
    pub fn rounds(&self, env: &str) -> PathBuf {
        self.custody_dir(env).join(ROUNDS_FILE)
    }
}

/// One share in the ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Custodian.
    pub custodian: String,
    /// The age recipient the share was encrypted to.
    pub recipient: String,
    /// 1-based share index.
    pub index: u8,
    /// The share's fingerprint.
    pub fingerprint: String,
    /// The file the ceremony wrote (file name only).
    pub file: String,
    /// When the share was created (RFC 3339).
    pub created_at: String,
    /// When its custodian last proved it opens and matches (RFC 3339).
    #[serde(default)]
    pub last_verified_at: Option<String>,
}

/// What an environment's shares are. OpenBao hands out unseal shares under a Shamir seal and
/// recovery keys under an auto-seal (`static`, `transit`): the same ceremony keeps both, but a
/// recovery key unseals nothing (the seal does that); it authorises rekey, generate-root and
/// seal migration.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ShareKind {
    /// Shamir unseal shares (every ledger written before the kind was recorded).
    #[default]
    Unseal,
    /// Recovery keys of an auto-unsealed environment.
    Recovery,
}

impl ShareKind {
    /// `unseal` or `recovery`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unseal => "unseal",
            Self::Recovery => "recovery",
        }
    }

    /// In words, for humans: "unseal shares", "recovery keys".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unseal => "unseal shares",
            Self::Recovery => "recovery keys",
        }
    }
}

impl std::fmt::Display for ShareKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An environment's custody ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ledger {
    /// Format version (1).
    pub version: u32,
    /// Environment.
    pub environment: String,
    /// What the shares are. Absent in ledgers written before recovery keys went through the
    /// ceremony, which all held unseal shares: hence the default.
    #[serde(default)]
    pub kind: ShareKind,
    /// Shares.
    pub shares: u8,
    /// Threshold.
    pub threshold: u8,
    /// 1 after the ceremony, +1 per rekey.
    pub generation: u32,
    /// When this generation was created (RFC 3339).
    pub created_at: String,
    /// The root-token file the ceremony wrote (file name), while it matters.
    #[serde(default)]
    pub root_token_file: Option<String>,
    /// One entry per share.
    pub entries: Vec<Entry>,
}

/// The ledger's registry record, as read back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedDigest {
    /// SHA-256 of the ledger file, hex.
    pub ledger_sha256: String,
    /// The ledger's generation.
    pub generation: u32,
    /// When it was published (RFC 3339).
    pub published_at: String,
}

impl Ledger {
    /// Reads `env`'s ledger; [`Error::NoLedger`] if there is none.
    pub fn load(state: &StateDir, env: &str) -> Result<Self, Error> {
        let path = state.ledger(env);
        let bytes = read_limited(&path)?.ok_or_else(|| Error::NoLedger {
            env: env.to_owned(),
            path: path.clone(),
        })?;
        let ledger: Self = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if ledger.environment != env {
            return Err(Error::Corrupt {
                path,
                reason: format!("it is the ledger of `{}`", ledger.environment),
            });
        }
        Ok(ledger)
    }

    /// Writes the ledger (atomic, owner-only) and returns its digest.
    pub fn save(&self, state: &StateDir) -> Result<String, Error> {
        let dir = state.open_custody_dir(&self.environment)?;
        let bytes = self.to_bytes();
        dir.write(LEDGER_FILE, &bytes, warden_files::Mode::OwnerOnly, None)?;
        Ok(sha256_hex(&bytes))
    }

    /// The bytes `save` writes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec_pretty(self).expect("ledger serialises");
        b.push(b'\n');
        b
    }

    /// SHA-256 of the ledger file as it is on disk now.
    pub fn digest_on_disk(state: &StateDir, env: &str) -> Result<Option<String>, Error> {
        Ok(read_limited(&state.ledger(env))?.map(|b| sha256_hex(&b)))
    }

    /// The custodians' names, comma-separated (for messages).
    pub fn custodian_names(&self) -> String {
        self.entries
            .iter()
            .map(|e| e.custodian.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks an opened share against this ledger: right environment, known custodian, the
    /// fingerprint recorded for that custodian. Returns the entry. Nothing is sent anywhere.
    pub fn check_share(&self, path: &Path, share: &Share) -> Result<&Entry, Error> {
        if share.environment != self.environment {
            return Err(Error::WrongEnvironment {
                path: path.to_path_buf(),
                share_env: share.environment.clone(),
                env: self.environment.clone(),
            });
        }
        let entry = self
            .entries
            .iter()
            .find(|e| e.custodian == share.custodian)
            .ok_or_else(|| Error::UnknownCustodian {
                path: path.to_path_buf(),
                custodian: share.custodian.clone(),
                env: self.environment.clone(),
                known: self.custodian_names(),
            })?;
        let found = share.computed_fingerprint();
        if found != entry.fingerprint || share.fingerprint != entry.fingerprint {
            return Err(Error::WrongShare {
                path: path.to_path_buf(),
                env: self.environment.clone(),
                custodian: share.custodian.clone(),
                expected: entry.fingerprint.clone(),
                found,
            });
        }
        Ok(entry)
    }

    /// Marks `custodian` verified at `now` (RFC 3339).
    pub fn mark_verified(&mut self, custodian: &str, now: &str) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.custodian == custodian) {
            e.last_verified_at = Some(now.to_owned());
        }
    }

    /// Publishes the digest `sha256` to the environment's registry (Warden's meta mount,
    /// [`naming::custody_record`]); mounts the meta mount first if `apply` has not yet.
    pub async fn publish(&self, client: &Client, sha256: &str, now: &str) -> Result<(), Error> {
        let env = self.environment.as_str();
        let entry = naming::custody_record();
        client
            .ensure_secrets_engine(naming::META_MOUNT, "kv", &warden_bao::MountOptions::kv_v2())
            .await
            .map_err(Error::bao(env, "mount Warden's registry"))?;
        let body = serde_json::json!({ "data": PublishedDigest {
            ledger_sha256: sha256.to_owned(),
            generation: self.generation,
            published_at: now.to_owned(),
        }});
        client
            .write(&entry.data_path(), &body, Idempotent::Yes)
            .await
            .map_err(Error::bao(
                env,
                format!("publish the ledger digest to {entry}"),
            ))?;
        Ok(())
    }

    /// Reads the published digest, `None` if none was published.
    pub async fn published(client: &Client, env: &str) -> Result<Option<PublishedDigest>, Error> {
        let entry = naming::custody_record();
        match client.read(&entry.data_path()).await {
            Ok(secret) => {
                let v = secret.data.unwrap_or_default();
                let data = v.get("data").cloned().unwrap_or_default();
                Ok(serde_json::from_value(data).ok())
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(Error::bao(env, format!("read {entry}"))(e)),
        }
    }
}

/// Per node: the unseal nonce and the fingerprints submitted under it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Rounds(pub(crate) BTreeMap<String, Round>);

/// One node's current round.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Round {
    pub(crate) nonce: String,
    pub(crate) fingerprints: Vec<String>,
}

impl Rounds {
    pub(crate) fn load(state: &StateDir, env: &str) -> Result<Self, Error> {
        let path = state.rounds(env);
        match read_limited(&path)? {
            None => Ok(Self::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
                path,
                reason: e.to_string(),
            }),
        }
    }

    pub(crate) fn save(&self, state: &StateDir, env: &str) -> Result<(), Error> {
        let dir = state.open_custody_dir(env)?;
        let bytes = serde_json::to_vec_pretty(self).expect("rounds serialise");
        dir.write(ROUNDS_FILE, &bytes, warden_files::Mode::OwnerOnly, None)?;
        Ok(())
    }
}

fn read_limited(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    use std::io::Read as _;
    match warden_files::open_regular(path, LIMIT) {
        Ok((mut f, _)) => {
            let mut b = Vec::new();
            f.read_to_end(&mut b).map_err(Error::io(path, "read"))?;
            Ok(Some(b))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "read")(e)),
    }
}

/// SHA-256, hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Now, RFC 3339, whole seconds.
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::envelope::{open_share, seal_share};
    use crate::identity::{Custodian, IdentityFile, generate_identity};

    /// Red-team regression: a state directory others may write to (pre-created 0777), or a
    /// `custody` symlink planted in it, was used as is: the ledger and unseal rounds landed
    /// wherever the other user chose, or could be swapped under the ceremony.
    #[test]
    fn a_state_dir_others_can_write_or_a_planted_symlink_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let (ledger, ..) = world(dir.path());
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = ledger
            .save(&StateDir::new(&open))
            .expect_err("world-writable");
        assert!(
            matches!(
                err,
                Error::Files(warden_files::Error::WritableByOthers { .. })
            ),
            "{err}"
        );
        assert!(!open.join("custody").exists(), "nothing written");
        let planted = dir.path().join("planted");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(planted.as_path()).expect("mkdir");
        std::fs::create_dir_all(elsewhere.join("prod")).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, planted.join("custody")).expect("symlink");
        let err = ledger.save(&StateDir::new(&planted)).expect_err("symlink");
        assert!(
            matches!(
                err,
                Error::Files(warden_files::Error::SymlinkComponent { .. })
            ),
            "{err}"
        );
        assert!(!elsewhere.join("prod/ledger.json").exists());
        let fine = StateDir::new(dir.path().join("fresh"));
        ledger.save(&fine).expect("a fresh state dir");
        assert!(fine.ledger("prod").exists());
    }

    /// A one-entry ledger for alice in `prod`, the file of her real share, and her identity.
    fn world(dir: &Path) -> (Ledger, PathBuf, IdentityFile, Custodian) {
        let g = generate_identity();
        let id = IdentityFile::parse(Path::new("alice"), g.file_text.as_bytes()).expect("id");
        let alice = Custodian::new("alice", &g.recipient).expect("alice");
        let (bytes, fp) =
            seal_share("prod", &alice, 1, 1, &SecretString::from("ab".repeat(33))).expect("seal");
        let file = dir.join("alice.prod.share.age");
        std::fs::write(&file, bytes).expect("write");
        let ledger = Ledger {
            version: 1,
            environment: "prod".to_owned(),
            kind: ShareKind::Unseal,
            shares: 1,
            threshold: 1,
            generation: 1,
            created_at: now_rfc3339(),
            root_token_file: None,
            entries: vec![Entry {
                custodian: "alice".to_owned(),
                recipient: g.recipient,
                index: 1,
                fingerprint: fp,
                file: "alice.prod.share.age".to_owned(),
                created_at: now_rfc3339(),
                last_verified_at: None,
            }],
        };
        (ledger, file, id, alice)
    }

    fn sealed(dir: &Path, name: &str, env: &str, c: &Custodian, hex: &str) -> PathBuf {
        let (bytes, _) =
            seal_share(env, c, 1, 1, &SecretString::from(hex.to_owned())).expect("seal");
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }

    #[test]
    fn the_ledger_accepts_its_share_and_refuses_foreign_stale_and_unknown_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let (ledger, file, id, alice) = world(dir.path());
        let share = open_share(&file, &id).expect("open");
        assert_eq!(
            ledger
                .check_share(&file, &share)
                .expect("accepted")
                .custodian,
            "alice"
        );

        let other_env = sealed(dir.path(), "a.test", "test", &alice, &"ab".repeat(33));
        let e = ledger
            .check_share(&other_env, &open_share(&other_env, &id).expect("open"))
            .expect_err("foreign");
        assert!(matches!(e, Error::WrongEnvironment { .. }), "{e}");

        let stale = sealed(dir.path(), "a.old", "prod", &alice, &"cd".repeat(33));
        let e = ledger
            .check_share(&stale, &open_share(&stale, &id).expect("open"))
            .expect_err("stale");
        assert!(matches!(e, Error::WrongShare { .. }), "{e}");

        let g = generate_identity();
        let mallory = Custodian::new("mallory", &g.recipient).expect("mallory");
        let mid = IdentityFile::parse(Path::new("mallory"), g.file_text.as_bytes()).expect("id");
        let unknown = sealed(dir.path(), "m", "prod", &mallory, &"ab".repeat(33));
        let e = ledger
            .check_share(&unknown, &open_share(&unknown, &mid).expect("open"))
            .expect_err("unknown");
        assert!(matches!(e, Error::UnknownCustodian { .. }), "{e}");
        assert!(e.is_share_refusal());
    }

    #[test]
    fn the_ledger_round_trips_and_its_digest_follows_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let state = StateDir::new(dir.path().join("state"));
        let (mut ledger, ..) = world(dir.path());
        let sha = ledger.save(&state).expect("save");
        assert_eq!(Ledger::load(&state, "prod").expect("load"), ledger);
        assert_eq!(
            Ledger::digest_on_disk(&state, "prod").expect("digest"),
            Some(sha.clone())
        );
        ledger.mark_verified("alice", "2026-12-05T00:00:00Z");
        assert_ne!(
            ledger.save(&state).expect("save"),
            sha,
            "a change changes the digest"
        );
        assert!(matches!(
            Ledger::load(&state, "test"),
            Err(Error::NoLedger { .. })
        ));
    }

    #[test]
    fn a_ledger_without_a_kind_holds_unseal_shares_and_the_kind_round_trips() {
        let dir = tempfile::tempdir().expect("tmp");
        let state = StateDir::new(dir.path().join("state"));
        let (ledger, ..) = world(dir.path());
        let mut old = serde_json::to_value(&ledger).expect("json");
        old.as_object_mut().expect("object").remove("kind");
        warden_files::ensure_private_dir(&state.custody_dir("prod")).expect("dir");
        std::fs::write(state.ledger("prod"), old.to_string()).expect("write");
        let loaded = Ledger::load(&state, "prod").expect("an old ledger loads");
        assert_eq!(loaded.kind, ShareKind::Unseal);

        let recovery = Ledger {
            kind: ShareKind::Recovery,
            ..loaded
        };
        recovery.save(&state).expect("save");
        let text = std::fs::read_to_string(state.ledger("prod")).expect("read");
        assert!(text.contains(r#""kind": "recovery""#), "{text}");
        assert_eq!(
            Ledger::load(&state, "prod").expect("load").kind,
            ShareKind::Recovery
        );
    }
}
