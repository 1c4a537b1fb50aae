//! The planner's login in an environment (ADR 0038): the read-only policy `warden plan` and
//! apply's planning half log in with, its cert-auth mount, and one role there per operator,
//! mirroring the operator's own role (same certificate, same names, same token lifetime).
//! Names and grants: [`warden_spec::naming::planner`].
//!
//! The roles follow the operators' live roles, not the spec (operators are approved by
//! operators, not declared), so the command reads them first ([`live_operators`]) and passes
//! them in [`crate::EnvInputs::operators`].

use serde_json::json;
use warden_bao::Client;
use warden_spec::Environment;
use warden_spec::naming::operator::{
    OPERATOR_AUTH_MOUNT, OPERATOR_TOKEN_MAX_TTL_SECS, OPERATOR_TOKEN_TTL_SECS,
};
use warden_spec::naming::planner::{self, PLANNER_AUTH_MOUNT, PLANNER_POLICY, planner_role_path};

use crate::desired::{EnvInputs, MOUNT_DESCRIPTION};
use crate::error::Error;
use crate::object::{Desired, Kind};

/// One operator's cert-auth role as it is live: what its planner role copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorLogin {
    /// The operator (the role's name).
    pub name: String,
    /// The CA PEM the role trusts, exactly as OpenBao returns it (so the copy compares equal).
    pub certificate: String,
    /// The common names the role accepts.
    pub common_names: Vec<String>,
}

/// The planner policy's HCL for `env`.
pub fn policy_hcl(env: &Environment) -> String {
    planner::render(&planner::grants(&env.mounts))
}

/// The planner's objects in `env`: its policy, its mount, and one role per live operator.
pub(crate) fn desired(env: &Environment, inputs: &EnvInputs) -> Vec<Desired> {
    let node = |kind, path: String, body| Desired {
        kind,
        path,
        body,
        identity: None,
        password_file: None,
    };
    let mut out = vec![
        node(
            Kind::Policy,
            format!("sys/policies/acl/{PLANNER_POLICY}"),
            json!({ "policy": policy_hcl(env) }),
        ),
        node(
            Kind::Auth,
            format!("sys/auth/{PLANNER_AUTH_MOUNT}"),
            json!({ "type": "cert", "description": MOUNT_DESCRIPTION }),
        ),
    ];
    for op in &inputs.operators {
        out.push(node(
            Kind::CertRole,
            planner_role_path(&op.name),
            json!({
                "certificate": op.certificate,
                "allowed_common_names": op.common_names,
                "display_name": format!("{}-planner", op.name),
                "token_policies": [PLANNER_POLICY],
                "token_no_default_policy": true,
                "token_period": 0,
                "token_ttl": OPERATOR_TOKEN_TTL_SECS,
                "token_max_ttl": OPERATOR_TOKEN_MAX_TTL_SECS,
            }),
        ));
    }
    out
}

/// Every operator's role at the operators' mount, in name order (none where the mount does not
/// exist yet).
pub async fn live_operators(client: &Client, env: &str) -> Result<Vec<OperatorLogin>, Error> {
    let folder = format!("auth/{OPERATOR_AUTH_MOUNT}/certs");
    let bao = |what: String| {
        let env = env.to_owned();
        move |source| Error::Bao { env, what, source }
    };
    let mut names = match client.list(&folder).await {
        Ok(names) => names,
        Err(e) if e.is_not_found() || e.is_unmounted() => return Ok(Vec::new()),
        Err(e) => return Err(bao(format!("list {folder}"))(e)),
    };
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = format!("{folder}/{name}");
        let data = match client.read(&path).await {
            Ok(secret) => secret.data.unwrap_or_default(),
            // Removed between the list and the read: no twin for it.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(bao(format!("read {path}"))(e)),
        };
        let certificate = data["certificate"].as_str().unwrap_or_default().to_owned();
        let common_names: Vec<String> = data["allowed_common_names"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        // A role that pins no name would let any certificate from its CA plan: not mirrored.
        if certificate.trim().is_empty() || common_names.is_empty() {
            continue;
        }
        out.push(OperatorLogin {
            name,
            certificate,
            common_names,
        });
    }
    Ok(out)
}
