//! The live environment-isolation check `warden lint` and `warden posture` share (ADR 0013):
//! each chosen environment's PKI intermediate, read from its server, judged against the names
//! every environment of the spec issues (`warden_spec::naming::environment_names`). The verdict
//! is `warden_pki::check_isolation`'s; this module only reads.

use anyhow::Context as _;
use warden_pki::{EnvChain, IsolationFinding};

use crate::context::Resolved;

/// The findings about the chosen environments. An environment of the spec that was not chosen
/// is taken to be constrained to its own names (it is not read), so it can only be the victim
/// in a finding, never its subject.
pub(crate) async fn live_findings(resolved: &Resolved) -> anyhow::Result<Vec<IsolationFinding>> {
    let spec = &resolved.spec;
    let mut envs = Vec::new();
    for env in &spec.environments {
        let names = warden_spec::naming::environment_names(spec, env);
        let chosen = resolved.envs.iter().any(|e| e.name == env.name);
        let permitted_dns = if chosen {
            let name = env.name.as_str();
            let client = resolved.client(env)?;
            let pem = client
                .pki_ca_cert(&env.mounts.pki)
                .await
                .with_context(|| format!("{name}: read the {} intermediate", env.mounts.pki))?;
            if pem.trim().is_empty() {
                // No intermediate yet: nothing it could issue.
                continue;
            }
            let cert = warden_pki::parse_pem_bundle(&pem)
                .with_context(|| {
                    format!(
                        "{name}: the {} intermediate is not a PEM certificate",
                        env.mounts.pki
                    )
                })?
                .into_iter()
                .next()
                .with_context(|| {
                    format!(
                        "{name}: the {} mount returned no certificate",
                        env.mounts.pki
                    )
                })?;
            cert.permitted_dns
        } else {
            names.clone()
        };
        envs.push(EnvChain {
            env: env.name.to_string(),
            names,
            permitted_dns,
        });
    }
    let chosen = |e: &str| resolved.envs.iter().any(|x| x.name.as_str() == e);
    Ok(warden_pki::check_isolation(&envs)
        .into_iter()
        .filter(|f| match f {
            IsolationFinding::SharedName { envs, .. } => envs.iter().any(|e| chosen(e)),
            other => chosen(other.env()),
        })
        .collect())
}
