//! The planner's login in an environment (ADR 0038): the read-only policy `warden plan` and
//! apply's planning half log in with, its cert-auth mount, and one role there per operator,
//! mirroring the operator's own role.
//! Names and grants: [`warden_spec::naming::planner`].
//!
//! The roles follow the operators' live roles, not the spec (operators are approved by
//! operators, not declared), so the command reads them first ([`live`]) and passes them in
//! [`crate::EnvInputs::planner`]:
//! - a role is mirrored only if it is an operator's (it attaches exactly the operator policy)
//!   and pins a name; every constraint it carries is copied, so its planner role never
//!   accepts a certificate the operator role refuses;
//! - a planner role whose operator role is gone (or no longer mirrored) must not exist: the
//!   plan deletes it, with or without `--prune`.

use serde_json::{Map, Value, json};
use warden_bao::Client;
use warden_spec::Environment;
use warden_spec::naming::operator::{
    OPERATOR_AUTH_MOUNT, OPERATOR_POLICY, OPERATOR_TOKEN_MAX_TTL_SECS, OPERATOR_TOKEN_TTL_SECS,
};
use warden_spec::naming::planner::{self, PLANNER_AUTH_MOUNT, PLANNER_POLICY, planner_role_path};

use crate::desired::{EnvInputs, MOUNT_DESCRIPTION};
use crate::error::Error;
use crate::object::{Desired, Kind};

/// The fields of a cert-auth role that decide which certificates log in, and from where,
/// copied from the operator's role so the planner's accepts exactly what it accepts: lists
/// (an unset one as empty, so a constraint removed from the operator role is removed from
/// the planner role too), switches (unset: off), and texts (where set).
const LIST_CONSTRAINTS: &[&str] = &[
    "allowed_common_names",
    "allowed_names",
    "allowed_dns_sans",
    "allowed_email_sans",
    "allowed_uri_sans",
    "allowed_organizational_units",
    "required_extensions",
    "allowed_metadata_extensions",
    "ocsp_servers_override",
    "token_bound_cidrs",
];
const SWITCH_CONSTRAINTS: &[&str] = &["ocsp_enabled", "ocsp_fail_open", "ocsp_query_all_servers"];
const TEXT_CONSTRAINTS: &[&str] = &["certificate", "ocsp_ca_certificates"];

/// One operator's cert-auth role as it is live: the constraints its planner role copies.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorLogin {
    /// The operator (the role's name).
    pub name: String,
    /// Every constraint field, as OpenBao returns it (so the copy compares equal).
    pub constraints: Map<String, Value>,
}

/// What the planner's objects depend on, read live ([`live`]).
#[derive(Debug, Clone, Default)]
pub struct PlannerInputs {
    /// The operator roles to mirror, in name order.
    pub operators: Vec<OperatorLogin>,
    /// Planner roles with no mirrored operator role behind them: deleted.
    pub stale: Vec<String>,
}

/// The planner policy's HCL for `env`.
pub fn policy_hcl(env: &Environment) -> String {
    planner::render(&planner::grants(&env.mounts))
}

/// The planner's objects in `env`: its policy, its mount, one role per mirrored operator, and
/// the absence of every stale one.
pub(crate) fn desired(env: &Environment, inputs: &EnvInputs) -> Vec<Desired> {
    let node = Desired::env_object;
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
    for op in &inputs.planner.operators {
        out.push(node(
            Kind::CertRole,
            planner_role_path(&op.name),
            role_body(op),
        ));
    }
    for name in &inputs.planner.stale {
        out.push(node(Kind::CertRole, planner_role_path(name), Value::Null));
    }
    out
}

