//! `warden serve`'s own identity (issue 15, ADR 0026): the names of what it is in OpenBao, once.
//!
//! Serve logs in with a client certificate of its own at a cert-auth mount of its own
//! ([`SERVE_AUTH_MOUNT`], apart from the apps' mount, so `apply --prune` on apps never touches
//! it, and apart from the operators', so no operator name can collide with it). The PKI role
//! [`SERVE_PKI_ROLE`] signs exactly one client name, [`serve_common_name`]; the cert-auth role
//! [`SERVE_ROLE`] accepts only that name from the environment's intermediate and attaches only
//! [`SERVE_POLICY`], whose grants the planner derives from serve's jobs (`warden_plan::serve`).

/// The policy serve's token carries (and nothing else: no `default`).
pub const SERVE_POLICY: &str = "warden-serve";

/// The cert-auth mount serve logs in at: `auth/warden-serve/login`.
pub const SERVE_AUTH_MOUNT: &str = "warden-serve";

/// The cert-auth role inside [`SERVE_AUTH_MOUNT`]: `auth/warden-serve/certs/serve`.
pub const SERVE_ROLE: &str = "serve";

/// The PKI role (in the environment's PKI mount) that signs serve's client certificate.
pub const SERVE_PKI_ROLE: &str = "warden-serve";

/// Lifetime of serve's certificate: re-enrolled like an operator's, by hand or by a timer.
pub const SERVE_CERT_TTL_SECS: u64 = 90 * 24 * 3600;

/// Lifetime of serve's token. Serve drops its token well before this and logs in again with
/// its certificate, so a stolen token is good for at most this long.
pub const SERVE_TOKEN_TTL_SECS: u64 = 3600;

/// The longest serve's token lives, renewals included.
pub const SERVE_TOKEN_MAX_TTL_SECS: u64 = SERVE_TOKEN_TTL_SECS;

/// The common name of serve's certificate in an environment whose domain is `domain`:
/// `warden.serve.<domain>`, apart from identities' (`.identity.`), operators' (`.operator.`)
/// and transport holders' (`.transport.`) names, so no other certificate is serve.
pub fn serve_common_name(domain: &str) -> String {
    format!("warden.serve.{domain}")
}

/// The cert-auth role's API path: `auth/warden-serve/certs/serve`.
pub fn serve_role_path() -> String {
    format!("auth/{SERVE_AUTH_MOUNT}/certs/{SERVE_ROLE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_apart_from_other_logins() {
        let cn = serve_common_name("test.warden.internal");
        assert_eq!(cn, "warden.serve.test.warden.internal");
        for other in [".identity.", ".operator.", ".transport."] {
            assert!(!cn.contains(other));
        }
        assert_ne!(
            SERVE_AUTH_MOUNT,
            super::super::operator::OPERATOR_AUTH_MOUNT
        );
        assert_eq!(serve_role_path(), "auth/warden-serve/certs/serve");
    }
}
