//! `warden custody` (init, status, verify, publish, rekey) and `warden unseal`: the custody
//! ceremony and its aftermath. The work is `warden_custody`; this module resolves the
//! environment, its custodians (from the spec) and its nodes, and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use warden_custody::{Custodian, IdentityFile, Ledger, Node, StateDir};

use crate::context::{OneEnv, Target};
use crate::hint::HintExt;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct CustodyArgs {
    #[command(subcommand)]
    command: CustodyCommand,
}

#[derive(Debug, Subcommand)]
enum CustodyCommand {
    /// The ceremony: initialise a new environment with one unseal share per custodian of the
    /// spec, each encrypted to that custodian alone (`<custodian>.<env>.share.age`), and the
    /// root token encrypted to all of them. Nothing is shown or written in clear. A server with
    /// an auto-seal (static, transit) gets recovery keys instead, kept the same way.
    Init(InitArgs),
    /// The custody ledger: who holds which share (fingerprint), created and last verified when,
    /// and whether its digest matches the one in the registry.
    Status(StateArgs),
    /// A custodian proves their share opens with their identity and matches the ledger.
    Verify(ShareArgs),
    /// Publish the ledger's digest to the environment's registry (needs a token).
    Publish(StateArgs),
    /// A custodian's new age identity, written owner-only to --identity (a new file); prints the
    /// recipient (`age1…`) to put in the spec. Run it on the custodian's own machine.
    Keygen(KeygenArgs),
    /// New shares for the custodians now in the spec (replacing custodians), from THRESHOLD
    /// current shares (`--share F --identity I`, repeated); old shares stop working.
    Rekey(RekeyArgs),
}

/// Where the ledger lives.
#[derive(Debug, Args)]
pub(crate) struct StateArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Warden's state directory (the custody ledger). Default: `<lab>/state` with --lab, else
    /// $WARDEN_STATE_DIR, $XDG_STATE_HOME/warden or ~/.local/state/warden.
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct InitArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Where the encrypted files go (created owner-only).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Where the identity goes (must not exist).
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
}

/// One custodian's share and identity, repeated as many times as the operation needs.
#[derive(Debug, Args)]
pub(crate) struct SharePairs {
    /// An encrypted share (repeat, in the same order as --identity).
    #[arg(long = "share", value_name = "FILE", required = true)]
    pub(crate) shares: Vec<PathBuf>,
    /// The identity that opens the --share at the same position (repeat).
    #[arg(long = "identity", value_name = "FILE", required = true)]
    pub(crate) identities: Vec<PathBuf>,
}

impl SharePairs {
    /// Reads every identity; refuses unequal counts.
    pub(crate) fn load(&self) -> anyhow::Result<Vec<(PathBuf, IdentityFile)>> {
        if self.shares.len() != self.identities.len() {
            return Err(anyhow::anyhow!(
                "{} --share and {} --identity given",
                self.shares.len(),
                self.identities.len()
            ))
            .hint("give one --identity per --share, in the same order");
        }
        self.shares
            .iter()
            .zip(&self.identities)
            .map(|(s, i)| Ok((s.clone(), IdentityFile::read(i).map_err(custody_err)?)))
            .collect()
    }
}

