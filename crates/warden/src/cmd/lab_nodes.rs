//! The nodes table of `lab status`: one row per OpenBao node of every environment that runs
//! more than one, with its raft role and indexes, then each cluster's peer set.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use warden_lab::{EnvStatus, Lab};

/// The warning for `--nodes N` given to an existing lab whose environments run another count:
/// the count is chosen when a lab is created.
pub(crate) fn ignored_nodes_option(lab: &Lab, asked: Option<u8>, created: bool) -> Option<String> {
    let asked = asked.filter(|_| !created)?;
    let other: Vec<String> = lab
        .config()
        .environments
        .iter()
        .map(|e| (e.name.as_str(), e.nodes().len()))
        .filter(|(_, n)| *n != usize::from(asked))
        .map(|(name, n)| format!("{name} runs {n}"))
        .collect();
    (!other.is_empty()).then(|| {
        format!(
            "--nodes {asked} was ignored: it only applies to a new lab, and this one exists ({}); \
             `warden lab down --purge --dir {}` then `warden lab up --nodes {asked}` makes a new one",
            other.join(", "),
            lab.layout().root().display()
        )
    })
}

/// Empty when every environment is a single node (its row in the environments table says it
/// all).
pub(crate) fn nodes_table(statuses: &[&EnvStatus]) -> String {
    let clusters: Vec<&&EnvStatus> = statuses.iter().filter(|s| s.nodes.len() > 1).collect();
    if clusters.is_empty() {
        return String::new();
    }
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "env",
        "node",
        "address",
        "running",
        "role",
        "committed",
        "applied",
    ]);
    for env in &clusters {
        for n in &env.nodes {
            table.add_row([
                env.name.clone(),
                n.id.clone(),
                n.address.clone(),
                n.pid
                    .map_or_else(|| "no".to_owned(), |pid| format!("yes (pid {pid})")),
                n.role.to_owned(),
                opt(n.raft_committed_index),
                opt(n.raft_applied_index),
            ]);
        }
    }
    let mut s = format!("\n{table}\n");
    for env in &clusters {
        for n in env.nodes.iter().filter(|n| n.error.is_some()) {
            s.push_str(&format!(
                "{}: {}\n",
                n.id,
                n.error.as_deref().unwrap_or_default()
            ));
        }
        let peers = env
            .peers
            .iter()
            .map(|p| {
                format!(
                    "{} ({}{})",
                    p.node_id,
                    if p.leader { "leader" } else { "follower" },
                    if p.voter { ", voter" } else { ", non-voter" }
                )
            })
            .collect::<Vec<_>>();
        s.push_str(&format!(
            "{} raft peers: {}\n",
            env.name,
            if peers.is_empty() {
                "unknown (no leader, or no token to read sys/storage/raft/configuration)".to_owned()
            } else {
                peers.join(", ")
            }
        ));
    }
    s
}
