//! `warden ci login`: a CI step exchanges its pipeline's OIDC token (a JWT the CI system
//! signed) for a short-lived Warden token bound to the pipeline's role
//! (`gitea_cicd_<app>`: issuer, audience, repository and branch), and writes it to an
//! owner-only file for the following steps (`--token-file`). `warden ci logout` revokes it.
//!
//! The pipeline token is read from a file (`--jwt-file`, or the file an environment variable
//! names with `--jwt-file-env`), never from argv or from the value of an environment variable:
//! a process cannot scrub its own environment (`/proc/<pid>/environ` keeps it), and
//! everything the step starts inherits it. The resulting token is never printed; only its
//! policies, TTL and accessor are.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use warden_bao::{JwtLoginError, JwtRefusal};
use warden_spec::{Environment, IdentityKind, PipelineBinding, Spec};
use zeroize::Zeroizing;

use crate::context::{OneEnv, Target};
use crate::hint::HintExt;
use crate::output::Output;
use crate::session::read_token_file;

#[derive(Debug, Args)]
pub(crate) struct CiArgs {
    #[command(subcommand)]
    command: CiCommand,
}

#[derive(Debug, Subcommand)]
enum CiCommand {
    /// Exchange the pipeline's OIDC token for a Warden token, written to an owner-only file.
    Login(LoginArgs),
    /// Revoke the token in a token file and delete the file.
    Logout(LogoutArgs),
}

#[derive(Debug, Args)]
struct LoginArgs {
    #[command(flatten)]
    target: Target,
    /// The JWT role (e.g. `gitea_cicd_billing`).
    #[arg(long, value_name = "ROLE", required_unless_present = "app")]
    role: Option<String>,
    /// The app whose pipeline role to use (the role name comes from the spec's naming).
    #[arg(long, value_name = "APP", conflicts_with = "role")]
    app: Option<String>,
    /// File holding the pipeline's OIDC token.
    #[arg(long, value_name = "FILE", required_unless_present = "jwt_file_env")]
    jwt_file: Option<PathBuf>,
    /// Name of an environment variable that holds the *path* of the token file (as some CI
    /// systems provide it).
    #[arg(long, value_name = "VAR", conflicts_with = "jwt_file")]
    jwt_file_env: Option<String>,
    /// Where to write the Warden token (0600). Default: $XDG_RUNTIME_DIR/warden/token.
    #[arg(long, value_name = "FILE")]
    token_out: Option<PathBuf>,
    /// The runner's transport certificate directory (`cert.pem`, `key.pem`; `warden transport
    /// issue`): what gets the login through the listener's mTLS requirement. Required with
    /// --lab; otherwise VAULT_CLIENT_CERT/VAULT_CLIENT_KEY may name it.
    #[arg(long, value_name = "DIR", env = "WARDEN_TRANSPORT_DIR")]
    transport: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct LogoutArgs {
    #[command(flatten)]
    target: Target,
    /// The token file `warden ci login` wrote (default: $XDG_RUNTIME_DIR/warden/token).
    #[arg(long, value_name = "FILE", env = "WARDEN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The runner's transport certificate directory, as for `ci login`.
    #[arg(long, value_name = "DIR", env = "WARDEN_TRANSPORT_DIR")]
    transport: Option<PathBuf>,
}

pub(crate) async fn run(args: CiArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        CiCommand::Login(a) => login(a, out).await,
        CiCommand::Logout(a) => logout(a, out).await,
    }
}

#[derive(Debug, Serialize)]
struct LoginReport {
    env: String,
    role: String,
    /// Where the token was written (0600).
    token_file: PathBuf,
    policies: Vec<String>,
    ttl_seconds: u64,
    renewable: bool,
    accessor: String,
    entity_id: String,
}

