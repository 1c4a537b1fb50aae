//! `warden server config` and `warden server tls`: a production node's OpenBao server configuration and hardened
//! systemd unit, from the spec's `[[environments.<env>.nodes]]` (the work is
//! `warden_node::node_files`; this module picks the node and prints what was written).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use time::OffsetDateTime;
use warden_files::Mode;
use warden_node::{HostPaths, NodeError};
use warden_pki::{CaDir, ListenerCa};

/// How long a production listener CA is valid.
const LISTENER_CA_VALIDITY: time::Duration = time::Duration::days(3 * 365);

use crate::hint::HintExt;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    #[command(subcommand)]
    command: ServerCommand,
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Write one node's server configuration (raft with retry_join to its peers, the mTLS
    /// listener, telemetry, the file audit device, the seal stanza) and its hardened systemd
    /// unit, which runs OpenBao as the environment's runtime_owner.
    ///
    /// Nothing is contacted and nothing is installed: copy the files to the node's host (the
    /// JSON output says where each belongs). Paths default to /etc/warden/<env>,
    /// /var/lib/warden/<env>/raft and /var/log/warden/<env>.
    Config(ConfigArgs),
    /// Issue the environment's node TLS files: a listener CA signed by the offline root (kept
    /// in --out, key owner-only), then per node its server certificate (SANs from its address
    /// and cluster address), its join client certificate, client-ca.pem and ca.pem, under
    /// --out/<node>/. Existing node certificates are kept; client-ca.pem is always rewritten.
    ///
    /// After the PKI intermediate is installed, run it again with --identity-ca so the listener
    /// accepts operators' certificates, copy client-ca.pem to every node and restart them.
    ///
    /// With --install-listener-ca FILE --tls-dir DIR (a root rollover, ADR 0030): install the
    /// listener CA the next root re-signed (`ca rollover-root resign --profile listener-ca
    /// --out FILE`) into each node TLS directory (a node's /etc/warden/<env>/tls/, or this
    /// command's --out and --out/<node>/): checked first for every directory (PEM, a CA valid
    /// now, the same key as the current listener CA, the server certificate verifies under
    /// it), then listener-ca.crt, client-ca.pem, node.crt and last server.crt are replaced
    /// atomically and the new root added to ca.pem. Restart (or SIGHUP) the node afterwards.
    Tls(TlsArgs),
    /// Remove a dead node from the environment's raft peer set (a node whose disk was lost
    /// rejoins only after this). Root-only in OpenBao: takes a break-glass token. Refuses the
    /// active node and an id that is not a peer.
    RemovePeer(super::raft_peer::RemovePeerArgs),
}

#[derive(Debug, Args)]
struct TlsArgs {
    /// The platform spec.
    #[arg(long, default_value = "warden.toml")]
    spec: PathBuf,
    /// The environment.
    #[arg(long = "env", required_unless_present = "install_listener_ca")]
    env: Option<String>,
    /// Only this node (repeatable) [default: every node of the environment].
    #[arg(long = "node", value_name = "NAME")]
    nodes: Vec<String>,
    /// The offline root CA directory (`warden ca init`); used only when the listener CA is
    /// created.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "install_listener_ca"
    )]
    ca_dir: Option<PathBuf>,
    /// Read the root's passphrase from this file instead of WARDEN_CA_PASSPHRASE or a prompt.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// The environment's PKI intermediate (`warden ca sign-intermediate --out`; its first
    /// certificate is used): client-ca.pem then trusts operators' and identities' certificates.
    /// Repeatable: give the old and the new intermediate during a rotation's overlap.
    #[arg(long, value_name = "FILE")]
    identity_ca: Vec<PathBuf>,
    /// Also issue a client certificate NAME.clients.<env> from the listener CA (repeatable;
    /// --out/clients/NAME.crt and .key): what the ceremony and the custodians who unseal present
    /// to the mTLS listener before operators exist. It grants nothing inside OpenBao.
    #[arg(long = "client", value_name = "NAME")]
    clients: Vec<String>,
    /// Where the listener CA and the nodes' directories go (created owner-only).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "install_listener_ca"
    )]
    out: Option<PathBuf>,
    /// Install this listener CA, re-signed by a new root (`ca rollover-root resign --profile
    /// listener-ca --out`; its first certificate, and the root after it), into each --tls-dir
    /// instead of issuing anything.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_dirs",
        conflicts_with_all = ["env", "nodes", "ca_dir", "identity_ca", "clients", "out"]
    )]
    install_listener_ca: Option<PathBuf>,
    /// A node TLS directory to install the listener CA into (repeatable; every one is checked
    /// before any is changed).
    #[arg(long = "tls-dir", value_name = "DIR", requires = "install_listener_ca")]
    tls_dirs: Vec<PathBuf>,
}

