//! The routes and the JSON each answers. Every shape here is in `openapi.json`; change both
//! together (the end-to-end test checks the live answers against the document).

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use warden_spec::naming;

use super::ApiState;
use crate::clock::{server_now, unix_ms};
use crate::jobs::{Job, JobKind, jobs_for};
use crate::kvrec;
use crate::lease::LeaseRecord;
use crate::record::{Claim, JobRecord, Run};

/// The OpenAPI 3 document, served as is.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

type Reply = Response<Full<Bytes>>;

pub(super) async fn route(req: &Request<Incoming>, state: &ApiState) -> Reply {
    let has_body = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
        || req.headers().contains_key(hyper::header::TRANSFER_ENCODING);
    if has_body {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "this API takes no request body",
            "send the request without a body",
        );
    }
    let path = req.uri().path();
    let get_only = |reply: Reply| {
        if req.method() == Method::GET {
            reply
        } else {
            method_not_allowed("GET")
        }
    };
    match path {
        "/openapi.json" => get_only(raw_json(StatusCode::OK, OPENAPI.to_owned())),
        "/v1/leader" if req.method() == Method::GET => leader(state).await,
        "/v1/jobs" if req.method() == Method::GET => jobs(state).await,
        "/v1/registry" if req.method() == Method::GET => registry(state),
        "/v1/posture" if req.method() == Method::GET => posture(state).await,
        "/dashboard" if req.method() == Method::GET => dashboard(state).await,
        "/v1/leader" | "/v1/jobs" | "/v1/registry" | "/v1/posture" | "/dashboard" => {
            method_not_allowed("GET")
        }
        _ => match path.strip_prefix("/v1/jobs/") {
            Some(rest) => jobs_route(req.method(), state, rest).await,
            None => error(
                StatusCode::NOT_FOUND,
                &format!("no route {path}"),
                "GET /openapi.json lists the routes",
            ),
        },
    }
}

/// `GET /v1/leader`: the lease record and whether this replica holds it now.
async fn leader(state: &ApiState) -> Reply {
    let env = state.env.name.to_string();
    let lease = match kvrec::read(&state.client, &env, &naming::serve_lease()).await {
        Ok(Some((Value::Null, _)) | None) => None,
        Ok(Some((data, _))) => match serde_json::from_value::<LeaseRecord>(data) {
            Ok(l) => Some(l),
            Err(e) => return bad_record(&format!("the lease record: {e}")),
        },
        Err(e) => return upstream(&e),
    };
    let now_ms = unix_ms(server_now(&state.client));
    let is_leader = lease
        .as_ref()
        .is_some_and(|l| mine(state, l) && l.expires_at_ms > now_ms);
    json_reply(
        StatusCode::OK,
        &json!({
            "env": env,
            "replica": state.replica,
            "is_leader": is_leader,
            "server_time_ms": now_ms,
            "lease": lease,
        }),
    )
}

/// One job as the API shows it: its record with the runs as a list.
#[derive(Serialize)]
struct JobView {
    job: String,
    kind: &'static str,
    failures: u32,
    next_attempt_ms: u64,
    claim: Option<Claim>,
    total_runs: u64,
    runs: Vec<Run>,
}

fn kind(job: &Job) -> &'static str {
    match job.kind {
        JobKind::RotateSigningKey { .. } => "rotate-signing-key",
        JobKind::RenewDomain { .. } => "renew-domain",
        JobKind::Posture => "posture",
        JobKind::Backup { .. } => "backup",
        JobKind::Drill { .. } => "dr-drill",
    }
}

async fn view(state: &ApiState, job: &Job) -> Result<JobView, Reply> {
    let env = state.env.name.to_string();
    let entry = naming::serve_job_record(&job.id);
    let rec = match kvrec::read(&state.client, &env, &entry).await {
        Ok(Some((Value::Null, _)) | None) => JobRecord::default(),
        Ok(Some((data, _))) => serde_json::from_value::<JobRecord>(data)
            .map_err(|e| bad_record(&format!("{}: {e}", entry.data_path())))?,
        Err(e) => return Err(upstream(&e)),
    };
    Ok(JobView {
        job: job.id.clone(),
        kind: kind(job),
        failures: rec.failures,
        next_attempt_ms: rec.next_attempt_ms,
        runs: rec.runs(),
        claim: rec.claim,
        total_runs: rec.total_runs,
    })
}

