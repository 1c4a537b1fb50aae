//! Where one identity's files live on a host: its own small trust boundary on disk.
//!
//! ```text
//! <identity dir>/                 0700, owned by the identity's Unix user
//!   identity/                     0700  the mTLS client keypair, nothing else
//!     client.key                  0600  generated on this host, never sent anywhere
//!     client.crt                  0644  leaf + issuing CA (what the TLS handshake presents)
//!   trust/                        0700  what this identity trusts
//!     ca.pem                      0644  trust anchor for the environment's OpenBao API
//!   out/                          0700  rendered outputs (certificates, secrets) for the service
//!   state/                        0700  the agent's own bookkeeping
//!   agent.toml                    0644  how the agent reaches OpenBao and where the files are
//! ```
//!
//! The identity directory is `<app_root>/<identity>/` on a real host (the environment's
//! `app_root` already names the environment, e.g. `/srv/warden/test`), or
//! `<root-dir>/<env>/<identity>/` when a root directory is given (tests, staging a host image).
//!
//! Why three separate directories rather than one: the keypair, the trust anchor and the
//! rendered outputs change for different reasons and at different times (rotation, CA rollover,
//! every render), and a mistake in one — say a template writing into the wrong place — must not
//! be able to replace another. Every directory is 0700 because the identity's Unix user *is*
//! the service user: nobody else on the host has a reason to read any of it.

use std::path::{Path, PathBuf};

/// Mode of every directory of the layout.
pub const DIR_MODE: u32 = 0o700;

/// The paths of one identity in one environment on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityLayout {
    dir: PathBuf,
}

impl IdentityLayout {
    /// The layout on a real host: `<app_root>/<identity>/`. `app_root` comes from the spec's
    /// environment and already contains the environment's name.
    pub fn on_host(app_root: &Path, identity: &str) -> Self {
        Self {
            dir: app_root.join(identity),
        }
    }

    /// The layout under an explicit root directory: `<root_dir>/<env>/<identity>/`. The
    /// environment is part of the path so that one root can hold every environment, as the
    /// `app_root`s of a real host do.
    pub fn under_root(root_dir: &Path, env: &str, identity: &str) -> Self {
        Self {
            dir: root_dir.join(env).join(identity),
        }
    }

    /// A layout rooted exactly at `dir` (for callers that computed the directory themselves).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The identity directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `identity/`: the mTLS client keypair.
    pub fn identity_dir(&self) -> PathBuf {
        self.dir.join("identity")
    }

    /// `identity/client.key`: the private key (0600).
    pub fn client_key(&self) -> PathBuf {
        self.identity_dir().join("client.key")
    }

    /// `identity/client.crt`: leaf certificate followed by its issuing CA.
    pub fn client_cert(&self) -> PathBuf {
        self.identity_dir().join("client.crt")
    }

    /// `trust/`: trust anchors.
    pub fn trust_dir(&self) -> PathBuf {
        self.dir.join("trust")
    }

    /// `trust/ca.pem`: the trust anchor for the environment's OpenBao API.
    pub fn ca_bundle(&self) -> PathBuf {
        self.trust_dir().join("ca.pem")
    }

    /// `out/`: rendered outputs.
    pub fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// `state/`: the agent's bookkeeping.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// `agent.toml`: the agent's configuration.
    pub fn agent_config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    /// Every directory of the layout, parents first (the order they are created and chowned).
    pub fn dirs(&self) -> [PathBuf; 5] {
        [
            self.dir.clone(),
            self.identity_dir(),
            self.trust_dir(),
            self.out_dir(),
            self.state_dir(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_layout_nests_under_app_root_without_repeating_the_env() {
        let l = IdentityLayout::on_host(Path::new("/srv/warden/test"), "billing");
        assert_eq!(l.dir(), Path::new("/srv/warden/test/billing"));
        assert_eq!(
            l.client_key(),
            Path::new("/srv/warden/test/billing/identity/client.key")
        );
        assert_eq!(
            l.client_cert(),
            Path::new("/srv/warden/test/billing/identity/client.crt")
        );
        assert_eq!(
            l.ca_bundle(),
            Path::new("/srv/warden/test/billing/trust/ca.pem")
        );
        assert_eq!(l.out_dir(), Path::new("/srv/warden/test/billing/out"));
        assert_eq!(l.state_dir(), Path::new("/srv/warden/test/billing/state"));
        assert_eq!(
            l.agent_config(),
            Path::new("/srv/warden/test/billing/agent.toml")
        );
    }

    #[test]
    fn root_dir_layout_separates_environments() {
        let test = IdentityLayout::under_root(Path::new("/tmp/r"), "test", "billing");
        let prod = IdentityLayout::under_root(Path::new("/tmp/r"), "prod", "billing");
        assert_eq!(test.dir(), Path::new("/tmp/r/test/billing"));
        assert_ne!(test.client_key(), prod.client_key());
        assert_eq!(test.dirs()[0], test.dir());
        assert!(
            test.dirs()
                .iter()
                .skip(1)
                .all(|d| d.starts_with(test.dir()))
        );
    }
}
