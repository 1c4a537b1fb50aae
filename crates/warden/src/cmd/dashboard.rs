//! `warden dashboard`: the posture dashboard (docs/serve.md, "Dashboard") written to a file —
//! the same page `warden serve` can serve, from the same reads: every environment's posture,
//! serve's lease and job records, raft nodes and seal state, rendered once by
//! [`warden_serve::dashboard::render`] and written atomically (a reader never sees half a page).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use warden_serve::dashboard::{DashboardData, collect_env, render};
use warden_spec::Status;

use crate::context::Target;
use crate::hint::HintExt as _;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    #[command(flatten)]
    target: Target,
    /// Write the page here (replaced atomically; the directory must exist).
    #[arg(long, value_name = "FILE.html")]
    out: PathBuf,
    /// Judge at this instant instead of now, as `warden posture --at` (`+7d`, RFC 3339).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

#[derive(Serialize)]
struct Written {
    out: String,
    worst: Status,
    environments: Vec<String>,
    bytes: usize,
}

pub(crate) async fn run(args: DashboardArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let now = crate::cmd::posture::instant(args.at.as_deref())?;
    let mut environments = Vec::new();
    for env in &resolved.envs {
        out.progress(format!(
            "{}: reading posture, lease and job records",
            env.name
        ));
        let client = resolved.client(env)?;
        let col = collect_env(&client, &resolved.spec, env, now)
            .await
            .with_context(|| format!("{}: could not read posture", env.name))
            .hint("the dashboard reads what `warden posture` reads plus serve's records: use an operator token")?;
        environments.push(col);
    }
    let data = DashboardData {
        at: now,
        environments,
    };
    let page = render(&data);
    // The page holds no secret (posture never carries a value), so it is world-readable.
    warden_files::write_atomic(&args.out, page.as_bytes(), warden_files::Mode::Public)
        .with_context(|| format!("could not write {}", args.out.display()))
        .hint("--out must name a file in an existing directory, not a symlink")?;
    let written = Written {
        out: args.out.display().to_string(),
        worst: data
            .environments
            .iter()
            .map(|e| e.report.worst)
            .max()
            .unwrap_or(Status::Healthy),
        environments: data
            .environments
            .iter()
            .map(|e| e.report.env.clone())
            .collect(),
        bytes: page.len(),
    };
    out.emit(&written, || {
        format!(
            "Wrote {} ({} bytes; worst status {}; environments {})\n",
            written.out,
            written.bytes,
            written.worst,
            written.environments.join(", ")
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
