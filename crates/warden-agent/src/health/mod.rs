//! `/health` and `/metrics`: what a supervisor and Prometheus see of a running agent.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /health` | JSON: `status` (`ok`, `degraded` or `failing`) and each output's state, serial, expiry, last render and error count. **200** while usable material is in place (`ok`, or `degraded`: something is pending or stale, and the body says what), **503** when something failed with nothing usable on disk (`failing`), so a plain HTTP check (systemd, a load balancer, `curl -f`) needs no JSON parsing. |
//! | `GET /metrics` | Prometheus text exposition (format 0.0.4), names below. |
//!
//! Metric names are a contract (dashboards and alerts are written against them), so they are
//! constants here and tested:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `warden_agent_output_expiry_seconds{output}` | gauge | seconds until the delivered certificate expires (negative once expired; absent for outputs without one) |
//! | `warden_agent_output_last_render_timestamp_seconds{output}` | gauge | Unix time of the last successful render (absent until the first) |
//! | `warden_agent_output_fresh{output}` | gauge | 1 when the output is fresh, 0 otherwise (what `/health` aggregates) |
//! | `warden_agent_render_errors_total{output}` | counter | failed renders or deliveries of the output since start |
//! | `warden_agent_output_repairs_total{output}` | counter | drift on disk (a removed file or symlink, a changed mode or owner) repaired since start |
//! | `warden_agent_clock_skew_seconds` | gauge | this host's clock minus the server's, from the last response's `Date` (absent until known) |
//! | `warden_agent_auth_errors_total` | counter | failed logins and token renewals since start |
//! | `warden_agent_requests_total` | counter | requests sent to OpenBao since start |
//! | `warden_agent_openbao_server_info{server}` | gauge | 1, labelled with the OpenBao node the agent talks to now: its one address, or the node of a cluster it last reached (it changes on failover; `/health` and `warden agent status` show it as `server`) |
//! | `warden_agent_database_lease_expiry_seconds{database}` | gauge | seconds until the `[[database]]` source's current lease ends as last granted (absent until first issued) |
//! | `warden_agent_database_fresh{database}` | gauge | 1 when the source holds a live lease and is not failing |
//! | `warden_agent_database_issues_total{database}` | counter | credentials issued for the source since start |
//! | `warden_agent_database_renewals_total{database}` | counter | successful renewals of its leases since start |
//! | `warden_agent_database_errors_total{database}` | counter | failed issues, renewals and revocations since start |
//!
//! `/health` also lists each database source (state, generation, lease end, counters). A source
//! that is stale or failed degrades the verdict like an output; one not used yet does not.
//!
//! **Who reads what.** The port is on loopback, but every local user can connect to it, so
//! `/health` serves each failure as its kind (`sealed`, `unreachable`, `filesystem`, …, see
//! [`ErrorKind`]) and never the message, which names files under the identity's directory and
//! OpenBao paths ([`public`]). The messages are on the control socket, which only the agent's
//! own user and root may open (`warden agent status`, [`crate::control`]). Nothing secret is
//! served anywhere: the snapshot holds names, serials, times, counters and messages that, like
//! the logs, never carry tokens, keys or secret values.
//!
//! The listener is loopback only (refused otherwise, [`HealthError::NotLoopback`]): the
//! endpoints are unauthenticated, and the agent's state is nobody else's business. Port 0
//! picks a free port; the bound address is written to `state/health.addr` so tools find it.
//! How it stays answerable while other local clients hold connections open or send slowly is
//! in [`server`].
//!
//! | module | concept |
//! |---|---|
//! | [`view`] | the status snapshot: the wire format of `/health` and of the control socket |
//! | [`public`] | what every local user may read: the `/health` body, errors as kinds |
//! | [`metrics`] | the Prometheus exposition of a snapshot |
//! | [`server`] | the HTTP server: limits, timeouts, routing |
//!
//! Generic over a [`StatusSource`] (any `Fn() -> Snapshot` is one), so it is tested without an
//! agent running.

#[cfg(test)]
mod fixtures;
pub mod metrics;
pub mod public;
pub mod server;
pub mod view;

pub use metrics::{
    METRIC_AUTH_ERRORS, METRIC_CLOCK_SKEW, METRIC_DB_ERRORS, METRIC_DB_EXPIRY, METRIC_DB_FRESH,
    METRIC_DB_ISSUES, METRIC_DB_RENEWALS, METRIC_EXPIRY, METRIC_FRESH, METRIC_LAST_RENDER,
    METRIC_RENDER_ERRORS, METRIC_REPAIRS, METRIC_REQUESTS, METRIC_SERVER, render_metrics,
};
pub use public::{ErrorKind, health_body};
pub use server::{ADDR_FILE, HealthError, HealthServer, read_addr_file};
pub use view::{AuthView, DatabaseView, Freshness, OutputView, Overall, Snapshot, StatusSource};
