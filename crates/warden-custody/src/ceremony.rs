//! The ceremony: `sys/init` with one share per custodian, each share sealed in memory to its
//! custodian alone, the root token sealed to all of them, the ledger written. Also the rekey
//! (custodian replacement), which ends the same way with a new custodian set.
//!
//! Nothing is written in clear anywhere, and nothing is printed: the shares exist in clear only
//! in this process's memory, between OpenBao's answer and the encryption, in buffers that are
//! wiped on drop.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Serialize;
use warden_bao::Client;
use warden_files::{Dir, Trusted};

use crate::envelope;
use crate::error::Error;
use crate::identity::{Custodian, IdentityFile};
use crate::ledger::{Entry, Ledger, Rounds, ShareKind, StateDir, now_rfc3339};

/// What a ceremony or rekey is asked to do.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Environment.
    pub env: &'a str,
    /// One share per custodian, in this order (share 1 to the first).
    pub custodians: &'a [Custodian],
    /// Shares needed to unseal (or, for recovery keys, to authorise).
    pub threshold: u8,
    /// What the shares are, as the ledger will record it. [`init`] decides it from the server's
    /// seal and ignores this; [`record_init`] trusts it (the caller made the `sys/init` call).
    pub kind: ShareKind,
    /// Where the encrypted files go (created 0700 if missing).
    pub out_dir: &'a Path,
    /// Warden's state directory (the ledger).
    pub state: &'a StateDir,
}

/// What the ceremony produced: files and fingerprints, never a share.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Environment.
    pub env: String,
    /// What the shares are: unseal shares, or recovery keys under an auto-seal.
    pub kind: ShareKind,
    /// Shares.
    pub shares: u8,
    /// Threshold.
    pub threshold: u8,
    /// Ledger generation.
    pub generation: u32,
    /// Per custodian: name, index, fingerprint, file.
    pub custodians: Vec<SharedFile>,
    /// The root-token file (ceremony only).
    pub root_token_file: Option<PathBuf>,
    /// The ledger file.
    pub ledger: PathBuf,
    /// Its SHA-256.
    pub ledger_sha256: String,
}

/// One custodian's file.
#[derive(Debug, Clone, Serialize)]
pub struct SharedFile {
    /// Custodian.
    pub custodian: String,
    /// Share index.
    pub index: u8,
    /// Fingerprint.
    pub fingerprint: String,
    /// The encrypted share.
    pub file: PathBuf,
}

/// `<custodian>.<env>.share.age`.
pub fn share_file_name(custodian: &str, env: &str) -> String {
    format!("{custodian}.{env}.share.age")
}

/// `root-token.<env>.age`.
pub fn root_token_file_name(env: &str) -> String {
    format!("root-token.{env}.age")
}

