//! `warden posture`: every purpose's credentials in each environment, judged from live state —
//! issued, expires, rotation due, status, evidence link — as a table or `--output json`.
//!
//! The exit code is the worst status, so a pipeline can gate on it: 0 healthy, 10 due,
//! 11 unknown, 12 stale, 13 expired, 14 revoked (docs/cli.md). `--fail-on` raises the bar:
//! statuses better than it exit 0. It also judges environment isolation (ADR 0013): an
//! environment's PKI intermediate that can issue another environment's names exits 3 when no
//! status already fails the gate.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_pki::IsolationFinding;
use warden_registry::posture::{self, Report, rfc3339};
use warden_spec::Status;

use crate::context::Target;
use crate::hint::HintExt as _;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct PostureArgs {
    #[command(flatten)]
    target: Target,
    /// Judge at this instant instead of now: RFC 3339 (`2026-12-01T00:00:00Z`) or an offset
    /// from now (`+7d`, `+12h`) — "what will be due next week?".
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Exit 0 when the worst status is better than this one (default: any non-healthy status
    /// sets the exit code).
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    fail_on: Option<Status>,
    /// Only this purpose.
    #[arg(long, value_name = "ID")]
    purpose: Option<String>,
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s).ok_or_else(|| {
        format!(
            "unknown status `{s}`; one of {}",
            Status::ALL.map(Status::as_str).join(", ")
        )
    })
}

/// Exit code of a worst status.
fn code(s: Status) -> u8 {
    match s {
        Status::Healthy => 0,
        Status::Due => crate::exit::POSTURE_DUE,
        Status::Unknown => crate::exit::POSTURE_DUE + 1,
        Status::Stale => crate::exit::POSTURE_DUE + 2,
        Status::Expired => crate::exit::POSTURE_DUE + 3,
        Status::Revoked => crate::exit::POSTURE_DUE + 4,
    }
}

#[derive(Serialize)]
struct PostureOutput {
    at: String,
    worst: Status,
    environments: Vec<Report>,
    /// Environment isolation (ADR 0013): whether an environment's PKI intermediate can issue
    /// names another environment's trust accepts. Empty when every boundary holds.
    isolation: Vec<IsolationFinding>,
    /// Every CA of each environment's chain: cadence by the spec's `[ca]` policy and live
    /// leaves per issuer (ADR 0029), as `warden ca status` shows them.
    cas: Vec<warden_registry::ca::CaStatus>,
}

