//! The view model: what the template shows, computed here so the template only lays it out
//! (orderings, relative times, the timeline's coordinates).

use std::cmp::Reverse;

use serde::Serialize;
use warden_registry::posture::{PurposePosture, rfc3339};
use warden_spec::Status;

use super::{DashboardData, EnvDashboard};
use crate::record::Outcome;

/// Runs shown per environment in the history table.
const HISTORY: usize = 25;

#[derive(Serialize)]
pub(super) struct Page {
    at: String,
    worst: &'static str,
    envs: Vec<EnvView>,
}

#[derive(Serialize)]
struct EnvView {
    name: String,
    at: String,
    worst: &'static str,
    leader: Line,
    sealed: Line,
    nodes: Vec<NodeView>,
    problems: Vec<String>,
    counts: Vec<(String, usize)>,
    purposes: Vec<PurposeView>,
    timeline: Timeline,
    jobs: Vec<JobView>,
    history: Vec<RunView>,
    evidence: Vec<EvidenceView>,
    break_glass: Vec<String>,
}

/// A line of text and whether it is good news (the template marks the bad ones).
#[derive(Serialize)]
struct Line {
    text: String,
    ok: bool,
}

#[derive(Serialize)]
struct NodeView {
    id: String,
    address: String,
    role: &'static str,
}

#[derive(Serialize)]
struct PurposeView {
    id: String,
    status: &'static str,
    owner: String,
    tier: &'static str,
    evidence: String,
    next: String,
    credentials: Vec<CredView>,
}

#[derive(Serialize)]
struct CredView {
    id: String,
    status: &'static str,
    reason: String,
    issued: String,
    expires: String,
    due: String,
    source: &'static str,
}

#[derive(Serialize)]
struct Timeline {
    width: u32,
    height: u32,
    now_x: u32,
    label_x: u32,
    ticks: Vec<Tick>,
    lanes: Vec<Lane>,
}

#[derive(Serialize)]
struct Tick {
    x: u32,
    label: &'static str,
}

#[derive(Serialize)]
struct Lane {
    y: u32,
    label: String,
    status: &'static str,
    marks: Vec<Mark>,
}

#[derive(Serialize)]
struct Mark {
    x: u32,
    y: u32,
    /// "expires" (a circle) or "due" (a square): shape, not only colour, tells them apart.
    kind: &'static str,
    status: &'static str,
    title: String,
}

#[derive(Serialize)]
struct JobView {
    id: String,
    last: String,
    outcome: &'static str,
    failures: u32,
    next_attempt: String,
    total_runs: u64,
    running: bool,
}

#[derive(Serialize)]
struct RunView {
    when: String,
    ago: String,
    job: String,
    kind: &'static str,
    outcome: &'static str,
    duration: String,
    term: u64,
    holder: String,
    detail: String,
}

#[derive(Serialize)]
struct EvidenceView {
    id: String,
    purposes: Vec<String>,
    command: String,
}

pub(super) fn page(d: &DashboardData) -> Page {
    let envs: Vec<EnvView> = d.environments.iter().map(|e| env(e, d.at)).collect();
    let worst = d
        .environments
        .iter()
        .map(|e| e.report.worst)
        .max()
        .unwrap_or(Status::Healthy);
    Page {
        at: rfc3339(d.at),
        worst: worst.as_str(),
        envs,
    }
}

/// The soonest deadline of a purpose: the earliest expiry or rotation-due time of any of its
/// credentials.
fn next_deadline(p: &PurposePosture) -> Option<i64> {
    p.credentials
        .iter()
        .flat_map(|c| [c.expires_at, c.rotation_due_at])
        .flatten()
        .min()
}

/// Worst status first (the order of [`Status`], the same one posture's exit code uses), then
/// the soonest deadline, then the id: what needs a person comes first.
fn sort_key(p: &PurposePosture) -> (Reverse<Status>, bool, i64, String) {
    let next = next_deadline(p);
    (
        Reverse(p.status),
        next.is_none(),
        next.unwrap_or(i64::MAX),
        p.purpose.clone(),
    )
}

