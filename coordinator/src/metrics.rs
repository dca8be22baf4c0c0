//! Prometheus metrics of the coordinator, served as text on `GET /metrics` of the API port.
//!
//! One `Registry` per `Metrics` (not the crate's global default), so several coordinators
//! in one test process never share counters. Labels are kept to small, bounded sets:
//! language, verdict, agent id, route *template*, method and status code — never a
//! submission id or a raw path.
//!
//! Counters are bumped where things happen (scheduler, link, HTTP hoop); gauges that
//! describe the judge state (queue, slots, heartbeat ages) are computed at scrape time
//! from a snapshot of the state machine, which itself stays free of clocks and I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use protocol::Verdict;
use salvo::http::StatusCode;
use salvo::http::header::{CONTENT_TYPE, HeaderValue};
use salvo::{Depot, FlowCtrl, Handler, Request, Response, async_trait};

use crate::judge::{Effect, JudgeState, SubmissionId};
use crate::scheduler::Scheduler;

/// Every verdict, so each language×verdict series exists (at 0) from the start: dashboards
/// and alerts then see a flat line instead of "no data" until the first such verdict.
const VERDICTS: [Verdict; 8] =
    [Verdict::AC, Verdict::WA, Verdict::TLE, Verdict::MLE, Verdict::RE, Verdict::OLE, Verdict::CE, Verdict::IE];

/// Kinds of `judge_link_errors_total`, pre-created at 0 for the same reason.
pub const LINK_ERROR_KINDS: [&str; 6] =
    ["tls_handshake", "refused", "protocol", "heartbeat_timeout", "job_stream", "dispatch"];

/// Seconds; from a fast compile-free run to the longest wall limit (60 s) and beyond.
const DURATION_BUCKETS: [f64; 14] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];
/// Seconds; HTTP handlers answer from memory, so mostly sub-millisecond.
const HTTP_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("registering a metric: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("the text encoding is not UTF-8: {0}")]
    Encoding(#[from] std::string::FromUtf8Error),
}

/// Cheap to clone; clones share one registry.
/// Why a WebSocket client missed a frame: a step dropped under back-pressure, or the
/// frame whose full queue closed the client.
pub const WS_DROP_REASONS: [&str; 2] = ["step_dropped", "client_closed"];

/// Keys of `judge_http_rate_limited_total`.
pub const RATE_LIMIT_SCOPES: [&str; 2] = ["user", "ip"];

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    accepted: IntCounterVec,
    finished: IntCounterVec,
    refused: IntCounterVec,
    requeued: IntCounter,
    queue_wait: HistogramVec,
    turnaround: HistogramVec,
    queue_length: IntGauge,
    queue_oldest_age: Gauge,
    running: IntGauge,
    agents_connected: IntGauge,
    slots: IntGauge,
    slots_busy: IntGauge,
    agent_leases: IntGaugeVec,
    heartbeat_age: GaugeVec,
    link_errors: IntCounterVec,
    http: HistogramVec,
    ws_clients: IntGauge,
    ws_dropped: IntCounterVec,
    rate_limited: IntCounterVec,
    db_pool: IntGaugeVec,
    db_pool_max: IntGauge,
    db_pool_waiting: IntGauge,
    db_pool_wait: prometheus::Histogram,
    db_pool_errors: IntCounter,
    db_queries: IntCounterVec,
    db_query_errors: IntCounterVec,
    /// The store whose pool the gauges show, once attached.
    store: std::sync::OnceLock<crate::store::Store>,
    /// When each connected agent was last heard of (handshake or heartbeat).
    last_heard: Mutex<HashMap<String, Instant>>,
    raft_term: IntGauge,
    raft_leader: IntGauge,
    raft_role: IntGaugeVec,
    raft_commit: IntGauge,
    raft_applied: IntGauge,
    raft_proposals: IntCounter,
    raft_leader_changes: IntCounter,
}

