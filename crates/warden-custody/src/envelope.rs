//! What a custody file holds once opened, and how it is sealed.
//!
//! A share file is an armored age file encrypted to exactly one custodian. Inside is a small
//! JSON document that *binds* the share to its environment, custodian, index and fingerprint,
//! so a share can be recognised (by its fingerprint, a hash that reveals nothing of the share)
//! and refused when it is presented for the wrong environment or by the wrong person, before
//! anything reaches a server. The root-token file is the same kind of file, encrypted to every
//! custodian.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::identity::{Custodian, IdentityFile};

/// The `warden` field of a share payload.
const SHARE_KIND: &str = "unseal-share";
/// The `warden` field of a root-token payload.
const ROOT_TOKEN_KIND: &str = "root-token";
/// Largest custody file read.
const FILE_LIMIT: u64 = 64 * 1024;

/// A share's fingerprint: `sha256:` and the first 128 bits, in hex, of SHA-256 over a domain tag,
/// the environment and the share bytes. One-way, so it can sit in ledgers, registries and logs.
pub fn fingerprint(env: &str, share_hex: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"warden-unseal-share-v1\0");
    ctx.update(env.as_bytes());
    ctx.update(b"\0");
    let bytes = Zeroizing::new(
        hex::decode(share_hex.trim()).unwrap_or_else(|_| share_hex.as_bytes().to_vec()),
    );
    ctx.update(&bytes);
    let digest = ctx.finish();
    format!("sha256:{}", hex::encode(&digest.as_ref()[..16]))
}

/// An opened share: where it belongs and the share itself (zeroized on drop, never printed).
#[derive(Deserialize)]
pub struct Share {
    /// Always `unseal-share`.
    warden: String,
    /// Environment.
    pub environment: String,
    /// Custodian it was encrypted to.
    pub custodian: String,
    /// 1-based share index.
    pub index: u8,
    /// Fingerprint recorded at the ceremony.
    pub fingerprint: String,
    /// Ledger generation (1 at the ceremony, +1 per rekey).
    pub generation: u32,
    /// The share, hex.
    share: SecretString,
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("environment", &self.environment)
            .field("custodian", &self.custodian)
            .field("index", &self.index)
            .field("fingerprint", &self.fingerprint)
            .field("share", &"...")
            .finish()
    }
}

impl Share {
    /// The share, for the one request that submits it.
    pub fn secret(&self) -> &SecretString {
        &self.share
    }

    /// The fingerprint of the share bytes themselves (not the one written beside them).
    pub fn computed_fingerprint(&self) -> String {
        fingerprint(&self.environment, self.share.expose_secret())
    }
}

#[derive(Serialize)]
struct ShareOut<'a> {
    warden: &'static str,
    version: u32,
    environment: &'a str,
    custodian: &'a str,
    index: u8,
    fingerprint: &'a str,
    generation: u32,
    share: &'a str,
}

#[derive(Serialize)]
struct TokenOut<'a> {
    warden: &'static str,
    version: u32,
    environment: &'a str,
    token: &'a str,
}

#[derive(Deserialize)]
struct TokenIn {
    warden: String,
    environment: String,
    token: SecretString,
}

#[derive(Deserialize)]
struct Kind {
    warden: String,
}

/// Seals share number `index` of `env` to `custodian` alone; returns the armored file.
pub fn seal_share(
    env: &str,
    custodian: &Custodian,
    index: u8,
    generation: u32,
    share: &SecretString,
) -> Result<(Vec<u8>, String), Error> {
    let fp = fingerprint(env, share.expose_secret());
    let payload = ShareOut {
        warden: SHARE_KIND,
        version: 1,
        environment: env,
        custodian: &custodian.name,
        index,
        fingerprint: &fp,
        generation,
        share: share.expose_secret(),
    };
    let armored = seal(&payload, std::slice::from_ref(custodian))?;
    Ok((armored, fp))
}

/// Seals `env`'s root token to every custodian (any one of them can open it).
pub fn seal_root_token(
    env: &str,
    custodians: &[Custodian],
    token: &SecretString,
) -> Result<Vec<u8>, Error> {
    let payload = TokenOut {
        warden: ROOT_TOKEN_KIND,
        version: 1,
        environment: env,
        token: token.expose_secret(),
    };
    seal(&payload, custodians)
}

fn seal(payload: &impl Serialize, to: &[Custodian]) -> Result<Vec<u8>, Error> {
    let mut plain = Zeroizing::new(Vec::new());
    serde_json::to_writer(&mut *plain, payload).expect("custody payloads serialise");
    seal_bytes(&plain, to)
}

/// Encrypts `plain` to every custodian in `to` (any one of them can open it), armored.
pub(crate) fn seal_bytes(plain: &[u8], to: &[Custodian]) -> Result<Vec<u8>, Error> {
    let recipients = to.iter().map(|c| c.age_recipient() as &dyn age::Recipient);
    let encryptor =
        age::Encryptor::with_recipients(recipients).map_err(|e| Error::BadCustodians {
            env: String::new(),
            reason: e.to_string(),
        })?;
    let mut out = Vec::new();
    let io = |e: std::io::Error| Error::Io {
        path: "<memory>".into(),
        action: "encrypt",
        source: e,
    };
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(io)?;
    let mut w = encryptor.wrap_output(armor).map_err(io)?;
    w.write_all(plain).map_err(io)?;
    w.finish().and_then(ArmoredWriter::finish).map_err(io)?;
    Ok(out)
}

