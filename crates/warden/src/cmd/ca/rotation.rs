//! `warden ca status` and `warden ca rotate-intermediate`: the chain's cadence and the
//! rotation of an environment's PKI intermediate in steps across two machines (ADR 0029).
//! The logic is `warden_registry::ca`; this module orders the steps with what only the CLI
//! can do — apply the cert-auth roles, refresh a lab's listener — and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use time::OffsetDateTime;
use warden_registry::ca::{self, CaError, CaStatus, RotationRecord};

use crate::context::{OneEnv, Resolved, Target};
use crate::hint::HintExt as _;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    #[command(subcommand)]
    step: RotateStep,
}

#[derive(Debug, Subcommand)]
enum RotateStep {
    /// Online: generate the new intermediate's key inside OpenBao and write its CSR, for the
    /// offline host's `warden ca sign-intermediate`.
    Begin(BeginArgs),
    /// Online: import the signed intermediate beside the old one, trust both (cert-auth roles,
    /// the listener's client-CA bundle), then make it the default issuer.
    Activate(ActivateArgs),
    /// Online: remove the old intermediate once no live certificate chains to it, or the
    /// overlap is over, or with --force and a reason.
    Retire(RetireArgs),
}

#[derive(Debug, Args)]
struct BeginArgs {
    #[command(flatten)]
    target: Target,
    /// Where to write the CSR (a new file).
    #[arg(long, value_name = "FILE")]
    csr_out: PathBuf,
    /// Discard a rotation that was begun but never activated (its key stays unused).
    #[arg(long)]
    restart: bool,
}

#[derive(Debug, Args)]
struct ActivateArgs {
    #[command(flatten)]
    target: Target,
    /// The intermediate the offline root signed (`ca sign-intermediate --bundle --out FILE`).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Outside a lab: every node's listener now trusts both intermediates (client-ca.pem
    /// rewritten, nodes restarted). Without it, activate stops after the import and the roles,
    /// and says what to do; run it again with this flag.
    #[arg(long)]
    listeners_updated: bool,
    /// Activate although the live certificates, spread over the reissue window, would put the
    /// busiest minute above `[ca] reissue_rate`, or cannot be counted (ADR 0035).
    #[arg(long)]
    over_rate: bool,
}

#[derive(Debug, Args)]
struct RetireArgs {
    #[command(flatten)]
    target: Target,
    /// Retire although live certificates still chain to the old intermediate; the reason and
    /// the identities that did not move are recorded.
    #[arg(long, value_name = "REASON")]
    force: Option<String>,
}

pub(super) fn one_env(
    target: &Target,
    command: &str,
) -> anyhow::Result<(Resolved, warden_spec::Environment)> {
    let resolved = target.resolve()?;
    let env = resolved.one_env(command, OneEnv::NamedOrOnly)?.clone();
    Ok((resolved, env))
}

/// Agents look at the mount's issuers at least every quarter of the reissue window: after that
/// long every proxy's CA chain holds both intermediates, so no leaf moves to the new one before
/// the peers that must accept it trust it. Both a rotation's and a root rollover's activate
/// wait this long before the default issuer changes.
pub(super) async fn wait_for_agents_to_see_both(
    resolved: &Resolved,
    env: &warden_spec::Environment,
    out: &Output,
) {
    let settle = resolved.spec.ca.reissue_window.0 / 4 + std::time::Duration::from_secs(2);
    out.progress(format!(
        "{}: waiting {} so every agent sees both intermediates before the default changes",
        env.name,
        warden_spec::format_duration(settle)
    ));
    tokio::time::sleep(settle).await;
}

