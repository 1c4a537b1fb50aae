//! Several addresses for one cluster: which node a [`Client`] talks to, and when it moves to
//! another.
//!
//! This module implements the failover contract written in the crate docs (`lib.rs`,
//! "Failover"); the two change together.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use url::Url;

use crate::client::{Call, Client, Reply};
use crate::error::{Error, Result, root_cause};
use crate::retry::Idempotent;
use crate::sys::Health;

/// One node a client may talk to.
#[derive(Debug)]
pub(crate) struct Node {
    /// As configured (`https://10.0.0.11:8200/`).
    pub(crate) address: Url,
    /// `address` + `v1/`: every request path is joined under it.
    pub(crate) api_base: Url,
}

/// The nodes of one client, in the configured order, and which one is current.
#[derive(Debug)]
pub(crate) struct Nodes {
    list: Vec<Node>,
    current: AtomicUsize,
    /// The current node was found active (by `sys/health`) and has not failed since.
    settled: AtomicBool,
}

impl Nodes {
    /// Nodes for `addresses` (already checked, at least one), the first one current.
    pub(crate) fn new(addresses: Vec<Url>) -> Result<Self> {
        let list = addresses
            .into_iter()
            .map(|address| {
                let mut api_base = address.clone();
                api_base
                    .path_segments_mut()
                    .map_err(|()| Error::config("address cannot be a base URL"))?
                    .pop_if_empty()
                    .push("v1");
                Ok(Node { address, api_base })
            })
            .collect::<Result<Vec<_>>>()?;
        if list.is_empty() {
            return Err(Error::config("no server address is configured"));
        }
        Ok(Self {
            list,
            current: AtomicUsize::new(0),
            settled: AtomicBool::new(false),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    pub(crate) fn node(&self, i: usize) -> &Node {
        &self.list[i]
    }

    pub(crate) fn addresses(&self) -> impl Iterator<Item = &Url> {
        self.list.iter().map(|n| &n.address)
    }

    /// Every node once, starting at the current one.
    fn round(&self) -> impl Iterator<Item = usize> + use<> {
        let (start, n) = (self.current(), self.len());
        (0..n).map(move |k| (start + k) % n)
    }

    /// Node `i` failed: if it is still current, the next one becomes current, so concurrent
    /// and later calls start there instead of paying for the same failure.
    fn note_failed(&self, i: usize) {
        self.settled.store(false, Ordering::Relaxed);
        let next = (i + 1) % self.len();
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Node `i` answered: stay with it.
    fn stick_to(&self, i: usize) {
        self.current.store(i, Ordering::Relaxed);
    }

    /// Node `i` reported itself active: stay with it, and stop looking until a node fails.
    fn settle_on(&self, i: usize) {
        self.stick_to(i);
        self.settled.store(true, Ordering::Relaxed);
    }
}

/// What one node said when a client with several addresses failed over from it.
#[derive(Debug)]
#[non_exhaustive]
pub struct NodeFailure {
    /// The node's address, as configured.
    pub address: String,
    /// Its failure.
    pub error: Error,
}

/// Whether a failure on one node is a reason to try the next one for this call.
fn move_on(err: &Error, idempotent: Idempotent) -> bool {
    err.not_applied()
        || (idempotent == Idempotent::Yes
            && matches!(
                err,
                Error::Timeout { .. } | Error::Transport { .. } | Error::Server { status: 307, .. }
            ))
}

/// Requests about one node's own state, never sent to another node.
fn node_local(path: &str) -> bool {
    matches!(
        path.trim_matches('/'),
        "sys/health" | "sys/seal-status" | "sys/init" | "sys/unseal" | "sys/seal"
    )
}

impl Client {
    /// One round of `call`: the current node, then the others in order as long as each fails
    /// in a way the contract above lets the call move on from.
    pub(crate) async fn send_round(&self, call: &Call<'_>) -> Result<Reply> {
        let nodes = self.nodes();
        if nodes.len() == 1 || node_local(call.path) {
            return self.send_to(nodes.current(), call).await;
        }
        if !nodes.settled.load(Ordering::Relaxed) {
            self.find_active().await;
        }
        let mut failures = Vec::new();
        for i in nodes.round() {
            match self.send_to(i, call).await {
                Ok(reply) => {
                    nodes.stick_to(i);
                    return Ok(reply);
                }
                Err(error) if move_on(&error, call.idempotent) => {
                    nodes.note_failed(i);
                    let address = nodes.node(i).address.to_string();
                    tracing::info!(node = %address, path = call.path, %error, "OpenBao node cannot serve; trying the next one");
                    failures.push(NodeFailure { address, error });
                }
                Err(error) => {
                    // A lost exchange on a call that must not be replayed: the error stands,
                    // but later calls start at the next node. Any other answer is a live node's.
                    if matches!(
                        error,
                        Error::Timeout { .. }
                            | Error::Transport { .. }
                            | Error::Server { status: 307, .. }
                    ) {
                        nodes.note_failed(i);
                    } else {
                        nodes.stick_to(i);
                    }
                    return Err(error);
                }
            }
        }
        Err(Error::AllNodesFailed { failures })
    }

    /// Makes the active node current, if one answers `sys/health` as active; otherwise leaves
    /// the current node as it is (the request round then finds whichever node serves).
    ///
    /// Why bother when standbys forward: a standby answers reads from its own copy of the
    /// data, which can lag the active node. On a 3-node OpenBao 2.7.2 cluster, a KV read from
    /// one standby right after a write acknowledged through the other still found nothing
    /// (docs/openbao.md). So a client that can choose talks to the active node; it looks once
    /// at its first request and again after a node fails, never per request.
    async fn find_active(&self) {
        let nodes = self.nodes();
        for i in nodes.round() {
            if matches!(self.health_at(i).await, Ok(h) if h.is_ready()) {
                nodes.settle_on(i);
                return;
            }
        }
    }

    /// One round of readiness: the first node (from the current one) that is initialised,
    /// unsealed and active becomes current. A single-address client reports its node's own
    /// state, as it always did.
    pub(crate) async fn ready_round(&self) -> Result<Health> {
        let nodes = self.nodes();
        let mut failures = Vec::new();
        for i in nodes.round() {
            let address = nodes.node(i).address.to_string();
            let error = match self.health_at(i).await {
                Ok(h) if h.is_ready() => {
                    nodes.settle_on(i);
                    return Ok(h);
                }
                Ok(h) if !h.initialized => Error::NotInitialized {
                    address: address.clone(),
                },
                Ok(h) if h.sealed => Error::Sealed {
                    address: address.clone(),
                },
                Ok(h) => Error::Server {
                    status: h.http_status,
                    path: "sys/health".to_owned(),
                    errors: vec!["node is a standby".to_owned()],
                },
                Err(e) => e,
            };
            if nodes.len() == 1 {
                return Err(error);
            }
            failures.push(NodeFailure { address, error });
        }
        Err(Error::AllNodesFailed { failures })
    }
}

/// `all 3 OpenBao nodes unreachable: https://a:8200: Connection refused (os error 111); …`
pub(crate) fn describe(failures: &[NodeFailure]) -> String {
    let all = |f: fn(&Error) -> bool| failures.iter().all(|x| f(&x.error));
    let word = if all(Error::is_unreachable) {
        "unreachable"
    } else if all(Error::is_sealed) {
        "sealed"
    } else {
        "failed"
    };
    let each: Vec<String> = failures
        .iter()
        .map(|f| format!("{}: {}", f.address.trim_end_matches('/'), short(&f.error)))
        .collect();
    format!(
        "all {} OpenBao nodes {word}: {}",
        failures.len(),
        each.join("; ")
    )
}

/// One node's failure without the address (the list already names it).
fn short(err: &Error) -> String {
    match err {
        Error::Unreachable { source, .. } => root_cause(source.as_ref()),
        Error::Sealed { .. } => "sealed".to_owned(),
        Error::NotInitialized { .. } => "not initialized".to_owned(),
        Error::NotActive { errors, .. } => {
            format!("standby without an active node ({})", errors.join("; "))
        }
        Error::Tls { failure, .. } => format!("TLS: {failure}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Nodes {
        let urls = (0..n)
            .map(|i| Url::parse(&format!("https://10.0.0.{i}:8200/")).expect("url"))
            .collect();
        Nodes::new(urls).expect("nodes")
    }

    #[test]
    fn rounds_start_at_the_current_node_and_wrap() {
        let n = nodes(3);
        assert_eq!(n.round().collect::<Vec<_>>(), [0, 1, 2]);
        n.note_failed(0);
        assert_eq!(n.round().collect::<Vec<_>>(), [1, 2, 0]);
        // A failure of a node that is no longer current changes nothing.
        n.note_failed(0);
        assert_eq!(n.current(), 1);
        n.note_failed(1);
        n.note_failed(2);
        assert_eq!(n.current(), 0, "wraps around");
        n.stick_to(2);
        assert_eq!(n.round().collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(
            n.node(1).api_base.as_str(),
            "https://10.0.0.1:8200/v1",
            "requests go under /v1"
        );
    }

    #[test]
    fn non_idempotent_calls_move_on_only_when_nothing_was_applied() {
        let addr = "https://a:1";
        let sealed = Error::from_status(503, "p", addr, br#"{"errors":["Vault is sealed"]}"#);
        let election = Error::from_status(
            500,
            "p",
            addr,
            br#"{"errors":["local node not active but active cluster node not found"]}"#,
        );
        let standby = Error::from_status(
            400,
            "sys/rekey/init",
            addr,
            br#"{"errors":["Vault is in standby mode"]}"#,
        );
        let timeout = Error::Timeout {
            path: "p".into(),
            after: std::time::Duration::from_secs(1),
        };
        let redirect = Error::from_status(307, "p", addr, b"");
        let denied = Error::from_status(403, "p", addr, br#"{"errors":["permission denied"]}"#);
        for e in [&sealed, &election, &standby] {
            assert!(move_on(e, Idempotent::No), "{e:?}");
            assert!(Idempotent::No.may_retry(e), "{e:?}");
        }
        assert!(matches!(election, Error::NotActive { .. }), "{election:?}");
        assert!(election.is_retryable());
        for e in [&timeout, &redirect] {
            assert!(move_on(e, Idempotent::Yes), "{e:?}");
            assert!(!move_on(e, Idempotent::No), "may have been applied: {e:?}");
        }
        assert!(
            !move_on(&denied, Idempotent::Yes),
            "a live node's refusal stands"
        );
        assert!(
            node_local("/sys/unseal") && node_local("sys/health") && !node_local("sys/rekey/init")
        );
    }

    #[test]
    fn all_nodes_failed_names_every_address_and_classifies_as_a_whole() {
        let refused = || Error::Unreachable {
            address: "x".into(),
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "Connection refused (os error 111)",
            )),
        };
        let all_down = Error::AllNodesFailed {
            failures: vec![
                NodeFailure {
                    address: "https://a:8200/".into(),
                    error: refused(),
                },
                NodeFailure {
                    address: "https://b:8200/".into(),
                    error: refused(),
                },
            ],
        };
        assert_eq!(
            all_down.to_string(),
            "all 2 OpenBao nodes unreachable: https://a:8200: Connection refused (os error 111); \
             https://b:8200: Connection refused (os error 111)"
        );
        assert!(
            all_down.is_unreachable() && all_down.request_not_sent() && all_down.is_retryable()
        );
        let mixed = Error::AllNodesFailed {
            failures: vec![
                NodeFailure {
                    address: "https://a:8200/".into(),
                    error: refused(),
                },
                NodeFailure {
                    address: "https://b:8200/".into(),
                    error: Error::Sealed {
                        address: "b".into(),
                    },
                },
            ],
        };
        let text = mixed.to_string();
        assert!(text.starts_with("all 2 OpenBao nodes failed: "), "{text}");
        assert!(text.ends_with("https://b:8200: sealed"), "{text}");
        assert!(!mixed.is_sealed() && !mixed.is_unreachable() && !mixed.request_not_sent());
        assert!(mixed.not_applied() && Idempotent::No.may_retry(&mixed));
    }
}
