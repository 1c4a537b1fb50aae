//! Clients for a lab environment: the operator's mTLS certificate, the root as the only trust
//! anchor, and the root token while bootstrap is pending; after it, the operator certificate
//! logs in as the lab operator on first use.

use secrecy::SecretString;
use warden_bao::{Client, ClientConfig};

use crate::config::EnvConfig;
use crate::error::Error;
use crate::layout::EnvLayout;

/// A client for `env` authenticated at the TLS layer with the operator certificate.
pub(crate) fn operator_client(
    env: &EnvConfig,
    layout: &EnvLayout,
    token: Option<SecretString>,
) -> Result<Client, Error> {
    // Every node's address, node 1 first: the client fails over between them (warden-bao,
    // "Failover").
    operator_client_for(env, &env.addresses(), layout, token)
}

/// The same, for one node of the environment alone (init, unseal and status must reach that
/// node, not whichever answers).
pub(crate) fn operator_client_at(
    env: &EnvConfig,
    address: &str,
    layout: &EnvLayout,
    token: Option<SecretString>,
) -> Result<Client, Error> {
    operator_client_for(env, &[address.to_owned()], layout, token)
}

fn operator_client_for(
    env: &EnvConfig,
    addresses: &[String],
    layout: &EnvLayout,
    token: Option<SecretString>,
) -> Result<Client, Error> {
    let mut cfg = ClientConfig::with_addresses(addresses)
        .map_err(|e| Error::ServerState {
            env: env.name.clone(),
            what: format!("bad address {}: {e}", addresses.join(", ")),
        })?
        .with_ca_file(layout.ca_bundle())
        .and_then(|c| c.with_client_cert_files(layout.operator_cert(), layout.operator_key()))
        .map_err(Error::bao(&env.name, "load the operator credentials"))?;
    if let Some(token) = token {
        cfg = cfg.with_token(token);
    }
    let client = Client::new(cfg).map_err(Error::bao(&env.name, "build the client"))?;
    // Without a token (after bootstrap, always), the operator certificate logs in as the lab's
    // operator when the first request needs one.
    client.login_with_cert_on_demand(
        warden_spec::naming::operator::OPERATOR_AUTH_MOUNT,
        warden_spec::naming::operator::LAB_OPERATOR,
    );
    Ok(client)
}

/// A client for `env` presenting a transport certificate, with no token and no operator login.
pub(crate) fn workload_client(
    env: &EnvConfig,
    layout: &EnvLayout,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Client, Error> {
    let addresses = env.addresses();
    let cfg = ClientConfig::with_addresses(&addresses)
        .map_err(|e| Error::ServerState {
            env: env.name.clone(),
            what: format!("bad address {}: {e}", addresses.join(", ")),
        })?
        .with_ca_file(layout.ca_bundle())
        .and_then(|c| c.with_client_cert_files(cert, key))
        .map_err(Error::bao(&env.name, "load the transport certificate"))?;
    Client::new(cfg).map_err(Error::bao(&env.name, "build the client"))
}