pub(super) fn explain(e: CaError) -> anyhow::Error {
    if let CaError::OverRate {
        check,
        short_windows,
        ..
    } = &e
    {
        let hint = if check.window_secs >= check.min_window_secs && !short_windows.is_empty() {
            format!(
                "the spec's reissue_window is long enough, but these agents spread over a shorter `[renewal] issuer_window`: {}. Re-render their configuration from the spec (enrollment does), or run activate with --over-rate to rotate anyway; nothing was changed",
                short_windows.join(", ")
            )
        } else {
            format!(
                "lengthen [ca] reissue_window to at least {} and give every agent that `[renewal] issuer_window` (enrollment renders it from the spec; agents report theirs), or run activate with --over-rate to rotate anyway; nothing was changed",
                warden_spec::format_duration(std::time::Duration::from_secs(check.min_window_secs))
            )
        };
        return anyhow::Error::new(e).context(crate::hint::Hint(hint));
    }
    let hint = match &e {
        // `activate` refuses in its first part, `import`: keyed on the step alone, the advice
        // to begin first never showed.
        CaError::OutOfOrder { step, state, .. } => match (*step, state.as_str()) {
            ("begin", _) => {
                "a rotation is under way: finish it (`activate`, `retire`), or `begin --restart` to discard one that was only begun"
            }
            (_, "none") => {
                "no rotation is under way: run `warden ca rotate-intermediate begin --env ENV --csr-out FILE` first, sign its CSR offline (`warden ca sign-intermediate`), then activate; nothing was changed"
            }
            ("import" | "activate", "active") => {
                "this rotation is already active; next is `warden ca rotate-intermediate retire` once `warden ca status` shows no live leaves on the old intermediate; nothing was changed"
            }
            _ => "`warden ca status` shows where the rotation stands; nothing was changed",
        },
        CaError::RateUnknown { .. } => {
            "`warden ca status` lists the mount's issuers and the rotation; if the old intermediate was deleted by hand, run activate with --over-rate to rotate without the check; nothing was changed"
        }
        CaError::BadIntermediate { .. } => {
            "sign the CSR `begin` wrote with `warden ca sign-intermediate --bundle` and the environment's --permitted-dns; nothing was imported"
        }
        CaError::LeavesRemain { .. } => {
            "wait for the agents to move (`warden ca status` counts live leaves per issuer), or `--force \"REASON\"` — those certificates then stop verifying"
        }
        CaError::NoReason => "say why, e.g. --force \"host decommissioned\"",
        CaError::RolloverOutOfOrder { .. } => {
            "`warden ca status --env ENV` shows where the rotation and the root rollover stand; a root rollover runs csr → (offline) resign → import → activate → finish (docs/ca.md, \"Rolling over the root\")"
        }
        CaError::BadResigned { .. } => {
            "make the CSR with `warden ca rollover-root csr`, sign it offline with `warden ca rollover-root resign --out FILE` (it writes the intermediate, the new root and the cross certificate) and pass that file; nothing was imported"
        }
        CaError::TrustFilesBehind { .. } => {
            "ship the two-root trust bundle (`ca rollover-root begin --trust-out`) to those hosts' trust files and wait for their next report (`warden ca status` lists who is behind), or run the step with `--force \"REASON\"` — those agents then cannot verify certificates that chain to the new root; nothing was changed"
        }
        CaError::ConnectionsOnOldRoot { .. } => {
            "those agents connect with the trust file they had at start (older agents): restart them once their trust file holds the new root (`warden ca status` lists them), or run finish with `--force \"REASON\"` — they then lose OpenBao until restarted; the listener was not changed"
        }
        _ => "check the connection and the operator's login, then run the step again",
    };
    anyhow::Error::new(e).context(crate::hint::Hint(hint.to_owned()))
}

// ---- status -------------------------------------------------------------------------------

pub(crate) async fn status(args: StatusArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let now = OffsetDateTime::now_utc();
    let mut all = Vec::new();
    for env in &resolved.envs {
        let client = resolved.client(env)?;
        let st = ca::status(&client, &resolved.spec, env, now)
            .await
            .map_err(explain)?;
        all.push(st);
    }
    let due = all
        .iter()
        .flat_map(|s| &s.cas)
        .any(|c| c.rotation_due || c.expired);
    out.emit(&serde_json::json!({ "environments": all }), || render(&all))?;
    Ok(if due {
        ExitCode::from(crate::exit::POSTURE_DUE)
    } else {
        ExitCode::SUCCESS
    })
}

