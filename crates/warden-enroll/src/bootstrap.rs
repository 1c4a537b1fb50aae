//! Bootstrap of a real environment: the only time Warden uses the root token.
//!
//! With the root token in memory (decrypted by the custodians; never in argv, the environment
//! or a file Warden writes), [`bootstrap`] writes the operator policy, enables the operators'
//! cert auth, writes the operator PKI role, approves the first operator from their CSR, and
//! ends by revoking the root token and proving it is gone (its lookup must fail). Everything
//! after that is done by operators with their own certificates.
//!
//! The policy text and the PKI role come from the caller (the planner renders both from the
//! spec, the same objects `apply` keeps up to date), so there is one definition of each.

use serde::Serialize;
use serde_json::Value;
use warden_bao::{Client, Idempotent, MountOptions};
use warden_spec::Environment;
use warden_spec::naming::operator::{OPERATOR_AUTH_MOUNT, OPERATOR_POLICY};

use crate::operator::{Approved, OperatorError, approve};

/// What bootstrap writes besides the first operator.
#[derive(Debug, Clone)]
pub struct BootstrapInputs<'a> {
    /// The operator policy's HCL.
    pub operator_policy: &'a str,
    /// The operator PKI role's API path and body.
    pub pki_role: (&'a str, &'a Value),
    /// The first operator's name and CSR (PEM).
    pub first_operator: (&'a str, &'a str),
}

/// What [`bootstrap`] did.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapReport {
    /// Environment.
    pub env: String,
    /// The operator policy written.
    pub policy: &'static str,
    /// The operators' cert-auth mount was enabled by this run.
    pub auth_enabled: bool,
    /// The first operator, approved.
    pub operator: Approved,
    /// The root token was revoked and a lookup with it now fails.
    pub root_revoked: bool,
}

/// Bootstraps `env` with `root` (a client carrying the root token), then revokes that token.
/// On any failure before the revocation the root token is left valid, so the ceremony can be
/// resumed; nothing here prints or stores it.
pub async fn bootstrap(
    root: &Client,
    env: &Environment,
    inputs: &BootstrapInputs<'_>,
) -> Result<BootstrapReport, OperatorError> {
    let name = env.name.as_str();
    let bao = |what: &str| {
        let (env, what) = (name.to_owned(), what.to_owned());
        move |source| OperatorError::Bao {
            env,
            what,
            source: Box::new(source),
        }
    };
    root.put_policy(OPERATOR_POLICY, inputs.operator_policy)
        .await
        .map_err(bao("write the operator policy"))?;
    let auths = root.list_auth().await.map_err(bao("list auth backends"))?;
    let auth_enabled = !auths
        .keys()
        .any(|m| m.trim_end_matches('/') == OPERATOR_AUTH_MOUNT);
    if auth_enabled {
        root.enable_auth_with(
            OPERATOR_AUTH_MOUNT,
            "cert",
            &MountOptions::default().with_description("managed-by: warden (operators)"),
        )
        .await
        .map_err(bao("enable the operators' cert auth"))?;
    }
    let (role_path, role_body) = inputs.pki_role;
    root.write(role_path, role_body, Idempotent::Yes)
        .await
        .map_err(bao("write the operator PKI role"))?;
    let (first, csr) = inputs.first_operator;
    let operator = approve(root, env, first, csr).await?;

    root.token_revoke_self()
        .await
        .map_err(bao("revoke the root token"))?;
    let root_revoked = match root.token_lookup_self().await {
        Err(e) if e.status() == Some(403) => true,
        Ok(_) => false,
        Err(e) => return Err(bao("check the root token is gone")(e)),
    };
    root.clear_token();
    Ok(BootstrapReport {
        env: name.to_owned(),
        policy: OPERATOR_POLICY,
        auth_enabled,
        operator,
        root_revoked,
    })
}
