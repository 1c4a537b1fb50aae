//! `warden ca rollover-root`: replacing the offline root while everything keeps verifying
//! (ADR 0030), in steps across two machines.
//!
//! | step | where | what |
//! |---|---|---|
//! | `begin --dir` | offline | the next root (same passphrase) and cross certificates both ways; `--trust-out` writes the two-root trust bundle to ship |
//! | `csr --env` | online | a CSR for the key the environment's intermediate already has |
//! | `resign --dir --env` | offline | the next root signs it with the ledger's constraints; the file holds intermediate, next root, cross certificate |
//! | `import --env` | online | checked, imported beside the old; cert-auth roles and listener trust both; a lab's trust files get both roots |
//! | `activate --env` | online | the re-signed intermediate becomes the default |
//! | `promote --dir` | offline | the next root becomes the CA directory's root |
//! | `finish --env` | online | refused while an agent's trust file lacks the new root; the old root and its intermediate leave the mount; in a lab `--listener-ca` installs the re-signed listener CA, restarts the nodes and leaves only the new root in the trust files |
//!
//! The logic is `warden_pki` (offline) and `warden_registry::root_rollover` (online); this
//! module reads files and passphrases, runs apply and a lab's listener refresh, and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use warden_pki::{CaDir, CertInfo};
use warden_registry::root_rollover::{self as rr, RolloverStatus};

use super::rotation::{explain, one_env, trust_everywhere};
use super::{AlgorithmArg, DirArg, check_new_file, parse_validity, pki_error};
use crate::context::Target;
use crate::hint::HintExt as _;
use crate::output::Output;
use crate::secret_input;

#[derive(Debug, Args)]
pub(crate) struct RolloverArgs {
    #[command(subcommand)]
    step: Step,
}

#[derive(Debug, Subcommand)]
enum Step {
    /// Offline: make the next root (sealed under the same passphrase) and cross certificates
    /// both ways, recorded in the ledger.
    Begin(BeginArgs),
    /// Online: a CSR for the key the environment's intermediate already has (nothing is
    /// generated), for the offline `resign`.
    Csr(CsrArgs),
    /// Offline: sign that CSR with the next root, with the constraints the environment's
    /// intermediate has in the ledger.
    Resign(ResignArgs),
    /// Online: import the re-signed intermediate and the next root beside the current ones and
    /// trust both (cert-auth roles, listener; a lab's trust files).
    Import(ImportArgs),
    /// Online: make the re-signed intermediate the default issuer.
    Activate(ActivateArgs),
    /// Offline: the next root becomes the CA directory's root; the old one is kept, retired.
    Promote(PromoteArgs),
    /// Online: remove the old root and the intermediate it signed from the mount, once every
    /// agent's trust file holds the new root.
    Finish(FinishArgs),
}

#[derive(Debug, Args)]
struct BeginArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The next root's common name (it must differ from the current root's).
    #[arg(long)]
    common_name: String,
    /// The next root's key algorithm.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::EcdsaP256)]
    algorithm: AlgorithmArg,
    /// The next root's lifetime.
    #[arg(long, default_value = "10y", value_parser = parse_validity)]
    validity: Duration,
    /// The next root's path length; default: the current root's plus one, so a chain through
    /// the cross certificate (old intermediate → old root signed by the new) stays within it.
    #[arg(long)]
    path_len: Option<u8>,
    /// Also write the trust bundle to ship during the overlap (current root, then next root).
    #[arg(long, value_name = "FILE")]
    trust_out: Option<PathBuf>,
    /// Read the passphrase from this file (first line) instead of WARDEN_CA_PASSPHRASE or a
    /// prompt.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CsrArgs {
    #[command(flatten)]
    target: Target,
    /// Where to write the CSR (a new file).
    #[arg(long, value_name = "FILE")]
    csr_out: PathBuf,
}

