//! Operator identities: one mTLS client certificate per person, and a cert-auth role per
//! operator that hands out the operator policy and nothing else.
//!
//! 1. [`request`] runs on the operator's own machine: it generates the key there (written
//!    owner-only and atomically, never printed) and a CSR naming `<name>.operator.<domain>`.
//! 2. [`approve`] runs with an existing operator's (or bootstrap's) token: it checks the CSR
//!    names that operator, has the environment's PKI sign it through the operator PKI role (so
//!    the certificate passes the listener's client-CA check, which trusts the PKI
//!    intermediate), then creates `auth/warden-operators/certs/<name>`, pinned to that common
//!    name and to the PKI intermediate, with the operator policy only, no `default` policy and
//!    a short token lifetime.
//! 3. [`list`] and [`remove`] read and delete those roles. A removed operator's certificate no
//!    longer logs in; a token it already holds lives at most the role's token max TTL.
//!
//! The names (mount, PKI role, policy, common name) are [`warden_spec::naming::operator`].

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};
use warden_bao::{Client, Idempotent};
use warden_pki::KeyAlgorithm;
use warden_spec::Environment;
use warden_spec::naming::operator::{
    OPERATOR_AUTH_MOUNT, OPERATOR_CERT_TTL_SECS, OPERATOR_PKI_ROLE, OPERATOR_POLICY,
    OPERATOR_TOKEN_MAX_TTL_SECS, OPERATOR_TOKEN_TTL_SECS, operator_common_name, operator_role_path,
    valid_operator_name,
};

/// What can go wrong with operator identities.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// The name cannot be an operator's (it becomes a DNS label and a role name).
    #[error(
        "`{name}` is not a usable operator name: lowercase letters, digits and '-', starting with a letter, at most 63 characters"
    )]
    BadName {
        /// The name given.
        name: String,
    },
    /// `request` found a key already there; it never overwrites one.
    #[error("{path} already exists; an operator key is never overwritten")]
    KeyExists {
        /// The key file.
        path: PathBuf,
    },
    /// Generating the key or building the CSR failed.
    #[error("could not {step}: {source}")]
    Key {
        /// The step.
        step: &'static str,
        /// The crypto library's error.
        #[source]
        source: Box<warden_pki::Error>,
    },
    /// Writing a file failed (the previous file, if any, is intact).
    #[error(transparent)]
    Files(#[from] warden_files::Error),
    /// The CSR is not a signed PKCS#10 request, or names someone else.
    #[error("the CSR is not acceptable for operator `{name}`: {reason}")]
    BadCsr {
        /// The operator being approved.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The operator PKI role does not exist yet: the environment has not been applied.
    #[error("{env}: the operator PKI role at {path} does not exist")]
    PkiRoleMissing {
        /// Environment.
        env: String,
        /// The sign path.
        path: String,
    },
    /// No operator of that name.
    #[error("{env}: there is no operator `{name}`")]
    UnknownOperator {
        /// Environment.
        env: String,
        /// The name.
        name: String,
    },
    /// Removing it would leave nobody able to log in.
    #[error("{env}: `{name}` is the last operator; removing it would leave only break-glass")]
    LastOperator {
        /// Environment.
        env: String,
        /// The name.
        name: String,
    },
    /// A request to OpenBao failed.
    #[error("{env}: {what}: {source}")]
    Bao {
        /// Environment.
        env: String,
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: Box<warden_bao::Error>,
    },
}

type Result<T> = std::result::Result<T, OperatorError>;

fn bao(env: &str, what: impl Into<String>) -> impl FnOnce(warden_bao::Error) -> OperatorError {
    let (env, what) = (env.to_owned(), what.into());
    move |source| OperatorError::Bao {
        env,
        what,
        source: Box::new(source),
    }
}

fn check_name(name: &str) -> Result<()> {
    if valid_operator_name(name) {
        Ok(())
    } else {
        Err(OperatorError::BadName {
            name: name.to_owned(),
        })
    }
}

/// What [`request`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorRequest {
    /// The operator.
    pub name: String,
    /// The environment.
    pub env: String,
    /// The common name the CSR asks for.
    pub common_name: String,
    /// The private key (0600; stays on this machine).
    pub key: PathBuf,
    /// The CSR to hand to an operator who runs `approve`.
    pub csr: PathBuf,
    /// Where `approve`'s certificate is expected (beside the key).
    pub certificate: PathBuf,
}

/// The files of operator `name` for `env` in `dir`: key, CSR, certificate.
pub fn operator_files(dir: &Path, name: &str, env: &str) -> (PathBuf, PathBuf, PathBuf) {
    let stem = format!("{name}.{env}");
    (
        dir.join(format!("{stem}.key")),
        dir.join(format!("{stem}.csr")),
        dir.join(format!("{stem}.crt")),
    )
}

