//! Shared by `secrets_cli` and `ci_cli`: the platform spec these tests apply, a lab with it
//! applied, and `warden` run against it with stdin fed and variables set.

use std::path::PathBuf;

use warden_testkit::LabEnv;
use warden_testkit::cli::{Run, path_str};

use crate::WARDEN;

/// The CI issuer and audience the spec trusts.
pub(crate) const ISSUER: &str = "https://gitea.warden.internal";
pub(crate) const AUDIENCE: &str = "openbao-test";

/// One environment (`test`), two apps, one pipeline for billing, two transit keys of
/// billing, and a purpose for every credential (apply refuses credentials without one).
/// `ci_key` is the PEM file (relative to the spec) that verifies CI tokens.
pub(crate) fn spec_text(ci_key: &str) -> String {
    format!(
        r#"version = 1

[environments.test]
domain        = "test.warden.internal"
runtime_owner = "warden-test"
app_root      = "/srv/warden/test"

[environments.test.ci]
issuer             = "{ISSUER}"
audience           = "{AUDIENCE}"
validation_pubkeys = ["{ci_key}"]

[apps.billing]
environments = ["test"]
secrets      = ["config", "stripe"]
transit_keys = [{{ name = "payments", type = "aes256-gcm96" }}, {{ name = "receipts", type = "ecdsa-p256" }}]

[apps.ledger]
environments = ["test"]
secrets      = ["config"]

[pipelines.billing-ci]
app          = "billing"
environments = ["test"]
repository   = "platform/billing"
branches     = ["main"]

# The CI runner that runs billing-ci's jobs: its transport certificate gets the jobs' JWT
# logins through the listener's mTLS requirement (ADR 0010).
[transport.ci-runner]
environments = ["test"]
carries      = ["billing-ci"]
ttl          = "24h"

[purposes.workload-identity]
description = "Each identity's mTLS client certificate"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = {{ interval = "20d", grace = "5d", max_age = "30d" }}
evidence    = "EV-IDENTITY"
covers      = ["*/identity-cert"]

[purposes.service-tls]
description = "Server certificates of the apps"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = {{ interval = "48h", grace = "24h", max_age = "72h" }}
evidence    = "EV-PKI"
covers      = ["*/certificate"]

[purposes.app-config]
description = "Each app's runtime configuration"
owner       = "platform"
tier        = "vault_kv"
delivery    = "agent_file"
rotation    = {{ interval = "90d", grace = "14d" }}
evidence    = "EV-CONFIG"
covers      = ["*/secret/config"]

[purposes.billing-stripe]
description = "Billing's payment provider key"
owner       = "billing"
tier        = "vault_kv"
delivery    = "agent_file"
rotation    = {{ interval = "30d", grace = "7d" }}
evidence    = "EV-PAYMENTS"
covers      = ["billing/secret/stripe"]

[purposes.billing-transit]
description = "Billing's encryption and receipt-signing keys; they never leave OpenBao"
owner       = "billing"
tier        = "vault_transit"
delivery    = "api"
rotation    = {{ interval = "30d", grace = "30d" }}
evidence    = "EV-PAYMENTS"
covers      = ["billing/transit/*"]

[purposes.ci-session]
description = "A pipeline's short-lived token from its OIDC token"
owner       = "platform"
tier        = "ephemeral"
delivery    = "exec_env"
rotation    = {{ interval = "15m", grace = "5m" }}
evidence    = "EV-CI"
covers      = ["*/ci-token"]
"#
    )
}

/// A lab with the spec applied. Dropped, it stops the lab.
pub(crate) struct Platform {
    pub(crate) lab: LabEnv,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) spec: PathBuf,
}

impl Platform {
    /// Starts a one-environment lab, writes the spec (with `ci_public_pem` as the CI key) and
    /// applies it with `warden apply`.
    pub(crate) async fn start(ci_public_pem: &str) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let lab = LabEnv::start(&["test"]).await;
        let dir = tempfile::Builder::new()
            .prefix("warden-secrets-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("ci-signing.pem"), ci_public_pem).expect("write CI key");
        let spec = dir.path().join("warden.toml");
        std::fs::write(&spec, spec_text("ci-signing.pem")).expect("write spec");
        let p = Self { lab, dir, spec };
        p.run(&["apply"], &[], None, &[]).ok();
        // The runner's own transport certificate, issued by the operator as a runner is set up.
        p.run(
            &["transport", "issue"],
            &[
                "--holder",
                "ci-runner",
                "--out",
                path_str(&p.runner_transport()),
            ],
            None,
            &[],
        )
        .ok();
        p
    }

    /// The CI runner's transport directory (`cert.pem`, `key.pem`); `run` hands it to every
    /// command as `WARDEN_TRANSPORT_DIR`, as a runner does for its jobs.
    pub(crate) fn runner_transport(&self) -> PathBuf {
        self.path("runner-transport")
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `warden <cmd…> <args…> --spec S --lab L --env test [extra…]`, with `stdin` fed and
    /// `vars` set.
    pub(crate) fn run(
        &self,
        cmd: &[&str],
        extra: &[&str],
        stdin: Option<&[u8]>,
        vars: &[(&str, &str)],
    ) -> Run {
        let mut args: Vec<String> = cmd.iter().map(|s| (*s).to_owned()).collect();
        args.extend(
            [
                "--spec",
                path_str(&self.spec),
                "--lab",
                path_str(self.lab.dir()),
                "--env",
                "test",
            ]
            .map(str::to_owned),
        );
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut command = WARDEN.invoke(&args);
        if self.runner_transport().exists() {
            command = command.env("WARDEN_TRANSPORT_DIR", path_str(&self.runner_transport()));
        }
        // An empty value removes the variable (clap would take "" as a value given).
        for (k, v) in vars {
            command = if v.is_empty() {
                command.env_remove(k)
            } else {
                command.env(k, v)
            };
        }
        if let Some(input) = stdin {
            command = command.stdin(input);
        }
        command.run()
    }
}
