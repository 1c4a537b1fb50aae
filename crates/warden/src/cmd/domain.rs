//! `warden domain status | renew`: the spec's `[domains."…"]` certificates, kept in KV v2 at
//! `<kv>/domains/<domain>/cert` with their expiry and renewed `renew_before` their end through
//! the environment's PKI role `domain-<slug>`.
//!
//! The work is `warden_keys::DomainStore`; this module picks the domains and environments,
//! refuses renewals under a revoked purpose, and renders tables.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use warden_keys::{DomainState, DomainStatus, DomainStore, Issuer, SystemClock};
use warden_spec::rules::{self, Refusal};
use warden_spec::{DomainCert, Environment, Spec};

use crate::context::{Resolved, Target};
use crate::hint::{HintExt, WithCode};
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct DomainArgs {
    #[command(subcommand)]
    command: DomainCommand,
}

#[derive(Debug, Subcommand)]
enum DomainCommand {
    /// Each domain certificate per environment: serial, expiry, days left, whether renewal is
    /// due. Exits 3 when one is missing, due or expired.
    Status(StatusArgs),
    /// Renew the domain certificates that are missing, due or expired (all of the spec's, or
    /// DOMAIN): key generated here, CSR signed by the environment's PKI, written as a new
    /// version with check-and-set. A second run does nothing.
    Renew(RenewArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
struct RenewArgs {
    /// Only this domain.
    domain: Option<String>,
    #[command(flatten)]
    target: Target,
    /// Renew even when not due.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    domains: Vec<EnvStatus>,
}

#[derive(Debug, Serialize)]
struct EnvStatus {
    env: String,
    #[serde(flatten)]
    status: DomainStatus,
}

#[derive(Debug, Serialize)]
struct RenewReport {
    renewed: usize,
    kept: usize,
    domains: Vec<EnvRenewal>,
}

#[derive(Debug, Serialize)]
struct EnvRenewal {
    env: String,
    domain: String,
    renewed: bool,
    before: DomainStatus,
    after: DomainStatus,
}

pub(crate) async fn run(args: DomainArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        DomainCommand::Status(a) => status(a, out).await,
        DomainCommand::Renew(a) => renew(a, out).await,
    }
}

async fn status(args: StatusArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let mut rows = Vec::new();
    for (env, domains) in per_env(&resolved, None)? {
        let store = store(&resolved, env)?;
        for d in domains {
            let status = store
                .status(d)
                .await
                .with_context(|| format!("{}: could not read {}", env.name, d.domain))?;
            rows.push(EnvStatus {
                env: env.name.to_string(),
                status,
            });
        }
    }
    let report = StatusReport { domains: rows };
    out.emit(&report, || render_status(&report))?;
    let attention = report
        .domains
        .iter()
        .filter(|r| r.status.state.needs_renewal())
        .count();
    if attention > 0 {
        return Err(
            anyhow::anyhow!("{attention} domain certificate(s) missing, due or expired")
                .context(crate::hint::Hint(
                    "`warden domain renew` renews them (same --spec/--lab/--env)".to_owned(),
                ))
                .context(WithCode(crate::exit::CHECK_FAILED)),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn renew(args: RenewArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let selected = per_env(&resolved, args.domain.as_deref())?;
    // Refuse revoked purposes before anything is issued.
    for (_, domains) in &selected {
        for d in domains {
            refuse_revoked(&resolved.spec, d)?;
        }
    }
    // And those revoked live (`warden revoke purpose`) before the spec says so (ADR 0032).
    for (env, domains) in &selected {
        let client = resolved.client(env)?;
        for d in domains {
            let Ok(p) = rules::domain_purpose(&resolved.spec, d) else {
                continue;
            };
            let revoked = warden_registry::revoke::revoked_live(&client, p.id.as_str())
                .await
                .map_err(|e| anyhow::Error::new(e).context(env.name.to_string()))?;
            if revoked {
                return Err(crate::hint::revoked_purpose_live(
                    p.id.as_str(),
                    &format!("the certificate of {}", d.domain),
                ));
            }
        }
    }
    let mut rows = Vec::new();
    for (env, domains) in selected {
        let store = store(&resolved, env)?;
        let client = resolved.client(env)?;
        let issuer_not_after = issuer_not_after(&resolved, env).await?;
        for d in domains {
            // PKI or ACME, as the domain's spec says (ADR 0031).
            let issuer = Issuer::for_domain(&client, &env.mounts.kv, &env.mounts.pki, d)
                .map_err(|e| explain(e, env, d, &rows))?;
            let before = store
                .status(d)
                .await
                .map_err(|e| explain(e, env, d, &rows))?;
            if args.force || before.state.needs_renewal() {
                fail_closed(&resolved.spec, env, d, &before, issuer_not_after)?;
            }
            let r = store
                .renew_if_due(d, &issuer, args.force)
                .await
                .map_err(|e| explain(e, env, d, &rows))?;
            rows.push(EnvRenewal {
                env: env.name.to_string(),
                domain: d.domain.clone(),
                renewed: r.renewed,
                before: r.before,
                after: r.after,
            });
        }
    }
    let renewed = rows.iter().filter(|r| r.renewed).count();
    let report = RenewReport {
        renewed,
        kept: rows.len() - renewed,
        domains: rows,
    };
    out.emit(&report, || render_renew(&report))?;
    Ok(ExitCode::SUCCESS)
}

fn store(resolved: &Resolved, env: &Environment) -> anyhow::Result<DomainStore> {
    Ok(DomainStore::new(
        resolved.client(env)?,
        env.mounts.kv.as_str(),
        Arc::new(SystemClock),
    ))
}

/// The chosen environments, each with the domains (all, or `only`) that live there.
fn per_env<'r>(
    resolved: &'r Resolved,
    only: Option<&str>,
) -> anyhow::Result<Vec<(&'r Environment, Vec<&'r DomainCert>)>> {
    let spec = &resolved.spec;
    if let Some(name) = only {
        let name = name.to_ascii_lowercase();
        if !spec.domains.iter().any(|d| d.domain == name) {
            let known: Vec<&str> = spec.domains.iter().map(|d| d.domain.as_str()).collect();
            return Err(anyhow::anyhow!("the spec has no domain `{name}`")).with_hint(|| {
                match warden_spec::suggest(&name, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if known.is_empty() => {
                        "declare it as [domains.\"NAME\"] with `environments` and `app`".to_owned()
                    }
                    None => format!("domains in the spec: {}", known.join(", ")),
                }
            });
        }
    }
    let mut out = Vec::new();
    for env in &resolved.envs {
        let here: Vec<&DomainCert> = spec
            .domains
            .iter()
            .filter(|d| d.environments.contains(&env.name))
            .filter(|d| only.is_none_or(|o| d.domain.eq_ignore_ascii_case(o)))
            .collect();
        if !here.is_empty() {
            out.push((env, here));
        }
    }
    if out.is_empty() {
        return Err(anyhow::anyhow!(
            "no domain certificate lives in the chosen environments"
        ))
        .hint("domains are declared as [domains.\"NAME\"] with `environments = [...]`");
    }
    Ok(out)
}

/// When the environment's issuing intermediate stops being valid.
async fn issuer_not_after(resolved: &Resolved, env: &Environment) -> anyhow::Result<Option<i64>> {
    let pem = resolved
        .client(env)?
        .pki_ca_cert(&env.mounts.pki)
        .await
        .with_context(|| format!("{}: read the {} intermediate", env.name, env.mounts.pki))?;
    Ok(warden_pki::parse_pem_bundle(&pem)
        .ok()
        .and_then(|certs| certs.first().map(|c| c.not_after.unix_timestamp())))
}

/// The fail-closed gate is the purpose rule [`rules::check_domain_renewal`]; this adds what
/// to do about a refusal.
fn fail_closed(
    spec: &Spec,
    env: &Environment,
    d: &DomainCert,
    before: &DomainStatus,
    issuer_not_after: Option<i64>,
) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let issued = before.issued_at.map(time::OffsetDateTime::unix_timestamp);
    match rules::check_domain_renewal(spec, d, issued, issuer_not_after, now) {
        Ok(_) => Ok(()),
        Err(refusal) => Err(refused(env, d, &refusal)),
    }
}

/// Refuses a domain whose purpose is revoked or missing, before anything is issued.
fn refuse_revoked(spec: &Spec, d: &DomainCert) -> anyhow::Result<()> {
    match rules::domain_purpose(spec, d) {
        Ok(_) => Ok(()),
        Err(Refusal::Revoked { purpose }) => Err(crate::hint::revoked_purpose(
            &purpose,
            &format!("the certificate of {}", d.domain),
        )),
        Err(Refusal::Ungoverned { credential }) => {
            Err(anyhow::anyhow!("`{credential}` ({}) is governed by no purpose", d.domain))
                .with_hint(|| {
                    format!("every credential lives under a purpose: add \"{credential}\" to the `covers` of one in the spec")
                })
        }
        Err(other) => Err(anyhow::Error::new(other)),
    }
}

/// A refused renewal: what was refused and why (the rule), and what to do about it.
fn refused(env: &Environment, d: &DomainCert, refusal: &Refusal) -> anyhow::Error {
    let credential = rules::domain_credential(d);
    let hint = match refusal {
        Refusal::OutsideGrace { purpose, .. } => format!(
            "the stored certificate stays in place and keeps working until it expires (`warden posture --purpose {purpose}` shows it stale); after review, either widen the purpose's rotation in the spec or delete the entry (`bao kv metadata delete {}/domains/{}/cert`) so the next renewal is a first issuance",
            env.mounts.kv, d.domain
        ),
        Refusal::IssuerTooShort { .. } => format!(
            "rotate the environment's intermediate first (`warden ca rotate-intermediate begin --env {}`, then sign it offline and activate: docs/ca.md); the stored certificate is unchanged",
            env.name
        ),
        Refusal::Revoked { purpose } => format!(
            "if the revocation was a mistake, remove `revoked = true` from [purposes.{purpose}] in the spec"
        ),
        _ => format!(
            "every credential lives under a purpose: add \"{credential}\" to the `covers` of one in the spec"
        ),
    };
    anyhow::anyhow!(
        "{}: refusing to renew {} ({credential}): {refusal}",
        env.name,
        d.domain
    )
    .context(crate::hint::Hint(hint))
}

fn explain(
    err: warden_keys::Error,
    env: &Environment,
    d: &DomainCert,
    done: &[EnvRenewal],
) -> anyhow::Error {
    let role = d.pki_role();
    let hint = if err.is_conflict() {
        Some("another renewal wrote a newer version first; nothing of this run was stored for it: run `warden domain status` to see it".to_owned())
    } else if matches!(err, warden_keys::Error::Bao { what, .. } if what.starts_with("sign")) {
        Some(format!(
            "the PKI role {}/roles/{role} must exist and allow {}: run `warden apply` for this environment first",
            env.mounts.pki, d.domain
        ))
    } else if let warden_keys::Error::Challenge { .. } = &err {
        let listen = match &d.issuer {
            warden_spec::DomainIssuer::Acme(a) => a.listen.to_string(),
            warden_spec::DomainIssuer::Pki => String::new(),
        };
        Some(format!(
            "the CA connects to port 80 of the address {} resolves to; Warden answered on {listen}: make the name resolve there (or set [domains.\"{}\".acme].listen), then run `warden domain renew {}` again; the stored certificate is unchanged",
            d.domain, d.domain, d.domain
        ))
    } else if let warden_keys::Error::Acme { .. } = &err {
        Some(format!(
            "for the environment's own OpenBao, `warden lab up` (or the PKI mount's config/acme and config/cluster) must have turned ACME on, and `warden apply` must have provisioned the role {}/roles/{role}; the stored certificate is unchanged",
            env.mounts.pki
        ))
    } else {
        None
    };
    let mut what = format!("{}: could not renew {}", env.name, d.domain);
    let renewed: Vec<String> = done
        .iter()
        .filter(|r| r.renewed)
        .map(|r| format!("{} in {}", r.domain, r.env))
        .collect();
    if !renewed.is_empty() {
        let _ = write!(what, " (already renewed: {})", renewed.join(", "));
    }
    let err = anyhow::Error::new(err).context(what);
    match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    }
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t.to_string()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn date(t: Option<time::OffsetDateTime>) -> String {
    use time::format_description::well_known::Rfc3339;
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

fn render_status(r: &StatusReport) -> String {
    let rows = r
        .domains
        .iter()
        .map(|d| {
            let s = &d.status;
            vec![
                d.env.clone(),
                s.domain.clone(),
                opt(s.version.map(|v| format!("v{v}"))),
                opt(s.serial.clone()),
                date(s.not_after),
                opt(s.days_left),
                format!(
                    "{}{}",
                    s.state.as_str(),
                    if s.state == DomainState::Valid {
                        String::new()
                    } else {
                        format!(" (renews {}d before expiry)", s.renew_before_days)
                    }
                ),
            ]
        })
        .collect();
    table(
        &[
            "ENV",
            "DOMAIN",
            "VERSION",
            "SERIAL",
            "NOT AFTER",
            "DAYS LEFT",
            "DUE",
        ],
        rows,
    )
}

fn render_renew(r: &RenewReport) -> String {
    let rows = r
        .domains
        .iter()
        .map(|d| {
            let action = if d.renewed {
                format!(
                    "renewed: {} → v{}",
                    opt(d.before.version.map(|v| format!("v{v}"))),
                    opt(d.after.version)
                )
            } else {
                format!(
                    "kept: {} ({}d left)",
                    d.before.state.as_str(),
                    opt(d.before.days_left)
                )
            };
            vec![
                d.env.clone(),
                d.domain.clone(),
                action,
                opt(d.after.serial.clone()),
                date(d.after.not_after),
            ]
        })
        .collect();
    let mut s = table(&["ENV", "DOMAIN", "ACTION", "SERIAL", "NOT AFTER"], rows);
    let _ = write!(
        s,
        "\n{} renewed, {} kept (not due{})",
        r.renewed,
        r.kept,
        if r.kept > 0 {
            "; --force renews anyway"
        } else {
            ""
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An intermediate too short-lived for the next leaf: the hint named `ca sign-intermediate`
    /// alone, which signs a CSR but replaces nothing in OpenBao; the rotation is
    /// `ca rotate-intermediate` (ADR 0029).
    #[test]
    fn an_issuer_too_short_points_at_the_intermediate_rotation() {
        let spec = warden_spec::parse(crate::cmd::lab::EXAMPLE_SPEC, "warden.toml").expect("spec");
        let d = &spec.domains[0];
        let env = spec.environment(d.environments[0].as_str()).expect("env");
        let e = refused(
            env,
            d,
            &Refusal::IssuerTooShort {
                issuer_left: "1d".into(),
                leaf_ttl: "90d".into(),
            },
        );
        let hint = e
            .downcast_ref::<crate::hint::Hint>()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            hint.contains(&format!(
                "warden ca rotate-intermediate begin --env {}",
                env.name
            )),
            "{hint}"
        );
    }
}
