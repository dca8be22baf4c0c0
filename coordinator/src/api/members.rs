//! `POST /api/cluster/nodes` and `DELETE /api/cluster/nodes/{id}`: membership changes of
//! the raft cluster (admins only), proposed on the leader and answered once applied.
//!
//! Refused so the cluster cannot talk itself out of its quorum by mistake: a node is
//! added only if it answers on its API address as that node (it runs with `--join`),
//! and a node removes neither itself nor the last voter.

use std::net::SocketAddr;
use std::time::Duration;

use salvo::Request;
use salvo::http::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::Api;
use crate::cluster::ProposeError;
use crate::scheduler::SubmitError;

/// A membership request is a few addresses.
const MAX_BODY_BYTES: usize = 4096;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNode {
    id: u64,
    /// host:port of its raft peer link (UDP).
    raft: String,
    /// host:port of its HTTP API.
    api: String,
}

fn addr(field: &str, value: &str) -> Result<SocketAddr, ApiError> {
    value.parse().map_err(|_| ApiError::InvalidField(format!("{field} must be an address ip:port, not {value:?}")))
}

fn unavailable(err: SubmitError) -> ApiError {
    match err {
        SubmitError::Unavailable(ProposeError::NotLeader { leader }) => {
            let leader = leader.map_or("unknown".to_owned(), |l| format!("node {l}"));
            ApiError::NotCommitted(format!("membership changes are made on the leader ({leader}); ask it"))
        }
        SubmitError::Unavailable(_) => ApiError::NotCommitted(err.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

pub(super) async fn add(api: &Api, req: &mut Request) -> Result<(StatusCode, Value), ApiError> {
    let body = req.payload_with_max_size(MAX_BODY_BYTES).await.map_err(|e| ApiError::BadBody(e.to_string()))?;
    let node: NewNode = serde_json::from_slice(body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let raft = addr("raft", &node.raft)?;
    let api_addr = addr("api", &node.api)?;
    if node.id == 0 {
        return Err(ApiError::InvalidField("id must not be 0".into()));
    }
    let status = api.scheduler.cluster_status();
    if status.voters.contains(&node.id) {
        return Err(ApiError::Conflict(format!("node {} is a member already", node.id)));
    }
    // A voter that never shows up would count against the quorum: it must be running.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().map_err(|e| ApiError::Internal(e.to_string()))?;
    let answer = client.get(format!("http://{api_addr}/api/cluster/self")).send().await;
    let id = match answer {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok().and_then(|v| v["id"].as_u64()),
        _ => None,
    };
    if id != Some(node.id) {
        return Err(ApiError::Conflict(format!(
            "no coordinator {} answers on {api_addr}: start it first (serve --node-id {} --join ...)",
            node.id, node.id
        )));
    }
    let voters = api.scheduler.add_node(node.id, raft, api_addr.to_string()).await.map_err(unavailable)?;
    tracing::info!(node = node.id, %raft, api = %api_addr, ?voters, "node added to the cluster");
    Ok((StatusCode::OK, json!({ "voters": voters })))
}

pub(super) async fn remove(api: &Api, req: &mut Request) -> Result<(StatusCode, Value), ApiError> {
    let raw = req.param::<String>("id").unwrap_or_default();
    let id: u64 = raw.parse().map_err(|_| ApiError::InvalidField(format!("node id {raw:?} is not a number")))?;
    let status = api.scheduler.cluster_status();
    if !status.voters.contains(&id) {
        return Err(ApiError::Conflict(format!("node {id} is not a member")));
    }
    if id == status.id || status.voters.len() < 2 {
        return Err(ApiError::Conflict(format!("node {id} cannot remove itself: ask another member")));
    }
    let voters = api.scheduler.remove_node(id).await.map_err(unavailable)?;
    tracing::info!(node = id, ?voters, "node removed from the cluster");
    Ok((StatusCode::OK, json!({ "voters": voters })))
}