pub(crate) async fn run(args: PostureArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let now = instant(args.at.as_deref())?;
    if let Some(p) = &args.purpose
        && resolved.spec.purpose(p).is_none()
    {
        let ids: Vec<&str> = resolved
            .spec
            .purposes
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        return Err(anyhow::anyhow!("the spec has no purpose `{p}`")).with_hint(|| {
            match warden_spec::did_you_mean(p, &ids) {
                Some(h) => h,
                None => format!("purposes: {}", ids.join(", ")),
            }
        });
    }
    let mut environments = Vec::new();
    for env in &resolved.envs {
        out.progress(format!("{}: reading posture", env.name));
        let client = resolved.client(env)?;
        let mut report = posture::collect(&client, &resolved.spec, env, now)
            .await
            .with_context(|| format!("{}: could not read posture", env.name))
            .hint("posture reads KV metadata, transit keys, secret-id accessors, leases and agent reports: use an operator token (or the warden-registry-reader policy plus those reads)")?;
        if let Some(p) = &args.purpose {
            report.purposes.retain(|x| &x.purpose == p);
            report.worst = report
                .purposes
                .iter()
                .map(|p| p.status)
                .max()
                .unwrap_or(Status::Healthy);
        }
        environments.push(report);
    }
    let worst = environments
        .iter()
        .map(|r| r.worst)
        .max()
        .unwrap_or(Status::Healthy);
    let isolation = crate::cmd::isolation::live_findings(&resolved)
        .await
        .context("could not check the environments' PKI intermediates against each other")?;
    let mut cas = Vec::new();
    let judged_at =
        OffsetDateTime::from_unix_timestamp(now).unwrap_or_else(|_| OffsetDateTime::now_utc());
    for env in &resolved.envs {
        let client = resolved.client(env)?;
        // The chain's cadence is part of the picture, never a reason posture cannot be shown.
        match warden_registry::ca::status(&client, &resolved.spec, env, judged_at).await {
            Ok(st) => cas.push(st),
            Err(e) => out.warn(format!("{}: the CA rows could not be read: {e}", env.name)),
        }
    }
    let output = PostureOutput {
        at: rfc3339(now),
        worst,
        environments,
        isolation,
        cas,
    };
    out.emit(&output, || render(&output))?;
    let gate = args.fail_on.unwrap_or(Status::Due);
    if worst >= gate {
        return Ok(ExitCode::from(code(worst)));
    }
    // A broken boundary fails the check even when every credential is healthy: whoever runs
    // one environment can impersonate another's services.
    if output.isolation.iter().any(IsolationFinding::blocking) {
        out.warn(format!("next step: {}", crate::cmd::ca::RESIGN_HINT));
        return Ok(ExitCode::from(crate::exit::CHECK_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn instant(at: Option<&str>) -> anyhow::Result<i64> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let Some(at) = at else { return Ok(now) };
    if let Some(rel) = at.strip_prefix('+') {
        let d = warden_spec::Ttl::parse(rel)
            .map_err(|e| anyhow::anyhow!("--at {at}: {e}"))
            .hint("an offset looks like +7d, +12h or +30m")?;
        return Ok(now + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2));
    }
    OffsetDateTime::parse(at, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|e| anyhow::anyhow!("--at {at}: not an RFC 3339 time: {e}"))
        .hint("for example --at 2026-12-01T00:00:00Z, or an offset like --at +7d")
}

fn date(t: Option<i64>, now: i64) -> String {
    match t {
        None => "-".to_owned(),
        Some(t) if t == now => "now".to_owned(),
        Some(t) if t >= now => format!("in {}", warden_spec::rules::human(t - now)),
        Some(t) => format!("{} ago", warden_spec::rules::human(now - t)),
    }
}

fn render(o: &PostureOutput) -> String {
    let mut s = String::new();
    for r in &o.environments {
        s.push_str(&format!(
            "Environment {} (as of {}):\n",
            r.env,
            rfc3339(r.at)
        ));
        s.push_str(&format!(
            "  {:<20} {:<28} {:<8} {:<10} {:<10} {:<10} {:<12} {}\n",
            "PURPOSE", "CREDENTIAL", "STATUS", "ISSUED", "EXPIRES", "DUE", "EVIDENCE", "WHY"
        ));
        for p in &r.purposes {
            for c in &p.credentials {
                s.push_str(&format!(
                    "  {:<20} {:<28} {:<8} {:<10} {:<10} {:<10} {:<12} {}\n",
                    p.purpose,
                    c.id,
                    c.status.as_str(),
                    date(c.issued_at, r.at),
                    date(c.expires_at, r.at),
                    date(c.rotation_due_at, r.at),
                    p.evidence,
                    c.reason
                ));
            }
        }
        if r.purposes.is_empty() {
            s.push_str("  (no purposes govern anything here)\n");
        }
        for b in &r.break_glass {
            s.push_str(&format!(
                "  BREAK-GLASS {} open until {} ({}): {:?}, shares of {}, policies {}\n",
                b.id,
                b.expires_at_utc(),
                date(Some(b.expires_at), r.at),
                b.reason,
                b.custodians.join(","),
                b.policies.join(",")
            ));
        }
    }
    if !o.isolation.is_empty() {
        s.push_str("Environment isolation:\n");
        for f in &o.isolation {
            let tag = if f.blocking() { "BROKEN" } else { "note" };
            s.push_str(&format!("  {tag}: {f}\n"));
        }
    }
    if !o.cas.is_empty() {
        s.push_str("CAs:\n");
        s.push_str(&crate::cmd::ca::render_status(&o.cas));
    }
    s.push_str(&format!("Worst status: {}\n", o.worst));
    s
}
