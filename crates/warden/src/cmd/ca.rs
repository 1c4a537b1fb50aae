//! `warden ca`: the offline root CA.
//!
//! | command                   | what it does                                                 |
//! |---------------------------|--------------------------------------------------------------|
//! | `ca init`                 | create the root key (encrypted) and certificate in `--dir`   |
//! | `ca sign-intermediate`    | sign an intermediate CA from a CSR, record it in the ledger  |
//! | `ca show`                 | root details and the ledger of every signature               |
//! | `ca verify BUNDLE`        | check a PEM chain; exit 3 when it has problems (with `--dir`, also when an intermediate crosses environments) |
//! | `ca backup`               | the CA directory in one archive encrypted to custodians, the passphrase split among them (`backup.rs`) |
//! | `ca restore`              | check an archive (and shares) and write the CA directory back (`backup.rs`) |
//! | `ca status`               | every CA of each environment's chain: age, not-after, rotation due, live leaves (`rotation.rs`) |
//! | `ca rotate-intermediate`  | `begin` (CSR), `activate` (import, trust both, default), `retire` (`rotation.rs`, ADR 0029) |
//! | `ca rollover-root`        | a new root: `begin`, `resign`, `promote` offline; `csr`, `import`, `activate`, `finish` online (`rollover.rs`, ADR 0030) |
//!
//! All the logic is in `warden-pki`; this module reads files and passphrases, picks the clock,
//! prints, and turns library errors into "what failed, why, what next".

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use warden_pki::{
    BundleIsolation, CaDir, CertInfo, ChainProblem, ChainReport, Error as PkiError, KeyAlgorithm,
    LedgerEntry,
};

use crate::exit;
use crate::hint::{Hint, HintExt, WithCode};
use crate::output::Output;
use crate::secret_input;

mod backup;
mod rollover;
mod rotation;

pub(crate) use rotation::render as render_status;

#[derive(Debug, Args)]
pub(crate) struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create the offline root: a key encrypted under a passphrase and a self-signed certificate.
    Init(InitArgs),
    /// Sign an intermediate CA (e.g. OpenBao's PKI mount) from its CSR.
    SignIntermediate(SignArgs),
    /// Show the root and every signature it has made.
    Show(ShowArgs),
    /// Check a PEM bundle as a chain (leaf or intermediate first, root last).
    Verify(VerifyArgs),
    /// Back up the CA directory into one archive encrypted to custodians; optionally split the
    /// passphrase among them.
    Backup(backup::BackupArgs),
    /// Restore the CA directory from a backup (checked against its manifest and ledger first).
    Restore(backup::RestoreArgs),
    /// Every CA of each environment's chain: age, not-after, rotation due by the spec's [ca]
    /// policy, and how many live certificates chain to each (exit 10 when one is due).
    Status(rotation::StatusArgs),
    /// Rotate an environment's PKI intermediate: begin → (offline) sign-intermediate →
    /// activate → retire.
    RotateIntermediate(rotation::RotateArgs),
    /// Replace the offline root: begin → csr → resign → import → activate → promote → finish,
    /// with both roots trusted in between (ADR 0030).
    RolloverRoot(rollover::RolloverArgs),
}

