//! How the service proves who it is: the certificate its agent keeps renewed (mTLS cert login)
//! or AppRole credentials read from files. Never a token from the environment (AD-1).

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use warden_bao::{Auth, Client, Idempotent};
use warden_enroll::IdentityLayout;

use crate::error::Error;

/// A login method.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Login {
    /// Cert auth at `auth/<mount>/login` with the TLS client certificate in `cert_file` /
    /// `key_file` (re-read at every login, so the agent's renewals are picked up).
    Cert {
        /// Leaf + issuing CA, PEM.
        cert_file: PathBuf,
        /// The private key, PEM.
        key_file: PathBuf,
        /// The cert-auth mount (default `cert`).
        mount: String,
        /// The role; `None` lets OpenBao pick any role the certificate meets.
        role: Option<String>,
    },
    /// AppRole at `auth/<mount>/login` with the role-id and secret-id read from files at every
    /// login.
    AppRole {
        /// File holding the role-id.
        role_id_file: PathBuf,
        /// File holding the secret-id (0600, written by whoever delivers it).
        secret_id_file: PathBuf,
        /// The AppRole mount (default `approle`).
        mount: String,
    },
}

impl Login {
    /// Cert login with the files of an agent-managed identity directory (`warden-enroll`'s
    /// layout: `identity/client.crt`, `identity/client.key`).
    pub fn identity_dir(dir: impl Into<PathBuf>, role: Option<String>) -> Self {
        let layout = IdentityLayout::at(dir);
        Self::Cert {
            cert_file: layout.client_cert(),
            key_file: layout.client_key(),
            mount: "cert".to_owned(),
            role,
        }
    }

    /// AppRole with credentials in these files at the default mount `approle`.
    pub fn approle(role_id_file: impl Into<PathBuf>, secret_id_file: impl Into<PathBuf>) -> Self {
        Self::AppRole {
            role_id_file: role_id_file.into(),
            secret_id_file: secret_id_file.into(),
            mount: "approle".to_owned(),
        }
    }

    /// The method from environment-style variables (first match wins):
    /// `WARDEN_IDENTITY_DIR` (cert login with the identity's files; its `trust/ca.pem` is used
    /// as the CA bundle when `BAO_CACERT`/`VAULT_CACERT` is unset), `BAO_CLIENT_CERT` +
    /// `BAO_CLIENT_KEY` (or `VAULT_…`; cert login), `WARDEN_APPROLE_ROLE_ID_FILE` +
    /// `WARDEN_APPROLE_SECRET_ID_FILE`. `WARDEN_AUTH_MOUNT` and `WARDEN_AUTH_ROLE` override the
    /// mount and name the cert role.
    pub fn from_env_with(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |n: &str| lookup(n).filter(|v| !v.trim().is_empty());
        let either = |n: &str| get(&format!("BAO_{n}")).or_else(|| get(&format!("VAULT_{n}")));
        let mount = get("WARDEN_AUTH_MOUNT");
        let role = get("WARDEN_AUTH_ROLE");
        let mut login = if let Some(dir) = get("WARDEN_IDENTITY_DIR") {
            Self::identity_dir(dir, role)
        } else if let (Some(cert), Some(key)) = (either("CLIENT_CERT"), either("CLIENT_KEY")) {
            Self::Cert {
                cert_file: cert.into(),
                key_file: key.into(),
                mount: "cert".to_owned(),
                role,
            }
        } else if let (Some(r), Some(s)) = (
            get("WARDEN_APPROLE_ROLE_ID_FILE"),
            get("WARDEN_APPROLE_SECRET_ID_FILE"),
        ) {
            Self::approle(r, s)
        } else {
            return Err(Error::NoLogin);
        };
        if let Some(m) = mount {
            match &mut login {
                Self::Cert { mount, .. } | Self::AppRole { mount, .. } => *mount = m,
            }
        }
        Ok(login)
    }

    /// The auth mount.
    pub fn mount(&self) -> &str {
        match self {
            Self::Cert { mount, .. } | Self::AppRole { mount, .. } => mount,
        }
    }

    /// Logs in once. The client's token is not changed; the caller sets it.
    pub(crate) async fn login(&self, client: &Client) -> Result<Auth, LoginError> {
        match self {
            Self::Cert {
                cert_file,
                key_file,
                mount,
                role,
            } => {
                // The agent renews the certificate in place: present the current one. Read like
                // the AppRole files (bounded, never blocking on a FIFO, the key refused when
                // other users may read it).
                let cert = read_credential("client certificate", cert_file, false)
                    .map_err(LoginError::File)?;
                let key =
                    read_credential("client key", key_file, true).map_err(LoginError::File)?;
                let identity = warden_bao::ClientIdentity::from_pem(cert.to_vec(), key)
                    .map_err(LoginError::Setup)?;
                client
                    .set_identity(Some(identity))
                    .map_err(LoginError::Setup)?;
                client
                    .login_cert(mount, role.as_deref())
                    .await
                    .map_err(LoginError::Server)
            }
            Self::AppRole {
                role_id_file,
                secret_id_file,
                mount,
            } => {
                let role_id =
                    read_secret("AppRole role-id", role_id_file).map_err(LoginError::File)?;
                let secret_id =
                    read_secret("AppRole secret-id", secret_id_file).map_err(LoginError::File)?;
                let body = serde_json::json!({
                    "role_id": role_id.expose_secret(),
                    "secret_id": secret_id.expose_secret(),
                });
                let path = format!("auth/{}/login", mount.trim_matches('/'));
                // A repeated login only mints a second token, which expires on its own.
                let answer = client.write(&path, &body, Idempotent::Yes).await;
                // `body` held both values in plain strings: wipe them, whatever the answer.
                wipe_json(body);
                answer
                    .map_err(LoginError::Server)?
                    .and_then(|s| s.auth)
                    .ok_or(LoginError::NoAuth)
            }
        }
    }
}