impl Plan<'_> {
    /// Every check that needs no server and changes nothing: custodians, threshold, free output
    /// names.
    fn check(&self, root_token: bool) -> Result<u8, Error> {
        let bad = |reason: String| Error::BadCustodians {
            env: self.env.to_owned(),
            reason,
        };
        let n = self.custodians.len();
        if n == 0 || n > 255 {
            return Err(bad(format!("{n} custodians: a ceremony needs 1 to 255")));
        }
        let n = n as u8;
        if self.threshold == 0 || self.threshold > n || (n > 1 && self.threshold < 2) {
            return Err(bad(format!(
                "threshold {} with {n} custodians: use 2..={n} (1 only with a single custodian)",
                self.threshold
            )));
        }
        let mut names: Vec<&str> = self.custodians.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("custodian `{}` is listed twice", w[0])));
        }
        let mut files: Vec<PathBuf> = self
            .custodians
            .iter()
            .map(|c| self.out_dir.join(share_file_name(&c.name, self.env)))
            .collect();
        if root_token {
            files.push(self.out_dir.join(root_token_file_name(self.env)));
        }
        if let Some(f) = files.iter().find(|f| f.exists()) {
            return Err(Error::OutputExists { path: f.clone() });
        }
        Ok(n)
    }

    /// Opens the output directory (created owner-only if missing) and checks it, *before* the
    /// server makes any share: it must be ours and writable by nobody else, and the handle is
    /// kept, so swapping the name for a symlink afterwards cannot steer where the shares land.
    /// The ledger's directory is made now too, so a state directory that cannot hold a ledger
    /// is refused while nothing has changed.
    fn prepare(&self) -> Result<Dir, Error> {
        warden_files::ensure_private_dir(self.out_dir)?;
        let out = Dir::open_root(self.out_dir, Trusted::process())?;
        self.state.open_custody_dir(self.env)?;
        Ok(out)
    }

    /// Seals `keys` (one per custodian, in order), writes the files and the ledger. Runs after
    /// the server has made the shares, when a failure can no longer be undone: anything that
    /// fails to be written comes back inside [`Error::NotDelivered`], never dropped.
    fn distribute(
        &self,
        out: &Dir,
        keys: &[SecretString],
        generation: u32,
        root_token: Option<&SecretString>,
    ) -> Result<Report, Error> {
        // Encrypt everything before writing anything: the whole set exists (encrypted) before
        // the first write can fail, so it can be handed back whole.
        let now = now_rfc3339();
        let mut entries = Vec::new();
        let mut files = Vec::new();
        let mut pending = Vec::new();
        for (i, (c, key)) in self.custodians.iter().zip(keys).enumerate() {
            let index = u8::try_from(i + 1).expect("at most 255 custodians");
            let (bytes, fp) = envelope::seal_share(self.env, c, index, generation, key)?;
            let name = share_file_name(&c.name, self.env);
            entries.push(Entry {
                custodian: c.name.clone(),
                recipient: c.recipient(),
                index,
                fingerprint: fp.clone(),
                file: name.clone(),
                created_at: now.clone(),
                last_verified_at: None,
            });
            files.push(SharedFile {
                custodian: c.name.clone(),
                index,
                fingerprint: fp,
                file: out.entry_path(&name),
            });
            pending.push((name, bytes));
        }
        let token_name = root_token.map(|_| root_token_file_name(self.env));
        if let (Some(t), Some(name)) = (root_token, &token_name) {
            let bytes = envelope::seal_root_token(self.env, self.custodians, t)?;
            pending.push((name.clone(), bytes));
        }
        let ledger = Ledger {
            version: 1,
            environment: self.env.to_owned(),
            kind: self.kind,
            shares: u8::try_from(entries.len()).expect("checked"),
            threshold: self.threshold,
            generation,
            created_at: now,
            root_token_file: token_name.clone(),
            entries,
        };
        let written = (|| {
            for (name, bytes) in &pending {
                out.write(name, bytes, warden_files::Mode::OwnerOnly, None)?;
            }
            let sha = ledger.save(self.state)?;
            Rounds::default().save(self.state, self.env)?;
            Ok::<_, Error>(sha)
        })();
        let sha = written.map_err(|source| {
            let mut undelivered: Vec<Undelivered> = pending
                .iter()
                .map(|(name, bytes)| Undelivered {
                    path: out.entry_path(name),
                    text: String::from_utf8_lossy(bytes).into_owned(),
                })
                .collect();
            undelivered.push(Undelivered {
                path: self.state.ledger(self.env),
                text: String::from_utf8_lossy(&ledger.to_bytes()).into_owned(),
            });
            Error::NotDelivered {
                env: self.env.to_owned(),
                files: undelivered,
                source: Box::new(source),
            }
        })?;
        Ok(Report {
            env: self.env.to_owned(),
            kind: ledger.kind,
            shares: ledger.shares,
            threshold: ledger.threshold,
            generation,
            custodians: files,
            root_token_file: token_name.map(|n| out.entry_path(&n)),
            ledger: self.state.ledger(self.env),
            ledger_sha256: sha,
        })
    }
}

/// One file a ceremony could not write, in full, and where it belongs: an armored age file
/// (a share or the root token, readable only by its custodians) or the ledger (no secret).
/// `Debug` shows the path and size only, so the text never reaches a log by accident.
#[derive(Clone)]
pub struct Undelivered {
    /// Where it should have been written.
    pub path: PathBuf,
    /// Its whole text, to be saved byte for byte at `path`.
    pub text: String,
}

impl std::fmt::Debug for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Undelivered")
            .field("path", &self.path)
            .field("bytes", &self.text.len())
            .finish()
    }
}