/// Where the CA lives. Shared by every subcommand that needs the directory.
#[derive(Debug, Args)]
struct DirArg {
    /// The offline CA directory (never on a machine OpenBao runs on).
    #[arg(long, env = "WARDEN_CA_DIR", default_value = "warden-ca")]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct InitArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The root's common name.
    #[arg(long, default_value = "Warden Offline Root CA")]
    common_name: String,
    /// Root key algorithm.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::EcdsaP256)]
    algorithm: AlgorithmArg,
    /// Root lifetime (y = 365 days, d, h, m = minutes, s).
    #[arg(long, default_value = "10y", value_parser = parse_validity)]
    validity: Duration,
    /// How many CA levels may sit below the root (1: intermediates that issue leaves only).
    #[arg(long, default_value_t = 1)]
    path_len: u8,
    /// Read the new passphrase from this file (first line) instead of WARDEN_CA_PASSPHRASE or a
    /// prompt.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SignArgs {
    #[command(flatten)]
    dir: DirArg,
    /// The PEM certificate signing request.
    #[arg(long, value_name = "FILE")]
    csr: PathBuf,
    /// The environment the intermediate serves (test, prod, ...); recorded in the ledger.
    #[arg(long = "env", value_name = "NAME")]
    environment: String,
    /// What the intermediate is for; recorded in the ledger.
    #[arg(long, default_value = "vault-pki")]
    profile: String,
    /// Intermediate lifetime; must end before the root's.
    #[arg(long, default_value = "5y", value_parser = parse_validity)]
    validity: Duration,
    /// The intermediate's path length (0: it issues leaves only).
    #[arg(long, default_value_t = 0)]
    path_len: u8,
    /// Only names under this DNS domain may be issued below the intermediate (repeatable): the
    /// environment's domain and every other name it issues. Required once the root signs for
    /// more than one environment, unless --unconstrained-because says why (ADR 0013).
    #[arg(long, value_name = "DOMAIN")]
    permitted_dns: Vec<String>,
    /// Sign without name constraints although the root signs for several environments, and
    /// record this reason in the ledger (every environment's trust will accept what this
    /// intermediate issues).
    #[arg(long, value_name = "REASON", conflicts_with = "permitted_dns")]
    unconstrained_because: Option<String>,
    /// Write the certificate here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Append the root after the intermediate (the bundle OpenBao's `set-signed` needs for a
    /// complete `ca_chain`).
    #[arg(long)]
    bundle: bool,
    /// Read the passphrase from this file (first line) instead of WARDEN_CA_PASSPHRASE or a
    /// prompt.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ShowArgs {
    #[command(flatten)]
    dir: DirArg,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The PEM bundle to check (`-` for stdin), leaf or intermediate first, root last.
    bundle: PathBuf,
    /// A trusted root certificate (PEM) to validate against; a file of several (a root
    /// rollover's two-root bundle) accepts a chain ending in any of them.
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    root: Option<PathBuf>,
    /// Validate against the root of this CA directory, and judge the bundle's intermediates
    /// against the other environments its ledger signs for: one that can issue another
    /// environment's names exits 3 (ADR 0013).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Check as of this time (RFC 3339) instead of now, e.g. to see whether a chain will still
    /// be valid next month.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    #[value(name = "rsa-3072")]
    Rsa3072,
}

impl From<AlgorithmArg> for KeyAlgorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::EcdsaP256 => Self::EcdsaP256,
            AlgorithmArg::EcdsaP384 => Self::EcdsaP384,
            AlgorithmArg::Rsa3072 => Self::Rsa3072,
        }
    }
}

fn parse_validity(s: &str) -> Result<Duration, String> {
    let d = warden_spec::parse_duration(s).map_err(|e| e.to_string())?;
    Duration::try_from(d).map_err(|_| format!("invalid duration `{s}`: number too large"))
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("expected an RFC 3339 time such as 2030-01-31T12:00:00Z: {e}"))
}

pub(crate) async fn run(args: CaArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        CaCommand::Init(a) => init(a, out),
        CaCommand::SignIntermediate(a) => sign_intermediate(a, out),
        CaCommand::Show(a) => show(a, out),
        CaCommand::Verify(a) => verify(a, out),
        CaCommand::Backup(a) => backup::backup(a, out),
        CaCommand::Restore(a) => backup::restore(a, out),
        CaCommand::Status(a) => rotation::status(a, out).await,
        CaCommand::RotateIntermediate(a) => rotation::rotate(a, out).await,
        CaCommand::RolloverRoot(a) => rollover::run(a, out).await,
    }
}

