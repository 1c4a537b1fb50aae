//! `warden revoke identity NAME | cert SERIAL | purpose P --reason …`: revoke now, record why.
//!
//! The work is `warden_registry::revoke`; this module checks and shows the plan, asks for
//! confirmation (or `--yes`), and explains errors. Everything is checked before anything
//! changes, so an unknown identity or a bad serial revokes nothing.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use time::OffsetDateTime;
use warden_registry::revoke::{self, IdentityPlan, PurposePlan, RevocationRecord, RevokeError};

use crate::hint::{Hint, HintExt};
use crate::input::{self, Confirmation};
use crate::output::Output;
use crate::session::{Access, Session};

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    #[command(subcommand)]
    command: RevokeCommand,
}

#[derive(Debug, Subcommand)]
enum RevokeCommand {
    /// Revoke an identity: its stored certificates go on the CRL (installed for cert auth too),
    /// its entity is disabled (every token it holds stops working, no login succeeds), and a
    /// record is written.
    Identity(IdentityArgs),
    /// Revoke one certificate by serial (it must be stored in the PKI mount); the CRL is
    /// rebuilt and installed for cert auth.
    Cert(CertArgs),
    /// Revoke a purpose: the stored certificates of its credentials go on the CRL, its
    /// registry entry is marked revoked (every agent under it refuses its next issuance and
    /// keeps what it has), and a record is written. Then write `revoked = true` in the spec.
    Purpose(PurposeArgs),
}

