//! `warden`: the command line of Warden, a coordination layer over OpenBao.
//!
//! This crate only parses arguments, chooses output formats, prints, and maps failures to
//! messages, hints and exit codes. Everything it does is implemented in the library crates:
//!
//! - `warden-spec`: the platform spec, its diagnostics and the purpose rules;
//! - `warden-plan`: desired state, plan, apply and lint;
//! - `warden-bao`: the OpenBao client;
//! - `warden-pki`: the offline root CA and chain checks;
//! - `warden-lab`: the local lab, its servers and its agents;
//! - `warden-agent`: enrollment of an identity and the agent runtime;
//! - `warden-keys`: signing keys and domain certificates;
//! - `warden-registry`: posture, reveal-once credentials and evidence packets;
//! - `warden-files`: the one writer of every file that matters.
//!
//! Flow: [`main`] → [`run`] → one `cmd::*` module per subcommand → `ExitCode`. Errors and their
//! `hint:` lines: see [`hint`].

mod cli;
mod cmd;
mod context;
mod exit;
mod hint;
mod input;
mod output;
mod provisioning;
mod secret_input;
mod session;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if matches!(
        cli.command,
        cli::Command::Ca(_)
            | cli::Command::Custody(_)
            | cli::Command::Unseal(_)
            | cli::Command::BreakGlass(_)
    ) {
        keep_secrets_in_process();
    }
    init_tracing(cli.global.verbose);
    // One crypto provider for the whole process (aws-lc-rs); see docs/adr/0002-one-crypto-stack.md.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = if one_thread(&cli.command) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            hint::report(&anyhow::Error::new(e).context("could not start the async runtime"));
            return exit::FAILURE.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            hint::report(&err);
            hint::exit_code(&err)
        }
    }
}

/// Whether the command runs on one thread. Plan, apply, lint, posture and evidence are tens of
/// thousands of small requests over a few keep-alive connections: with worker threads, each
/// response wakes the command's task on another thread, and at 10,000 identities those
/// wake-ups were a third of the client's CPU (1.0 of 3.1 s in a no-op apply, on the host the
/// server shares) and 12 MB of memory. The server, not the client, is the bottleneck of these
/// commands, so one thread loses nothing. Everything that serves, watches or runs children
/// beside its own work (serve, lab, agents, backups) keeps the worker threads.
fn one_thread(command: &cli::Command) -> bool {
    matches!(
        command,
        cli::Command::Plan(_)
            | cli::Command::Apply(_)
            | cli::Command::Lint(_)
            | cli::Command::Posture(_)
            | cli::Command::Evidence(_)
    )
}

async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    let out = output::Output::new(cli.global.output);
    match cli.command {
        cli::Command::Ca(args) => cmd::ca::run(args, &out).await,
        cli::Command::Lab(args) => cmd::lab::run(args, &out).await,
        cli::Command::Plan(args) => cmd::provision::plan(args, &out).await,
        cli::Command::Apply(args) => cmd::provision::apply(args, &out).await,
        cli::Command::Lint(args) => cmd::provision::lint(args, &out).await,
        cli::Command::Identity(args) => cmd::identity::run(args, &out).await,
        cli::Command::Agent(args) => cmd::agent::run(args, &out).await,
        cli::Command::Doctor(args) => cmd::doctor::run(args, &out).await,
        cli::Command::Secret(args) => cmd::secret::run(args, &out).await,
        cli::Command::Transit(args) => cmd::transit::run(args, &out).await,
        cli::Command::Transport(args) => cmd::transport::run(args, &out).await,
        cli::Command::Ci(args) => cmd::ci::run(args, &out).await,
        cli::Command::Rotate(args) => cmd::rotate::run(args, &out).await,
        cli::Command::Domain(args) => cmd::domain::run(args, &out).await,
        cli::Command::Posture(args) => cmd::posture::run(args, &out).await,
        cli::Command::Reveal(args) => cmd::reveal::run(args, &out).await,
        cli::Command::Revoke(args) => cmd::revoke::run(args, &out).await,
        cli::Command::Evidence(args) => cmd::evidence::run(args, &out).await,
        cli::Command::Backup(args) => cmd::backup::run(args, &out).await,
        cli::Command::Restore(args) => cmd::restore::run(args, &out).await,
        cli::Command::Dr(args) => cmd::dr::run(args, &out).await,
        cli::Command::Serve(args) => cmd::serve::run(*args, &out).await,
        cli::Command::Dashboard(args) => cmd::dashboard::run(args, &out).await,
        cli::Command::Seal(args) => cmd::seal::run(args, &out).await,
        cli::Command::Server(args) => cmd::server::run(args, &out).await,
        cli::Command::Operator(args) => cmd::operator::run(args, &out).await,
        cli::Command::Bootstrap(args) => cmd::operator::run_bootstrap(args, &out).await,
        cli::Command::Custody(args) => cmd::custody::run(args, &out).await,
        cli::Command::Unseal(args) => cmd::custody::unseal(args, &out).await,
        cli::Command::BreakGlass(args) => cmd::break_glass::run(args, &out).await,
        cli::Command::Completions(args) => cmd::completions::completions(&args, &out),
        cli::Command::Man(args) => cmd::completions::man(&args, &out),
    }
}

/// The offline CA, custody and break-glass commands hold a CA passphrase (typed, or recombined
/// from shares), the decrypted root key or unseal shares in memory. A crash must not write them
/// to a core file, and another process of the same user must not read them through ptrace or
/// `/proc/<pid>/mem`: no core dumps (soft and hard limit 0) and not dumpable, which also makes
/// `/proc/<pid>/environ` root-only. Best effort: a refusal (some sandboxes) leaves the default.
fn keep_secrets_in_process() {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let none = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = setrlimit(Resource::Core, none) {
        tracing::debug!("could not disable core dumps: {e}");
    }
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::debug!("could not make the process non-dumpable: {e}");
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No escape codes in a log that is not a terminal (`warden agent` under a supervisor).
        .with_ansi(warden_agent::launch::log_colours())
        .with_target(false)
        .try_init();
}
