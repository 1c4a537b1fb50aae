//! Enrollment: giving an app or proxy its mTLS identity on a host.
//!
//! 1. Check the identity: it must be in the spec, be an app or a proxy (containers use AppRole,
//!    pipelines JWT) and live in the environment. Nothing is contacted before this passes.
//! 2. Resolve the owner (creating the service user when asked to).
//! 3. Decide whether the certificate on disk can stay ([`crate::IssueReason`] says why not).
//! 4. If not: generate an EC P-256 key *here*, build a CSR for the pinned common name, and have
//!    OpenBao sign it at `<pki>/sign/<identity role>`. Only the CSR crosses the network.
//! 5. Verify *before publishing*: log in over mTLS with the certificate at
//!    `auth/<cert mount>/login` (role `<cert role>`), check the token carries exactly the
//!    identity's policy (no `default`), and revoke that test token. A certificate that cannot
//!    log in never replaces a working one.
//! 6. Publish: directories 0700, `client.key` 0600 then `client.crt` 0644, `trust/ca.pem`,
//!    `agent.toml`; chown the tree to the service user when there is one.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use warden_bao::{Client, ClientConfig, ClientIdentity, Idempotent};
use warden_files::Mode;
use warden_pki::{CertInfo, KeyAlgorithm};
use warden_spec::{Environment, Identity, IdentityKind, Spec};
use zeroize::Zeroizing;

use crate::agent_config::{
    AgentConfig, AuthSection, ControlSection, DatabaseSection, ExecEnvSection, HealthSection,
    IdentitySection, OpenBaoSection, OutputSection, RenewalSection,
};
use crate::error::{Error, Result};
use crate::existing::{self, Decision, IssueReason};
use crate::layout::IdentityLayout;
use crate::unix_user::{self, Owner, OwnerReport};

/// What to enroll, where.
#[derive(Debug, Clone, Copy)]
pub struct EnrollRequest<'a> {
    /// The validated spec.
    pub spec: &'a Spec,
    /// The environment the identity is enrolled in.
    pub env: &'a Environment,
    /// The identity's name.
    pub identity: &'a str,
    /// PEM trust anchor for the environment's OpenBao API (becomes `trust/ca.pem`).
    pub trust_anchor_pem: &'a str,
    /// Where the files go.
    pub layout: &'a IdentityLayout,
}

/// How to enroll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollOptions {
    /// Re-issue even when the certificate on disk is still good.
    pub force: bool,
    /// Who owns the files.
    pub owner: Owner,
}

/// Whether a certificate was issued during this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertAction {
    /// A new key and certificate were made and written.
    Issued,
    /// The certificate on disk was kept (and verified).
    Kept,
}

/// The outcome of [`enroll`]. Holds no secret.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollReport {
    /// The identity.
    pub identity: String,
    /// `app` or `proxy`.
    pub kind: &'static str,
    /// The environment.
    pub env: String,
    /// Issued or kept.
    pub action: CertAction,
    /// Why a certificate was issued (absent when kept).
    pub reason: Option<IssueReason>,
    /// The certificate now in place.
    pub certificate: CertificateReport,
    /// Where everything is.
    pub paths: PathsReport,
    /// Who owns it.
    pub owner: OwnerReport,
    /// The login check.
    pub verification: Verification,
}

/// The facts of the identity certificate in place.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateReport {
    /// The pinned common name.
    pub common_name: String,
    /// Serial number, colon-separated hex as OpenBao prints it.
    pub serial: String,
    /// Issuer DN.
    pub issuer: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of the leaf's DER, hex.
    pub sha256: String,
}

/// The files of the layout.
#[derive(Debug, Clone, Serialize)]
pub struct PathsReport {
    /// The identity directory.
    pub dir: PathBuf,
    /// `identity/client.key`.
    pub client_key: PathBuf,
    /// `identity/client.crt`.
    pub client_cert: PathBuf,
    /// `trust/ca.pem`.
    pub ca_bundle: PathBuf,
    /// `out/`.
    pub out_dir: PathBuf,
    /// `state/`.
    pub state_dir: PathBuf,
    /// `agent.toml`.
    pub agent_config: PathBuf,
}

