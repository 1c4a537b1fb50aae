//! JWT auth: exchanging a token an identity provider signed (a CI pipeline's OIDC token) for
//! an OpenBao token, and saying precisely why a token was refused.
//!
//! OpenBao explains a refusal only in text (`claim "ref" does not match any associated bound
//! claim values`); [`JwtRefusal`] names the cases so a caller can tell a pipeline on the wrong
//! branch from an expired token or a wrong audience. [`unverified_claims`] reads a token's
//! claims *without* verifying it, only to describe a refusal (which branch the token names).

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};

use crate::b64;
use crate::client::{Call, Client};
use crate::error::Error;
use crate::response::Auth;
use crate::response::Secret;
use crate::retry::Idempotent;

/// Why OpenBao refused a JWT, as far as its message says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtRefusal {
    /// A claim the role binds (`bound_claims`) has a value the role does not accept.
    ClaimMismatch {
        /// The claim, e.g. `ref` or `repository`.
        claim: String,
    },
    /// A claim the role binds is absent from the token.
    ClaimMissing {
        /// The claim.
        claim: String,
    },
    /// `aud` is not one of the role's `bound_audiences`.
    Audience,
    /// `iss` is not the backend's `bound_issuer`.
    Issuer,
    /// The token has expired (`exp`).
    Expired,
    /// The token is not valid yet (`nbf`/`iat` in the future: clock skew?).
    NotYetValid,
    /// The signature does not verify with any configured key, or the token is not a JWS.
    Signature,
    /// The role does not exist on this mount.
    UnknownRole,
    /// Something else; the message says what.
    Other,
}

impl JwtRefusal {
    /// Reads OpenBao's refusal text. Pure, so the mapping is unit-tested on the real messages.
    pub fn from_message(message: &str) -> Self {
        let quoted = || {
            message
                .split('"')
                .nth(1)
                .map(str::to_owned)
                .unwrap_or_default()
        };
        if message.contains("could not be found") && message.contains("role") {
            Self::UnknownRole
        } else if message.contains("does not match any associated bound claim values")
            || message.contains("does not match associated bound claim")
        {
            Self::ClaimMismatch { claim: quoted() }
        } else if message.contains("claim") && message.contains("is missing") {
            Self::ClaimMissing { claim: quoted() }
        } else if message.contains("(aud)") || message.contains("audience") {
            Self::Audience
        } else if message.contains("(iss)") || message.contains("issuer") {
            Self::Issuer
        } else if message.contains("expired") {
            Self::Expired
        } else if message.contains("(nbf)")
            || message.contains("(iat)")
            || message.contains("not valid yet")
        {
            Self::NotYetValid
        } else if message.contains("signature") || message.contains("JWS") {
            Self::Signature
        } else {
            Self::Other
        }
    }
}

/// Why a JWT login failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtLoginError {
    /// OpenBao refused the token for role `role` (HTTP 400); `reason` names why.
    #[error("auth/{mount}: role `{role}` refused the token: {message}")]
    Refused {
        /// The auth mount.
        mount: String,
        /// The role asked for.
        role: String,
        /// What was wrong, as far as the message says.
        reason: JwtRefusal,
        /// OpenBao's message.
        message: String,
    },
    /// Anything else: unreachable, TLS, sealed, a missing mount...
    #[error("auth/{mount}: login as `{role}` failed: {source}")]
    Api {
        /// The auth mount.
        mount: String,
        /// The role asked for.
        role: String,
        /// The client error.
        #[source]
        source: Error,
    },
}

impl Client {
    /// Logs in at `auth/<mount>/login` as `role` with `jwt`. Like [`Client::login_cert`], the
    /// client's own token is neither sent nor changed.
    pub async fn login_jwt(
        &self,
        mount: &str,
        role: &str,
        jwt: &SecretString,
    ) -> Result<Auth, JwtLoginError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            role: &'a str,
            jwt: &'a str,
        }
        let mount = mount.trim_matches('/');
        let path = format!("auth/{mount}/login");
        let api = |source| JwtLoginError::Api {
            mount: mount.to_owned(),
            role: role.to_owned(),
            source,
        };
        let call = Call::new(Method::POST, &path, Idempotent::Yes)
            .unauthenticated()
            .json(&Body {
                role,
                jwt: jwt.expose_secret().trim(),
            })
            .map_err(api)?;
        let reply = match self.send(call).await {
            Ok(r) => r,
            Err(e @ Error::BadRequest { .. }) => {
                let message = e.server_errors().join("; ");
                return Err(JwtLoginError::Refused {
                    mount: mount.to_owned(),
                    role: role.to_owned(),
                    reason: JwtRefusal::from_message(&message),
                    message,
                });
            }
            Err(e) => return Err(api(e)),
        };
        let secret: Secret = reply.decode(&path).map_err(api)?;
        secret.auth.ok_or_else(|| {
            api(Error::Decode {
                path,
                source: serde::de::Error::custom("login response has no auth block"),
            })
        })
    }
}

/// The claims of a compact JWS, **not verified**: only to describe a token (which repository
/// and branch it names) when OpenBao refused it. `None` when it is not a three-part token
/// with a JSON object as payload.
pub fn unverified_claims(jwt: &SecretString) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = jwt.expose_secret().trim().split('.');
    let (_, payload, _, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    if rest.is_some() {
        return None;
    }
    let bytes = b64::decode_url_safe(payload)?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages OpenBao 2.7.2 sends (captured from a real server).
    #[test]
    fn refusals_are_named() {
        let cases = [
            (
                r#"error validating claims: claim "ref" does not match any associated bound claim values"#,
                JwtRefusal::ClaimMismatch {
                    claim: "ref".into(),
                },
            ),
            (
                r#"error validating claims: claim "repository" does not match any associated bound claim values"#,
                JwtRefusal::ClaimMismatch {
                    claim: "repository".into(),
                },
            ),
            (
                "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience",
                JwtRefusal::Audience,
            ),
            (
                "error validating token: invalid issuer (iss) claim",
                JwtRefusal::Issuer,
            ),
            (
                "error validating token: token is expired (exp)",
                JwtRefusal::Expired,
            ),
            (
                r#"role "gitea_cicd_nope" could not be found"#,
                JwtRefusal::UnknownRole,
            ),
            (
                "error validating token: error verifying token signature: go-jose/go-jose: compact JWS format must have three parts",
                JwtRefusal::Signature,
            ),
            ("something new", JwtRefusal::Other),
        ];
        for (message, want) in cases {
            assert_eq!(JwtRefusal::from_message(message), want, "{message}");
        }
    }

    #[test]
    fn claims_are_read_without_verification() {
        // {"alg":"none"} . {"ref":"refs/heads/dev","n":1} . sig
        let header = "eyJhbGciOiJub25lIn0";
        let payload = "eyJyZWYiOiJyZWZzL2hlYWRzL2RldiIsIm4iOjF9";
        let jwt = SecretString::from(format!("{header}.{payload}.c2ln\n"));
        let claims = unverified_claims(&jwt).expect("claims");
        assert_eq!(claims["ref"], "refs/heads/dev");
        assert!(unverified_claims(&SecretString::from("a.b")).is_none());
        assert!(
            unverified_claims(&SecretString::from(format!("{header}.{payload}.x.y"))).is_none()
        );
    }
}
