//! `warden operator enroll | approve | list | remove` (operator identities: one mTLS client
//! certificate per person) and `warden bootstrap` (a real environment's first and last use of
//! the root token). The work is `warden_enroll::operator` and `warden_enroll::bootstrap`; the
//! operator policy and PKI role come from `warden_plan::operator`, as apply writes them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use secrecy::SecretString;
use warden_bao::Client;
use warden_enroll::bootstrap::{BootstrapInputs, bootstrap};
use warden_enroll::operator::{self, OperatorError};
use warden_spec::naming::operator::OPERATOR_AUTH_MOUNT;

use crate::context::Target;
use crate::hint::HintExt as _;
use crate::output::Output;
use crate::session::Access;

/// Makes a client built from a client certificate and no token log in as whichever operator
/// the certificate was issued to (cert auth at the operators' mount), on its first request.
pub(crate) fn log_in_as_operator(client: &Client) {
    client.login_with_cert_on_demand(OPERATOR_AUTH_MOUNT, None);
}

/// Which login read an environment for a plan (ADR 0038).
pub(crate) enum PlanLogin {
    /// The operator's planner: read-only; its token is given back when the plan is done.
    Planner,
    /// The operator's own login, and why the planner's was not used.
    Operator(String),
    /// A token of the client's own (bootstrap, `VAULT_TOKEN`): used as it is.
    Token,
}

impl PlanLogin {
    /// As the plan reports it (`None` for a token of the client's own).
    pub(crate) fn describe(&self) -> Option<String> {
        match self {
            Self::Planner => Some("planner".to_owned()),
            Self::Operator(why) => Some(format!("operator ({why})")),
            Self::Token => None,
        }
    }
}

/// Makes an operator client read as the operator's planner (ADR 0038): the same certificate
/// logs in at the planners' mount, whose token can only read what planning reads. The client
/// stays the operator's, and the reason comes back, where that login is refused (an
/// environment whose apply has not yet created the mount or this operator's planner role) or
/// where the planner policy is not exactly what apply writes for `env` (edited by hand, or
/// written by another version of Warden: it could be refused a read the plan needs, or filter
/// a list to hide an object, so it is not trusted to read). A client with a token of its own
/// is left as it is.
pub(crate) async fn read_as_planner(client: &Client, env: &warden_spec::Environment) -> PlanLogin {
    use warden_spec::naming::planner::{PLANNER_AUTH_MOUNT, PLANNER_POLICY};
    if client.has_token() {
        return PlanLogin::Token;
    }
    let Some((mount, role)) = client.cert_login() else {
        return PlanLogin::Token;
    };
    if mount != OPERATOR_AUTH_MOUNT {
        return PlanLogin::Token;
    }
    let as_operator = |why: String| {
        client.clear_token();
        client.login_with_cert_on_demand(OPERATOR_AUTH_MOUNT, role.as_deref());
        PlanLogin::Operator(why)
    };
    client.login_with_cert_on_demand(PLANNER_AUTH_MOUNT, role.as_deref());
    // The server's own words where it gave some (one line), else the client's.
    let why = |e: warden_bao::Error| {
        e.server_errors()
            .first()
            .map(|m| m.trim().to_owned())
            .unwrap_or_else(|| e.to_string())
    };
    if let Err(e) = client.log_in_now().await {
        return as_operator(format!(
            "no planner login at auth/{PLANNER_AUTH_MOUNT}: {}; apply creates it",
            why(e)
        ));
    }
    match client.read_policy(PLANNER_POLICY).await {
        Ok(hcl) if warden_plan::planner::policy_is_current(&hcl, env) => PlanLogin::Planner,
        Ok(_) => {
            give_back(client).await;
            as_operator(format!(
                "the policy {PLANNER_POLICY} is not what apply writes; apply rewrites it"
            ))
        }
        Err(e) => {
            give_back(client).await;
            as_operator(format!(
                "cannot read the policy {PLANNER_POLICY}: {}; apply rewrites it",
                why(e)
            ))
        }
    }
}

/// Revokes the client's token: a planner's, once its plan is read (best effort: it lives at
/// most its hour anyway).
pub(crate) async fn give_back(client: &Client) {
    let _ = client.token_revoke_self().await;
}

