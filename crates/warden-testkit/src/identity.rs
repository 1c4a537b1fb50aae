//! Logging in to a lab the way each kind of identity does in production, each with its own
//! credential:
//! apps and proxies with their identity mTLS certificate (cert auth), containers with AppRole,
//! pipelines with a CI-signed JWT.
//!
//! The lab's listeners require a client certificate on every TLS connection. Apps and proxies
//! present their identity certificate; AppRole and JWT logins ride on a real transport
//! certificate of the spec's `[transport.<holder>]` (ADR 0010), issued by
//! `pki_int/sign/transport-<holder>` for `<holder>.transport.<domain>`, never on the operator's.
//! Such a client carries no token, so everything it may do comes from the token its login
//! returns.

use std::path::PathBuf;
use std::time::Duration;

use crate::LabEnv;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use warden_bao::{Auth, Client, ClientConfig, ClientIdentity, Idempotent, RetryPolicy};
use warden_pki::{KeyAlgorithm, generate_key, make_csr};
use zeroize::Zeroizing;

/// Where one lab environment is and how to reach it at the TLS layer.
#[derive(Debug, Clone)]
pub struct EnvAccess {
    address: String,
    ca_bundle: PathBuf,
}

impl EnvAccess {
    /// Environment `env` of `lab`.
    pub fn of(lab: &LabEnv, env: &str) -> Self {
        let layout = lab.lab().layout().env(env);
        Self {
            address: lab.lab().env(env).expect("lab environment").address(),
            ca_bundle: layout.ca_bundle(),
        }
    }

    /// No retries and a short timeout: every call in these tests must answer at once, and a
    /// refused handshake must fail fast rather than be retried for half a minute.
    fn config(&self) -> ClientConfig {
        ClientConfig::from_address(&self.address)
            .expect("lab address")
            .with_ca_file(&self.ca_bundle)
            .expect("lab CA bundle")
            .with_retry(RetryPolicy::no_retries())
            .with_request_timeout(Duration::from_secs(20))
    }

    /// A client presenting `identity` on TLS, with no token.
    pub fn client_with(&self, identity: ClientIdentity) -> Client {
        Client::new(self.config().with_client_identity(identity)).expect("build a client")
    }

    /// A client presenting a fresh transport certificate of `holder` (issued by `operator`,
    /// whose spec must declare `[transport.<holder>]` for this environment of `domain`) and no
    /// token: what a container or CI job the holder carries uses.
    pub async fn transport_client(&self, operator: &Client, holder: &str, domain: &str) -> Client {
        let cn = format!("{holder}.transport.{domain}");
        let identity = enroll(operator, &format!("transport-{holder}"), &cn).await;
        self.client_with(identity)
    }
}

/// An identity certificate obtained the way `warden identity enroll` does: key generated here,
/// CSR signed by `pki_int/sign/<app>-identity` (by the operator, as enrollment is).
pub async fn enroll(operator: &Client, role: &str, common_name: &str) -> ClientIdentity {
    let key = generate_key(KeyAlgorithm::EcdsaP256).expect("generate a key");
    let csr = make_csr(&key, common_name, &[], &[]).expect("CSR");
    let path = format!("pki_int/sign/{role}");
    let signed = operator
        .write(
            &path,
            &json!({ "csr": csr, "common_name": common_name }),
            Idempotent::No,
        )
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .and_then(|s| s.data)
        .unwrap_or_else(|| panic!("{path} returned no data"));
    let chain = format!(
        "{}\n{}\n",
        signed["certificate"].as_str().expect("certificate"),
        signed["issuing_ca"].as_str().expect("issuing_ca")
    );
    let key_pem = Zeroizing::new(key.private_key_pem().as_bytes().to_vec());
    ClientIdentity::from_pem(chain.into_bytes(), key_pem).expect("identity certificate and key")
}

/// Cert-auth login with the certificate `client` presents, naming `role`. On success the client
/// carries the new token.
pub async fn login_cert(client: &Client, role: &str) -> Result<Auth, warden_bao::Error> {
    let auth = client.login_cert("cert", Some(role)).await?;
    client.set_token(auth.client_token.clone());
    Ok(auth)
}

