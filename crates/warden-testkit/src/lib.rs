//! Real OpenBao and PostgreSQL processes for Warden's tests — never fakes.
//!
//! * [`BaoDev::start`] runs the real `bao server -dev` (OpenBao
//!   [`EXPECTED_BAO_VERSION`](process::EXPECTED_BAO_VERSION)) on a free 127.0.0.1 port, and
//!   [`BaoDev::start_tls`] the same over HTTPS with a generated CA.
//! * [`Postgres::start`] runs a throwaway PostgreSQL cluster (`initdb` + `pg_ctl`) on a free
//!   127.0.0.1 port, as `nobody` when the tests run as root.
//!
//! Both are ready when returned: the harness has seen in `/proc` that the process *it* started
//! owns the port (a stray server on a reused port never receives a test's writes), and the
//! service answers. Both are killed, and their temporary directories removed, when the value is
//! dropped — also when the test panics. Secrets (the root token, the database password) never
//! appear in a child's argv or environment, in a file left behind, or in `Debug` output.
//!
//! [`BareBao::start`] is a real server left *uninitialised* (raft, HTTPS), for the custody
//! ceremony's tests and for failover tests (a node that answers but can serve nothing).
//!
//! [`LabEnv::start`] is the full TLS + mTLS mode: a throwaway Warden lab (offline root,
//! per-environment OpenBao with client-certificate listeners, Shamir init and unseal, PKI
//! intermediate) built by the same code as `warden lab up`.
//!
//! The lab is built by `warden-lab` with `warden-bao`'s client, so this crate depends on
//! `warden-bao` and `warden-bao` does not use it: the client's tests against real servers are
//! this crate's integration tests (`tests/testkit/bao_client`). The readiness checks still use
//! [`http::get`], a deliberately tiny HTTP/1.1 client (plain or TLS): a server's first answers
//! are checked without the retries and TLS set-up of the client under test.
//! [`process`] re-exports the supervision primitives (`pid_listens_on`, `wait_listening`, ...).
//!
//! Shared by the end-to-end tests of the binaries, so no test binary keeps its own copy:
//!
//! * [`cli::Cli`] runs a binary (`warden`, `warden-agent`; the test passes
//!   `env!("CARGO_BIN_EXE_<name>")`) with a clean environment and a time limit;
//!   [`cli::Run`] is a finished run as text, with assertions that print the whole run;
//!   [`cli::on_lab`] adds `--spec SPEC --lab LAB --env test` to a command.
//! * [`RunningAgent`] is a long-running agent process, killed when dropped.
//! * [`wait_for`], [`wait_for_async`] and [`Poll`] wait for what a background process does.
//! * [`dead_address`] is a loopback address that refuses connections, for failover tests.
//! * [`dns::LoopbackDns`] answers `A` queries for a test's names with loopback addresses, for
//!   OpenBao's ACME validator (`config/acme`'s `dns_resolver`).
//! * [`LabGuard`] is a lab made by `warden lab up` itself, taken down when dropped.
//! * [`NodeDirs`] lays out a production node's directories with a lab's TLS material, and
//!   [`prod_nodes_spec`] writes a spec listing nodes, for `warden server config`.
//! * [`identity`] logs in the way apps, containers and pipelines do (cert, AppRole, JWT).
//! * [`files::mode`] and [`files::write_private`] check and write permission bits;
//!   [`EXAMPLE_SPEC`] is the shipped example spec, and [`spec_with_backup`] it with backups;
//!   [`example_spec`] loads it as a harness lab (no PostgreSQL) runs it.
//! * [`tls::handshake`] runs a TLS handshake in memory and [`tls::HandshakeLoop`] a loop of
//!   them beside a test: the "no failed handshake" check of CA rotations (ADR 0029, 0030).
//! * [`SpecLab`] is a lab with a spec written for it, commands run against both;
//!   [`agent_once`] and [`agent_once_and_read`] run an enrolled identity's agent once.
//!
//! Modules behind those items: `bao`, `bare` and `postgres` (the servers), `lab` and `lab_guard` (the
//! two kinds of lab), `agent`, `wait`, `spec`, `spec_lab`, `output` (a server's output, secrets redacted),
//! `random` (fixture secrets), `error`.
//!
//! The `start` functions panic with a diagnostic (the server's last output lines) because they
//! are test fixtures; the `try_start` variants return [`Error`] instead.

mod agent;
mod bao;
mod bare;
pub mod cli;
pub mod dead;
pub mod dns;
mod error;
pub mod files;
pub mod http;
pub mod identity;
mod lab;
mod lab_guard;
mod node_dirs;
mod output;
pub mod pki;
mod postgres;
mod random;
mod spec;
mod spec_lab;
pub mod tls;
mod wait;

pub use agent::{RunningAgent, delivery_report};
pub use bao::BaoDev;
pub use bare::BareBao;
pub use dead::dead_address;
pub use error::Error;
pub use lab::{LabEnv, example_permitted_dns};
pub use lab_guard::LabGuard;
pub use node_dirs::{NodeDirs, prod_nodes_spec};
pub use postgres::Postgres;
pub use spec::{EXAMPLE_SPEC, EXAMPLE_SPEC_TEXT, example_spec, spec_with_backup};
pub use spec_lab::{SpecLab, agent_once, agent_once_and_read};
pub use wait::{Poll, wait_for, wait_for_async};
pub use warden_lab::process;
