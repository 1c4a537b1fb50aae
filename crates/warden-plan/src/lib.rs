//! Provisioning: the spec's desired state for each environment, read against what OpenBao
//! holds, as a plan of changes with reasons, then an idempotent apply.
//!
//! - [`desired_state`]: spec + environment → objects (mounts, auth backends, policies, PKI,
//!   cert-auth, AppRole and JWT roles), pure; [`desired_objects`] makes the same lazily.
//! - [`plan_env`]: reads live state (bounded concurrency over one keep-alive client) and
//!   diffs it field by field; reads only.
//! - [`apply_env`]: carries a plan out in dependency order and records what Warden created in
//!   its own KV mount, so `--prune` only ever removes Warden's own objects.
//! - [`lint`]: least-privilege checks over desired and live policies; [`operator`]: the
//!   operator policy apply writes, and its lint (no root-only path, no wildcard beyond
//!   Warden's mounts).
//!
//! Modules: `desired` (mounts, auth backends, policies and login roles per identity) and
//! `engines` (transit keys, databases, domain certificates, workload roles, the purpose
//! registry, and [`unpurposed`]) build the desired state; [`policy`] renders each identity's
//! grants as HCL; `object` names each object ([`Desired`], [`Kind`], [`ObjectId`]); `plan`
//! reads and compares each object as it arrives (bounded concurrency: `warden_bao::bounded`),
//! with `diff` for the field diff;
//! `apply` writes, and `owned` keeps the ownership record `--prune` relies on; [`Error`] says
//! what failed against which environment.
//!
//! Every name and path it writes comes from [`warden_spec::naming`], the contract the agent,
//! the registry and the CLI read the same objects by.

mod apply;
mod desired;
mod diff;
mod engines;
mod error;
pub mod lint;
mod object;
pub mod operator;
mod owned;
mod plan;
pub mod planner;
pub mod policy;
pub mod serve;

pub use apply::{ApplyReport, ProgressFn, apply_env};
pub use desired::{EnvInputs, desired_objects, desired_state};
pub use diff::FieldDiff;
pub use engines::unpurposed;
pub use error::Error;
pub use object::{Desired, Kind, ObjectId};
pub use plan::{Action, Change, EnvPlan, plan_env};
