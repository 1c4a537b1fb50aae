//! Plan and apply, shared by `warden plan`/`apply` and `warden lab up` (which applies a spec to
//! the lab it just started): build the plan of every selected environment, show it, refuse on
//! conflicts or unwaived lint findings, then apply environment by environment.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use warden_plan::lint::Finding;
use warden_plan::{Action, ApplyReport, Change, EnvInputs, EnvPlan};
use warden_spec::Environment;

use crate::context::Resolved;
use crate::hint::HintExt;
use crate::output::Output;

/// The machine-readable plan: counts at the top level so a pipeline can gate on them.
#[derive(Debug, Serialize)]
pub(crate) struct PlanReport {
    creates: usize,
    updates: usize,
    deletes: usize,
    conflicts: usize,
    environments: Vec<EnvPlan>,
    lint: Vec<Finding>,
    /// Accepted but worth saying: purposes stored in a Kubernetes Secret.
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ApplyOutput {
    creates: usize,
    updates: usize,
    deletes: usize,
    writes: usize,
    seconds: f64,
    environments: Vec<ApplyReport>,
}

impl PlanReport {
    /// Creates, updates and deletes: what `apply` would change.
    pub(crate) fn changes(&self) -> usize {
        self.creates + self.updates + self.deletes
    }
}

impl ApplyOutput {
    pub(crate) fn summary(&self) -> String {
        format!(
            "Apply complete: {} created, {} updated, {} deleted ({} writes, {:.2}s).",
            self.creates, self.updates, self.deletes, self.writes, self.seconds
        )
    }
}

/// Plans every selected environment, refuses on conflicts or unwaived lint findings (before
/// any write anywhere), then applies environment by environment.
pub(crate) async fn apply_resolved(
    resolved: &Resolved,
    prune: bool,
    concurrency: usize,
    out: &Output,
) -> anyhow::Result<ApplyOutput> {
    let started = Instant::now();
    let report = build_plan(resolved, prune, concurrency, out).await?;
    out.stderr_block(&render_plan(&report));
    refuse_if_blocked(&report)?;
    let mut applied = Vec::new();
    for env_plan in &report.environments {
        let env = resolved
            .envs
            .iter()
            .find(|e| e.name.as_str() == env_plan.env)
            .expect("planned environments come from the spec");
        if env_plan.changes.is_empty() {
            applied.push(ApplyReport {
                env: env_plan.env.clone(),
                ..Default::default()
            });
            continue;
        }
        let client = resolved.client(env)?;
        let progress = progress_printer(out, &env_plan.env);
        let r = warden_plan::apply_env(&client, env_plan, concurrency, progress)
            .await
            .with_context(|| format!("apply to {} did not complete", env_plan.env))
            .hint("what succeeded is applied and recorded; fix the cause and run apply again (it only does what is left)")?;
        applied.push(r);
    }
    Ok(ApplyOutput {
        creates: applied.iter().map(|r| r.created).sum(),
        updates: applied.iter().map(|r| r.updated).sum(),
        deletes: applied.iter().map(|r| r.deleted).sum(),
        writes: applied.iter().map(|r| r.writes).sum(),
        seconds: started.elapsed().as_secs_f64(),
        environments: applied,
    })
}

pub(crate) async fn build_plan(
    resolved: &Resolved,
    prune: bool,
    concurrency: usize,
    out: &Output,
) -> anyhow::Result<PlanReport> {
    let mut environments = Vec::new();
    let mut lint = Vec::new();
    for env in &resolved.envs {
        let name = env.name.as_str();
        out.progress(format!("{name}: reading live state"));
        let client = resolved.client(env)?;
        let login = crate::cmd::operator::read_as_planner(&client, env).await;
        let inputs = env_inputs(resolved, env, &client).await?;
        let desired = warden_plan::desired_objects(&resolved.spec, env, &inputs);
        lint.extend(warden_plan::lint::lint_desired(&resolved.spec, env));
        let planned = warden_plan::plan_env(&client, name, desired, prune, concurrency).await;
        if matches!(login, crate::cmd::operator::PlanLogin::Planner) {
            crate::cmd::operator::give_back(&client).await;
        }
        let mut plan =
            planned.with_context(|| format!("planning {name} failed; nothing was changed"))?;
        plan.unpurposed = warden_plan::unpurposed(&resolved.spec, env);
        plan.login = login.describe();
        environments.push(plan);
    }
    let count = |a: Action| environments.iter().map(|p| p.count(a)).sum();
    // A Kubernetes Secret is a copy outside OpenBao's custody and audit: accepted as a
    // transitional cache, never as the source of truth, so every such purpose is pointed out.
    let warnings = resolved
        .spec
        .purposes
        .iter()
        .filter(|p| p.tier == warden_spec::StorageTier::KubernetesSecret)
        .map(|p| {
            format!(
                "purpose `{}` is stored as a kubernetes_secret: accepted only as a transitional cache; OpenBao stays the source of truth, so rotate there and let the cache follow",
                p.id
            )
        })
        .collect();
    Ok(PlanReport {
        creates: count(Action::Create),
        updates: count(Action::Update),
        deletes: count(Action::Delete),
        conflicts: count(Action::Conflict),
        environments,
        lint,
        warnings,
    })
}

/// Live facts the desired state depends on: the identity CA and the CI validation keys.
async fn env_inputs(
    resolved: &Resolved,
    env: &Environment,
    client: &warden_bao::Client,
) -> anyhow::Result<EnvInputs> {
    let name = env.name.as_str();
    // Every valid intermediate of the mount, default first: two during an intermediate
    // rotation's overlap, so identity certificates from either issuer log in (ADR 0029).
    let identity_ca_pem = warden_pki::intermediate_bundle(
        &warden_registry::ca::trusted_intermediates(client, env, time::OffsetDateTime::now_utc())
            .await
            .with_context(|| format!("{name}: read the {} intermediates", env.mounts.pki))?,
    );
    if identity_ca_pem.trim().is_empty() {
        return Err(anyhow::anyhow!("{name}: the PKI mount `{}` has no intermediate", env.mounts.pki)).with_hint(|| {
            "Warden pins every cert-auth role to the environment's intermediate and does not create it: \
             run `warden lab up`, or sign one with `warden ca sign-intermediate` and import it"
                .to_owned()
        });
    }
    let mut jwt_pubkeys = Vec::new();
    if let Some(ci) = &env.ci {
        for p in &ci.validation_pubkeys {
            jwt_pubkeys.push(resolved.read_spec_file(p)?);
        }
    }
    let mut k8s_pubkeys = Vec::new();
    if let Some(k8s) = &env.kubernetes {
        for p in &k8s.validation_pubkeys {
            k8s_pubkeys.push(resolved.read_spec_file(p)?);
        }
    }
    // Only the paths: apply reads a password file when it creates the connection, never before.
    let db_password_files = resolved
        .spec
        .databases
        .iter()
        .map(|d| (d.name.to_string(), resolved.spec_dir.join(&d.password_file)))
        .collect();
    // Each operator's role, mirrored as its planner role (ADR 0038).
    let planner = warden_plan::planner::live(client, name).await?;
    Ok(EnvInputs {
        identity_ca_pem,
        jwt_pubkeys,
        k8s_pubkeys,
        db_password_files,
        planner,
    })
}

fn refuse_if_blocked(report: &PlanReport) -> anyhow::Result<()> {
    let blocking: Vec<&Finding> = report.lint.iter().filter(|f| f.blocking()).collect();
    let unpurposed: usize = report.environments.iter().map(|p| p.unpurposed.len()).sum();
    if report.conflicts > 0 || !blocking.is_empty() || unpurposed > 0 {
        let mut reasons = Vec::new();
        if report.conflicts > 0 {
            reasons.push(format!("{} conflict(s)", report.conflicts));
        }
        if !blocking.is_empty() {
            reasons.push(format!("{} unwaived lint finding(s)", blocking.len()));
        }
        if unpurposed > 0 {
            reasons.push(format!("{unpurposed} credential(s) without a purpose"));
        }
        return Err(anyhow::anyhow!("refusing to apply: {}; nothing was changed", reasons.join(" and ")))
            .hint("see the plan above; conflicts need a manual decision, lint findings a narrower spec or a waiver, and every credential a [purposes.<id>] whose `covers` names it");
    }
    Ok(())
}

fn progress_printer(out: &Output, env: &str) -> Arc<warden_plan::ProgressFn> {
    let env = env.to_owned();
    let out = Output::new(if out.is_json() {
        crate::output::Format::Json
    } else {
        crate::output::Format::Text
    });
    let tty = std::io::stderr().is_terminal();
    Arc::new(move |done: usize, total: usize| {
        let step = (total / 10).max(1);
        if tty || done.is_multiple_of(step) || done == total {
            out.progress_inline(
                &format!("{env}: applied {done}/{total}"),
                done == total,
                tty,
            );
        }
    })
}

fn symbol(a: Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Update => "~",
        Action::Delete => "-",
        Action::Conflict => "!",
    }
}