/// The role-id of AppRole `role`, as an operator reads it.
pub async fn approle_role_id(operator: &Client, role: &str) -> String {
    operator
        .read(&format!("auth/approle/role/{role}/role-id"))
        .await
        .expect("read role-id")
        .data
        .and_then(|d| d["role_id"].as_str().map(str::to_owned))
        .expect("role_id")
}

/// A fresh secret-id of AppRole `role` *wrapped* (for 5 minutes): OpenBao answers with a
/// single-use wrapping token, and the secret-id itself never leaves the server unwrapped.
pub async fn wrapped_secret_id(operator: &Client, role: &str) -> warden_bao::WrapInfo {
    operator
        .write_wrapped(
            &format!("auth/approle/role/{role}/secret-id"),
            &json!({}),
            Duration::from_secs(300),
        )
        .await
        .expect("wrapped secret-id")
}

/// The role-id and a fresh secret-id of AppRole `role`, as an operator delivers them.
pub async fn approle_credentials(operator: &Client, role: &str) -> (String, SecretString) {
    let role_id = approle_role_id(operator, role).await;
    let secret_id = operator
        .write(
            &format!("auth/approle/role/{role}/secret-id"),
            &json!({}),
            Idempotent::No,
        )
        .await
        .expect("generate a secret-id")
        .and_then(|s| s.data)
        .and_then(|d| {
            d["secret_id"]
                .as_str()
                .map(|s| SecretString::from(s.to_owned()))
        })
        .expect("secret_id");
    (role_id, secret_id)
}

/// Logs in at `auth/<mount>/login` with `body`; on success `client` carries the token.
pub async fn login_with(
    client: &Client,
    mount: &str,
    body: &Value,
) -> Result<Auth, warden_bao::Error> {
    let path = format!("auth/{mount}/login");
    let auth = client
        .write(&path, body, Idempotent::No)
        .await?
        .and_then(|s| s.auth)
        .unwrap_or_else(|| panic!("{path}: login answered without an auth block"));
    client.set_token(auth.client_token.clone());
    Ok(auth)
}

/// AppRole login.
pub async fn login_approle(
    client: &Client,
    role_id: &str,
    secret_id: &SecretString,
) -> Result<Auth, warden_bao::Error> {
    let body = json!({ "role_id": role_id, "secret_id": secret_id.expose_secret() });
    login_with(client, "approle", &body).await
}

/// JWT login at role `role`.
pub async fn login_jwt(
    client: &Client,
    role: &str,
    jwt: &SecretString,
) -> Result<Auth, warden_bao::Error> {
    let body = json!({ "role": role, "jwt": jwt.expose_secret() });
    login_with(client, "jwt", &body).await
}

/// The CI system's token signer: an ES256 (P-256) key generated for the test.
pub struct CiSigner {
    key: EcdsaKeyPair,
}

impl std::fmt::Debug for CiSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CiSigner { key: ... }")
    }
}

impl CiSigner {
    /// A fresh key.
    pub fn generate() -> Self {
        Self {
            key: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key"),
        }
    }

    /// The public key as PEM `SubjectPublicKeyInfo`: what `validation_pubkeys` lists.
    pub fn public_pem(&self) -> String {
        let der = self.key.public_key().as_der().expect("SPKI DER");
        let b64 = STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// A compact JWS (ES256) over `claims`. The fixed-size `r || s` signature is exactly the
    /// JWS encoding, so no DER conversion is needed.
    pub fn sign(&self, claims: &Value) -> SecretString {
        let header = json!({ "alg": "ES256", "typ": "JWT" });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .expect("sign");
        SecretString::from(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }
}

/// Claims a Gitea Actions run of `repository` on `git_ref` would carry, for `audience`.
pub fn ci_claims(issuer: &str, audience: &str, repository: &str, git_ref: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    json!({
        "iss": issuer,
        "aud": audience,
        "sub": format!("repo:{repository}:ref:{git_ref}"),
        "repository": repository,
        "ref": git_ref,
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
    })
}