/// What the verification login showed.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Cert auth mount.
    pub auth_mount: String,
    /// Cert auth role logged in as.
    pub cert_role: String,
    /// The token's policies (exactly the identity's policy, or enroll fails).
    pub policies: Vec<String>,
    /// Whether the test token was revoked again. `false` is harmless (it expires with its
    /// TTL) but worth a warning.
    pub test_token_revoked: bool,
    /// Who revoked it: `token` (revoke-self) or `operator` (by accessor, when the identity's
    /// policy does not grant `auth/token/revoke-self`).
    pub revoked_by: Option<&'static str>,
}

/// The identity called `name`, if it may be enrolled on a host in `env`. Pure: call it before
/// contacting anything.
pub fn enrollable<'s>(spec: &'s Spec, env: &Environment, name: &str) -> Result<&'s Identity> {
    let Some(id) = spec.identity(name) else {
        let suggestion =
            warden_spec::suggest(name, spec.identities.iter().map(|i| i.name.as_str()))
                .map(str::to_owned);
        return Err(Error::UnknownIdentity {
            name: name.to_owned(),
            suggestion,
        });
    };
    let auth = match id.kind {
        IdentityKind::App | IdentityKind::Proxy => None,
        IdentityKind::Container => Some("AppRole (a role-id plus a wrapped secret-id)"),
        IdentityKind::Pipeline => Some("JWT (the CI system's OIDC token)"),
    };
    if let Some(auth) = auth {
        return Err(Error::NotEnrollable {
            name: name.to_owned(),
            kind: id.kind.as_str(),
            auth,
        });
    }
    if !id.in_env(env.name.as_str()) {
        return Err(Error::NotInEnvironment {
            name: name.to_owned(),
            env: env.name.to_string(),
            environments: id.environments.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(id)
}

/// Names derived for one identity in one environment.
struct Names {
    env: String,
    common_name: String,
    policy: String,
    sign_path: String,
    cert_mount: String,
    cert_role: String,
    pki_mount: String,
    identity_role: String,
}

impl Names {
    fn new(spec: &Spec, env: &Environment, id: &Identity) -> Self {
        Self {
            env: env.name.to_string(),
            common_name: warden_spec::naming::identity_common_name(id, env),
            policy: warden_spec::naming::policy_name(spec, id),
            sign_path: format!(
                "{}/sign/{}",
                env.mounts.pki.trim_matches('/'),
                spec.naming.identity_role.render(&id.name)
            ),
            cert_mount: env.mounts.cert_auth.trim_matches('/').to_owned(),
            cert_role: spec.naming.cert_role.render(&id.name),
            pki_mount: env.mounts.pki.trim_matches('/').to_owned(),
            identity_role: spec.naming.identity_role.render(&id.name),
        }
    }
}

/// Certificate material about to be (or already) in place.
struct Material {
    chain_pem: String,
    /// `Some` for a freshly generated key (to be written); `None` when kept on disk.
    new_key_pem: Option<Zeroizing<String>>,
    identity: ClientIdentity,
}

/// Enrolls `req.identity` on this host using `operator` (a client allowed to sign with the
/// identity's PKI role and to read the PKI mount's CA). See the module documentation for the
/// steps and their order.
pub async fn enroll(
    operator: &Client,
    req: &EnrollRequest<'_>,
    options: &EnrollOptions,
) -> Result<EnrollReport> {
    let id = enrollable(req.spec, req.env, req.identity)?;
    let names = Names::new(req.spec, req.env, id);
    warden_pki::parse_pem_bundle(req.trust_anchor_pem).map_err(|source| Error::BadTrustAnchor {
        source: Box::new(source),
    })?;
    let owner = unix_user::resolve(&options.owner).await?;
    let layout = req.layout;

    let decision = if options.force {
        Decision::Issue(IssueReason::Forced)
    } else {
        judge_existing(operator, req.env, layout, &names.common_name).await?
    };
    tracing::info!(identity = req.identity, env = %names.env, decision = %decision, "enrollment decision");
    let material = match decision {
        Decision::Keep => {
            let chain_pem = read_to_string(&layout.client_cert())?;
            let identity = ClientIdentity::from_files(&layout.client_cert(), &layout.client_key())
                .map_err(|source| Error::ClientIdentity {
                    what: format!(
                        "the existing certificate in {}",
                        layout.client_cert().display()
                    ),
                    source: Box::new(source),
                })?;
            Material {
                chain_pem,
                new_key_pem: None,
                identity,
            }
        }
        Decision::Issue(_) => issue(operator, &names).await?,
    };

    let verification = verify(operator, req.trust_anchor_pem, &material.identity, &names).await?;

    publish(layout, &material, req.trust_anchor_pem)?;
    // Every node the operator's client knows (the spec's nodes, or the lab's), in its order.
    let addresses: Vec<&str> = operator
        .addresses()
        .into_iter()
        .map(|u| u.as_str())
        .collect();
    let config = agent_config(req.spec, req.env, id, &names, &addresses);
    let agent_toml = layout.agent_config();
    warden_files::write_atomic(
        &agent_toml,
        config.to_toml(&agent_toml)?.as_bytes(),
        Mode::Public,
    )?;
    if let Some((uid, gid)) = owner.chown_to {
        unix_user::chown_tree(layout.dir(), uid, gid)?;
    }

    let leaf = leaf_info(&material.chain_pem, &names.sign_path)?;
    Ok(EnrollReport {
        identity: id.name.to_string(),
        kind: id.kind.as_str(),
        env: names.env.clone(),
        action: match decision {
            Decision::Keep => CertAction::Kept,
            Decision::Issue(_) => CertAction::Issued,
        },
        reason: match decision {
            Decision::Keep => None,
            Decision::Issue(r) => Some(r),
        },
        certificate: CertificateReport {
            common_name: names.common_name.clone(),
            serial: colon_serial(&leaf.serial),
            issuer: leaf.issuer,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            sha256: leaf.sha256,
        },
        paths: PathsReport {
            dir: absolute(layout.dir()),
            client_key: absolute(&layout.client_key()),
            client_cert: absolute(&layout.client_cert()),
            ca_bundle: absolute(&layout.ca_bundle()),
            out_dir: absolute(&layout.out_dir()),
            state_dir: absolute(&layout.state_dir()),
            agent_config: absolute(&agent_toml),
        },
        owner: owner.report,
        verification,
    })
}

/// The agent's configuration for `id` (schema in `docs/agent.md`). Paths are relative to the
/// identity directory, so the directory can be moved as a whole.
///
/// Outputs follow from the spec: an identity with a certificate profile gets a `certificate`
/// output into `out/tls`; an app gets one `template` output per declared secret, rendering
/// `kv("<kv mount>", "<prefix>/<secret>")` as JSON into `out/secrets/<secret>.json` — or, when
/// the secret's purpose says `delivery = "exec_env"`, no file but an `[[exec_env]]` entry for
/// `warden-agent exec` ([`ExecEnvSection::for_secret`]); a proxy
/// gets its environment's CA chain (intermediate + root) in `out/ca/chain.pem`. An app with a
/// database gets a `[[database]]` source named after it reading `<db mount>/creds/<db role>`
/// and a `template` output `database-<db>` rendering `database("<db>") | tojson` (username,
/// password, expires) into `out/database/<db>.json` (0600). An app's signing key whose purpose
/// delivers it as files (`delivery = "agent_file"`) gets a `signing_key` output
/// `signing-<key>` into `out/signing/<key>` (private key, public keys in grace, JWKS,
/// metadata); one delivered through the API (`delivery = "api"`) is read by the service
/// itself and gets none. The identity's reload command, if any, is attached to every output.
fn agent_config(
    spec: &Spec,
    env: &Environment,
    id: &Identity,
    names: &Names,
    addresses: &[&str],
) -> AgentConfig {
    let reload = id.reload.clone();
    let mut outputs = Vec::new();
    let mut databases = Vec::new();
    let mut exec_env = Vec::new();
    if let Some(cert) = &id.certificate {
        let ttl = warden_spec::format_duration(cert.ttl.0);
        let key_type = match cert.key_type {
            warden_spec::KeyType::EcP256 => "ec-p256",
            warden_spec::KeyType::EcP384 => "ec-p384",
            warden_spec::KeyType::Rsa2048 => "rsa-2048",
            warden_spec::KeyType::Rsa3072 => "rsa-3072",
            warden_spec::KeyType::Ed25519 => "ed25519",
        };
        outputs.push(OutputSection {
            name: "tls".to_owned(),
            kind: "certificate".to_owned(),
            pki_mount: Some(names.pki_mount.clone()),
            role: Some(spec.naming.pki_role.render(&id.name)),
            common_name: Some(warden_spec::CertProfile::render(
                &cert.common_name,
                &id.name,
                env,
            )),
            sans: cert
                .sans
                .iter()
                .map(|s| warden_spec::CertProfile::render(s, &id.name, env))
                .collect(),
            ttl: Some(ttl),
            key_type: Some(key_type.to_owned()),
            dir: Some("out/tls".to_owned()),
            purpose: spec
                .purpose_of(&format!("{}/certificate", id.name))
                .map(|p| p.id.to_string()),
            reload: reload.clone(),
            ..OutputSection::default()
        });
    }
    match id.kind {
        IdentityKind::App => {
            for secret in &id.secrets {
                if let Some(e) = ExecEnvSection::for_secret(spec, env, &id.name, secret) {
                    exec_env.push(e);
                    continue;
                }
                let at = warden_spec::naming::secret(&spec.naming, &env.mounts, &id.name, secret);
                outputs.push(OutputSection {
                    name: format!("secret-{secret}"),
                    kind: "template".to_owned(),
                    contents: Some(format!(
                        "{{{{ kv(\"{}\", \"{}\") | tojson }}}}\n",
                        at.mount, at.path
                    )),
                    path: Some(format!("out/secrets/{secret}.json")),
                    mode: Some("0600".to_owned()),
                    reload: reload.clone(),
                    ..OutputSection::default()
                });
            }
            for key in &id.signing_keys {
                let Some(purpose) = spec
                    .purpose_of(&format!("{}/signing-key/{}", id.name, key.name))
                    .filter(|p| p.delivery == warden_spec::Delivery::AgentFile)
                else {
                    continue;
                };
                let at = warden_spec::naming::signing_key(
                    &spec.naming,
                    &env.mounts,
                    &id.name,
                    key.name.as_str(),
                );
                outputs.push(OutputSection {
                    name: format!("signing-{}", key.name),
                    kind: "signing_key".to_owned(),
                    kv_mount: Some(at.mount.trim_matches('/').to_owned()),
                    kv_path: Some(at.path.clone()),
                    dir: Some(format!("out/signing/{}", key.name)),
                    purpose: Some(purpose.id.to_string()),
                    reload: reload.clone(),
                    ..OutputSection::default()
                });
            }
            let db_mount = env.mounts.database.trim_matches('/');
            for db in id.databases.iter().filter(|d| {
                spec.database(d)
                    .is_some_and(|d| d.environments.contains(&env.name))
            }) {
                databases.push(DatabaseSection {
                    name: db.clone(),
                    path: format!("{db_mount}/creds/{}", spec.naming.db_role.render(&id.name)),
                });
                outputs.push(OutputSection {
                    name: format!("database-{db}"),
                    kind: "template".to_owned(),
                    contents: Some(format!("{{{{ database(\"{db}\") | tojson }}}}\n")),
                    path: Some(format!("out/database/{db}.json")),
                    mode: Some("0600".to_owned()),
                    reload: reload.clone(),
                    ..OutputSection::default()
                });
            }
        }
        IdentityKind::Proxy => {
            outputs.push(OutputSection {
                name: "ca".to_owned(),
                kind: "ca_chain".to_owned(),
                pki_mount: Some(names.pki_mount.clone()),
                path: Some("out/ca/chain.pem".to_owned()),
                full_chain: Some(true),
                reload: reload.clone(),
                ..OutputSection::default()
            });
            // The revocation list to check peers against, reloaded when `warden revoke`
            // changes it.
            outputs.push(OutputSection {
                name: "crl".to_owned(),
                kind: "crl".to_owned(),
                pki_mount: Some(names.pki_mount.clone()),
                path: Some("out/ca/crl.pem".to_owned()),
                reload,
                ..OutputSection::default()
            });
        }
        IdentityKind::Container | IdentityKind::Pipeline => {}
    }
    AgentConfig {
        version: AgentConfig::VERSION,
        identity: IdentitySection {
            name: id.name.to_string(),
            kind: id.kind.as_str().to_owned(),
            env: names.env.clone(),
            common_name: names.common_name.clone(),
        },
        openbao: OpenBaoSection::new(addresses, "trust/ca.pem"),
        auth: AuthSection {
            method: "cert".to_owned(),
            mount: names.cert_mount.clone(),
            role: Some(names.cert_role.clone()),
            policy: names.policy.clone(),
            cert_file: Some("identity/client.crt".to_owned()),
            key_file: Some("identity/client.key".to_owned()),
            pki_mount: Some(names.pki_mount.clone()),
            identity_role: Some(names.identity_role.clone()),
            ..AuthSection::default()
        },
        renewal: RenewalSection {
            issuer_window: Some(format!("{}s", spec.ca.reissue_window.as_secs())),
            ..RenewalSection::default()
        },
        outputs,
        databases,
        exec_env,
        exec: None,
        health: Some(HealthSection {
            listen: "127.0.0.1:0".to_owned(),
        }),
        control: Some(ControlSection {
            socket: "state/control.sock".to_owned(),
        }),
    }
}

/// Keep or issue? Reads the files on disk and, if there are any, the environment's current
/// issuing CA.
async fn judge_existing(
    operator: &Client,
    env: &Environment,
    layout: &IdentityLayout,
    expected_cn: &str,
) -> Result<Decision> {
    let Some(cert_pem) = read_optional(&layout.client_cert())? else {
        return Ok(Decision::Issue(IssueReason::New));
    };
    let Some(key_pem) = read_optional(&layout.client_key())? else {
        return Ok(Decision::Issue(IssueReason::New));
    };
    let mount = env.mounts.pki.trim_matches('/');
    let issuer_pem = operator
        .pki_ca_cert(mount)
        .await
        .map_err(|source| Error::ReadIssuer {
            path: format!("{mount}/cert/ca"),
            source: Box::new(source),
        })?;
    if issuer_pem.trim().is_empty() {
        return Ok(Decision::Issue(IssueReason::NotValidNow));
    }
    let cert_pem = String::from_utf8_lossy(&cert_pem);
    Ok(existing::assess(
        &cert_pem,
        &key_pem,
        expected_cn,
        &issuer_pem,
        OffsetDateTime::now_utc(),
    ))
}

/// Generates the key on this host, has OpenBao sign a CSR for the pinned name, and checks that
/// what came back is a certificate for our key and that name.
async fn issue(operator: &Client, names: &Names) -> Result<Material> {
    let key = warden_pki::generate_key(KeyAlgorithm::EcdsaP256).map_err(|source| Error::Key {
        step: "generate the key",
        source: Box::new(source),
    })?;
    let csr =
        warden_pki::make_csr(&key, &names.common_name, &[], &[]).map_err(|source| Error::Key {
            step: "build the CSR",
            source: Box::new(source),
        })?;
    let body = json!({
        "csr": csr,
        "common_name": names.common_name,
        "ttl": format!("{}s", warden_spec::naming::IDENTITY_CERT_TTL_SECS),
    });
    let path = &names.sign_path;
    // Not idempotent: a retried sign would mint a second certificate.
    let secret = match operator.write(path, &body, Idempotent::No).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(Error::BadIssuedCertificate {
                path: path.clone(),
                reason: "empty response".to_owned(),
            });
        }
        Err(e) if role_missing(&e) => {
            return Err(Error::RoleMissing {
                env: names.env.clone(),
                path: path.clone(),
                errors: e.server_errors().to_vec(),
            });
        }
        Err(source) => {
            return Err(Error::Sign {
                env: names.env.clone(),
                path: path.clone(),
                source: Box::new(source),
            });
        }
    };
    #[derive(serde::Deserialize)]
    struct Signed {
        certificate: String,
        #[serde(default)]
        issuing_ca: String,
        #[serde(default)]
        ca_chain: Vec<String>,
    }
    let signed: Signed = secret
        .data_as(path)
        .map_err(|e| Error::BadIssuedCertificate {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let bad = |reason: String| Error::BadIssuedCertificate {
        path: path.clone(),
        reason,
    };
    match warden_pki::common_name(&signed.certificate) {
        Some(cn) if cn == names.common_name => {}
        other => {
            return Err(bad(format!(
                "it names {:?}, not {}",
                other.unwrap_or_default(),
                names.common_name
            )));
        }
    }
    let chain_pem = client_chain(&signed.certificate, &signed.ca_chain, &signed.issuing_ca);
    let key_pem = key.private_key_pem();
    let identity = ClientIdentity::from_pem(
        chain_pem.as_bytes().to_vec(),
        Zeroizing::new(key_pem.as_bytes().to_vec()),
    )
    .map_err(|e| bad(format!("it does not fit the key generated here: {e}")))?;
    Ok(Material {
        chain_pem,
        new_key_pem: Some(key_pem),
        identity,
    })
}

/// "This environment has not been provisioned for the identity": OpenBao answers 400
/// `unknown role` for a missing PKI role, and 404 when the mount has no such route.
fn role_missing(e: &warden_bao::Error) -> bool {
    match e.status() {
        Some(404) => true,
        Some(400) => e.server_errors().iter().any(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("unknown role") || (m.contains("role") && m.contains("not found"))
        }),
        _ => false,
    }
}

/// The chain a TLS client presents: the leaf and the CAs that issued it, but not a
/// self-signed root. A root in the presented chain is never what makes it trusted (the server's
/// own trust anchors do that); leaving it out keeps "what we present" and "what others trust"
/// separate concerns.
fn client_chain(leaf: &str, ca_chain: &[String], issuing_ca: &str) -> String {
    let cas: Vec<&str> = if ca_chain.is_empty() {
        vec![issuing_ca]
    } else {
        ca_chain.iter().map(String::as_str).collect()
    };
    let mut out = format!("{}\n", leaf.trim());
    for ca in cas {
        let ca = ca.trim();
        if ca.is_empty() || ca == leaf.trim() {
            continue;
        }
        let self_signed = warden_pki::parse_pem_bundle(ca)
            .map(|c| c.iter().all(|i| i.self_signed))
            .unwrap_or(false);
        if !self_signed {
            out.push_str(ca);
            out.push('\n');
        }
    }
    out
}

/// Logs in with `identity` over mTLS, checks the policies, revokes the test token.
async fn verify(
    operator: &Client,
    trust_anchor_pem: &str,
    identity: &ClientIdentity,
    names: &Names,
) -> Result<Verification> {
    let addresses = operator.addresses();
    let cfg = ClientConfig::with_addresses(&addresses)
        .map_err(|source| Error::ClientIdentity {
            what: "the server addresses".to_owned(),
            source: Box::new(source),
        })?
        .with_ca_pem(trust_anchor_pem.as_bytes().to_vec())
        .with_client_identity(identity.clone());
    let client = Client::new(cfg).map_err(|source| Error::ClientIdentity {
        what: "the identity certificate".to_owned(),
        source: Box::new(source),
    })?;
    let auth = client
        .login_cert(&names.cert_mount, Some(&names.cert_role))
        .await
        .map_err(|source| Error::Login {
            env: names.env.clone(),
            mount: names.cert_mount.clone(),
            role: names.cert_role.clone(),
            source: Box::new(source),
        })?;
    client.set_token(auth.client_token.clone());
    let mut got = auth.policies.clone();
    got.sort();
    got.dedup();
    let policies_ok = got == [names.policy.clone()];
    // Revoke first, even when the policies are wrong: the test token has no further use.
    let revoked_by = revoke_test_token(operator, &client, &auth.accessor).await;
    client.clear_token();
    if !policies_ok {
        return Err(Error::UnexpectedPolicies {
            env: names.env.clone(),
            role: names.cert_role.clone(),
            expected: vec![names.policy.clone()],
            got,
        });
    }
    Ok(Verification {
        auth_mount: names.cert_mount.clone(),
        cert_role: names.cert_role.clone(),
        policies: got,
        test_token_revoked: revoked_by.is_some(),
        revoked_by,
    })
}

/// Revokes the verification token: by itself when its policy allows `auth/token/revoke-self`,
/// otherwise through the operator by accessor. Without the built-in `default` policy (which
/// identity roles deliberately leave out) a token may not even revoke itself, so the fallback
/// is the normal path until identity policies grant their own token housekeeping.
async fn revoke_test_token(
    operator: &Client,
    client: &Client,
    accessor: &str,
) -> Option<&'static str> {
    match client.token_revoke_self().await {
        Ok(()) => return Some("token"),
        Err(e) => tracing::debug!(error = %e, "the test token cannot revoke itself"),
    }
    let body = json!({ "accessor": accessor });
    match operator
        .write("auth/token/revoke-accessor", &body, Idempotent::Yes)
        .await
    {
        Ok(_) => Some("operator"),
        Err(e) => {
            tracing::warn!(error = %e, "could not revoke the verification token");
            None
        }
    }
}