fn days(secs: i64) -> String {
    format!("{}d", secs / 86_400)
}

pub(crate) fn render(all: &[CaStatus]) -> String {
    let mut s = String::new();
    for st in all {
        s += &format!("{} ({}/):\n", st.env, st.mount);
        s += &format!(
            "  {:<12} {:<8} {:>6}  {:<20}  {:<20}  {:>6}  {}\n",
            "ca", "default", "age", "not after", "rotation due", "leaves", "issuer id"
        );
        for c in &st.cas {
            let due = if c.expired {
                "EXPIRED".to_owned()
            } else if c.rotation_due {
                format!(
                    "DUE {}",
                    &c.rotation_due_at[..10.min(c.rotation_due_at.len())]
                )
            } else {
                c.rotation_due_at[..10.min(c.rotation_due_at.len())].to_owned()
            };
            s += &format!(
                "  {:<12} {:<8} {:>6}  {:<20}  {:<20}  {:>6}  {}\n",
                c.role,
                if c.is_default { "yes" } else { "" },
                days(c.age_secs),
                c.not_after,
                due,
                if c.role == "root" {
                    "-".to_owned()
                } else {
                    c.live_leaves.to_string()
                },
                c.issuer_id
            );
        }
        if let Some(c) = &st.next_rotation {
            let window =
                warden_spec::format_duration(std::time::Duration::from_secs(c.window_secs));
            s += &format!(
                "  next rotation: {} live certificate(s) within {window}, busiest minute about {} of reissue_rate {}{}",
                c.certificates,
                c.busiest_minute,
                c.rate,
                ca::shorter_windows_note(c)
            );
            if c.holds() {
                s += "\n";
            } else {
                s += &format!(
                    " — OVER: activate will refuse; lengthen reissue_window to at least {}\n",
                    warden_spec::format_duration(std::time::Duration::from_secs(c.min_window_secs))
                );
            }
        }
        if let Some(r) = &st.rotation {
            s += &format!(
                "  rotation: {}",
                serde_json::to_value(r.state)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            );
            if let Some(end) = &r.overlap_ends_at {
                s += &format!(", overlap ends {end}");
            }
            s += "\n";
            if !r.unmoved.is_empty() {
                s += &format!(
                    "  did not move before retirement: {}\n",
                    r.unmoved.join(", ")
                );
            }
        }
        if !st.unmoved.is_empty() {
            s += &format!(
                "  not yet on the default issuer: {}\n",
                st.unmoved.join(", ")
            );
        }
        if let Some(r) = &st.root_rollover {
            s += &super::rollover::render_status(r);
        }
        if st.orphan_leaves > 0 {
            s += &format!(
                "  {} live certificate(s) chain to an issuer no longer in the mount\n",
                st.orphan_leaves
            );
        }
        if st.revoked_leaves > 0 {
            s += &format!(
                "  {} revoked certificate(s) still reported by agents, not counted as live\n",
                st.revoked_leaves
            );
        }
    }
    s
}

// ---- rotate-intermediate ------------------------------------------------------------------

pub(crate) async fn rotate(args: RotateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.step {
        RotateStep::Begin(a) => begin(a, out).await,
        RotateStep::Activate(a) => activate(a, out).await,
        RotateStep::Retire(a) => retire(a, out).await,
    }
}

fn emit_record(out: &Output, record: &RotationRecord, text: String) -> anyhow::Result<()> {
    out.emit(record, || text)
}

