//! The end of the root token: the lab's bootstrap gives the environment its operator policy
//! and the lab operator's cert-auth role, proves the operator can log in, then revokes the root
//! token and deletes its custody file. From then on every client of the lab (every later `up`,
//! every `warden … --lab` command, the test harness) logs in with the lab's operator
//! certificate (`operator@<env>`, issued by the listener CA) as the operator `lab`.
//!
//! One call site each in `bring_up` ([`open`] before the root-only steps, [`Session::finish`]
//! after them). Where the root token comes from is the caller's business: the custody
//! ceremony's token opened in memory (Shamir and auto-sealed environments alike), or a legacy
//! lab's clear file — both hand it in as a `SecretString` kept in memory only.

use secrecy::SecretString;
use serde_json::json;
use warden_bao::Client;
use warden_spec::naming::operator::{
    LAB_OPERATOR, OPERATOR_AUTH_MOUNT, OPERATOR_POLICY, OPERATOR_TOKEN_MAX_TTL_SECS,
    OPERATOR_TOKEN_TTL_SECS, default_policy, operator_role_path,
};

use crate::config::EnvConfig;
use crate::error::Error;
use crate::layout::EnvLayout;

/// How this `up` talks to the environment.
pub(crate) enum Session {
    /// Bootstrap is not finished: the root token is in memory (and in custody until revoked).
    Root,
    /// Bootstrap is done: the client logs in as the lab's operator.
    Operator,
}

/// Gives `client` a token for the root-only steps of `up`: the root token while bootstrap is
/// pending (`root` is `Some`, and still valid), otherwise the lab operator's login on demand.
/// A root token that no longer works (revoked by an earlier run that died before deleting its
/// file) is deleted here.
pub(crate) async fn open(
    client: &Client,
    env: &EnvConfig,
    layout: &EnvLayout,
    root: Option<SecretString>,
) -> Result<Session, Error> {
    let name = env.name.as_str();
    if let Some(root) = root {
        client.set_token(root);
        match client.token_lookup_self().await {
            Ok(_) => return Ok(Session::Root),
            Err(e) if e.status() == Some(403) => {
                client.clear_token();
                remove_root_token(layout)?;
            }
            Err(e) => return Err(Error::bao(name, "look up the root token")(e)),
        }
    }
    client.clear_token();
    client.login_with_cert_on_demand(OPERATOR_AUTH_MOUNT, LAB_OPERATOR);
    Ok(Session::Operator)
}

impl Session {
    /// Ends bootstrap if it is pending: operator policy, operator auth mount, the lab
    /// operator's role, a proven login, then the root token revoked and its file deleted.
    /// Returns whether the root token was revoked by this call.
    pub(crate) async fn finish(
        self,
        client: &Client,
        env: &EnvConfig,
        layout: &EnvLayout,
        test_harness_token: bool,
    ) -> Result<bool, Error> {
        if matches!(self, Self::Operator) {
            return Ok(false);
        }
        let name = env.name.as_str();
        let bao = |what: &'static str| Error::bao(name, what);
        client
            .put_policy(OPERATOR_POLICY, &default_policy(&env.pki_mount))
            .await
            .map_err(bao("write the operator policy"))?;
        let auths = client
            .list_auth()
            .await
            .map_err(bao("list auth backends"))?;
        if !auths
            .keys()
            .any(|m| m.trim_end_matches('/') == OPERATOR_AUTH_MOUNT)
        {
            client
                .enable_auth_with(
                    OPERATOR_AUTH_MOUNT,
                    "cert",
                    &warden_bao::MountOptions::default()
                        .with_description("managed-by: warden (operators)"),
                )
                .await
                .map_err(bao("enable the operators' cert auth"))?;
        }
        write_lab_operator_role(client, name, layout).await?;
        prove_operator_login(client, env, layout).await?;
        if test_harness_token {
            harness_token(client, name, &env.pki_mount, layout).await?;
        }

        // Revoke last: until the operator has logged in, the root token is the way back.
        client
            .token_revoke_self()
            .await
            .map_err(bao("revoke the root token"))?;
        client.clear_token();
        remove_root_token(layout)?;
        client.login_with_cert_on_demand(OPERATOR_AUTH_MOUNT, LAB_OPERATOR);
        Ok(true)
    }
}

