//! Snapshots for the health modules' unit tests: one certificate output, fixed times.

use time::OffsetDateTime;
use time::macros::datetime;

use super::view::{AuthView, DatabaseView, Freshness, OutputView, Snapshot};

/// When every fixture snapshot is taken.
pub(crate) const NOW: OffsetDateTime = datetime!(2030-01-01 00:00:00 UTC);

/// A certificate output expiring in 72 h, rendered 30 s ago.
pub(crate) fn view(name: &str, state: Freshness) -> OutputView {
    OutputView {
        name: name.to_owned(),
        kind: "certificate".to_owned(),
        state,
        serial: Some("0a:1b".to_owned()),
        not_after: Some(NOW + time::Duration::hours(72)),
        last_render: Some(NOW - time::Duration::seconds(30)),
        last_change: Some(NOW - time::Duration::seconds(30)),
        next_due: Some(NOW + time::Duration::hours(48)),
        renders: 1,
        changes: 1,
        render_errors: 0,
        last_error: None,
        last_reload_ok: None,
        repairs: 0,
    }
}

/// The agent `billing` with these outputs, 7 requests and 1 auth error.
pub(crate) fn snapshot(outputs: Vec<OutputView>) -> Snapshot {
    Snapshot {
        identity: "billing".to_owned(),
        taken_at: NOW,
        started_at: Some(NOW - time::Duration::minutes(5)),
        auth: AuthView::default(),
        outputs,
        requests_total: 7,
        auth_errors_total: 1,
        databases: Vec::new(),
        clock_skew_seconds: None,
        server: Some("https://127.0.0.1:8200".to_owned()),
    }
}

/// A database source whose lease ends in 20 s.
pub(crate) fn db(name: &str, state: Freshness) -> DatabaseView {
    DatabaseView {
        name: name.to_owned(),
        path: "postgres/creds/billing".to_owned(),
        state,
        generation: 2,
        expires: Some(NOW + time::Duration::seconds(20)),
        final_expiry: false,
        next_step: Some("renew".to_owned()),
        next_due: Some(NOW + time::Duration::seconds(13)),
        issues: 2,
        renewals: 5,
        errors: 1,
        last_error: None,
    }
}