async fn begin(a: BeginArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env) = one_env(&a.target, "ca rotate-intermediate begin")?;
    // A dangling symlink or a FIFO at --csr-out is refused here, before the key exists.
    super::check_new_file(&a.csr_out, "--csr-out")?;
    let client = resolved.client(&env)?;
    let now = super::server_clock(&client, out).await?;
    let record = ca::begin(&client, &env, a.restart, now)
        .await
        .map_err(explain)?;
    warden_files::write_atomic(
        &a.csr_out,
        record.csr.as_bytes(),
        warden_files::Mode::Public,
    )
    .with_context(|| format!("could not write the CSR to {}", a.csr_out.display()))
    .hint(
        "the key and the record exist: run `begin --restart --csr-out OTHER` to get a CSR again",
    )?;
    let names = warden_spec::naming::environment_names(&resolved.spec, &env);
    let permitted: String = names
        .iter()
        .map(|n| format!(" --permitted-dns {n}"))
        .collect();
    emit_record(
        out,
        &record,
        format!(
            "{}: new intermediate key generated inside OpenBao; CSR written to {}\n\
             Next, on the offline CA host:\n  warden ca sign-intermediate --dir DIR --env {} --csr {}{} --bundle --out {}-intermediate.pem\n\
             Then, online:\n  warden ca rotate-intermediate activate --env {} --cert {}-intermediate.pem\n",
            env.name,
            a.csr_out.display(),
            env.name,
            a.csr_out.display(),
            permitted,
            env.name,
            env.name,
            env.name
        ),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Makes the cert-auth roles pin every trusted intermediate (apply), then, in a lab, rewrites
/// the listener's client-CA bundle and restarts the nodes when it changed. Outside a lab the
/// operator does the listener step (`warden server tls --identity-ca`), as printed.
pub(super) async fn trust_everywhere(
    resolved: &Resolved,
    env: &warden_spec::Environment,
    out: &Output,
) -> anyhow::Result<Option<String>> {
    out.progress(format!(
        "{}: pinning cert-auth roles to the trusted intermediates",
        env.name
    ));
    crate::provisioning::apply_resolved(resolved, false, 8, out)
        .await
        .context("could not update the cert-auth roles")?;
    match &resolved.lab {
        Some(lab) => {
            out.progress(format!(
                "{}: refreshing the listener's client-CA bundle",
                env.name
            ));
            let restarted = lab
                .refresh_client_ca(env.name.as_str())
                .await
                .context("could not refresh the listener's client-CA bundle")?;
            if restarted {
                out.progress(format!(
                    "{}: restarted so the listener trusts the new set",
                    env.name
                ));
            }
            Ok(None)
        }
        None => Ok(Some(format!(
            "the listeners must trust the same set: rewrite client-ca.pem with `warden server tls --env {} --identity-ca OLD.pem [--identity-ca NEW.pem]` (every intermediate `warden ca status --env {}` lists) and restart each node",
            env.name, env.name
        ))),
    }
}

async fn activate(a: ActivateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env) = one_env(&a.target, "ca rotate-intermediate activate")?;
    let client = resolved.client(&env)?;
    let now = super::server_clock(&client, out).await?;
    // The ceiling is judged before anything changes: a refusal leaves the rotation as it was.
    match ca::check_rate(&client, &resolved.spec, &env, now).await {
        Ok(Some(check)) => out.progress(format!(
            "{}: {} live certificate(s) move within {}: the busiest minute stays under about {} of the {} allowed",
            env.name,
            check.certificates,
            warden_spec::format_duration(std::time::Duration::from_secs(check.window_secs)),
            check.busiest_minute,
            check.rate
        )),
        Ok(None) => {}
        Err(e @ (CaError::OverRate { .. } | CaError::RateUnknown { .. })) if a.over_rate => {
            out.warn(format!("{e}; going ahead (--over-rate)"));
        }
        Err(e) => return Err(explain(e)),
    }
    let record = ca::read_record(&client, &env).await.map_err(explain)?;
    // A run that failed after the import picks up where it stopped.
    if record.as_ref().map(|r| r.state) != Some(ca::RotationState::Imported) {
        let Some(path) = &a.cert else {
            return Err(anyhow::anyhow!(
                "--cert is required to import the signed intermediate"
            ))
            .hint("give the file `warden ca sign-intermediate --out` wrote");
        };
        let bundle = crate::input::read_named_text(
            path,
            "the signed intermediate",
            crate::input::TEXT_FILE_LIMIT,
        )?;
        ca::import(&client, &env, &bundle, now)
            .await
            .map_err(explain)?;
        out.progress(format!(
            "{}: the new intermediate is imported beside the old one",
            env.name
        ));
    }
    let step = trust_everywhere(&resolved, &env, out).await?;
    if let Some(step) = &step
        && !a.listeners_updated
    {
        // An identity re-issued by the new intermediate would be refused at the handshake by a
        // listener that does not trust it yet: the default does not change before they do.
        out.warn(step);
        let record = ca::read_record(&client, &env).await.map_err(explain)?;
        if let Some(record) = record {
            emit_record(
                out,
                &record,
                format!(
                    "{}: imported; cert-auth roles trust both intermediates. The default has NOT changed.\nNext: update every listener, then\n  warden ca rotate-intermediate activate --env {} --listeners-updated\n",
                    env.name, env.name
                ),
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    wait_for_agents_to_see_both(&resolved, &env, out).await;
    let client = resolved.client(&env)?;
    let now = super::server_clock(&client, out).await?;
    let record = ca::activate(&client, &env, &resolved.spec.ca, now)
        .await
        .map_err(explain)?;
    emit_record(
        out,
        &record,
        format!(
            "{}: the new intermediate is the default issuer; both are trusted until {}.\n\
             Agents re-issue within {} of seeing it. Follow with `warden ca status --env {}`, then\n  warden ca rotate-intermediate retire --env {}\n",
            env.name,
            record.overlap_ends_at.clone().unwrap_or_default(),
            warden_spec::format_duration(resolved.spec.ca.reissue_window.0),
            env.name,
            env.name
        ),
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn retire(a: RetireArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env) = one_env(&a.target, "ca rotate-intermediate retire")?;
    let client = resolved.client(&env)?;
    let now = super::server_clock(&client, out).await?;
    let record = ca::retire(&client, &resolved.spec, &env, a.force.as_deref(), now)
        .await
        .map_err(explain)?;
    let step = trust_everywhere(&resolved, &env, out).await?;
    if let Some(step) = &step {
        out.warn(step);
    }
    let mut text = format!(
        "{}: the old intermediate {} is retired: no longer in the mount, the cert-auth roles or the listener's bundle\n",
        env.name, record.old_issuer_id
    );
    if !record.unmoved.is_empty() {
        text += &format!(
            "  did not move: {} ({})\n",
            record.unmoved.join(", "),
            record.forced_because.clone().unwrap_or_default()
        );
    }
    emit_record(out, &record, text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint_of(e: CaError) -> String {
        explain(e)
            .downcast_ref::<crate::hint::Hint>()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    fn out_of_order(step: &'static str, state: &str) -> CaError {
        CaError::OutOfOrder {
            env: "test".into(),
            step,
            state: state.into(),
            expected: "begun",
        }
    }

    /// `activate` before `begin` is refused by its `import` part: the hint said only "`warden
    /// ca status` shows where the rotation stands", not to begin first.
    #[test]
    fn activate_without_a_rotation_says_to_begin_first() {
        for step in ["import", "activate", "retire"] {
            let h = hint_of(out_of_order(step, "none"));
            assert!(h.contains("rotate-intermediate begin"), "{step}: {h}");
        }
        let h = hint_of(out_of_order("import", "active"));
        assert!(h.contains("already active") && h.contains("retire"), "{h}");
        let h = hint_of(out_of_order("begin", "begun"));
        assert!(h.contains("--restart"), "{h}");
    }
}
