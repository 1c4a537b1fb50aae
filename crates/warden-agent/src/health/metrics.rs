//! `/metrics`: the Prometheus text exposition (format 0.0.4) of a [`Snapshot`].
//!
//! Metric names are a contract (dashboards and alerts are written against them), so they are
//! constants here and tested; the table of names is in the [`health`](super) module's
//! documentation.
//!
//! **Why hand-written exposition.** `prometheus-client`'s model is instruments registered up
//! front and updated in place, whereas every figure here is derived from one status snapshot at
//! scrape time (expiry is "not-after minus now", not a stored value), which would need a custom
//! `Collector` and buy nothing the exposition format does not already specify. The format
//! (HELP/TYPE lines, label escaping) is small, stable and tested below.

use std::fmt::Write as _;

use super::view::{Freshness, Snapshot};

/// `warden_agent_output_expiry_seconds`.
pub const METRIC_EXPIRY: &str = "warden_agent_output_expiry_seconds";
/// `warden_agent_output_last_render_timestamp_seconds`.
pub const METRIC_LAST_RENDER: &str = "warden_agent_output_last_render_timestamp_seconds";
/// `warden_agent_output_fresh`.
pub const METRIC_FRESH: &str = "warden_agent_output_fresh";
/// `warden_agent_render_errors_total`.
pub const METRIC_RENDER_ERRORS: &str = "warden_agent_render_errors_total";
/// `warden_agent_output_repairs_total`.
pub const METRIC_REPAIRS: &str = "warden_agent_output_repairs_total";
/// `warden_agent_clock_skew_seconds`.
pub const METRIC_CLOCK_SKEW: &str = "warden_agent_clock_skew_seconds";
/// `warden_agent_auth_errors_total`.
pub const METRIC_AUTH_ERRORS: &str = "warden_agent_auth_errors_total";
/// `warden_agent_requests_total`.
pub const METRIC_REQUESTS: &str = "warden_agent_requests_total";
/// `warden_agent_openbao_server_info{server}`.
pub const METRIC_SERVER: &str = "warden_agent_openbao_server_info";
/// `warden_agent_database_lease_expiry_seconds`.
pub const METRIC_DB_EXPIRY: &str = "warden_agent_database_lease_expiry_seconds";
/// `warden_agent_database_fresh`.
pub const METRIC_DB_FRESH: &str = "warden_agent_database_fresh";
/// `warden_agent_database_issues_total`.
pub const METRIC_DB_ISSUES: &str = "warden_agent_database_issues_total";
/// `warden_agent_database_renewals_total`.
pub const METRIC_DB_RENEWALS: &str = "warden_agent_database_renewals_total";
/// `warden_agent_database_errors_total`.
pub const METRIC_DB_ERRORS: &str = "warden_agent_database_errors_total";

/// The whole `/metrics` body for `snapshot`: the per-output families, the agent-wide counters,
/// then the per-database families. Families without a sample are left out.
pub fn render_metrics(snapshot: &Snapshot) -> String {
    let mut s = String::with_capacity(1024);
    output_families(&mut s, snapshot);
    database_families(&mut s, snapshot);
    s
}

/// One sample: the label's value (none for an unlabelled metric) and the sample's value.
type Row<'a> = (Option<&'a str>, String);

/// Writes one metric family: HELP, TYPE and a sample per row; nothing without rows.
fn family(s: &mut String, label: &str, name: &str, kind: &str, help: &str, rows: Vec<Row<'_>>) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
    for (value_of, value) in rows {
        match value_of {
            Some(o) => {
                let _ = writeln!(s, "{name}{{{label}=\"{}\"}} {value}", escape_label(o));
            }
            None => {
                let _ = writeln!(s, "{name} {value}");
            }
        }
    }
}