#[derive(Debug, Args)]
struct ResignArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The environment whose intermediate is re-signed.
    #[arg(long = "env", value_name = "NAME")]
    environment: String,
    /// The CSR `ca rollover-root csr` wrote.
    #[arg(long, value_name = "FILE")]
    csr: PathBuf,
    /// The environment's intermediate as it is now (`csr` writes it as `<csr-out>.current.pem`):
    /// it must be the environment's latest intermediate in the ledger and the CSR must be for
    /// its key, so the next root vouches for no new key and for no intermediate rotated out.
    #[arg(long, value_name = "FILE")]
    current: PathBuf,
    /// Which of the environment's intermediates (as recorded in the ledger).
    #[arg(long, default_value = "vault-pki")]
    profile: String,
    /// The re-signed intermediate's lifetime; must end before the next root's.
    #[arg(long, default_value = "2y", value_parser = parse_validity)]
    validity: Duration,
    /// Where to write intermediate + next root + cross certificate (the file `import` takes).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Read the passphrase from this file instead of WARDEN_CA_PASSPHRASE or a prompt.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ImportArgs {
    #[command(flatten)]
    target: Target,
    /// The file `ca rollover-root resign --out` wrote.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
}

#[derive(Debug, Args)]
struct ActivateArgs {
    #[command(flatten)]
    target: Target,
    /// Outside a lab: every node's listener trusts both intermediates (client-ca.pem
    /// rewritten, nodes restarted).
    #[arg(long)]
    listeners_updated: bool,
    /// Activate although some agents' trust files are not known to hold the new root (they
    /// cannot verify certificates from the re-signed intermediate); the reason and those
    /// agents are recorded.
    #[arg(long, value_name = "REASON")]
    force: Option<String>,
}

#[derive(Debug, Args)]
struct PromoteArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Promote although some environments' intermediates were not re-signed by the next root
    /// (they can then move to it only by a new intermediate); the reason and those
    /// intermediates are recorded in rollover.json.
    #[arg(long, value_name = "REASON")]
    force: Option<String>,
    /// Read the passphrase from this file instead of WARDEN_CA_PASSPHRASE or a prompt: promote
    /// proves it opens the next root's key before that key becomes the root's.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct FinishArgs {
    #[command(flatten)]
    target: Target,
    /// Finish although some agents' trust files lack the new root (the reason and those agents
    /// are recorded), or, with --listener-ca, although some agents' connection to OpenBao
    /// trusts only the old root.
    #[arg(long, value_name = "REASON")]
    force: Option<String>,
    /// In a lab: the listener CA the next root re-signed (`resign --profile listener-ca
    /// --out FILE`). After the mount's step it is installed on the environment's nodes (the
    /// code of `warden server tls --install-listener-ca`), the nodes restart serving the chain
    /// to the new root, and the lab's trust files then hold only the new root. Checked before
    /// anything changes; run again after an interruption (a finished rollover only installs).
    #[arg(long, value_name = "FILE")]
    listener_ca: Option<PathBuf>,
}

pub(crate) async fn run(args: RolloverArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.step {
        Step::Begin(a) => begin(a, out),
        Step::Csr(a) => csr(a, out).await,
        Step::Resign(a) => resign(a, out),
        Step::Import(a) => import(a, out).await,
        Step::Activate(a) => activate(a, out).await,
        Step::Promote(a) => promote(a, out),
        Step::Finish(a) => finish(a, out).await,
    }
}

// ---- offline ------------------------------------------------------------------------------