/// Values of `judge_raft_role`'s label; the current one is 1, the others 0.
const RAFT_ROLES: [&str; 4] = ["leader", "follower", "candidate", "stopped"];

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
}

impl Metrics {
    /// All coordinator metrics in a fresh registry; `languages` pre-creates per-language series.
    pub fn new(languages: &[String]) -> Result<Metrics, MetricsError> {
        let link_errors = IntCounterVec::new(
            opts("judge_link_errors_total", "Errors on the agents' QUIC link, by kind."),
            &["kind"],
        )?;
        let registry = Registry::new();
        let inner = Inner {
            accepted: IntCounterVec::new(
                opts("judge_submissions_accepted_total", "Submissions accepted into the queue, by language."),
                &["language"],
            )?,
            finished: IntCounterVec::new(
                opts(
                    "judge_submissions_finished_total",
                    "Submissions judged to a final verdict, by language and verdict.",
                ),
                &["language", "verdict"],
            )?,
            refused: IntCounterVec::new(
                opts("judge_submissions_refused_total", "Valid submissions refused by the scheduler, by reason."),
                &["reason"],
            )?,
            requeued: IntCounter::with_opts(opts(
                "judge_submissions_requeued_total",
                "Running submissions put back in the queue (agent lost, stream failed).",
            ))?,
            queue_wait: histogram(
                "judge_queue_wait_seconds",
                "Time from acceptance to being handed to an agent, by language.",
                &DURATION_BUCKETS,
                &["language"],
            )?,
            turnaround: histogram(
                "judge_submission_duration_seconds",
                "Time from acceptance to the final verdict, by language.",
                &DURATION_BUCKETS,
                &["language"],
            )?,
            queue_length: IntGauge::with_opts(opts("judge_queue_length", "Submissions waiting for an agent."))?,
            queue_oldest_age: Gauge::with_opts(opts(
                "judge_queue_oldest_age_seconds",
                "Age of the oldest queued submission; 0 when the queue is empty.",
            ))?,
            running: IntGauge::with_opts(opts(
                "judge_submissions_running",
                "Submissions being judged on an agent now.",
            ))?,
            agents_connected: IntGauge::with_opts(opts(
                "judge_agents_connected",
                "Agents registered with this coordinator.",
            ))?,
            slots: IntGauge::with_opts(opts("judge_slots", "Judging slots of all connected agents."))?,
            slots_busy: IntGauge::with_opts(opts("judge_slots_busy", "Slots holding a submission's lease."))?,
            agent_leases: IntGaugeVec::new(
                opts("judge_agent_leases", "Submissions leased to each connected agent."),
                &["agent"],
            )?,
            heartbeat_age: GaugeVec::new(
                opts("judge_agent_heartbeat_age_seconds", "Time since each connected agent was last heard of."),
                &["agent"],
            )?,
            link_errors,
            http: histogram(
                "judge_http_request_duration_seconds",
                "HTTP API request latency, by method, route template and status code.",
                &HTTP_BUCKETS,
                &["method", "route", "status"],
            )?,
            ws_clients: IntGauge::with_opts(opts("judge_ws_clients", "WebSocket (/ws) clients connected now."))?,
            ws_dropped: IntCounterVec::new(
                opts(
                    "judge_ws_dropped_frames_total",
                    "Frames a slow WebSocket client did not get: steps dropped, or the frame whose full queue closed it.",
                ),
                &["reason"],
            )?,
            rate_limited: IntCounterVec::new(
                opts("judge_http_rate_limited_total", "Requests refused with 429 by the rate limit, by key (user or ip)."),
                &["scope"],
            )?,
            db_pool: IntGaugeVec::new(
                opts("judge_db_pool_connections", "PostgreSQL connections of the pool, by state (in_use, idle)."),
                &["state"],
            )?,
            db_pool_max: IntGauge::with_opts(opts(
                "judge_db_pool_max_connections",
                "Most PostgreSQL connections the pool opens.",
            ))?,
            db_pool_waiting: IntGauge::with_opts(opts(
                "judge_db_pool_waiting",
                "Requests waiting for a PostgreSQL connection now.",
            ))?,
            db_pool_wait: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "judge_db_pool_wait_seconds",
                    "Time to get a PostgreSQL connection from the pool (including opening one).",
                )
                .buckets(HTTP_BUCKETS.to_vec()),
            )?,
            db_pool_errors: IntCounter::with_opts(opts(
                "judge_db_pool_errors_total",
                "Failures to get a PostgreSQL connection (timeouts, connection errors).",
            ))?,
            db_queries: IntCounterVec::new(
                opts(
                    "judge_db_queries_total",
                    "PostgreSQL statements the store ran, by area (the store module: catalog, auth, projection, ...).",
                ),
                &["area"],
            )?,
            db_query_errors: IntCounterVec::new(
                opts(
                    "judge_db_query_errors_total",
                    "PostgreSQL statements that failed, by area and error class (SQLSTATE class name, \
                     connection_closed, or client).",
                ),
                &["area", "class"],
            )?,
            store: std::sync::OnceLock::new(),
            last_heard: Mutex::new(HashMap::new()),
            raft_term: IntGauge::with_opts(opts("judge_raft_term", "This coordinator's raft term."))?,
            raft_leader: IntGauge::with_opts(opts(
                "judge_raft_leader_id",
                "Raft node id of the leader as this coordinator knows it; 0 while it knows none.",
            ))?,
            raft_role: IntGaugeVec::new(opts("judge_raft_role", "1 for this coordinator's raft role, 0 for the others."), &["role"])?,
            raft_commit: IntGauge::with_opts(opts("judge_raft_commit_index", "Highest raft log index known committed here."))?,
            raft_applied: IntGauge::with_opts(opts(
                "judge_raft_applied_index",
                "Highest raft log index applied to the judge state here; reads lag the commit by the difference.",
            ))?,
            raft_proposals: IntCounter::with_opts(opts("judge_raft_proposals_total", "Commands proposed by this coordinator."))?,
            raft_leader_changes: IntCounter::with_opts(opts(
                "judge_raft_leader_changes_total",
                "Times this coordinator saw a new raft leader.",
            ))?,
            registry,
        };
        let build = IntGaugeVec::new(
            opts("judge_build_info", "Always 1; the running version in a label."),
            &["component", "version"],
        )?;
        build.with_label_values(&["coordinator", env!("CARGO_PKG_VERSION")]).set(1);
        let r = &inner.registry;
        r.register(Box::new(build))?;
        r.register(Box::new(inner.accepted.clone()))?;
        r.register(Box::new(inner.finished.clone()))?;
        r.register(Box::new(inner.refused.clone()))?;
        r.register(Box::new(inner.requeued.clone()))?;
        r.register(Box::new(inner.queue_wait.clone()))?;
        r.register(Box::new(inner.turnaround.clone()))?;
        r.register(Box::new(inner.queue_length.clone()))?;
        r.register(Box::new(inner.queue_oldest_age.clone()))?;
        r.register(Box::new(inner.running.clone()))?;
        r.register(Box::new(inner.agents_connected.clone()))?;
        r.register(Box::new(inner.slots.clone()))?;
        r.register(Box::new(inner.slots_busy.clone()))?;
        r.register(Box::new(inner.agent_leases.clone()))?;
        r.register(Box::new(inner.heartbeat_age.clone()))?;
        r.register(Box::new(inner.link_errors.clone()))?;
        r.register(Box::new(inner.http.clone()))?;
        r.register(Box::new(inner.ws_clients.clone()))?;
        r.register(Box::new(inner.ws_dropped.clone()))?;
        r.register(Box::new(inner.raft_term.clone()))?;
        r.register(Box::new(inner.raft_leader.clone()))?;
        r.register(Box::new(inner.raft_role.clone()))?;
        r.register(Box::new(inner.raft_commit.clone()))?;
        r.register(Box::new(inner.raft_applied.clone()))?;
        r.register(Box::new(inner.raft_proposals.clone()))?;
        r.register(Box::new(inner.raft_leader_changes.clone()))?;
        for role in RAFT_ROLES {
            inner.raft_role.with_label_values(&[role]).set(0);
        }
        r.register(Box::new(inner.rate_limited.clone()))?;
        r.register(Box::new(inner.db_pool.clone()))?;
        r.register(Box::new(inner.db_pool_max.clone()))?;
        r.register(Box::new(inner.db_pool_waiting.clone()))?;
        r.register(Box::new(inner.db_pool_wait.clone()))?;
        r.register(Box::new(inner.db_pool_errors.clone()))?;
        r.register(Box::new(inner.db_queries.clone()))?;
        r.register(Box::new(inner.db_query_errors.clone()))?;
        for scope in RATE_LIMIT_SCOPES {
            inner.rate_limited.with_label_values(&[scope]).inc_by(0);
        }
        for state in ["in_use", "idle"] {
            inner.db_pool.with_label_values(&[state]).set(0);
        }
        for reason in WS_DROP_REASONS {
            inner.ws_dropped.with_label_values(&[reason]).inc_by(0);
        }
        for language in languages {
            inner.accepted.with_label_values(&[language]).inc_by(0);
            for verdict in VERDICTS {
                inner.finished.with_label_values(&[language, verdict.as_str()]).inc_by(0);
            }
        }
        inner.refused.with_label_values(&["queue_full"]).inc_by(0);
        for kind in LINK_ERROR_KINDS {
            inner.link_errors.with_label_values(&[kind]).inc_by(0);
        }
        Ok(Metrics { inner: Arc::new(inner) })
    }

    /// A WebSocket client connected (`true`) or went away.
    pub fn ws_client(&self, connected: bool) {
        if connected { self.inner.ws_clients.inc() } else { self.inner.ws_clients.dec() }
    }

    /// A request refused by the rate limit; `scope` is one of `RATE_LIMIT_SCOPES`.
    pub fn rate_limited(&self, scope: &str) {
        self.inner.rate_limited.with_label_values(&[scope]).inc();
    }

    /// Shows `store`'s pool in the gauges, and has it time its connection waits. Once:
    /// a later store is ignored (a coordinator has one).
    pub fn attach_store(&self, store: &crate::store::Store) {
        store.observe_pool(crate::store::PoolObserver {
            wait: self.inner.db_pool_wait.clone(),
            errors: self.inner.db_pool_errors.clone(),
            queries: self.inner.db_queries.clone(),
            query_errors: self.inner.db_query_errors.clone(),
        });
        let _ = self.inner.store.set(store.clone());
    }

    /// A frame a slow WebSocket client did not get; `reason` is one of `WS_DROP_REASONS`.
    pub fn ws_dropped(&self, reason: &str) {
        self.inner.ws_dropped.with_label_values(&[reason]).inc();
    }

    /// An empty, unregistered set, for schedulers built without metrics (unit tests).
    pub fn unregistered() -> Metrics {
        match Metrics::new(&[]) {
            Ok(m) => m,
            // Metric names are constants validated by the tests; this is unreachable.
            Err(e) => unreachable!("constant metric definitions are valid: {e}"),
        }
    }

    pub(crate) fn accepted(&self, language: &str) {
        self.inner.accepted.with_label_values(&[language]).inc();
    }

    pub(crate) fn refused(&self, reason: &str) {
        self.inner.refused.with_label_values(&[reason]).inc();
    }

    pub(crate) fn link_error(&self, kind: &str) {
        self.inner.link_errors.with_label_values(&[kind]).inc();
    }

    /// `judge_link_errors_total{kind}`, for `AgentHub::bind_with_metrics` to count into.
    pub fn link_errors(&self) -> IntCounterVec {
        self.inner.link_errors.clone()
    }

    /// A submission was leased to an agent at `now_ms`.
    pub(crate) fn assigned(&self, state: &JudgeState, id: SubmissionId, now_ms: u64) {
        if let Some(sub) = state.get(id) {
            let wait = now_ms.saturating_sub(sub.accepted_ms) as f64 / 1000.0;
            self.inner.queue_wait.with_label_values(&[&sub.language]).observe(wait);
        }
    }

    /// Counts what an accepted command did; `subject` is the submission it named, if any.
    pub(crate) fn effect(&self, state: &JudgeState, subject: Option<SubmissionId>, effect: &Effect) {
        match effect {
            Effect::Completed { .. } => self.finished(state, subject),
            Effect::Requeued { requeued, gave_up } | Effect::AgentRegistered { requeued, gave_up } => {
                self.inner.requeued.inc_by(requeued.len() as u64);
                for id in gave_up {
                    self.finished(state, Some(*id));
                }
            }
            _ => {}
        }
    }

    fn finished(&self, state: &JudgeState, id: Option<SubmissionId>) {
        let Some(sub) = id.and_then(|id| state.get(id)) else { return };
        let (Some(verdict), Some(finished_ms)) = (sub.verdict(), sub.finished_ms) else { return };
        self.inner.finished.with_label_values(&[&sub.language, verdict.as_str()]).inc();
        let took = finished_ms.saturating_sub(sub.accepted_ms) as f64 / 1000.0;
        self.inner.turnaround.with_label_values(&[&sub.language]).observe(took);
    }

    /// The agent was heard of now (handshake or heartbeat).
    pub(crate) fn heard_from(&self, agent_id: &str) {
        let mut last = self.inner.last_heard.lock().unwrap_or_else(PoisonError::into_inner);
        last.insert(agent_id.to_owned(), Instant::now());
    }

    pub(crate) fn agent_gone(&self, agent_id: &str) {
        let mut last = self.inner.last_heard.lock().unwrap_or_else(PoisonError::into_inner);
        last.remove(agent_id);
    }

    pub(crate) fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.inner.http.with_label_values(&[method, route, &status.to_string()]).observe(seconds);
    }

    /// The text exposition of everything, with the state gauges refreshed from `scheduler`.
    pub fn render(&self, scheduler: &Scheduler) -> Result<String, MetricsError> {
        let snap = scheduler.metrics_snapshot();
        let m = &self.inner;
        m.queue_length.set(snap.queued as i64);
        m.queue_oldest_age.set(snap.oldest_queued_age_ms as f64 / 1000.0);
        m.running.set(snap.running as i64);
        m.agents_connected.set(snap.agents.len() as i64);
        m.slots.set(snap.agents.iter().map(|a| i64::from(a.slots)).sum());
        m.slots_busy.set(snap.agents.iter().map(|a| a.leases as i64).sum());
        // Rebuilt each scrape, so agents that left disappear instead of freezing at a value.
        m.agent_leases.reset();
        m.heartbeat_age.reset();
        let last = m.last_heard.lock().unwrap_or_else(PoisonError::into_inner);
        for agent in &snap.agents {
            m.agent_leases.with_label_values(&[&agent.id]).set(agent.leases as i64);
            if let Some(at) = last.get(&agent.id) {
                m.heartbeat_age.with_label_values(&[&agent.id]).set(at.elapsed().as_secs_f64());
            }
        }
        drop(last);
        let raft = scheduler.cluster_status();
        m.raft_term.set(i64::try_from(raft.term).unwrap_or(i64::MAX));
        m.raft_leader.set(raft.leader.map_or(0, |id| i64::try_from(id).unwrap_or(i64::MAX)));
        m.raft_commit.set(i64::try_from(raft.commit).unwrap_or(i64::MAX));
        m.raft_applied.set(i64::try_from(raft.applied).unwrap_or(i64::MAX));
        let role = serde_json::to_value(raft.role).ok();
        for r in RAFT_ROLES {
            m.raft_role.with_label_values(&[r]).set(i64::from(role.as_ref().and_then(|v| v.as_str()) == Some(r)));
        }
        // The node counts; the counters follow (they only ever grow, as the node's do).
        m.raft_proposals.inc_by(raft.proposals.saturating_sub(m.raft_proposals.get()));
        m.raft_leader_changes.inc_by(raft.leader_changes.saturating_sub(m.raft_leader_changes.get()));
        if let Some(store) = m.store.get() {
            let pool = store.pool_status();
            let in_use = pool.size.saturating_sub(pool.available);
            m.db_pool.with_label_values(&["in_use"]).set(in_use as i64);
            m.db_pool.with_label_values(&["idle"]).set(pool.available as i64);
            m.db_pool_max.set(pool.max_size as i64);
            m.db_pool_waiting.set(pool.waiting as i64);
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&m.registry.gather(), &mut buf)?;
        Ok(String::from_utf8(buf)?)
    }
}

