//! Resolving where an environment lives: from a lab (`--lab DIR`: its addresses and operator
//! certificate, which logs in as the lab's operator), else from the spec's per-environment
//! settings and the standard `VAULT_*`/`BAO_*` variables (a client certificate without a token
//! logs in as the operator it was issued to).

use std::path::{Path, PathBuf};

use anyhow::Context;
use warden_bao::{Client, ClientConfig};
use warden_lab::Lab;
use warden_spec::{Environment, Identity, Spec};

use crate::hint::HintExt;

/// `--spec`, `--lab`, `--env`: shared by plan, apply, lint and identity commands.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The platform spec.
    #[arg(long, env = "WARDEN_SPEC", default_value = "warden.toml")]
    pub(crate) spec: PathBuf,
    /// Use a lab's environments and operator credentials.
    #[arg(long, env = "WARDEN_LAB_DIR")]
    pub(crate) lab: Option<PathBuf>,
    /// Only these environments (repeat or comma-separate); default: all in the spec.
    #[arg(long = "env", value_delimiter = ',')]
    pub(crate) envs: Vec<String>,
}

/// A loaded spec with the environments selected.
pub(crate) struct Resolved {
    pub(crate) spec: Spec,
    pub(crate) spec_dir: PathBuf,
    pub(crate) lab: Option<Lab>,
    pub(crate) envs: Vec<Environment>,
    /// The `--env` names as given (empty: none, so `envs` is every environment).
    pub(crate) asked: Vec<String>,
}

/// How a command that acts in exactly one environment picks it ([`Resolved::one_env`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum OneEnv<'a> {
    /// The environment named with `--env`, or the spec's only one.
    NamedOrOnly,
    /// Named with `--env` even when the spec has only one: a host belongs to one environment,
    /// and enrolling it in the wrong one is not something to guess.
    Named,
    /// The only chosen environment this identity lives in.
    WhereLives(&'a Identity),
}

impl Target {
    /// Loads and validates the spec (nothing is contacted) and picks the environments.
    pub(crate) fn resolve(&self) -> anyhow::Result<Resolved> {
        let mut spec = warden_spec::load(&self.spec).map_err(|e| match e {
            warden_spec::LoadError::Invalid(d) => anyhow::anyhow!("{d}").context(format!(
                "{} is not a valid spec (no server was contacted)",
                self.spec.display()
            )),
            other => anyhow::Error::new(other),
        })?;
        let lab =
            match &self.lab {
                Some(dir) => Some(Lab::open(dir).with_hint(|| {
                    format!("start it with `warden lab up --dir {}`", dir.display())
                })?),
                None => None,
            };
        // A database on `lab-postgres` is the lab's own PostgreSQL: its address and the
        // engine's first password file come from the lab.
        if let Some(lab) = &lab {
            lab.bind_postgres(&mut spec);
        }
        let mut envs = Vec::new();
        if self.envs.is_empty() {
            envs = spec.environments.clone();
        } else {
            for name in &self.envs {
                let env = spec.environment(name).cloned().with_context(|| {
                    let known: Vec<&str> =
                        spec.environments.iter().map(|e| e.name.as_str()).collect();
                    match warden_spec::suggest(name, known.iter().copied()) {
                        Some(s) => {
                            format!("the spec has no environment `{name}`; did you mean `{s}`?")
                        }
                        None => format!(
                            "the spec has no environment `{name}` (it has {})",
                            known.join(", ")
                        ),
                    }
                })?;
                envs.push(env);
            }
        }
        let spec_dir = self
            .spec
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(Resolved {
            spec,
            spec_dir,
            lab,
            envs,
            asked: self.envs.clone(),
        })
    }
}

impl Target {
    /// Loads the spec, picks the one environment `command` acts in (named, or the spec's
    /// only one) and builds an operator client for it. Contacts nothing.
    pub(crate) fn one_env_client(
        &self,
        command: &str,
    ) -> anyhow::Result<(Resolved, Environment, Client)> {
        let resolved = self.resolve()?;
        let env = resolved.one_env(command, OneEnv::NamedOrOnly)?.clone();
        let client = resolved.client(&env)?;
        Ok((resolved, env, client))
    }
}

impl Resolved {
    /// A spec already parsed (for example the lab's built-in one) against a lab, limited to
    /// the environments both have, its lab databases bound to the lab's PostgreSQL.
    pub(crate) fn for_lab(mut spec: Spec, spec_dir: PathBuf, lab: Lab) -> Self {
        lab.bind_postgres(&mut spec);
        let envs = spec
            .environments
            .iter()
            .filter(|e| lab.env(e.name.as_str()).is_ok())
            .cloned()
            .collect();
        Self {
            spec,
            spec_dir,
            lab: Some(lab),
            envs,
            asked: Vec::new(),
        }
    }