/// Generates operator `name`'s key in `dir` (created 0700 if missing; the key 0600, written
/// atomically, never over an existing one) and writes its CSR beside it. Contacts nothing.
pub fn request(name: &str, env: &Environment, dir: &Path) -> Result<OperatorRequest> {
    check_name(name)?;
    let (key_path, csr_path, cert_path) = operator_files(dir, name, env.name.as_str());
    if key_path.exists() {
        return Err(OperatorError::KeyExists { path: key_path });
    }
    warden_files::ensure_private_dir(dir)?;
    let common_name = operator_common_name(name, &env.domain);
    let key =
        warden_pki::generate_key(KeyAlgorithm::EcdsaP256).map_err(|e| OperatorError::Key {
            step: "generate the key",
            source: Box::new(e),
        })?;
    let csr =
        warden_pki::make_csr(&key, &common_name, &[], &[]).map_err(|e| OperatorError::Key {
            step: "build the CSR",
            source: Box::new(e),
        })?;
    warden_files::write_atomic(
        &key_path,
        key.private_key_pem().as_bytes(),
        warden_files::Mode::OwnerOnly,
    )?;
    warden_files::write_atomic(&csr_path, csr.as_bytes(), warden_files::Mode::Public)?;
    Ok(OperatorRequest {
        name: name.to_owned(),
        env: env.name.to_string(),
        common_name,
        key: key_path,
        csr: csr_path,
        certificate: cert_path,
    })
}

/// The common name a PEM CSR asks for, after checking its signature.
fn csr_common_name(name: &str, csr_pem: &str) -> Result<String> {
    use x509_parser::prelude::FromDer;
    let bad = |reason: String| OperatorError::BadCsr {
        name: name.to_owned(),
        reason,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|e| bad(format!("not PEM: {e}")))?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(bad(format!(
            "a PEM `{}`, not a CERTIFICATE REQUEST",
            pem.label
        )));
    }
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .map_err(|e| bad(format!("not a PKCS#10 request: {e}")))?;
    csr.verify_signature()
        .map_err(|e| bad(format!("its signature does not verify: {e}")))?;
    let cn = csr
        .certification_request_info
        .subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .ok_or_else(|| bad("it names no common name".to_owned()))?;
    Ok(cn.to_owned())
}

/// What [`approve`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Approved {
    /// The operator.
    pub name: String,
    /// The environment.
    pub env: String,
    /// The certificate's common name.
    pub common_name: String,
    /// Serial number as OpenBao reports it.
    pub serial: String,
    /// The certificate, leaf first, then the issuing CA (what the TLS handshake presents).
    pub certificate_pem: String,
    /// The cert-auth role created or replaced.
    pub role: String,
    /// The policy the role's tokens carry.
    pub policy: &'static str,
    /// Token lifetime and renewal limit, seconds.
    pub token_ttl_secs: u64,
    /// The longest a token of this operator lives.
    pub token_max_ttl_secs: u64,
}

/// Signs operator `name`'s CSR through `env`'s PKI and creates their cert-auth role. `client`
/// carries an operator's (or bootstrap's) token.
pub async fn approve(
    client: &Client,
    env: &Environment,
    name: &str,
    csr_pem: &str,
) -> Result<Approved> {
    check_name(name)?;
    let env_name = env.name.as_str();
    let want = operator_common_name(name, &env.domain);
    let asked = csr_common_name(name, csr_pem)?;
    if asked != want {
        return Err(OperatorError::BadCsr {
            name: name.to_owned(),
            reason: format!("it asks for `{asked}`, an operator `{name}` is `{want}`"),
        });
    }
    let pki = env.mounts.pki.as_str();
    let sign = format!("{pki}/sign/{OPERATOR_PKI_ROLE}");
    let body = json!({
        "csr": csr_pem,
        "common_name": want,
        "ttl": format!("{OPERATOR_CERT_TTL_SECS}s"),
    });
    // Not idempotent: a retried sign would mint a second certificate.
    let signed = match client.write(&sign, &body, Idempotent::No).await {
        Ok(s) => s.and_then(|s| s.data).unwrap_or(Value::Null),
        Err(e)
            if e.status() == Some(400)
                && e.server_errors().iter().any(|m| m.contains("unknown role")) =>
        {
            return Err(OperatorError::PkiRoleMissing {
                env: env_name.to_owned(),
                path: sign,
            });
        }
        Err(e) => return Err(bao(env_name, format!("sign at {sign}"))(e)),
    };
    let field = |k: &str| {
        signed
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let leaf = field("certificate");
    if warden_pki::common_name(&leaf).as_deref() != Some(want.as_str()) {
        return Err(OperatorError::BadCsr {
            name: name.to_owned(),
            reason: format!("OpenBao signed something other than `{want}`"),
        });
    }
    let issuing = field("issuing_ca");
    let certificate_pem = format!("{}\n{}\n", leaf.trim_end(), issuing.trim_end());
    let ca = client
        .pki_ca_cert(pki)
        .await
        .map_err(bao(env_name, format!("read {pki}/cert/ca")))?;
    let role = operator_role_path(name);
    client
        .write(&role, &role_body(&ca, &want, name), Idempotent::Yes)
        .await
        .map_err(bao(env_name, format!("write {role}")))?;
    Ok(Approved {
        name: name.to_owned(),
        env: env_name.to_owned(),
        common_name: want,
        serial: field("serial_number"),
        certificate_pem,
        role,
        policy: OPERATOR_POLICY,
        token_ttl_secs: OPERATOR_TOKEN_TTL_SECS,
        token_max_ttl_secs: OPERATOR_TOKEN_MAX_TTL_SECS,
    })
}

/// An operator's cert-auth role: exactly one common name from the environment's PKI
/// intermediate, the operator policy only, short-lived tokens that are never periodic.
pub fn role_body(issuing_ca_pem: &str, common_name: &str, name: &str) -> Value {
    json!({
        "certificate": issuing_ca_pem.trim(),
        "allowed_common_names": [common_name],
        "display_name": name,
        "token_policies": [OPERATOR_POLICY],
        "token_no_default_policy": true,
        "token_ttl": OPERATOR_TOKEN_TTL_SECS,
        "token_max_ttl": OPERATOR_TOKEN_MAX_TTL_SECS,
        "token_period": 0,
    })
}

/// One operator, as its role says.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorInfo {
    /// The operator (role name).
    pub name: String,
    /// The common names its role accepts.
    pub common_names: Vec<String>,
    /// The policies its tokens carry.
    pub policies: Vec<String>,
    /// Token lifetime, seconds.
    pub token_ttl_secs: u64,
}