/// Lint findings of the live operator policy (none when it does not exist yet).
pub(crate) async fn lint_live_operator_policy(
    client: &Client,
    spec: &warden_spec::Spec,
    env: &warden_spec::Environment,
) -> anyhow::Result<Vec<warden_plan::lint::Finding>> {
    use warden_spec::naming::operator::OPERATOR_POLICY;
    let name = env.name.as_str();
    match client.read_policy(OPERATOR_POLICY).await {
        Ok(hcl) => {
            let grants = warden_spec::naming::policy::parse(&hcl).map_err(|e| {
                anyhow::anyhow!("{name}: policy {OPERATOR_POLICY} is unreadable: {e}")
            })?;
            Ok(warden_plan::operator::lint_operator(
                spec, env, "live", &grants,
            ))
        }
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("{name}: read policy {OPERATOR_POLICY}")),
    }
}

#[derive(Debug, Args)]
pub(crate) struct OperatorArgs {
    #[command(subcommand)]
    command: OperatorCommand,
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// On the operator's own machine: generate their key (owner-only, never printed) and a CSR
    /// for `<NAME>.operator.<domain>`. Contacts nothing; hand the CSR to an operator.
    Enroll(EnrollArgs),
    /// Sign an operator's CSR through the environment's PKI and create their cert-auth role
    /// (operator policy only, short tokens). Run by an existing operator.
    Approve(ApproveArgs),
    /// The operators of the environment: name, common name, policies.
    List(ListArgs),
    /// Delete an operator's cert-auth role: their certificate no longer logs in.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
struct EnrollArgs {
    /// The operator (lowercase letters, digits, '-').
    name: String,
    #[command(flatten)]
    target: Target,
    /// Where to write `<NAME>.<ENV>.key` and `.csr` (created 0700).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct ApproveArgs {
    /// The operator being approved.
    name: String,
    #[command(flatten)]
    access: Access,
    /// Their CSR (from `warden operator enroll`).
    #[arg(long, value_name = "FILE")]
    csr: PathBuf,
    /// Write the certificate here (default: `<NAME>.<ENV>.crt` beside the CSR). Never overwrites.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    access: Access,
}

#[derive(Debug, Args)]
struct RemoveArgs {
    /// The operator to remove.
    name: String,
    #[command(flatten)]
    access: Access,
}

pub(crate) async fn run(args: OperatorArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        OperatorCommand::Enroll(a) => enroll(a, out),
        OperatorCommand::Approve(a) => approve(a, out).await,
        OperatorCommand::List(a) => list(a, out).await,
        OperatorCommand::Remove(a) => remove(a, out).await,
    }
}

/// Advice for an operator error.
fn explain(e: OperatorError) -> anyhow::Error {
    let hint = match &e {
        OperatorError::BadName { .. } => Some("for example `alice` or `ops-2`".to_owned()),
        OperatorError::KeyExists { .. } => Some(
            "an operator key is never overwritten: choose another --out, or move the old key away first"
                .to_owned(),
        ),
        OperatorError::BadCsr { .. } => Some(
            "ask the operator to run `warden operator enroll NAME --env ENV` with their own name"
                .to_owned(),
        ),
        OperatorError::PkiRoleMissing { .. } => {
            Some("run `warden apply` for the environment first (it creates the operator PKI role)".to_owned())
        }
        OperatorError::UnknownOperator { .. } => Some("`warden operator list` shows who there is".to_owned()),
        OperatorError::LastOperator { .. } => {
            Some("approve another operator first (`warden operator approve`)".to_owned())
        }
        OperatorError::Bao { source, .. } if source.status() == Some(403) => Some(
            "this needs an operator's identity: log in with your operator certificate (VAULT_CLIENT_CERT/VAULT_CLIENT_KEY) or use --lab DIR"
                .to_owned(),
        ),
        _ => None,
    };
    match hint {
        Some(h) => anyhow::Error::new(e).context(crate::hint::Hint(h)),
        None => anyhow::Error::new(e),
    }
}

