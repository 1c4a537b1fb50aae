//! Clients for a lab environment: the operator's mTLS certificate, the root as the only trust
//! anchor, and optionally the lab's root token.

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
    // HOOK(ha → client): with several nodes per environment, list every node's API address
    // here, in order; the client fails over between them (warden-bao, "Failover").
    let addresses = [env.address()];
    let mut cfg = ClientConfig::with_addresses(&addresses)
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
    Client::new(cfg).map_err(Error::bao(&env.name, "build the client"))
}