fn render_change(c: &Change, s: &mut String) {
    s.push_str(&format!(
        "  {} {:<14} {:<48} {}\n",
        symbol(c.action),
        c.kind.label(),
        c.path,
        c.reason
    ));
    for f in &c.fields {
        s.push_str(&format!(
            "      {}: {} → {}\n",
            f.field,
            short(&f.from),
            short(&f.to)
        ));
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}

pub(crate) fn render_plan(report: &PlanReport) -> String {
    let mut s = String::new();
    for p in &report.environments {
        s.push_str(&format!("Environment {}:\n", p.env));
        for c in &p.changes {
            render_change(c, &mut s);
        }
        s.push_str(&format!(
            "  {} to create, {} to update, {} to delete, {} unchanged\n",
            p.count(Action::Create),
            p.count(Action::Update),
            p.count(Action::Delete),
            p.unchanged
        ));
        if !p.orphans.is_empty() {
            s.push_str(&format!(
                "  kept (created by Warden, no longer in the spec; --prune removes): {}\n",
                p.orphans.join(", ")
            ));
        }
        if !p.unpurposed.is_empty() {
            s.push_str(&format!(
                "  ! no purpose governs (apply refuses): {}\n",
                p.unpurposed.join(", ")
            ));
        }
        if let Some(login) = p.login.as_deref().filter(|l| l.starts_with("operator")) {
            s.push_str(&format!("  read as: {login}\n"));
        }
    }
    if !report.lint.is_empty() {
        s.push_str(&render_findings(&report.lint, ""));
    }
    for w in &report.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    if report.creates + report.updates + report.deletes + report.conflicts == 0 {
        s.push_str("No changes. The environments match the spec.\n");
    } else {
        s.push_str(&format!(
            "Plan: {} to create, {} to update, {} to delete{}.\n",
            report.creates,
            report.updates,
            report.deletes,
            if report.conflicts > 0 {
                format!(", {} CONFLICTS", report.conflicts)
            } else {
                String::new()
            }
        ));
    }
    s
}

pub(crate) fn render_findings(findings: &[Finding], none: &str) -> String {
    if findings.is_empty() {
        return format!("{none}\n");
    }
    let mut s = String::from("Least-privilege findings:\n");
    for f in findings {
        let status = match &f.waived {
            Some(reason) => format!("waived: {reason}"),
            None => "ERROR".to_owned(),
        };
        s.push_str(&format!(
            "  [{}] {}/{} {} ({}): {}\n",
            f.rule, f.env, f.identity, f.source, status, f.message
        ));
    }
    s
}
