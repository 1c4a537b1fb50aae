//! The posture dashboard (docs/serve.md, "Dashboard"): one server-rendered HTML page with its
//! CSS inline and an inline SVG timeline — no JavaScript, no external asset, so it works from
//! a file, behind a strict CSP, and on the phone of whoever was paged at night.
//!
//! [`render`] is pure: [`DashboardData`] in, a complete HTML document out. [`collect_env`]
//! gathers one environment's data from OpenBao (posture, lease, job records, raft nodes), so
//! `warden dashboard` and a `GET /` route show the same page from the same reads.
//!
//! Escaping: the template is named `.html`, so minijinja escapes every interpolated value; no
//! value is marked safe. The SVG is built by the template from numbers computed here.

mod collect;
mod view;

use minijinja::{Environment, context};
use serde::Serialize;
use warden_registry::posture::Report;

use crate::lease::LeaseRecord;
use crate::record::JobRecord;

pub use collect::{collect_env, read_job_records, read_lease};

/// Everything one page shows.
#[derive(Debug, Clone, Serialize)]
pub struct DashboardData {
    /// The instant judged (Unix seconds); "in 3d" and "5m ago" are relative to it.
    pub at: i64,
    /// One column per environment, in this order.
    pub environments: Vec<EnvDashboard>,
}

/// One environment's column.
#[derive(Debug, Clone, Serialize)]
pub struct EnvDashboard {
    /// Its posture (purposes, credentials, break-glass).
    pub report: Report,
    /// The serve leader lease, if serve ever ran here.
    pub lease: Option<LeaseRecord>,
    /// Serve's job records (rotation, renewal, posture sweep).
    pub jobs: Vec<JobRecord>,
    /// Raft nodes, when the configuration could be read (empty otherwise).
    pub nodes: Vec<Node>,
    /// Whether the node answering is sealed (`None`: not read).
    pub sealed: Option<bool>,
    /// Reads that failed, shown on the page instead of failing it (never a secret).
    pub problems: Vec<String>,
}

/// One raft node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Node id.
    pub id: String,
    /// Cluster address.
    pub address: String,
    /// The raft leader.
    pub leader: bool,
    /// A voter (not a non-voter).
    pub voter: bool,
}

const TEMPLATE: &str = include_str!("dashboard.html");

/// The page. Never fails: the template is fixed and tested, so a render error is a bug, and
/// the page then says so (escaped) rather than showing nothing.
pub fn render(data: &DashboardData) -> String {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let page = view::page(data);
    let out = env
        .add_template("dashboard.html", TEMPLATE)
        .and_then(|()| env.get_template("dashboard.html"))
        .and_then(|t| t.render(context! { page => minijinja::value::Serde(&page) }));
    match out {
        Ok(s) => s,
        Err(e) => format!(
            "<!doctype html><title>Warden dashboard</title><p>dashboard template error: {}</p>",
            view::escape(&format!("{e:#}"))
        ),
    }
}

#[cfg(test)]
mod tests;
