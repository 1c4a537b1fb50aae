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
//! [`LabEnv::start`] is the full TLS + mTLS mode: a throwaway Warden lab (offline root,
//! per-environment OpenBao with client-certificate listeners, Shamir init and unseal, PKI
//! intermediate) built by the same code as `warden lab up`.
//!
//! [`http::get`] is a deliberately tiny HTTP/1.1 client (plain or TLS) for readiness checks and
//! assertions, so that this crate does not depend on `warden-bao`, which it is used to test.
//! [`process`] re-exports the supervision primitives (`pid_listens_on`, `wait_listening`, ...).
//!
//! The `start` functions panic with a diagnostic (the server's last output lines) because they
//! are test fixtures; the `try_start` variants return [`Error`] instead.

mod bao;
mod error;
pub mod http;
mod lab;
mod output;
mod postgres;
mod random;

pub use bao::BaoDev;
pub use error::Error;
pub use lab::LabEnv;
pub use postgres::Postgres;
pub use warden_lab::process;
