//! `warden server remove-peer`: takes a dead node out of its environment's raft peer set
//! (docs/dr.md, "Lose one node": a node whose disk is lost rejoins only after its old entry is
//! removed). `sys/storage/raft/remove-peer` is root-only, so it takes a break-glass token.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use crate::context::{OneEnv, Target};
use crate::hint::HintExt as _;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct RemovePeerArgs {
    #[command(flatten)]
    target: Target,
    /// The raft node id to remove (as `lab status` / `sys/storage/raft/configuration` name it).
    #[arg(long, value_name = "ID")]
    node: String,
    /// A break-glass token (`warden break-glass open --token-file`): removing a peer is
    /// root-only in OpenBao.
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// The node id again, confirming the removal (a removed voter stops counting to quorum).
    #[arg(long, value_name = "ID")]
    confirm: String,
}

#[derive(Debug, Serialize)]
struct Peer {
    node_id: String,
    address: String,
    voter: bool,
    leader: bool,
}

#[derive(Debug, Serialize)]
struct Removed {
    env: String,
    removed: String,
    peers: Vec<Peer>,
}

async fn peers(client: &warden_bao::Client) -> anyhow::Result<Vec<Peer>> {
    let cfg = client
        .read("sys/storage/raft/configuration")
        .await
        .map_err(|e| anyhow::anyhow!("reading the raft peer set: {e}"))?;
    let data = cfg.data.unwrap_or_default();
    let servers = data["config"]["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(servers
        .iter()
        .map(|s| Peer {
            node_id: s["node_id"].as_str().unwrap_or_default().to_owned(),
            address: s["address"].as_str().unwrap_or_default().to_owned(),
            voter: s["voter"].as_bool().unwrap_or(false),
            leader: s["leader"].as_bool().unwrap_or(false),
        })
        .collect())
}

pub(crate) async fn run(args: RemovePeerArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let env = resolved
        .one_env("server remove-peer", OneEnv::Named)?
        .clone();
    if args.confirm != args.node {
        return Err(anyhow::anyhow!(
            "--confirm names `{}`, but the peer to remove is `{}`; nothing was changed",
            args.confirm,
            args.node
        ))
        .hint(format!("pass --confirm {}", args.node));
    }
    let token = crate::session::read_token_file(&args.token_file, out)?;
    let client = resolved.client(&env)?;
    client.set_token(token);
    let before = peers(&client).await?;
    let Some(peer) = before.iter().find(|p| p.node_id == args.node) else {
        let ids: Vec<&str> = before.iter().map(|p| p.node_id.as_str()).collect();
        return Err(anyhow::anyhow!(
            "{}: `{}` is not in the raft peer set ({}); nothing was changed",
            env.name,
            args.node,
            ids.join(", ")
        ));
    };
    if peer.leader {
        return Err(anyhow::anyhow!(
            "{}: `{}` is the active node; removing it would drop the leader; nothing was changed",
            env.name,
            args.node
        ))
        .hint(
            "remove a dead node, not the leader; stop the leader first so another node takes over",
        );
    }
    out.progress(format!(
        "{}: removing `{}` ({}) from the raft peer set",
        env.name, peer.node_id, peer.address
    ));
    client
        .write(
            "sys/storage/raft/remove-peer",
            &serde_json::json!({ "server_id": args.node }),
            warden_bao::Idempotent::Yes,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}: removing `{}`: {e}", env.name, args.node))
        .hint("the token must be allowed on sys/storage/raft/remove-peer (a break-glass token)")?;
    let report = Removed {
        env: env.name.to_string(),
        removed: args.node.clone(),
        peers: peers(&client).await?,
    };
    out.emit(&report, || {
        let mut s = format!("{}: removed `{}`; peers now:", report.env, report.removed);
        for p in &report.peers {
            s.push_str(&format!(
                "\n  {} {} {}{}",
                p.node_id,
                p.address,
                if p.voter { "voter" } else { "non-voter" },
                if p.leader { " (leader)" } else { "" }
            ));
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}
