//! The custody error: one variant per refusal, each naming the file, environment or custodian
//! it is about. Advice ("ask alice for her share") is the CLI's job (`crates/warden/src/hint.rs`).

use std::path::PathBuf;

/// Everything custody can refuse or fail at. Refusals (every variant but `Io`, `Files`,
/// `NotDelivered` and `Bao`) are checked before anything is submitted to a server (at most its
/// status is read), so they change nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed (or its path was refused).
    #[error(transparent)]
    Files(#[from] warden_files::Error),
    /// OpenBao already holds new shares (`sys/init` or a share rotation succeeded) but the files
    /// that carry them could not all be written (disk full, a refused path, an interrupted
    /// write). The server will never hand the shares out again, so this error carries every
    /// file in full: the shares and root token *encrypted* (armored age, each opens only for
    /// its custodians) and the ledger (no secret). The caller must put them somewhere durable,
    /// printing them as the last resort; dropping this error loses the environment.
    #[error(
        "{env}: OpenBao now holds new shares, but writing their files failed ({source}); \
         the {} encrypted files follow and must be saved by hand",
        files.len()
    )]
    NotDelivered {
        /// Environment.
        env: String,
        /// Every file the ceremony meant to write, in full.
        files: Vec<crate::ceremony::Undelivered>,
        /// The first write that failed.
        #[source]
        source: Box<Self>,
    },
    /// OpenBao refused or could not be reached.
    #[error("{env}: {action}: {source}")]
    Bao {
        /// Environment.
        env: String,
        /// What was being done ("initialise", "submit a share to https://…").
        action: String,
        /// The client's error (boxed: it is large and rare).
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// The custodian list cannot make a ceremony.
    #[error("{env}: {reason}")]
    BadCustodians {
        /// Environment.
        env: String,
        /// What is wrong.
        reason: String,
    },
    /// A custodian's recipient is not an age X25519 recipient.
    #[error("custodian `{custodian}`: `{recipient}` is not an age recipient ({reason})")]
    InvalidRecipient {
        /// Custodian.
        custodian: String,
        /// What was given.
        recipient: String,
        /// Why it does not parse.
        reason: String,
    },
    /// An identity file holds no usable age identity.
    #[error("{path} is not an age identity file: {reason}")]
    IdentityFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An identity file others can read: whoever can read it holds the custodian's share.
    #[error("{path} is readable by others (mode {mode:o}); an identity file must be owner-only")]
    IdentityTooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not an age file (or is damaged).
    #[error("{path} is not an encrypted Warden custody file: {reason}")]
    NotAgeFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// None of the identities opens the file: it was encrypted to someone else.
    #[error("{identity} does not open {path}: the file was encrypted to another custodian")]
    IdentityDoesNotOpen {
        /// The encrypted file.
        path: PathBuf,
        /// The identity file tried.
        identity: PathBuf,
    },
    /// The file opens but holds something else (a root token where a share was expected).
    #[error("{path} holds a {found}, not an unseal share")]
    NotAShare {
        /// The file.
        path: PathBuf,
        /// What it holds.
        found: String,
    },
    /// A share of another environment.
    #[error("{path} is a share of environment `{share_env}`, not of `{env}`")]
    WrongEnvironment {
        /// The file.
        path: PathBuf,
        /// The environment the share belongs to.
        share_env: String,
        /// The environment being acted on.
        env: String,
    },
    /// A share for a custodian the ledger does not know.
    #[error(
        "{path} is a share for `{custodian}`, who is not a custodian of `{env}` (custodians: {known})"
    )]
    UnknownCustodian {
        /// The file.
        path: PathBuf,
        /// The custodian named in the share.
        custodian: String,
        /// Environment.
        env: String,
        /// The ledger's custodians.
        known: String,
    },
    /// The share is not the one the ledger records for its custodian (an old share from before a
    /// rekey, or a forged one).
    #[error(
        "{path} is not the share the custody ledger of `{env}` records for `{custodian}` (ledger {expected}, file {found})"
    )]
    WrongShare {
        /// The file.
        path: PathBuf,
        /// Environment.
        env: String,
        /// Custodian.
        custodian: String,
        /// The ledger's fingerprint.
        expected: String,
        /// The file's fingerprint.
        found: String,
    },
    /// The same share was already submitted in this unseal round.
    #[error(
        "{custodian}'s share ({fingerprint}) was already submitted in this unseal round (nonce {nonce}); OpenBao would ignore it"
    )]
    AlreadySubmitted {
        /// Custodian.
        custodian: String,
        /// Fingerprint.
        fingerprint: String,
        /// The server's unseal nonce.
        nonce: String,
    },
    /// One custodian's share given twice in one operation.
    #[error(
        "`{custodian}`'s share is given twice; each of the {need} shares must come from a different custodian"
    )]
    DuplicateCustodian {
        /// Custodian.
        custodian: String,
        /// Shares needed.
        need: u8,
    },
    /// Fewer shares than the threshold.
    #[error("{env}: {have} share(s) given, the threshold is {need}")]
    NotEnoughShares {
        /// Environment.
        env: String,
        /// Given.
        have: usize,
        /// Needed.
        need: u8,
    },
    /// No ledger for the environment.
    #[error("{env}: no custody ledger at {path}")]
    NoLedger {
        /// Environment.
        env: String,
        /// Where it was expected.
        path: PathBuf,
    },
    /// The environment already has a ledger (a ceremony ran).
    #[error("{env}: a custody ledger already exists at {path}")]
    LedgerExists {
        /// Environment.
        env: String,
        /// The ledger.
        path: PathBuf,
    },
    /// A ledger or round file that does not parse.
    #[error("{path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The offline CA's files failed a check (`warden_pki`: a damaged file, a wrong passphrase,
    /// a restore that would roll the ledger back).
    #[error(transparent)]
    Pki(#[from] warden_pki::Error),
    /// A CA backup that cannot be read: not age, truncated, not a Warden CA backup.
    #[error("{path} is not a readable Warden CA backup: {reason}")]
    NotABackup {
        /// The backup file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A CA backup decrypts, but what is inside disagrees with its own manifest (a file's
    /// SHA-256, the file list, the ledger's last entry): it was altered after it was made.
    #[error("{path}: {file} does not match the backup's manifest: {reason}")]
    BackupTampered {
        /// The backup file.
        path: PathBuf,
        /// The file inside the backup.
        file: String,
        /// What disagrees.
        reason: String,
    },
    /// A passphrase share made for another root CA (or another backup's split).
    #[error("{path} is a passphrase share of {what}, not of this backup ({expected})")]
    ForeignPassphraseShare {
        /// The share file.
        path: PathBuf,
        /// Whose share it is (the root's fingerprint, or the split it belongs to).
        what: String,
        /// What this backup expects.
        expected: String,
    },
    /// The passphrase is too long to split (shares are padded to one fixed length so they do
    /// not reveal the passphrase's length).
    #[error("the passphrase is {len} bytes; at most {max} can be split")]
    PassphraseTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The server is already initialised.
    #[error("{env}: {address} is already initialised")]
    AlreadyInitialized {
        /// Environment.
        env: String,
        /// The node.
        address: String,
    },
    /// An output file exists: a ceremony never overwrites a share.
    #[error("{path} already exists; a ceremony never overwrites a share file")]
    OutputExists {
        /// The file.
        path: PathBuf,
    },
    /// Someone else's rotation or root generation is under way.
    #[error("{env}: a {what} is already under way on the server (nonce {nonce})")]
    InProgress {
        /// Environment.
        env: String,
        /// "share rotation", "root generation".
        what: &'static str,
        /// Its nonce.
        nonce: String,
    },
    /// `warden unseal` with a ledger of recovery keys: an auto-sealed environment unseals
    /// itself through its seal, and a recovery key is no unseal share.
    #[error(
        "{env} is auto-unsealed (seal {seal}): its shares are recovery keys; they authorise rekey, generate-root and seal migration, not unseal"
    )]
    RecoveryKeysDoNotUnseal {
        /// Environment.
        env: String,
        /// The seal type a node reports (`static`, `transit`), or `auto` when none answered.
        seal: String,
    },
    /// `custody rekey` with a ledger of recovery keys: recovery keys rotate through their own
    /// endpoints, which the rekey does not drive yet.
    #[error(
        "{env}: its shares are recovery keys; rotating recovery keys is not supported by the custody rekey yet (it rotates unseal shares)"
    )]
    RecoveryRekey {
        /// Environment.
        env: String,
    },
    /// All shares went in and the operation did not complete.
    #[error("{env}: the {what} did not complete after {progress} of {required} shares")]
    Incomplete {
        /// Environment.
        env: String,
        /// What.
        what: &'static str,
        /// Shares accepted.
        progress: u8,
        /// Shares required.
        required: u8,
    },
}

impl Error {
    pub(crate) fn io(
        path: &std::path::Path,
        action: &'static str,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            path,
            action,
            source,
        }
    }

    pub(crate) fn bao(
        env: &str,
        action: impl Into<String>,
    ) -> impl FnOnce(warden_bao::Error) -> Self {
        let env = env.to_owned();
        let action = action.into();
        move |source| Self::Bao {
            env,
            action,
            source: Box::new(source),
        }
    }

    /// True for the refusals of a share (wrong, foreign, unknown, repeated, unopenable): the
    /// command changed nothing and the same share will be refused again.
    pub fn is_share_refusal(&self) -> bool {
        matches!(
            self,
            Self::IdentityDoesNotOpen { .. }
                | Self::NotAShare { .. }
                | Self::WrongEnvironment { .. }
                | Self::UnknownCustodian { .. }
                | Self::WrongShare { .. }
                | Self::AlreadySubmitted { .. }
                | Self::DuplicateCustodian { .. }
                | Self::NotAgeFile { .. }
        )
    }
}