/// The families labelled by output, and the agent-wide counters.
fn output_families(s: &mut String, snapshot: &Snapshot) {
    let now = snapshot.taken_at;
    let mut by_output = |name: &str, kind: &str, help: &str, rows: Vec<Row<'_>>| {
        family(s, "output", name, kind, help, rows);
    };
    let outputs = &snapshot.outputs;
    by_output(
        METRIC_EXPIRY,
        "gauge",
        "Seconds until the delivered certificate of the output expires (negative once expired).",
        outputs
            .iter()
            .filter_map(|o| {
                o.not_after.map(|t| {
                    (
                        Some(o.name.as_str()),
                        float((t - now).as_seconds_f64().floor()),
                    )
                })
            })
            .collect(),
    );
    by_output(
        METRIC_LAST_RENDER,
        "gauge",
        "Unix time of the output's last successful render.",
        outputs
            .iter()
            .filter_map(|o| {
                o.last_render.map(|t| {
                    (
                        Some(o.name.as_str()),
                        float(t.unix_timestamp_nanos() as f64 / 1e9),
                    )
                })
            })
            .collect(),
    );
    by_output(
        METRIC_FRESH,
        "gauge",
        "1 when the output is fresh, 0 when pending, stale or failing.",
        outputs
            .iter()
            .map(|o| {
                (
                    Some(o.name.as_str()),
                    u8::from(o.state == Freshness::Fresh).to_string(),
                )
            })
            .collect(),
    );
    by_output(
        METRIC_RENDER_ERRORS,
        "counter",
        "Failed renders or deliveries of the output since the agent started.",
        outputs
            .iter()
            .map(|o| (Some(o.name.as_str()), o.render_errors.to_string()))
            .collect(),
    );
    by_output(
        METRIC_REPAIRS,
        "counter",
        "Drift on disk of the output (a removed file or symlink, a changed mode or owner) repaired since the agent started.",
        outputs
            .iter()
            .map(|o| (Some(o.name.as_str()), o.repairs.to_string()))
            .collect(),
    );
    by_output(
        METRIC_CLOCK_SKEW,
        "gauge",
        "This host's clock minus the OpenBao server's, from the last response's Date header.",
        snapshot
            .clock_skew_seconds
            .map(|s| (None, s.to_string()))
            .into_iter()
            .collect(),
    );
    by_output(
        METRIC_AUTH_ERRORS,
        "counter",
        "Failed logins and token renewals since the agent started.",
        vec![(None, snapshot.auth_errors_total.to_string())],
    );
    by_output(
        METRIC_REQUESTS,
        "counter",
        "Requests sent to OpenBao since the agent started.",
        vec![(None, snapshot.requests_total.to_string())],
    );
    family(
        s,
        "server",
        METRIC_SERVER,
        "gauge",
        "1, labelled with the OpenBao node the agent talks to now (it changes on failover).",
        snapshot
            .server
            .as_deref()
            .map(|a| (Some(a), "1".to_owned()))
            .into_iter()
            .collect(),
    );
}

/// The families labelled by `[[database]]` source.
fn database_families(s: &mut String, snapshot: &Snapshot) {
    let now = snapshot.taken_at;
    let dbs = &snapshot.databases;
    let mut db_family = |name: &str, kind: &str, help: &str, rows: Vec<Row<'_>>| {
        family(s, "database", name, kind, help, rows);
    };
    db_family(
        METRIC_DB_EXPIRY,
        "gauge",
        "Seconds until the database source's current lease ends as last granted (negative once over).",
        dbs.iter()
            .filter_map(|d| {
                d.expires.map(|t| {
                    (
                        Some(d.name.as_str()),
                        float((t - now).as_seconds_f64().floor()),
                    )
                })
            })
            .collect(),
    );
    db_family(
        METRIC_DB_FRESH,
        "gauge",
        "1 when the database source holds a live lease and is not failing.",
        dbs.iter()
            .map(|d| {
                (
                    Some(d.name.as_str()),
                    u8::from(d.state == Freshness::Fresh).to_string(),
                )
            })
            .collect(),
    );
    db_family(
        METRIC_DB_ISSUES,
        "counter",
        "Credentials issued for the database source since the agent started.",
        dbs.iter()
            .map(|d| (Some(d.name.as_str()), d.issues.to_string()))
            .collect(),
    );
    db_family(
        METRIC_DB_RENEWALS,
        "counter",
        "Renewals of the database source's leases since the agent started.",
        dbs.iter()
            .map(|d| (Some(d.name.as_str()), d.renewals.to_string()))
            .collect(),
    );
    db_family(
        METRIC_DB_ERRORS,
        "counter",
        "Failed issues, renewals and revocations of the database source since the agent started.",
        dbs.iter()
            .map(|d| (Some(d.name.as_str()), d.errors.to_string()))
            .collect(),
    );
}