/// Writes the layout: directories first, the key before the certificate (a crash in between
/// leaves a key that does not fit the old certificate, which the next run detects and
/// re-issues), then the trust anchor.
fn publish(layout: &IdentityLayout, material: &Material, trust_anchor_pem: &str) -> Result<()> {
    for dir in layout.dirs() {
        warden_files::ensure_dir(&dir, crate::layout::DIR_MODE)?;
    }
    if let Some(key_pem) = &material.new_key_pem {
        warden_files::write_atomic(&layout.client_key(), key_pem.as_bytes(), Mode::OwnerOnly)?;
        warden_files::write_atomic(
            &layout.client_cert(),
            material.chain_pem.as_bytes(),
            Mode::Public,
        )?;
    }
    let mut trust = trust_anchor_pem.trim_end().to_owned();
    trust.push('\n');
    warden_files::write_atomic(&layout.ca_bundle(), trust.as_bytes(), Mode::Public)?;
    Ok(())
}

fn leaf_info(chain_pem: &str, path: &str) -> Result<CertInfo> {
    warden_pki::parse_pem_bundle(chain_pem)
        .map_err(|e| Error::BadIssuedCertificate {
            path: path.to_owned(),
            reason: e.to_string(),
        })
        .map(|mut certs| certs.swap_remove(0))
}

/// `0a1b2c` → `0a:1b:2c`, without the sign byte DER adds to a serial whose top bit is set
/// (OpenBao prints the number, not its encoding).
fn colon_serial(hex: &str) -> String {
    let bytes: Vec<&str> = (0..hex.len() / 2).map(|i| &hex[2 * i..2 * i + 2]).collect();
    let skip = usize::from(
        bytes.len() > 1
            && bytes[0] == "00"
            && u8::from_str_radix(bytes[1], 16).is_ok_and(|b| b >= 0x80),
    );
    bytes[skip..].join(":")
}

fn read_optional(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(Zeroizing::new(b))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            step: "read",
            source,
        }),
    }
}

fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        step: "read",
        source,
    })
}

/// Absolute form of a path for reports and `agent.toml` (the agent must not depend on the
/// enrolling shell's working directory). Falls back to the path as given.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests;
