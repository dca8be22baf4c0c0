//! The async shell around `JudgeState`: it reads the clock, turns link events and API
//! submissions into commands, and hands assignable jobs to agents.
//!
//! Every command goes through the raft node (`cluster::Node`): it is proposed, and acted
//! on only once committed and applied, by the node's thread, to the state here. A
//! submission is therefore acknowledged only after its `Accept` is durable in the log.
//! A judge started without a data dir (the unit tests) runs the same single-node raft on
//! an in-memory log.
//!
//! Concurrency: the state sits behind a `std::sync::Mutex` shared by the node thread
//! (which writes it) and clones of `Scheduler` (which read it). Every critical section is
//! in-memory work, never an `.await`, and the lock is not held while calling `Dispatch` or
//! the `Observer`, so neither can deadlock against the scheduler. Reads see what this
//! node has applied: on a single node that includes every acknowledged write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use protocol::{FinalResult, FunctionJob, FunctionSpec, Job, JobOptions, Limits, TestCase, TestResult, Verdict};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, info, warn};

use crate::cluster::transport::Deliver;
use crate::cluster::node::{Membership, SnapshotJob};
use crate::cluster::{Apply, LogStore, Node, NodeConfig, NodeError, NodeStatus, ProposeError, Transport};
use crate::judge::{
    self, Command, Effect, Judge0Meta, JudgeState, NewSubmission, Rejected, Status, Submission, SubmissionId, TestRecord,
};
use crate::link::{Dispatch, DispatchError, LinkEvent};
use crate::metrics::{AgentSnapshot, Metrics, Snapshot};

