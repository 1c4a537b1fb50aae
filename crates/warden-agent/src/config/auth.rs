//! `[auth]`: how the agent logs in, and the mTLS identity it presents.
//!
//! Keys that belong to another method (a `token_file` under `method = "cert"`) are errors,
//! not ignored, so a half-edited file never runs with a credential nobody meant to use.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use warden_spec::{Reporter, did_you_mean};

use super::{S, non_empty};

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Auth mount (`cert`, `approle`, `jwt`...).
    pub mount: String,
    /// The one policy the token is expected to carry.
    pub policy: String,
    /// The mTLS client identity presented on every connection. For `cert` it is also the login
    /// credential; for the other methods it is only the transport identity (needed when the
    /// listener requires client certificates).
    pub tls_identity: Option<TlsIdentity>,
    /// The method and its credentials.
    pub method: AuthMethod,
}

/// The mTLS identity files and, when renewal is configured, how to renew them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// Leaf + issuing CA.
    pub cert_file: PathBuf,
    /// Its key (0600).
    pub key_file: PathBuf,
    /// `Some((pki_mount, identity_role))`: renewed through `<pki_mount>/sign/<identity_role>`.
    pub renew_with: Option<(String, String)>,
}

/// How the agent logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// Cert auth with the mTLS identity.
    Cert {
        /// Cert-auth role.
        role: String,
    },
    /// AppRole.
    AppRole {
        /// File holding the role-id.
        role_id_file: PathBuf,
        /// File holding the secret-id (or a wrapping token for it); removed once read.
        secret_id_file: PathBuf,
        /// The file holds a response-wrapping token to unwrap once.
        secret_id_wrapped: bool,
    },
    /// JWT (for example a Kubernetes service-account token or a CI OIDC token).
    Jwt {
        /// JWT-auth role.
        role: String,
        /// File read at every login (the token is rotated by whoever writes it).
        token_file: PathBuf,
    },
}

impl AuthMethod {
    /// The spelling in `agent.toml`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Cert { .. } => "cert",
            Self::AppRole { .. } => "approle",
            Self::Jwt { .. } => "jwt",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    method: S<String>,
    mount: Option<S<String>>,
    role: Option<S<String>>,
    policy: S<String>,
    cert_file: Option<S<String>>,
    key_file: Option<S<String>>,
    pki_mount: Option<S<String>>,
    identity_role: Option<S<String>>,
    role_id_file: Option<S<String>>,
    secret_id_file: Option<S<String>>,
    secret_id_wrapped: Option<S<bool>>,
    token_file: Option<S<String>>,
}

pub(super) fn validate_auth(
    a: &RawAuth,
    span: Range<usize>,
    resolve: &dyn Fn(&str) -> PathBuf,
    r: &mut Reporter<'_>,
) -> Option<AuthConfig> {
    const METHODS: [&str; 3] = ["cert", "approle", "jwt"];
    let method = a.method.get_ref().as_str();
    if !METHODS.contains(&method) {
        r.error_help(
            a.method.span(),
            "auth.method",
            format!("unknown method `{method}`"),
            did_you_mean(method, &METHODS),
        );
        return None;
    }
    non_empty(r, "auth.policy", &a.policy);
    let missing = |r: &mut Reporter<'_>, key: &str| {
        r.error(
            span.clone(),
            format!("auth.{key}"),
            format!("method `{method}` needs `{key}`"),
        );
    };
    let unused = |r: &mut Reporter<'_>, key: &str, s: Range<usize>| {
        r.error(
            s,
            format!("auth.{key}"),
            format!("`{key}` is not used by method `{method}`"),
        );
    };

    // The TLS identity: required for cert, optional transport identity otherwise.
    let tls_identity = match (&a.cert_file, &a.key_file) {
        (Some(c), Some(k)) => {
            let renew_with = match (&a.pki_mount, &a.identity_role) {
                (Some(m), Some(role)) => Some((
                    m.get_ref().trim_matches('/').to_owned(),
                    role.get_ref().clone(),
                )),
                (None, None) => None,
                (Some(_), None) => {
                    missing(r, "identity_role");
                    None
                }
                (None, Some(_)) => {
                    missing(r, "pki_mount");
                    None
                }
            };
            Some(TlsIdentity {
                cert_file: resolve(c.get_ref()),
                key_file: resolve(k.get_ref()),
                renew_with,
            })
        }
        (None, None) => {
            if method == "cert" {
                missing(r, "cert_file");
                missing(r, "key_file");
            }
            for (key, v) in [
                ("pki_mount", &a.pki_mount),
                ("identity_role", &a.identity_role),
            ] {
                if let Some(v) = v {
                    r.error(
                        v.span(),
                        format!("auth.{key}"),
                        format!(
                            "`{key}` renews the TLS identity, but no `cert_file`/`key_file` is set"
                        ),
                    );
                }
            }
            None
        }
        (Some(_), None) => {
            missing(r, "key_file");
            None
        }
        (None, Some(_)) => {
            missing(r, "cert_file");
            None
        }
    };

    let mount = a.mount.as_ref().map_or_else(
        || method.to_owned(),
        |m| m.get_ref().trim_matches('/').to_owned(),
    );
    let method_cfg = match method {
        "cert" => {
            for (key, v) in [
                ("role_id_file", &a.role_id_file),
                ("secret_id_file", &a.secret_id_file),
                ("token_file", &a.token_file),
            ] {
                if let Some(v) = v {
                    unused(r, key, v.span());
                }
            }
            if let Some(v) = &a.secret_id_wrapped {
                unused(r, "secret_id_wrapped", v.span());
            }
            let Some(role) = &a.role else {
                missing(r, "role");
                return None;
            };
            AuthMethod::Cert {
                role: role.get_ref().clone(),
            }
        }
        "approle" => {
            if let Some(v) = &a.token_file {
                unused(r, "token_file", v.span());
            }
            if let Some(v) = &a.role {
                r.error_help(
                    v.span(),
                    "auth.role",
                    "`role` is not used by method `approle`",
                    Some("the role-id file names the AppRole".to_owned()),
                );
            }
            let (Some(role_id), Some(secret_id)) = (&a.role_id_file, &a.secret_id_file) else {
                if a.role_id_file.is_none() {
                    missing(r, "role_id_file");
                }
                if a.secret_id_file.is_none() {
                    missing(r, "secret_id_file");
                }
                return None;
            };
            AuthMethod::AppRole {
                role_id_file: resolve(role_id.get_ref()),
                secret_id_file: resolve(secret_id.get_ref()),
                secret_id_wrapped: a.secret_id_wrapped.as_ref().is_some_and(|w| *w.get_ref()),
            }
        }
        _ => {
            for (key, v) in [
                ("role_id_file", &a.role_id_file),
                ("secret_id_file", &a.secret_id_file),
            ] {
                if let Some(v) = v {
                    unused(r, key, v.span());
                }
            }
            if let Some(v) = &a.secret_id_wrapped {
                unused(r, "secret_id_wrapped", v.span());
            }
            let (Some(role), Some(token_file)) = (&a.role, &a.token_file) else {
                if a.role.is_none() {
                    missing(r, "role");
                }
                if a.token_file.is_none() {
                    missing(r, "token_file");
                }
                return None;
            };
            AuthMethod::Jwt {
                role: role.get_ref().clone(),
                token_file: resolve(token_file.get_ref()),
            }
        }
    };
    Some(AuthConfig {
        mount,
        policy: a.policy.get_ref().clone(),
        tls_identity,
        method: method_cfg,
    })
}