/// Every operator of the environment `client` talks to.
pub async fn list(client: &Client, env: &str) -> Result<Vec<OperatorInfo>> {
    let dir = format!("auth/{OPERATOR_AUTH_MOUNT}/certs");
    let names = match client.list(&dir).await {
        Ok(n) => n,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(bao(env, format!("list {dir}"))(e)),
    };
    let mut out = Vec::new();
    for name in names {
        let path = operator_role_path(&name);
        let data = client
            .read(&path)
            .await
            .map_err(bao(env, format!("read {path}")))?
            .data
            .unwrap_or(Value::Null);
        let strings = |k: &str| -> Vec<String> {
            data.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        out.push(OperatorInfo {
            common_names: strings("allowed_common_names"),
            policies: strings("token_policies"),
            token_ttl_secs: data.get("token_ttl").and_then(Value::as_u64).unwrap_or(0),
            name,
        });
    }
    Ok(out)
}

/// Deletes operator `name`'s role and its planner twin (ADR 0038): their certificate no longer
/// logs in, not even read-only. Refuses an unknown operator and the last one.
pub async fn remove(client: &Client, env: &str, name: &str) -> Result<()> {
    check_name(name)?;
    let all = list(client, env).await?;
    if !all.iter().any(|o| o.name == name) {
        return Err(OperatorError::UnknownOperator {
            env: env.to_owned(),
            name: name.to_owned(),
        });
    }
    if all.len() == 1 {
        return Err(OperatorError::LastOperator {
            env: env.to_owned(),
            name: name.to_owned(),
        });
    }
    // The planner role first: should the second delete fail, the operator can still log in
    // and remove again, while no read-only login outlives the operator.
    let planner = warden_spec::naming::planner::planner_role_path(name);
    match client.delete(&planner).await {
        Ok(()) => {}
        // No planners' mount yet (no apply since it was introduced): nothing to remove.
        Err(e) if e.is_not_found() || e.is_unmounted() => {}
        Err(e) => return Err(bao(env, format!("delete {planner}"))(e)),
    }
    let path = operator_role_path(name);
    client
        .delete(&path)
        .await
        .map_err(bao(env, format!("delete {path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        let spec = warden_spec::parse(
            "version = 1\n[environments.test]\ndomain = \"t.internal\"\n",
            "t",
        )
        .unwrap();
        spec.environment("test").unwrap().clone()
    }

    #[test]
    fn request_writes_an_owner_only_key_and_a_csr_naming_the_operator() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ops");
        let r = request("alice", &env(), &out).unwrap();
        assert_eq!(r.common_name, "alice.operator.t.internal");
        let mode = std::fs::metadata(&r.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        let csr = std::fs::read_to_string(&r.csr).unwrap();
        assert_eq!(csr_common_name("alice", &csr).unwrap(), r.common_name);
        // Never over an existing key.
        assert!(matches!(
            request("alice", &env(), &out),
            Err(OperatorError::KeyExists { .. })
        ));
        assert!(!format!("{r:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn bad_names_and_foreign_csrs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            request("Alice", &env(), dir.path()),
            Err(OperatorError::BadName { .. })
        ));
        assert!(!dir.path().join("Alice.test.key").exists());
        let r = request("bob", &env(), dir.path()).unwrap();
        let csr = std::fs::read_to_string(&r.csr).unwrap();
        let e = csr_common_name("bob", "not a csr").unwrap_err();
        assert!(e.to_string().contains("not PEM"), "{e}");
        let tampered = csr.replace('A', "B");
        assert!(csr_common_name("bob", &tampered).is_err());
    }
}