    /// The one environment `command` acts in, chosen by `rule`. Every command that works on
    /// a single environment picks it here, so they all refuse the same way.
    pub(crate) fn one_env(&self, command: &str, rule: OneEnv<'_>) -> anyhow::Result<&Environment> {
        let known = || {
            let names: Vec<&str> = self
                .spec
                .environments
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            names.join(", ")
        };
        if let OneEnv::WhereLives(id) = rule {
            let here: Vec<&Environment> = self
                .envs
                .iter()
                .filter(|e| id.in_env(e.name.as_str()))
                .collect();
            return match here.as_slice() {
                [one] => Ok(one),
                [] => Err(anyhow::anyhow!(
                    "{command}: `{}` does not live in --env {}",
                    id.name,
                    self.asked.join(",")
                ))
                .with_hint(|| {
                    let envs: Vec<&str> = id.environments.iter().map(|e| e.as_str()).collect();
                    format!("it lives in: {}", envs.join(", "))
                }),
                many => Err(anyhow::anyhow!(
                    "{command}: `{}` lives in several environments ({}); each has its own keys",
                    id.name,
                    many.iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .hint("pick one with --env NAME"),
            };
        }
        let named = matches!(rule, OneEnv::Named);
        match (self.asked.len(), self.envs.as_slice()) {
            (1, [env]) => Ok(env),
            (0, [env]) if !named => Ok(env),
            (0, _) => Err(anyhow::anyhow!("{command} needs the environment to act in"))
                .with_hint(|| format!("add --env NAME (the spec has: {})", known())),
            _ => Err(anyhow::anyhow!(
                "{command} works on one environment at a time, got --env {}",
                self.asked.join(",")
            ))
            .hint("run it once per environment; each is a separate server"),
        }
    }

    /// An operator client for `env`.
    pub(crate) fn client(&self, env: &Environment) -> anyhow::Result<Client> {
        let name = env.name.as_str();
        if let Some(lab) = &self.lab {
            return lab
                .operator_client(name)
                .with_context(|| format!("{name}: no such environment in the lab"))
                .with_hint(|| {
                    "the spec's environment names must match the lab's (`warden lab status`)"
                        .to_owned()
                });
        }
        let mut cfg = spec_addresses(env)?;
        if let Some(ca) = &env.ca_cert {
            cfg = cfg
                .with_ca_file(self.spec_dir.join(ca))
                .with_context(|| format!("{name}: CA bundle"))?;
        }
        let operator_cert = cfg.client_identity.is_some() && cfg.token.is_none();
        let client = Client::new(cfg)
            .with_context(|| format!("{name}: cannot build a client"))
            .hint("set --lab DIR, or the environment's address in the spec and VAULT_TOKEN/VAULT_CLIENT_CERT/VAULT_CLIENT_KEY")?;
        if operator_cert {
            crate::cmd::operator::log_in_as_operator(&client);
        }
        Ok(client)
    }

    /// A client for a workload (a container's or CI job's): it presents the transport
    /// certificate in `transport` (`cert.pem`, `key.pem`, as `warden transport issue` writes
    /// them; ADR 0010) and carries no token, so everything it may do comes from its own login.
    /// Without `transport`, outside a lab, `VAULT_CLIENT_CERT`/`VAULT_CLIENT_KEY` name it. A
    /// lab's operator certificate is never anyone else's transport: with `--lab`, `transport`
    /// is required.
    pub(crate) fn workload_client(
        &self,
        env: &Environment,
        transport: Option<&Path>,
    ) -> anyhow::Result<Client> {
        let name = env.name.as_str();
        let files = transport.map(warden_enroll::transport::TransportFiles::in_dir);
        if let Some(lab) = &self.lab {
            let Some(files) = files else {
                return Err(anyhow::anyhow!(
                    "{name}: a CI job or container reaches the lab through its runner's or host's own transport certificate, never the operator's"
                ))
                .with_hint(|| transport_hint(&self.spec, name));
            };
            return lab
                .workload_client(name, &files.cert, &files.key)
                .with_context(|| {
                    format!(
                        "{name}: cannot use the transport certificate in {}",
                        transport.unwrap_or(Path::new("")).display()
                    )
                })
                .with_hint(|| transport_hint(&self.spec, name));
        }
        let mut cfg = spec_addresses(env)?;
        if let Some(ca) = &env.ca_cert {
            cfg = cfg
                .with_ca_file(self.spec_dir.join(ca))
                .with_context(|| format!("{name}: CA bundle"))?;
        }
        if let Some(files) = files {
            cfg = cfg
                .with_client_cert_files(&files.cert, &files.key)
                .with_context(|| {
                    format!(
                        "{name}: the transport certificate in {}",
                        transport.unwrap_or(Path::new("")).display()
                    )
                })
                .with_hint(|| transport_hint(&self.spec, name))?;
        }
        cfg.token = None;
        Client::new(cfg)
            .with_context(|| format!("{name}: cannot build a client"))
            .hint("set the environment's address in the spec (or VAULT_ADDR) and pass --transport DIR")
    }

    /// Reads a file named in the spec, relative to the spec's directory ([`read_spec_named`]).
    pub(crate) fn read_spec_file(&self, path: &Path) -> anyhow::Result<String> {
        read_spec_named(&self.spec_dir.join(path))
    }
}

/// The largest file the spec names for Warden to read: a CA bundle or a CI/Kubernetes public
/// key is kilobytes of PEM. The client's own limit for PEM files, so a spec's `ca_cert` is held
/// to one limit whichever command reads it.
const SPEC_FILE_LIMIT: u64 = warden_bao::PEM_FILE_LIMIT;

/// Reads `full`, a file the spec names, as text. Only a regular file of at most
/// [`SPEC_FILE_LIMIT`], opened without blocking: a FIFO, `/dev/zero` or a huge file at the name
/// is refused at once instead of hanging plan (a FIFO nobody writes to) or filling its memory.
fn read_spec_named(full: &Path) -> anyhow::Result<String> {
    let bytes = warden_files::read_regular(full, SPEC_FILE_LIMIT)
        .with_context(|| format!("could not read {}", full.display()))
        .with_hint(|| {
            format!(
                "point `ca_cert` or `validation_pubkeys` (relative to the spec's directory) at a regular file holding the PEM, at most {} MiB",
                SPEC_FILE_LIMIT >> 20
            )
        })?;
    String::from_utf8(bytes.to_vec())
        .ok()
        .with_context(|| format!("{} is not text (UTF-8)", full.display()))
        .hint("`ca_cert` and `validation_pubkeys` name PEM files: write the certificate or public key as PEM text")
}

/// How to get a transport certificate for `env`: the command, naming the spec's holders there.
pub(crate) fn transport_hint(spec: &Spec, env: &str) -> String {
    let holders: Vec<&str> = spec.transport_in(env).map(|t| t.name.as_str()).collect();
    let holder = holders.first().copied().unwrap_or("HOLDER");
    let mut hint = format!(
        "get one with `warden transport issue --env {env} --holder {holder} --out DIR` and pass --transport DIR (docs/identity.md, \"Transport certificates\")"
    );
    if holders.is_empty() {
        hint.push_str(&format!(
            "; the spec declares no [transport.<holder>] for `{env}` yet"
        ));
    }
    hint
}

/// Where `env`'s servers are: every address the spec gives (its nodes, tried in order with
/// failover, or its one `address`), with credentials from the `VAULT_*`/`BAO_*` variables; else
/// `BAO_ADDR`/`VAULT_ADDR`, which name one server.
fn spec_addresses(env: &Environment) -> anyhow::Result<ClientConfig> {
    let name = env.name.as_str();
    let addresses = env.api_addresses();
    let Some(first) = addresses.first() else {
        return ClientConfig::from_env().context("reading VAULT_*/BAO_* settings");
    };
    // The spec names the servers, so no VAULT_ADDR is needed; one that is set is overridden.
    let from_env = ClientConfig::from_env_with(|var| match var {
        "BAO_ADDR" | "VAULT_ADDR" => Some((*first).to_owned()),
        _ => std::env::var(var).ok(),
    })
    .context("reading VAULT_*/BAO_* settings")?;
    ClientConfig::with_addresses(&addresses)
        .with_context(|| format!("{name}: bad address in {}", addresses.join(", ")))
        .map(|c| merge_env(c, from_env))
}

/// Keeps credentials from the environment when the address comes from the spec.
fn merge_env(from_spec: ClientConfig, from_env: ClientConfig) -> ClientConfig {
    let mut c = from_spec;
    c.token = from_env.token;
    c.client_identity = from_env.client_identity;
    c.ca_cert_pem = from_env.ca_cert_pem;
    c.namespace = from_env.namespace;
    c
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Red-team regression: a spec naming a FIFO (as `ca_cert` or a `validation_pubkeys` entry)
    /// hung plan forever, and one naming `/dev/zero` filled its memory; both are refused at once
    /// now, with the path and what to write instead.
    #[test]
    fn a_spec_file_that_is_a_fifo_or_dev_zero_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let fifo = dir.path().join("ci.pem");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // On a thread, so that a regression fails the test instead of hanging it.
        let (tx, rx) = mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || tx.send(read_spec_named(&path)));
        let err = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a FIFO is refused at once, not waited on")
            .expect_err("a FIFO is not a spec file");
        assert!(
            format!("{err:#}").contains(&format!("could not read {}", fifo.display())),
            "{err:#}"
        );
        let hint = err.downcast_ref::<crate::hint::Hint>().expect("a hint");
        assert!(hint.0.contains("regular file"), "{}", hint.0);

        assert!(read_spec_named(Path::new("/dev/zero")).is_err());

        let pem = dir.path().join("ok.pem");
        std::fs::write(&pem, "-----BEGIN PUBLIC KEY-----\n").expect("write");
        assert_eq!(
            read_spec_named(&pem).expect("a regular file"),
            "-----BEGIN PUBLIC KEY-----\n"
        );
    }
}