/// Runs the ceremony against `node` (any node of a fresh environment; the others join it).
/// Refuses, changing nothing, when the environment has a ledger, a file would be overwritten,
/// the custodian set is unusable or the server is already initialised.
///
/// A server whose seal is not Shamir (`sys/seal-status` type `static`, `transit`…) unseals
/// itself and has no unseal shares to hand out: it is initialised with recovery keys
/// (`recovery_shares`/`recovery_threshold`), which go to the custodians the same way, and the
/// ledger records them as [`ShareKind::Recovery`].
pub async fn init(node: &Client, plan: &Plan<'_>) -> Result<Report, Error> {
    let env = plan.env;
    let ledger_path = plan.state.ledger(env);
    if ledger_path.exists() {
        return Err(Error::LedgerExists {
            env: env.to_owned(),
            path: ledger_path,
        });
    }
    let n = plan.check(true)?;
    let health = node
        .wait_reachable()
        .await
        .map_err(Error::bao(env, "reach the server"))?;
    if health.initialized {
        return Err(Error::AlreadyInitialized {
            env: env.to_owned(),
            address: node.address().to_string(),
        });
    }
    // The output directory exists (and is ours) before the shares do: a share never waits in
    // memory for a directory that cannot be made.
    let seal = node
        .seal_status()
        .await
        .map_err(Error::bao(env, "read the seal status"))?;
    let out = plan.prepare()?;
    if seal.seal_type != "shamir" && !seal.seal_type.is_empty() {
        let init = node
            .init_with_recovery(n, plan.threshold)
            .await
            .map_err(Error::bao(env, "initialise with recovery keys"))?;
        let plan = Plan {
            kind: ShareKind::Recovery,
            ..*plan
        };
        return plan.distribute(&out, &init.recovery_keys, 1, Some(&init.root_token));
    }
    let init = node
        .init(n, plan.threshold)
        .await
        .map_err(Error::bao(env, "initialise"))?;
    let plan = Plan {
        kind: ShareKind::Unseal,
        ..*plan
    };
    plan.distribute(&out, &init.keys, 1, Some(&init.root_token))
}

/// Records an initialisation done elsewhere (for example `sys/init` with recovery keys under an
/// auto-unseal seal, whose answer carries `recovery_keys` instead of `keys`): the same checks,
/// one key per custodian sealed to that custodian alone, the root token to all of them, the
/// ledger written with `plan.kind`. Call it with the server's answer before anything else can
/// fail.
pub fn record_init(
    plan: &Plan<'_>,
    keys: &[SecretString],
    root_token: &SecretString,
) -> Result<Report, Error> {
    let ledger_path = plan.state.ledger(plan.env);
    if ledger_path.exists() {
        return Err(Error::LedgerExists {
            env: plan.env.to_owned(),
            path: ledger_path,
        });
    }
    let n = plan.check(true)?;
    if keys.len() != usize::from(n) {
        return Err(Error::BadCustodians {
            env: plan.env.to_owned(),
            reason: format!("{} keys for {n} custodians", keys.len()),
        });
    }
    let out = plan.prepare()?;
    plan.distribute(&out, keys, 1, Some(root_token))
}

