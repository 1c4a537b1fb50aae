//! `warden serve --listen`: the HTTP JSON API's flags, its TLS files and its start
//! (`warden_serve::api`, docs/serve.md#api). Kept apart from `serve.rs` so the scheduler's
//! command stays a thin loop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use serde::Serialize;
use warden_serve::Target;
use warden_serve::api::{Api, ApiState};
use zeroize::Zeroizing;

use crate::context::Resolved;
use crate::hint::HintExt as _;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// Serve the HTTP JSON API (HTTPS, client certificates required) on this loopback address
    /// (port 0: any free port; the address is printed). Needs exactly one environment.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The API's server certificate, PEM, leaf first (default with --lab: the environment's
    /// listener certificate).
    #[arg(long, value_name = "FILE", requires = "listen")]
    api_cert: Option<PathBuf>,
    /// Its private key, PEM (default with --lab: the listener's key).
    #[arg(long, value_name = "FILE", requires = "listen")]
    api_key: Option<PathBuf>,
    /// The CAs whose client certificates are accepted, PEM (default with --lab: the
    /// environment's listener client-CA bundle, the same clients OpenBao's listener accepts).
    #[arg(long, value_name = "FILE", requires = "listen")]
    api_client_ca: Option<PathBuf>,
}

/// The line printed once the API listens.
#[derive(Serialize)]
struct Listening<'a> {
    event: &'static str,
    env: &'a str,
    listen: String,
}

/// Binds the API when `--listen` is given.
pub(crate) async fn start(
    args: &ApiArgs,
    resolved: &Resolved,
    targets: &[Target],
    replica: &str,
    instance: &str,
    out: &Output,
) -> anyhow::Result<Option<(Api, ApiState)>> {
    let Some(listen) = args.listen else {
        return Ok(None);
    };
    let [target] = targets else {
        return Err(anyhow::anyhow!(
            "--listen serves one environment's API, and {} environments are selected",
            targets.len()
        ))
        .hint("add --env NAME (run one `warden serve --listen` per environment)");
    };
    let env = target.env.name.to_string();
    let lab = resolved.lab.as_ref().map(|l| l.layout().env(&env));
    let pick = |given: &Option<PathBuf>, lab_file: Option<PathBuf>, flag: &str| {
        given
            .clone()
            .or(lab_file)
            .ok_or_else(|| anyhow::anyhow!("--listen needs {flag} outside a lab"))
            .hint(format!("pass {flag} FILE (PEM), or --lab DIR"))
    };
    let cert = pick(
        &args.api_cert,
        lab.as_ref().map(|l| l.server_cert()),
        "--api-cert",
    )?;
    let key = pick(
        &args.api_key,
        lab.as_ref().map(|l| l.server_key()),
        "--api-key",
    )?;
    let ca = pick(
        &args.api_client_ca,
        lab.as_ref().map(|l| l.client_ca()),
        "--api-client-ca",
    )?;
    let cert_pem = read(&cert)?;
    let key_pem = Zeroizing::new(read(&key)?);
    let ca_pem = read(&ca)?;
    let operators = warden_serve::api::Operators {
        env: env.clone(),
        domain: target.env.domain.clone(),
    };
    let tls = warden_serve::api::server_config(&cert_pem, &key_pem, &ca_pem, operators)
        .map_err(anyhow::Error::new)
        .hint(format!(
            "check {}, {} and {}",
            cert.display(),
            key.display(),
            ca.display()
        ))?;
    let api = Api::bind(listen, tls)
        .await
        .map_err(anyhow::Error::new)
        .hint("pick a free loopback port, or 127.0.0.1:0")?;
    let addr = api.addr();
    out.event(
        &Listening {
            event: "api",
            env: &env,
            listen: addr.to_string(),
        },
        || format!("{env}: API on https://{addr} (client certificates required)"),
    );
    let state = ApiState {
        spec: Arc::new(resolved.spec.clone()),
        env: target.env.clone(),
        client: target.client.clone(),
        replica: replica.to_owned(),
        instance: instance.to_owned(),
        trigger: target.trigger.clone(),
    };
    Ok(Some((api, state)))
}

fn read(path: &Path) -> anyhow::Result<String> {
    crate::input::read_named_text(path, "the file", crate::input::TEXT_FILE_LIMIT)
        .map(|t| t.to_string())
        .hint("check the path and that this user may read it")
}
