//! The lab's containers: what a runtime host does before it starts a container's agent
//! (ADR 0010). A container has no identity certificate; it logs in with AppRole and reaches
//! the mTLS-only listener through its host's transport certificate.
//!
//! ```text
//! <lab>/hosts/<env>/<holder>/transport/   the host's transport certificate (cert.pem, key.pem)
//! <lab>/hosts/<env>/<container>/          the container's agent, as for apps:
//!   agent.toml, approle/role-id, approle/secret-id (a single-use wrapping token), trust/, out/
//! ```
//!
//! Each start gets a fresh wrapped secret-id (the previous one was consumed and removed by the
//! agent) and a fresh transport certificate; the agent then renews the transport itself, with
//! its own token, through `<pki>/sign/transport-<holder>`.

use std::time::Duration;

use warden_bao::ExposeSecret as _;
use warden_enroll::transport::{self, TransportFiles};
use warden_enroll::{
    AgentConfig, AuthSection, ControlSection, ExecEnvSection, HealthSection, IdentityLayout,
    IdentitySection, OpenBaoSection, OutputSection, RenewalSection,
};
use warden_spec::{Environment, Spec, TransportHolder};

use super::{AgentsError, operator_client};
use warden_lab::Lab;

/// How long the wrapped secret-id waits for the agent to unwrap it.
const WRAP_TTL: Duration = Duration::from_secs(300);

/// The holder that carries container `name` in `env`, if any: a container no host carries
/// cannot reach the listener, so the lab does not start it.
pub(super) fn holder_of<'s>(spec: &'s Spec, env: &str, name: &str) -> Option<&'s TransportHolder> {
    spec.transport
        .iter()
        .find(|h| h.in_env(env) && h.carries.iter().any(|c| c.as_str() == name))
}

/// Where the lab keeps `holder`'s transport certificate for `env`.
pub fn transport_dir(lab: &Lab, env: &str, holder: &str) -> std::path::PathBuf {
    super::hosts_dir(lab)
        .join(env)
        .join(holder)
        .join("transport")
}

/// Issues `holder`'s transport certificate for `env` into [`transport_dir`].
pub(super) async fn issue_for(
    lab: &Lab,
    client: &warden_bao::Client,
    env: &Environment,
    holder: &TransportHolder,
) -> Result<TransportFiles, AgentsError> {
    let env_name = env.name.as_str();
    let fail = |what: String| {
        let env = env_name.to_owned();
        move |source: Box<dyn std::error::Error + Send + Sync>| AgentsError::Seed {
            env,
            what,
            source,
        }
    };
    let dir = transport_dir(lab, env_name, holder.name.as_str());
    let issued = transport::issue(client, env, holder, None)
        .await
        .map_err(|e| fail(format!("issue {}'s transport certificate", holder.name))(Box::new(e)))?;
    issued
        .write(&dir)
        .map_err(|e| fail(format!("write {}", dir.display()))(Box::new(e)))
}

/// Lays out container `name`'s directory: the host's transport certificate, the role-id, a
/// wrapped secret-id, the trust anchor and `agent.toml`.
pub(super) async fn prepare(
    lab: &Lab,
    spec: &Spec,
    env: &Environment,
    name: &str,
    layout: &IdentityLayout,
) -> Result<TransportFiles, AgentsError> {
    let env_name = env.name.as_str();
    let fail = |what: String| {
        let env = env_name.to_owned();
        move |source: Box<dyn std::error::Error + Send + Sync>| AgentsError::Seed {
            env,
            what,
            source,
        }
    };
    let id = spec
        .identity(name)
        .expect("targets come from the spec's containers");
    let holder = holder_of(spec, env_name, name).expect("targets have a holder");
    let client = operator_client(lab, env_name)?;

    // The host's transport certificate, issued to it and handed to the container.
    let files = issue_for(lab, &client, env, holder).await?;

    // The AppRole credentials, as an operator hands them over: the role-id, and the secret-id
    // behind a single-use wrapping token.
    let role = spec.naming.approle_role.render(&id.name);
    let mount = env.mounts.approle.trim_matches('/');
    let role_id_path = format!("auth/{mount}/role/{role}/role-id");
    let role_id = client
        .read(&role_id_path)
        .await
        .map_err(|e| fail(format!("read {role_id_path}"))(Box::new(e)))?
        .data
        .and_then(|d| d.get("role_id").and_then(|v| v.as_str()).map(str::to_owned))
        .ok_or_else(|| fail(format!("read {role_id_path}"))("no role_id in the answer".into()))?;
    let secret_id_path = format!("auth/{mount}/role/{role}/secret-id");
    let wrapped = client
        .write_wrapped(&secret_id_path, &serde_json::json!({}), WRAP_TTL)
        .await
        .map_err(|e| fail(format!("wrap a secret-id at {secret_id_path}"))(Box::new(e)))?;
    let approle = layout.dir().join("approle");
    let write = |path: std::path::PathBuf, bytes: &[u8], mode| {
        warden_files::write_atomic(&path, bytes, mode)
            .map_err(|e| fail(format!("write {}", path.display()))(Box::new(e)))
    };
    for d in [
        layout.dir().to_path_buf(),
        approle.clone(),
        layout.trust_dir(),
    ] {
        warden_files::ensure_private_dir(&d)
            .map_err(|e| fail(format!("create {}", d.display()))(Box::new(e)))?;
    }
    write(
        approle.join("role-id"),
        role_id.as_bytes(),
        warden_files::Mode::OwnerOnly,
    )?;
    write(
        approle.join("secret-id"),
        wrapped.token.expose_secret().as_bytes(),
        warden_files::Mode::OwnerOnly,
    )?;
    let ca = lab.layout().env(env_name).ca_bundle();
    let ca_pem = std::fs::read(&ca).map_err(|source| AgentsError::CaBundle {
        env: env_name.to_owned(),
        path: ca.clone(),
        source,
    })?;
    write(layout.ca_bundle(), &ca_pem, warden_files::Mode::Public)?;

    let config = agent_config(lab, spec, env, id, holder, &files)?;
    let path = layout.agent_config();
    let text = config
        .to_toml(&path)
        .map_err(|e| fail(format!("render {}", path.display()))(Box::new(e)))?;
    write(path, text.as_bytes(), warden_files::Mode::Public)?;
    Ok(files)
}

