//! The page from hand-made data: ordering, escaping, the timeline. (The end-to-end test with a
//! real lab and headless Chromium is `crates/warden/tests/dashboard.rs`.)

use std::collections::BTreeMap;

use warden_registry::posture::{CredentialPosture, PurposePosture, Report};
use warden_spec::Status;

use super::{DashboardData, EnvDashboard, render};

fn purpose(id: &str, status: Status, expires_in: Option<i64>) -> PurposePosture {
    PurposePosture {
        purpose: id.to_owned(),
        owner: "<script>alert(1)</script>".to_owned(),
        tier: "vault_kv",
        delivery: "agent_file",
        evidence: "EV-X".to_owned(),
        status,
        credentials: vec![CredentialPosture {
            id: format!("app/secret/{id}"),
            identity: "app".to_owned(),
            kind: "secret",
            status,
            reason: "why & because".to_owned(),
            issued_at: Some(1_000),
            expires_at: expires_in.map(|d| 10_000 + d),
            rotation_due_at: None,
            source: "kv metadata",
            detail: BTreeMap::new(),
        }],
    }
}

#[test]
fn worst_first_then_soonest_and_everything_escaped() {
    let report = Report {
        env: "test".to_owned(),
        at: 10_000,
        purposes: vec![
            purpose("a-healthy", Status::Healthy, Some(100)),
            purpose("b-stale-late", Status::Stale, Some(5_000)),
            purpose("c-stale-soon", Status::Stale, Some(50)),
            purpose("d-expired", Status::Expired, Some(-10)),
        ],
        worst: Status::Expired,
        break_glass: Vec::new(),
    };
    let page = render(&DashboardData {
        at: 10_000,
        environments: vec![EnvDashboard {
            report,
            lease: None,
            jobs: Vec::new(),
            nodes: Vec::new(),
            sealed: Some(false),
            problems: Vec::new(),
        }],
    });
    assert!(page.starts_with("<!doctype html>"), "{page}");
    let pos = |s: &str| page.find(s).unwrap_or_else(|| panic!("{s} missing"));
    let order = [
        "data-purpose=\"d-expired\"",
        "data-purpose=\"c-stale-soon\"",
        "data-purpose=\"b-stale-late\"",
        "data-purpose=\"a-healthy\"",
    ];
    for w in order.windows(2) {
        assert!(pos(w[0]) < pos(w[1]), "{} before {}", w[0], w[1]);
    }
    assert!(!page.contains("<script"), "values are escaped");
    assert!(page.contains("&lt;script&gt;"));
    assert!(page.contains("<svg class=\"timeline\""));
    assert_eq!(
        page.matches("<circle").count(),
        4,
        "one expiry mark per credential"
    );
    assert!(page.contains("no leader: serve has not run here"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external asset"
    );
}