fn begin(a: BeginArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = a.dir.dir;
    let what = || format!("could not begin the root rollover in {}", dir.display());
    let ca = CaDir::open(&dir).map_err(|e| pki_error(e, what(), &dir))?;
    if let Some(p) = &a.trust_out {
        check_new_file(p, "--trust-out")?;
    }
    let opts = warden_pki::RootOptions {
        common_name: a.common_name,
        algorithm: a.algorithm.into(),
        validity: a.validity,
        path_len: a
            .path_len
            .unwrap_or_else(|| ca.metadata().path_len.saturating_add(1)),
    };
    let passphrase = secret_input::ca_passphrase(a.passphrase_file.as_deref(), false)?;
    let begun = ca
        .begin_rollover(&opts, &passphrase, OffsetDateTime::now_utc())
        .map_err(|e| pki_error(e, what(), &dir))?;
    let bundle = format!(
        "{}\n{}\n",
        ca.root_pem().trim_end(),
        begun.next_root_pem.trim_end()
    );
    if let Some(p) = &a.trust_out {
        warden_files::write_atomic(p, bundle.as_bytes(), warden_files::Mode::Public)
            .with_context(|| format!("could not write the trust bundle to {}", p.display()))
            .hint(format!(
                "the rollover is begun; the bundle is {} followed by {}",
                dir.join(warden_pki::ROOT_CERT).display(),
                dir.join(warden_pki::NEXT_ROOT_CERT).display()
            ))?;
    }

    #[derive(Serialize)]
    struct Report<'a> {
        record: &'a warden_pki::RolloverRecord,
        next_root: &'a CertInfo,
        #[serde(skip_serializing_if = "Option::is_none")]
        trust_out: Option<&'a Path>,
    }
    out.emit(
        &Report {
            record: &begun.record,
            next_root: &begun.next_root,
            trust_out: a.trust_out.as_deref(),
        },
        || {
            let mut s = format!(
                "Began the root rollover in {}: the next root and cross certificates both ways\n",
                dir.display()
            );
            s += &super::cert_block(&begun.next_root);
            s += &format!(
                "  files        {}, {} (encrypted), {}, {}\n",
                warden_pki::NEXT_ROOT_CERT,
                warden_pki::NEXT_ROOT_KEY,
                warden_pki::CROSS_NEXT_BY_CURRENT,
                warden_pki::CROSS_CURRENT_BY_NEXT
            );
            if let Some(p) = &a.trust_out {
                s += &format!("  trust bundle {} (both roots)\n", p.display());
            }
            s += "\nNext: ship the two-root trust bundle to every host's trust file; then for each environment, online:\n  warden ca rollover-root csr --env ENV --csr-out ENV.csr\n";
            s += &format!(
                "and here:\n  warden ca rollover-root resign --dir {} --env ENV --csr ENV.csr --current ENV.csr.current.pem --out ENV-resigned.pem\n",
                dir.display()
            );
            s
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn resign(a: ResignArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = a.dir.dir;
    let what = || {
        format!(
            "could not re-sign {}'s intermediate with the CA in {}",
            a.environment,
            dir.display()
        )
    };
    let csr = crate::input::read_named_text(&a.csr, "the CSR", crate::input::TEXT_FILE_LIMIT)?;
    let current = crate::input::read_named_text(
        &a.current,
        "the current intermediate",
        crate::input::TEXT_FILE_LIMIT,
    )?;
    let ca = CaDir::open(&dir).map_err(|e| pki_error(e, what(), &dir))?;
    check_new_file(&a.out, "--out")?;
    let passphrase = secret_input::ca_passphrase(a.passphrase_file.as_deref(), false)?;
    let signed = ca
        .resign_intermediate(
            &csr,
            &current,
            &a.environment,
            &a.profile,
            a.validity,
            &passphrase,
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| pki_error(e, what(), &dir))?;
    let next = ca
        .next_root_pem()
        .map_err(|e| pki_error(e, what(), &dir))?
        .unwrap_or_default();
    let cross = ca
        .cross_next_pem()
        .map_err(|e| pki_error(e, what(), &dir))?
        .unwrap_or_default();
    let pem = format!(
        "{}\n{}\n{}\n",
        signed.cert_pem.trim_end(),
        next.trim_end(),
        cross.trim_end()
    );
    warden_files::write_atomic(&a.out, pem.as_bytes(), warden_files::Mode::Public)
        .with_context(|| {
            format!(
                "the intermediate was re-signed and recorded (serial {}), but could not be written to {}",
                signed.entry.serial,
                a.out.display()
            )
        })
        .hint("fix the output path and re-sign the CSR again; the ledger will show both signatures")?;
    let cert = warden_pki::parse_pem_bundle(&signed.cert_pem)
        .context("could not re-read the re-signed certificate")?
        .remove(0);
    out.emit(
        &serde_json::json!({ "certificate": cert, "ledger_entry": signed.entry, "out": a.out }),
        || {
            let mut s = format!(
                "Re-signed {} for {:?} with the next root (same key, same constraints)\n",
                cert.subject, signed.entry.environment
            );
            s += &super::cert_block(&cert);
            s += &format!(
                "  written to   {} (intermediate, next root, cross certificate)\n",
                a.out.display()
            );
            s += &format!(
                "\nNext, online:\n  warden ca rollover-root import --env {} --cert {}\n",
                a.environment,
                a.out.display()
            );
            s
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn promote(a: PromoteArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = a.dir.dir;
    let what = || format!("could not promote the next root in {}", dir.display());
    if a.force.as_deref().is_some_and(|r| r.trim().is_empty()) {
        anyhow::bail!("--force needs a reason (it is recorded in rollover.json)");
    }
    let passphrase = secret_input::ca_passphrase(a.passphrase_file.as_deref(), false)?;
    let ca = CaDir::finish_rollover(
        &dir,
        &passphrase,
        a.force.as_deref(),
        OffsetDateTime::now_utc(),
    )
    .map_err(|e| pki_error(e, what(), &dir))?;
    let root = ca.root_info();
    out.emit(
        &serde_json::json!({ "dir": dir, "root": root, "rollover": ca.rollover().ok().flatten() }),
        || {
            let mut s = format!(
                "The next root is now the root of {}; the old one is kept as retired-root-*\n",
                dir.display()
            );
            s += &super::cert_block(&root);
            s += "\nNext, online, once every trust file holds the new root:\n  warden ca rollover-root finish --env ENV\n";
            s
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

// ---- online -------------------------------------------------------------------------------

/// Where `csr` writes the current intermediate: `<csr-out>.current.pem`.
fn current_path(csr_out: &Path) -> PathBuf {
    let mut name = csr_out.file_name().unwrap_or_default().to_os_string();
    name.push(".current.pem");
    csr_out.with_file_name(name)
}

async fn csr(a: CsrArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env) = one_env(&a.target, "ca rollover-root csr")?;
    check_new_file(&a.csr_out, "--csr-out")?;
    let current_out = current_path(&a.csr_out);
    check_new_file(&current_out, "the current intermediate's file")?;
    let client = resolved.client(&env)?;
    let csr = rr::csr(&client, &env).await.map_err(explain)?;
    let current = client
        .pki_ca_cert(&env.mounts.pki)
        .await
        .context("could not read the current intermediate")?;
    warden_files::write_atomic(&a.csr_out, csr.as_bytes(), warden_files::Mode::Public)
        .with_context(|| format!("could not write the CSR to {}", a.csr_out.display()))?;
    warden_files::write_atomic(&current_out, current.as_bytes(), warden_files::Mode::Public)
        .with_context(|| format!("could not write {}", current_out.display()))?;
    out.emit(
        &serde_json::json!({ "env": env.name.as_str(), "csr_out": a.csr_out, "current_out": current_out }),
        || {
            format!(
                "{}: CSR for the current intermediate's key written to {} (the intermediate itself to {})\nNext, on the offline CA host:\n  warden ca rollover-root resign --dir DIR --env {} --csr {} --current {} --out {}-resigned.pem\n",
                env.name,
                a.csr_out.display(),
                current_out.display(),
                env.name,
                a.csr_out.display(),
                current_out.display(),
                env.name
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn import(a: ImportArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env) = one_env(&a.target, "ca rollover-root import")?;
    let bundle = crate::input::read_named_text(
        &a.cert,
        "the re-signed bundle",
        crate::input::TEXT_FILE_LIMIT,
    )?;
    let client = resolved.client(&env)?;
    let now = super::server_clock(&client, out).await?;
    let record = rr::import(&client, &env, &bundle, now)
        .await
        .map_err(explain)?;
    out.progress(format!(
        "{}: the re-signed intermediate and the new root are imported beside the old ones",
        env.name
    ));
    let next = trust_both(&resolved, &env, &client, &record, out).await?;
    out.emit(&record, || {
        format!(
            "{}: imported; both intermediates are trusted. The default has NOT changed.\n{next}Next:\n  warden ca rollover-root activate --env {}\n",
            env.name, env.name
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Makes both roots and both intermediates trusted: in a lab, the trust files get the new root
/// (the stand-in for shipping the two-root bundle); the cert-auth roles and the listener trust
/// both intermediates. Idempotent, so `activate` runs it again after an interrupted `import`.
/// Returns what the operator still has to do outside a lab.
async fn trust_both(
    resolved: &crate::context::Resolved,
    env: &warden_spec::Environment,
    client: &warden_bao::Client,
    record: &rr::RolloverRecord,
    out: &Output,
) -> anyhow::Result<String> {
    let mut next = String::new();
    match &resolved.lab {
        Some(lab) => {
            let new_root = new_root_pem(client, env, record).await?;
            let current = std::fs::read_to_string(lab.layout().env(env.name.as_str()).ca_bundle())
                .context("could not read the lab's trust file")?;
            let both = if current.contains(new_root.trim()) {
                current
            } else {
                format!("{}\n{}\n", current.trim_end(), new_root.trim_end())
            };
            let files = warden_lab_agents::write_trust_files(lab, env.name.as_str(), &both)
                .context("could not write the lab's trust files")?;
            out.progress(format!(
                "{}: {} trust file(s) hold both roots",
                env.name,
                files.len()
            ));
        }
        None => {
            next += "Ship the two-root trust bundle (`ca rollover-root begin --trust-out`) to every host's trust file; `warden ca status` lists the agents still holding only the old root.\n";
        }
    }
    if let Some(step) = trust_everywhere(resolved, env, out).await? {
        out.warn(step);
    }
    Ok(next)
}

/// The library's `activate` or `finish` (`step`) for `env`, with `--force`'s reason and the
/// time now, its refusal explained: the call both commands make.
async fn forced_step<'a, F, Fut>(
    step: F,
    client: &'a warden_bao::Client,
    resolved: &'a crate::context::Resolved,
    env: &'a warden_spec::Environment,
    force: Option<&'a str>,
    out: &Output,
) -> anyhow::Result<rr::RolloverRecord>
where
    F: FnOnce(
        &'a warden_bao::Client,
        &'a warden_spec::Spec,
        &'a warden_spec::Environment,
        Option<&'a str>,
        OffsetDateTime,
    ) -> Fut,
    Fut: Future<Output = Result<rr::RolloverRecord, warden_registry::ca::CaError>>,
{
    let now = super::server_clock(client, out).await?;
    step(client, &resolved.spec, env, force, now)
        .await
        .map_err(explain)
}

async fn activate(a: ActivateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env) = one_env(&a.target, "ca rollover-root activate")?;
    let client = resolved.client(&env)?;
    let record = rr::read_record(&client, &env).await.map_err(explain)?;
    if record.as_ref().map(|r| r.state) != Some(rr::RolloverState::Imported) {
        // The library refuses with the state; no need to wait first.
        let e = forced_step(
            rr::activate,
            &client,
            &resolved,
            &env,
            a.force.as_deref(),
            out,
        )
        .await
        .err();
        return Err(e.unwrap_or_else(|| anyhow::anyhow!("the root rollover is not imported")));
    }
    if let Some(record) = &record {
        // Refused before anything changes (and before the wait) while agents are behind.
        let behind = rr::trust_gate(&client, &resolved.spec, &env, record, a.force.as_deref())
            .await
            .map_err(explain)?;
        if !behind.is_empty() {
            out.warn(format!(
                "going ahead with {} agent(s) whose trust file is not known to hold the new root (--force): {}",
                behind.len(),
                behind.join(", ")
            ));
        }
        // Again, in case `import` stopped after its own import (all of it is idempotent).
        trust_both(&resolved, &env, &client, record, out).await?;
    }
    if resolved.lab.is_none() && !a.listeners_updated {
        out.warn(format!(
            "the listeners must trust both intermediates before the default changes: rewrite client-ca.pem with `warden server tls --env {} --identity-ca …` (every intermediate `warden ca status --env {}` lists), restart each node, then run activate with --listeners-updated",
            env.name, env.name
        ));
        // What stands, as every step reports it (with `-o json` a script otherwise got no
        // document at all): still imported.
        if let Some(record) = &record {
            out.emit(record, || {
                format!(
                    "{}: imported; both roots are trusted. The default has NOT changed.
Next: update every listener, then
  warden ca rollover-root activate --env {} --listeners-updated
",
                    env.name, env.name
                )
            })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // After this every proxy's chain holds the re-signed intermediate and its root.
    super::rotation::wait_for_agents_to_see_both(&resolved, &env, out).await;
    let client = resolved.client(&env)?;
    let record = forced_step(
        rr::activate,
        &client,
        &resolved,
        &env,
        a.force.as_deref(),
        out,
    )
    .await?;
    out.emit(&record, || {
        format!(
            "{}: the re-signed intermediate is the default issuer; both roots are trusted.\nNext: `warden ca rollover-root promote --dir DIR` on the offline host, and once `warden ca status --env {}` lists no trust file behind:\n  warden ca rollover-root finish --env {}\n",
            env.name, env.name, env.name
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn finish(a: FinishArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env) = one_env(&a.target, "ca rollover-root finish")?;
    let listener = match &a.listener_ca {
        Some(path) => {
            let lab = resolved.lab.as_ref().ok_or_else(|| {
                anyhow::anyhow!("--listener-ca installs the listener CA on a lab's nodes; this is not a lab")
            }).with_hint(|| format!(
                "on each node: `warden server tls --install-listener-ca {} --tls-dir /etc/warden/{}/tls`, then restart it; once every node serves the new chain, ship a trust file holding only the new root",
                path.display(), env.name
            ))?;
            let text = crate::input::read_named_text(path, "the listener CA", crate::input::TEXT_FILE_LIMIT)
                .hint("--listener-ca is the file `ca rollover-root resign --profile listener-ca --out` wrote")?;
            // Checked before anything changes, the mount included.
            let tls_dir = lab.layout().env(env.name.as_str()).tls_dir();
            warden_node::listener_ca::plan(&tls_dir, path, &text, OffsetDateTime::now_utc())
                .map_err(|e| {
                    let hint = crate::cmd::server::listener_ca_hint(&e);
                    anyhow::Error::new(e)
                        .context("the listener CA is refused; nothing was changed")
                        .context(crate::hint::Hint(hint.to_owned()))
                })?;
            Some((lab, path, text))
        }
        None => None,
    };
    let client = resolved.client(&env)?;
    let current = rr::read_record(&client, &env).await.map_err(explain)?;
    let resumed = listener.is_some()
        && current
            .as_ref()
            .is_some_and(|r| r.state == rr::RolloverState::Finished);
    // The listener CA must be the one the rollover's new root re-signed: checked before the
    // mount's step too, or a listener CA the old root signed (same key, so the directory's
    // checks pass) would let the old root leave the mount and only then be refused.
    if let (Some((_, path, text)), Some(record)) = (&listener, &current)
        && let Some(id) = &record.new_root_issuer_id
    {
        let new_root = client
            .pki_read_issuer(&env.mounts.pki, id)
            .await
            .context("could not read the new root from the mount")?
            .certificate;
        let first = warden_pki::first_certificate(text).unwrap_or_default();
        let chained = warden_pki::verify_chain(first, Some(&new_root), OffsetDateTime::now_utc())
            .is_ok_and(|r| r.valid);
        if !chained {
            return Err(anyhow::anyhow!(
                "{} is not signed by the rollover's new root ({}); nothing was changed",
                path.display(),
                record.new_root_subject
            ))
            .hint("--listener-ca is the file `ca rollover-root resign --profile listener-ca --out` wrote (the listener CA re-signed by the new root), not the listener CA in use");
        }
    }
    // The listener moves only if every agent's connection can follow it: asked before the
    // mount's step, so that a refusal changes nothing.
    let mut connections_behind = Vec::new();
    if listener.is_some()
        && let Some(record) = &current
    {
        connections_behind =
            rr::connection_gate(&client, &resolved.spec, &env, record, a.force.as_deref())
                .await
                .map_err(explain)?;
    }
    let record = match current {
        Some(record) if resumed => {
            out.progress(format!(
                "{}: the mount's step is done; installing the listener CA",
                env.name
            ));
            record
        }
        _ => {
            let record = forced_step(
                rr::finish,
                &client,
                &resolved,
                &env,
                a.force.as_deref(),
                out,
            )
            .await?;
            if let Some(step) = trust_everywhere(&resolved, &env, out).await? {
                out.warn(step);
            }
            record
        }
    };
    let mut listener_report = None;
    if let Some((lab, path, text)) = &listener {
        if !connections_behind.is_empty() {
            out.warn(format!(
                "moving the listener with {} agent(s) whose connection trusts only the old root (--force): {}",
                connections_behind.len(),
                connections_behind.join(", ")
            ));
        }
        listener_report =
            Some(install_lab_listener(lab, &resolved, &env, &record, path, text, out).await?);
    }
    let mut json = serde_json::to_value(&record).context("could not serialise the record")?;
    if let (Some(r), Some(map)) = (&listener_report, json.as_object_mut()) {
        map.insert("listener_ca".to_owned(), r.clone());
    }
    out.emit(&json, || {
        let mut s = format!(
            "{}: the old root and the intermediate it signed are gone from the mount, the cert-auth roles and the listener's bundle; proxies' chains now end in {}\n",
            env.name, record.new_root_subject
        );
        if !record.behind.is_empty() {
            s += &format!(
                "  trust files behind: {} ({})\n",
                record.behind.join(", "),
                record.forced_because.clone().unwrap_or_default()
            );
        }
        match &listener_report {
            Some(r) => {
                s += &format!(
                    "  listener CA re-signed by the new root installed ({}), the nodes restarted; the lab's trust files hold only the new root\n",
                    r["replaced"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")).filter(|t| !t.is_empty()).unwrap_or_else(|| "already in place".to_owned()),
                );
            }
            None if resolved.lab.is_some() => {
                s += "  the listener still serves the chain to the old root, so the lab's trust files keep both roots: run finish again with --listener-ca FILE (`resign --profile listener-ca --out FILE`)\n";
            }
            None => {
                s += "  Next: install the re-signed listener CA on each node (`warden server tls --install-listener-ca FILE --tls-dir DIR`) and restart it; then trust files may hold only the new root\n";
            }
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The lab's half of `finish --listener-ca`: the listener CA installed on the environment's
/// nodes (which restart), checked to chain to the rollover's new root, then the lab's trust
/// files written with that root alone. Order matters: trust files lose the old root only once
/// the listener serves the chain to the new one, and agents' connections follow their trust
/// file, so no connection is ever anchored at a root the listener does not chain to.
async fn install_lab_listener(
    lab: &warden_lab::Lab,
    resolved: &crate::context::Resolved,
    env: &warden_spec::Environment,
    record: &rr::RolloverRecord,
    path: &Path,
    text: &str,
    out: &Output,
) -> anyhow::Result<serde_json::Value> {
    out.progress(format!(
        "{}: installing the listener CA the new root re-signed, then restarting the nodes",
        env.name
    ));
    let installed = lab
        .install_listener_ca(env.name.as_str(), path, text)
        .await
        .context("could not install the listener CA on the lab's nodes")
        .hint("fix the cause and run finish again with --listener-ca; it only installs once the mount's step is done")?;
    let client = resolved.client(env)?;
    let new_root = new_root_pem(&client, env, record).await?;
    // What every node serves, not what its files say: a connection anchored at the new root
    // alone must succeed before any trust file loses the old root.
    let layout = lab.layout().env(env.name.as_str());
    let nodes = lab
        .env(env.name.as_str())
        .context("the lab has no such environment")?
        .addresses();
    for address in nodes {
        let probe = warden_bao::Client::new(
            warden_bao::ClientConfig::from_address(&address)?
                .with_ca_pem(new_root.as_bytes().to_vec())
                .with_client_cert_files(layout.operator_cert(), layout.operator_key())?
                .with_retry(warden_bao::RetryPolicy::no_retries()),
        )?;
        if let Err(e) = probe.health().await {
            return Err(anyhow::Error::new(e).context(format!(
                "the listener at {address} does not serve a chain to the rollover's new root"
            )))
            .hint("the lab's trust files keep both roots; install the listener CA the *next* root re-signed (`resign --profile listener-ca` before `promote`) and run finish again");
        }
    }
    let files = warden_lab_agents::write_trust_files(lab, env.name.as_str(), &new_root)
        .context("could not write the lab's trust files")?;
    out.progress(format!(
        "{}: {} trust file(s) hold only the new root",
        env.name,
        files.len()
    ));
    Ok(serde_json::json!({
        "listener_ca": installed.listener_ca,
        "replaced": installed.replaced,
        "root_added": installed.root_added,
        // Always: the nodes read their TLS files only at start (Lab::install_listener_ca).
        "restarted": true,
        "trust_files": files,
    }))
}

/// The rollover's new root, PEM, as the mount holds it.
async fn new_root_pem(
    client: &warden_bao::Client,
    env: &warden_spec::Environment,
    record: &rr::RolloverRecord,
) -> anyhow::Result<String> {
    let Some(id) = &record.new_root_issuer_id else {
        anyhow::bail!("the rollover record names no new root issuer");
    };
    Ok(client
        .pki_read_issuer(&env.mounts.pki, id)
        .await
        .context("could not read the new root from the mount")?
        .certificate)
}

/// The root rollover lines of `ca status` and posture.
pub(crate) fn render_status(r: &RolloverStatus) -> String {
    let rec = &r.record;
    let state = serde_json::to_value(rec.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut s = format!(
        "  root rollover: {state} (to {}, root {}…)\n",
        rec.new_root_subject,
        rec.new_root_sha256
            .get(..16)
            .unwrap_or(&rec.new_root_sha256)
    );
    let t = &r.trust_files;
    s += &format!("  trust files: {} hold the new root", t.holding_new.len());
    if !t.old_root_only.is_empty() {
        s += &format!("; ONLY THE OLD ROOT: {}", t.old_root_only.join(", "));
    }
    if !t.unknown.is_empty() {
        s += &format!("; unknown (older agents): {}", t.unknown.join(", "));
    }
    s += "\n";
    if !t.connection_old_root_only.is_empty() {
        s += &format!(
            "  connections trusting only the old root (restart these agents before the listener's certificate moves to the new root): {}\n",
            t.connection_old_root_only.join(", ")
        );
    }
    if !t.connection_unknown.is_empty() {
        s += &format!(
            "  connections not reported (agents older than tls_roots keep the anchors they started with; restart or upgrade them before the listener's certificate moves): {}\n",
            t.connection_unknown.join(", ")
        );
    }
    if !rec.behind.is_empty() {
        s += &format!(
            "  finished with trust files behind: {} ({})\n",
            rec.behind.join(", "),
            rec.forced_because.clone().unwrap_or_default()
        );
    }
    s
}