/// The container agent's `agent.toml`: AppRole with a wrapped secret-id, the host's transport
/// certificate (renewed through the holder's role), one template per declared secret.
fn agent_config(
    lab: &Lab,
    spec: &Spec,
    env: &Environment,
    id: &warden_spec::Identity,
    holder: &TransportHolder,
    files: &TransportFiles,
) -> Result<AgentConfig, AgentsError> {
    let env_name = env.name.as_str();
    let addresses = lab
        .env(env_name)
        .map_err(|source| AgentsError::Client {
            env: env_name.to_owned(),
            source: Box::new(source),
        })?
        .addresses();
    let pki = env.mounts.pki.trim_matches('/').to_owned();
    // A secret whose purpose says `delivery = "exec_env"` is no file: `warden-agent exec`
    // puts it into the container's command's environment.
    let exec_env: Vec<ExecEnvSection> = id
        .secrets
        .iter()
        .filter_map(|secret| ExecEnvSection::for_secret(spec, env, &id.name, secret))
        .collect();
    let outputs = id
        .secrets
        .iter()
        .filter(|secret| ExecEnvSection::for_secret(spec, env, &id.name, secret).is_none())
        .map(|secret| {
            let at = warden_spec::naming::secret(&spec.naming, &env.mounts, &id.name, secret);
            OutputSection {
                name: format!("secret-{secret}"),
                kind: "template".to_owned(),
                contents: Some(format!(
                    "{{{{ kv(\"{}\", \"{}\") | tojson }}}}\n",
                    at.mount, at.path
                )),
                path: Some(format!("out/secrets/{secret}.json")),
                mode: Some("0600".to_owned()),
                ..OutputSection::default()
            }
        })
        .collect();
    Ok(AgentConfig {
        version: AgentConfig::VERSION,
        identity: IdentitySection {
            name: id.name.to_string(),
            kind: id.kind.as_str().to_owned(),
            env: env_name.to_owned(),
            common_name: warden_spec::naming::identity_common_name(id, env),
        },
        openbao: OpenBaoSection::new(&addresses, "trust/ca.pem"),
        auth: AuthSection {
            method: "approle".to_owned(),
            mount: env.mounts.approle.trim_matches('/').to_owned(),
            policy: warden_spec::naming::policy_name(spec, id),
            role_id_file: Some("approle/role-id".to_owned()),
            secret_id_file: Some("approle/secret-id".to_owned()),
            secret_id_wrapped: Some(true),
            cert_file: Some(files.cert.display().to_string()),
            key_file: Some(files.key.display().to_string()),
            pki_mount: Some(pki),
            identity_role: Some(warden_spec::naming::transport_role(&holder.name)),
            ..AuthSection::default()
        },
        renewal: RenewalSection::default(),
        outputs,
        databases: Vec::new(),
        exec_env,
        exec: None,
        health: Some(HealthSection {
            listen: "127.0.0.1:0".to_owned(),
        }),
        control: Some(ControlSection {
            socket: "state/control.sock".to_owned(),
        }),
    })
}
