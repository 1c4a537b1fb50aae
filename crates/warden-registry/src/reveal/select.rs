//! Which credential a `reveal create PURPOSE` mints: the purpose must exist and be
//! `reveal_once`, and exactly one credential it covers in the environment must remain after
//! `--identity` / `--credential`. Pure.

use warden_spec::{Credential, CredentialKind, Delivery, Purpose, Spec};

use super::error::RevealError;
use super::record::RevealKind;

/// The purpose and the one credential to mint.
#[derive(Debug, Clone)]
pub struct Selected<'s> {
    /// The governing purpose.
    pub purpose: &'s Purpose,
    /// The credential.
    pub credential: Credential,
    /// What will be wrapped.
    pub kind: RevealKind,
}

/// The reveal-once purpose `purpose` (any environment).
pub fn reveal_purpose<'s>(spec: &'s Spec, purpose: &str) -> Result<&'s Purpose, RevealError> {
    let Some(p) = spec.purpose(purpose) else {
        return Err(RevealError::UnknownPurpose {
            purpose: purpose.to_owned(),
            suggestion: warden_spec::suggest(purpose, spec.purposes.iter().map(|p| p.id.as_str()))
                .map(str::to_owned),
        });
    };
    if p.delivery != Delivery::RevealOnce {
        return Err(RevealError::NotRevealOnce {
            purpose: purpose.to_owned(),
            delivery: p.delivery.as_str(),
        });
    }
    Ok(p)
}

/// The credentials `purpose` covers in `env`, in spec order.
pub fn covered_in(spec: &Spec, purpose: &Purpose, env: &str) -> Vec<Credential> {
    spec.credentials()
        .into_iter()
        .filter(|c| c.environments.iter().any(|e| e.as_str() == env) && purpose.covers(&c.id))
        .collect()
}

/// Picks the credential to mint. `identity` keeps the credentials of that identity,
/// `credential` the one with that exact reference.
pub fn select<'s>(
    spec: &'s Spec,
    env: &str,
    purpose: &str,
    identity: Option<&str>,
    credential: Option<&str>,
) -> Result<Selected<'s>, RevealError> {
    let p = reveal_purpose(spec, purpose)?;
    let all = covered_in(spec, p, env);
    if all.is_empty() {
        return Err(RevealError::NothingInEnv {
            purpose: purpose.to_owned(),
            env: env.to_owned(),
        });
    }
    let ids = || all.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    let left: Vec<&Credential> = all
        .iter()
        .filter(|c| identity.is_none_or(|i| c.identity.as_str() == i))
        .filter(|c| credential.is_none_or(|want| c.id == want))
        .collect();
    let chosen = match left.as_slice() {
        [one] => (*one).clone(),
        [] => {
            let wanted = match (identity, credential) {
                (Some(i), Some(c)) => format!("{c} of identity {i}"),
                (Some(i), None) => format!("of identity {i}"),
                (None, Some(c)) => c.to_owned(),
                (None, None) => unreachable!("`all` is not empty"),
            };
            return Err(RevealError::NoSuchCredential {
                purpose: purpose.to_owned(),
                wanted,
                candidates: ids(),
            });
        }
        _ => {
            return Err(RevealError::Ambiguous {
                purpose: purpose.to_owned(),
                candidates: left.iter().map(|c| c.id.clone()).collect(),
            });
        }
    };
    let kind = match chosen.kind {
        CredentialKind::SecretId => RevealKind::SecretId,
        CredentialKind::Secret(_) => RevealKind::Secret,
        _ => {
            return Err(RevealError::UnsupportedKind {
                credential: chosen.id,
            });
        }
    };
    Ok(Selected {
        purpose: p,
        credential: chosen,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
version = 1
[environments.test]
domain = "test.example"
runtime_owner = "w"
app_root = "/srv/w"

[containers.worker]
environments = ["test"]
secrets = ["config"]

[containers.batch]
environments = ["test"]
secrets = ["seed"]

[purposes.bootstrap]
description = "secret-ids"
owner = "platform"
tier = "ephemeral"
delivery = "reveal_once"
rotation = { interval = "1h", grace = "15m" }
evidence = "EV-BOOT"
covers = ["*/secret-id"]

[purposes.seed]
description = "a seed handed to a human once"
owner = "platform"
tier = "vault_kv"
delivery = "reveal_once"
rotation = { interval = "30d", grace = "7d" }
evidence = "EV-SEED"
covers = ["batch/secret/seed"]

[purposes.config]
description = "config"
owner = "platform"
tier = "vault_kv"
delivery = "agent_file"
rotation = { interval = "30d", grace = "7d" }
evidence = "EV-CONFIG"
covers = ["worker/secret/config"]
"#;

    fn spec() -> Spec {
        warden_spec::parse(SPEC, "test.toml").expect("spec")
    }

    #[test]
    fn one_credential_is_chosen_by_identity_or_reference() {
        let s = spec();
        let e = select(&s, "test", "bootstrap", None, None).expect_err("two secret-ids");
        assert!(
            matches!(&e, RevealError::Ambiguous { candidates, .. } if candidates.len() == 2),
            "{e}"
        );
        let w = select(&s, "test", "bootstrap", Some("worker"), None).expect("worker");
        assert_eq!(w.credential.id, "worker/secret-id");
        assert_eq!(w.kind, RevealKind::SecretId);
        let b = select(&s, "test", "bootstrap", None, Some("batch/secret-id")).expect("batch");
        assert_eq!(b.credential.identity.as_str(), "batch");
        let seed = select(&s, "test", "seed", None, None).expect("only one");
        assert_eq!(seed.kind, RevealKind::Secret);
    }

    #[test]
    fn wrong_purpose_delivery_identity_or_env_is_named() {
        let s = spec();
        let e = select(&s, "test", "bootstrp", None, None).expect_err("typo");
        assert!(e.to_string().contains("did you mean `bootstrap`"), "{e}");
        let e = select(&s, "test", "config", None, None).expect_err("agent_file");
        assert!(matches!(e, RevealError::NotRevealOnce { .. }), "{e}");
        let e = select(&s, "test", "bootstrap", Some("nobody"), None).expect_err("no id");
        assert!(
            matches!(&e, RevealError::NoSuchCredential { candidates, .. } if candidates.len() == 2),
            "{e}"
        );
        let e = select(&s, "prod", "bootstrap", None, None).expect_err("no env");
        assert!(matches!(e, RevealError::NothingInEnv { .. }), "{e}");
    }
}