/// The planner role of `op`: its operator role's constraints, the planner policy alone.
fn role_body(op: &OperatorLogin) -> Value {
    let mut body = op.constraints.clone();
    body.extend([
        (
            "display_name".to_owned(),
            json!(format!("{}-planner", op.name)),
        ),
        ("token_policies".to_owned(), json!([PLANNER_POLICY])),
        ("token_no_default_policy".to_owned(), json!(true)),
        ("token_period".to_owned(), json!(0)),
        ("token_ttl".to_owned(), json!(OPERATOR_TOKEN_TTL_SECS)),
        (
            "token_max_ttl".to_owned(),
            json!(OPERATOR_TOKEN_MAX_TTL_SECS),
        ),
    ]);
    Value::Object(body)
}

/// Mirrors operator `name`'s live role at once, the way apply would (`warden operator
/// approve`), so a newly approved operator's plans read as their planner before the next
/// apply. Returns the planner role's path, or `None` when there is nothing to mirror: the
/// role is not an operator's, or the planners' mount does not exist yet (apply creates both).
pub async fn mirror(client: &Client, env: &str, name: &str) -> Result<Option<String>, Error> {
    let bao = |what: String| {
        move |source| Error::Bao {
            env: env.to_owned(),
            what,
            source,
        }
    };
    let path = format!("auth/{OPERATOR_AUTH_MOUNT}/certs/{name}");
    let data = match client.read(&path).await {
        Ok(secret) => secret.data.unwrap_or_default(),
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(bao(format!("read {path}"))(e)),
    };
    let Some(op) = mirrored(name.to_owned(), &data) else {
        return Ok(None);
    };
    let role = planner_role_path(name);
    match client
        .write(&role, &role_body(&op), warden_bao::Idempotent::Yes)
        .await
    {
        Ok(_) => Ok(Some(role)),
        Err(e) if e.is_unmounted() || e.is_not_found() => Ok(None),
        Err(e) => Err(bao(format!("write {role}"))(e)),
    }
}

/// Whether `path` is a planner role's.
pub(crate) fn is_role_path(path: &str) -> bool {
    path.strip_prefix("auth/")
        .and_then(|p| p.strip_prefix(PLANNER_AUTH_MOUNT))
        .is_some_and(|p| p.starts_with("/certs/"))
}

/// Whether the live planner policy is exactly what apply writes for `env`: a planner whose
/// policy was edited (or written by another version of Warden) could be refused a read plan
/// needs, or shown lists filtered to hide objects, so plan does not read with it.
pub fn policy_is_current(live_hcl: &str, env: &Environment) -> bool {
    live_hcl.trim() == policy_hcl(env).trim()
}

/// The operator roles to mirror and the planner roles to delete, read live (nothing where a
/// mount does not exist yet).
pub async fn live(client: &Client, env: &str) -> Result<PlannerInputs, Error> {
    let names = |mount: &'static str| async move {
        let folder = format!("auth/{mount}/certs");
        match client.list(&folder).await {
            Ok(mut names) => {
                names.sort();
                Ok(names)
            }
            Err(e) if e.is_not_found() || e.is_unmounted() => Ok(Vec::new()),
            Err(source) => Err(Error::Bao {
                env: env.to_owned(),
                what: format!("list {folder}"),
                source,
            }),
        }
    };
    let mut operators = Vec::new();
    for name in names(OPERATOR_AUTH_MOUNT).await? {
        let path = format!("auth/{OPERATOR_AUTH_MOUNT}/certs/{name}");
        let data = match client.read(&path).await {
            Ok(secret) => secret.data.unwrap_or_default(),
            // Removed between the list and the read: not mirrored.
            Err(e) if e.is_not_found() => continue,
            Err(source) => {
                return Err(Error::Bao {
                    env: env.to_owned(),
                    what: format!("read {path}"),
                    source,
                });
            }
        };
        if let Some(op) = mirrored(name, &data) {
            operators.push(op);
        }
    }
    let stale = names(PLANNER_AUTH_MOUNT)
        .await?
        .into_iter()
        .filter(|n| !operators.iter().any(|o| &o.name == n))
        .collect();
    Ok(PlannerInputs { operators, stale })
}