/// Writes the lab operator's cert-auth role, pinned on the listener CA certificate the layout
/// holds now. Also after a root rollover installs the re-signed listener CA (the same key and
/// subject): the role then trusts the certificate that outlives the old one, whose expiry would
/// otherwise end the lab operator's logins.
pub(crate) async fn write_lab_operator_role(
    client: &Client,
    env: &str,
    layout: &EnvLayout,
) -> Result<(), Error> {
    let listener_ca = crate::read_text(layout.listener_ca_cert())
        .map_err(|e| Error::io(&layout.listener_ca_cert(), "read", e))?;
    client
        .write(
            &operator_role_path(LAB_OPERATOR),
            &lab_operator_role(&listener_ca, env),
            warden_bao::Idempotent::Yes,
        )
        .await
        .map_err(Error::bao(env, "write the lab operator's cert-auth role"))?;
    Ok(())
}

/// The lab operator's cert-auth role: its certificate comes from the listener CA (it exists
/// before OpenBao does), pinned to its common name, operator policy only.
fn lab_operator_role(listener_ca_pem: &str, env: &str) -> serde_json::Value {
    json!({
        "certificate": listener_ca_pem.trim(),
        "allowed_common_names": [format!("operator@{env}")],
        "display_name": LAB_OPERATOR,
        "token_policies": [OPERATOR_POLICY],
        "token_no_default_policy": true,
        "token_ttl": OPERATOR_TOKEN_TTL_SECS,
        "token_max_ttl": OPERATOR_TOKEN_MAX_TTL_SECS,
        "token_period": 0,
    })
}

/// Logs in as the lab operator on a fresh client and checks the token carries exactly the
/// operator policy; the test token is revoked again.
async fn prove_operator_login(
    root: &Client,
    env: &EnvConfig,
    layout: &EnvLayout,
) -> Result<(), Error> {
    let name = env.name.as_str();
    let probe = crate::client::operator_client(env, layout, None)?;
    let auth = probe
        .login_cert(OPERATOR_AUTH_MOUNT, Some(LAB_OPERATOR))
        .await
        .map_err(Error::bao(name, "log in as the lab operator"))?;
    if auth.token_policies != [OPERATOR_POLICY] {
        return Err(Error::ServerState {
            env: name.to_owned(),
            what: format!(
                "the lab operator logged in with policies {:?}, want [{OPERATOR_POLICY}]; the root token was kept",
                auth.token_policies
            ),
        });
    }
    root.write(
        "auth/token/revoke-accessor",
        &json!({ "accessor": auth.accessor }),
        warden_bao::Idempotent::Yes,
    )
    .await
    .map_err(Error::bao(name, "revoke the probe login"))?;
    Ok(())
}

/// The test harness's token: it may seal the server and point the PKI's ACME validator at a
/// test's own DNS responder (`<pki>/config/acme`, for the ACME tests: the lab's names resolve
/// nowhere), and do nothing else (tests of what agents do while a server is sealed need the
/// first, and an operator must never have it). Made only when a test lab asks for it, written
/// LAB ONLY beside the unseal shares, orphan, 24 h.
async fn harness_token(
    root: &Client,
    env: &str,
    pki_mount: &str,
    layout: &EnvLayout,
) -> Result<(), Error> {
    let bao = |what: &'static str| Error::bao(env, what);
    root.put_policy(
        HARNESS_POLICY,
        &format!(
            "# managed-by: warden (test labs only)\npath \"sys/seal\" {{\n  capabilities = [\"update\", \"sudo\"]\n}}\npath \"{pki_mount}/config/acme\" {{\n  capabilities = [\"read\", \"update\"]\n}}\n"
        ),
    )
    .await
    .map_err(bao("write the test harness policy"))?;
    let created = root
        .write(
            "auth/token/create-orphan",
            &json!({
                "policies": [HARNESS_POLICY],
                "no_default_policy": true,
                "ttl": "24h",
                "renewable": false,
                "display_name": "test-harness",
            }),
            warden_bao::Idempotent::No,
        )
        .await
        .map_err(bao("create the test harness token"))?;
    let token = created
        .and_then(|s| s.auth)
        .map(|a| a.client_token)
        .ok_or_else(|| Error::ServerState {
            env: env.to_owned(),
            what: "the test harness token was created without an auth block".to_owned(),
        })?;
    crate::custody::write_secret(&layout.harness_token(), &token)
}

/// The policy of the test harness's token.
const HARNESS_POLICY: &str = "warden-test-harness";

/// Deletes the root token's file once the token is revoked: the ceremony's encrypted file (or a
/// legacy lab's clear one). A revoked token's file would only make every later `up` open a dead
/// token.
fn remove_root_token(layout: &EnvLayout) -> Result<(), Error> {
    let path = crate::custody::root_token_path(layout);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&path, "remove", e)),
    }
}
