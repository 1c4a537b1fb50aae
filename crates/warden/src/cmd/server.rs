//! `warden server config`: a production node's OpenBao server configuration and hardened
//! systemd unit, from the spec's `[[environments.<env>.nodes]]` (the work is
//! `warden_node::node_files`; this module picks the node and prints what was written).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use warden_node::{HostPaths, NodeError};

use crate::hint::HintExt;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    #[command(subcommand)]
    command: ServerCommand,
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Write one node's server configuration (raft with retry_join to its peers, the mTLS
    /// listener, telemetry, the file audit device, the seal stanza) and its hardened systemd
    /// unit, which runs OpenBao as the environment's runtime_owner.
    ///
    /// Nothing is contacted and nothing is installed: copy the files to the node's host (the
    /// JSON output says where each belongs). Paths default to /etc/warden/<env>,
    /// /var/lib/warden/<env>/raft and /var/log/warden/<env>.
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// The platform spec.
    #[arg(long, default_value = "warden.toml")]
    spec: PathBuf,
    /// The environment.
    #[arg(long = "env")]
    env: String,
    /// The node's name, as in [[environments.<env>.nodes]].
    #[arg(long)]
    node: String,
    /// Where to write the two files (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Configuration directory on the host (tls/ and openbao/ under it) [default:
    /// /etc/warden/<env>].
    #[arg(long)]
    config_dir: Option<PathBuf>,
    /// Raft storage directory on the host [default: /var/lib/warden/<env>/raft].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Audit log directory on the host [default: /var/log/warden/<env>].
    #[arg(long)]
    audit_dir: Option<PathBuf>,
    /// The bao binary on the host.
    #[arg(long, default_value = "/usr/bin/bao")]
    bao: PathBuf,
    #[command(flatten)]
    seal: crate::cmd::seal::SealFlags,
}

pub(crate) async fn run(args: ServerArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        ServerCommand::Config(a) => config(a, out),
    }
}

fn config(args: ConfigArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let spec = warden_spec::load(&args.spec).map_err(|e| match e {
        warden_spec::LoadError::Invalid(d) => {
            anyhow::anyhow!("{d}").context(format!("{} is not a valid spec", args.spec.display()))
        }
        other => anyhow::Error::new(other),
    })?;
    let known: Vec<&str> = spec.environments.iter().map(|e| e.name.as_str()).collect();
    let env = spec
        .environment(&args.env)
        .with_context(|| format!("the spec has no environment {:?}", args.env))
        .with_hint(|| format!("--env is one of: {}", known.join(", ")))?;
    let defaults = HostPaths::defaults(&args.env);
    let paths = HostPaths {
        config_dir: args.config_dir.unwrap_or(defaults.config_dir),
        data_dir: args.data_dir.unwrap_or(defaults.data_dir),
        audit_dir: args.audit_dir.unwrap_or(defaults.audit_dir),
        bao_binary: args.bao,
    };
    let seal = args.seal.seal(&args.env, &paths.config_dir)?;
    let files = warden_node::node_files(env, &args.node, &paths, seal).map_err(|e| {
        let hint = match &e {
            NodeError::UnknownNode { known, .. } if known.is_empty() => format!(
                "declare the environment's servers in {} as [[environments.{}.nodes]] with name, address and cluster_address",
                args.spec.display(),
                args.env
            ),
            NodeError::UnknownNode { known, .. } => {
                format!("--node is one of: {}", known.join(", "))
            }
            _ => "fix the value named above (in the spec or the flag) and run the command again"
                .to_owned(),
        };
        anyhow::Error::new(e).context(crate::hint::Hint(hint))
    })?;
    // Configuration, not key material: an existing directory keeps its mode.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("could not create {}", args.out.display()))
        .hint("--out must be a directory you can write to")?;
    let written = files
        .write(&args.out, &paths)
        .context("could not write the node's files")
        .hint("nothing half-written is left behind; fix the cause and run the command again")?;
    out.emit(&written, || {
        let mut s = format!(
            "node {} of {}: runs as {}, joins {}\n",
            written.node,
            written.environment,
            written.runs_as,
            if written.peers.is_empty() {
                "no peers (a single node)".to_owned()
            } else {
                written.peers.join(", ")
            }
        );
        for f in &written.files {
            s.push_str(&format!(
                "  wrote {} ({}); install as {}\n",
                f.path.display(),
                f.kind,
                f.install_to.display()
            ));
        }
        s.push_str(&format!(
            "raft election: performance_multiplier {} (heartbeat {:?}, election {:?}, leader lease {:?})\n",
            written.raft.multiplier, written.raft.heartbeat, written.raft.election, written.raft.leader_lease
        ));
        s
    })?;
    Ok(ExitCode::SUCCESS)
}
