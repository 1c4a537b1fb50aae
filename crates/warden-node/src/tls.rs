//! A production node's TLS files (`warden server tls`), issued by the environment's listener CA
//! ([`warden_pki::ListenerCa`], the same code the lab uses):
//!
//! ```text
//! <out>/listener-ca.crt, listener-ca.key   the environment's listener CA (key owner-only;
//!                                          keep it offline between uses)
//! <out>/<node>/server.crt, server.key      the listener's certificate: leaf + listener CA,
//!                                          SANs from the node's address and cluster address
//! <out>/<node>/node.crt, node.key          the client certificate the node joins its peers with
//! <out>/<node>/client-ca.pem               listener CA (+ the PKI intermediate, `identity_ca`)
//! <out>/<node>/ca.pem                      the offline root: what the peers' certificates chain to
//! <out>/clients/<name>.crt, <name>.key     a client certificate the listener accepts before any
//!                                          operator exists (the ceremony, custodians' unseal)
//! ```
//!
//! Copy `<out>/<node>/` to the node's `/etc/warden/<env>/tls/` (the names `warden server
//! config` writes into the configuration).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::{Duration, OffsetDateTime};
use warden_files::{Mode, write_atomic};
use warden_pki::ListenerCa;
use warden_spec::Environment;

use crate::error::NodeError;

/// How long a node's server and join certificates are valid.
pub const NODE_CERT_VALIDITY: Duration = Duration::days(365);

/// What [`write_node_tls`] wrote for one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeTls {
    /// The node.
    pub node: String,
    /// Its directory of TLS files.
    pub dir: PathBuf,
    /// The names in its server certificate.
    pub names: Vec<String>,
    /// Whether the certificates were issued now (false: kept, only `client-ca.pem` refreshed).
    pub issued: bool,
    /// Whether `client-ca.pem` includes the PKI intermediate.
    pub trusts_identity_ca: bool,
}

/// The host part of `https://host[:port]` (brackets of an IPv6 literal removed).
fn host_of(address: &str) -> Result<String, NodeError> {
    let authority = crate::production::host_port(address, 1)?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
        None => authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&authority)
            .to_owned(),
    };
    Ok(host)
}

/// Issues node `node`'s TLS files into `out/<node>/`, unless they are all there already (a
/// re-run keeps a node's certificates, so adding a node touches no other node's keys).
/// `client-ca.pem` is always rewritten: the listener CA, plus `identity_ca_pem` (the PKI
/// intermediate, whose operator and identity certificates the listener must then accept).
pub fn write_node_tls(
    env: &Environment,
    node: &str,
    lca: &ListenerCa,
    root_pem: &str,
    identity_ca_pem: Option<&str>,
    out: &Path,
    now: OffsetDateTime,
) -> Result<NodeTls, NodeError> {
    let this = env
        .nodes
        .iter()
        .find(|n| n.name.as_str() == node)
        .ok_or_else(|| NodeError::UnknownNode {
            environment: env.name.to_string(),
            node: node.to_owned(),
            known: env.nodes.iter().map(|n| n.name.to_string()).collect(),
        })?;
    let mut names = vec![host_of(&this.address)?];
    let cluster = host_of(&this.cluster_address)?;
    if !names.contains(&cluster) {
        names.push(cluster);
    }
    let (ips, dns): (Vec<String>, Vec<String>) = names
        .iter()
        .cloned()
        .partition(|n| n.parse::<IpAddr>().is_ok());
    let ips: Vec<IpAddr> = ips.iter().filter_map(|i| i.parse().ok()).collect();
    let dir = out.join(node);
    warden_files::ensure_private_dir(&dir)?;
    let files = ["server.crt", "server.key", "node.crt", "node.key", "ca.pem"];
    let issued = !files.iter().all(|f| dir.join(f).exists());
    if issued {
        let pki = |what: &'static str| {
            let env = env.name.to_string();
            move |source| NodeError::Pki {
                environment: env,
                what,
                source,
            }
        };
        let server = lca
            .issue_server(node, &dns, &ips, NODE_CERT_VALIDITY, now)
            .map_err(pki("issue the server certificate"))?;
        let join = lca
            .issue_client(
                &format!("{node}.nodes.{}", env.name),
                NODE_CERT_VALIDITY,
                now,
            )
            .map_err(pki("issue the join client certificate"))?;
        // Keys first: a crash in between leaves no certificate without its key.
        write_atomic(
            &dir.join("server.key"),
            server.key_pem.as_bytes(),
            Mode::OwnerOnly,
        )?;
        write_atomic(
            &dir.join("node.key"),
            join.key_pem.as_bytes(),
            Mode::OwnerOnly,
        )?;
        write_atomic(
            &dir.join("server.crt"),
            server.cert_pem.as_bytes(),
            Mode::Public,
        )?;
        write_atomic(
            &dir.join("node.crt"),
            join.cert_pem.as_bytes(),
            Mode::Public,
        )?;
        write_atomic(&dir.join("ca.pem"), root_pem.as_bytes(), Mode::Public)?;
    }
    let bundle = warden_pki::client_ca_bundle(lca.cert_pem(), identity_ca_pem);
    write_atomic(&dir.join("client-ca.pem"), bundle.as_bytes(), Mode::Public)?;
    Ok(NodeTls {
        node: node.to_owned(),
        dir,
        names,
        issued,
        trusts_identity_ca: identity_ca_pem.is_some_and(|p| !p.trim().is_empty()),
    })
}

/// What [`write_client_tls`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ClientTls {
    /// The client's name.
    pub name: String,
    /// Its certificate's common name.
    pub common_name: String,
    /// The certificate file (the key is beside it, `.key`, owner-only).
    pub cert: PathBuf,
    /// Whether it was issued now (false: kept).
    pub issued: bool,
}

/// Issues a client certificate `<name>.clients.<env>` from the listener CA into
/// `out/clients/<name>.{crt,key}`, unless both exist. Until the first operator is bootstrapped
/// nothing else opens the mTLS listener, so the ceremony and the custodians who unseal use one
/// of these; it carries no OpenBao permission (it logs in nowhere).
pub fn write_client_tls(
    env: &str,
    name: &str,
    lca: &ListenerCa,
    out: &Path,
    now: OffsetDateTime,
) -> Result<ClientTls, NodeError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(NodeError::invalid(
            "client",
            name,
            "must be letters, digits and '-'",
        ));
    }
    let dir = out.join("clients");
    warden_files::ensure_private_dir(&dir)?;
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let common_name = format!("{name}.clients.{env}");
    let issued = !(crt.exists() && key.exists());
    if issued {
        let leaf = lca
            .issue_client(&common_name, NODE_CERT_VALIDITY, now)
            .map_err(|source| NodeError::Pki {
                environment: env.to_owned(),
                what: "issue the client certificate",
                source,
            })?;
        write_atomic(&key, leaf.key_pem.as_bytes(), Mode::OwnerOnly)?;
        write_atomic(&crt, leaf.cert_pem.as_bytes(), Mode::Public)?;
    }
    Ok(ClientTls {
        name: name.to_owned(),
        common_name,
        cert: crt,
        issued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_addresses() {
        assert_eq!(host_of("https://10.0.0.11:8200").unwrap(), "10.0.0.11");
        assert_eq!(
            host_of("https://bao-1.example.net").unwrap(),
            "bao-1.example.net"
        );
        assert_eq!(host_of("https://[fd00::1]:8200").unwrap(), "fd00::1");
    }
}
