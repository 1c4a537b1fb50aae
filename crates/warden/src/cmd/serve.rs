//! `warden serve`: the long-running scheduler. The work is `warden_serve`; this module turns
//! flags into [`warden_serve::Settings`], builds one client per environment, wires SIGTERM and
//! Ctrl-C to a clean stop (jobs stop, then the lease is released) and prints each event as a
//! line (`--output json`: JSON Lines).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use warden_serve::{Event, Outcome, Settings, Target as ServeTarget};

use crate::context::Target;
use crate::hint::HintExt as _;
use crate::output::Output;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ServeArgs {
    #[command(subcommand)]
    action: Option<ServeAction>,
    #[command(flatten)]
    target: Target,
    /// Serve's own identity: `<DIR>/<env>/cert.pem` and `key.pem`, as `warden serve enroll`
    /// writes them; serve logs in with them at `auth/warden-serve` and carries only the
    /// generated `warden-serve` policy. Required outside a lab; with `--lab` and without it,
    /// serve logs in as the lab's operator (lab only).
    #[arg(long, value_name = "DIR")]
    identity_dir: Option<PathBuf>,
    /// This replica's id in the lease and in job records (default: host name and process id).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Leader lease TTL (3s to 24h): renewed every third of it; another replica takes over
    /// only after it expires by OpenBao's clock.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    lease_ttl: Duration,
    /// How often the leader looks for due jobs.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    tick: Duration,
    /// Posture sweep period.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = duration)]
    posture_every: Duration,
    /// Serve Prometheus `/metrics` on this loopback address (port 0: a free port; the bound
    /// address is printed as a `metrics_listening` event). Off when not given.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Scheduled DR drills (`[environments.E.backup] drill_every`, lab only): an age identity
    /// file (owner-only) of one of the backups' recipients, to open the newest backup.
    #[arg(long, value_name = "FILE", requires = "drill_key")]
    drill_identity: Option<PathBuf>,
    /// Scheduled DR drills: the evidence public key (`warden evidence key`) every backup's
    /// manifest must verify with.
    #[arg(long, value_name = "FILE", requires = "drill_identity")]
    drill_key: Option<PathBuf>,
    #[command(flatten)]
    api: super::serve_api::ApiArgs,
}

#[derive(Debug, Subcommand)]
enum ServeAction {
    /// Issue serve's own client certificate for one environment (a key generated here, its CSR
    /// signed by the `warden-serve` PKI role with the operator's credentials) into DIR/<env>/.
    Enroll(EnrollArgs),
    /// Print the hardened systemd unit that runs `warden serve` with its own identity.
    Unit(UnitArgs),
}

#[derive(Debug, Args)]
struct EnrollArgs {
    #[command(flatten)]
    target: Target,
    /// The identity directory (`<DIR>/<env>/` is created private and written).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct UnitArgs {
    #[command(flatten)]
    target: Target,
    /// The identity directory the unit passes as `--identity-dir`.
    #[arg(long, value_name = "DIR", default_value = "/etc/warden/serve")]
    identity_dir: PathBuf,
    /// Unix user (and group) serve runs as.
    #[arg(long, value_name = "NAME", default_value = "warden-serve")]
    user: String,
    /// The `warden` binary the unit starts.
    #[arg(long, value_name = "PATH", default_value = "/usr/local/bin/warden")]
    binary: PathBuf,
}

fn duration(s: &str) -> Result<Duration, String> {
    match warden_spec::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}-{}", std::process::id())
}

