//! Reading one environment's dashboard data from OpenBao: posture, the lease, the job
//! records, the raft nodes and the seal state. Reads only. Posture is required (without it
//! there is no page); the rest is best effort and a failure becomes a line on the page.

use serde_json::Value;
use warden_bao::Client;
use warden_registry::posture;
use warden_spec::naming;
use warden_spec::{Environment, Spec};

use super::{EnvDashboard, Node};
use crate::error::{Error, Result};
use crate::jobs::jobs_for;
use crate::kvrec;
use crate::lease::LeaseRecord;
use crate::record::JobRecord;

/// The stored lease of `env`, if serve ever took it (a released lease reads as expiry 0).
pub async fn read_lease(client: &Client, env: &str) -> Result<Option<LeaseRecord>> {
    let entry = naming::serve_lease();
    match kvrec::read(client, env, &entry).await? {
        None => Ok(None),
        Some((Value::Null, _)) => Ok(None),
        Some((data, _)) => serde_json::from_value(data)
            .map(Some)
            .map_err(|e| Error::Record {
                env: env.to_owned(),
                path: entry.data_path(),
                reason: e.to_string(),
            }),
    }
}

/// The job records of every job `env` has under `spec` that exist (a job never run has none).
pub async fn read_job_records(
    client: &Client,
    spec: &Spec,
    env: &Environment,
) -> Result<Vec<JobRecord>> {
    let mut out = Vec::new();
    for job in jobs_for(spec, env) {
        let entry = naming::serve_job_record(&job.id);
        if let Some((data, _)) = kvrec::read(client, env.name.as_str(), &entry).await?
            && !data.is_null()
        {
            let rec = serde_json::from_value(data).map_err(|e| Error::Record {
                env: env.name.to_string(),
                path: entry.data_path(),
                reason: e.to_string(),
            })?;
            out.push(rec);
        }
    }
    Ok(out)
}

/// One environment's column as of `now` (Unix seconds).
pub async fn collect_env(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    now: i64,
) -> std::result::Result<EnvDashboard, posture::Error> {
    let report = posture::collect(client, spec, env, now).await?;
    let mut problems = Vec::new();
    let lease = read_lease(client, env.name.as_str())
        .await
        .unwrap_or_else(|e| {
            problems.push(format!("the serve lease: {e}"));
            None
        });
    let jobs = read_job_records(client, spec, env)
        .await
        .unwrap_or_else(|e| {
            problems.push(format!("serve's job records: {e}"));
            Vec::new()
        });
    let sealed = match client.seal_status().await {
        Ok(s) => Some(s.sealed),
        Err(e) => {
            problems.push(format!("the seal status: {e}"));
            None
        }
    };
    let nodes = match client.read("sys/storage/raft/configuration").await {
        Ok(s) => nodes_of(s.data.as_ref()),
        Err(e) => {
            problems.push(format!("the raft configuration: {e}"));
            Vec::new()
        }
    };
    Ok(EnvDashboard {
        report,
        lease,
        jobs,
        nodes,
        sealed,
        problems,
    })
}

fn nodes_of(data: Option<&Value>) -> Vec<Node> {
    data.and_then(|d| d["config"]["servers"].as_array())
        .map(|servers| {
            servers
                .iter()
                .map(|s| Node {
                    id: s["node_id"].as_str().unwrap_or("?").to_owned(),
                    address: s["address"].as_str().unwrap_or("?").to_owned(),
                    leader: s["leader"].as_bool().unwrap_or(false),
                    voter: s["voter"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default()
}