async fn login(args: LoginArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let env = resolved.one_env("ci login", OneEnv::NamedOrOnly)?;
    let spec = &resolved.spec;
    let role = match (&args.role, &args.app) {
        (Some(r), _) => r.clone(),
        (None, Some(app)) => spec
            .naming
            .ci_role
            .render(&warden_spec::Slug::parse(app).map_err(|e| anyhow::anyhow!("--app: {e}"))?),
        (None, None) => anyhow::bail!("name the role with --role or --app"),
    };
    let bindings = pipelines_for(spec, env, &role);
    if bindings.is_empty() {
        let known = all_roles(spec, env);
        let err = anyhow::anyhow!(
            "no pipeline of the spec logs in as `{role}` in `{}`",
            env.name
        );
        return match warden_spec::suggest(&role, known.iter().map(String::as_str)) {
            Some(s) => Err(err).with_hint(|| format!("did you mean `{s}`?")),
            None => Err(err).with_hint(|| {
                format!(
                    "roles of this environment's pipelines: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )
            }),
        };
    }
    let Some(ci) = &env.ci else {
        return Err(anyhow::anyhow!(
            "environment `{}` has no CI identity provider",
            env.name
        ))
        .with_hint(|| format!("add [environments.{}.ci] (issuer, audience, validation_pubkeys) and run `warden apply`", env.name));
    };
    // Where the token goes is settled before a token exists.
    let token_out = token_path(args.token_out.as_deref(), "--token-out")?;
    let jwt = read_jwt(&args)?;

    // The login needs no token, and rides on the runner's transport certificate, never on the
    // operator's (ADR 0010).
    let client = resolved.workload_client(env, args.transport.as_deref())?;
    let auth = match client.login_jwt(&env.mounts.jwt, &role, &jwt).await {
        Ok(a) => a,
        Err(e) => {
            let transport = crate::context::transport_hint(spec, env.name.as_str());
            return Err(explain_refusal(e, &jwt, &bindings, ci, &role, transport));
        }
    };
    if args.token_out.is_none()
        && let Some(dir) = token_out.parent()
    {
        warden_files::ensure_private_dir(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    let mut contents = Zeroizing::new(auth.client_token.expose_secret().to_owned());
    contents.push('\n');
    warden_files::write_atomic(
        &token_out,
        contents.as_bytes(),
        warden_files::Mode::OwnerOnly,
    )
    .with_context(|| format!("could not write the token to {}", token_out.display()))
    .hint("the token was issued but not saved; it expires on its own within its TTL")?;
    let report = LoginReport {
        env: env.name.to_string(),
        role,
        token_file: token_out,
        policies: auth.policies,
        ttl_seconds: auth.lease_duration,
        renewable: auth.renewable,
        accessor: auth.accessor,
        entity_id: auth.entity_id,
    };
    out.emit(&report, || {
        format!(
            "{}: logged in as {} — policies [{}], TTL {}s, accessor {}\n  token written to {} (0600); pass it on with --token-file\n",
            report.env,
            report.role,
            report.policies.join(", "),
            report.ttl_seconds,
            report.accessor,
            report.token_file.display()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn logout(args: LogoutArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let env = resolved.one_env("ci logout", OneEnv::NamedOrOnly)?;
    let path = token_path(args.token_file.as_deref(), "--token-file")?;
    let token = read_token_file(&path, out)?;
    let client = resolved.workload_client(env, args.transport.as_deref())?;
    client.set_token(token);
    let revoked = match client.token_revoke_self().await {
        Ok(()) => true,
        // Already expired or revoked: the goal is reached.
        Err(e) if e.is_permission_denied() => false,
        Err(e) => {
            return Err(anyhow::Error::new(e).context("could not revoke the token"))
                .hint("the file is kept; retry, or let the token expire");
        }
    };
    std::fs::remove_file(&path).with_context(|| format!("could not delete {}", path.display()))?;
    let report = serde_json::json!({
        "env": env.name.as_str(),
        "token_file": path,
        "revoked": revoked,
    });
    out.emit(&report, || {
        format!(
            "{}: token {} and {} deleted",
            env.name,
            if revoked {
                "revoked"
            } else {
                "was already invalid"
            },
            path.display()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The pipelines (in `env`) whose role is `role`.
fn pipelines_for<'s>(spec: &'s Spec, env: &'s Environment, role: &str) -> Vec<&'s PipelineBinding> {
    spec.identities_in(env.name.as_str())
        .filter(|i| i.kind == IdentityKind::Pipeline)
        .filter_map(|i| i.pipeline.as_ref())
        .filter(|p| spec.naming.ci_role.render(&p.app) == role)
        .collect()
}

fn all_roles(spec: &Spec, env: &Environment) -> Vec<String> {
    let mut roles: Vec<String> = spec
        .identities_in(env.name.as_str())
        .filter_map(|i| i.pipeline.as_ref())
        .map(|p| spec.naming.ci_role.render(&p.app))
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

/// `explicit`, else `$XDG_RUNTIME_DIR/warden/token` (a per-user tmpfs that disappears at
/// logout), else refuse: a token must not land in a shared or persistent place by default.
fn token_path(explicit: Option<&Path>, flag: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir).join("warden").join("token")),
        None => Err(anyhow::anyhow!(
            "no place for the token: XDG_RUNTIME_DIR is not set"
        ))
        .with_hint(|| {
            format!(
                "pass {flag} FILE (a private location, e.g. under the job's temporary directory)"
            )
        }),
    }
}

fn read_jwt(args: &LoginArgs) -> anyhow::Result<SecretString> {
    let path = match (&args.jwt_file, &args.jwt_file_env) {
        (Some(p), _) => p.clone(),
        (None, Some(var)) => match std::env::var_os(var).filter(|v| !v.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => {
                return Err(anyhow::anyhow!(
                    "--jwt-file-env {var}: the variable is not set"
                ))
                .hint("it must hold the path of the file with the pipeline's OIDC token");
            }
        },
        (None, None) => anyhow::bail!("name the token file with --jwt-file or --jwt-file-env"),
    };
    let raw = crate::input::read_named_text(
        &path,
        "the pipeline token file",
        crate::input::SECRET_FILE_LIMIT,
    )?;
    let token = raw.trim();
    if token.is_empty() {
        anyhow::bail!("the pipeline token file {} is empty", path.display());
    }
    if token.split('.').count() != 3 {
        return Err(anyhow::anyhow!(
            "{} does not hold a JWT (expected three dot-separated parts)",
            path.display()
        ))
        .hint("write the CI system's OIDC token to the file as is");
    }
    Ok(SecretString::from(token.to_owned()))
}

/// Turns a refused login into a message naming the claim, the token's value and what the
/// role accepts.
fn explain_refusal(
    err: JwtLoginError,
    jwt: &SecretString,
    bindings: &[&PipelineBinding],
    ci: &warden_spec::CiAuth,
    role: &str,
    transport_hint: String,
) -> anyhow::Error {
    // Refused at the handshake: no transport certificate, or one that expired (the way a
    // revoked one ends, ADR 0010).
    if let JwtLoginError::Api { source, .. } = &err
        && source.is_tls()
    {
        return anyhow::Error::msg(err.to_string()).context(crate::hint::Hint(format!(
            "the runner's transport certificate is missing, expired or not trusted here; {transport_hint}"
        )));
    }
    let JwtLoginError::Refused {
        reason, message, ..
    } = &err
    else {
        return anyhow::Error::msg(err.to_string())
            .context(crate::hint::Hint("is the environment reachable? (`warden lab status`, or check the address and trust anchor)".to_owned()));
    };
    let claims = warden_bao::unverified_claims(jwt).unwrap_or_default();
    let claim_value = |name: &str| {
        claims.get(name).map_or_else(
            || "(absent)".to_owned(),
            |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned),
        )
    };
    let expected = |claim: &str| -> Option<String> {
        let values: Vec<String> = match claim {
            "ref" => bindings
                .iter()
                .flat_map(|b| b.branches.iter().map(|br| format!("refs/heads/{br}")))
                .collect(),
            "repository" => bindings.iter().map(|b| b.repository.clone()).collect(),
            _ => return None,
        };
        Some(values.join(", "))
    };
    let (what, hint) = match reason {
        JwtRefusal::ClaimMismatch { claim } | JwtRefusal::ClaimMissing { claim } => {
            let accepts = expected(claim).map_or_else(String::new, |e| format!("; the role accepts {e}"));
            (
                format!(
                    "the token's `{claim}` claim is {}{accepts}",
                    claim_value(claim)
                ),
                match claim.as_str() {
                    "ref" => "run this step from an allowed branch, or add the branch to the pipeline's `branches` in the spec and `warden apply`".to_owned(),
                    "repository" => "this role belongs to another repository's pipeline; use that repository's role".to_owned(),
                    _ => "compare the token's claims with the role's bound_claims".to_owned(),
                },
            )
        }
        JwtRefusal::Audience => (
            format!(
                "the token's audience (`aud`) is {}; this environment expects {}",
                claim_value("aud"),
                ci.audience
            ),
            "request the CI token for the environment's audience".to_owned(),
        ),
        JwtRefusal::Issuer => (
            format!(
                "the token's issuer (`iss`) is {}; this environment trusts {}",
                claim_value("iss"),
                ci.issuer
            ),
            "use a token from the CI system the environment trusts".to_owned(),
        ),
        JwtRefusal::Expired => (
            "the token has expired".to_owned(),
            "request a fresh token in the same job and log in right away".to_owned(),
        ),
        JwtRefusal::NotYetValid => (
            "the token is not valid yet".to_owned(),
            "check the clocks of the CI runner and the OpenBao server".to_owned(),
        ),
        JwtRefusal::Signature => (
            "the token's signature does not verify with the keys the environment trusts".to_owned(),
            "check `validation_pubkeys` of the environment's [ci] section against the CI system's signing key, then `warden apply`".to_owned(),
        ),
        JwtRefusal::UnknownRole => (
            format!("role `{role}` does not exist on the server"),
            "run `warden apply` for this environment".to_owned(),
        ),
        _ => (
            "OpenBao refused the token".to_owned(),
            "compare the token's claims with the role (`bao read auth/jwt/role/<role>`)".to_owned(),
        ),
    };
    anyhow::anyhow!("login as `{role}` refused: {what} (OpenBao: {message})")
        .context(crate::hint::Hint(hint))
}