fn env(e: &EnvDashboard, now: i64) -> EnvView {
    let r = &e.report;
    let mut purposes: Vec<&PurposePosture> = r.purposes.iter().collect();
    purposes.sort_by_key(|p| sort_key(p));

    let mut counts: Vec<(String, usize)> = Status::ALL
        .iter()
        .rev()
        .map(|s| {
            (
                s.as_str().to_owned(),
                r.purposes.iter().filter(|p| p.status == *s).count(),
            )
        })
        .collect();
    counts.retain(|(_, n)| *n > 0);

    let purpose_views = purposes
        .iter()
        .map(|p| {
            let mut creds: Vec<_> = p.credentials.iter().collect();
            creds.sort_by_key(|c| (Reverse(c.status), c.expires_at.unwrap_or(i64::MAX)));
            PurposeView {
                id: p.purpose.clone(),
                status: p.status.as_str(),
                owner: p.owner.clone(),
                tier: p.tier,
                evidence: p.evidence.clone(),
                next: rel(next_deadline(p), now),
                credentials: creds
                    .into_iter()
                    .map(|c| CredView {
                        id: c.id.clone(),
                        status: c.status.as_str(),
                        reason: c.reason.clone(),
                        issued: rel(c.issued_at, now),
                        expires: rel(c.expires_at, now),
                        due: rel(c.rotation_due_at, now),
                        source: c.source,
                    })
                    .collect(),
            }
        })
        .collect();

    let mut evidence: Vec<EvidenceView> = Vec::new();
    for p in &purposes {
        match evidence.iter_mut().find(|v| v.id == p.evidence) {
            Some(v) => v.purposes.push(p.purpose.clone()),
            None => evidence.push(EvidenceView {
                id: p.evidence.clone(),
                purposes: vec![p.purpose.clone()],
                command: format!("warden evidence export {} --env {}", p.evidence, r.env),
            }),
        }
    }
    evidence.sort_by(|a, b| a.id.cmp(&b.id));

    let now_ms = u64::try_from(now).unwrap_or(0).saturating_mul(1000);
    let leader = match &e.lease {
        None => Line {
            text: "no leader: serve has not run here".into(),
            ok: false,
        },
        Some(l) if l.expires_at_ms == 0 => Line {
            text: format!(
                "no leader: {} released the lease (term {})",
                l.holder, l.term
            ),
            ok: false,
        },
        Some(l) if l.expires_at_ms <= now_ms => Line {
            text: format!(
                "no leader: the lease of {} (term {}) expired {}",
                l.holder,
                l.term,
                rel(ms_to_s(l.expires_at_ms), now)
            ),
            ok: false,
        },
        Some(l) => Line {
            text: format!(
                "{} (term {}, leader since {})",
                l.holder,
                l.term,
                rel(ms_to_s(l.since_ms), now)
            ),
            ok: true,
        },
    };
    let sealed = match e.sealed {
        Some(true) => Line {
            text: "SEALED".into(),
            ok: false,
        },
        Some(false) => Line {
            text: "unsealed".into(),
            ok: true,
        },
        None => Line {
            text: "seal state not read".into(),
            ok: false,
        },
    };

    let mut jobs: Vec<JobView> = e
        .jobs
        .iter()
        .map(|j| {
            let last = j.last();
            JobView {
                id: j.job.clone(),
                last: last
                    .as_ref()
                    .map_or_else(|| "never".into(), |r| rel(ms_to_s(r.started_ms), now)),
                outcome: last.as_ref().map_or("none", |r| outcome(r.outcome)),
                failures: j.failures,
                next_attempt: if j.next_attempt_ms > now_ms {
                    rel(ms_to_s(j.next_attempt_ms), now)
                } else {
                    "-".into()
                },
                total_runs: j.total_runs,
                running: j.claim.is_some(),
            }
        })
        .collect();
    // Failing jobs first, like purposes.
    jobs.sort_by_key(|j| (Reverse(j.failures), j.id.clone()));

    let mut history: Vec<RunView> = e
        .jobs
        .iter()
        .flat_map(|j| {
            j.runs().into_iter().map(move |r| RunView {
                when: rfc3339(ms_to_s(r.started_ms).unwrap_or(0)),
                ago: rel(ms_to_s(r.started_ms), now),
                kind: job_kind(&j.job),
                job: j.job.clone(),
                outcome: outcome(r.outcome),
                duration: format!("{} ms", r.duration_ms),
                term: r.term,
                holder: r.holder,
                detail: r.detail,
            })
        })
        .collect();
    history.sort_by(|a, b| b.when.cmp(&a.when).then_with(|| a.job.cmp(&b.job)));
    history.truncate(HISTORY);

    EnvView {
        name: r.env.clone(),
        at: rfc3339(r.at),
        worst: r.worst.as_str(),
        leader,
        sealed,
        nodes: e
            .nodes
            .iter()
            .map(|n| NodeView {
                id: n.id.clone(),
                address: n.address.clone(),
                role: match (n.leader, n.voter) {
                    (true, _) => "leader",
                    (false, true) => "follower",
                    (false, false) => "non-voter",
                },
            })
            .collect(),
        problems: e.problems.clone(),
        counts,
        timeline: timeline(&purposes, now),
        purposes: purpose_views,
        jobs,
        history,
        evidence,
        break_glass: r
            .break_glass
            .iter()
            .map(|b| {
                format!(
                    "{} open until {} ({}), shares of {}",
                    b.id,
                    b.expires_at_utc(),
                    rel(Some(b.expires_at), now),
                    b.custodians.join(", ")
                )
            })
            .collect(),
    }
}