#[derive(Debug, Args)]
struct RekeyArgs {
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    pairs: SharePairs,
    /// Where the new encrypted shares go.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Act with the token in FILE, one allowed on sys/rotate/root/* (operators are not): a
    /// break-glass token from `warden break-glass open --token-file`. Else VAULT_TOKEN.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// One custodian's share and identity for an environment: what `warden custody verify` and
/// `warden unseal` both read.
#[derive(Debug, Args)]
pub(crate) struct ShareArgs {
    #[command(flatten)]
    state: StateArgs,
    /// The custodian's encrypted share.
    #[arg(long, value_name = "FILE")]
    share: PathBuf,
    /// The custodian's age identity file (owner-only).
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
}

/// The environment, its state directory and an operator client.
pub(crate) struct Place {
    spec_dir: PathBuf,
    lab: bool,
    pub(crate) env: warden_spec::Environment,
    pub(crate) state: StateDir,
    pub(crate) client: warden_bao::Client,
}

impl StateArgs {
    pub(crate) fn place(&self, command: &str) -> anyhow::Result<Place> {
        let resolved = self.target.resolve()?;
        let env = resolved.one_env(command, OneEnv::Named)?.clone();
        let client = match &resolved.lab {
            Some(_) => resolved.client(&env)?,
            None => spec_client(
                &resolved.spec_dir,
                &env,
                env.api_addresses().first().copied(),
                None,
            )?,
        };
        let state = match (&self.state_dir, &self.target.lab) {
            (Some(d), _) => StateDir::new(d),
            (None, Some(lab)) => StateDir::new(lab.join("state")),
            (None, None) => StateDir::from_env(|k| std::env::var(k).ok())
                .context("no state directory: HOME is not set")
                .hint("pass --state-dir DIR or set WARDEN_STATE_DIR")?,
        };
        Ok(Place {
            spec_dir: resolved.spec_dir.clone(),
            lab: resolved.lab.is_some(),
            env,
            state,
            client,
        })
    }
}

/// How long `unseal` keeps trying one node of a cluster: a node that is down is reported as
/// such, and must not hold up the others.
const NODE_BUDGET: Option<std::time::Duration> = Some(std::time::Duration::from_secs(3));

/// A client for `env` from the spec's address and CA (the `VAULT_*`/`BAO_*` variables supply
/// the rest: token, client certificate). Unseal and the ceremony need no token, so nothing but
/// the spec is required.
fn spec_client(
    spec_dir: &Path,
    env: &warden_spec::Environment,
    address: Option<&str>,
    budget: Option<std::time::Duration>,
) -> anyhow::Result<warden_bao::Client> {
    let name = env.name.as_str();
    let address = address.map(str::to_owned);
    let cfg = warden_bao::ClientConfig::from_env_with(|k| match (k, &address) {
        ("VAULT_ADDR" | "BAO_ADDR", Some(a)) => Some(a.clone()),
        _ => std::env::var(k).ok(),
    })
    .with_context(|| format!("{name}: reading the address and VAULT_*/BAO_* settings"))
    .with_hint(|| format!("set [environments.{name}] address in the spec, or VAULT_ADDR"))?;
    let cfg = match &env.ca_cert {
        Some(ca) => cfg
            .with_ca_file(spec_dir.join(ca))
            .with_context(|| format!("{name}: CA bundle {}", ca.display()))?,
        None => cfg,
    };
    // With a client certificate and no token, the commands that need a token (publish,
    // status, rekey, break-glass close) act as the operator the certificate names.
    let operator_cert = cfg.client_identity.is_some() && cfg.token.is_none();
    let cfg = match budget {
        Some(b) => {
            let mut retry = cfg.retry;
            retry.call_budget = b;
            retry.startup_timeout = b;
            cfg.with_retry(retry)
        }
        None => cfg,
    };
    let client =
        warden_bao::Client::new(cfg).with_context(|| format!("{name}: cannot build a client"))?;
    if operator_cert {
        crate::cmd::operator::log_in_as_operator(&client);
    }
    Ok(client)
}

impl Place {
    /// Every node of the environment, each with a client of its own (a share goes to each):
    /// the spec's nodes, else its one address, else the lab's.
    pub(crate) fn nodes(&self) -> anyhow::Result<Vec<Node>> {
        let addresses = self.env.api_addresses();
        if self.lab || addresses.len() < 2 {
            return Ok(vec![Node {
                address: self.client.address().to_string(),
                client: self.client.clone(),
            }]);
        }
        addresses
            .into_iter()
            .map(|a| {
                Ok(Node {
                    address: a.to_owned(),
                    client: spec_client(&self.spec_dir, &self.env, Some(a), NODE_BUDGET)?,
                })
            })
            .collect()
    }

    /// The ceremony's plan for this environment: `custodians` (from [`Place::custodians`]),
    /// `threshold`, and where the encrypted shares go.
    fn plan<'a>(
        &'a self,
        custodians: &'a [Custodian],
        threshold: u8,
        out_dir: &'a Path,
    ) -> warden_custody::ceremony::Plan<'a> {
        warden_custody::ceremony::Plan {
            env: self.env.name.as_str(),
            custodians,
            threshold,
            // Init: the server's seal decides (recovery keys under an auto-seal); rekey keeps
            // the ledger's kind.
            kind: warden_custody::ShareKind::Unseal,
            out_dir,
            state: &self.state,
        }
    }

    fn custodians(&self) -> anyhow::Result<(Vec<Custodian>, u8)> {
        let name = self.env.name.as_str();
        let custody = self
            .env
            .custody
            .as_ref()
            .with_context(|| format!("the spec declares no custodians for `{name}`"))
            .with_hint(|| {
                format!("add [environments.{name}.custody] threshold = 3 and one [[environments.{name}.custody.custodians]] name = \"…\" recipient = \"age1…\" per custodian")
            })?;
        let list = custody
            .custodians
            .iter()
            .map(|c| Custodian::new(c.name.as_str(), &c.recipient))
            .collect::<Result<Vec<_>, _>>()
            .map_err(custody_err)?;
        Ok((list, custody.threshold))
    }
}