/// `GET /v1/jobs`: every job of the environment with its record (empty before its first run).
async fn jobs(state: &ApiState) -> Reply {
    let mut out = Vec::new();
    for job in jobs_for(&state.spec, &state.env) {
        match view(state, &job).await {
            Ok(v) => out.push(v),
            Err(reply) => return reply,
        }
    }
    json_reply(
        StatusCode::OK,
        &json!({ "env": state.env.name.to_string(), "jobs": out }),
    )
}

/// `GET /v1/jobs/{job}`: one job; its id's slashes may be sent as they are or as `%2F`.
async fn job(state: &ApiState, raw: &str) -> Reply {
    let Some(id) = percent_decode(raw) else {
        return error(
            StatusCode::NOT_FOUND,
            "the job id is not valid percent-encoded UTF-8",
            "GET /v1/jobs lists the job ids",
        );
    };
    let jobs = jobs_for(&state.spec, &state.env);
    let Some(job) = jobs.iter().find(|j| j.id == id) else {
        return no_job(state, raw);
    };
    match view(state, job).await {
        Ok(v) => json_reply(StatusCode::OK, &v),
        Err(reply) => reply,
    }
}

/// `/v1/jobs/{job}` (GET) and `/v1/jobs/{job}/run` (POST). A job whose id itself ends in
/// `/run` (a signing key named `run`) is still found by GET.
async fn jobs_route(method: &Method, state: &ApiState, rest: &str) -> Reply {
    let trigger = rest.strip_suffix("/run");
    match (method, trigger) {
        (&Method::POST, Some(id)) => run(state, id).await,
        (&Method::GET, Some(_)) if find(state, rest).is_none() => method_not_allowed("POST"),
        (&Method::GET, _) => job(state, rest).await,
        (_, Some(_)) => method_not_allowed("POST"),
        (_, None) => method_not_allowed("GET"),
    }
}

/// The job `raw` (percent-encoded) names, if the environment has it.
fn find(state: &ApiState, raw: &str) -> Option<Job> {
    let id = percent_decode(raw)?;
    jobs_for(&state.spec, &state.env)
        .into_iter()
        .find(|j| j.id == id)
}

fn no_job(state: &ApiState, raw: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "no job `{}` in {}",
            percent_decode(raw).unwrap_or_else(|| raw.to_owned()),
            state.env.name
        ),
        "GET /v1/jobs lists the job ids",
    )
}

/// `POST /v1/jobs/{job}/run`: the leader checks the job now (past its backoff wait) and runs
/// it if it is due; any other replica answers 409 with the holder's id.
async fn run(state: &ApiState, raw: &str) -> Reply {
    let Some(job) = find(state, raw) else {
        return no_job(state, raw);
    };
    let env = state.env.name.to_string();
    let lease = match kvrec::read(&state.client, &env, &naming::serve_lease()).await {
        Ok(Some((Value::Null, _)) | None) => None,
        Ok(Some((data, _))) => match serde_json::from_value::<LeaseRecord>(data) {
            Ok(l) => Some(l),
            Err(e) => return bad_record(&format!("the lease record: {e}")),
        },
        Err(e) => return upstream(&e),
    };
    let now_ms = unix_ms(server_now(&state.client));
    let live = lease.filter(|l| l.expires_at_ms > now_ms);
    match live {
        Some(l) if mine(state, &l) => {
            state.trigger.ask(&job.id);
            json_reply(
                StatusCode::ACCEPTED,
                &json!({
                    "env": env,
                    "job": job.id,
                    "leader": state.replica,
                    "accepted": true,
                }),
            )
        }
        other => {
            let leader = other.map(|l| l.holder);
            json_reply(
                StatusCode::CONFLICT,
                &json!({
                    "error": format!("replica `{}` does not hold the lease in {env}: only the leader runs jobs", state.replica),
                    "hint": match &leader {
                        Some(h) => format!("send the request to `{h}`, the leader"),
                        None => "no replica holds the lease now; retry in a few seconds".to_owned(),
                    },
                    "leader": leader,
                }),
            )
        }
    }
}