/// Rekeys `env` with `pairs` (share file, identity) of current custodians: OpenBao's share
/// rotation, new shares sealed to `plan.custodians` (the new set). Old shares stop working.
/// `node` needs a token allowed on `sys/rotate/root/*`.
pub async fn rekey(
    node: &Client,
    plan: &Plan<'_>,
    pairs: &[(PathBuf, IdentityFile)],
) -> Result<Report, Error> {
    let env = plan.env;
    let ledger = Ledger::load(plan.state, env)?;
    // `sys/rotate/root` rotates unseal shares; recovery keys have their own rotation, which
    // this rekey does not drive yet. Refused before anything is opened or sent.
    if ledger.kind == ShareKind::Recovery {
        return Err(Error::RecoveryRekey {
            env: env.to_owned(),
        });
    }
    plan.check(false)?;
    let shares = crate::unseal::open_quorum(&ledger, pairs)?;
    let status = node
        .rotate_root_status()
        .await
        .map_err(Error::bao(env, "read the share rotation status"))?;
    if status.attempt.started {
        return Err(Error::InProgress {
            env: env.to_owned(),
            what: "share rotation",
            nonce: status.attempt.nonce,
        });
    }
    let n = u8::try_from(plan.custodians.len()).expect("checked");
    let out = plan.prepare()?;
    let started = node
        .rotate_root_init(n, plan.threshold)
        .await
        .map_err(Error::bao(env, "start the share rotation"))?;
    let mut last = started.clone();
    for (_, share) in &shares {
        last = match node
            .rotate_root_update(share.secret(), &started.attempt.nonce)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let _ = node.rotate_root_cancel().await;
                return Err(Error::bao(env, "submit a share to the rotation")(e));
            }
        };
        if last.attempt.complete {
            break;
        }
    }
    if !last.attempt.complete || last.keys.len() != plan.custodians.len() {
        let _ = node.rotate_root_cancel().await;
        return Err(Error::Incomplete {
            env: env.to_owned(),
            what: "share rotation",
            progress: last.attempt.progress,
            required: last.attempt.required,
        });
    }
    // The new ledger replaces the old: the old fingerprints are no shares any more.
    let plan = Plan {
        kind: ledger.kind,
        ..*plan
    };
    plan.distribute(&out, &last.keys, ledger.generation + 1, None)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::identity::generate_identity;

    #[test]
    fn recorded_keys_go_one_to_each_custodian_and_a_second_record_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let state = StateDir::new(dir.path().join("state"));
        let out = dir.path().join("out");
        let made: Vec<_> = (0..3).map(|_| generate_identity()).collect();
        let custodians: Vec<Custodian> = ["a", "b", "c"]
            .iter()
            .zip(&made)
            .map(|(n, g)| Custodian::new(n, &g.recipient).expect("custodian"))
            .collect();
        let plan = Plan {
            env: "prod",
            custodians: &custodians,
            threshold: 2,
            kind: ShareKind::Recovery,
            out_dir: &out,
            state: &state,
        };
        let keys: Vec<SecretString> = ["aa", "bb", "cc"]
            .iter()
            .map(|k| SecretString::from(k.repeat(33)))
            .collect();
        let root = SecretString::from("s.recovery-root".to_owned());
        let report = record_init(&plan, &keys, &root).expect("record");
        assert_eq!(
            (report.shares, report.threshold, report.generation),
            (3, 2, 1)
        );
        assert_eq!(report.kind, ShareKind::Recovery);
        assert_eq!(
            Ledger::load(&state, "prod").expect("ledger").kind,
            ShareKind::Recovery
        );
        for ((c, g), key) in custodians.iter().zip(&made).zip(&keys) {
            let id = IdentityFile::parse(Path::new(&c.name), g.file_text.as_bytes()).expect("id");
            let file = out.join(share_file_name(&c.name, "prod"));
            let share = envelope::open_share(&file, &id).expect("opens for its custodian");
            assert_eq!(share.secret().expose_secret(), key.expose_secret());
        }
        let again = record_init(&plan, &keys, &root).expect_err("a second record");
        assert!(matches!(again, Error::LedgerExists { .. }), "{again}");
        let short = Plan {
            threshold: 1,
            ..plan
        };
        assert!(matches!(
            short.check(false),
            Err(Error::BadCustodians { .. })
        ));
    }

    /// Red-team regression: `sys/init` has answered (the server will never show these shares
    /// again) and a write fails. The error must carry every file, encrypted, so the caller can
    /// still save them; before, the sealed shares were dropped with the error.
    #[test]
    fn a_write_that_fails_after_init_hands_back_every_encrypted_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let state = StateDir::new(dir.path().join("state"));
        let out_dir = dir.path().join("out");
        let made: Vec<_> = (0..2).map(|_| generate_identity()).collect();
        let custodians: Vec<Custodian> = ["a", "b"]
            .iter()
            .zip(&made)
            .map(|(n, g)| Custodian::new(n, &g.recipient).expect("custodian"))
            .collect();
        let plan = Plan {
            env: "prod",
            custodians: &custodians,
            threshold: 2,
            kind: ShareKind::Unseal,
            out_dir: &out_dir,
            state: &state,
        };
        let out = plan.prepare().expect("prepare");
        // The disk "fills" between init and the writes: b's share cannot be renamed into place.
        std::fs::create_dir(out_dir.join(share_file_name("b", "prod"))).expect("blocker");
        let keys: Vec<SecretString> = ["aa", "bb"]
            .iter()
            .map(|k| SecretString::from(k.repeat(33)))
            .collect();
        let root = SecretString::from("s.root".to_owned());
        let err = plan
            .distribute(&out, &keys, 1, Some(&root))
            .expect_err("the write fails");
        let Error::NotDelivered { files, .. } = &err else {
            panic!("expected NotDelivered, got {err}");
        };
        assert_eq!(files.len(), 4, "two shares, the root token and the ledger");
        assert!(
            !format!("{files:?}").contains("AGE"),
            "Debug hides the text"
        );
        for ((c, g), key) in custodians.iter().zip(&made).zip(&keys) {
            let name = share_file_name(&c.name, "prod");
            let f = files
                .iter()
                .find(|f| f.path.ends_with(&name))
                .expect("share");
            assert!(!f.text.contains(key.expose_secret()), "never in clear");
            let saved = dir.path().join(format!("saved-{name}"));
            std::fs::write(&saved, &f.text).expect("save by hand");
            let id = IdentityFile::parse(Path::new(&c.name), g.file_text.as_bytes()).expect("id");
            let share = envelope::open_share(&saved, &id).expect("the printed copy opens");
            assert_eq!(share.secret().expose_secret(), key.expose_secret());
        }
        let ledger = files.last().expect("ledger");
        assert_eq!(ledger.path, state.ledger("prod"));
        assert!(ledger.text.contains("\"threshold\": 2"), "{}", ledger.text);
    }
}