pub(crate) async fn run(args: ServeArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(ServeAction::Enroll(a)) => return enroll(a, out).await,
        Some(ServeAction::Unit(a)) => return unit(a, out),
        None => {}
    }
    let resolved = args.target.resolve()?;
    if resolved.lab.is_none() && args.identity_dir.is_none() {
        return Err(anyhow::anyhow!(
            "warden serve needs its own identity outside a lab: it never runs as an operator"
        ))
        .hint("enroll it with `warden serve enroll --env ENV --dir DIR` (as an operator), then pass --identity-dir DIR");
    }
    if args.lease_ttl < warden_serve::MIN_TTL {
        return Err(anyhow::anyhow!(
            "--lease-ttl {}s is too short: the leader needs time to act before another replica may take over",
            args.lease_ttl.as_secs()
        ))
        .hint("use --lease-ttl 3s or more (default 30s)");
    }
    if args.lease_ttl > warden_serve::MAX_TTL {
        return Err(anyhow::anyhow!(
            "--lease-ttl {}s is too long: a replica that dies would keep the others from taking over that long",
            args.lease_ttl.as_secs()
        ))
        .hint("use --lease-ttl 24h or less (default 30s)");
    }
    let mut targets = Vec::new();
    for env in &resolved.envs {
        let client = match &args.identity_dir {
            Some(dir) => serve_client(&resolved, env, dir)?,
            None => resolved.client(env)?,
        };
        targets.push(ServeTarget {
            env: env.clone(),
            client,
            trigger: Arc::default(),
            backups: backup_target(&args, &resolved, env, out)?,
        });
    }
    let settings = Settings {
        lease_ttl: args.lease_ttl,
        tick: args.tick,
        posture_every: args.posture_every,
        ..Settings::new(&args.id.unwrap_or_else(default_id))
    };
    let envs: Vec<String> = targets.iter().map(|t| t.env.name.to_string()).collect();
    out.progress(format!(
        "serving {} as `{}` (lease TTL {}s; SIGTERM or Ctrl-C stops it and releases the lease)",
        envs.join(", "),
        settings.holder,
        settings.lease_ttl.as_secs()
    ));

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let api = super::serve_api::start(
        &args.api,
        &resolved,
        &targets,
        &settings.holder,
        &settings.instance,
        out,
    )
    .await?
    .map(|(api, state)| tokio::spawn(api.serve(state, shutdown.clone())));
    let mut term = signal(SignalKind::terminate()).map_err(anyhow::Error::new)?;
    let mut int = signal(SignalKind::interrupt()).map_err(anyhow::Error::new)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = stop.send(true);
    });

    // The sink must be 'static: events are printed by a sink of its own with the same format.
    let sink = Output::new(if out.is_json() {
        crate::output::Format::Json
    } else {
        crate::output::Format::Text
    });
    // `/metrics` (docs/serve.md "Metrics"): fed by the same events and by a collector task.
    let mut metrics_server = None;
    let mut observe: Option<Arc<warden_serve::Metrics>> = None;
    if let Some(listen) = args.metrics_listen {
        let metrics = warden_serve::Metrics::new(&resolved.spec, &envs);
        let server = warden_serve::MetricsServer::start(listen, Arc::clone(&metrics))
            .await
            .map_err(anyhow::Error::new)
            .hint("use a loopback address such as --metrics-listen 127.0.0.1:0")?;
        let addr = server.addr().to_string();
        sink.event(
            &serde_json::json!({"event": "metrics_listening", "addr": addr}),
            || format!("metrics: http://{addr}/metrics"),
        );
        tokio::spawn(warden_serve::metrics::collect(
            Arc::new(resolved.spec.clone()),
            targets.clone(),
            settings.posture_every,
            shutdown.clone(),
            Arc::clone(&metrics),
        ));
        metrics_server = Some(server);
        observe = Some(metrics);
    }
    let events: warden_serve::Events = Arc::new(move |e: Event| {
        if let Some(m) = &observe {
            m.observe(&e);
        }
        sink.event(&e, || describe(&e));
    });
    warden_serve::serve(Arc::new(resolved.spec), targets, settings, shutdown, events)
        .await
        .map_err(anyhow::Error::new)?;
    if let Some(api) = api {
        let _ = api.await;
    }
    drop(metrics_server);
    Ok(ExitCode::SUCCESS)
}

/// Where `env`'s scheduled backups go and what its drill needs (docs/serve.md "Jobs"): the
/// spec's `backup.dir`; the drill only in a lab, with `--drill-identity` and `--drill-key`.
fn backup_target(
    args: &ServeArgs,
    resolved: &crate::context::Resolved,
    env: &warden_spec::Environment,
    out: &Output,
) -> anyhow::Result<Option<warden_serve::BackupTarget>> {
    let Some(settings) = &env.backup else {
        return Ok(None);
    };
    let dir = super::backup::backup_dir(&resolved.spec_dir, env, None)?;
    let mut drill = None;
    if settings.drill_every.is_some() {
        match (&resolved.lab, &args.drill_identity, &args.drill_key) {
            (Some(lab), Some(identity), Some(key)) => {
                drill = Some(Arc::new(warden_serve::DrillInputs {
                    lab: lab.clone(),
                    keys: super::backup::read_keys(key)?,
                    identity: super::backup::read_identity(identity)?,
                    root_pem: std::fs::read_to_string(
                        lab.layout().ca_dir().join(warden_pki::ROOT_CERT),
                    )
                    .ok(),
                }));
            }
            (None, ..) => out.progress(format!(
                "{}: `drill_every` is set, but scheduled drills run in a lab only (they unseal a scratch cluster with the environment's shares, which serve never holds): no drill is scheduled; drill by the runbook (docs/dr.md)",
                env.name
            )),
            _ => out.progress(format!(
                "{}: `drill_every` is set, but no --drill-identity/--drill-key were given: no drill is scheduled",
                env.name
            )),
        }
    }
    Ok(Some(warden_serve::BackupTarget { dir, drill }))
}

