//! Transit operations with the service's own keys, on the provider's transit mount
//! (`WARDEN_TRANSIT_MOUNT`, default `transit`). The service's policy decides which keys are
//! its own; a key it may not use is [`warden_bao::TransitError`] permission denied.

use zeroize::Zeroizing;

use crate::error::Error;
use crate::provider::SecretProvider;

impl SecretProvider {
    /// Encrypts `plaintext` with transit key `key`; returns the `vault:vN:…` ciphertext.
    pub async fn encrypt(&self, key: &str, plaintext: &[u8]) -> Result<String, Error> {
        let t = self.client().transit(&self.inner.transit_mount);
        Ok(t.encrypt(key, plaintext).await?.ciphertext)
    }

    /// Decrypts a `vault:vN:…` ciphertext; the plaintext is wiped when dropped.
    pub async fn decrypt(&self, key: &str, ciphertext: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let t = self.client().transit(&self.inner.transit_mount);
        let plain = t.decrypt(key, ciphertext).await?;
        Ok(Zeroizing::new(plain.as_bytes().to_vec()))
    }

    /// Signs `input` with transit key `key` (its latest version); returns `vault:vN:…`.
    pub async fn sign(&self, key: &str, input: &[u8]) -> Result<String, Error> {
        let t = self.client().transit(&self.inner.transit_mount);
        Ok(t.sign(key, input).await?.signature)
    }

    /// Whether `signature` is `key`'s signature of `input`.
    pub async fn verify(&self, key: &str, input: &[u8], signature: &str) -> Result<bool, Error> {
        let t = self.client().transit(&self.inner.transit_mount);
        Ok(t.verify(key, input, signature).await?)
    }
}
