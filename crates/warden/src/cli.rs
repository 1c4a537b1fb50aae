//! Top-level argument definitions. Each subcommand's own arguments live beside its code in
//! `cmd/`.

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

/// Warden: a coordination layer over OpenBao: offline root CA, environments over mTLS, spec →
/// plan → apply, agents, purposes, posture and evidence.
///
/// Warden keeps an offline root CA and signs each environment's intermediate; reaches every
/// environment's OpenBao over HTTPS with mutual TLS; turns a platform spec into a plan and
/// applies it (spec → plan → apply); enrolls identities and runs their agents, which deliver
/// and renew certificates, secrets and database credentials; governs every credential by a
/// purpose and reports its posture and signed evidence; and serves KV secrets, transit
/// encryption and signing, dynamic database credentials, CI and workload login, signing keys
/// and domain certificates. `warden lab up` starts a local two-environment lab to try it all.
#[derive(Debug, Parser)]
// No `about` attribute: the doc comment's first paragraph is `-h`, all of it is `--help`.
#[command(name = "warden", version, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every subcommand understands.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Output format: human-readable text or JSON for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Text)]
    pub(crate) output: Format,
    /// More logging on stderr (-v info, -vv debug). WARDEN_LOG overrides.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// The offline root CA: create it, sign intermediates, inspect and verify chains.
    Ca(crate::cmd::ca::CaArgs),
    /// A local two-environment OpenBao lab (test and prod) with HTTPS + mTLS.
    Lab(crate::cmd::lab::LabArgs),
    /// Show what `apply` would change in each environment, and why. Reads only.
    Plan(crate::cmd::provision::PlanArgs),
    /// Make each environment match the spec (idempotent: a second apply writes nothing).
    Apply(crate::cmd::provision::PlanArgs),
    /// Identities on a host: enroll (Unix user, directory, mTLS client certificate).
    Identity(crate::cmd::identity::IdentityArgs),
    /// Run the agent of one identity: log in, deliver and renew its outputs, reload on change.
    Agent(crate::cmd::agent::AgentArgs),
    /// Check one identity on its host, as that identity: files, trust, TLS, login, grants, agent, clock.
    Doctor(crate::cmd::doctor::DoctorArgs),
    /// Least-privilege check of the spec's and the live policies. Exits 3 on unwaived findings.
    Lint(crate::cmd::provision::LintArgs),
    /// Versioned app secrets in KV: put, get, history, rollback. Values are never printed unless asked.
    Secret(crate::cmd::secret::SecretArgs),
    /// Encryption and signing as a service (transit): encrypt, decrypt, sign, verify, rotate.
    Transit(crate::cmd::transit::TransitArgs),
    /// CI pipelines: exchange the pipeline's OIDC token for a short-lived Warden token.
    Ci(crate::cmd::ci::CiArgs),
    /// Transport certificates for runtime hosts and CI runners: issue, list, revoke (ADR 0010).
    Transport(crate::cmd::transport::TransportArgs),
    /// Rotations: dual-key signing-key rotation with a grace window.
    Rotate(crate::cmd::rotate::RotateArgs),
    /// Domain TLS certificates kept in KV with their expiry: status and renewal.
    Domain(crate::cmd::domain::DomainArgs),
    /// Posture of every purpose: expiry, rotation due, status. Exit code = worst status.
    Posture(crate::cmd::posture::PostureArgs),
    /// Reveal-once credentials: mint one behind a single-use wrapped token, open it once.
    Reveal(crate::cmd::reveal::RevealArgs),
    /// Revocation: an identity (certificates on the CRL, tokens and logins refused) or one
    /// certificate, with a reason kept in a record.
    Revoke(crate::cmd::revoke::RevokeArgs),
    /// Signed evidence packets: export one per component, verify one offline.
    Evidence(crate::cmd::evidence::EvidenceArgs),
    /// Backups: encrypted raft snapshots with signed manifests; create, list, verify offline.
    Backup(crate::cmd::backup::BackupArgs),
    /// Restore a backup into its environment (break-glass token, confirmation), then plan and posture.
    Restore(crate::cmd::restore::RestoreArgs),
    /// Disaster recovery: `dr drill` proves the newest backup restores (RTO, RPO, signed evidence).
    Dr(crate::cmd::dr::DrArgs),
    /// Long-running scheduler: signing-key rotation when due and a posture sweep, run by the
    /// one replica holding a leader lease in OpenBao, every run recorded (docs/serve.md).
    Serve(Box<crate::cmd::serve::ServeArgs>),
    /// The posture dashboard as one HTML file: environments side by side, urgent purposes
    /// first, an expiry timeline, job history (docs/serve.md).
    Dashboard(crate::cmd::dashboard::DashboardArgs),
    /// Seals: migrate a live environment from Shamir to an auto-seal; grant a transit seal on a seal-keeper.
    Seal(crate::cmd::seal::SealArgs),
    /// A production OpenBao node's files from the spec: server configuration and systemd unit.
    Server(crate::cmd::server::ServerArgs),
    /// Operator identities: one mTLS client certificate per person (enroll, approve, list, remove).
    Operator(crate::cmd::operator::OperatorArgs),
    /// A real environment's bootstrap: operator policy, first operator, then the root token revoked.
    Bootstrap(crate::cmd::operator::BootstrapArgs),
    /// Custody of unseal shares: the ceremony, the ledger, verify, rekey (custodian replacement).
    Custody(crate::cmd::custody::CustodyArgs),
    /// Submit one custodian's encrypted share to every node of an environment; shows progress.
    Unseal(crate::cmd::custody::ShareArgs),
    /// Emergency access: a time-boxed token from custodians' shares (open, close, status).
    BreakGlass(crate::cmd::break_glass::BreakGlassArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, …) on stdout.
    ///
    /// bash: `warden completions bash > ~/.local/share/bash-completion/completions/warden`;
    /// zsh: into a directory on `$fpath` as `_warden`; fish: `~/.config/fish/completions/warden.fish`.
    Completions(crate::cmd::completions::CompletionsArgs),
    /// Print the manual pages on stdout (`warden man | man -l -`), or write one per command.
    Man(crate::cmd::completions::ManArgs),
}
