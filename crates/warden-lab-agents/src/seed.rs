//! What `lab up` writes into OpenBao so the lab's agents have something to deliver and the
//! lab's posture starts from issued credentials: a placeholder for every declared secret that
//! does not exist, the first version of every signing key, and every domain certificate that is
//! missing or due. Idempotent; nothing that exists is overwritten.

use std::sync::Arc;

use warden_spec::{Environment, IdentityKind, Spec};

use super::{AgentsError, operator_client};
use warden_lab::Lab;

/// Seeds environment `env` of `spec`. Returns what was written, one line each.
pub(super) async fn seed(
    lab: &Lab,
    spec: &Spec,
    env: &Environment,
) -> Result<Vec<String>, AgentsError> {
    let client = operator_client(lab, env.name.as_str())?;
    let mut seeded = seed_secrets(spec, env, &client).await?;
    seeded.extend(seed_keys_and_domains(spec, env, &client).await?);
    Ok(seeded)
}

fn seed_error(
    env: &Environment,
    what: String,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> AgentsError {
    let env = env.name.to_string();
    move |source| AgentsError::Seed { env, what, source }
}

/// Writes a placeholder into every secret an app of `env` declares and that does not exist.
/// Returns the KV paths written.
async fn seed_secrets(
    spec: &Spec,
    env: &Environment,
    client: &warden_bao::Client,
) -> Result<Vec<String>, AgentsError> {
    let mut seeded = Vec::new();
    let apps = spec.identities.iter().filter(|i| {
        matches!(i.kind, IdentityKind::App | IdentityKind::Container) && i.in_env(env.name.as_str())
    });
    for app in apps {
        for secret in &app.secrets {
            let entry = warden_spec::naming::secret(&spec.naming, &env.mounts, &app.name, secret);
            let path = entry.data_path();
            match client.read(&path).await {
                Ok(_) => continue,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(seed_error(env, format!("read {path}"))(Box::new(e))),
            }
            let body = serde_json::json!({
                "options": { "cas": 0 },
                "data": {
                    "lab_placeholder": entry.path,
                    "note": "seeded by `warden lab up`; replace it with `bao kv put`",
                },
            });
            match client.write(&path, &body, warden_bao::Idempotent::No).await {
                Ok(_) => seeded.push(format!("{entry} (a lab placeholder value)")),
                // check-and-set 0 lost a race: someone wrote it meanwhile, which is the point.
                Err(e) if e.status() == Some(400) => {}
                Err(e) => return Err(seed_error(env, format!("seed {path}"))(Box::new(e))),
            }
        }
    }
    Ok(seeded)
}

/// The first version of every signing key and domain certificate the spec declares here, so
/// the lab's posture starts from issued credentials rather than `unknown`. Idempotent: an
/// existing key is left alone and a stored certificate is renewed only when due.
async fn seed_keys_and_domains(
    spec: &Spec,
    env: &Environment,
    client: &warden_bao::Client,
) -> Result<Vec<String>, AgentsError> {
    let mut seeded = Vec::new();
    for app in spec.identities_in(env.name.as_str()) {
        for key in &app.signing_keys {
            let config = warden_keys::SigningKeyConfig::from_spec(spec, env, &app.name, key);
            let current = warden_keys::current_version(client, &config.location)
                .await
                .map_err(|e| seed_error(env, format!("read {}", config.location))(Box::new(e)))?;
            if current == 0 {
                warden_keys::rotate_if_current(client, &config, &warden_keys::SystemClock, 0)
                    .await
                    .map_err(|e| {
                        seed_error(env, format!("create {}", config.location))(Box::new(e))
                    })?;
                seeded.push(format!("{} (first key version)", config.location));
            }
        }
    }
    let store = warden_keys::DomainStore::new(
        client.clone(),
        env.mounts.kv.as_str(),
        Arc::new(warden_keys::SystemClock),
    );
    let issuer = warden_keys::Issuer::from(warden_keys::PkiIssuer::new(
        client.clone(),
        env.mounts.pki.as_str(),
    ));
    for d in spec
        .domains
        .iter()
        .filter(|d| d.environments.contains(&env.name))
    {
        if matches!(d.issuer, warden_spec::DomainIssuer::Acme(_)) {
            // ACME needs the name to resolve to where Warden answers the challenge, which a
            // lab cannot promise: `warden domain renew` (or serve) obtains it (ADR 0031).
            seeded.push(format!(
                "{}: issuer acme, not seeded (`warden domain renew` obtains it)",
                d.domain
            ));
            continue;
        }
        let r = store.renew_if_due(d, &issuer, false).await.map_err(|e| {
            seed_error(env, format!("issue the certificate of {}", d.domain))(Box::new(e))
        })?;
        if r.renewed {
            seeded.push(format!(
                "{}/{} (issued by the environment's PKI)",
                env.mounts.kv,
                d.kv_path()
            ));
        }
    }
    Ok(seeded)
}