/// Whether this process holds `lease` (the same `--id` in another process does not).
fn mine(state: &ApiState, lease: &LeaseRecord) -> bool {
    lease.holder == state.replica && lease.instance == state.instance
}

/// `GET /v1/posture`: posture computed now, as `warden posture` does.
async fn posture(state: &ApiState) -> Reply {
    let now_s = i64::try_from(unix_ms(server_now(&state.client)) / 1000).unwrap_or(i64::MAX);
    match warden_registry::posture::collect(&state.client, &state.spec, &state.env, now_s).await {
        Ok(report) => json_reply(StatusCode::OK, &report),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            &e.to_string(),
            "OpenBao could not be read; see `warden status` for the environment",
        ),
    }
}

/// `GET /dashboard`: the posture dashboard of this environment, rendered now from the same data
/// as `warden dashboard` (docs/serve.md#dashboard). HTML without script, so the page is served
/// with a CSP that forbids any.
async fn dashboard(state: &ApiState) -> Reply {
    let now_s = i64::try_from(unix_ms(server_now(&state.client)) / 1000).unwrap_or(i64::MAX);
    match crate::dashboard::collect_env(&state.client, &state.spec, &state.env, now_s).await {
        Ok(env) => {
            let page = crate::dashboard::render(&crate::dashboard::DashboardData {
                at: now_s,
                environments: vec![env],
            });
            let mut r = Response::new(Full::new(Bytes::from(page)));
            let h = r.headers_mut();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(
                hyper::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
            );
            r
        }
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            &e.to_string(),
            "OpenBao could not be read; see `warden status` for the environment",
        ),
    }
}

/// `GET /v1/registry`: the purposes of the spec (from the spec, no OpenBao read).
fn registry(state: &ApiState) -> Reply {
    let purposes: Vec<Value> = state
        .spec
        .purposes
        .iter()
        .map(|p| {
            json!({
                "id": p.id.as_str(),
                "description": p.description,
                "owner": p.owner,
                "tier": p.tier.as_str(),
                "delivery": p.delivery.as_str(),
                "evidence": p.evidence,
                "covers": p.covers,
                "revoked": p.revoked,
            })
        })
        .collect();
    json_reply(
        StatusCode::OK,
        &json!({ "env": state.env.name.to_string(), "purposes": purposes }),
    )
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn upstream(e: &crate::Error) -> Reply {
    error(
        StatusCode::BAD_GATEWAY,
        &e.to_string(),
        "OpenBao could not be read; see `warden status` for the environment",
    )
}

/// The answer when a route did not finish within [`super::ANSWER_TIMEOUT`].
pub(super) fn timed_out() -> Reply {
    error(
        StatusCode::GATEWAY_TIMEOUT,
        &format!(
            "OpenBao did not answer within {} s",
            super::ANSWER_TIMEOUT.as_secs()
        ),
        "OpenBao is slow, frozen or unreachable: check `warden status` for the environment, then retry",
    )
}

fn bad_record(what: &str) -> Reply {
    error(
        StatusCode::BAD_GATEWAY,
        &format!("{what} is not a record `warden serve` reads"),
        "delete it (`bao kv metadata delete`) and serve writes a fresh one",
    )
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        "GET /openapi.json lists the routes and their methods",
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

fn error(status: StatusCode, error: &str, hint: &str) -> Reply {
    json_reply(status, &json!({ "error": error, "hint": hint }))
}

fn json_reply(status: StatusCode, body: &impl Serialize) -> Reply {
    raw_json(
        status,
        serde_json::to_string(body).expect("API answers serialize"),
    )
}

fn raw_json(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_decode_with_or_without_escapes() {
        assert_eq!(
            percent_decode("rotate-signing-key%2Fissuer/jwt").as_deref(),
            Some("rotate-signing-key/issuer/jwt")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn the_openapi_document_is_json_with_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        for p in [
            "/v1/leader",
            "/v1/jobs",
            "/v1/jobs/{job}",
            "/v1/jobs/{job}/run",
            "/v1/registry",
            "/v1/posture",
            "/dashboard",
            "/openapi.json",
        ] {
            assert!(doc["paths"][p].is_object(), "{p}");
        }
    }
}