/// The issuing mode's arguments, once clap has made sure they are there.
struct Issue<'a> {
    env: &'a str,
    ca_dir: &'a std::path::Path,
    out: &'a std::path::Path,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// The platform spec.
    #[arg(long, default_value = "warden.toml")]
    spec: PathBuf,
    /// The environment.
    #[arg(long = "env")]
    env: String,
    /// The node's name, as in [[environments.<env>.nodes]].
    #[arg(long)]
    node: String,
    /// Where to write the two files (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Configuration directory on the host (tls/ and openbao/ under it) [default:
    /// /etc/warden/<env>].
    #[arg(long)]
    config_dir: Option<PathBuf>,
    /// Raft storage directory on the host [default: /var/lib/warden/<env>/raft].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Audit log directory on the host [default: /var/log/warden/<env>].
    #[arg(long)]
    audit_dir: Option<PathBuf>,
    /// The bao binary on the host.
    #[arg(long, default_value = "/usr/bin/bao")]
    bao: PathBuf,
    #[command(flatten)]
    seal: crate::cmd::seal::SealFlags,
}

pub(crate) async fn run(args: ServerArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        ServerCommand::Config(a) => config(a, out),
        ServerCommand::Tls(a) => tls(a, out),
        ServerCommand::RemovePeer(a) => super::raft_peer::run(a, out).await,
    }
}

pub(crate) fn load_spec(path: &std::path::Path) -> anyhow::Result<warden_spec::Spec> {
    warden_spec::load(path).map_err(|e| match e {
        warden_spec::LoadError::Invalid(d) => {
            anyhow::anyhow!("{d}").context(format!("{} is not a valid spec", path.display()))
        }
        other => anyhow::Error::new(other),
    })
}

/// `--out`, opened only when no one else can change it: whoever owns it could swap in a
/// listener CA of their own, which this command keeps and signs every node's certificate with.
fn open_out_dir(out: &std::path::Path) -> anyhow::Result<warden_files::Dir> {
    warden_files::Dir::open_root(out, warden_files::Trusted::process())
        .with_context(|| format!("could not use {} for the listener CA", out.display()))
        .with_hint(|| {
            format!(
                "--out must be a directory of yours (or root's) that no one else can write to: create a new one, or `chown` {} to this user; nothing was written",
                out.display()
            )
        })
}

/// The listener CA in `out`, or a new one signed by the offline root when there is none.
fn listener_ca(
    a: &TlsArgs,
    i: &Issue<'_>,
    now: OffsetDateTime,
) -> anyhow::Result<(ListenerCa, bool)> {
    // Through the directory, never following a name: a FIFO there would hang the read, a
    // symlink to /dev/zero fill memory, and a dangling symlink must not pass for "no CA yet"
    // (the root would sign a listener CA whose key the write then refuses).
    let dir = open_out_dir(i.out)?;
    let restore = || {
        format!(
            "{} holds the listener CA as listener-ca.crt and listener-ca.key (regular files); restore both, or use a new --out to create a new CA (every node then needs new certificates)",
            i.out.display()
        )
    };
    let present = |name: &str| -> anyhow::Result<bool> {
        use warden_files::Kind;
        let what = match dir.meta(name)?.map(|m| m.kind) {
            None => return Ok(false),
            Some(Kind::File) => return Ok(true),
            Some(Kind::Symlink) => "a symbolic link (never followed here)",
            Some(Kind::Dir) => "a directory, not a regular file",
            Some(Kind::Other) => "not a regular file (a FIFO, socket or device)",
        };
        Err(anyhow::anyhow!("{} is {what}", i.out.join(name).display())).with_hint(restore)
    };
    if present("listener-ca.crt")? | present("listener-ca.key")? {
        let read = |name: &str| -> anyhow::Result<zeroize::Zeroizing<String>> {
            let path = i.out.join(name);
            let bytes = dir
                .read_bounded(name, crate::input::TEXT_FILE_LIMIT)
                .with_context(|| format!("could not read {}", path.display()))
                .with_hint(restore)?
                .with_context(|| format!("{} is missing", path.display()))
                .with_hint(restore)?
                .0
                .bytes;
            let bytes = zeroize::Zeroizing::new(bytes);
            let text = std::str::from_utf8(&bytes)
                .with_context(|| format!("{} is not PEM text", path.display()))
                .with_hint(restore)?;
            Ok(zeroize::Zeroizing::new(text.to_owned()))
        };
        let key_pem = read("listener-ca.key")?;
        let lca = ListenerCa::load(&read("listener-ca.crt")?, &key_pem)
            .context("the listener CA in --out does not load")
            .hint("listener-ca.key must be the key of listener-ca.crt")?;
        return Ok((lca, false));
    }
    let ca = CaDir::open(i.ca_dir)
        .with_context(|| format!("could not open the offline root in {}", i.ca_dir.display()))
        .hint("--ca-dir is the directory `warden ca init` created")?;
    let passphrase = crate::secret_input::ca_passphrase(a.passphrase_file.as_deref(), false)?;
    let lca = ListenerCa::create(&ca, i.env, &passphrase, LISTENER_CA_VALIDITY, now)
        .context("could not create the listener CA")
        .hint("check the passphrase; the root's ledger is unchanged unless it signed")?;
    dir.write(
        "listener-ca.key",
        lca.key_pem().as_bytes(),
        Mode::OwnerOnly,
        None,
    )?;
    dir.write(
        "listener-ca.crt",
        lca.cert_pem().as_bytes(),
        Mode::Public,
        None,
    )?;
    Ok((lca, true))
}