/// A client that presents serve's certificate for `env` and logs in with it at serve's own
/// cert-auth mount (again after a refusal: `warden_serve` drops a denied token).
fn serve_client(
    resolved: &crate::context::Resolved,
    env: &warden_spec::Environment,
    dir: &Path,
) -> anyhow::Result<warden_bao::Client> {
    use warden_spec::naming::serve::{SERVE_AUTH_MOUNT, SERVE_ROLE};
    let here = dir.join(env.name.as_str());
    let files = warden_enroll::transport::TransportFiles::in_dir(&here);
    if !files.cert.is_file() || !files.key.is_file() {
        return Err(anyhow::anyhow!(
            "{}: no serve identity in {} (cert.pem, key.pem)",
            env.name,
            here.display()
        ))
        .with_hint(|| {
            format!(
                "run `warden serve enroll --env {} --dir {}` as an operator",
                env.name,
                dir.display()
            )
        });
    }
    let client = resolved.workload_client(env, Some(&here))?;
    client.login_with_cert_on_demand(SERVE_AUTH_MOUNT, SERVE_ROLE);
    Ok(client)
}

async fn enroll(args: EnrollArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let env = resolved.one_env("serve enroll", crate::context::OneEnv::Named)?;
    let client = resolved.client(env)?;
    let issued = warden_enroll::serve::issue(&client, env)
        .await
        .with_context(|| format!("{}: cannot issue serve's certificate", env.name))
        .hint("run `warden apply` first: it writes the warden-serve PKI role and login")?;
    let dir = args.dir.join(env.name.as_str());
    let files = issued
        .write(&dir)
        .with_context(|| format!("cannot write serve's identity into {}", dir.display()))?;
    let not_after = issued
        .not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    out.emit(
        &serde_json::json!({
            "env": env.name.as_str(),
            "common_name": issued.common_name,
            "serial": issued.serial,
            "not_after": not_after,
            "cert": files.cert,
            "key": files.key,
        }),
        || {
            format!(
                "{}: serve certificate {} (serial {}, expires {not_after}) in {}",
                env.name,
                issued.common_name,
                issued.serial,
                dir.display()
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn unit(args: UnitArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    warden_enroll::validate_user_name(&args.user)
        .with_context(|| format!("bad --user `{}`", args.user))?;
    let envs: Vec<String> = resolved.envs.iter().map(|e| e.name.to_string()).collect();
    let spec = std::path::absolute(&args.target.spec).unwrap_or(args.target.spec.clone());
    let text = warden_enroll::serve_systemd_unit(&warden_enroll::ServeUnitSpec {
        envs: &envs,
        user: &args.user,
        spec: &spec,
        identity_dir: &args.identity_dir,
        binary: &args.binary,
    });
    out.emit(&serde_json::json!({ "envs": envs, "unit": text }), || {
        text.clone()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One event as a line for people.
fn describe(e: &Event) -> String {
    match e {
        Event::Leader { env, term } => format!("{env}: leader (term {term})"),
        Event::Follower { env, holder, term } => {
            format!("{env}: follower; `{holder}` holds the lease (term {term})")
        }
        Event::Lost { env, term, reason } => {
            format!("{env}: no longer leader (term {term}): {reason}")
        }
        Event::Released { env, term } => format!("{env}: lease released (term {term})"),
        Event::Error { env, message } => format!("{env}: error: {message}"),
        Event::Run { env, job, run } => {
            let what = match run.outcome {
                Outcome::Ok => "ok",
                Outcome::Failed => "FAILED",
                Outcome::Refused => "refused",
                Outcome::Superseded => "superseded",
            };
            format!(
                "{env}: {job} [{}] {what} in {} ms (term {}): {}",
                run.slot, run.duration_ms, run.term, run.detail
            )
        }
        _ => format!("{e:?}"),
    }
}
