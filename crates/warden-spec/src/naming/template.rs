//! The `[naming]` templates: how each OpenBao object name derives from an identity's slug.

use crate::model::Slug;

/// A naming template in which `<app>` stands for the identity's slug. Validation guarantees it
/// contains `<app>`, no other placeholder, and only clean `/`-separated segments (never `.`,
/// `..` or empty), so a rendered name stays under the identity's own paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    pub(crate) fn new(s: String) -> Self {
        Self(s)
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name for `app`.
    pub fn render(&self, app: &Slug) -> String {
        self.0.replace("<app>", app.as_str())
    }
}

/// How names derive from the `<app>` slug. Defaults are the platform's established names; names are identical in
/// every environment while each environment stays a separate server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Runtime policy: `<app>`.
    pub policy: Template,
    /// CI/ops policy: `<app>-ops`.
    pub ops_policy: Template,
    /// KV path prefix inside the KV mounts: `<app>` (so `kvv2/<app>/config`). Rendered only by
    /// [`kv_prefix`](super::kv_prefix).
    pub kv_prefix: Template,
    /// Database role: `<app>` (so `postgres/creds/<app>`).
    pub db_role: Template,
    /// PostgreSQL group role granted to dynamic users: `<app>_role`.
    pub db_group: Template,
    /// JWT role for CI: `gitea_cicd_<app>`.
    pub ci_role: Template,
    /// PKI role issuing the identity's leaf certificates: `<app>`.
    pub pki_role: Template,
    /// Cert-auth role: `<app>`.
    pub cert_role: Template,
    /// AppRole role: `<app>`.
    pub approle_role: Template,
    /// PKI role that issues the identity's own mTLS client certificate: `<app>-identity`.
    pub identity_role: Template,
}

impl Naming {
    /// The default templates (what a spec without `[naming]` gets).
    pub fn defaults() -> Self {
        let t = |s: &str| Template::new(s.to_owned());
        Self {
            policy: t("<app>"),
            ops_policy: t("<app>-ops"),
            kv_prefix: t("<app>"),
            db_role: t("<app>"),
            db_group: t("<app>_role"),
            ci_role: t("gitea_cicd_<app>"),
            pki_role: t("<app>"),
            cert_role: t("<app>"),
            approle_role: t("<app>"),
            identity_role: t("<app>-identity"),
        }
    }
}

/// The first path segment of `template` that is empty, `.` or `..`, if any.
///
/// Every template ends up inside an OpenBao path (a policy grant, a role under a mount). A
/// `..` there would make one identity's grant name another identity's path (or leave the
/// mount), `.` and empty segments make two spellings of one path, which the least-privilege
/// lint compares as different strings. `<app>` itself is a slug and never such a segment.
pub(crate) fn unclean_segment(template: &str) -> Option<&str> {
    template
        .split('/')
        .find(|seg| seg.is_empty() || *seg == "." || *seg == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_templates_have_no_unclean_segment() {
        for t in ["<app>", "apps/<app>", "<app>.v1/x", "<app>..x", "a.<app>"] {
            assert_eq!(unclean_segment(t), None, "{t}");
        }
    }

    #[test]
    fn dot_dotdot_and_empty_segments_are_found() {
        for (t, seg) in [
            ("<app>/../ledger", ".."),
            ("../<app>", ".."),
            ("<app>/..", ".."),
            ("./<app>", "."),
            ("<app>/./x", "."),
            ("<app>//x", ""),
            ("/<app>", ""),
            ("<app>/", ""),
        ] {
            assert_eq!(unclean_segment(t), Some(seg), "{t}");
        }
    }
}