#[derive(Debug, Args)]
struct PurposeArgs {
    /// The purpose (an id of the spec's [purposes]).
    purpose: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct Common {
    #[command(flatten)]
    access: Access,
    /// Why: kept in the revocation record.
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Revoke without asking (the plan is still shown on stderr).
    #[arg(long)]
    yes: bool,
    /// Show the plan and change nothing.
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct IdentityArgs {
    /// The identity (an app, proxy, container or pipeline of the spec).
    name: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct CertArgs {
    /// The certificate's serial (`1a:2b:…`, `1a-2b-…` or `1a2b…`).
    serial: String,
    #[command(flatten)]
    common: Common,
}

pub(crate) async fn run(args: RevokeArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        RevokeCommand::Identity(a) => identity(a, out).await,
        RevokeCommand::Cert(a) => cert(a, out).await,
        RevokeCommand::Purpose(a) => purpose(a, out).await,
    }
}

fn check_reason(reason: &str) -> anyhow::Result<()> {
    if reason.trim().is_empty() {
        return Err(anyhow::anyhow!("--reason is empty; nothing was revoked"))
            .hint("say why (it is kept in the revocation record), e.g. --reason \"key leaked\"");
    }
    Ok(())
}

/// After the plan is shown: a dry run reports it and stops (`false`); otherwise the operator
/// confirms, unless `--yes` said so already (`true`: revoke).
fn go_ahead(
    c: &Common,
    out: &Output,
    dry_run: serde_json::Value,
    question: &str,
) -> anyhow::Result<bool> {
    if c.dry_run {
        out.emit(&dry_run, || "dry run; nothing was revoked\n".to_owned())?;
        return Ok(false);
    }
    if !c.yes {
        confirm(out, question)?;
    }
    Ok(true)
}

async fn identity(args: IdentityArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let c = &args.common;
    check_reason(&c.reason)?;
    let session = c.access.open("revoke identity", out)?;
    let plan = revoke::plan_identity(&session.client, session.spec(), &session.env, &args.name)
        .await
        .map_err(|e| explain(e, &session))?;
    out.stderr_block(&render_plan(&plan));
    if !go_ahead(
        c,
        out,
        serde_json::json!({ "dry_run": true, "plan": plan }),
        &format!("Revoke identity {}?", plan.identity),
    )? {
        return Ok(ExitCode::SUCCESS);
    }
    let by = session.whoami().await.unwrap_or_else(|| "unknown".into());
    let record = revoke::revoke_identity(
        &session.client,
        &session.env,
        &plan,
        &c.reason,
        &by,
        OffsetDateTime::now_utc(),
    )
    .await
    .map_err(|e| explain(e, &session))?;
    out.emit(&record, || render(&record))?;
    Ok(ExitCode::SUCCESS)
}

async fn cert(args: CertArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let c = &args.common;
    check_reason(&c.reason)?;
    let session = c.access.open("revoke cert", out)?;
    let serial = revoke::plan_cert(&session.client, &session.env, &args.serial)
        .await
        .map_err(|e| explain(e, &session))?;
    out.stderr_block(&format!(
        "Revocation in {}:\n  certificate {serial} in {} goes on the CRL; cert auth refuses it\n",
        session.env_name(),
        session.env.mounts.pki
    ));
    if !go_ahead(
        c,
        out,
        serde_json::json!({ "dry_run": true, "serial": serial }),
        &format!("Revoke certificate {serial}?"),
    )? {
        return Ok(ExitCode::SUCCESS);
    }
    let by = session.whoami().await.unwrap_or_else(|| "unknown".into());
    let record = revoke::revoke_cert(
        &session.client,
        &session.env,
        &serial,
        &c.reason,
        &by,
        OffsetDateTime::now_utc(),
    )
    .await
    .map_err(|e| explain(e, &session))?;
    out.emit(&record, || render(&record))?;
    Ok(ExitCode::SUCCESS)
}

async fn purpose(args: PurposeArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let c = &args.common;
    check_reason(&c.reason)?;
    let session = c.access.open("revoke purpose", out)?;
    let plan = revoke::plan_purpose(&session.client, session.spec(), &session.env, &args.purpose)
        .await
        .map_err(|e| explain(e, &session))?;
    out.stderr_block(&render_purpose_plan(&plan));
    if !go_ahead(
        c,
        out,
        serde_json::json!({ "dry_run": true, "plan": plan }),
        &format!("Revoke purpose {}?", plan.purpose),
    )? {
        return Ok(ExitCode::SUCCESS);
    }
    let by = session.whoami().await.unwrap_or_else(|| "unknown".into());
    let record = revoke::revoke_purpose(
        &session.client,
        &session.env,
        &plan,
        &c.reason,
        &by,
        OffsetDateTime::now_utc(),
    )
    .await
    .map_err(|e| explain(e, &session))?;
    out.emit(&record, || {
        format!(
            "{}  next: write `revoked = true` in [purposes.{}] of the spec (until then `warden plan` shows a conflict and `warden apply` refuses)\n",
            render(&record),
            record.target
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn render_purpose_plan(p: &PurposePlan) -> String {
    let mut s = format!("Revocation of purpose {} in {}:\n", p.purpose, p.env);
    if p.already_revoked {
        s.push_str("  registry      already revoked (revoked again, recorded again)\n");
    }
    s.push_str(&format!(
        "  credentials   {} covered here: {}\n",
        p.credentials.len(),
        p.credentials.join(", ")
    ));
    if p.certificates.is_empty() {
        s.push_str("  certificates  none reported by agents or stored in KV\n");
    }
    for c in &p.certificates {
        s.push_str(&format!(
            "  certificate   {} {}{}\n",
            c.serial,
            c.credential.as_deref().unwrap_or(""),
            if c.stored {
                ""
            } else {
                "  (not stored: cannot go on the CRL; valid until it expires)"
            }
        ));
    }
    s.push_str(&format!(
        "  registry      {} marked revoked: agents refuse their next issuance and keep what they have\n",
        p.registry_entry
    ));
    s
}

fn render_plan(p: &IdentityPlan) -> String {
    let mut s = format!("Revocation of identity {} in {}:\n", p.identity, p.env);
    if p.certificates.is_empty() {
        s.push_str("  certificates  none reported by its agent\n");
    }
    for c in &p.certificates {
        s.push_str(&format!(
            "  certificate   {} {}{}\n",
            c.serial,
            c.credential.as_deref().unwrap_or(""),
            if c.stored {
                ""
            } else {
                "  (not stored: cannot go on the CRL; valid until it expires)"
            }
        ));
    }
    match &p.approle {
        Some(a) => s.push_str(&format!(
            "  secret-ids    {} of {} destroyed\n",
            a.secret_id_accessors.len(),
            a.role_path
        )),
        None => s.push_str(&format!(
            "  login         cert auth refuses {} (CRL installed), role {}\n",
            p.common_name, p.cert_role
        )),
    }
    s.push_str(&format!(
        "  tokens        entity {} (alias {} on auth/{}) disabled: every token and login refused\n",
        p.entity_id
            .as_deref()
            .unwrap_or("(none yet: created disabled)"),
        p.alias,
        p.login_mount
    ));
    s
}

fn render(r: &RevocationRecord) -> String {
    let mut s = format!(
        "{}: revoked {} {} ({})\n  revoked serials  {}\n",
        r.env,
        r.kind,
        r.target,
        r.reason,
        if r.revoked_serials.is_empty() {
            "none".to_owned()
        } else {
            r.revoked_serials.join(", ")
        }
    );
    if !r.unrevocable_serials.is_empty() {
        s.push_str(&format!(
            "  not stored       {} (valid until they expire)\n",
            r.unrevocable_serials.join(", ")
        ));
    }
    if let Some(e) = &r.entity_disabled {
        s.push_str(&format!("  entity disabled  {e}\n"));
    }
    if r.secret_ids_destroyed > 0 {
        s.push_str(&format!(
            "  secret-ids       {} destroyed\n",
            r.secret_ids_destroyed
        ));
    }
    s.push_str(&format!(
        "  cert auth CRL    {}\n  recorded         warden/data/revocations/{} by {}\n",
        r.cert_auth_crl, r.id, r.by
    ));
    s
}

/// Asks on the terminal; refuses when nobody can answer.
fn confirm(out: &Output, question: &str) -> anyhow::Result<()> {
    input::confirm(
        out,
        question,
        &Confirmation {
            action: "revoke",
            shown: "plan",
            noun: "revocation",
            untouched: "nothing was revoked",
        },
    )
}

fn explain(e: RevokeError, session: &Session) -> anyhow::Error {
    let env = session.env_name().to_owned();
    match &e {
        RevokeError::Pipeline { .. } => anyhow::Error::new(e).context(Hint(
            "nothing was revoked; to stop it, remove the pipeline from the spec (or revoke its purpose) and `warden apply`".into(),
        )),
        RevokeError::UnknownIdentity { .. } => {
            let names: Vec<&str> = session
                .spec()
                .identities
                .iter()
                .filter(|i| i.environments.contains(&session.env.name))
                .map(|i| i.name.as_str())
                .collect();
            let hint = format!(
                "nothing was revoked; identities in `{env}`: {}",
                names.join(", ")
            );
            anyhow::Error::new(e).context(Hint(hint))
        }
        RevokeError::UnknownPurpose { purpose } => {
            let ids: Vec<&str> = session
                .spec()
                .purposes
                .iter()
                .map(|p| p.id.as_str())
                .collect();
            let mut hint = format!("nothing was revoked; purposes of the spec: {}", ids.join(", "));
            if let Some(s) = warden_spec::did_you_mean(purpose, &ids) {
                hint = format!("{s} {hint}");
            }
            anyhow::Error::new(e).context(Hint(hint))
        }
        RevokeError::PurposeNotHere { .. } => anyhow::Error::new(e).context(Hint(
            "nothing was revoked; choose the environment it governs credentials in with --env".into(),
        )),
        RevokeError::NotApplied { .. } => anyhow::Error::new(e).context(Hint(
            "nothing was revoked; run `warden apply` for this environment first (or write `revoked = true` in the spec and apply)".into(),
        )),
        RevokeError::BadSerial { .. } | RevokeError::UnknownSerial { .. } => {
            anyhow::Error::new(e).context(Hint(
                "nothing was revoked; `warden posture` shows the serials agents reported (OpenBao stores identity certificates; app certificates are not stored and expire on their own)".into(),
            ))
        }
        RevokeError::RecordNamesTaken { .. } => anyhow::Error::new(e)
            .context(Hint("run the same command again in a second".into())),
        // Failed half-way (a sealed or unreachable server): what was revoked stays revoked,
        // and every step repeats safely.
        RevokeError::Bao { .. } | RevokeError::Incomplete { .. } => anyhow::Error::new(e)
            .context(format!("{env}: revocation"))
            .context(Hint(
                "check the server (`warden doctor`) and the operator's login, then run the same command again: each step is idempotent, what is already revoked stays revoked".into(),
            )),
        _ => anyhow::Error::new(e).context(format!("{env}: revocation")),
    }
}
