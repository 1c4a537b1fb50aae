//! The crate's one error type. Each variant says *when* it happens and carries what an operator
//! needs to act on it (identity, environment, path, OpenBao's answer); advice on what to do next
//! is the CLI's job.

use std::path::PathBuf;

/// Everything that can go wrong enrolling an identity on a host.
///
/// Every error before publication — which includes a failed [`Error::Login`] or
/// [`Error::UnexpectedPolicies`] with a new certificate — leaves the host's files untouched; only
/// [`Error::Write`], [`Error::AgentConfig`] and a failed chown ([`Error::Io`]) happen while
/// files are being written. A refusal of the identity itself ([`Error::UnknownIdentity`],
/// [`Error::NotEnrollable`], [`Error::NotInEnvironment`]) comes before anything is contacted or
/// created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec has no identity with this name.
    #[error("the spec has no identity `{name}`{}", match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    })]
    UnknownIdentity {
        /// The name asked for.
        name: String,
        /// The closest identity name in the spec, if one is close.
        suggestion: Option<String>,
    },

    /// The identity exists but does not authenticate with a host certificate: containers use
    /// AppRole, CI pipelines use JWT. Only apps and proxies are enrolled on a host.
    #[error(
        "`{name}` is a {kind}: {kind}s authenticate with {auth}, not with a host certificate; only apps and proxies are enrolled"
    )]
    NotEnrollable {
        /// The identity.
        name: String,
        /// `container` or `pipeline`.
        kind: &'static str,
        /// How that kind authenticates instead.
        auth: &'static str,
    },

    /// The identity does not live in the requested environment.
    #[error("`{name}` does not live in `{env}` (it is in: {})", environments.join(", "))]
    NotInEnvironment {
        /// The identity.
        name: String,
        /// The environment asked for.
        env: String,
        /// The environments the spec gives it.
        environments: Vec<String>,
    },

    /// The trust anchor handed in is not a PEM certificate bundle.
    #[error("the trust anchor is not a usable PEM certificate bundle: {source}")]
    BadTrustAnchor {
        /// Why it could not be parsed.
        #[source]
        source: Box<warden_pki::Error>,
    },

    /// A Unix user name (from `--user` or the identity) that `useradd` would refuse or that
    /// could be mistaken for an option.
    #[error("`{name}` is not a usable Unix user name: {reason}")]
    InvalidUserName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Looking the user up in the system's user database failed (not "not found": an NSS error).
    #[error("could not look up Unix user `{user}`: {source}")]
    UserLookup {
        /// The user.
        user: String,
        /// The error from getpwnam.
        #[source]
        source: nix::Error,
    },

    /// `useradd` could not be started (not installed at the expected path, not permitted).
    #[error("could not run {program} to create Unix user `{user}`: {source}")]
    UserAddSpawn {
        /// The program.
        program: &'static str,
        /// The user.
        user: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },

    /// `useradd` ran and failed; `stderr` is its own explanation.
    #[error("{program} failed to create Unix user `{user}` (exit status {status:?}): {stderr}")]
    UserAdd {
        /// The program.
        program: &'static str,
        /// The user.
        user: String,
        /// Its exit status (`None` when killed by a signal).
        status: Option<i32>,
        /// The first part of its stderr.
        stderr: String,
    },

    /// `useradd` reported success but the user still cannot be found.
    #[error("Unix user `{user}` was created but cannot be looked up")]
    UserVanished {
        /// The user.
        user: String,
    },

    /// Generating the key or building the CSR failed (the crypto library refused).
    #[error("could not {step}: {source}")]
    Key {
        /// "generate the key", "build the CSR".
        step: &'static str,
        /// The underlying error.
        #[source]
        source: Box<warden_pki::Error>,
    },

    /// Reading the environment's current issuing CA (to judge an existing certificate) failed.
    #[error("could not read the issuing CA at {path}: {source}")]
    ReadIssuer {
        /// The request path.
        path: String,
        /// OpenBao's answer.
        #[source]
        source: Box<warden_bao::Error>,
    },

    /// The PKI role that signs this identity's certificate does not exist (OpenBao answered
    /// "unknown role", or the PKI mount has no such route): the environment has not been
    /// provisioned for this identity.
    #[error("{env}: the PKI role at {path} does not exist{}", fmt_errors(errors))]
    RoleMissing {
        /// The environment.
        env: String,
        /// `<pki mount>/sign/<identity role>`.
        path: String,
        /// OpenBao's `errors[]`.
        errors: Vec<String>,
    },

    /// OpenBao refused or failed to sign the CSR for another reason (permission, CN not
    /// allowed by the role, server error, unreachable...).
    #[error("{env}: signing the CSR at {path} failed: {source}")]
    Sign {
        /// The environment.
        env: String,
        /// The request path.
        path: String,
        /// OpenBao's answer.
        #[source]
        source: Box<warden_bao::Error>,
    },

    /// OpenBao answered the sign call with something that is not the certificate we asked for
    /// (a field missing, another common name, a certificate that does not match our key).
    #[error("{path} returned an unusable certificate: {reason}")]
    BadIssuedCertificate {
        /// The request path.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// The certificate and key could not be turned into a TLS client identity, or the
    /// verification client could not be built.
    #[error("could not use {what} as a TLS client identity: {source}")]
    ClientIdentity {
        /// Which certificate ("the new certificate", "the existing certificate in ...").
        what: String,
        /// Why.
        #[source]
        source: Box<warden_bao::Error>,
    },

    /// Logging in with the identity's certificate failed: the TLS handshake was refused (the
    /// listener does not trust the issuing CA) or the cert-auth role refused it.
    #[error(
        "{env}: logging in with the identity certificate (auth/{mount}/login, role {role}) failed: {source}"
    )]
    Login {
        /// The environment.
        env: String,
        /// The cert auth mount.
        mount: String,
        /// The cert auth role.
        role: String,
        /// OpenBao's answer.
        #[source]
        source: Box<warden_bao::Error>,
    },

    /// The login worked but the token's policies are not exactly the identity's policy: the
    /// cert-auth role grants more (or other) than the spec says.
    #[error("{env}: role {role} gave policies [{}], expected exactly [{}]", got.join(", "), expected.join(", "))]
    UnexpectedPolicies {
        /// The environment.
        env: String,
        /// The cert auth role.
        role: String,
        /// The spec's policy.
        expected: Vec<String>,
        /// What the token carries.
        got: Vec<String>,
    },

    /// Reading a file of the layout failed (other than "it does not exist").
    #[error("could not {step} {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// "read", "chown", "list"...
        step: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Creating a directory or writing a file of the layout failed.
    #[error(transparent)]
    Write(#[from] warden_files::Error),

    /// `agent.toml` could not be encoded or decoded.
    #[error("agent configuration {path}: {reason}")]
    AgentConfig {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn fmt_errors(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", errors.join("; "))
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
