//! What `secret`, `transit` and `ci` commands share: one environment of the spec, a client for
//! it, and whose token that client carries (`--token-file`, `WARDEN_TOKEN_FILE`).
//!
//! The client is the one [`crate::context`] builds (with `--lab`: the lab's operator
//! certificate, logging in as the lab operator; otherwise the spec's address and `VAULT_*`/`BAO_*`). With
//! `--token-file` the client is a workload's instead: it presents the runner's transport
//! certificate (`--transport DIR`, ADR 0010) and carries the token in that file, so a CI step
//! that ran `warden ci login` acts with exactly the pipeline's policy. The operator's
//! certificate is never used as its transport.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::SecretString;
use warden_bao::Client;
use warden_spec::{Environment, Identity, IdentityKind, Spec};

use crate::context::{OneEnv, Resolved, Target};
use crate::hint::HintExt;
use crate::output::Output;

/// `--spec/--lab/--env` plus the token to act with.
#[derive(Debug, clap::Args)]
pub(crate) struct Access {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Act with the token in FILE (for example the one `warden ci login` wrote) instead of the
    /// lab's operator token or VAULT_TOKEN.
    #[arg(long, value_name = "FILE", env = "WARDEN_TOKEN_FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// With --token-file: the transport certificate directory (`cert.pem`, `key.pem`) of the
    /// runner or host this runs on (`warden transport issue`). Required with --lab.
    #[arg(long, value_name = "DIR", env = "WARDEN_TRANSPORT_DIR")]
    pub(crate) transport: Option<PathBuf>,
}

/// One environment, resolved, with a client for it.
pub(crate) struct Session {
    pub(crate) resolved: Resolved,
    pub(crate) env: Environment,
    pub(crate) client: Client,
}

impl Access {
    /// Loads the spec, picks the one environment and builds the client. Contacts nothing.
    pub(crate) fn open(&self, command: &str, out: &Output) -> anyhow::Result<Session> {
        let resolved = self.target.resolve()?;
        let env = resolved.one_env(command, OneEnv::NamedOrOnly)?.clone();
        let client = match &self.token_file {
            Some(path) => {
                let client = resolved.workload_client(&env, self.transport.as_deref())?;
                client.set_token(read_token_file(path, out)?);
                client
            }
            None => resolved.client(&env)?,
        };
        if !client.can_authenticate() {
            return Err(anyhow::anyhow!(
                "{}: no token to act with",
                env.name.as_str()
            ))
            .hint("pass --token-file FILE (e.g. from `warden ci login`), set VAULT_TOKEN, or use --lab DIR");
        }
        Ok(Session {
            resolved,
            env,
            client,
        })
    }
}

impl Session {
    pub(crate) fn spec(&self) -> &Spec {
        &self.resolved.spec
    }

    pub(crate) fn env_name(&self) -> &str {
        self.env.name.as_str()
    }

    /// Who the token is (its display name, e.g. `root` or `jwt-repo:org/app:ref:…`), for the
    /// change records; `None` when the token may not look itself up.
    pub(crate) async fn whoami(&self) -> Option<String> {
        self.client
            .token_lookup_self()
            .await
            .ok()
            .map(|t| t.display_name)
            .filter(|n| !n.is_empty())
    }

    /// The app (or container) called `name`, which must live in this environment.
    pub(crate) fn owner(&self, name: &str, kinds: &[IdentityKind]) -> anyhow::Result<&Identity> {
        let spec = self.spec();
        let env = self.env_name();
        let candidates: Vec<&str> = spec
            .identities
            .iter()
            .filter(|i| kinds.contains(&i.kind))
            .map(|i| i.name.as_str())
            .collect();
        let Some(id) = spec.identity(name) else {
            let err = anyhow::anyhow!("the spec has no app `{name}`");
            return match warden_spec::suggest(name, candidates.iter().copied()) {
                Some(s) => Err(err).with_hint(|| format!("did you mean `{s}`?")),
                None => Err(err).with_hint(|| format!("it has: {}", candidates.join(", "))),
            };
        };
        if !kinds.contains(&id.kind) {
            let hint = match &id.pipeline {
                Some(p) => format!(
                    "`{name}` is a pipeline; it acts on app `{}`'s secrets: name the app",
                    p.app
                ),
                None => format!("name one of: {}", candidates.join(", ")),
            };
            return Err(anyhow::anyhow!(
                "`{name}` is a {}, which has none of these",
                id.kind.as_str()
            ))
            .hint(hint);
        }
        if !id.in_env(env) {
            return Err(anyhow::anyhow!(
                "`{name}` does not live in environment `{env}`"
            ))
            .with_hint(|| {
                let envs: Vec<&str> = id.environments.iter().map(|e| e.as_str()).collect();
                format!("its environments are: {}", envs.join(", "))
            });
        }
        Ok(id)
    }
}

/// The largest token file read: a token is under 200 bytes.
const TOKEN_FILE_LIMIT: u64 = 64 * 1024;

/// Reads a token file: the first line, trimmed. Warns when others may read it.
pub(crate) fn read_token_file(path: &Path, out: &Output) -> anyhow::Result<SecretString> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("could not read the token file {}", path.display()))
        .hint("`warden ci login` writes one (--token-out FILE)")?;
    if meta.permissions().mode() & 0o077 != 0 {
        out.warn(format!(
            "{} can be read by other users (mode {:o}); a token file should be 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    // Bounded and never blocking: a FIFO or /dev/zero given as the token file is refused
    // instead of hanging the command or filling its memory.
    let bytes = warden_files::read_regular(path, TOKEN_FILE_LIMIT)
        .with_context(|| format!("could not read the token file {}", path.display()))?;
    let raw = std::str::from_utf8(&bytes)
        .ok()
        .with_context(|| format!("the token file {} is not text", path.display()))?;
    let token = raw.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        anyhow::bail!("the token file {} is empty", path.display());
    }
    Ok(SecretString::from(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    /// Red-team regression: `--root-token-file` (and every token file) pointing at a FIFO hung
    /// the command, and at /dev/zero filled its memory; both are refused at once now.
    #[test]
    fn a_token_file_that_is_a_fifo_or_dev_zero_is_refused_at_once() {
        let out = Output::new(crate::output::Format::Text);
        let dir = tempfile::tempdir().expect("tmp");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        assert!(read_token_file(&fifo, &out).is_err());
        assert!(read_token_file(Path::new("/dev/zero"), &out).is_err());
        let file = dir.path().join("token");
        std::fs::write(&file, "s.token\n").expect("write");
        let token = read_token_file(&file, &out).expect("a plain file");
        assert_eq!(token.expose_secret(), "s.token");
    }
}