pub(crate) async fn run(args: CustodyArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        CustodyCommand::Init(a) => init(a, out).await,
        CustodyCommand::Status(a) => status(a, out).await,
        CustodyCommand::Verify(a) => verify(a, out).await,
        CustodyCommand::Publish(a) => publish(a, out).await,
        CustodyCommand::Rekey(a) => rekey(a, out).await,
        CustodyCommand::Keygen(a) => keygen(&a, out),
    }
}

fn keygen(a: &KeygenArgs, out: &Output) -> anyhow::Result<ExitCode> {
    crate::output::check_new_file(&a.identity, "identity")?;
    let g = warden_custody::generate_identity();
    warden_files::write_atomic(
        &a.identity,
        g.file_text.as_bytes(),
        warden_files::Mode::OwnerOnly,
    )?;
    out.emit(
        &serde_json::json!({ "identity": a.identity, "recipient": g.recipient }),
        || {
            format!(
                "identity written to {} (owner-only; keep it offline)
recipient: {}",
                a.identity.display(),
                g.recipient
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn init(a: InitArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let p = a.state.place("custody init")?;
    let (custodians, threshold) = p.custodians()?;
    let plan = p.plan(&custodians, threshold, &a.out);
    let _shield = interrupt_shield();
    let report = warden_custody::ceremony::init(&p.client, &plan)
        .await
        .map_err(ceremony_err)?;
    out.emit(&report, || ceremony_text(&report, "initialised"))?;
    Ok(ExitCode::SUCCESS)
}

async fn rekey(a: RekeyArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let p = a.state.place("custody rekey")?;
    if let Some(path) = &a.token_file {
        p.client
            .set_token(crate::session::read_token_file(path, out)?);
    }
    let (custodians, threshold) = p.custodians()?;
    let pairs = a.pairs.load()?;
    let plan = p.plan(&custodians, threshold, &a.out);
    let _shield = interrupt_shield();
    let report = warden_custody::ceremony::rekey(&p.client, &plan, &pairs)
        .await
        .map_err(ceremony_err)?;
    let published = publish_quietly(&p, &report.ledger_sha256).await;
    out.emit(
        &serde_json::json!({ "rekey": report, "published": published }),
        || {
            format!(
                "{}{}\n",
                ceremony_text(&report, "rekeyed"),
                published_text(&published)
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Keeps Ctrl-C, `kill` and a closed terminal from ending a ceremony between the server making
/// the shares and their files being written, which would lose the environment. Registering
/// the handlers replaces the default action (exit) for the rest of this short-lived process;
/// the signals are simply not acted on, and the ceremony ends on its own within its timeouts.
fn interrupt_shield() -> Vec<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ]
    .into_iter()
    .filter_map(|k| signal(k).ok())
    .collect()
}

/// A ceremony's error; when the server holds new shares whose files could not be written, the
/// files themselves go to stdout first (the shares and root token are encrypted, armored age;
/// the ledger holds no secret): printing them is the last place they can go.
fn ceremony_err(e: warden_custody::Error) -> anyhow::Error {
    if let warden_custody::Error::NotDelivered { files, .. } = &e {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        for f in files {
            let _ = writeln!(
                stdout,
                "# save the lines below, exactly, as {}\n{}",
                f.path.display(),
                f.text.trim_end()
            );
        }
        let _ = stdout.flush();
        let dirs = files
            .iter()
            .filter_map(|f| f.path.parent())
            .map(|d| d.display().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ");
        return anyhow::Error::new(e).context(crate::hint::Hint(format!(
            "do not run the ceremony again: the server keeps these shares. Free space or fix {dirs}, then save each block printed above to the file it names (they are encrypted to their custodians)"
        )));
    }
    custody_err(e)
}

fn ceremony_text(r: &warden_custody::ceremony::Report, what: &str) -> String {
    let mut s = format!(
        "{}: {what}: {} {}, threshold {} (ledger generation {})\n",
        r.env,
        r.shares,
        r.kind.describe(),
        r.threshold,
        r.generation
    );
    if r.kind == warden_custody::ShareKind::Recovery {
        s.push_str("  the server is auto-unsealed: these are recovery keys (rekey, generate-root, seal migration), not unseal shares\n");
    }
    for c in &r.custodians {
        s.push_str(&format!(
            "  share {} -> {:<16} {}  {}\n",
            c.index,
            c.custodian,
            c.fingerprint,
            c.file.display()
        ));
    }
    if let Some(t) = &r.root_token_file {
        s.push_str(&format!(
            "  root token (encrypted to every custodian, for bootstrap only): {}\n",
            t.display()
        ));
    }
    s.push_str(&format!(
        "  ledger: {} (sha256 {})\nHand each file to its custodian; nothing was written in clear.",
        r.ledger.display(),
        r.ledger_sha256
    ));
    s
}

async fn publish_quietly(p: &Place, sha: &str) -> Result<(), String> {
    let ledger = Ledger::load(&p.state, p.env.name.as_str()).map_err(|e| e.to_string())?;
    if !p.client.can_authenticate() {
        return Err("no token: run `warden custody publish` with an operator token".to_owned());
    }
    let now = time_now();
    ledger
        .publish(&p.client, sha, &now)
        .await
        .map_err(|e| e.to_string())
}

fn published_text(r: &Result<(), String>) -> String {
    match r {
        Ok(()) => "ledger digest published to the registry".to_owned(),
        Err(e) => format!("ledger digest not published: {e}"),
    }
}

fn time_now() -> String {
    warden_registry::posture::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp())
}

async fn verify(a: ShareArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let p = a.state.place("custody verify")?;
    let identity = IdentityFile::read(&a.identity).map_err(custody_err)?;
    let (ledger, sha) =
        warden_custody::unseal::verify(&p.state, p.env.name.as_str(), &a.share, &identity)
            .map_err(custody_err)?;
    let published = publish_quietly(&p, &sha).await;
    let share = warden_custody::envelope::open_share(&a.share, &identity).map_err(custody_err)?;
    let entry = ledger
        .entries
        .iter()
        .find(|e| e.custodian == share.custodian)
        .cloned();
    out.emit(
        &serde_json::json!({ "verified": entry, "ledger_sha256": sha, "published": published.is_ok() }),
        || {
            let e = entry.as_ref().expect("verified entry is in the ledger");
            format!(
                "{}: the share of {} (index {}, {}) opens and matches the ledger; verified at {}\n{}",
                p.env.name,
                e.custodian,
                e.index,
                e.fingerprint,
                e.last_verified_at.as_deref().unwrap_or("-"),
                published_text(&published)
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The environment's ledger on disk and the digest of its bytes: what `publish` sends to the
/// registry and `status` compares with what the registry holds.
fn ledger_on_disk(p: &Place) -> anyhow::Result<(Ledger, String)> {
    let name = p.env.name.as_str();
    let ledger = Ledger::load(&p.state, name).map_err(custody_err)?;
    let sha = Ledger::digest_on_disk(&p.state, name)
        .map_err(custody_err)?
        .unwrap_or_default();
    Ok((ledger, sha))
}

async fn publish(a: StateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let p = a.place("custody publish")?;
    let name = p.env.name.as_str();
    let (ledger, sha) = ledger_on_disk(&p)?;
    ledger
        .publish(&p.client, &sha, &time_now())
        .await
        .map_err(custody_err)?;
    out.emit(
        &serde_json::json!({ "env": name, "ledger_sha256": sha }),
        || format!("{name}: ledger digest {sha} published to the registry"),
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn status(a: StateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let p = a.place("custody status")?;
    let name = p.env.name.as_str();
    let (ledger, sha) = ledger_on_disk(&p)?;
    let registry = if p.client.can_authenticate() {
        match Ledger::published(&p.client, name).await {
            Ok(Some(d)) if d.ledger_sha256 == sha => "match".to_owned(),
            Ok(Some(d)) => format!(
                "MISMATCH: the registry has {} (generation {}, {}); the ledger on disk was changed",
                d.ledger_sha256, d.generation, d.published_at
            ),
            Ok(None) => "not published".to_owned(),
            Err(e) => format!("unknown ({e})"),
        }
    } else {
        "unknown (no token)".to_owned()
    };
    let tampered = registry.starts_with("MISMATCH");
    out.emit(
        &serde_json::json!({ "ledger": ledger, "ledger_sha256": sha, "registry": registry }),
        || {
            let mut s = format!(
                "{name}: {} {} (kind {}), threshold {}, generation {} (created {})\n",
                ledger.shares,
                ledger.kind.describe(),
                ledger.kind,
                ledger.threshold,
                ledger.generation,
                ledger.created_at
            );
            s.push_str(&format!(
                "  {:<5} {:<16} {:<40} {:<22} {}\n",
                "SHARE", "CUSTODIAN", "FINGERPRINT", "CREATED", "LAST VERIFIED"
            ));
            for e in &ledger.entries {
                s.push_str(&format!(
                    "  {:<5} {:<16} {:<40} {:<22} {}\n",
                    e.index,
                    e.custodian,
                    e.fingerprint,
                    e.created_at,
                    e.last_verified_at.as_deref().unwrap_or("never")
                ));
            }
            s.push_str(&format!(
                "  ledger: {} (sha256 {sha})\n  registry: {registry}",
                p.state.ledger(name).display()
            ));
            s
        },
    )?;
    Ok(if tampered {
        crate::exit::CHECK_FAILED.into()
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) async fn unseal(a: ShareArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let p = a.state.place("unseal")?;
    let identity = IdentityFile::read(&a.identity).map_err(custody_err)?;
    let nodes = p.nodes()?;
    let report =
        warden_custody::unseal::unseal(&p.state, p.env.name.as_str(), &nodes, &a.share, &identity)
            .await
            .map_err(custody_err)?;
    out.emit(&report, || {
        let mut s = format!(
            "{}: {}'s share ({}) submitted\n",
            report.env, report.custodian, report.fingerprint
        );
        for n in &report.nodes {
            let state = if n.sealed {
                format!(
                    "sealed, progress {}/{} (nonce {})",
                    n.progress, n.threshold, n.nonce
                )
            } else {
                "UNSEALED".to_owned()
            };
            s.push_str(&format!("  {:<32} {state}  [{}]\n", n.address, n.outcome));
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A custody error with the next step for the person at the keyboard.
pub(crate) fn custody_err(e: warden_custody::Error) -> anyhow::Error {
    use warden_custody::Error as E;
    let hint = match &e {
        E::IdentityDoesNotOpen { .. } => Some("use the identity of the custodian the share was made for (the file name says whose it is)".to_owned()),
        E::WrongEnvironment { env, .. } => Some(format!("use your share of `{env}`; shares never cross environments")),
        E::UnknownCustodian { .. } => Some("only the custodians in the ledger hold shares; `warden custody status` lists them".to_owned()),
        E::WrongShare { .. } => Some("this share is stale (from before a rekey) or forged; ask the custodian for the share of the current generation (`warden custody status`)".to_owned()),
        E::AlreadySubmitted { .. } => Some("the next share must come from another custodian; nothing was sent".to_owned()),
        E::DuplicateCustodian { .. } => Some("each --share must come from a different custodian".to_owned()),
        E::NotEnoughShares { need, .. } => Some(format!("give {need} --share/--identity pairs of different custodians")),
        E::IdentityTooOpen { path, .. } => Some(format!("chmod 600 {}", path.display())),
        E::NoLedger { .. } => Some("run the ceremony first (`warden custody init`), or point --state-dir at the directory that holds the ledger".to_owned()),
        E::LedgerExists { .. } => Some("this environment already had its ceremony; use `warden custody rekey` to change custodians".to_owned()),
        E::AlreadyInitialized { .. } => Some("a ceremony only initialises a new server; use `warden custody rekey` for new shares".to_owned()),
        E::OutputExists { .. } => Some("choose a new --out directory".to_owned()),
        E::InProgress { .. } => Some("wait for it to finish, or cancel it on the server if it is stale".to_owned()),
        E::RecoveryKeysDoNotUnseal { .. } => Some("nothing was sent: the nodes unseal themselves through their seal; if one stays sealed, check its seal (`warden lab status` says why in a lab: seal-keeper down, key file missing)".to_owned()),
        E::RecoveryRekey { .. } => Some("nothing was sent; recovery keys are rotated with OpenBao's own tool for now (`bao operator rekey -target=recovery`), outside custody".to_owned()),
        E::Bao { source, .. } if source.status() == Some(400) && source.server_errors().iter().any(|m| m.contains("unsupported operation")) => {
            Some("the listener disables this endpoint: set disable_unauthed_generate_root_endpoints = false in its listener block (docs/openbao.md)".to_owned())
        }
        _ => None,
    };
    let err = anyhow::Error::new(e);
    match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    }
}
