//! `warden identity enroll`: give an app or proxy its mTLS identity on this host.
//!
//! The work is `warden_enroll::enroll`; this module picks the environment, the layout, the
//! owner and the trust anchor from the arguments, and turns the library's typed errors into
//! messages that say what to do next.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use time::format_description::well_known::Rfc3339;
use warden_enroll::{
    CertAction, EnrollOptions, EnrollReport, EnrollRequest, IdentityLayout, Owner,
};
use warden_spec::Environment;

use crate::context::{OneEnv, Resolved, Target};
use crate::hint::HintExt;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct IdentityArgs {
    #[command(subcommand)]
    command: IdentityCommand,
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Enroll an app or proxy on this host: the key is generated here, OpenBao signs a CSR for
    /// the identity's pinned name, and a login with the new certificate is verified before
    /// anything is written.
    Enroll(EnrollArgs),
    /// Print a minimal hardened systemd unit for the identity's agent (NoNewPrivileges,
    /// ProtectSystem=strict, write access only to the identity's directory).
    Unit(UnitArgs),
}

#[derive(Debug, Args)]
struct UnitArgs {
    /// The identity: an app or proxy of the spec.
    name: String,
    #[command(flatten)]
    target: Target,
    /// The identity lives under DIR/<env>/<identity>/ instead of the environment's app_root.
    #[arg(long, value_name = "DIR")]
    root_dir: Option<PathBuf>,
    /// Unix user the agent runs as (default: the identity's name).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// The agent binary the unit starts (`warden-agent`, the agent-only build; see
    /// docs/agent.md#deployment).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/usr/local/bin/warden-agent"
    )]
    binary: PathBuf,
}

#[derive(Debug, Args)]
struct EnrollArgs {
    /// The identity: an app or proxy of the spec.
    name: String,
    #[command(flatten)]
    target: Target,
    /// Lay the identity out under DIR/<env>/<identity>/, owned by the current user, instead of
    /// the environment's app_root (no Unix user is created).
    #[arg(long, value_name = "DIR")]
    root_dir: Option<PathBuf>,
    /// Unix user that owns the identity (default: the identity's name). Used only when
    /// running as root without --root-dir; created if missing.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Issue a new key and certificate even when the current ones are still good.
    #[arg(long)]
    force: bool,
}

pub(crate) async fn run(args: IdentityArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        IdentityCommand::Enroll(a) => enroll(a, out).await,
        IdentityCommand::Unit(a) => unit(a, out),
    }
}