/// A float as Prometheus reads it (no exponent surprises for ordinary values).
fn float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Label values escape `\`, `"` and newlines (exposition format 0.0.4).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{NOW, db, snapshot, view};
    use super::*;

    #[test]
    fn metrics_have_the_documented_names_and_values() {
        let mut tpl = view("config", Freshness::Stale);
        tpl.kind = "template".to_owned();
        tpl.not_after = None;
        tpl.serial = None;
        tpl.render_errors = 3;
        let text = render_metrics(&snapshot(vec![view("tls", Freshness::Fresh), tpl]));
        let expected_lines = [
            "# TYPE warden_agent_output_expiry_seconds gauge",
            "warden_agent_output_expiry_seconds{output=\"tls\"} 259200",
            "# TYPE warden_agent_output_last_render_timestamp_seconds gauge",
            "warden_agent_output_last_render_timestamp_seconds{output=\"tls\"} 1893455970",
            "warden_agent_output_last_render_timestamp_seconds{output=\"config\"} 1893455970",
            "warden_agent_output_fresh{output=\"tls\"} 1",
            "warden_agent_output_fresh{output=\"config\"} 0",
            "# TYPE warden_agent_render_errors_total counter",
            "warden_agent_render_errors_total{output=\"tls\"} 0",
            "warden_agent_render_errors_total{output=\"config\"} 3",
            "# TYPE warden_agent_auth_errors_total counter",
            "warden_agent_auth_errors_total 1",
            "# TYPE warden_agent_requests_total counter",
            "warden_agent_requests_total 7",
            "# TYPE warden_agent_openbao_server_info gauge",
            "warden_agent_openbao_server_info{server=\"https://127.0.0.1:8200\"} 1",
        ];
        for line in expected_lines {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        // A template has no expiry: no sample rather than a made-up zero.
        assert!(
            !text.contains("expiry_seconds{output=\"config\"}"),
            "{text}"
        );
        // Every sample line is `name{labels} value` or `name value`, each family declared once.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
        for name in [
            METRIC_EXPIRY,
            METRIC_LAST_RENDER,
            METRIC_FRESH,
            METRIC_RENDER_ERRORS,
            METRIC_AUTH_ERRORS,
            METRIC_REQUESTS,
            METRIC_SERVER,
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
    }

    #[test]
    fn database_sources_have_metrics() {
        let mut s = snapshot(vec![view("tls", Freshness::Fresh)]);
        s.databases = vec![
            db("main", Freshness::Fresh),
            db("pending", Freshness::Pending),
        ];
        s.databases[1].expires = None;
        let text = render_metrics(&s);
        for line in [
            "# TYPE warden_agent_database_lease_expiry_seconds gauge",
            "warden_agent_database_lease_expiry_seconds{database=\"main\"} 20",
            "warden_agent_database_fresh{database=\"main\"} 1",
            "warden_agent_database_fresh{database=\"pending\"} 0",
            "# TYPE warden_agent_database_issues_total counter",
            "warden_agent_database_issues_total{database=\"main\"} 2",
            "warden_agent_database_renewals_total{database=\"main\"} 5",
            "warden_agent_database_errors_total{database=\"main\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(
            !text.contains("expiry_seconds{database=\"pending\"}"),
            "{text}"
        );
    }

    #[test]
    fn expired_certificates_count_down_below_zero() {
        let mut v = view("tls", Freshness::Failed);
        v.not_after = Some(NOW - time::Duration::seconds(90));
        let text = render_metrics(&snapshot(vec![v]));
        assert!(
            text.contains("warden_agent_output_expiry_seconds{output=\"tls\"} -90\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("a\nb"), "a\\nb");
        let text = render_metrics(&snapshot(vec![view("we\"ird", Freshness::Fresh)]));
        assert!(text.contains("{output=\"we\\\"ird\"}"), "{text}");
    }
}
