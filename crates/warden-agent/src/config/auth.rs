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
    let m = Method {
        name: method,
        span,
        resolve,
    };
    let tls_identity = tls_identity(a, &m, r);
    let mount = a.mount.as_ref().map_or_else(
        || method.to_owned(),
        |m| m.get_ref().trim_matches('/').to_owned(),
    );
    let method_cfg = match method {
        "cert" => cert(a, &m, r)?,
        "approle" => approle(a, &m, r)?,
        _ => jwt(a, &m, r)?,
    };
    Some(AuthConfig {
        mount,
        policy: a.policy.get_ref().clone(),
        tls_identity,
        method: method_cfg,
    })
}

/// The method being checked, where its diagnostics point and how its paths resolve.
struct Method<'a> {
    /// `cert`, `approle` or `jwt`.
    name: &'a str,
    /// The `[auth]` table, where a missing key is reported.
    span: Range<usize>,
    /// Makes a relative path absolute against the config's directory.
    resolve: &'a dyn Fn(&str) -> PathBuf,
}

impl Method<'_> {
    /// A key the method needs is not set.
    fn missing(&self, r: &mut Reporter<'_>, key: &str) {
        r.error(
            self.span.clone(),
            format!("auth.{key}"),
            format!("method `{}` needs `{key}`", self.name),
        );
    }

    /// Two keys that are only meaningful together: both values, or `None` with each missing
    /// one reported.
    fn both<'v>(
        &self,
        r: &mut Reporter<'_>,
        (first, a): (&str, &'v Option<S<String>>),
        (second, b): (&str, &'v Option<S<String>>),
    ) -> Option<(&'v S<String>, &'v S<String>)> {
        if a.is_none() {
            self.missing(r, first);
        }
        if b.is_none() {
            self.missing(r, second);
        }
        Some((a.as_ref()?, b.as_ref()?))
    }

    /// Reports each key of another method that is set, in the order given.
    fn unused<const N: usize>(
        &self,
        r: &mut Reporter<'_>,
        keys: [(&str, Option<Range<usize>>); N],
    ) {
        for (key, s) in keys {
            if let Some(s) = s {
                r.error(
                    s,
                    format!("auth.{key}"),
                    format!("`{key}` is not used by method `{}`", self.name),
                );
            }
        }
    }
}

/// The TLS identity: required for `cert` (it is the login credential), an optional transport
/// identity otherwise.
fn tls_identity(a: &RawAuth, m: &Method<'_>, r: &mut Reporter<'_>) -> Option<TlsIdentity> {
    if a.cert_file.is_none() && a.key_file.is_none() {
        if m.name == "cert" {
            m.missing(r, "cert_file");
            m.missing(r, "key_file");
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
        return None;
    }
    let (c, k) = m.both(r, ("cert_file", &a.cert_file), ("key_file", &a.key_file))?;
    Some(TlsIdentity {
        cert_file: (m.resolve)(c.get_ref()),
        key_file: (m.resolve)(k.get_ref()),
        renew_with: renew_with(a, m, r),
    })
}

/// `pki_mount` and `identity_role`, both or neither: how the TLS identity is renewed.
fn renew_with(a: &RawAuth, m: &Method<'_>, r: &mut Reporter<'_>) -> Option<(String, String)> {
    if a.pki_mount.is_none() && a.identity_role.is_none() {
        return None;
    }
    let (mount, role) = m.both(
        r,
        ("pki_mount", &a.pki_mount),
        ("identity_role", &a.identity_role),
    )?;
    Some((
        mount.get_ref().trim_matches('/').to_owned(),
        role.get_ref().clone(),
    ))
}

/// Where a key is set, if it is.
fn span_of<T>(v: &Option<S<T>>) -> Option<Range<usize>> {
    v.as_ref().map(S::span)
}

/// `method = "cert"`: logs in with the TLS identity under a cert-auth `role`.
fn cert(a: &RawAuth, m: &Method<'_>, r: &mut Reporter<'_>) -> Option<AuthMethod> {
    m.unused(
        r,
        [
            ("role_id_file", span_of(&a.role_id_file)),
            ("secret_id_file", span_of(&a.secret_id_file)),
            ("token_file", span_of(&a.token_file)),
            ("secret_id_wrapped", span_of(&a.secret_id_wrapped)),
        ],
    );
    let Some(role) = &a.role else {
        m.missing(r, "role");
        return None;
    };
    Some(AuthMethod::Cert {
        role: role.get_ref().clone(),
    })
}

/// `method = "approle"`: a role-id file and a secret-id file; the role-id names the role.
fn approle(a: &RawAuth, m: &Method<'_>, r: &mut Reporter<'_>) -> Option<AuthMethod> {
    m.unused(r, [("token_file", span_of(&a.token_file))]);
    if let Some(v) = &a.role {
        r.error_help(
            v.span(),
            "auth.role",
            "`role` is not used by method `approle`",
            Some("the role-id file names the AppRole".to_owned()),
        );
    }
    let (role_id, secret_id) = m.both(
        r,
        ("role_id_file", &a.role_id_file),
        ("secret_id_file", &a.secret_id_file),
    )?;
    Some(AuthMethod::AppRole {
        role_id_file: (m.resolve)(role_id.get_ref()),
        secret_id_file: (m.resolve)(secret_id.get_ref()),
        secret_id_wrapped: a.secret_id_wrapped.as_ref().is_some_and(|w| *w.get_ref()),
    })
}

/// `method = "jwt"`: a JWT-auth `role` and the file its token is read from at every login.
fn jwt(a: &RawAuth, m: &Method<'_>, r: &mut Reporter<'_>) -> Option<AuthMethod> {
    m.unused(
        r,
        [
            ("role_id_file", span_of(&a.role_id_file)),
            ("secret_id_file", span_of(&a.secret_id_file)),
            ("secret_id_wrapped", span_of(&a.secret_id_wrapped)),
        ],
    );
    let (role, token_file) = m.both(r, ("role", &a.role), ("token_file", &a.token_file))?;
    Some(AuthMethod::Jwt {
        role: role.get_ref().clone(),
        token_file: (m.resolve)(token_file.get_ref()),
    })
}
