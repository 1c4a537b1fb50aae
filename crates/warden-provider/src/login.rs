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
                // The agent renews the certificate in place: present the current one.
                let identity = warden_bao::ClientIdentity::from_files(cert_file, key_file)
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

fn read_secret(what: &'static str, path: &Path) -> Result<SecretString, Error> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        Error::ReadFile {
            what,
            path: path.to_owned(),
            source,
        }
    })?);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Error::EmptyFile {
            what,
            path: path.to_owned(),
        });
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

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
}
