//! `warden unseal`: one custodian's share, checked against the ledger, submitted to every node
//! of the environment; and opening a quorum of shares for rekey and break-glass.
//!
//! Every refusal happens before anything is submitted (at most the nodes' seal status is read),
//! so a refused share changes nothing: not the server's progress, not the round file. A ledger
//! of recovery keys is refused before its share is even opened: an auto-sealed environment
//! unseals itself.

use std::path::{Path, PathBuf};

use serde::Serialize;
use warden_bao::Client;

use crate::envelope::{self, Share};
use crate::error::Error;
use crate::identity::IdentityFile;
use crate::ledger::{Ledger, Round, Rounds, ShareKind, StateDir, now_rfc3339};

/// One node of the environment: how it is named in reports, and a client for it.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its API address.
    pub address: String,
    /// A client (no token needed for unseal).
    pub client: Client,
}

/// One node's progress after the share went in.
#[derive(Debug, Clone, Serialize)]
pub struct NodeProgress {
    /// Its API address.
    pub address: String,
    /// Still sealed.
    pub sealed: bool,
    /// Shares in the current round (0 once unsealed).
    pub progress: u8,
    /// Threshold.
    pub threshold: u8,
    /// Shares in total.
    pub shares: u8,
    /// The round's nonce (empty once unsealed).
    pub nonce: String,
    /// What happened here: `submitted`, `already unsealed`, `already had this share`, or why
    /// the node could not be reached.
    pub outcome: String,
}

/// What `unseal` did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Environment.
    pub env: String,
    /// Whose share.
    pub custodian: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Per node.
    pub nodes: Vec<NodeProgress>,
}

/// Opens and checks one share (no server involved): decrypts it with `identity`, then checks
/// environment, custodian and fingerprint against the ledger.
pub fn open_checked(ledger: &Ledger, path: &Path, identity: &IdentityFile) -> Result<Share, Error> {
    let share = envelope::open_share(path, identity)?;
    ledger.check_share(path, &share)?;
    Ok(share)
}

/// Opens `pairs` (share file, identity), checks each against the ledger and that they come
/// from `threshold` different custodians. Returns (custodian, share) pairs.
pub fn open_quorum(
    ledger: &Ledger,
    pairs: &[(PathBuf, IdentityFile)],
) -> Result<Vec<(String, Share)>, Error> {
    let mut out: Vec<(String, Share)> = Vec::new();
    for (path, identity) in pairs {
        let share = open_checked(ledger, path, identity)?;
        if out.iter().any(|(c, _)| *c == share.custodian) {
            return Err(Error::DuplicateCustodian {
                custodian: share.custodian,
                need: ledger.threshold,
            });
        }
        out.push((share.custodian.clone(), share));
    }
    if out.len() < usize::from(ledger.threshold) {
        return Err(Error::NotEnoughShares {
            env: ledger.environment.clone(),
            have: out.len(),
            need: ledger.threshold,
        });
    }
    Ok(out)
}

/// Verifies that `path` opens with `identity` and matches the ledger; records the time.
pub fn verify(
    state: &StateDir,
    env: &str,
    path: &Path,
    identity: &IdentityFile,
) -> Result<(Ledger, String), Error> {
    let mut ledger = Ledger::load(state, env)?;
    let share = open_checked(&ledger, path, identity)?;
    ledger.mark_verified(&share.custodian, &now_rfc3339());
    let sha = ledger.save(state)?;
    Ok((ledger, sha))
}

/// What to do on one node, decided before anything is sent.
enum Step {
    Skip(NodeProgress),
    Submit { fresh_round: bool },
}

