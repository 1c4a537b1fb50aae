//! `warden-enroll`: puts a Warden identity on a host — its directory layout, the Unix user that
//! owns it, a key generated on the host, the CSR signed by the identity's role and proven to log
//! in, the `agent.toml` the agent then runs from, and its systemd unit. The agent itself (what
//! runs afterwards) is the `warden-agent` crate.
//!
//! Where to start:
//!
//! | need                                              | API                                        |
//! |---------------------------------------------------|--------------------------------------------|
//! | the per-identity directory layout                 | [`IdentityLayout`]                         |
//! | enroll an app or proxy (key on host, CSR, verify) | [`enroll`], [`EnrollRequest`], [`EnrollOptions`] |
//! | check a name before contacting anything           | [`enrollable`]                             |
//! | who owns the files (service user or current user) | [`Owner`], [`running_as_root`]             |
//! | the agent's configuration file                    | [`AgentConfig`]                            |
//! | when a certificate is due for renewal             | [`renewal_due`]                            |
//! | operators: key + CSR, approve, list, remove       | [`operator`]                               |
//! | a real environment's bootstrap (root revoked)     | [`bootstrap`]                              |
//! | transport certificates for containers and CI runners (ADR 0010) | [`transport`] |
//!
//! Modules: `enroll` (the enrollment itself), `existing` (whether the certificate on disk is
//! still the right one; pure), [`layout`] (where an identity's files live), `unix_user` (who
//! owns them), `agent_config` (the `agent.toml` written), `unit` (its systemd unit), `error`.
//!
//! Guarantees: the private key is generated on the host and written only through
//! `warden_files::write_atomic` with owner-only permissions; no type here holds key material in
//! a field that `Debug` or `Serialize` could print; a newly issued certificate is proven to log
//! in with exactly the identity's policy before it replaces anything on disk. Nothing is
//! printed: results are [`EnrollReport`], failures are [`Error`].

mod agent_config;
pub mod bootstrap;
mod enroll;
mod error;
mod existing;
pub mod layout;
pub mod operator;
pub mod serve;
pub mod transport;
mod unit;
mod unix_user;

pub use agent_config::{
    AgentConfig, AuthSection, ControlSection, DatabaseSection, ExecEnvSection, ExecSection,
    HealthSection, IdentitySection, OpenBaoSection, OutputSection, RenewalSection,
};
pub use enroll::{
    CertAction, CertificateReport, EnrollOptions, EnrollReport, EnrollRequest, PathsReport,
    Verification, enroll, enrollable,
};
pub use error::{Error, Result};
pub use existing::{IssueReason, renewal_due};
pub use layout::IdentityLayout;
/// `warden serve`'s identity and unit.
pub use serve::{ServeUnitSpec, systemd_unit as serve_systemd_unit};
pub use unit::{UnitSpec, systemd_unit};
pub use unix_user::{
    Owner, OwnerReport, USERADD, running_as_root, useradd_argv, validate_user_name,
};