fn enroll(a: EnrollArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = a.target.resolve()?;
    let env = resolved
        .one_env("operator enroll", crate::context::OneEnv::Named)?
        .clone();
    let req = operator::request(&a.name, &env, &a.out).map_err(explain)?;
    out.emit(&req, || {
        format!(
            "key:  {} (0600, stays on this machine)\ncsr:  {}\nname: {}\n\nnext: an operator runs `warden operator approve {} --env {} --csr {}` and sends you the certificate ({})\n",
            req.key.display(),
            req.csr.display(),
            req.common_name,
            req.name,
            req.env,
            req.csr.display(),
            req.certificate.display()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn read_csr(path: &Path) -> anyhow::Result<String> {
    // Bounded and never blocking (a FIFO or /dev/zero is refused): a CSR is a few hundred bytes.
    let bytes = warden_files::read_regular(path, 64 * 1024)
        .with_context(|| format!("could not read the CSR {}", path.display()))
        .hint("`warden operator enroll NAME --env ENV` writes one")?;
    String::from_utf8(bytes.to_vec())
        .ok()
        .with_context(|| format!("the CSR {} is not text", path.display()))
}

async fn approve(a: ApproveArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let csr = read_csr(&a.csr)?;
    let session = a.access.open("operator approve", out)?;
    let cert_path = a.out.clone().unwrap_or_else(|| {
        let (_, _, crt) = operator::operator_files(
            a.csr.parent().unwrap_or(Path::new(".")),
            &a.name,
            session.env_name(),
        );
        crt
    });
    crate::output::check_new_file(&cert_path, "operator certificate")?;
    let approved = operator::approve(&session.client, &session.env, &a.name, &csr)
        .await
        .map_err(explain)?;
    // The planner twin now rather than at the next apply (ADR 0038): the new operator's
    // first plan reads with the read-only login. A failure here costs only that: plans read
    // as the operator until an apply mirrors the role.
    let planner_role = match warden_plan::planner::mirror(
        &session.client,
        session.env_name(),
        &a.name,
    )
    .await
    {
        Ok(role) => role,
        Err(e) => {
            out.warn(format!(
                    "{e}: {}'s planner role is written by the next `warden apply`; until then their plans read with the operator login",
                    a.name
                ));
            None
        }
    };
    warden_files::write_atomic(
        &cert_path,
        approved.certificate_pem.as_bytes(),
        warden_files::Mode::Public,
    )
    .with_context(|| {
        format!(
            "the role is created, but {} could not be written",
            cert_path.display()
        )
    })?;
    out.emit(
        &serde_json::json!({ "approved": approved, "certificate_file": cert_path, "planner_role": planner_role }),
        || {
            format!(
                "approved {} ({}), serial {}\nrole: {} (policy {}, tokens {}s, at most {}s)\nplanner role: {}\ncertificate: {}\n",
                approved.name,
                approved.common_name,
                approved.serial,
                approved.role,
                approved.policy,
                approved.token_ttl_secs,
                approved.token_max_ttl_secs,
                planner_role.as_deref().unwrap_or("none yet (the next apply writes it)"),
                cert_path.display()
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn list(a: ListArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let session = a.access.open("operator list", out)?;
    let ops = operator::list(&session.client, session.env_name())
        .await
        .map_err(explain)?;
    out.emit(&ops, || {
        let mut s = String::new();
        for o in &ops {
            s.push_str(&format!(
                "{:<16} {:<40} {}\n",
                o.name,
                o.common_names.join(","),
                o.policies.join(",")
            ));
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn remove(a: RemoveArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let session = a.access.open("operator remove", out)?;
    operator::remove(&session.client, session.env_name(), &a.name)
        .await
        .map_err(explain)?;
    out.emit(
        &serde_json::json!({ "removed": a.name, "env": session.env_name() }),
        || {
            format!(
                "removed {}: their certificate no longer logs in (a token they hold expires within its TTL)\n",
                a.name
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `warden bootstrap`: the root token's one use.
#[derive(Debug, Args)]
pub(crate) struct BootstrapArgs {
    #[command(flatten)]
    target: Target,
    /// The root token, in an owner-only file (for example the one the custodians decrypted
    /// into a tmpfs). Never pass it in argv or the environment.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["root_token_stdin", "root_token_share"])]
    root_token_file: Option<PathBuf>,
    /// Read the root token from stdin (first line).
    #[arg(long, conflicts_with = "root_token_share")]
    root_token_stdin: bool,
    /// The ceremony's sealed root token (`root-token.<env>.age` from `warden custody init`),
    /// opened in memory with one custodian's --identity: the token never touches a disk.
    #[arg(long, value_name = "FILE", requires = "identity")]
    root_token_share: Option<PathBuf>,
    /// The custodian's age identity that opens --root-token-share.
    #[arg(long, value_name = "FILE", requires = "root_token_share")]
    identity: Option<PathBuf>,
    /// The first operator's name.
    #[arg(long, value_name = "NAME")]
    operator: String,
    /// The first operator's CSR (from `warden operator enroll`).
    #[arg(long, value_name = "FILE")]
    csr: PathBuf,
    /// Write the first operator's certificate here (default: beside the CSR). Never overwrites.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

fn root_token(a: &BootstrapArgs, env: &str, out: &Output) -> anyhow::Result<SecretString> {
    if let (Some(sealed), Some(identity)) = (&a.root_token_share, &a.identity) {
        let id = warden_custody::IdentityFile::read(identity)
            .with_context(|| format!("could not read the identity {}", identity.display()))
            .hint("--identity is your custodian identity (`warden custody keygen`), owner-only")?;
        return warden_custody::root::open_bootstrap_token(sealed, env, &id)
            .with_context(|| format!("could not open the root token in {}", sealed.display()))
            .hint("--root-token-share is the ceremony's root-token.<env>.age and --identity one of this environment's custodians' identities");
    }
    if let Some(path) = &a.root_token_file {
        return crate::session::read_token_file(path, out);
    }
    if !a.root_token_stdin {
        return Err(anyhow::anyhow!("bootstrap needs the root token")).hint(
            "pass --root-token-share root-token.<env>.age --identity YOUR.key (opened in memory), --root-token-file FILE (owner-only) or --root-token-stdin; never put it in argv or the environment",
        );
    }
    let raw = crate::input::read_stdin_text("the root token", crate::input::SECRET_FILE_LIMIT)?;
    let token = raw.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        anyhow::bail!("stdin held no root token");
    }
    Ok(SecretString::from(token.to_owned()))
}

pub(crate) async fn run_bootstrap(a: BootstrapArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let csr = read_csr(&a.csr)?;
    let (resolved, env, client) = a.target.one_env_client("bootstrap")?;
    let cert_path = a.out.clone().unwrap_or_else(|| {
        let (_, _, crt) = operator::operator_files(
            a.csr.parent().unwrap_or(Path::new(".")),
            &a.operator,
            env.name.as_str(),
        );
        crt
    });
    crate::output::check_new_file(&cert_path, "operator certificate")?;
    client.set_token(root_token(&a, env.name.as_str(), out)?);
    let policy = warden_plan::operator::policy_hcl(&resolved.spec, &env);
    let (role_path, role_body) = warden_plan::operator::pki_role(&env);
    let inputs = BootstrapInputs {
        operator_policy: &policy,
        pki_role: (&role_path, &role_body),
        first_operator: (&a.operator, &csr),
    };
    let report = bootstrap(&client, &env, &inputs).await.map_err(explain)?;
    warden_files::write_atomic(
        &cert_path,
        report.operator.certificate_pem.as_bytes(),
        warden_files::Mode::Public,
    )
    .with_context(|| {
        format!(
            "bootstrap finished, but {} could not be written; `warden operator approve` can issue it again",
            cert_path.display()
        )
    })?;
    if !report.root_revoked {
        return Err(anyhow::anyhow!(
            "{}: the root token still answers after its revocation",
            env.name.as_str()
        ))
        .hint("revoke it by hand (`bao token revoke -self`) before anything else");
    }
    out.emit(
        &serde_json::json!({ "bootstrap": report, "certificate_file": cert_path }),
        || {
            format!(
                "{env}: operator policy {policy}, operators' cert auth at auth/{OPERATOR_AUTH_MOUNT}/\nfirst operator: {op} ({cn}), certificate {crt}\nroot token: revoked (a lookup with it now fails)\n",
                env = report.env,
                policy = report.policy,
                op = report.operator.name,
                cn = report.operator.common_name,
                crt = cert_path.display()
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
