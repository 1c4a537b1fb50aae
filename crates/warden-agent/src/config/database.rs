//! `[[database]]`: a source of dynamic database credentials that templates read.
//!
//! ```toml
//! [[database]]
//! name = "main"                     # templates call database("main")
//! path = "postgres/creds/billing"   # <mount>/creds/<role>
//! ```
//!
//! A source is declared once and read by any number of templates: they all share one lease,
//! which the agent renews and re-issues (see `agent::database`). Declaring it here rather than
//! letting a template name a path gives the lease a stable name (state file, status, metrics)
//! and lets a misspelt source fail at its line instead of issuing credentials nobody renews.

use std::collections::BTreeSet;

use serde::Deserialize;
use warden_spec::Reporter;

use super::{S, valid_name};

/// One `[[database]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSource {
    /// What templates call it (`database("<name>")`); also its state file, status and metric
    /// label.
    pub name: String,
    /// `<mount>/creds/<role>`, read to issue credentials.
    pub path: String,
}

impl DatabaseSource {
    /// The mount part of the path (`postgres`).
    pub fn mount(&self) -> &str {
        self.path
            .rsplit_once("/creds/")
            .map_or(self.path.as_str(), |(m, _)| m)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    name: S<String>,
    path: S<String>,
}

pub(super) fn validate_databases(
    raw: &[S<RawDatabase>],
    r: &mut Reporter<'_>,
) -> Vec<DatabaseSource> {
    let mut names = BTreeSet::new();
    let mut paths = BTreeSet::new();
    let mut out = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let d = d.get_ref();
        let name = d.name.get_ref();
        let key = if valid_name(name) {
            format!("database.{name}")
        } else {
            format!("database[{i}]")
        };
        let mut ok = true;
        if !valid_name(name) {
            r.error(
                d.name.span(),
                format!("{key}.name"),
                format!(
                    "`{name}` is not a valid source name: use 1-64 characters of a-z, 0-9, `-` and `_`"
                ),
            );
            ok = false;
        } else if !names.insert(name.clone()) {
            r.error(
                d.name.span(),
                format!("{key}.name"),
                format!("two [[database]] sources are called `{name}`: names must be unique"),
            );
            ok = false;
        }
        let Some(path) = creds_path(d.path.get_ref()) else {
            r.error_help(
                d.path.span(),
                format!("{key}.path"),
                format!("`{}` is not a database credentials path", d.path.get_ref()),
                Some(
                    "write it as `<mount>/creds/<role>`, for example \"postgres/creds/billing\""
                        .to_owned(),
                ),
            );
            continue;
        };
        if !paths.insert(path.clone()) {
            r.error_help(
                d.path.span(),
                format!("{key}.path"),
                format!("{path} is already read by another [[database]] source"),
                Some("one source per role: templates share it by calling database() with the same name".to_owned()),
            );
            ok = false;
        }
        if ok {
            out.push(DatabaseSource {
                name: name.clone(),
                path,
            });
        }
    }
    out
}

/// `<mount>/creds/<role>` with clean segments (the mount may itself hold a `/`), trimmed of
/// slashes; `None` when it is not that shape.
fn creds_path(raw: &str) -> Option<String> {
    let p = raw.trim().trim_matches('/');
    let segments: Vec<&str> = p.split('/').collect();
    let clean = segments.iter().all(|s| {
        !s.is_empty()
            && *s != "."
            && *s != ".."
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '%'))
    });
    (clean && segments.len() >= 3 && segments[segments.len() - 2] == "creds").then(|| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creds_paths_have_a_mount_creds_and_a_role() {
        assert_eq!(
            creds_path("/postgres/creds/billing/").as_deref(),
            Some("postgres/creds/billing")
        );
        assert_eq!(
            creds_path("db/prod/creds/billing").as_deref(),
            Some("db/prod/creds/billing")
        );
        for bad in [
            "postgres/billing",
            "creds/billing",
            "postgres/creds/billing/x",
            "postgres/creds/../x",
            "postgres/creds/a b",
            "postgres//creds/x",
            "",
        ] {
            assert_eq!(creds_path(bad), None, "{bad}");
        }
        let s = DatabaseSource {
            name: "main".into(),
            path: "db/prod/creds/billing".into(),
        };
        assert_eq!(s.mount(), "db/prod");
    }
}