async fn enroll(args: EnrollArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let env = resolved.one_env("identity enroll", OneEnv::Named)?;
    let env_name = env.name.as_str();
    let name = args.name.as_str();
    // Refuse a wrong identity before anything is contacted or created.
    warden_enroll::enrollable(&resolved.spec, env, name).map_err(|e| explain(e, &args))?;
    if let Some(user) = &args.user {
        warden_enroll::validate_user_name(user).map_err(|e| explain(e, &args))?;
    }

    let layout = match &args.root_dir {
        Some(dir) => IdentityLayout::under_root(dir, env_name, name),
        None => IdentityLayout::on_host(&env.app_root, name),
    };
    let as_root = warden_enroll::running_as_root();
    let owner = Owner::for_host(as_root, args.root_dir.is_some(), name, args.user.as_deref());
    if args.user.is_some() && owner == Owner::CurrentUser {
        out.warn(if as_root {
            "--user is ignored with --root-dir: the layout belongs to the current user"
        } else {
            "--user is ignored when not running as root: the layout belongs to the current user"
        });
    }
    let trust_anchor = trust_anchor(&resolved, env)?;
    let client = resolved.client(env)?;

    out.progress(format!(
        "{env_name}: enrolling {name} in {}",
        layout.dir().display()
    ));
    let request = EnrollRequest {
        spec: &resolved.spec,
        env,
        identity: name,
        trust_anchor_pem: &trust_anchor,
        layout: &layout,
    };
    let options = EnrollOptions {
        force: args.force,
        owner,
    };
    let report = warden_enroll::enroll(&client, &request, &options)
        .await
        .map_err(|e| explain(e, &args))?;
    if !report.verification.test_token_revoked {
        out.warn(
            "the verification token could not be revoked; it expires on its own within its TTL",
        );
    }
    out.emit(&report, || render(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the systemd unit. Reads the spec only; contacts nothing.
fn unit(args: UnitArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let env = resolved.one_env("identity unit", OneEnv::Named)?;
    let name = args.name.as_str();
    warden_enroll::enrollable(&resolved.spec, env, name)
        .with_context(|| format!("no unit for `{name}`"))?;
    let user = args.user.as_deref().unwrap_or(name);
    warden_enroll::validate_user_name(user).with_context(|| format!("bad --user `{user}`"))?;
    let layout = match &args.root_dir {
        Some(dir) => IdentityLayout::under_root(dir, env.name.as_str(), name),
        None => IdentityLayout::on_host(&env.app_root, name),
    };
    let text = warden_enroll::systemd_unit(&warden_enroll::UnitSpec {
        identity: name,
        env: env.name.as_str(),
        user,
        dir: layout.dir(),
        binary: &args.binary,
    });
    out.emit(
        &serde_json::json!({ "identity": name, "env": env.name.as_str(), "unit": text }),
        || text.clone(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The PEM that makes this host trust the environment's API: the lab's CA bundle, else the
/// spec's `ca_cert`.
fn trust_anchor(resolved: &Resolved, env: &Environment) -> anyhow::Result<String> {
    let name = env.name.as_str();
    if let Some(lab) = &resolved.lab {
        let path = lab.layout().env(name).ca_bundle();
        return std::fs::read_to_string(&path)
            .with_context(|| {
                format!(
                    "{name}: could not read the lab's CA bundle {}",
                    path.display()
                )
            })
            .with_hint(|| {
                format!("is `{name}` an environment of the lab? see `warden lab status`")
            });
    }
    match &env.ca_cert {
        Some(ca) => resolved
            .read_spec_file(ca)
            .with_context(|| format!("{name}: the trust anchor (`ca_cert`) is unreadable")),
        None => Err(anyhow::anyhow!(
            "{name}: no trust anchor for the OpenBao API to install on this host"
        ))
        .with_hint(|| {
            format!(
                "pass --lab DIR, or set `ca_cert` (a PEM file, relative to the spec) under [environments.{name}]"
            )
        }),
    }
}

/// Wraps a library error with what to do next.
fn explain(err: warden_enroll::Error, args: &EnrollArgs) -> anyhow::Error {
    use warden_enroll::Error as E;
    let env = args.target.envs.first().map_or("ENV", String::as_str);
    let lab = args
        .target
        .lab
        .as_ref()
        .map(|d| format!(" --lab {}", d.display()))
        .unwrap_or_default();
    let spec = args.target.spec.display();
    let hint: Option<String> = match &err {
        E::UnknownIdentity { .. } => Some(format!(
            "apps and proxies are declared under [apps.NAME] and [proxies.NAME] in {spec}"
        )),
        E::NotEnrollable { .. } => Some(
            "nothing to enroll on a host for it: `warden apply` sets up its login, and its runtime fetches credentials itself"
                .to_owned(),
        ),
        E::NotInEnvironment { .. } => Some(
            "choose one of its environments with --env, or add this one to its `environments` in the spec"
                .to_owned(),
        ),
        E::RoleMissing { .. } => Some(format!(
            "run `warden apply --spec {spec}{lab} --env {env}` first: the identity role does not exist yet"
        )),
        E::Sign { source, .. } if source.is_permission_denied() => Some(
            "the operator credentials may not sign with this role; use an operator token with access to the PKI mount"
                .to_owned(),
        ),
        E::Login { source, .. } if source.is_tls() => Some(
            "the OpenBao listener refused the identity certificate: it must trust the environment's PKI intermediate for client certificates (`warden lab up` sets this up; on a real server add the intermediate to tls_client_ca_file)"
                .to_owned(),
        ),
        E::Login { .. } => Some(format!(
            "the cert-auth role refused the certificate; `warden plan --spec {spec}{lab} --env {env}` shows whether it is missing or pinned to another CA, `warden apply` fixes it"
        )),
        E::UnexpectedPolicies { .. } => Some(format!(
            "the live cert-auth role differs from the spec: `warden plan --spec {spec}{lab} --env {env}` shows the drift, `warden apply` fixes it"
        )),
        E::ClientIdentity { .. } => Some(
            "the certificate or key on disk is damaged; re-issue with --force".to_owned(),
        ),
        E::ReadIssuer { .. } => Some(
            "is the environment reachable and its PKI mount set up? (`warden lab status`)".to_owned(),
        ),
        E::UserAdd { .. } | E::UserAddSpawn { .. } | E::UserVanished { .. } => Some(
            "create the user yourself (or pass --user NAME for an existing one), or use --root-dir DIR to lay the identity out for the current user"
                .to_owned(),
        ),
        E::InvalidUserName { .. } => {
            Some("pass a valid name with --user (1-32 characters of a-z, 0-9, '_', '-')".to_owned())
        }
        _ => None,
    };
    // The library's messages already include their sources' text, so the chain is flattened
    // into one message rather than printed twice.
    let err =
        anyhow::Error::msg(err.to_string()).context(format!("could not enroll {}", args.name));
    match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    }
}

fn render(r: &EnrollReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let what = match (r.action, r.reason) {
        (CertAction::Kept, _) => {
            "certificate kept: it is still valid (--force re-issues)".to_owned()
        }
        (CertAction::Issued, Some(reason)) => {
            format!("new certificate issued ({})", reason.describe())
        }
        (CertAction::Issued, None) => "new certificate issued".to_owned(),
    };
    let _ = writeln!(
        s,
        "{} ({}) enrolled in {}: {what}",
        r.identity, r.kind, r.env
    );
    let p = &r.paths;
    let owner = match (r.owner.mode, r.owner.created) {
        ("service-user", true) => format!("{} (uid {}), created now", r.owner.user, r.owner.uid),
        ("service-user", false) => format!("{} (uid {}), existing user", r.owner.user, r.owner.uid),
        _ => format!("{} (uid {}), the current user", r.owner.user, r.owner.uid),
    };
    let rows: [(&str, String); 8] = [
        ("directory", format!("{}  0700", p.dir.display())),
        ("owner", owner),
        (
            "key",
            format!("{}  0600, generated on this host", p.client_key.display()),
        ),
        (
            "certificate",
            format!("{}  0644, leaf + issuing CA", p.client_cert.display()),
        ),
        ("trust anchor", format!("{}  0644", p.ca_bundle.display())),
        ("outputs", format!("{}/", p.out_dir.display())),
        ("state", format!("{}/", p.state_dir.display())),
        ("agent config", p.agent_config.display().to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "  {k:<13} {v}");
    }
    let c = &r.certificate;
    let ts = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_else(|_| t.to_string());
    let _ = writeln!(s, "  {:<13} {}", "CN", c.common_name);
    let _ = writeln!(s, "  {:<13} {}", "serial", c.serial);
    let _ = writeln!(s, "  {:<13} {}", "issuer", c.issuer);
    let _ = writeln!(s, "  {:<13} {}", "expires", ts(c.not_after));
    let v = &r.verification;
    let _ = writeln!(
        s,
        "verified: logged in as {} with policies [{}]",
        v.cert_role,
        v.policies.join(", ")
    );
    s
}