fn tls(a: TlsArgs, out: &Output) -> anyhow::Result<ExitCode> {
    if let Some(file) = &a.install_listener_ca {
        return install_listener_ca(file, &a.tls_dirs, out);
    }
    let (Some(env), Some(ca_dir), Some(out_dir)) = (&a.env, &a.ca_dir, &a.out) else {
        anyhow::bail!("--env, --ca-dir and --out are required to issue node TLS files");
    };
    let i = Issue {
        env,
        ca_dir,
        out: out_dir,
    };
    let spec = load_spec(&a.spec)?;
    let env = spec
        .environment(i.env)
        .with_context(|| format!("the spec has no environment {:?}", i.env))?;
    let known: Vec<String> = env.nodes.iter().map(|n| n.name.to_string()).collect();
    if known.is_empty() {
        return Err(anyhow::anyhow!("environment {} declares no nodes", i.env)).with_hint(|| {
            format!("declare its servers as [[environments.{}.nodes]] with name, address and cluster_address", i.env)
        });
    }
    let nodes = if a.nodes.is_empty() {
        known.clone()
    } else {
        a.nodes.clone()
    };
    if let Some(bad) = nodes.iter().find(|n| !known.contains(n)) {
        return Err(anyhow::anyhow!("environment {} has no node {bad:?}", i.env))
            .with_hint(|| format!("--node is one of: {}", known.join(", ")));
    }
    // Repeatable: during an intermediate rotation's overlap the listener trusts both (ADR 0029).
    let mut identity_cas = String::new();
    for p in &a.identity_ca {
        let text =
            crate::input::read_named_text(p, "the identity CA", crate::input::TEXT_FILE_LIMIT)?;
        let first = warden_pki::first_certificate(&text)
            .with_context(|| format!("{} holds no certificate", p.display()))
            .hint("--identity-ca is the PEM `warden ca sign-intermediate --out` wrote")?;
        identity_cas.push_str(first.trim_end());
        identity_cas.push('\n');
    }
    let identity_ca = (!identity_cas.is_empty()).then_some(identity_cas);
    // Checked before `ensure_private_dir` makes it owner-only: a refused run changes nothing.
    if i.out.exists() {
        open_out_dir(i.out)?;
    }
    warden_files::ensure_private_dir(i.out)
        .with_context(|| format!("could not create {}", i.out.display()))?;
    let now = OffsetDateTime::now_utc();
    let (lca, created) = listener_ca(&a, &i, now)?;
    let root_pem = chain_root(i.ca_dir, &lca, i.out)?;
    let mut written = Vec::new();
    for node in &nodes {
        written.push(
            warden_node::write_node_tls(
                env,
                node,
                &lca,
                &root_pem,
                identity_ca.as_deref(),
                i.out,
                now,
            )
            .context("could not write the node's TLS files")
            .hint("fix the cause and run the command again; files already written are kept")?,
        );
    }
    let mut clients = Vec::new();
    for name in &a.clients {
        clients.push(
            warden_node::write_client_tls(i.env, name, &lca, i.out, now)
                .context("could not write the client certificate")
                .hint("--client is a name of letters, digits and '-'")?,
        );
    }
    let report = serde_json::json!({
        "environment": i.env,
        "listener_ca": { "path": i.out.join("listener-ca.crt"), "created": created },
        "nodes": written,
        "clients": clients,
    });
    out.emit(&report, || {
        let mut s = format!(
            "{}: listener CA {} ({})\n",
            i.env,
            i.out.join("listener-ca.crt").display(),
            if created { "created, signed by the offline root" } else { "kept" }
        );
        for n in &written {
            s.push_str(&format!(
                "  {}: {} ({}), names {}; client-ca.pem {}\n",
                n.node,
                n.dir.display(),
                if n.issued { "issued" } else { "kept" },
                n.names.join(", "),
                if n.trusts_identity_ca { "with the PKI intermediate" } else { "listener CA only" }
            ));
        }
        for c in &clients {
            s.push_str(&format!(
                "  client {} ({}): {} ({})\n",
                c.name,
                c.common_name,
                c.cert.display(),
                if c.issued { "issued" } else { "kept" }
            ));
        }
        s.push_str("copy each node's directory to /etc/warden/<env>/tls/ on its host; keep listener-ca.key offline\n");
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What to do about a refused listener CA install: the next step for each refusal.
pub(crate) fn listener_ca_hint(e: &warden_node::ListenerCaError) -> &'static str {
    use warden_node::ListenerCaError as E;
    match e {
        E::NotPem { .. } => {
            "give the file `warden ca rollover-root resign --profile listener-ca --out FILE` wrote (PEM, the re-signed listener CA first)"
        }
        E::NotACa { .. } => {
            "that is a leaf; give the re-signed listener CA (`ca rollover-root resign --profile listener-ca`)"
        }
        E::NotYetValid { .. } | E::Expired { .. } => {
            "check this host's clock; otherwise re-sign the listener CA's CSR again with `ca rollover-root resign --profile listener-ca` (a new validity)"
        }
        E::DifferentKey { .. } => {
            "re-sign a CSR for the listener CA's own key (its listener-ca.key), with `--current` the listener-ca.crt of this environment; a new key needs new node certificates (`warden server tls` into a new --out)"
        }
        E::NoCurrent { .. } => {
            "--tls-dir is a node's TLS directory (server.crt, client-ca.pem, ca.pem) or `warden server tls --out` (listener-ca.crt)"
        }
        E::DifferentSubject { .. } => {
            "re-sign a CSR with the listener CA's own subject (`--current` its listener-ca.crt): the certificates it issued name that subject as their issuer"
        }
        E::ServerDoesNotVerify { .. } => {
            "this node's server certificate was not issued by this listener CA: is it the right environment's directory?"
        }
        E::RootMismatch { .. } => {
            "the file must hold the re-signed listener CA followed by the root that signed it, as `resign --out` writes it"
        }
        E::Read { .. } => {
            "fix the file named (a regular file, not a symlink) and run the command again"
        }
        E::Files(_) | _ => {
            "fix the cause and run the command again; a re-run finishes what is left"
        }
    }
}

/// `warden server tls --install-listener-ca FILE --tls-dir DIR…`: every directory checked,
/// then each written.
fn install_listener_ca(
    file: &std::path::Path,
    dirs: &[PathBuf],
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let text = crate::input::read_named_text(file, "the listener CA", crate::input::TEXT_FILE_LIMIT)
        .hint("--install-listener-ca is the file `ca rollover-root resign --profile listener-ca --out` wrote")?;
    let now = OffsetDateTime::now_utc();
    let refused = |e: warden_node::ListenerCaError| {
        let hint = listener_ca_hint(&e);
        anyhow::Error::new(e)
            .context("the listener CA was not installed; nothing was changed")
            .context(crate::hint::Hint(hint.to_owned()))
    };
    let mut plans = Vec::new();
    for dir in dirs {
        plans.push(warden_node::listener_ca::plan(dir, file, &text, now).map_err(refused)?);
    }
    let mut done = Vec::new();
    for plan in plans {
        done.push(
            plan.apply()
                .map_err(anyhow::Error::new)
                .context("could not write the listener CA's files")
                .hint("each file is replaced whole or not at all: fix the cause and run the command again")?,
        );
    }
    let report = serde_json::json!({
        "listener_ca": done.first().map(|d| &d.listener_ca),
        "directories": done,
    });
    out.emit(&report, || {
        let mut s = String::new();
        if let Some(d) = done.first() {
            s.push_str(&format!(
                "listener CA {} (serial {}, issued by {}, until {})\n",
                d.listener_ca.subject, d.listener_ca.serial, d.listener_ca.issuer, d.listener_ca.not_after
            ));
        }
        for d in &done {
            if d.replaced.is_empty() {
                s.push_str(&format!("  {}: already installed\n", d.dir.display()));
            } else {
                s.push_str(&format!("  {}: replaced {}\n", d.dir.display(), d.replaced.join(", ")));
            }
        }
        s.push_str("Next: restart each node (or send it SIGHUP, which re-reads server.crt) so the listener serves the chain to the new root; then trust files may drop the old root\n");
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What a node's `ca.pem` holds: the roots of `ca_dir` (during a root rollover the next one
/// too, which a re-signed listener CA chains to), checked to be what `lca` chains to. A wrong
/// --ca-dir (another environment's, an old one) put a root in a new node's `ca.pem` under which
/// none of its peers' certificates verify.
fn chain_root(
    ca_dir: &std::path::Path,
    lca: &ListenerCa,
    out: &std::path::Path,
) -> anyhow::Result<String> {
    let ca = CaDir::open(ca_dir)
        .with_context(|| format!("could not open the offline root in {}", ca_dir.display()))
        .hint("--ca-dir is the directory `warden ca init` created")?;
    let roots = ca
        .trusted_roots_pem()
        .with_context(|| format!("could not read the roots of {}", ca_dir.display()))?;
    // Read from `root.crt` (public; no passphrase).
    let report = warden_pki::verify_chain_any(lca.cert_pem(), &roots, OffsetDateTime::now_utc())
        .context("could not read the listener CA in --out")?;
    if !report.valid {
        return Err(anyhow::anyhow!(
            "the listener CA in {} does not chain to the root in --ca-dir {}: {}",
            out.display(),
            ca_dir.display(),
            report.problems_text()
        ))
        .hint("--ca-dir is the offline root that signed this environment's listener CA (`warden ca verify --dir DIR listener-ca.crt` tells); nothing was written for the nodes");
    }
    let mut pem = String::new();
    for root in &roots {
        pem.push_str(root.trim_end());
        pem.push('\n');
    }
    Ok(pem)
}

fn config(args: ConfigArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let spec = load_spec(&args.spec)?;
    let known: Vec<&str> = spec.environments.iter().map(|e| e.name.as_str()).collect();
    let env = spec
        .environment(&args.env)
        .with_context(|| format!("the spec has no environment {:?}", args.env))
        .with_hint(|| format!("--env is one of: {}", known.join(", ")))?;
    let defaults = HostPaths::defaults(&args.env);
    let paths = HostPaths {
        config_dir: args.config_dir.unwrap_or(defaults.config_dir),
        data_dir: args.data_dir.unwrap_or(defaults.data_dir),
        audit_dir: args.audit_dir.unwrap_or(defaults.audit_dir),
        bao_binary: args.bao,
    };
    let seal = args.seal.seal(&args.env, &paths.config_dir)?;
    let files = warden_node::node_files(env, &args.node, &paths, seal).map_err(|e| {
        let hint = match &e {
            NodeError::UnknownNode { known, .. } if known.is_empty() => format!(
                "declare the environment's servers in {} as [[environments.{}.nodes]] with name, address and cluster_address",
                args.spec.display(),
                args.env
            ),
            NodeError::UnknownNode { known, .. } => {
                format!("--node is one of: {}", known.join(", "))
            }
            _ => "fix the value named above (in the spec or the flag) and run the command again"
                .to_owned(),
        };
        anyhow::Error::new(e).context(crate::hint::Hint(hint))
    })?;
    // Configuration, not key material: an existing directory keeps its mode.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("could not create {}", args.out.display()))
        .hint("--out must be a directory you can write to")?;
    let written = files
        .write(&args.out, &paths)
        .context("could not write the node's files")
        .hint("nothing half-written is left behind; fix the cause and run the command again")?;
    out.emit(&written, || {
        let mut s = format!(
            "node {} of {}: runs as {}, joins {}\n",
            written.node,
            written.environment,
            written.runs_as,
            if written.peers.is_empty() {
                "no peers (a single node)".to_owned()
            } else {
                written.peers.join(", ")
            }
        );
        for f in &written.files {
            s.push_str(&format!(
                "  wrote {} ({}); install as {}\n",
                f.path.display(),
                f.kind,
                f.install_to.display()
            ));
        }
        s.push_str(&format!(
            "raft election: performance_multiplier {} (heartbeat {:?}, election {:?}, leader lease {:?})\n",
            written.raft.multiplier, written.raft.heartbeat, written.raft.election, written.raft.leader_lease
        ));
        s
    })?;
    Ok(ExitCode::SUCCESS)
}