/// The planner role operator role `data` gets, if any: only a role that attaches exactly the
/// operator policy (another role at the operators' mount is not an operator) and pins a name
/// (without one, any certificate from its CA would plan).
fn mirrored(name: String, data: &Value) -> Option<OperatorLogin> {
    let policies: Vec<&str> = data["token_policies"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if policies != [OPERATOR_POLICY] {
        return None;
    }
    let mut constraints = Map::new();
    for k in LIST_CONSTRAINTS {
        let v = match data.get(*k) {
            Some(Value::Array(a)) => Value::Array(a.clone()),
            // A one-element list is sometimes answered as a scalar.
            Some(Value::String(s)) if !s.is_empty() => json!([s]),
            _ => json!([]),
        };
        constraints.insert((*k).to_owned(), v);
    }
    for k in SWITCH_CONSTRAINTS {
        let on = data.get(*k).and_then(Value::as_bool).unwrap_or(false);
        constraints.insert((*k).to_owned(), json!(on));
    }
    for k in TEXT_CONSTRAINTS {
        if let Some(s) = data
            .get(*k)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
        {
            constraints.insert((*k).to_owned(), json!(s));
        }
    }
    let pins_a_name = ["allowed_common_names", "allowed_names"]
        .iter()
        .any(|k| constraints[*k].as_array().is_some_and(|a| !a.is_empty()));
    (constraints.contains_key("certificate") && pins_a_name)
        .then_some(OperatorLogin { name, constraints })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(extra: Value) -> Value {
        let mut v = json!({
            "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "allowed_common_names": ["alice.operator.t.internal"],
            "allowed_dns_sans": null,
            "allowed_organizational_units": null,
            "token_bound_cidrs": [],
            "ocsp_enabled": false,
            "token_policies": ["warden-operator"],
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    }

    #[test]
    fn every_constraint_of_the_operator_role_is_copied() {
        let op = mirrored(
            "alice".into(),
            &role(json!({
                "allowed_organizational_units": ["sre"],
                "token_bound_cidrs": ["10.0.0.0/8"],
            })),
        )
        .unwrap();
        let c = &op.constraints;
        assert_eq!(c["allowed_organizational_units"], json!(["sre"]));
        assert_eq!(c["token_bound_cidrs"], json!(["10.0.0.0/8"]));
        // Unset ones are written empty or off, so a constraint dropped later is dropped here.
        assert_eq!(c["allowed_dns_sans"], json!([]));
        assert_eq!(c["ocsp_enabled"], json!(false));
        assert!(c["certificate"].as_str().unwrap().contains("BEGIN"));
        assert!(!c.contains_key("ocsp_ca_certificates"));
        assert_eq!(
            c.len(),
            LIST_CONSTRAINTS.len() + SWITCH_CONSTRAINTS.len() + 1
        );
    }

    #[test]
    fn only_operator_roles_that_pin_a_name_are_mirrored() {
        assert!(mirrored("alice".into(), &role(json!({}))).is_some());
        let other_policy = role(json!({ "token_policies": ["warden-registry-reader"] }));
        assert!(mirrored("auditor".into(), &other_policy).is_none());
        let two = role(json!({ "token_policies": ["warden-operator", "extra"] }));
        assert!(mirrored("alice".into(), &two).is_none());
        let no_name = role(json!({ "allowed_common_names": [] }));
        assert!(mirrored("alice".into(), &no_name).is_none());
        let no_ca = role(json!({ "certificate": "" }));
        assert!(mirrored("alice".into(), &no_ca).is_none());
    }

    #[test]
    fn planner_role_paths() {
        assert!(is_role_path("auth/warden-planners/certs/alice"));
        assert!(!is_role_path("auth/warden-planners-x/certs/alice"));
        assert!(!is_role_path("auth/warden-operators/certs/alice"));
    }
}