/// Reads `path` and opens it with `identity`, in memory.
fn open(path: &Path, identity: &IdentityFile) -> Result<Zeroizing<Vec<u8>>, Error> {
    open_with(path, &[identity], FILE_LIMIT)
}

/// Reads `path` (at most `limit` bytes) and opens it with whichever of `identities` it was
/// encrypted to, in memory.
pub(crate) fn open_with(
    path: &Path,
    identities: &[&IdentityFile],
    limit: u64,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    use std::io::Read as _;
    let (mut file, _) = warden_files::open_regular(path, limit).map_err(Error::io(path, "read"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(Error::io(path, "read"))?;
    let not_age = |reason: String| Error::NotAgeFile {
        path: path.to_path_buf(),
        reason,
    };
    let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(&bytes[..]))
        .map_err(|e| not_age(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(identities.iter().flat_map(|i| i.identities()))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => Error::IdentityDoesNotOpen {
                path: path.to_path_buf(),
                identity: identities
                    .iter()
                    .map(|i| i.path().display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
                    .into(),
            },
            other => not_age(other.to_string()),
        })?;
    let mut plain = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut plain)
        .map_err(|e| not_age(e.to_string()))?;
    Ok(plain)
}

/// Opens a share file. Checks only that it is a share; the ledger checks the rest
/// ([`crate::Ledger::check_share`]).
pub fn open_share(path: &Path, identity: &IdentityFile) -> Result<Share, Error> {
    let plain = open(path, identity)?;
    let corrupt = |e: serde_json::Error| Error::NotAgeFile {
        path: path.to_path_buf(),
        reason: format!("its content is not a Warden custody payload ({e})"),
    };
    let kind: Kind = serde_json::from_slice(&plain).map_err(corrupt)?;
    if kind.warden != SHARE_KIND {
        return Err(Error::NotAShare {
            path: path.to_path_buf(),
            found: kind.warden.replace('-', " "),
        });
    }
    let share: Share = serde_json::from_slice(&plain).map_err(corrupt)?;
    debug_assert_eq!(share.warden, SHARE_KIND);
    Ok(share)
}

/// Opens a root-token file of `env` in memory.
pub fn open_root_token(
    path: &Path,
    env: &str,
    identity: &IdentityFile,
) -> Result<SecretString, Error> {
    let plain = open(path, identity)?;
    let t: TokenIn = serde_json::from_slice(&plain).map_err(|e| Error::NotAgeFile {
        path: path.to_path_buf(),
        reason: format!("its content is not a Warden root-token payload ({e})"),
    })?;
    if t.warden != ROOT_TOKEN_KIND {
        return Err(Error::NotAgeFile {
            path: path.to_path_buf(),
            reason: format!("it holds a {}, not a root token", t.warden),
        });
    }
    if t.environment != env {
        return Err(Error::WrongEnvironment {
            path: path.to_path_buf(),
            share_env: t.environment,
            env: env.to_owned(),
        });
    }
    Ok(t.token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::generate_identity;

    fn custodian(name: &str) -> (Custodian, IdentityFile) {
        let g = generate_identity();
        let id = IdentityFile::parse(Path::new(name), g.file_text.as_bytes()).expect("identity");
        (Custodian::new(name, &g.recipient).expect("recipient"), id)
    }

    #[test]
    fn a_share_opens_only_for_its_custodian_and_keeps_its_binding() {
        let dir = tempfile::tempdir().expect("tmp");
        let (alice, alice_id) = custodian("alice");
        let (_, bob_id) = custodian("bob");
        let secret = SecretString::from("a1b2c3d4".to_owned());
        let (file, fp) = seal_share("prod", &alice, 2, 1, &secret).expect("seal");
        let text = String::from_utf8(file.clone()).expect("armored");
        assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!text.contains("a1b2c3d4"));
        let path = dir.path().join("alice.prod.share.age");
        std::fs::write(&path, &file).expect("write");
        let share = open_share(&path, &alice_id).expect("open");
        assert_eq!(
            (
                share.environment.as_str(),
                share.custodian.as_str(),
                share.index
            ),
            ("prod", "alice", 2)
        );
        assert_eq!(share.fingerprint, fp);
        assert_eq!(share.computed_fingerprint(), fp);
        assert!(!format!("{share:?}").contains("a1b2c3d4"));
        let e = open_share(&path, &bob_id).expect_err("bob cannot open it");
        assert!(matches!(e, Error::IdentityDoesNotOpen { .. }), "{e}");
    }

    #[test]
    fn the_root_token_opens_for_every_custodian_and_is_not_a_share() {
        let dir = tempfile::tempdir().expect("tmp");
        let (a, a_id) = custodian("a");
        let (b, b_id) = custodian("b");
        let token = SecretString::from("s.root".to_owned());
        let path = dir.path().join("root-token.prod.age");
        std::fs::write(
            &path,
            seal_root_token("prod", &[a, b], &token).expect("seal"),
        )
        .expect("write");
        for id in [&a_id, &b_id] {
            assert_eq!(
                open_root_token(&path, "prod", id)
                    .expect("open")
                    .expose_secret(),
                "s.root"
            );
        }
        assert!(matches!(
            open_root_token(&path, "test", &a_id),
            Err(Error::WrongEnvironment { .. })
        ));
        assert!(matches!(
            open_share(&path, &a_id),
            Err(Error::NotAShare { .. })
        ));
    }
}
