//! `GET /api/cluster` (every node, as this node sees the cluster) and
//! `GET /api/cluster/self` (this node only, what the others ask each other).
//!
//! A peer's row comes from its own `/api/cluster/self`, asked with a short timeout: a peer
//! that does not answer is shown `reachable: false` with its last known id and address.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::scheduler::Scheduler;

/// One configured peer: its raft id and its HTTP API address (host:port).
#[derive(Debug, Clone)]
pub struct PeerApi {
    pub id: u64,
    pub api: String,
}

/// `GET /api/cluster` and `GET /api/cluster/self`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClusterRoute {
    Whole,
    Own,
}

#[derive(Clone)]
pub struct ClusterApi {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterApi").field("api", &self.inner.api).field("peers", &self.inner.peers).finish_non_exhaustive()
    }
}

struct Inner {
    scheduler: Scheduler,
    api: String,
    peers: Vec<PeerApi>,
    client: Option<reqwest::Client>,
}

impl ClusterApi {
    /// `api` is this node's own API address, shown in its row.
    pub fn new(scheduler: Scheduler, api: String, peers: Vec<PeerApi>) -> ClusterApi {
        let client = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().ok();
        ClusterApi { inner: Arc::new(Inner { scheduler, api, peers, client }) }
    }

    /// The answer of one of the routes (entries of `api::routes`).
    pub(crate) async fn answer(&self, route: ClusterRoute) -> Value {
        match route {
            ClusterRoute::Whole => self.whole().await,
            ClusterRoute::Own => self.own(),
        }
    }

    fn own(&self) -> Value {
        let s = self.inner.scheduler.cluster_status();
        json!({
            "id": s.id,
            "address": self.inner.api,
            "role": s.role,
            "term": s.term,
            "leader": s.leader,
            "commit": s.commit,
            "applied": s.applied,
            "reachable": true,
        })
    }

    async fn whole(&self) -> Value {
        let me = self.own();
        let mut nodes = vec![me.clone()];
        let asks = self.inner.peers.iter().map(|peer| self.ask(peer));
        nodes.extend(futures_util::future::join_all(asks).await);
        nodes.sort_by_key(|n| n["id"].as_u64());
        // Our own view of the leader; a peer that says it leads a later term knows better.
        let leader = nodes
            .iter()
            .filter(|n| n["role"] == "leader")
            .max_by_key(|n| n["term"].as_u64())
            .map(|n| n["id"].clone())
            .unwrap_or_else(|| me["leader"].clone());
        json!({ "leader": leader, "nodes": nodes })
    }

    async fn ask(&self, peer: &PeerApi) -> Value {
        let unreachable = json!({ "id": peer.id, "address": peer.api, "reachable": false });
        let Some(client) = &self.inner.client else { return unreachable };
        let url = format!("http://{}/api/cluster/self", peer.api);
        let answer = match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
            _ => None,
        };
        match answer {
            // Only the shape we expect; the id must be the configured one.
            Some(v) if v["id"].as_u64() == Some(peer.id) => v,
            _ => unreachable,
        }
    }
}