/// Submits one custodian's share to every node of `env`.
pub async fn unseal(
    state: &StateDir,
    env: &str,
    nodes: &[Node],
    path: &Path,
    identity: &IdentityFile,
) -> Result<Report, Error> {
    let ledger = Ledger::load(state, env)?;
    if ledger.kind == ShareKind::Recovery {
        return Err(Error::RecoveryKeysDoNotUnseal {
            env: env.to_owned(),
            seal: seal_type(nodes).await,
        });
    }
    let share = open_checked(&ledger, path, identity)?;
    let fp = share.fingerprint.clone();
    let mut rounds = Rounds::load(state, env)?;

    // Decide per node first, so a repeated share is refused before any node sees it.
    let mut steps = Vec::new();
    let mut duplicate: Option<String> = None;
    for node in nodes {
        let status = match node.client.seal_status().await {
            Ok(s) => s,
            Err(e) => {
                steps.push(Step::Skip(unreachable(node, &e)));
                continue;
            }
        };
        if !status.sealed {
            steps.push(Step::Skip(progress(node, &status, "already unsealed")));
            continue;
        }
        let round = rounds.0.get(&node.address);
        let same_round = status.progress > 0 && round.is_some_and(|r| r.nonce == status.nonce);
        if same_round && round.is_some_and(|r| r.fingerprints.contains(&fp)) {
            duplicate = Some(status.nonce.clone());
            steps.push(Step::Skip(progress(
                node,
                &status,
                "already had this share",
            )));
            continue;
        }
        steps.push(Step::Submit {
            fresh_round: !same_round,
        });
    }
    if let Some(nonce) = duplicate
        && !steps.iter().any(|s| matches!(s, Step::Submit { .. }))
    {
        return Err(Error::AlreadySubmitted {
            custodian: share.custodian.clone(),
            fingerprint: fp,
            nonce,
        });
    }

    let mut report = Report {
        env: env.to_owned(),
        custodian: share.custodian.clone(),
        fingerprint: fp.clone(),
        nodes: Vec::new(),
    };
    for (node, step) in nodes.iter().zip(steps) {
        let fresh_round = match step {
            Step::Skip(p) => {
                report.nodes.push(p);
                continue;
            }
            Step::Submit { fresh_round } => fresh_round,
        };
        match node.client.unseal(share.secret()).await {
            Ok(status) => {
                if status.sealed {
                    let round = rounds
                        .0
                        .entry(node.address.clone())
                        .or_insert_with(Round::default);
                    if fresh_round || round.nonce != status.nonce {
                        *round = Round {
                            nonce: status.nonce.clone(),
                            fingerprints: Vec::new(),
                        };
                    }
                    round.fingerprints.push(fp.clone());
                } else {
                    rounds.0.remove(&node.address);
                }
                report.nodes.push(progress(node, &status, "submitted"));
            }
            Err(e) => report.nodes.push(unreachable(node, &e)),
        }
    }
    rounds.save(state, env)?;
    Ok(report)
}

/// The seal type the first node that answers reports (read only), for the refusal's message;
/// `auto` when none answers: the ledger alone says the seal is not Shamir.
async fn seal_type(nodes: &[Node]) -> String {
    for node in nodes {
        if let Ok(s) = node.client.seal_status().await
            && !s.seal_type.is_empty()
        {
            return s.seal_type;
        }
    }
    "auto".to_owned()
}

fn progress(node: &Node, s: &warden_bao::SealStatus, outcome: &str) -> NodeProgress {
    NodeProgress {
        address: node.address.clone(),
        sealed: s.sealed,
        progress: s.progress,
        threshold: s.threshold,
        shares: s.shares,
        nonce: s.nonce.clone(),
        outcome: outcome.to_owned(),
    }
}

fn unreachable(node: &Node, e: &warden_bao::Error) -> NodeProgress {
    NodeProgress {
        address: node.address.clone(),
        sealed: true,
        progress: 0,
        threshold: 0,
        shares: 0,
        nonce: String::new(),
        outcome: format!("not reached: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use secrecy::SecretString;

    use super::*;
    use crate::identity::{Custodian, generate_identity};

    #[tokio::test]
    async fn a_recovery_ledger_is_refused_before_its_share_is_opened_and_nothing_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let state = StateDir::new(dir.path().join("state"));
        let out = dir.path().join("out");
        let g = generate_identity();
        let alice = Custodian::new("alice", &g.recipient).expect("alice");
        let plan = crate::ceremony::Plan {
            env: "prod",
            custodians: std::slice::from_ref(&alice),
            threshold: 1,
            kind: ShareKind::Recovery,
            out_dir: &out,
            state: &state,
        };
        let key = SecretString::from("ab".repeat(33));
        let root = SecretString::from("s.root".to_owned());
        crate::ceremony::record_init(&plan, std::slice::from_ref(&key), &root).expect("record");
        let before = std::fs::read(state.ledger("prod")).expect("ledger");
        let rounds = std::fs::read(state.rounds("prod")).expect("rounds");
        let id = IdentityFile::parse(Path::new("alice"), g.file_text.as_bytes()).expect("id");
        let share = out.join(crate::ceremony::share_file_name("alice", "prod"));

        // No node answers: the ledger alone says the shares are recovery keys.
        let e = unseal(&state, "prod", &[], &share, &id)
            .await
            .expect_err("recovery keys do not unseal");
        assert!(
            matches!(&e, Error::RecoveryKeysDoNotUnseal { env, seal } if env == "prod" && seal == "auto"),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "prod is auto-unsealed (seal auto): its shares are recovery keys; they authorise \
             rekey, generate-root and seal migration, not unseal"
        );
        assert_eq!(std::fs::read(state.ledger("prod")).expect("ledger"), before);
        assert_eq!(std::fs::read(state.rounds("prod")).expect("rounds"), rounds);
        // The share itself is fine: a custodian can still verify it.
        assert!(open_checked(&Ledger::load(&state, "prod").expect("ledger"), &share, &id).is_ok());
    }
}