/// Milliseconds since the UNIX epoch. Replaceable so tests control time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Submissions waiting at most; beyond this `submit` refuses, so a burst of clients
    /// cannot grow memory without bound while no agent is connected.
    pub max_queued: usize,
    /// See `judge::DEFAULT_MAX_ATTEMPTS`.
    pub max_attempts: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { max_queued: 10_000, max_attempts: judge::DEFAULT_MAX_ATTEMPTS }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full ({0} submissions waiting); try again later")]
    QueueFull(usize),
    #[error("submission refused: {0}")]
    Rejected(#[from] Rejected),
    /// Not committed: this node is not the leader, or no quorum answered in time. The
    /// client may retry (the API answers 503 with Retry-After).
    #[error("not committed: {0}")]
    Unavailable(#[from] ProposeError),
    /// A bug: the judge answered something impossible.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A submission as the API shows it: no source, no test inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionView {
    pub id: SubmissionId,
    pub language: String,
    pub status: Status,
    pub verdict: Option<Verdict>,
    pub message: String,
    pub compile_output: String,
    pub test_count: usize,
    pub limits: Limits,
    /// Sorted by test index.
    pub tests: Vec<TestRecord>,
    pub attempts: u32,
    pub accepted_ms: u64,
    pub finished_ms: Option<u64>,
    pub source: Vec<u8>,
    /// The tests' inputs and expected outputs while kept (queued, running, or Judge0).
    pub inputs: Vec<TestCase>,
    pub options: JobOptions,
    pub judge0: Option<Judge0Meta>,
    pub problem: Option<crate::contest::ProblemRef>,
    /// Earlier judgings, oldest first (a rejudged submission's verdict history).
    pub history: Vec<crate::judge::PastJudging>,
}

impl SubmissionView {
    fn of(sub: &Submission) -> SubmissionView {
        let mut tests = sub.results.clone();
        tests.sort_by_key(|t| t.result.index);
        let (verdict, message, compile_output) = match &sub.outcome {
            Some(o) => (Some(o.verdict), o.message.clone(), o.compile_output.clone()),
            None => (None, String::new(), String::new()),
        };
        SubmissionView {
            id: sub.id,
            language: sub.language.clone(),
            status: sub.status,
            verdict,
            message,
            compile_output,
            test_count: sub.test_count,
            limits: sub.limits,
            tests,
            attempts: sub.attempts,
            accepted_ms: sub.accepted_ms,
            finished_ms: sub.finished_ms,
            source: sub.source.clone(),
            inputs: sub.tests.clone(),
            options: sub.options.clone(),
            judge0: sub.judge0.clone(),
            problem: sub.problem.clone(),
            history: sub.history.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentsSummary {
    pub connected: usize,
    pub slots: u64,
    pub free_slots: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueSummary {
    pub queued: usize,
    pub running: usize,
}

/// Told about progress the API's live clients watch (the WebSocket layer). Called after the
/// command is applied, without the state's lock held, so it may read the scheduler.
pub trait Observer: Send + Sync + 'static {
    /// A test result was recorded for a running submission.
    fn test_recorded(&self, result: &TestResult);
    /// The submission is done (verdict, cancel, or out of attempts).
    fn completed(&self, id: SubmissionId);
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued and is now done with `IE`.
    Dequeued,
    /// Its agent was told to stop; the `IE` final follows within moments.
    Stopping,
    /// Nothing to cancel: unknown, already done, or its agent is gone (it is requeued).
    NotRunning,
}

/// How long an agent's leases last without news of it. Its coordinator renews them every
/// `LEASE_RENEW_MS` while the agent heartbeats; an agent whose coordinator died (so
/// nobody reports it down) loses its jobs to the queue after this. Times come from the
/// proposers' clocks: coordinators' clocks must agree to well within this.
pub const LEASE_MS: u64 = 15_000;
pub const LEASE_RENEW_MS: u64 = 3_000;

/// How long a submission waits for a leader (an election) before the client gets a 503.
const SUBMIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(8);
/// How long a linearizable read waits for a leader to confirm its read index.
const READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a report from an agent is retried while the cluster has no leader.
const LINK_RETRY: std::time::Duration = std::time::Duration::from_secs(30);
/// How long an unconfirmed `Assign` may take to show up applied before the submission is
/// assigned anew (raft commits or drops a proposal within an election or two).
const SETTLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// A job on its way to an agent.
enum Outgoing {
    Classic(Job),
    Function(FunctionJob),
}

/// Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    node: Node<Applied>,
    dispatch: Arc<dyn Dispatch>,
    clock: Clock,
    config: SchedulerConfig,
    /// One pump at a time, or two would propose the same assignment.
    pump: tokio::sync::Mutex<()>,
    /// Set by whoever wants a pump; the running pump goes round again when it sees it.
    pump_again: AtomicBool,
    /// Subscribed before the node started, for the first `completions()` caller: the
    /// replay of the log after a restart announces completions right away.
    first_completions: Mutex<Option<tokio::sync::broadcast::Receiver<SubmissionId>>>,
    /// When this node last renewed each local agent's leases (`AgentAlive`).
    renewed: Mutex<std::collections::HashMap<String, u64>>,
}

/// What the node thread applies to; no handle on the node, so dropping the last
/// `Scheduler` stops the node.
struct Shared {
    state: Mutex<JudgeState>,
    /// Poked when an applied command may have made something assignable (from any node:
    /// another coordinator's requeue can be for one of our agents).
    assignable: tokio::sync::Notify,
    completed: tokio::sync::broadcast::Sender<SubmissionId>,
    metrics: Metrics,
    observer: OnceLock<Arc<dyn Observer>>,
    /// The raft node's peer transport (set once the node is connected to its peers):
    /// coordinators added at run time become its peers as their `AddMember` applies.
    transport: OnceLock<Arc<OnceLock<Transport>>>,
}

/// A committed command's outcome; `Err` for an entry that does not decode (a bug, or a
/// log written by an incompatible version), skipped identically on every node.
type Applied = Result<Result<Effect, Rejected>, String>;

/// Where the raft node keeps its log, and who its peers are.
pub struct ClusterSetup {
    pub node: NodeConfig,
    pub store: LogStore,
}

impl Scheduler {
    pub fn new(dispatch: Arc<dyn Dispatch>) -> Scheduler {
        Scheduler::with_config(dispatch, SchedulerConfig::default(), system_clock())
    }

    pub fn with_config(dispatch: Arc<dyn Dispatch>, config: SchedulerConfig, clock: Clock) -> Scheduler {
        Scheduler::with_metrics(dispatch, config, clock, Metrics::unregistered())
    }

    /// Like `with_config`, counting into `metrics` (served on `/metrics`). Single node,
    /// log in memory: for tests and throwaway judges.
    pub fn with_metrics(dispatch: Arc<dyn Dispatch>, config: SchedulerConfig, clock: Clock, metrics: Metrics) -> Scheduler {
        let setup = ClusterSetup { node: NodeConfig::single(1), store: LogStore::in_memory(&[1]) };
        // Only a failed thread spawn can fail here (the config is fixed and valid).
        #[allow(clippy::expect_used)]
        Scheduler::start(dispatch, config, clock, metrics, setup).expect("starting an in-memory raft node")
    }

    /// The scheduler on a raft node: after a restart, the node first replays the log.
    pub fn start(
        dispatch: Arc<dyn Dispatch>,
        config: SchedulerConfig,
        clock: Clock,
        metrics: Metrics,
        setup: ClusterSetup,
    ) -> Result<Scheduler, NodeError> {
        let state = Mutex::new(JudgeState::with_max_attempts(config.max_attempts));
        // Room for bursts; slow receivers lag and re-read the state rather than block us.
        let (completed, first) = tokio::sync::broadcast::channel(1024);
        let shared =
            Arc::new(Shared {
                state,
                assignable: tokio::sync::Notify::new(),
                completed,
                metrics,
                observer: OnceLock::new(),
                transport: OnceLock::new(),
            });
        let node = Node::start(setup.node, setup.store, StateMachine { shared: shared.clone() })?;
        let _ = shared.transport.set(node.transport());
        Ok(Scheduler {
            inner: Arc::new(Inner {
                shared,
                node,
                dispatch,
                clock,
                config,
                pump: tokio::sync::Mutex::new(()),
                pump_again: AtomicBool::new(false),
                first_completions: Mutex::new(Some(first)),
                renewed: Mutex::new(std::collections::HashMap::new()),
            }),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.shared.metrics
    }

    /// This node's raft status (role, term, commit and applied index).
    pub fn cluster_status(&self) -> NodeStatus {
        self.inner.node.status()
    }

    /// Where the raft transport delivers peers' messages.
    pub fn raft_inbox(&self) -> Deliver {
        self.inner.node.inbox()
    }

    /// Connects the raft node to its peers.
    pub fn set_raft_transport(&self, transport: Transport) {
        self.inner.node.set_transport(transport);
        // Members applied before the transport existed (a replay, a snapshot).
        self.inner.shared.connect_members();
    }

    /// Adds coordinator `node_id` (raft peer link on `raft`, HTTP API on `api`) to the
    /// cluster: its addresses go through the log first, so every node can reach it by the
    /// time it votes; then the membership change. On the leader only (`NotLeader`
    /// otherwise). Answers with the voters after the change.
    pub async fn add_node(&self, node_id: u64, raft: std::net::SocketAddr, api: String) -> Result<Vec<u64>, SubmitError> {
        let command = Command::AddMember { node_id, raft: raft.to_string(), api };
        self.propose_retrying(command, SUBMIT_PATIENCE).await??;
        Ok(self.inner.node.change_membership(Membership::Add(node_id)).await?)
    }

    /// Removes coordinator `node_id` from the voters (on the leader only).
    pub async fn remove_node(&self, node_id: u64) -> Result<Vec<u64>, SubmitError> {
        Ok(self.inner.node.change_membership(Membership::Remove(node_id)).await?)
    }

    /// Addresses of the coordinators added at run time.
    pub fn members(&self) -> std::collections::BTreeMap<u64, crate::judge::Member> {
        self.lock().members().clone()
    }

    /// The cluster's id if this node has applied its naming.
    pub fn known_cluster_id(&self) -> Option<String> {
        self.lock().cluster_id().map(str::to_owned)
    }

    /// The cluster's id (`Command::NameCluster`), naming the cluster first if nobody has:
    /// needs a leader, so it waits up to `patience` for one.
    pub async fn cluster_id(&self, patience: std::time::Duration) -> Result<String, SubmitError> {
        if let Some(id) = self.lock().cluster_id() {
            return Ok(id.to_owned());
        }
        // Refused if a name was committed first (another node, or the log not yet replayed
        // here): once ours is applied, whichever came first is in the state.
        let proposed = uuid::Uuid::new_v4().to_string();
        let _ = self.propose_retrying(Command::NameCluster { cluster_id: proposed }, patience).await?;
        self.lock().cluster_id().map(str::to_owned).ok_or_else(|| SubmitError::Internal("the cluster has no id after naming it".into()))
    }

    /// What the state gauges of `/metrics` show, under one lock.
    pub fn metrics_snapshot(&self) -> Snapshot {
        let now_ms = self.now();
        let state = self.lock();
        let oldest = state.queue().next().and_then(|id| state.get(id)).map(|s| s.accepted_ms);
        Snapshot {
            queued: state.queued_len(),
            running: state.running_len(),
            oldest_queued_age_ms: oldest.map_or(0, |at| now_ms.saturating_sub(at)),
            agents: state
                .agents()
                .map(|a| AgentSnapshot { id: a.id.clone(), slots: a.slots, leases: a.running.len() })
                .collect(),
        }
    }

    /// Installs the observer; only the first call counts.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        let _ = self.inner.shared.observer.set(observer);
    }

    /// Queues a function-style submission. `on_accepted` runs with its id before this call
    /// dispatches it, so a watcher subscribed there cannot miss its first step.
    pub async fn submit_function(
        &self,
        submission: NewSubmission,
        function: FunctionSpec,
        on_accepted: impl FnOnce(SubmissionId),
    ) -> Result<SubmissionId, SubmitError> {
        self.check_queue()?;
        let command = Command::AcceptFunction { submission, function, now_ms: self.now() };
        let id = match self.propose_retrying(command, SUBMIT_PATIENCE).await?? {
            Effect::Accepted { id } => id,
            other => return Err(SubmitError::Internal(format!("AcceptFunction answered {other:?}"))),
        };
        info!(submission = id, "function submission queued");
        on_accepted(id);
        self.pump().await;
        Ok(id)
    }

    /// Cancels a submission: a queued one is completed with `IE` at once; a running one's
    /// agent is told to stop, and its `IE` final then goes through the state machine as
    /// usual, so the slot is free only once the run is really gone.
    pub async fn cancel(&self, id: SubmissionId, reason: &str) -> CancelOutcome {
        let (status, agent) = {
            let state = self.lock();
            match state.get(id) {
                Some(sub) => (sub.status, sub.lease.as_ref().map(|l| l.agent_id.clone())),
                None => return CancelOutcome::NotRunning,
            }
        };
        match (status, agent) {
            (Status::Queued, _) => {
                let result = FinalResult {
                    submission_id: id,
                    verdict: Verdict::IE,
                    compile_output: String::new(),
                    message: format!("cancelled: {reason}"),
                };
                let command = Command::Complete { submission_id: id, agent_id: None, result, now_ms: self.now() };
                match self.apply(command).await {
                    Some(_) => CancelOutcome::Dequeued,
                    None => CancelOutcome::NotRunning,
                }
            }
            (Status::Running, Some(agent)) if self.inner.dispatch.cancel(&agent, id, reason) => CancelOutcome::Stopping,
            _ => CancelOutcome::NotRunning,
        }
    }

    /// Judges a finished submission again against `rejudge`; its past verdicts are kept.
    pub async fn rejudge(&self, id: SubmissionId, rejudge: crate::judge::Rejudge) -> Result<(), SubmitError> {
        let command = Command::Rejudge { submission_id: id, rejudge, now_ms: self.now() };
        self.propose_retrying(command, SUBMIT_PATIENCE).await??;
        info!(submission = id, "submission queued for a rejudge");
        self.pump().await;
        Ok(())
    }

    /// Finished submissions to the problem `slug`.
    pub async fn done_for_problem(&self, slug: &str) -> Vec<SubmissionId> {
        self.lock().done_for_problem(slug)
    }

    /// Queues a validated submission, once committed, and dispatches it if an agent is free.
    pub async fn submit(&self, submission: NewSubmission) -> Result<SubmissionId, SubmitError> {
        let language = submission.language.clone();
        self.check_queue()?;
        let command = Command::Accept { submission, now_ms: self.now() };
        let id = match self.propose_retrying(command, SUBMIT_PATIENCE).await?? {
            Effect::Accepted { id } => id,
            other => return Err(SubmitError::Internal(format!("Accept answered {other:?}"))),
        };
        self.inner.shared.metrics.accepted(&language);
        // Not info: one line per submission costs a write on the accept path, and the
        // accepted counter says as much.
        debug!(submission = id, "submission queued");
        self.pump().await;
        Ok(id)
    }

    /// Refuses while the queue is full. Checked before proposing, so concurrent submits
    /// can overshoot `max_queued` by the number of proposals in flight.
    fn check_queue(&self) -> Result<(), SubmitError> {
        let queued = self.lock().queued_len();
        if queued >= self.inner.config.max_queued {
            self.inner.shared.metrics.refused("queue_full");
            return Err(SubmitError::QueueFull(queued));
        }
        Ok(())
    }

    /// Waits until this node's state machine holds every write committed before the call
    /// (raft's ReadIndex, confirmed by the leader), so that a read after it is
    /// linearizable; plain reads are served from whatever this node has applied. Retried
    /// through an election for up to `READ_PATIENCE`.
    pub async fn read_barrier(&self) -> Result<(), SubmitError> {
        let deadline = std::time::Instant::now() + READ_PATIENCE;
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            match self.inner.node.read_index().await {
                Ok(_) => return Ok(()),
                Err(err) if std::time::Instant::now() + pause < deadline => {
                    debug!(%err, "read index not confirmed; asking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                Err(err) => return Err(SubmitError::Unavailable(err)),
            }
        }
    }

    pub async fn get(&self, id: SubmissionId) -> Option<SubmissionView> {
        self.lock().get(id).map(SubmissionView::of)
    }

    /// Just the status, without copying the submission (per-caller run limits ask often).
    pub fn status(&self, id: SubmissionId) -> Option<Status> {
        self.lock().get(id).map(|s| s.status)
    }

    /// The status of the submission behind a Judge0 token.
    pub fn status_by_token(&self, token: &str) -> Option<Status> {
        self.lock().by_token(token).map(|s| s.status)
    }

    /// Most submissions waiting before `submit` refuses.
    pub fn max_queued(&self) -> usize {
        self.inner.config.max_queued
    }

    /// The submission behind a Judge0 token.
    pub async fn get_by_token(&self, token: &str) -> Option<SubmissionView> {
        self.lock().by_token(token).map(SubmissionView::of)
    }

    /// A page of Judge0 submissions, newest first, and their total count.
    pub async fn judge0_page(&self, skip: usize, per_page: usize) -> (Vec<SubmissionView>, usize) {
        let state = self.lock();
        let (page, total) = state.judge0_page(skip, per_page);
        (page.into_iter().map(SubmissionView::of).collect(), total)
    }

    /// Ids of submissions as they are completed. A receiver that lags loses ids
    /// (`RecvError::Lagged`) and must re-read the state instead. The first caller's
    /// receiver starts at the node's start (so it sees the replay); later ones at the call.
    pub fn completions(&self) -> tokio::sync::broadcast::Receiver<SubmissionId> {
        let first = self.inner.first_completions.lock().unwrap_or_else(PoisonError::into_inner).take();
        first.unwrap_or_else(|| self.inner.shared.completed.subscribe())
    }

    pub async fn agents_summary(&self) -> AgentsSummary {
        let state = self.lock();
        state.agents().fold(AgentsSummary::default(), |mut s, a| {
            s.connected += 1;
            s.slots += u64::from(a.slots);
            s.free_slots += u64::from(a.free_slots());
            s
        })
    }

    pub async fn queue_summary(&self) -> QueueSummary {
        let state = self.lock();
        QueueSummary { queued: state.queued_len(), running: state.running_len() }
    }

    /// Consumes link events until the link drops its sender; meanwhile expires the leases
    /// of silent agents (see `LEASE_MS`).
    pub async fn run(self, mut events: UnboundedReceiver<LinkEvent>) {
        let mut expiry = tokio::time::interval(std::time::Duration::from_secs(1));
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.handle_event(event).await,
                    None => break,
                },
                _ = expiry.tick() => self.expire_silent_agents().await,
                () = self.inner.shared.assignable.notified() => self.pump().await,
            }
        }
        info!("link event channel closed; scheduler stops");
    }

    /// On the leader: agents not heard of for `LEASE_MS` lose their leases (their jobs go
    /// back to the queue), unless they are connected here, in which case their leases
    /// are renewed instead (the renewal did not reach the log).
    pub async fn expire_silent_agents(&self) {
        if !self.inner.node.is_leader() {
            return;
        }
        let now_ms = self.now();
        let silent_since_ms = now_ms.saturating_sub(LEASE_MS);
        let silent: Vec<String> = self.lock().silent_agents(silent_since_ms).map(|a| a.id.clone()).collect();
        for agent_id in silent {
            let command = if self.inner.dispatch.serves(&agent_id) {
                Command::AgentAlive { agent_id, now_ms }
            } else {
                warn!(agent = %agent_id, "agent silent past its lease; its jobs go back to the queue");
                Command::ExpireAgent { agent_id, silent_since_ms, now_ms }
            };
            self.apply(command).await;
        }
        self.pump().await;
    }

    /// Whether this node should renew `agent_id`'s leases now; notes that it does.
    fn renewal_due(&self, agent_id: &str, now_ms: u64) -> bool {
        let mut renewed = self.inner.renewed.lock().unwrap_or_else(PoisonError::into_inner);
        let due = renewed.get(agent_id).is_none_or(|&at| now_ms.saturating_sub(at) >= LEASE_RENEW_MS);
        if due {
            renewed.insert(agent_id.to_owned(), now_ms);
        }
        due
    }

    /// Applies one link event (once committed) and dispatches whatever became assignable.
    pub async fn handle_event(&self, event: LinkEvent) {
        let now_ms = self.now();
        let metrics = &self.inner.shared.metrics;
        let command = match event {
            LinkEvent::AgentUp { agent_id, languages, slots } => {
                info!(agent = %agent_id, ?languages, slots, "agent up");
                metrics.heard_from(&agent_id);
                self.inner.renewed.lock().unwrap_or_else(PoisonError::into_inner).insert(agent_id.clone(), now_ms);
                Command::AgentUp { agent_id, languages, slots, now_ms }
            }
            LinkEvent::AgentRejoin { agent_id, languages, slots, held } => {
                info!(agent = %agent_id, ?languages, slots, ?held, "agent up, holding jobs of a lost connection");
                metrics.heard_from(&agent_id);
                self.inner.renewed.lock().unwrap_or_else(PoisonError::into_inner).insert(agent_id.clone(), now_ms);
                Command::AgentRejoin { agent_id, languages, slots, held, now_ms }
            }
            LinkEvent::AgentDown { agent_id } => {
                info!(agent = %agent_id, "agent down");
                metrics.agent_gone(&agent_id);
                Command::AgentDown { agent_id, now_ms }
            }
            LinkEvent::Heartbeat { agent_id, free_slots } => {
                metrics.heard_from(&agent_id);
                if self.renewal_due(&agent_id, now_ms) {
                    self.apply_retrying(Command::AgentAlive { agent_id: agent_id.clone(), now_ms }).await;
                }
                // Only changes are proposed: heartbeats are frequent and carry no news most
                // of the time, and each proposal is a log entry and an fsync.
                let unchanged = self.lock().agent(&agent_id).is_some_and(|a| a.reported_free_slots == Some(free_slots));
                if unchanged {
                    return;
                }
                Command::AgentSlots { agent_id, free_slots }
            }
            LinkEvent::TestResult { agent_id, result } => {
                Command::TestDone { submission_id: result.submission_id, agent_id, result }
            }
            LinkEvent::Final { agent_id, result } => {
                info!(submission = result.submission_id, agent = %agent_id, verdict = result.verdict.as_str(), "verdict");
                Command::Complete { submission_id: result.submission_id, agent_id: Some(agent_id), result, now_ms }
            }
            LinkEvent::JobLost { agent_id, submission_id, reason } => {
                warn!(submission = submission_id, agent = %agent_id, %reason, "job lost");
                Command::Requeue { submission_id, agent_id: Some(agent_id), reason, now_ms }
            }
        };
        self.apply_retrying(command).await;
        self.pump().await;
    }

    /// `apply` for reports from agents, which nobody else will repeat: retried while no
    /// leader can commit it (an election), for up to `LINK_RETRY`. Events wait behind it,
    /// so they still reach the log in the order the agent sent them. A retry after a
    /// timeout can apply a command twice; every link command is refused or harmless the
    /// second time (a second final, a test result already recorded, a rejoin).
    async fn apply_retrying(&self, command: Command) -> Option<Effect> {
        match self.propose_retrying(command, LINK_RETRY).await {
            Ok(Ok(effect)) => Some(effect),
            Ok(Err(rejected)) => {
                debug!(%rejected, "command rejected");
                None
            }
            Err(err) => {
                warn!(%err, "command not applied");
                None
            }
        }
    }

    /// `propose`, again while the cluster cannot commit (no leader, a leader change), for
    /// up to `patience`. A proposal that failed may still commit later, so a retried
    /// `Accept` can leave an extra, unacknowledged submission behind; it is judged like
    /// any other, and the client only ever learns the id of the one it was answered.
    async fn propose_retrying(
        &self,
        command: Command,
        patience: std::time::Duration,
    ) -> Result<Result<Effect, Rejected>, SubmitError> {
        let deadline = std::time::Instant::now() + patience;
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            match self.propose(command.clone()).await {
                Err(SubmitError::Unavailable(err)) if std::time::Instant::now() + pause < deadline => {
                    debug!(%err, "not committed; proposing again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                outcome => return outcome,
            }
        }
    }

    /// Proposes `command` and waits until this node has applied it.
    async fn propose(&self, command: Command) -> Result<Result<Effect, Rejected>, SubmitError> {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&command)
            .map_err(|e| SubmitError::Internal(format!("encoding a command: {e}")))?;
        match self.inner.node.propose(bytes.into_vec()).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(undecodable)) => Err(SubmitError::Internal(undecodable)),
            Err(err) => Err(SubmitError::Unavailable(err)),
        }
    }

    /// `propose`, for commands whose failure is only worth a log line.
    async fn apply(&self, command: Command) -> Option<Effect> {
        match self.propose(command).await {
            Ok(Ok(effect)) => Some(effect),
            Ok(Err(rejected)) => {
                // Expected in normal operation (late or duplicate reports), so not a warning.
                debug!(%rejected, "command rejected");
                None
            }
            Err(err) => {
                warn!(%err, "command not applied");
                None
            }
        }
    }

    /// Assigns and dispatches until nothing more is assignable. Every node assigns, but
    /// only to the agents connected to it: two nodes can propose the same submission, and
    /// the log decides (the later `Assign` is rejected, and that node moves on).
    async fn pump(&self) {
        self.inner.pump_again.store(true, Ordering::SeqCst);
        loop {
            let Ok(serial) = self.inner.pump.try_lock() else {
                // The running pump sees `pump_again` before it lets go and goes round again.
                return;
            };
            while self.inner.pump_again.swap(false, Ordering::SeqCst) {
                self.assign_all().await;
            }
            drop(serial);
            if !self.inner.pump_again.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// One assignment at a time: the next one is only known once this one is applied.
    async fn assign_all(&self) {
        let dispatch = &self.inner.dispatch;
        let mut refused = None;
        loop {
            let next = self.lock().next_assignment_among(|agent| dispatch.serves(agent));
            let Some((submission_id, agent_id)) = next else { return };
            let command = Command::Assign { submission_id, agent_id: agent_id.clone(), now_ms: self.now() };
            match self.propose(command).await {
                Ok(Ok(Effect::Assigned)) => {}
                // Another node's assignment came first; the state has moved on, so the next
                // round proposes something else. The same refusal twice would be a bug: stop.
                Ok(Err(rejected)) if refused.as_ref() != Some(&(submission_id, agent_id.clone())) => {
                    debug!(%rejected, submission = submission_id, "assignment lost to another");
                    refused = Some((submission_id, agent_id));
                    continue;
                }
                Err(SubmitError::Unavailable(err)) => {
                    // Neither known to be committed nor not to be: the leader may still
                    // commit it, and then nobody would send the job while the agent's
                    // heartbeats keep its lease alive. Settle it once it had time to.
                    warn!(%err, submission = submission_id, "assignment not confirmed; settling it shortly");
                    let this = self.clone();
                    tokio::spawn(async move { this.settle_assignment(submission_id, agent_id).await });
                    return;
                }
                outcome => {
                    warn!(?outcome, "proposed assignment not applied");
                    return;
                }
            }
            self.send_assigned(submission_id, &agent_id).await;
        }
    }

    /// Sends an applied assignment's job to its agent (requeued if that fails).
    async fn send_assigned(&self, submission_id: SubmissionId, agent_id: &str) {
        let dispatch = &self.inner.dispatch;
        let Some(job) = self.job(submission_id) else { return };
        let sent = match job {
            Outgoing::Classic(job) => dispatch.dispatch(agent_id, job),
            Outgoing::Function(job) => dispatch.dispatch_function(agent_id, job),
        };
        debug!(submission = submission_id, agent = %agent_id, "dispatched");
        if let Err(err) = sent {
            warn!(submission = submission_id, agent = %agent_id, %err, "dispatch failed; requeueing");
            self.inner.shared.metrics.link_error("dispatch");
            self.dispatch_failed(submission_id, agent_id, &err).await;
        }
    }

    /// `pump` in a task of its own (a plain fn, so that `settle_assignment`, which
    /// `assign_all` spawns, does not hold `pump`'s future: that cycle defeats `Send`).
    fn spawn_pump(&self) {
        let this = self.clone();
        tokio::spawn(async move { this.pump().await });
    }

    /// After an `Assign` whose fate was unknown: once the log has decided, send the job if
    /// the lease is the agent's, or else (still queued) let the pump assign it anew.
    async fn settle_assignment(&self, submission_id: SubmissionId, agent_id: String) {
        let deadline = std::time::Instant::now() + SETTLE_WITHIN;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let holder = match self.lock().get(submission_id) {
                None => return,
                Some(sub) => sub.lease.as_ref().map(|l| l.agent_id.clone()),
            };
            match holder {
                Some(holder) if holder == agent_id => {
                    info!(submission = submission_id, agent = %agent_id, "unconfirmed assignment was committed; dispatching");
                    return self.send_assigned(submission_id, &agent_id).await;
                }
                // Someone else's (or already finished): nothing of ours to do.
                Some(_) => return,
                None if self.lock().get(submission_id).is_some_and(|s| s.status != Status::Queued) => return,
                None if std::time::Instant::now() >= deadline => return self.spawn_pump(),
                None => {}
            }
        }
    }

    async fn dispatch_failed(&self, submission_id: SubmissionId, agent_id: &str, err: &DispatchError) {
        let now_ms = self.now();
        let reason = err.to_string();
        match err {
            // The link no longer knows the agent: its AgentDown is on the way or lost. Dropping
            // it now keeps `pump` from handing the same job to it again in a loop.
            DispatchError::UnknownAgent(_) => {
                self.apply(Command::Requeue { submission_id, agent_id: Some(agent_id.to_owned()), reason, now_ms })
                    .await;
                self.apply(Command::AgentDown { agent_id: agent_id.to_owned(), now_ms }).await;
            }
            // The agent is judging it already, which is what the new lease says too: its
            // results will arrive on the existing stream.
            DispatchError::AlreadyRunning { .. } => {}
        }
    }

    /// The job of a leased submission, from the state.
    fn job(&self, submission_id: SubmissionId) -> Option<Outgoing> {
        let state = self.lock();
        let sub = state.get(submission_id)?;
        let job = Job {
            submission_id,
            language: sub.language.clone(),
            source: sub.source.clone(),
            tests: sub.tests.clone(),
            limits: sub.limits,
            options: sub.options.clone(),
        };
        Some(match &sub.function {
            Some(function) => Outgoing::Function(FunctionJob { job, function: function.clone() }),
            None => Outgoing::Classic(job),
        })
    }

    fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    fn lock(&self) -> MutexGuard<'_, JudgeState> {
        self.inner.shared.lock()
    }
}

