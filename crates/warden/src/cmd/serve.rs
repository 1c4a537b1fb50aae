//! `warden serve`: the long-running scheduler. The work is `warden_serve`; this module turns
//! flags into [`warden_serve::Settings`], builds one client per environment, wires SIGTERM and
//! Ctrl-C to a clean stop (jobs stop, then the lease is released) and prints each event as a
//! line (`--output json`: JSON Lines).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use warden_serve::{Event, Outcome, Settings, Target as ServeTarget};

use crate::context::Target;
use crate::hint::HintExt as _;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    target: Target,
    /// This replica's id in the lease and in job records (default: host name and process id).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Leader lease TTL (at least 3s): renewed every third of it; another replica takes over
    /// only after it expires by OpenBao's clock.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    lease_ttl: Duration,
    /// How often the leader looks for due jobs.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    tick: Duration,
    /// Posture sweep period.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = duration)]
    posture_every: Duration,
    #[command(flatten)]
    api: super::serve_api::ApiArgs,
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
    let resolved = args.target.resolve()?;
    if args.lease_ttl < warden_serve::MIN_TTL {
        return Err(anyhow::anyhow!(
            "--lease-ttl {}s is too short: the leader needs time to act before another replica may take over",
            args.lease_ttl.as_secs()
        ))
        .hint("use --lease-ttl 3s or more (default 30s)");
    }
    let mut targets = Vec::new();
    for env in &resolved.envs {
        targets.push(ServeTarget {
            env: env.clone(),
            client: resolved.client(env)?,
            trigger: Arc::default(),
        });
    }
    let settings = Settings {
        holder: args.id.unwrap_or_else(default_id),
        lease_ttl: args.lease_ttl,
        tick: args.tick,
        posture_every: args.posture_every,
    };
    let envs: Vec<String> = targets.iter().map(|t| t.env.name.to_string()).collect();
    out.progress(format!(
        "serving {} as `{}` (lease TTL {}s; SIGTERM or Ctrl-C stops it and releases the lease)",
        envs.join(", "),
        settings.holder,
        settings.lease_ttl.as_secs()
    ));

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let api = super::serve_api::start(&args.api, &resolved, &targets, &settings.holder, out)
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
    let events: warden_serve::Events = Arc::new(move |e: Event| sink.event(&e, || describe(&e)));
    warden_serve::serve(Arc::new(resolved.spec), targets, settings, shutdown, events)
        .await
        .map_err(anyhow::Error::new)?;
    if let Some(api) = api {
        let _ = api.await;
    }
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