fn init(a: InitArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = a.dir.dir;
    let what = || format!("could not create the CA in {}", dir.display());
    // Refuse before asking for a new passphrase twice.
    CaDir::check_can_init(&dir).map_err(|e| pki_error(e, what(), &dir))?;
    let passphrase = secret_input::ca_passphrase(a.passphrase_file.as_deref(), true)?;
    let opts = warden_pki::RootOptions {
        common_name: a.common_name,
        algorithm: a.algorithm.into(),
        validity: a.validity,
        path_len: a.path_len,
    };
    let ca = CaDir::init(&dir, &opts, &passphrase, OffsetDateTime::now_utc())
        .map_err(|e| pki_error(e, what(), &dir))?;

    #[derive(Serialize)]
    struct Report<'a> {
        dir: &'a Path,
        root: CertInfo,
        algorithm: KeyAlgorithm,
    }
    let root = ca.root_info();
    let report = Report {
        dir: &dir,
        root: root.clone(),
        algorithm: opts.algorithm,
    };
    out.emit(&report, || {
        let mut s = format!("Created the offline root CA in {}\n", dir.display());
        s += &cert_block(&root);
        s += &format!(
            "  key file     {} (encrypted)\n",
            dir.join(warden_pki::ROOT_KEY).display()
        );
        s += "\nKeep the passphrase offline and in more than one place: without it the root can \
              sign nothing.\nNext: make a CSR in OpenBao (pki_int/intermediate/generate/internal) \
              and sign it with\n";
        s += &format!(
            "  warden ca sign-intermediate --dir {} --env NAME --csr FILE --out FILE\n",
            dir.display()
        );
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

fn sign_intermediate(a: SignArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = a.dir.dir;
    let what = || {
        format!(
            "could not sign the intermediate with the CA in {}",
            dir.display()
        )
    };
    let csr = crate::input::read_named_text(&a.csr, "the CSR", crate::input::TEXT_FILE_LIMIT)?;
    let ca = CaDir::open(&dir).map_err(|e| pki_error(e, what(), &dir))?;
    if let Some(path) = &a.out {
        check_out_path(path, "--out")?;
    }
    let req = warden_pki::IntermediateRequest {
        environment: a.environment,
        profile: a.profile,
        validity: a.validity,
        path_len: a.path_len,
        permitted_dns: a.permitted_dns,
        unconstrained_because: a.unconstrained_because,
    };
    let passphrase = secret_input::ca_passphrase(a.passphrase_file.as_deref(), false)?;
    let signed = ca
        .sign_intermediate(&csr, &req, &passphrase, OffsetDateTime::now_utc())
        .map_err(|e| pki_error(e, what(), &dir))?;

    let mut pem = signed.cert_pem.clone();
    if a.bundle {
        pem.push_str(ca.root_pem());
    }
    let cert = warden_pki::parse_pem_bundle(&signed.cert_pem)
        .context("could not re-read the signed certificate")?
        .remove(0);

    #[derive(Serialize)]
    struct Report<'a> {
        certificate: &'a CertInfo,
        ledger_entry: &'a LedgerEntry,
        #[serde(skip_serializing_if = "Option::is_none")]
        out: Option<&'a Path>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pem: Option<&'a str>,
    }
    let report = Report {
        certificate: &cert,
        ledger_entry: &signed.entry,
        out: a.out.as_deref(),
        pem: a.out.is_none().then_some(pem.as_str()),
    };
    let summary = || {
        let mut s = format!(
            "Signed {} for environment {:?} (profile {}), recorded in {}\n",
            cert.subject,
            signed.entry.environment,
            signed.entry.profile,
            dir.join(warden_pki::LEDGER).display()
        );
        s += &cert_block(&cert);
        s
    };
    match &a.out {
        Some(path) => {
            warden_files::write_atomic(path, pem.as_bytes(), warden_files::Mode::Public)
                .with_context(|| {
                    format!(
                        "the intermediate was signed and recorded in the ledger (serial {}), but could not be written to {}",
                        signed.entry.serial,
                        path.display()
                    )
                })
                .hint("fix the output path and sign the CSR again; the ledger will then show two signatures")?;
            out.emit(&report, || {
                let mut s = summary();
                s += &format!("  written to   {}\n", path.display());
                s += "\nNext: import it into OpenBao (pki_int/intermediate/set-signed) and check the chain with\n";
                s += &format!("  warden ca verify {} --dir {}\n", path.display(), dir.display());
                s
            })?;
        }
        None => {
            // The PEM is the output; the summary goes to stderr so `> file` captures only PEM.
            out.progress(summary().trim_end());
            out.emit(&report, || pem.clone())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(a: ShowArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = a.dir.dir;
    let what = || format!("could not read the CA in {}", dir.display());
    let ca = CaDir::open(&dir).map_err(|e| pki_error(e, what(), &dir))?;
    let ledger = ca.ledger().map_err(|e| pki_error(e, what(), &dir))?;
    let root = ca.root_info();
    let now = OffsetDateTime::now_utc();

    #[derive(Serialize)]
    struct Report<'a> {
        dir: &'a Path,
        metadata: &'a warden_pki::CaMetadata,
        root: &'a CertInfo,
        ledger: &'a [LedgerEntry],
    }
    let report = Report {
        dir: &dir,
        metadata: ca.metadata(),
        root: &root,
        ledger: &ledger,
    };
    out.emit(&report, || {
        let mut s = format!("Offline root CA in {}\n", dir.display());
        s += &cert_block(&root);
        s += &format!("  status       {}\n", validity_status(&root, now));
        s += &format!("\nLedger ({} signature(s)):\n", ledger.len());
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::NOTHING);
        t.set_header(vec![
            "SIGNED AT",
            "ENVIRONMENT",
            "PROFILE",
            "SUBJECT",
            "NOT AFTER",
            "SERIAL",
            "SHA-256",
        ]);
        for e in &ledger {
            t.add_row(vec![
                rfc3339(e.signed_at),
                e.environment.clone(),
                e.profile.clone(),
                e.subject.clone(),
                rfc3339(e.not_after),
                short(&e.serial),
                short(&e.sha256),
            ]);
        }
        s += &t.to_string();
        for e in ledger.iter().filter(|e| e.unconstrained_because.is_some()) {
            s += &format!(
                "\nunconstrained by decision: {} {} ({}): {}",
                e.environment,
                e.profile,
                short(&e.serial),
                e.unconstrained_because.as_deref().unwrap_or_default()
            );
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

fn verify(a: VerifyArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let bundle = read_input(&a.bundle)?;
    let open_ca = |dir: &Path| {
        CaDir::open(dir).map_err(|e| {
            pki_error(
                e,
                format!("could not read the CA in {}", dir.display()),
                dir,
            )
        })
    };
    let ca = a.dir.as_deref().map(open_ca).transpose()?;
    // Every root the chain may end in: each certificate of --root, or the CA's root and, during
    // a rollover, its next root (ADR 0030).
    let roots: Vec<String> = match (&a.root, &ca) {
        (Some(path), _) => warden_pki::pem_blocks(&crate::input::read_named_text(
            path,
            "the root",
            crate::input::TEXT_FILE_LIMIT,
        )?)
        .into_iter()
        .map(str::to_owned)
        .collect(),
        (None, Some(ca)) => ca.trusted_roots_pem().map_err(|e| {
            pki_error(
                e,
                "could not read the CA's roots".to_owned(),
                a.dir.as_deref().unwrap_or(Path::new(".")),
            )
        })?,
        (None, None) => Vec::new(),
    };
    let now = a.at.unwrap_or_else(OffsetDateTime::now_utc);
    let report = warden_pki::verify_chain_any(&bundle, &roots, now)
        .with_context(|| format!("could not read {} as PEM certificates", a.bundle.display()))
        .hint("pass a file of PEM `-----BEGIN CERTIFICATE-----` blocks, leaf first, root last")?;
    // With the CA directory, the ledger says which environments share this root: an
    // intermediate that can issue another environment's names is a problem (ADR 0013).
    let isolation = match (&ca, &a.dir) {
        (Some(ca), Some(dir)) => Some(ca.isolation_of(&report.certs).map_err(|e| {
            pki_error(
                e,
                format!("could not read the ledger in {}", dir.display()),
                dir,
            )
        })?),
        _ => None,
    };

    #[derive(Serialize)]
    struct Report<'a> {
        #[serde(with = "time::serde::rfc3339")]
        checked_at: OffsetDateTime,
        #[serde(flatten)]
        chain: &'a ChainReport,
        #[serde(skip_serializing_if = "Option::is_none")]
        isolation: Option<&'a BundleIsolation>,
    }
    out.emit(
        &Report {
            checked_at: now,
            chain: &report,
            isolation: isolation.as_ref(),
        },
        || {
            let mut s = chain_text(&report, now);
            if let Some(i) = &isolation {
                s += &isolation_text(i);
            }
            s
        },
    )?;
    let isolated = isolation.as_ref().is_none_or(|i| !i.blocking());
    if report.valid && !isolated {
        let n = isolation
            .as_ref()
            .map_or(0, |i| i.findings.iter().filter(|f| f.blocking()).count());
        return Err(anyhow::anyhow!(
            "the chain in {} is valid, but its intermediate crosses the environment boundary: {n} finding(s)",
            a.bundle.display()
        ))
        .context(WithCode(exit::CHECK_FAILED))
        .hint(RESIGN_HINT);
    }
    if report.valid {
        return Ok(ExitCode::SUCCESS);
    }
    let err = anyhow::anyhow!(
        "the chain in {} is not valid: {} problem(s)",
        a.bundle.display(),
        report.problems.len()
    )
    .context(WithCode(exit::CHECK_FAILED));
    Err(if missing_root(&report) {
        err.context(Hint(
            "pass the root with --root FILE or --dir CA_DIR, or append it to the bundle".to_owned(),
        ))
    } else {
        err
    })
}

/// What to do about an intermediate that crosses the environment boundary (ADR 0013).
pub(crate) const RESIGN_HINT: &str = "re-sign the environment's PKI intermediate with name constraints: generate a new CSR in OpenBao (pki_int/intermediate/generate/internal), `warden ca sign-intermediate --env ENV --permitted-dns DOMAIN ... --bundle`, import it with set-signed and make it the default issuer (docs/ca.md, \"Environment isolation\")";

fn isolation_text(i: &BundleIsolation) -> String {
    let mut s = String::new();
    if i.judged == 0 {
        s +=
            "isolation: no CA certificate of the bundle is in this root's ledger; nothing judged\n";
    } else if i.findings.is_empty() && i.accepted.is_empty() {
        s += "isolated: no other environment's names can be issued below this chain\n";
    }
    for f in &i.findings {
        let tag = if f.blocking() { "isolation" } else { "note" };
        s += &format!("{tag}: {f}\n");
    }
    for u in &i.accepted {
        s += &format!(
            "note: {}'s {} intermediate is unconstrained by decision: {}\n",
            u.env, u.profile, u.reason
        );
    }
    s
}

fn missing_root(report: &ChainReport) -> bool {
    report.problems.iter().any(|p| {
        matches!(
            p,
            ChainProblem::MissingRoot {
                given_root: None,
                ..
            }
        )
    })
}

fn chain_text(report: &ChainReport, now: OffsetDateTime) -> String {
    let mut s = format!(
        "Chain of {} certificate(s), checked at {}\n",
        report.certs.len(),
        rfc3339(now)
    );
    for (i, c) in report.certs.iter().enumerate() {
        s += &format!("\n#{} {}\n", i + 1, c.subject);
        s += &cert_details(c);
    }
    if let Some(anchor) = &report.trust_anchor {
        s += &format!("\ntrusted root {}\n", anchor.subject);
        s += &cert_details(anchor);
    }
    if report.valid {
        s += "\nvalid: every link verifies, every certificate is in date and within its issuer's limits\n";
    } else {
        s += &format!("\n{} problem(s):\n", report.problems.len());
        for p in &report.problems {
            s += &format!("  - {p}\n");
        }
    }
    s
}

fn cert_block(c: &CertInfo) -> String {
    format!("  subject      {}\n{}", c.subject, cert_details(c))
}

fn cert_details(c: &CertInfo) -> String {
    let mut s = String::new();
    if !c.self_signed {
        s += &format!("  issuer       {}\n", c.issuer);
    }
    let kind = match (c.is_ca, c.path_len) {
        (true, Some(n)) => format!("CA, path length {n}"),
        (true, None) => "CA, no path length limit".to_owned(),
        (false, _) => "end entity".to_owned(),
    };
    s += &format!(
        "  kind         {kind}{}\n",
        if c.self_signed { ", self-signed" } else { "" }
    );
    s += &format!("  key          {}\n", c.key_algorithm);
    s += &format!(
        "  valid        {} to {}\n",
        rfc3339(c.not_before),
        rfc3339(c.not_after)
    );
    if !c.subject_alt_names.is_empty() {
        s += &format!("  names        {}\n", c.subject_alt_names.join(", "));
    }
    if !c.permitted_dns.is_empty() {
        s += &format!("  permitted    {}\n", c.permitted_dns.join(", "));
    }
    s += &format!("  serial       {}\n", c.serial);
    s += &format!("  sha256       {}\n", c.sha256);
    s
}

fn validity_status(c: &CertInfo, now: OffsetDateTime) -> String {
    if now > c.not_after {
        format!("EXPIRED at {}", rfc3339(c.not_after))
    } else if now < c.not_before {
        format!("not valid before {}", rfc3339(c.not_before))
    } else {
        let left = c.not_after - now;
        format!("valid, {} day(s) left", left.whole_days())
    }
}

/// RFC 3339 to the second: what people read (files keep the full precision).
fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn short(hex: &str) -> String {
    if hex.len() > 16 {
        format!("{}…", &hex[..16])
    } else {
        hex.to_owned()
    }
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    let text = if path == Path::new("-") {
        crate::input::read_stdin_text("the input", crate::input::TEXT_FILE_LIMIT)?
    } else {
        crate::input::read_named_text(path, "the input", crate::input::TEXT_FILE_LIMIT)?
    };
    Ok(text.to_string())
}

/// Fails before the passphrase prompt and before the ledger is written if `flag`'s file
/// cannot be written: a signature whose certificate is lost still counts in the ledger. A
/// symlink (`/dev/stdout` is one), a FIFO or a device is refused here, not after the signature.
fn check_out_path(path: &Path, flag: &str) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(anyhow::anyhow!(
            "the directory of {flag} {} does not exist",
            path.display()
        ))
        .hint(format!(
            "create it first, or choose another {flag}; nothing was signed or changed"
        ));
    }
    if path.is_dir() {
        return Err(anyhow::anyhow!("{flag} {} is a directory", path.display()))
            .hint("name a file; nothing was signed or changed");
    }
    warden_files::check_write_target(path)
        .with_context(|| format!("{flag} {} cannot be written", path.display()))
        .hint("name a new or regular file; nothing was signed or changed")
}

/// Refuses an output path before anything is signed or generated: a new file in an existing
/// directory.
fn check_new_file(path: &Path, flag: &str) -> anyhow::Result<()> {
    // `symlink_metadata`, not `exists`: a dangling symlink is an existing entry too.
    if path.symlink_metadata().is_ok() {
        return Err(anyhow::anyhow!("{flag} {} already exists", path.display()))
            .hint("name a new file; nothing was signed or changed");
    }
    check_out_path(path, flag)
}

/// Wraps a library error with what failed and, where there is one, what to do next.
fn pki_error(err: PkiError, what: String, dir: &Path) -> anyhow::Error {
    let d = dir.display();
    let unchanged = "the CA directory was not changed";
    let hint = match &err {
        PkiError::WrongPassphrase { .. } => Some(format!("check the passphrase; {unchanged}")),
        PkiError::EmptyPassphrase => Some("choose a non-empty passphrase".to_owned()),
        PkiError::BadCsr { .. } => Some(format!(
            "generate the CSR again (e.g. OpenBao's pki_int/intermediate/generate/internal) and pass it unedited; {unchanged}"
        )),
        PkiError::RootExpired { .. } => Some(format!(
            "this root can sign nothing more: create a new one with `warden ca init --dir NEW_DIR` and distribute it; {unchanged}"
        )),
        PkiError::RootNotYetValid { .. } => {
            Some(format!("check this machine's clock; {unchanged}"))
        }
        PkiError::IntermediateOutlivesRoot { root_not_after, .. } => Some(format!(
            "ask for a shorter --validity (ending before {}), or create a new root; {unchanged}",
            rfc3339(*root_not_after)
        )),
        PkiError::PathLenTooLarge { root_path_len, .. } => Some(format!(
            "use --path-len {} or lower; {unchanged}",
            root_path_len.saturating_sub(1)
        )),
        PkiError::InvalidField { .. } => Some(format!("fix the argument; {unchanged}")),
        PkiError::UnconstrainedIntermediate { environment, .. } => Some(format!(
            "constrain it to {environment}'s names with --permitted-dns DOMAIN (repeatable: its domain, and every domain certificate it issues), or sign it anyway with --unconstrained-because \"REASON\", recorded in the ledger; {unchanged}"
        )),
        PkiError::OverreachingIntermediate { environment, .. } => Some(format!(
            "constrain it to {environment}'s own names with --permitted-dns DOMAIN (its domain, and every domain certificate it issues), never a parent of another environment's domain; {unchanged}"
        )),
        PkiError::AlreadyInitialized { .. } => Some(format!(
            "see it with `warden ca show --dir {d}`, or choose another --dir"
        )),
        PkiError::DirNotEmpty { .. } => {
            Some("choose a new or empty directory for --dir".to_owned())
        }
        PkiError::NotACaDir { .. } => Some(format!(
            "pass --dir with the CA directory, or create one with `warden ca init --dir {d}`"
        )),
        // A promote interrupted between its renames leaves root.crt, root.key.p8 and ca.json
        // disagreeing: running promote again completes it, restoring would throw away a next
        // root already shipped in trust bundles and imported online.
        PkiError::CorruptCaFile { .. } | PkiError::Ledger { .. }
            if warden_pki::rollover_state(dir) == Some(warden_pki::RolloverState::Finishing) =>
        {
            Some(format!(
                "a root rollover's promote was interrupted half-way: run `warden ca rollover-root promote --dir {d}` again to complete it; do not restore a backup over it"
            ))
        }
        PkiError::CorruptCaFile { .. } | PkiError::Ledger { .. } => Some(
            "restore the CA directory from its offline backup (`warden ca restore`, docs/ca.md)"
                .to_owned(),
        ),
        PkiError::PromoteBeforeResigned { .. } => Some(format!(
            "re-sign each of them first (`warden ca rollover-root csr` online, then `resign --profile PROFILE` here), or promote with --force \"REASON\" to leave them to a new intermediate later (recorded in rollover.json); {unchanged}"
        )),
        PkiError::RolloverOutOfOrder { step, .. } => Some(match *step {
            "begin" => format!(
                "a rollover is under way: finish it (`warden ca rollover-root promote --dir {d}`) before beginning another; {unchanged}"
            ),
            _ => format!(
                "begin one first: `warden ca rollover-root begin --dir {d} --common-name NAME`; {unchanged}"
            ),
        }),
        PkiError::NothingToResign { environment, .. } => Some(format!(
            "check --env and --profile against `warden ca show --dir {d}`; an environment the root never signed for gets a new intermediate with `ca sign-intermediate --env {environment}` after `promote`; {unchanged}"
        )),
        PkiError::Write(e) if e.is_disk_full() => Some("free some disk space".to_owned()),
        PkiError::Write(e) if e.is_refusal() => Some(format!(
            "give a directory of yours that no one else can write to, and no symlink (a new --dir, or fix it with `chown`/`chmod go-w`); {unchanged}"
        )),
        _ => None,
    };
    let err = anyhow::Error::new(err).context(what);
    match hint {
        Some(h) => err.context(Hint(h)),
        None => err,
    }
}

/// How far this host's clock may be from the server's before the operator is told.
const SKEW_WARNING: Duration = Duration::seconds(60);

/// The server's time now. The online steps of a rotation or a root rollover record and judge
/// their times (begun, activated, the end of the overlap, whether a certificate is valid yet)
/// by OpenBao's clock, never the operator's: two operators on hosts whose clocks disagree still
/// agree on when the overlap ends, a host whose clock runs ahead cannot retire an issuer early,
/// and one that runs behind does not refuse a certificate the offline host has just signed.
pub(super) async fn server_clock(
    client: &warden_bao::Client,
    out: &Output,
) -> anyhow::Result<OffsetDateTime> {
    client
        .seal_status()
        .await
        .context("could not read the server's clock (sys/seal-status)")?;
    let server = OffsetDateTime::from(client.server_now());
    let skew = server - OffsetDateTime::now_utc();
    if skew.abs() > SKEW_WARNING {
        out.warn(format!(
            "this host's clock is {} s {} the server's; Warden judges by the server's clock (fix this host's time sync)",
            skew.abs().whole_seconds(),
            if skew.is_negative() { "ahead of" } else { "behind" }
        ));
    }
    Ok(server)
}
