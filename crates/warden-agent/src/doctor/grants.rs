//! What an identity's token must be able to do, derived from its `agent.toml` alone (the host
//! has no spec), and a sample of what it must never be able to do.

use crate::config::{AuthMethod, Config, OutputKind};
use crate::output::template::TemplateOutput;

/// One path and the capability the token must (or must not) hold on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Need {
    /// The API path, relative to `/v1/`.
    pub path: String,
    /// The capability that matters (`read`, `update`, ...).
    pub capability: &'static str,
    /// Why: the output or section of `agent.toml` that needs it, or why it is forbidden.
    pub why: String,
}

/// The name used for "another identity" in the forbidden sample: no identity is called this,
/// so only a policy broadened past its own paths (a glob) can grant it.
pub const PROBE_IDENTITY: &str = "warden-doctor-probe";

/// Every grant the agent's work needs. Unauthenticated PKI reads (`cert/ca_chain`,
/// `cert/crl`) are left out: OpenBao serves them to anyone, whatever the policy says.
pub async fn required(cfg: &Config) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    let mut push = |path: String, capability: &'static str, why: String| {
        if !out
            .iter()
            .any(|n| n.path == path && n.capability == capability)
        {
            out.push(Need {
                path,
                capability,
                why,
            });
        }
    };
    if let Some((mount, role)) = cfg
        .auth
        .tls_identity
        .as_ref()
        .and_then(|t| t.renew_with.as_ref())
    {
        push(
            format!("{mount}/sign/{role}"),
            "update",
            "[auth]: renewing the identity certificate".to_owned(),
        );
    }
    for o in &cfg.outputs {
        let why = format!("output `{}`", o.name);
        match &o.kind {
            OutputKind::Certificate(c) => {
                push(format!("{}/sign/{}", c.pki_mount, c.role), "update", why);
            }
            OutputKind::SigningKey(k) => {
                push(format!("{}/data/{}", k.kv_mount, k.kv_path), "read", why);
            }
            OutputKind::Template(t) => {
                let tmpl = TemplateOutput {
                    name: o.name.clone(),
                    source: t.source.clone(),
                    file_name: String::new(),
                    mode: t.mode,
                };
                // A template that does not parse is the agent's own error to report; its
                // reads are then unknown here.
                for path in tmpl.direct_reads().await.unwrap_or_default() {
                    if path.contains("/cert/ca_chain") {
                        continue;
                    }
                    push(path, "read", why.clone());
                }
            }
            OutputKind::CaChain(_) | OutputKind::Crl(_) => {}
        }
    }
    for d in &cfg.databases {
        push(d.path.clone(), "read", format!("[[database]] `{}`", d.name));
    }
    for e in &cfg.exec_env {
        push(
            format!("{}/data/{}", e.mount, e.path),
            "read",
            format!("[[exec_env]] `{}`", e.name),
        );
    }
    out
}

/// A sample of what the identity must not be able to do: rewrite policies (its own included),
/// mint tokens, reconfigure auth, read another identity's secret next to its own, sign with a
/// role that is not its own.
pub fn forbidden(cfg: &Config, required: &[Need]) -> Vec<Need> {
    let me = cfg.identity.name.as_str();
    let mut out = vec![
        Need {
            path: format!("sys/policies/acl/{}", cfg.auth.policy),
            capability: "update",
            why: "an identity must not rewrite its own policy".to_owned(),
        },
        Need {
            path: "auth/token/create".to_owned(),
            capability: "update",
            why: "an identity must not mint tokens".to_owned(),
        },
        Need {
            path: format!("sys/auth/{}", cfg.auth.mount),
            capability: "update",
            why: "an identity must not reconfigure authentication".to_owned(),
        },
    ];
    // Another identity's secret: the first of its own KV paths that names it, with the name
    // swapped for one nobody has. Only a glob wider than its own paths grants that.
    if let Some(other) = required
        .iter()
        .filter(|n| n.capability == "read" && n.path.contains("/data/"))
        .find_map(|n| swap_segment(&n.path, me, PROBE_IDENTITY))
    {
        out.push(Need {
            path: other,
            capability: "read",
            why: "another identity's secret".to_owned(),
        });
    }
    if let Some(c) = cfg.outputs.iter().find_map(|o| match &o.kind {
        OutputKind::Certificate(c) => Some(c),
        _ => None,
    }) {
        out.push(Need {
            path: format!("{}/sign/{PROBE_IDENTITY}", c.pki_mount),
            capability: "update",
            why: "another identity's certificate role".to_owned(),
        });
    }
    if matches!(cfg.auth.method, AuthMethod::Cert { .. }) {
        out.push(Need {
            path: format!("auth/{}/certs/{me}", cfg.auth.mount),
            capability: "update",
            why: "an identity must not change its own login role".to_owned(),
        });
    }
    out
}

/// `path` with its first segment equal to `from` replaced by `to`, or `None` when no segment
/// is `from`.
fn swap_segment(path: &str, from: &str, to: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let i = segments.iter().position(|s| *s == from)?;
    let mut swapped = segments;
    swapped[i] = to;
    Some(swapped.join("/"))
}

/// Whether `caps` grant anything at all (OpenBao answers `["deny"]` for nothing).
pub fn grants_anything(caps: &[String]) -> bool {
    caps.iter().any(|c| c != "deny")
}

/// Whether `caps` (from `sys/capabilities-self`) allows `capability`. `root` allows all;
/// `create` counts for `update` as OpenBao's write paths accept either.
pub fn allows(caps: &[String], capability: &str) -> bool {
    caps.iter()
        .any(|c| c == capability || c == "root" || (capability == "update" && c == "create"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_identitys_path_swaps_exactly_one_segment() {
        assert_eq!(
            swap_segment("secret/data/apps/billing/config", "billing", "x").as_deref(),
            Some("secret/data/apps/x/config")
        );
        assert_eq!(
            swap_segment("secret/data/apps/billingx/c", "billing", "x"),
            None
        );
    }

    #[test]
    fn capabilities_are_read_as_openbao_means_them() {
        let caps = |c: &[&str]| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(allows(&caps(&["read"]), "read"));
        assert!(allows(&caps(&["create"]), "update"));
        assert!(allows(&caps(&["root"]), "update"));
        assert!(!allows(&caps(&["deny"]), "read"));
        assert!(!allows(&caps(&["list"]), "read"));
    }
}
