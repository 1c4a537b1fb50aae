//! The root key at rest: PKCS#8 `ENCRYPTED PRIVATE KEY` PEM, PBES2 with scrypt (log2 N = 15,
//! r = 8, p = 1) and AES-256-CBC.
//!
//! A standard format, not a Warden-specific one, so that in an emergency `openssl pkey -in
//! root.key.p8` opens the key without Warden. scrypt makes each passphrase guess cost tens of MiB
//! and a noticeable fraction of a second, which is the point for a key that lives on a disk.

use std::path::Path;

use pkcs8::der::SecretDocument;
use pkcs8::der::pem::LineEnding;
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::GeneratedKey;

const LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// Encrypts `key` under `passphrase` and returns the PEM text to write with mode 0600.
pub(crate) fn seal(key: &GeneratedKey, passphrase: &SecretString) -> Result<Zeroizing<String>> {
    let pass = passphrase.expose_secret();
    if pass.is_empty() {
        return Err(Error::EmptyPassphrase);
    }
    let der = key.private_key_der();
    let info =
        PrivateKeyInfoRef::try_from(der.as_slice()).map_err(|source| Error::Encrypt { source })?;
    let doc = info
        .encrypt(pass.as_bytes())
        .map_err(|source| Error::Encrypt { source })?;
    doc.to_pem(LABEL, LineEnding::LF)
        .map_err(|e| Error::Encrypt { source: e.into() })
}

/// Decrypts the PEM text of `path` (already read) with `passphrase`.
///
/// A file that is not an encrypted PKCS#8 document is [`Error::CorruptCaFile`]; one that is but
/// does not decrypt to a usable key is [`Error::WrongPassphrase`]: with CBC padding a wrong
/// passphrase occasionally "decrypts" to garbage, so both outcomes mean the same thing.
pub(crate) fn open(path: &Path, pem: &str, passphrase: &SecretString) -> Result<GeneratedKey> {
    let pass = passphrase.expose_secret();
    if pass.is_empty() {
        return Err(Error::EmptyPassphrase);
    }
    let corrupt = |reason: String| Error::CorruptCaFile {
        path: path.to_path_buf(),
        reason,
    };
    let (label, doc) =
        SecretDocument::from_pem(pem).map_err(|e| corrupt(format!("not PEM: {e}")))?;
    if label != LABEL {
        return Err(corrupt(format!(
            "expected a {LABEL:?} PEM block, found {label:?}"
        )));
    }
    let encrypted = EncryptedPrivateKeyInfoRef::try_from(doc.as_bytes())
        .map_err(|e| corrupt(format!("not an encrypted PKCS#8 key: {e}")))?;
    let wrong = || Error::WrongPassphrase {
        path: path.to_path_buf(),
    };
    let plain = encrypted.decrypt(pass.as_bytes()).map_err(|_| wrong())?;
    GeneratedKey::from_pkcs8_der(plain.as_bytes()).map_err(|_| wrong())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyAlgorithm, generate_key};

    #[test]
    fn seals_and_opens_only_with_the_right_passphrase() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let pass = SecretString::from("correct horse");
        let pem = seal(&key, &pass).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let p = Path::new("root.key.p8");
        let opened = open(p, &pem, &pass).unwrap();
        assert_eq!(opened.public_key_der(), key.public_key_der());
        let err = open(p, &pem, &SecretString::from("battery staple")).unwrap_err();
        assert!(matches!(err, Error::WrongPassphrase { .. }), "{err}");
        assert!(matches!(
            open(p, &pem, &SecretString::from("")),
            Err(Error::EmptyPassphrase)
        ));
        let err = open(p, &key.private_key_pem(), &pass).unwrap_err();
        assert!(matches!(err, Error::CorruptCaFile { .. }), "{err}");
        assert!(matches!(
            seal(&key, &SecretString::from("")),
            Err(Error::EmptyPassphrase)
        ));
    }
}
