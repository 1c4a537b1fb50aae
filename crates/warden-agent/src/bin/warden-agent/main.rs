//! `warden-agent`: one identity's agent as its own small binary, for hosts.
//!
//! The agent is `warden_agent`, started through `warden_agent::launch` — the
//! same start-up `warden agent --config FILE [--once]` runs — so config, behaviour, messages
//! and exit codes are those of `warden agent`. What differs is what is *not* here: the rest of
//! the CLI (plan, apply, lab, CA), clap and anyhow. The binary is a fraction of `warden`'s size,
//! and a long-running agent's resident memory is mostly the pages of its own executable (see
//! docs/benchmarks.md, agent).
//!
//! Flow: [`main`] → [`args::parse`] → [`run`] → `Launch::prepare` → `once`, `serve` or `exec`
//! → `ExitCode` (for `exec`, the command's own exit code).

mod args;
mod report;

use std::process::ExitCode;

use warden_agent::launch::{self, Launch};

/// Exit codes: the same as `warden`'s (docs/cli.md).
const SUCCESS: u8 = 0;
/// The agent could not start, or a `--once` run did not deliver everything.
const FAILURE: u8 = 1;
/// A command-line mistake.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(args::Command::Run(run)) => run,
        Ok(args::Command::Help) => return print(args::HELP),
        Ok(args::Command::Version) => {
            return print(&format!("warden-agent {}\n", env!("CARGO_PKG_VERSION")));
        }
        Err(e) => {
            report::usage(&e);
            return ExitCode::from(USAGE);
        }
    };
    init_tracing(args.verbose);
    // One crypto provider for the whole process (aws-lc-rs); see docs/adr/0002-one-crypto-stack.md.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // One thread. The agent's work is a handful of tasks that sleep until something is due
    // (renewals, polls) plus two listeners; nothing in it needs a second worker, and every
    // worker thread costs a stack and a malloc arena for as long as the agent runs. Blocking
    // file reads in templates still go to tokio's blocking pool, started on demand.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report::message(
                &format!("could not start the async runtime: {e}"),
                "the system is out of threads, memory or file descriptors",
            );
            return ExitCode::from(FAILURE);
        }
    };
    ExitCode::from(runtime.block_on(run(args)))
}

/// Runs the agent (or renders once) and returns the exit code.
async fn run(args: args::RunArgs) -> u8 {
    if args.doctor {
        return doctor(&args).await;
    }
    let launch = match Launch::prepare(&args.config) {
        Ok(l) => l,
        Err(e) => {
            report::error(&e, &e.hint());
            return FAILURE;
        }
    };
    if let Some(command) = args.exec {
        let json = args.json;
        return match launch
            .exec(command, |identity| {
                report::progress(
                    json,
                    &format!("{identity}: agent running its command (signals are forwarded to it)"),
                );
            })
            .await
        {
            Ok(code) => code,
            Err(e) => {
                report::error(&e, &e.hint());
                FAILURE
            }
        };
    }
    if args.once {
        let identity = launch.identity().to_owned();
        let outcome = launch.once().await;
        if let Err(e) = report::once(&identity, &outcome, args.json) {
            report::error(
                &e,
                "stdout could not be written; the outputs were delivered as reported in the log",
            );
            return FAILURE;
        }
        return match launch::once_failure(&identity, &outcome) {
            None => SUCCESS,
            Some(what) => {
                report::message(&what, launch::ONCE_FAILED_HINT);
                FAILURE
            }
        };
    }
    let json = args.json;
    let served = launch
        .serve(|identity| {
            report::progress(
                json,
                &format!(
                    "{identity}: agent running (SIGTERM or Ctrl-C stops it; -v shows what it does)"
                ),
            );
        })
        .await;
    match served {
        Ok(()) => SUCCESS,
        Err(e) => {
            report::error(&e, &e.hint());
            FAILURE
        }
    }
}

/// `warden-agent doctor --config FILE`: the checks of `warden doctor` on the identity whose
/// `agent.toml` this is, for hosts that carry only this binary.
async fn doctor(args: &args::RunArgs) -> u8 {
    use warden_agent::doctor;
    let found = doctor::run(&args.config, doctor::Options::default()).await;
    let text = if args.json {
        serde_json::to_string_pretty(&found).unwrap_or_default()
    } else {
        doctor::describe(&found)
    };
    if report::stdout(&format!("{text}\n")).is_err() {
        return FAILURE;
    }
    if found.ok { SUCCESS } else { FAILURE }
}

fn print(text: &str) -> ExitCode {
    match report::stdout(text) {
        Ok(()) => ExitCode::from(SUCCESS),
        Err(_) => ExitCode::from(FAILURE),
    }
}

/// Logging on stderr, as `warden -v`: warnings by default, `-v` info, `-vv` debug; a
/// `WARDEN_LOG` filter (`debug`, `warden_agent=debug,warn`) wins over both.
///
/// The filter is `tracing_subscriber`'s `Targets` (levels per target), not the `EnvFilter`
/// of `warden`: `EnvFilter`'s span and field matching brings a regex engine, about 180 KB of
/// code that would sit in every agent's memory for a syntax nobody uses on an agent. A
/// `WARDEN_LOG` that does not parse is reported once and the default is used. Colour only on a
/// terminal ([`launch::log_colours`]).
fn init_tracing(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let mut bad_filter = None;
    let filter = match std::env::var("WARDEN_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse::<Targets>().unwrap_or_else(|e| {
            bad_filter = Some(format!("WARDEN_LOG={spec:?} is not a log filter ({e})"));
            Targets::new().with_default(default)
        }),
        _ => Targets::new().with_default(default),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(launch::log_colours())
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
    if let Some(msg) = bad_filter {
        tracing::warn!("{msg}; using the default level");
    }
}
