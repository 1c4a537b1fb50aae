//! `warden doctor [IDENTITY]`: checks one identity on its host, run as that identity. The
//! checks are `warden_agent::doctor`; this module finds the identity's directory, prints the
//! report and turns it into the exit code (0: nothing failed, warnings allowed; 1: a check
//! failed).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::hint::HintExt as _;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// The identity (its directory's name). With --dir it is only checked against agent.toml.
    name: Option<String>,
    /// The identity's directory itself (the one holding agent.toml).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["app_root", "root_dir"])]
    dir: Option<PathBuf>,
    /// The environment's app_root on this host (`/srv/warden/test`): the identity is DIR/IDENTITY.
    #[arg(long, value_name = "DIR", conflicts_with = "root_dir")]
    app_root: Option<PathBuf>,
    /// As `warden identity enroll --root-dir`: the identity is DIR/ENV/IDENTITY.
    #[arg(long, value_name = "DIR", requires = "env")]
    root_dir: Option<PathBuf>,
    /// The environment (with --root-dir).
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
}

pub(crate) async fn run(args: DoctorArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = identity_dir(&args)?;
    if !dir.join("agent.toml").exists() && !dir.is_dir() {
        return Err(anyhow::anyhow!("{} does not exist", dir.display())).hint(
            "give the identity's directory (--dir), or where it was enrolled (--app-root, or --root-dir with --env)",
        );
    }
    let report = warden_agent::doctor::run(&dir.join("agent.toml"), options()).await;
    if let (Some(name), Some(_)) = (&args.name, &args.dir)
        && report
            .check("config")
            .is_some_and(|c| c.status == warden_agent::doctor::Status::Ok)
        && &report.identity != name
    {
        return Err(anyhow::anyhow!(
            "{} holds identity `{}`, not `{name}`",
            dir.display(),
            report.identity
        ))
        .hint("check --dir");
    }
    out.emit(&report, || warden_agent::doctor::describe(&report))?;
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILURE)
    })
}

fn identity_dir(args: &DoctorArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.dir {
        return Ok(dir.clone());
    }
    let name = args
        .name
        .as_deref()
        .context("which identity? name it, or give its directory with --dir")
        .hint("`warden doctor billing --app-root /srv/warden/test`, or `warden doctor --dir /srv/warden/test/billing`")?;
    match (&args.app_root, &args.root_dir, &args.env) {
        (Some(root), _, _) => Ok(root.join(name)),
        (None, Some(root), Some(env)) => Ok(root.join(env).join(name)),
        _ => Err(anyhow::anyhow!("where is `{name}` enrolled on this host?")).hint(
            "add --app-root DIR (the environment's app_root, e.g. /srv/warden/test), --root-dir DIR --env ENV, or --dir DIR",
        ),
    }
}

/// The doctor's options. Debug builds (the test suite's) read `WARDEN_DOCTOR_CLOCK_OFFSET`
/// (seconds added to this host's clock in the `clock` check), since a server's `Date` cannot
/// be faked; release builds have no such seam.
fn options() -> warden_agent::doctor::Options {
    #[allow(unused_mut)]
    let mut opts = warden_agent::doctor::Options::default();
    #[cfg(debug_assertions)]
    if let Some(offset) = std::env::var("WARDEN_DOCTOR_CLOCK_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.clock_offset_secs = offset;
    }
    opts
}
