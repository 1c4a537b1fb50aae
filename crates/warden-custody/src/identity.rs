//! Custodians (a name and an age X25519 recipient) and their identity files.
//!
//! Only X25519 recipients (`age1…`): an `ssh-ed25519` recipient would let custodians reuse an
//! SSH key, but that key usually lives unencrypted in `~/.ssh` on a laptop that also runs
//! everything else, and it drags in RSA code. A dedicated age identity, kept offline by its
//! custodian, is the better habit for a share of an environment's root key
//! (docs/adr/0008-custody-with-age.md).

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use age::secrecy::ExposeSecret as _;
use zeroize::Zeroizing;

use crate::error::Error;

/// Largest identity file read (an age identity line is 74 bytes; comments allowed).
const IDENTITY_FILE_LIMIT: u64 = 64 * 1024;

/// One custodian: who holds a share, and the age recipient it is encrypted to.
#[derive(Clone)]
pub struct Custodian {
    /// Name (a slug from the spec: `alice`).
    pub name: String,
    recipient: age::x25519::Recipient,
}

impl fmt::Debug for Custodian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Custodian")
            .field("name", &self.name)
            .field("recipient", &self.recipient.to_string())
            .finish()
    }
}

impl Custodian {
    /// Parses `recipient` (`age1…`) for custodian `name`.
    pub fn new(name: &str, recipient: &str) -> Result<Self, Error> {
        let parsed = age::x25519::Recipient::from_str(recipient.trim()).map_err(|reason| {
            Error::InvalidRecipient {
                custodian: name.to_owned(),
                recipient: recipient.to_owned(),
                reason: reason.to_string(),
            }
        })?;
        Ok(Self {
            name: name.to_owned(),
            recipient: parsed,
        })
    }

    /// The recipient, `age1…`.
    pub fn recipient(&self) -> String {
        self.recipient.to_string()
    }

    pub(crate) fn age_recipient(&self) -> &age::x25519::Recipient {
        &self.recipient
    }
}

/// A custodian's identity file, read into memory (zeroized on drop inside `age`).
pub struct IdentityFile {
    path: PathBuf,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl fmt::Debug for IdentityFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityFile")
            .field("path", &self.path)
            .field("identities", &"...")
            .finish()
    }
}

impl IdentityFile {
    /// Reads an age identity file (`age-keygen` output). Refuses a file others can read or
    /// write: it is the custodian's share.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let (mut file, meta) = warden_files::open_regular(path, IDENTITY_FILE_LIMIT)
            .map_err(Error::io(path, "read"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::IdentityTooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = Zeroizing::new(Vec::new());
        file.read_to_end(&mut text)
            .map_err(Error::io(path, "read"))?;
        Self::parse(path, &text)
    }

    /// Parses identity text already in memory (`path` names it in errors).
    pub fn parse(path: &Path, text: &[u8]) -> Result<Self, Error> {
        let bad = |reason: String| Error::IdentityFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = age::IdentityFile::from_buffer(text).map_err(|e| bad(e.to_string()))?;
        let identities = file.into_identities().map_err(|e| bad(e.to_string()))?;
        if identities.is_empty() {
            return Err(bad("it holds no identity".to_owned()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            identities,
        })
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The identities, for age to try.
    pub fn identities(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities
            .iter()
            .map(|i| i.as_ref() as &dyn age::Identity)
    }
}

/// A freshly generated custodian identity: its file text (secret) and its recipient.
pub struct GeneratedIdentity {
    /// The identity file's text (`# created: …`, `# public key: age1…`, `AGE-SECRET-KEY-1…`).
    pub file_text: Zeroizing<String>,
    /// The recipient to put in the spec.
    pub recipient: String,
}

impl fmt::Debug for GeneratedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedIdentity")
            .field("recipient", &self.recipient)
            .field("file_text", &"...")
            .finish()
    }
}

/// Generates an X25519 identity, in the format `age-keygen` writes.
pub fn generate_identity() -> GeneratedIdentity {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let secret = identity.to_string();
    let file_text = Zeroizing::new(format!(
        "# public key: {recipient}\n{}\n",
        secret.expose_secret()
    ));
    GeneratedIdentity {
        file_text,
        recipient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_parses_and_debug_hides_it() {
        let g = generate_identity();
        let id = IdentityFile::parse(Path::new("mem"), g.file_text.as_bytes()).expect("parse");
        assert_eq!(id.identities().count(), 1);
        assert!(!format!("{g:?}").contains("AGE-SECRET-KEY"));
        assert!(Custodian::new("alice", &g.recipient).is_ok());
        let e = Custodian::new("bob", "age1nope").expect_err("bad recipient");
        assert!(e.to_string().contains("custodian `bob`"), "{e}");
    }

    #[test]
    fn an_identity_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("alice.key");
        std::fs::write(&path, generate_identity().file_text.as_bytes()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = IdentityFile::read(&path).expect_err("group/world readable");
        assert!(
            matches!(e, Error::IdentityTooOpen { mode: 0o644, .. }),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(IdentityFile::read(&path).is_ok());
        let junk = dir.path().join("junk.key");
        std::fs::write(&junk, b"not an identity\n").expect("write");
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            IdentityFile::read(&junk),
            Err(Error::IdentityFile { .. })
        ));
    }
}
