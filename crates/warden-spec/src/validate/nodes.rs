//! An environment's raft nodes: `[[environments.<name>.nodes]]` with a name, an API address and
//! a cluster address each.
//!
//! `address` and `nodes` are exclusive. A client fails over across the nodes' own addresses
//! (standbys forward to the active node), so a cluster needs no single address; one given beside
//! the nodes would leave two answers to "where do I connect" and is refused rather than guessed
//! at. A cluster behind a load balancer whose nodes the spec does not describe is declared with
//! `address` alone.

use crate::diag::Reporter;
use crate::model::{Node, Slug};
use crate::raw::RawEnvironment;

/// The validated nodes of one environment (empty when it declares none). `key` is
/// `environments.<name>`.
pub(super) fn nodes(e: &RawEnvironment, key: &str, r: &mut Reporter<'_>) -> Vec<Node> {
    let Some(list) = &e.nodes else {
        return Vec::new();
    };
    let key = format!("{key}.nodes");
    if list.get_ref().is_empty() {
        r.error_help(
            list.span(),
            &key,
            "an empty node list",
            Some("declare each OpenBao server as [[environments.<name>.nodes]], or remove `nodes` for a one-server environment".into()),
        );
        return Vec::new();
    }
    if let Some(a) = &e.address {
        r.error_help(
            a.span(),
            key.replace(".nodes", ".address"),
            "`address` and `nodes` are exclusive",
            Some("clients fail over across the nodes' addresses: remove `address` (or remove `nodes` if this is one server or a load balancer Warden should use alone)".into()),
        );
    }
    let mut out: Vec<Node> = Vec::new();
    // Normalised addresses seen so far, API and cluster alike: a node's API port is never
    // another's (or its own) cluster port.
    let mut seen: Vec<(String, String)> = Vec::new();
    for n in list.get_ref() {
        let n = n.get_ref();
        let name = match Slug::parse(n.name.get_ref()) {
            Ok(s) => s,
            Err(e) => {
                r.error(n.name.span(), format!("{key}.name"), e);
                continue;
            }
        };
        if out.iter().any(|o| o.name == name) {
            r.error(
                n.name.span(),
                format!("{key}.name"),
                format!("node `{name}` is declared twice"),
            );
            continue;
        }
        let mut ok = true;
        for (field, value, example) in [
            ("address", &n.address, "https://10.0.0.11:8200"),
            (
                "cluster_address",
                &n.cluster_address,
                "https://10.0.0.11:8201",
            ),
        ] {
            let at = format!("{key}.{field}");
            match https_authority(value.get_ref()) {
                Err(why) => {
                    r.error_help(
                        value.span(),
                        &at,
                        format!("`{}` {why}", value.get_ref()),
                        Some(format!("for example \"{example}\"")),
                    );
                    ok = false;
                }
                Ok(norm) => {
                    if let Some((_, other)) = seen.iter().find(|(s, _)| *s == norm) {
                        r.error_help(
                            value.span(),
                            &at,
                            format!("`{}` is already used by {other}", value.get_ref()),
                            Some("every node needs its own API and cluster address".into()),
                        );
                        ok = false;
                    }
                    seen.push((norm, format!("node `{name}` ({field})")));
                }
            }
        }
        if ok {
            out.push(Node {
                name,
                address: n.address.get_ref().trim_end_matches('/').to_owned(),
                cluster_address: n.cluster_address.get_ref().trim_end_matches('/').to_owned(),
            });
        }
    }
    out
}

/// `https://host[:port][/]` → the lower-cased `host:port` (for comparisons), or why not.
fn https_authority(s: &str) -> Result<String, &'static str> {
    let rest = match s.strip_prefix("https://") {
        Some(r) => r,
        None if s.starts_with("http://") => {
            return Err("is not HTTPS: nodes are reached over HTTPS only");
        }
        None => return Err("is not an https:// URL"),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() {
        return Err("has a path: a node address is https://host[:port]");
    }
    if authority.is_empty()
        || authority.contains(|c: char| c.is_whitespace() || matches!(c, '@' | '?' | '#'))
    {
        return Err("has no valid host");
    }
    // The port follows the last ':' outside an IPv6 literal's brackets.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    if let Some(i) = authority[host_end..].rfind(':') {
        let (host, port) = authority.split_at(host_end + i);
        if host.is_empty() || !matches!(port[1..].parse::<u16>(), Ok(p) if p > 0) {
            return Err("has no valid host and port");
        }
    }
    Ok(authority.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::https_authority;

    #[test]
    fn node_addresses_are_https_host_and_port() {
        assert_eq!(
            https_authority("https://Node-1.example:8200/").unwrap(),
            "node-1.example:8200"
        );
        assert_eq!(https_authority("https://[::1]:8200").unwrap(), "[::1]:8200");
        assert!(https_authority("https://10.0.0.1").is_ok());
        assert!(
            https_authority("http://10.0.0.1:8200")
                .unwrap_err()
                .contains("HTTPS only")
        );
        assert!(https_authority("10.0.0.1:8200").is_err());
        assert!(https_authority("https://a:8200/v1").is_err());
        assert!(https_authority("https://:8200").is_err());
        assert!(https_authority("https://a:0").is_err());
        assert!(https_authority("https://a:99999").is_err());
        assert!(https_authority("https://u@a:1").is_err());
    }
}
