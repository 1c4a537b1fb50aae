//! Which signing keys a `warden rotate` names, read from the spec only: by purpose (every
//! `<app>/signing-key/<name>` its `covers` match) or by `--app/--key`. A revoked purpose, or a
//! key no purpose governs, is refused here, before any server is contacted.

use anyhow::anyhow;
use warden_spec::{CredentialKind, Identity, Purpose, SigningKey, Spec};

use crate::hint::HintExt;

/// One signing key of one app.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyRef<'s> {
    pub(crate) app: &'s Identity,
    pub(crate) key: &'s SigningKey,
    pub(crate) purpose: &'s Purpose,
}

impl KeyRef<'_> {
    /// The credential reference: `<app>/signing-key/<name>`.
    pub(crate) fn credential(&self) -> String {
        credential(self.app.name.as_str(), self.key.name.as_str())
    }
}

fn credential(app: &str, key: &str) -> String {
    format!("{app}/signing-key/{key}")
}

/// Every signing key purpose `id` governs.
pub(crate) fn by_purpose<'s>(spec: &'s Spec, id: &str) -> anyhow::Result<Vec<KeyRef<'s>>> {
    let Some(purpose) = spec.purpose(id) else {
        let known: Vec<&str> = spec.purposes.iter().map(|p| p.id.as_str()).collect();
        return Err(anyhow!("the spec has no purpose `{id}`")).with_hint(|| {
            match warden_spec::suggest(id, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None if known.is_empty() => {
                    "declare one under [purposes.NAME] with `covers = [\"APP/signing-key/NAME\"]`"
                        .to_owned()
                }
                None => format!("purposes in the spec: {}", known.join(", ")),
            }
        });
    };
    if purpose.revoked {
        return Err(crate::hint::revoked_purpose(
            purpose.id.as_str(),
            "its signing keys are not rotated and each",
        ));
    }
    let mut out = Vec::new();
    for c in spec.credentials() {
        let CredentialKind::SigningKey(name) = &c.kind else {
            continue;
        };
        if !purpose.covers(&c.id) {
            continue;
        }
        let app = spec
            .identity(c.identity.as_str())
            .ok_or_else(|| anyhow!("credential {} names an unknown identity", c.id))?;
        let key = app
            .signing_keys
            .iter()
            .find(|k| k.name.as_str() == name)
            .ok_or_else(|| anyhow!("credential {} names an unknown key", c.id))?;
        out.push(KeyRef { app, key, purpose });
    }
    if out.is_empty() {
        return Err(anyhow!(
            "purpose `{id}` governs no signing key (it covers {})",
            purpose.covers.join(", ")
        ))
        .hint("signing keys are referenced as APP/signing-key/NAME; or name one key with --app APP --key NAME");
    }
    Ok(out)
}

/// One key by app and name, with the purpose that governs it (refused when revoked or
/// missing).
pub(crate) fn by_name<'s>(spec: &'s Spec, app: &str, key: &str) -> anyhow::Result<KeyRef<'s>> {
    let (identity, k) = lookup(spec, app, key)?;
    let id = credential(app, key);
    let Some(purpose) = spec.purpose_of(&id) else {
        return Err(anyhow!("`{id}` is governed by no purpose")).with_hint(|| {
            format!("every credential lives under a purpose: add \"{id}\" to the `covers` of one in the spec")
        });
    };
    if purpose.revoked {
        return Err(crate::hint::revoked_purpose(
            purpose.id.as_str(),
            &format!("`{id}`"),
        ));
    }
    Ok(KeyRef {
        app: identity,
        key: k,
        purpose,
    })
}

