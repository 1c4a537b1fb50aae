//! ACL policies as text: rendering the least-privilege policy of each identity, and reading
//! policies back (ours or anyone's) for the linter.
//!
//! Every grant is an exact path under the identity's own names. No wildcards are emitted: a
//! policy that reads `kvv2/data/billing/config` cannot read `kvv2/data/billing/anything-else`.

use warden_spec::{Environment, Identity, IdentityKind, Spec};

/// First line of every policy Warden writes; how a human (and `lint`) sees ownership.
pub const MANAGED_MARK: &str = "# managed-by: warden";

/// One `path "…" { capabilities = […] }` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The path pattern.
    pub path: String,
    /// Its capabilities.
    pub capabilities: Vec<String>,
}

fn grant(path: String, caps: &[&str]) -> Grant {
    Grant {
        path,
        capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// The grants of `identity`'s policy in `env` (its runtime policy; for a pipeline, the ops
/// policy of its app).
pub fn grants(spec: &Spec, env: &Environment, identity: &Identity) -> Vec<Grant> {
    let m = &env.mounts;
    let n = &spec.naming;
    let me = &identity.name;
    // Identity tokens carry no `default` policy (it doubles server cost per request), and
    // `default` is what normally lets a token look itself up, renew and revoke itself. Agents
    // need exactly those three, so every identity gets them by exact path.
    let mut out = vec![
        grant("auth/token/lookup-self".to_owned(), &["read"]),
        grant("auth/token/renew-self".to_owned(), &["update"]),
        grant("auth/token/revoke-self".to_owned(), &["update"]),
    ];
    // A reveal-once secret is never stored in KV (it exists only behind its wrapping token),
    // so there is nothing to grant.
    let revealed_once = |secret: &str| {
        spec.purpose_of(&format!("{me}/secret/{secret}"))
            .is_some_and(|p| p.delivery == warden_spec::Delivery::RevealOnce)
    };
    let kv_read = |out: &mut Vec<Grant>, prefix: &str, secret: &str| {
        if revealed_once(secret) {
            return;
        }
        out.push(grant(format!("{}/data/{prefix}/{secret}", m.kv), &["read"]));
        out.push(grant(
            format!("{}/metadata/{prefix}/{secret}", m.kv),
            &["read"],
        ));
    };
    match identity.kind {
        IdentityKind::App => {
            out.push(grant(
                format!("{}/sign/{}", m.pki, n.pki_role.render(me)),
                &["create", "update"],
            ));
            out.push(grant(
                format!("{}/sign/{}", m.pki, n.identity_role.render(me)),
                &["create", "update"],
            ));
            out.push(grant(format!("{}/cert/ca_chain", m.pki), &["read"]));
            for s in &identity.secrets {
                kv_read(&mut out, &n.kv_prefix.render(me), s);
            }
            for k in &identity.signing_keys {
                kv_read(
                    &mut out,
                    &n.kv_prefix.render(me),
                    &format!("signing/{}", k.name),
                );
            }
            for k in &identity.transit_keys {
                let key = k.key_name(me);
                let ops: [&str; 2] = if k.key_type.signs() {
                    ["sign", "verify"]
                } else {
                    ["encrypt", "decrypt"]
                };
                for op in ops {
                    out.push(grant(format!("{}/{op}/{key}", m.transit), &["update"]));
                }
            }
            for d in spec
                .domains
                .iter()
                .filter(|d| d.app == *me && d.environments.contains(&env.name))
            {
                out.push(grant(format!("{}/data/{}", m.kv, d.kv_path()), &["read"]));
                out.push(grant(
                    format!("{}/metadata/{}", m.kv, d.kv_path()),
                    &["read"],
                ));
            }
            if !identity.databases.is_empty() {
                out.push(grant(
                    format!("{}/creds/{}", m.database, n.db_role.render(me)),
                    &["read"],
                ));
                // Renewing and revoking its own leases by id (the agent keeps them current and
                // revokes the previous one on restart); lease ids are unguessable.
                out.push(grant("sys/leases/renew".to_owned(), &["update"]));
                out.push(grant("sys/leases/revoke".to_owned(), &["update"]));
            }
        }
        IdentityKind::Proxy => {
            // A proxy keeps trust material current and renews its own identity; it can never
            // sign a certificate for anyone else.
            out.push(grant(format!("{}/cert/ca_chain", m.pki), &["read"]));
            out.push(grant(format!("{}/ca_chain", m.pki), &["read"]));
            out.push(grant(
                format!("{}/sign/{}", m.pki, n.identity_role.render(me)),
                &["create", "update"],
            ));
        }
        IdentityKind::Container => {
            for s in &identity.secrets {
                kv_read(&mut out, &n.kv_prefix.render(me), s);
            }
        }
        IdentityKind::Pipeline => {
            if let Some(app) = identity
                .pipeline
                .as_ref()
                .and_then(|p| spec.identity(p.app.as_str()))
            {
                let prefix = n.kv_prefix.render(&app.name);
                let mut secrets: Vec<&str> = app.secrets.iter().map(String::as_str).collect();
                if !secrets.contains(&"config") {
                    secrets.insert(0, "config");
                }
                let signing: Vec<String> = app
                    .signing_keys
                    .iter()
                    .map(|k| format!("signing/{}", k.name))
                    .collect();
                secrets.extend(signing.iter().map(String::as_str));
                for s in secrets {
                    out.push(grant(
                        format!("{}/data/{prefix}/{s}", m.kv),
                        &["create", "update", "read"],
                    ));
                    // `update` on metadata: writers record who changed which keys in the
                    // secret's custom metadata (KV v2 keeps no author).
                    out.push(grant(
                        format!("{}/metadata/{prefix}/{s}", m.kv),
                        &["read", "update"],
                    ));
                }
                for k in &app.transit_keys {
                    out.push(grant(
                        format!("{}/keys/{}/rotate", m.transit, k.key_name(&app.name)),
                        &["update"],
                    ));
                }
            }
        }
    }
    if identity.kind != IdentityKind::Pipeline && !spec.purposes.is_empty() {
        // Each agent reports what it actually delivered to its own narrow path, so posture
        // shows what is deployed, not only what OpenBao issued.
        out.push(grant(
            format!(
                "{}/data/{}/{me}",
                crate::desired::META_MOUNT,
                crate::engines::DELIVERED_PREFIX
            ),
            &["create", "update", "read"],
        ));
    }
    out
}

/// The policy name `identity` logs in with.
pub fn policy_name(spec: &Spec, identity: &Identity) -> String {
    match (&identity.kind, &identity.pipeline) {
        (IdentityKind::Pipeline, Some(p)) => spec.naming.ops_policy.render(&p.app),
        _ => spec.naming.policy.render(&identity.name),
    }
}

/// Renders a policy document.
pub fn render(identity: &Identity, grants: &[Grant]) -> String {
    let mut s = format!(
        "{MANAGED_MARK}\n# identity: {} ({})\n",
        identity.name,
        identity.kind.as_str()
    );
    for g in grants {
        let caps = g
            .capabilities
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!(
            "\npath \"{}\" {{\n  capabilities = [{caps}]\n}}\n",
            g.path
        ));
    }
    s
}

/// Reads the grants out of a policy's HCL. Handles the forms Warden and `bao policy write`
/// users write (one `path` block per grant, `capabilities` as a list); anything it cannot read
/// is returned in the error so the linter reports it instead of passing it silently.
pub fn parse(hcl: &str) -> Result<Vec<Grant>, String> {
    let mut out = Vec::new();
    let text: String = hcl
        .lines()
        .map(|l| match l.find('#') {
            Some(i) if !in_string(l, i) => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = text.as_str();
    while let Some(i) = rest.find("path") {
        let after = &rest[i + 4..];
        let after_ws = after.trim_start();
        if !after_ws.starts_with('"') {
            rest = after;
            continue;
        }
        let body = &after_ws[1..];
        let end = body.find('"').ok_or("unterminated path string")?;
        let path = body[..end].to_owned();
        let block_start = body[end..]
            .find('{')
            .ok_or_else(|| format!("no block after path \"{path}\""))?
            + end;
        let block_end = body[block_start..]
            .find('}')
            .ok_or_else(|| format!("unterminated block for \"{path}\""))?
            + block_start;
        let block = &body[block_start + 1..block_end];
        let caps = match block.find("capabilities") {
            Some(c) => {
                let list = &block[c..];
                let open = list
                    .find('[')
                    .ok_or_else(|| format!("capabilities of \"{path}\" are not a list"))?;
                let close = list
                    .find(']')
                    .ok_or_else(|| format!("capabilities of \"{path}\" are not closed"))?;
                list[open + 1..close]
                    .split(',')
                    .map(|c| c.trim().trim_matches('"').to_owned())
                    .filter(|c| !c.is_empty())
                    .collect()
            }
            None => Vec::new(),
        };
        out.push(Grant {
            path,
            capabilities: caps,
        });
        rest = &body[block_end + 1..];
    }
    Ok(out)
}

fn in_string(line: &str, idx: usize) -> bool {
    line[..idx].matches('"').count() % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_renders_and_hand_written_policies() {
        let hcl = r#"
# a comment with path "x" { }
path "kvv2/data/a/config" {
  capabilities = ["read"]
}
path "sys/*" { capabilities = ["sudo", "read"] }
"#;
        let g = parse(hcl).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].path, "kvv2/data/a/config");
        assert_eq!(g[1].capabilities, ["sudo", "read"]);
    }
}
