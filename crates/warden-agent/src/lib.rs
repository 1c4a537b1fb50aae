//! `warden-agent`: one process per identity that logs in with the identity's own credential,
//! keeps it renewed and delivers exactly its outputs. The same code runs as `warden agent` and
//! as the small `warden-agent` binary for hosts (`src/bin/warden-agent`). See `docs/agent.md`
//! for the contract these modules implement; enrollment (layout, Unix user, the first
//! certificate, `agent.toml`) is the `warden-enroll` crate's job.
//!
//! Where to start:
//!
//! | need                                         | API                                              |
//! |----------------------------------------------|--------------------------------------------------|
//! | read and validate `agent.toml`               | [`Config::load`] (errors at `file:line:col`)     |
//! | start it as both binaries do                 | [`launch`]                                       |
//! | run it                                       | [`Agent::new`], [`Agent::run`], [`Agent::run_once`] |
//! | status, "rotate now", stop (for endpoints)   | [`Agent::handle`] → [`AgentHandle`]              |
//! | when things renew                            | [`schedule`]                                     |
//! | what was delivered on this host              | [`state`]                                        |
//! | `/health`, `/metrics`, the control socket    | [`health`], [`control`]                          |
//! | check an identity on its host (`warden doctor`) | [`doctor::run`]                                |
//! | run a service with secrets in its environment | [`launch::Launch::exec`] ([`exec`])             |
//!
//! Data flows one way: `config` → `auth` (a token on the shared client) → `output` (renders
//! bytes, never writes) → `deliver` (the only writer: verifies, then writes atomically, never
//! through a symlink nor a directory another user could swap; docs/agent.md, "Threat model") →
//! `reload` (only after a real change) → `state` (the record). `runtime` starts the tasks
//! (`auth`, `output_task`, `database`, `report`); every task writes its status to `board`,
//! which imports none of them, and the endpoints read it through [`AgentHandle`].

pub mod auth;
mod board;
mod cert_disk;
pub mod config;
pub mod control;
pub mod database;
pub mod deliver;
pub mod doctor;
pub mod exec;
pub mod health;
mod issuer_watch;
pub mod launch;
pub mod output;
mod output_task;
pub mod reload;
mod report;
pub mod runtime;
pub mod schedule;
mod slots;
pub mod state;
mod trust;

use std::path::PathBuf;

pub use auth::AuthError;
pub use config::{Config, ConfigError};
pub use deliver::DeliverError;
pub use runtime::{
    Agent, AgentHandle, AgentStatus, AuthStatus, Health, OnceReport, OutputStatus, UnknownOutput,
};

/// Why an agent could not start (failures while running are retried and reported in the
/// status instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// `agent.toml` is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The trust anchor file (`[openbao] ca_file`) is missing or holds no certificate.
    #[error("the trust anchor {path} is not usable: {reason}")]
    TrustAnchor {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS identity or a credential could not be loaded, or the client not built.
    #[error(transparent)]
    Auth(AuthError),
    /// The OpenBao address or TLS settings were refused by the client.
    #[error("could not set up the OpenBao client: {source}")]
    Client {
        /// Why.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// The state directory could not be created.
    #[error(transparent)]
    State(state::StateError),
}