/// The judge state the gauges show, taken under one lock.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub queued: usize,
    pub running: usize,
    pub oldest_queued_age_ms: u64,
    pub agents: Vec<AgentSnapshot>,
}

#[derive(Debug, Clone)]
pub struct AgentSnapshot {
    pub id: String,
    pub slots: u32,
    pub leases: usize,
}

/// `GET /metrics`.
pub struct MetricsEndpoint {
    pub scheduler: Scheduler,
}

#[async_trait]
impl Handler for MetricsEndpoint {
    async fn handle(&self, _req: &mut Request, _depot: &mut Depot, res: &mut Response, _ctrl: &mut FlowCtrl) {
        match self.scheduler.metrics().render(&self.scheduler) {
            Ok(text) => {
                res.status_code(StatusCode::OK);
                res.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                res.body(text);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot render metrics");
                res.status_code(StatusCode::INTERNAL_SERVER_ERROR);
            }
        }
    }
}

/// Hoop timing every request, labelled by the matched route's template.
pub struct HttpMetrics {
    pub metrics: Metrics,
}

#[async_trait]
impl Handler for HttpMetrics {
    async fn handle(&self, req: &mut Request, depot: &mut Depot, res: &mut Response, ctrl: &mut FlowCtrl) {
        let start = Instant::now();
        ctrl.call_next(req, depot, res).await;
        let status = res.status_code.unwrap_or(StatusCode::OK).as_u16();
        let route = route_template(req.uri().path(), req.params().iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.metrics.http_request(req.method().as_str(), &route, status, start.elapsed().as_secs_f64());
    }
}

/// The path with each path parameter's value replaced by `{name}`: `/api/submissions/{id}`.
/// Requests only a catch-all (`{**rest}`) matched are all "unmatched", so scanners probing
/// random paths cannot create a series per path.
pub fn route_template<'a>(path: &str, params: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let params: Vec<_> = params.collect();
    if params.iter().any(|(k, _)| k.starts_with('*') || *k == "rest") {
        return "unmatched".to_string();
    }
    path.split('/')
        .map(|seg| match params.iter().find(|(_, v)| *v == seg && !seg.is_empty()) {
            Some((k, _)) => format!("{{{k}}}"),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::judge::NewSubmission;
    use crate::link::{Dispatch, DispatchError, LinkEvent};
    use crate::scheduler::SchedulerConfig;
    use protocol::{FinalResult, Job, Limits, TestCase};

    struct Accept;
    impl Dispatch for Accept {
        fn dispatch(&self, _: &str, _: Job) -> Result<(), DispatchError> {
            Ok(())
        }
    }

    fn value(text: &str, series: &str) -> f64 {
        let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn counts_follow_the_judge_state() {
        let metrics = Metrics::new(&["c".to_string()]).unwrap();
        let clock: crate::scheduler::Clock = Arc::new(|| 5_000);
        let s = Scheduler::with_metrics(Arc::new(Accept), SchedulerConfig::default(), clock, metrics.clone());
        let limits =
            Limits { cpu_ms: 1000, wall_ms: 2000, memory_bytes: 1 << 28, max_processes: 8, output_bytes: 1 << 20 };
        let tests = vec![TestCase { input: vec![], expected_output: Some(vec![]) }];
        let new = || NewSubmission {
            language: "c".into(),
            source: vec![],
            tests: tests.clone(),
            limits,
            options: Default::default(),
            judge0: None,
            problem: None,
        };
        let first = s.submit(new()).await.unwrap();
        s.submit(new()).await.unwrap();
        let text = metrics.render(&s).unwrap();
        assert_eq!(value(&text, "judge_submissions_accepted_total{language=\"c\"}"), 2.0);
        assert_eq!(value(&text, "judge_queue_length "), 2.0);
        assert_eq!(value(&text, "judge_agents_connected "), 0.0);

        s.handle_event(LinkEvent::AgentUp { agent_id: "a1".into(), languages: vec!["c".into()], slots: 1 }).await;
        let text = metrics.render(&s).unwrap();
        assert_eq!(value(&text, "judge_queue_length "), 1.0);
        assert_eq!(value(&text, "judge_slots_busy "), 1.0);
        assert_eq!(value(&text, "judge_agent_leases{agent=\"a1\"}"), 1.0);
        assert!(text.contains("judge_agent_heartbeat_age_seconds{agent=\"a1\"}"), "{text}");

        let result = FinalResult {
            submission_id: first,
            verdict: Verdict::WA,
            compile_output: String::new(),
            message: String::new(),
        };
        s.handle_event(LinkEvent::Final { agent_id: "a1".into(), result }).await;
        s.handle_event(LinkEvent::AgentDown { agent_id: "a1".into() }).await;
        let text = metrics.render(&s).unwrap();
        assert_eq!(value(&text, "judge_submissions_finished_total{language=\"c\",verdict=\"WA\"}"), 1.0);
        assert_eq!(value(&text, "judge_submissions_requeued_total "), 1.0, "the second went back when a1 left");
        assert!(!text.contains("agent=\"a1\""), "a departed agent's series must go:\n{text}");

        // Accept ×2, AgentUp, Assign, Complete, Assign (the second), AgentDown.
        assert_eq!(value(&text, "judge_raft_proposals_total "), 7.0);
        assert_eq!(value(&text, "judge_raft_role{role=\"leader\"}"), 1.0);
        assert_eq!(value(&text, "judge_raft_role{role=\"follower\"}"), 0.0);
        assert_eq!(value(&text, "judge_raft_leader_changes_total "), 1.0);
        // Seven commands and the leader's empty entry of its first term.
        let applied = value(&text, "judge_raft_applied_index ");
        assert!(applied >= 8.0 && applied <= value(&text, "judge_raft_commit_index "), "{text}");
    }

    #[test]
    fn templates_hide_ids_and_unknown_paths() {
        assert_eq!(route_template("/api/submissions/42", [("id", "42")].into_iter()), "/api/submissions/{id}");
        assert_eq!(route_template("/health", std::iter::empty()), "/health");
        assert_eq!(route_template("/wp-login.php", [("rest", "wp-login.php")].into_iter()), "unmatched");
    }

    #[test]
    fn a_fresh_set_renders_and_sets_are_independent() {
        let a = Metrics::new(&["c".to_string()]);
        let b = Metrics::new(&["c".to_string()]);
        assert!(a.is_ok() && b.is_ok(), "two registries must not collide");
    }
}