impl Shared {
    /// Makes every member of the state a peer of the transport (if there is one yet).
    fn connect_members(&self) {
        let Some(transport) = self.transport.get().and_then(|cell| cell.get()) else { return };
        let members: Vec<(u64, String)> = self.lock().members().iter().map(|(id, m)| (*id, m.raft.clone())).collect();
        for (id, raft) in members {
            match raft.parse() {
                Ok(addr) => transport.add_peer(id, addr),
                Err(err) => warn!(node = id, %raft, %err, "member with an unusable raft address"),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, JudgeState> {
        // Every command validates before it mutates, so a panic elsewhere while holding the
        // lock cannot leave a half-applied command behind: the state is safe to keep using.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The judge state as the raft node applies to it, on every node, in log order.
struct StateMachine {
    shared: Arc<Shared>,
}

impl Apply for StateMachine {
    type Output = Applied;

    fn snapshot(&self) -> SnapshotJob {
        // A clone is a fraction of the encoding's cost, and the lock is held only for it.
        let state = self.shared.lock().clone();
        Box::new(move || {
            rkyv::to_bytes::<rkyv::rancor::Error>(&state).map(|b| b.into_vec()).map_err(|e| format!("encoding the judge state: {e}"))
        })
    }

    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), String> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(data.len());
        aligned.extend_from_slice(data);
        let restored = rkyv::from_bytes::<JudgeState, rkyv::rancor::Error>(&aligned)
            .map_err(|e| format!("the snapshot at {index} is not a judge state: {e}"))?;
        let done: Vec<SubmissionId> = restored.submissions().filter(|s| s.status == Status::Done).map(|s| s.id).collect();
        *self.shared.lock() = restored;
        self.shared.connect_members();
        self.shared.assignable.notify_one();
        // Completions inside the snapshot were never applied here one by one: announce
        // them, as a replay of the log would (the projection skips what it has).
        for id in done {
            let _ = self.shared.completed.send(id);
        }
        Ok(())
    }

    fn apply(&mut self, index: u64, data: &[u8]) -> Applied {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(data.len());
        aligned.extend_from_slice(data);
        let command = match rkyv::from_bytes::<Command, rkyv::rancor::Error>(&aligned) {
            Ok(command) => command,
            Err(err) => {
                warn!(index, %err, "log entry is not a command; skipped");
                return Err(format!("log entry {index} is not a command: {err}"));
            }
        };
        let shared = &self.shared;
        let subject = match &command {
            Command::Complete { submission_id, .. } | Command::Requeue { submission_id, .. } => Some(*submission_id),
            _ => None,
        };
        let completing = matches!(command, Command::Complete { .. }).then_some(subject).flatten();
        let assigned = match &command {
            Command::Assign { submission_id, now_ms, .. } => Some((*submission_id, *now_ms)),
            _ => None,
        };
        let observer = shared.observer.get();
        let test_result = match (&command, observer) {
            (Command::TestDone { result, .. }, Some(_)) => Some(result.clone()),
            _ => None,
        };
        let result = {
            let mut state = shared.lock();
            let result = state.apply(command);
            if let Ok(effect) = &result {
                shared.metrics.effect(&state, subject, effect);
                if let Some((id, now_ms)) = assigned {
                    shared.metrics.assigned(&state, id, now_ms);
                }
            }
            result
        };
        if let Ok(effect) = &result {
            if matches!(effect, Effect::MemberAdded) {
                shared.connect_members();
            }
            if matches!(
                effect,
                Effect::Accepted { .. } | Effect::Requeued { .. } | Effect::AgentRegistered { .. } | Effect::Completed { .. }
            ) {
                shared.assignable.notify_one();
            }
            let mut done = Vec::new();
            if let Effect::Requeued { gave_up, .. } | Effect::AgentRegistered { gave_up, .. } = effect {
                for id in gave_up {
                    warn!(submission = id, "out of attempts; completed with IE");
                }
                done.extend_from_slice(gave_up);
            }
            if let (Effect::Completed { .. }, Some(id)) = (effect, completing) {
                done.push(id);
            }
            if let (Effect::TestRecorded, Some(o), Some(r)) = (effect, observer, &test_result) {
                o.test_recorded(r);
            }
            for id in done {
                // No receiver is normal: nobody waits on that submission.
                let _ = shared.completed.send(id);
                if let Some(o) = observer {
                    o.completed(id);
                }
            }
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests;
