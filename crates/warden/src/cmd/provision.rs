//! `warden plan`, `warden apply` and `warden lint`: the spec against live environments. The
//! plan and apply themselves are [`crate::provisioning`], which `warden lab up` uses too.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use warden_plan::lint::Finding;
use warden_spec::Environment;

use crate::context::{Resolved, Target};
use crate::exit;
use crate::hint::{HintExt, WithCode};
use crate::output::Output;
use crate::provisioning::{apply_resolved, build_plan, render_findings, render_plan};

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    target: Target,
    /// Also plan the removal of objects Warden created that are no longer in the spec.
    #[arg(long)]
    prune: bool,
    /// Requests in flight per environment.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
}

#[derive(Debug, Args)]
pub(crate) struct LintArgs {
    #[command(flatten)]
    target: Target,
    /// Only lint the spec's desired state; do not read live policies.
    #[arg(long)]
    offline: bool,
}

pub(crate) async fn plan(args: PlanArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let report = build_plan(&resolved, args.prune, usize::from(args.concurrency), out).await?;
    out.emit(&report, || render_plan(&report))?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn apply(args: PlanArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let output = apply_resolved(&resolved, args.prune, args.concurrency.into(), out).await?;
    out.emit(&output, || output.summary())?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn lint(args: LintArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let mut findings = Vec::new();
    for env in &resolved.envs {
        findings.extend(warden_plan::lint::lint_desired(&resolved.spec, env));
        if !args.offline {
            findings.extend(lint_live(&resolved, env).await?);
        }
    }
    if !args.offline {
        findings.extend(lint_isolation(&resolved).await?);
    }
    out.emit(&findings, || {
        render_findings(&findings, "No least-privilege findings.")
    })?;
    if findings
        .iter()
        .any(|f| f.blocking() && f.rule == warden_plan::lint::rules::ENV_ISOLATION)
    {
        return Err(anyhow::anyhow!(
            "{} unwaived finding(s), an environment's PKI intermediate among them",
            findings.iter().filter(|f| f.blocking()).count()
        ))
        .context(WithCode(exit::CHECK_FAILED))
        .hint(crate::cmd::ca::RESIGN_HINT);
    }
    if findings.iter().any(Finding::blocking) {
        return Err(anyhow::anyhow!("{} unwaived least-privilege finding(s)", findings.iter().filter(|f| f.blocking()).count()))
            .context(WithCode(exit::CHECK_FAILED))
            .hint("narrow the policy, or waive the rule for that identity in the spec ([[waivers]] rule, identity, reason)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Environment isolation (ADR 0013) as lint findings: an intermediate that can issue another
/// environment's names. What does not cross the boundary (a name the spec shares, an own name
/// outside the constraints) is `posture`'s to report, not a least-privilege finding.
async fn lint_isolation(resolved: &Resolved) -> anyhow::Result<Vec<Finding>> {
    let findings = crate::cmd::isolation::live_findings(resolved).await?;
    Ok(findings
        .iter()
        .filter(|f| f.blocking())
        .map(|f| Finding {
            rule: warden_plan::lint::rules::ENV_ISOLATION,
            env: f.env().to_owned(),
            identity: resolved
                .spec
                .environment(f.env())
                .map(|e| e.mounts.pki.clone())
                .unwrap_or_default(),
            source: "live",
            message: f.to_string(),
            waived: None,
        })
        .collect())
}

async fn lint_live(resolved: &Resolved, env: &Environment) -> anyhow::Result<Vec<Finding>> {
    let client = resolved.client(env)?;
    let mut live: BTreeMap<String, Vec<warden_spec::naming::policy::Grant>> = BTreeMap::new();
    for id in resolved.spec.identities_in(env.name.as_str()) {
        let name = warden_spec::naming::policy_name(&resolved.spec, id);
        match client.read_policy(&name).await {
            Ok(hcl) => {
                let grants = warden_spec::naming::policy::parse(&hcl).map_err(|e| {
                    anyhow::anyhow!("{}: policy {name} is unreadable: {e}", env.name)
                })?;
                live.insert(id.name.to_string(), grants);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e).with_context(|| format!("{}: read policy {name}", env.name)),
        }
    }
    let mut findings = warden_plan::lint::lint(&resolved.spec, env, "live", &|id| {
        live.get(id.name.as_str()).cloned()
    });
    findings.extend(
        crate::cmd::operator::lint_live_operator_policy(&client, &resolved.spec, env).await?,
    );
    if resolved
        .spec
        .transport_in(env.name.as_str())
        .next()
        .is_some()
    {
        let roles = live_cert_roles(&client, env).await?;
        findings.extend(warden_plan::lint::lint_transport_logins(
            &resolved.spec,
            env,
            &roles,
        ));
    }
    Ok(findings)
}

/// Every cert-auth role of `env` (the identities' mount and the operators'), with its name
/// constraints: what a transport certificate must never satisfy (ADR 0010).
async fn live_cert_roles(
    client: &warden_bao::Client,
    env: &Environment,
) -> anyhow::Result<Vec<warden_plan::lint::CertRoleNames>> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            serde_json::Value::String(s) if !s.is_empty() => {
                s.split(',').map(|p| p.trim().to_owned()).collect()
            }
            _ => Vec::new(),
        }
    };
    let mut out = Vec::new();
    for mount in [
        env.mounts.cert_auth.trim_matches('/'),
        warden_spec::naming::operator::OPERATOR_AUTH_MOUNT,
    ] {
        let list = format!("auth/{mount}/certs");
        let names = match client.list(&list).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e).with_context(|| format!("{}: list {list}", env.name)),
        };
        for name in names {
            let path = format!("auth/{mount}/certs/{name}");
            let data = client
                .read(&path)
                .await
                .with_context(|| format!("{}: read {path}", env.name))?
                .data
                .unwrap_or_default();
            out.push(warden_plan::lint::CertRoleNames {
                common_names: strings(&data["allowed_common_names"])
                    .into_iter()
                    .chain(strings(&data["allowed_names"]))
                    .collect(),
                dns_sans: strings(&data["allowed_dns_sans"]),
                organizational_units: strings(&data["allowed_organizational_units"]),
                path,
            });
        }
    }
    Ok(out)
}