/// Why one login attempt failed.
#[derive(Debug)]
pub(crate) enum LoginError {
    File(Error),
    Setup(warden_bao::Error),
    Server(warden_bao::Error),
    NoAuth,
}

fn wipe_json(mut v: serde_json::Value) {
    use zeroize::Zeroize;
    if let Some(map) = v.as_object_mut() {
        for value in map.values_mut() {
            if let serde_json::Value::String(s) = value {
                s.zeroize();
            }
        }
    }
}

/// The most a credential file may hold (a role-id is a few dozen bytes, a certificate chain a
/// few KiB).
const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

/// Reads an AppRole credential ([`read_credential`], private), trimmed; an empty file is an
/// error.
fn read_secret(what: &'static str, path: &Path) -> Result<SecretString, Error> {
    let bytes = read_credential(what, path, true)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::ReadFile {
        what,
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Error::EmptyFile {
            what,
            path: path.to_owned(),
        });
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

/// Reads a credential file through `warden_files::open_regular`: a FIFO or a device planted at
/// the path is refused at once instead of blocking the runtime thread (where no
/// `VAULT_INIT_TIMEOUT_SEC` could fire) or filling memory. With `private`, a file others may
/// read or write (`o+r`, `o+w`) is refused: its secret is already everyone's. Group access is
/// left to the deployment (a Kubernetes `fsGroup` mount, a `warden` group).
fn read_credential(
    what: &'static str,
    path: &Path,
    private: bool,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let io = |source| Error::ReadFile {
        what,
        path: path.to_owned(),
        source,
    };
    let (file, meta) = warden_files::open_regular(path, MAX_CREDENTIAL_BYTES).map_err(io)?;
    let mode = meta.mode() & 0o7777;
    if private && mode & 0o006 != 0 {
        return Err(Error::ExposedFile {
            what,
            path: path.to_owned(),
            mode,
        });
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_CREDENTIAL_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn identity_dir_uses_the_enrolled_layout() {
        let login =
            Login::from_env_with(&env(&[("WARDEN_IDENTITY_DIR", "/srv/warden/test/billing")]))
                .expect("login");
        let Login::Cert {
            cert_file,
            key_file,
            mount,
            role,
        } = login
        else {
            panic!("cert login expected");
        };
        assert_eq!(
            cert_file,
            Path::new("/srv/warden/test/billing/identity/client.crt")
        );
        assert_eq!(
            key_file,
            Path::new("/srv/warden/test/billing/identity/client.key")
        );
        assert_eq!((mount.as_str(), role), ("cert", None));
    }

    #[test]
    fn approle_files_and_overrides() {
        let login = Login::from_env_with(&env(&[
            ("WARDEN_APPROLE_ROLE_ID_FILE", "/run/r"),
            ("WARDEN_APPROLE_SECRET_ID_FILE", "/run/s"),
            ("WARDEN_AUTH_MOUNT", "approle-ci"),
        ]))
        .expect("login");
        assert_eq!(login.mount(), "approle-ci");
        assert!(matches!(login, Login::AppRole { .. }));
        let err =
            Login::from_env_with(&env(&[("WARDEN_APPROLE_ROLE_ID_FILE", "/run/r")])).unwrap_err();
        assert!(matches!(err, Error::NoLogin), "{err}");
    }

    #[test]
    fn an_empty_secret_file_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("secret-id");
        std::fs::write(&p, "\n").expect("write");
        let err = read_secret("AppRole secret-id", &p).unwrap_err();
        assert!(err.to_string().contains("secret-id"), "{err}");
    }

    /// Red team (issue 17): a FIFO planted at the secret-id path blocked the read forever on
    /// the runtime's thread, where VAULT_INIT_TIMEOUT_SEC cannot fire; a world-readable
    /// secret-id was used as if it were private.
    #[test]
    fn a_fifo_or_a_world_readable_secret_id_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("secret-id");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo;
        std::thread::spawn(move || {
            let _ = tx.send(read_secret("AppRole secret-id", &path).map(|_| ()));
        });
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the read of a FIFO returned at once")
            .expect_err("a FIFO is no credential file");
        assert!(err.to_string().contains("secret-id"), "{err}");
        let open = dir.path().join("world");
        std::fs::write(&open, "s3cr3t-id\n").expect("write");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_secret("AppRole secret-id", &open).expect_err("world-readable");
        assert!(
            matches!(err, Error::ExposedFile { mode: 0o644, .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let ok = read_secret("AppRole secret-id", &open)
            .expect("group-readable is the deployment's choice");
        assert_eq!(ok.expose_secret(), "s3cr3t-id");
    }

    /// Red team (issue 17): the certificate login's files go through the same reader — a
    /// world-readable private key is refused, a world-readable certificate is fine (it is
    /// public), and a FIFO at either never blocks.
    #[test]
    fn a_world_readable_client_key_is_refused_and_the_certificate_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("client.key");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_credential("client key", &key, true).expect_err("world-readable key");
        assert!(matches!(err, Error::ExposedFile { .. }), "{err}");
        assert!(read_credential("client certificate", &key, false).is_ok());
        let fifo = dir.path().join("client.crt");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        assert!(read_credential("client certificate", &fifo, false).is_err());
    }
}