/// One key by app and name (reading needs no purpose check).
pub(crate) fn lookup<'s>(
    spec: &'s Spec,
    app: &str,
    key: &str,
) -> anyhow::Result<(&'s Identity, &'s SigningKey)> {
    let Some(identity) = spec.identity(app) else {
        let known: Vec<&str> = spec
            .identities
            .iter()
            .filter(|i| !i.signing_keys.is_empty())
            .map(|i| i.name.as_str())
            .collect();
        return Err(anyhow!("the spec has no app `{app}`")).with_hint(
            || match warden_spec::suggest(app, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("apps with signing keys: {}", list(&known)),
            },
        );
    };
    let Some(k) = identity
        .signing_keys
        .iter()
        .find(|k| k.name.as_str() == key)
    else {
        let known: Vec<&str> = identity
            .signing_keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        return Err(anyhow!("app `{app}` has no signing key `{key}`")).with_hint(|| {
            match warden_spec::suggest(key, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "its signing keys: {} (declared as `signing_keys = [{{ name = \"…\" }}]` under [apps.{app}])",
                    list(&known)
                ),
            }
        });
    };
    Ok((identity, k))
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
version = 1
[environments.test]
domain = "test.example"

[apps.billing]
environments = ["test"]
signing_keys = [{ name = "jwt" }, { name = "webhook", algorithm = "eddsa" }]

[apps.ledger]
environments = ["test"]
signing_keys = [{ name = "jwt" }]

[purposes.ids]
description = "identities"
owner = "platform"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "20d" }
evidence = "EV-ID"
covers = ["*/identity-cert"]

[purposes.tokens]
description = "session tokens"
owner = "platform"
tier = "vault_kv"
delivery = "api"
rotation = { interval = "90d" }
evidence = "EV-T"
covers = ["*/signing-key/jwt"]

[purposes.hooks]
description = "webhooks"
owner = "billing"
tier = "vault_kv"
delivery = "api"
rotation = { interval = "90d" }
evidence = "EV-H"
covers = ["billing/signing-key/webhook"]
revoked = true
"#;

    fn spec() -> Spec {
        warden_spec::parse(SPEC, "warden.toml").expect("spec")
    }

    fn err_text(e: &anyhow::Error) -> String {
        format!(
            "{e:#} / hint: {}",
            e.downcast_ref::<crate::hint::Hint>().map_or("", |h| &h.0)
        )
    }

    #[test]
    fn a_purpose_selects_every_key_it_covers() {
        let spec = spec();
        let keys = by_purpose(&spec, "tokens").expect("select");
        let ids: Vec<String> = keys.iter().map(KeyRef::credential).collect();
        assert_eq!(ids, ["billing/signing-key/jwt", "ledger/signing-key/jwt"]);
    }

    #[test]
    fn revoked_unknown_and_keyless_purposes_are_refused() {
        let spec = spec();
        let e = err_text(&by_purpose(&spec, "hooks").unwrap_err());
        assert!(e.contains("purpose `hooks` is revoked"), "{e}");
        assert!(e.contains("revoked = true"), "{e}");
        let e = err_text(&by_purpose(&spec, "token").unwrap_err());
        assert!(
            e.contains("no purpose `token`") && e.contains("did you mean `tokens`"),
            "{e}"
        );
        let e = err_text(&by_purpose(&spec, "ids").unwrap_err());
        assert!(e.contains("governs no signing key"), "{e}");
    }

    #[test]
    fn one_key_by_name_checks_its_purpose() {
        let spec = spec();
        let k = by_name(&spec, "ledger", "jwt").expect("ledger/jwt");
        assert_eq!(k.purpose.id.as_str(), "tokens");
        let e = err_text(&by_name(&spec, "billing", "webhook").unwrap_err());
        assert!(
            e.contains("`billing/signing-key/webhook`") && e.contains("revoked"),
            "{e}"
        );
        let e = err_text(&by_name(&spec, "biling", "jwt").unwrap_err());
        assert!(e.contains("did you mean `billing`"), "{e}");
        let e = err_text(&by_name(&spec, "billing", "jtw").unwrap_err());
        assert!(e.contains("did you mean `jwt`"), "{e}");
    }
}