fn job_kind(id: &str) -> &'static str {
    if id.starts_with("rotate-") {
        "rotation"
    } else if id.starts_with("renew-") {
        "renewal"
    } else {
        "sweep"
    }
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Failed => "failed",
        Outcome::Refused => "refused",
        Outcome::Superseded => "superseded",
    }
}

fn ms_to_s(ms: u64) -> Option<i64> {
    i64::try_from(ms / 1000).ok()
}

/// "in 3d", "5m ago", "now", "-".
fn rel(t: Option<i64>, now: i64) -> String {
    match t {
        None => "-".to_owned(),
        Some(t) if t == now => "now".to_owned(),
        Some(t) if t > now => format!("in {}", warden_spec::rules::human(t - now)),
        Some(t) => format!("{} ago", warden_spec::rules::human(now - t)),
    }
}

// The timeline: a lane per purpose (same order as the list); the x axis is piecewise linear
// between ticks at now, 1h, 1d, 7d, 30d, 90d and 1y, so a credential due in a minute and one
// due in a quarter are both visible. Everything already past sits in the "overdue" band left
// of now, up to a day back.
const WIDTH: u32 = 660;
const LABEL_X: u32 = 6;
const PAST_X: u32 = 190;
const NOW_X: u32 = 250;
const RIGHT: u32 = 650;
const LANE: u32 = 22;
const TOP: u32 = 30;
const TICKS: [(i64, &str); 6] = [
    (3_600, "1h"),
    (86_400, "1d"),
    (7 * 86_400, "7d"),
    (30 * 86_400, "30d"),
    (90 * 86_400, "90d"),
    (365 * 86_400, "1y"),
];

fn tick_x(i: usize) -> u32 {
    let step = (RIGHT - NOW_X) / u32::try_from(TICKS.len()).unwrap_or(1);
    NOW_X + step * (u32::try_from(i).unwrap_or(0) + 1)
}

fn x_of(t: i64, now: i64) -> u32 {
    let d = t - now;
    if d <= 0 {
        // Up to a day back, linear; older than that pins to the left edge of the band.
        let back = (-d).min(86_400);
        let span = i64::from(NOW_X - 4 - PAST_X);
        return NOW_X - 4 - u32::try_from(back * span / 86_400).unwrap_or(0);
    }
    let mut lo_t = 0_i64;
    let mut lo_x = NOW_X;
    for (i, (secs, _)) in TICKS.iter().enumerate() {
        let hi_x = tick_x(i);
        if d <= *secs {
            let frac = (d - lo_t) * i64::from(hi_x - lo_x) / (*secs - lo_t).max(1);
            return lo_x + u32::try_from(frac).unwrap_or(0);
        }
        lo_t = *secs;
        lo_x = hi_x;
    }
    RIGHT
}

fn timeline(purposes: &[&PurposePosture], now: i64) -> Timeline {
    let lanes: Vec<Lane> = purposes
        .iter()
        .zip(0_u32..)
        .map(|(p, i)| {
            let y = TOP + i * LANE + LANE / 2;
            let mut marks = Vec::new();
            for c in &p.credentials {
                for (t, kind) in [(c.expires_at, "expires"), (c.rotation_due_at, "due")] {
                    if let Some(t) = t {
                        marks.push(Mark {
                            x: x_of(t, now),
                            y,
                            kind,
                            status: c.status.as_str(),
                            title: format!(
                                "{} {kind} {} ({})",
                                c.id,
                                rel(Some(t), now),
                                rfc3339(t)
                            ),
                        });
                    }
                }
            }
            Lane {
                y,
                label: p.purpose.clone(),
                status: p.status.as_str(),
                marks,
            }
        })
        .collect();
    let n = u32::try_from(lanes.len()).unwrap_or(0);
    Timeline {
        width: WIDTH,
        height: TOP + n * LANE + 12,
        now_x: NOW_X,
        label_x: LABEL_X,
        ticks: TICKS
            .iter()
            .enumerate()
            .map(|(i, (_, label))| Tick {
                x: tick_x(i),
                label,
            })
            .collect(),
        lanes,
    }
}

/// HTML escaping for the one place outside the template (the error page).
pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}
