//! TLS material for one environment's API listener.
//!
//! Each environment gets its own *listener CA*, an intermediate signed by the offline root from
//! a CSR (the root only ever signs CSRs, and every signature lands in its ledger). The listener
//! CA issues the server certificate and the operator's client certificate, and it is the only CA
//! the listener accepts client certificates from. That is what makes a `test` client certificate
//! worthless against `prod`: both chain to the same root, but each listener trusts only its own
//! environment's CA, never the root.
//!
//! Clients trust the root alone (`tls/ca.pem`); the server presents leaf + listener CA, so a
//! client never needs an intermediate-only bundle, which fails verification as incomplete
//! trust material.

use secrecy::SecretString;
use std::net::{IpAddr, Ipv4Addr};
use time::OffsetDateTime;
use warden_files::{Mode, write_atomic};
use warden_pki::{CaDir, ListenerCa};

use crate::error::Error;
use crate::layout::EnvLayout;

/// Listener CA lifetime in the lab.
const LISTENER_CA_VALIDITY: time::Duration = time::Duration::days(2 * 365);
/// Server and operator certificate lifetime in the lab.
const LEAF_VALIDITY: time::Duration = time::Duration::days(365);

/// Creates whatever TLS material of `env` is missing. Existing material is kept, so a restarted
/// lab serves the same certificates its clients already trust.
pub(crate) fn ensure(
    env: &str,
    layout: &EnvLayout,
    ca: &CaDir,
    passphrase: &SecretString,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let files = [
        layout.ca_bundle(),
        layout.listener_ca_cert(),
        layout.listener_ca_key(),
        layout.server_cert(),
        layout.server_key(),
        layout.client_ca(),
        layout.operator_cert(),
        layout.operator_key(),
    ];
    if files.iter().all(|f| f.exists()) {
        return Ok(false);
    }
    warden_files::ensure_private_dir(&layout.tls_dir())?;
    warden_files::ensure_private_dir(&layout.operator_dir())?;

    let root_pem = ca.root_pem().to_owned();
    // The listener CA and its leaves come from their one home, `warden_pki::ListenerCa`
    // (production's `warden server tls` uses the same code).
    let lca = ListenerCa::create(ca, env, passphrase, LISTENER_CA_VALIDITY, now)
        .map_err(Error::pki(env, "create the listener CA"))?;
    let server = lca
        .issue_server(
            &format!("openbao.{env}.warden.lab"),
            &["localhost".to_owned(), format!("openbao.{env}.warden.lab")],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            LEAF_VALIDITY,
            now,
        )
        .map_err(Error::pki(env, "issue the server certificate"))?;
    let operator = lca
        .issue_client(&format!("operator@{env}"), LEAF_VALIDITY, now)
        .map_err(Error::pki(env, "issue the operator certificate"))?;

    // Keys first, then certificates: a crash in between leaves no certificate without its key.
    write_atomic(
        &layout.listener_ca_key(),
        lca.key_pem().as_bytes(),
        Mode::OwnerOnly,
    )?;
    write_atomic(
        &layout.server_key(),
        server.key_pem.as_bytes(),
        Mode::OwnerOnly,
    )?;
    write_atomic(
        &layout.operator_key(),
        operator.key_pem.as_bytes(),
        Mode::OwnerOnly,
    )?;
    write_atomic(
        &layout.listener_ca_cert(),
        lca.cert_pem().as_bytes(),
        Mode::Public,
    )?;
    write_atomic(
        &layout.server_cert(),
        server.cert_pem.as_bytes(),
        Mode::Public,
    )?;
    write_atomic(&layout.client_ca(), lca.cert_pem().as_bytes(), Mode::Public)?;
    write_atomic(
        &layout.operator_cert(),
        operator.cert_pem.as_bytes(),
        Mode::Public,
    )?;
    write_atomic(&layout.ca_bundle(), root_pem.as_bytes(), Mode::Public)?;
    Ok(true)
}

/// Issues the nodes' own client certificate (`node@<env>`) from the listener CA when it is
/// missing — also in a lab created before it existed, whose listener CA is kept. Raft's
/// `retry_join` presents it to the leader instead of the operator's certificate.
pub(crate) fn ensure_node_cert(
    env: &str,
    layout: &EnvLayout,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    if layout.node_cert().exists() && layout.node_key().exists() {
        return Ok(false);
    }
    let read = |p: std::path::PathBuf| crate::read_text(&p).map_err(|e| Error::io(&p, "read", e));
    let cert = read(layout.listener_ca_cert())?;
    let key = zeroize::Zeroizing::new(read(layout.listener_ca_key())?);
    let lca = ListenerCa::load(&cert, &key).map_err(Error::pki(env, "load the listener CA"))?;
    let node = lca
        .issue_client(&format!("node@{env}"), LEAF_VALIDITY, now)
        .map_err(Error::pki(env, "issue the nodes' client certificate"))?;
    write_atomic(&layout.node_key(), node.key_pem.as_bytes(), Mode::OwnerOnly)?;
    write_atomic(&layout.node_cert(), node.cert_pem.as_bytes(), Mode::Public)?;
    Ok(true)
}

/// Makes the listener's client CA bundle the listener CA plus `identity_ca_pem` (the
/// environment's PKI intermediate). Returns whether the file changed.
pub(crate) fn ensure_client_ca(layout: &EnvLayout, identity_ca_pem: &str) -> Result<bool, Error> {
    let listener = crate::read_text(layout.listener_ca_cert())
        .map_err(|e| Error::io(&layout.listener_ca_cert(), "read", e))?;
    let want = warden_pki::client_ca_bundle(&listener, Some(identity_ca_pem));
    let have = crate::read_text(layout.client_ca()).unwrap_or_default();
    if have == want {
        return Ok(false);
    }
    write_atomic(&layout.client_ca(), want.as_bytes(), Mode::Public)?;
    Ok(true)
}
