//! The async shell around `JudgeState`: it reads the clock, feeds link events and API
//! submissions in as commands, and hands assignable jobs to agents.
//!
//! Concurrency: the state sits behind a `std::sync::Mutex` shared by clones of
//! `Scheduler`, rather than inside an actor task. Every critical section is a few
//! in-memory commands, never an `.await`, so a blocking mutex is cheaper than a channel
//! round trip and API reads see the state directly. The lock is not held while calling
//! `Dispatch`, so an agent link can never deadlock against the scheduler.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use protocol::{FinalResult, FunctionJob, FunctionSpec, Job, JobOptions, Limits, TestCase, TestResult, Verdict};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, info, warn};

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
    state: Mutex<JudgeState>,
    dispatch: Arc<dyn Dispatch>,
    clock: Clock,
    config: SchedulerConfig,
    completed: tokio::sync::broadcast::Sender<SubmissionId>,
    metrics: Metrics,
    observer: OnceLock<Arc<dyn Observer>>,
}

impl Scheduler {
    pub fn new(dispatch: Arc<dyn Dispatch>) -> Scheduler {
        Scheduler::with_config(dispatch, SchedulerConfig::default(), system_clock())
    }

    pub fn with_config(dispatch: Arc<dyn Dispatch>, config: SchedulerConfig, clock: Clock) -> Scheduler {
        Scheduler::with_metrics(dispatch, config, clock, Metrics::unregistered())
    }

    /// Like `with_config`, counting into `metrics` (served on `/metrics`).
    pub fn with_metrics(dispatch: Arc<dyn Dispatch>, config: SchedulerConfig, clock: Clock, metrics: Metrics) -> Scheduler {
        let state = Mutex::new(JudgeState::with_max_attempts(config.max_attempts));
        // Room for bursts; slow receivers lag and re-read the state rather than block us.
        let (completed, _) = tokio::sync::broadcast::channel(1024);
        Scheduler { inner: Arc::new(Inner { state, dispatch, clock, config, completed, metrics, observer: OnceLock::new() }) }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
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
        let _ = self.inner.observer.set(observer);
    }

    /// Queues a function-style submission. `on_accepted` runs with its id before it can be
    /// dispatched, so a watcher subscribed there cannot miss its first step.
    pub async fn submit_function(
        &self,
        submission: NewSubmission,
        function: FunctionSpec,
        on_accepted: impl FnOnce(SubmissionId),
    ) -> Result<SubmissionId, SubmitError> {
        let id = {
            let mut state = self.lock();
            if state.queued_len() >= self.inner.config.max_queued {
                return Err(SubmitError::QueueFull(state.queued_len()));
            }
            let command = Command::AcceptFunction { submission, function, now_ms: self.now() };
            match state.apply(command)? {
                Effect::Accepted { id } => id,
                other => return Err(SubmitError::Internal(format!("AcceptFunction answered {other:?}"))),
            }
        };
        info!(submission = id, "function submission queued");
        on_accepted(id);
        self.pump();
        Ok(id)
    }

    /// Cancels a submission: a queued one is completed with `IE` at once; a running one's
    /// agent is told to stop, and its `IE` final then goes through the state machine as
    /// usual, so the slot is free only once the run is really gone.
    pub fn cancel(&self, id: SubmissionId, reason: &str) -> CancelOutcome {
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
                match self.apply(command) {
                    Some(_) => CancelOutcome::Dequeued,
                    None => CancelOutcome::NotRunning,
                }
            }
            (Status::Running, Some(agent)) if self.inner.dispatch.cancel(&agent, id, reason) => CancelOutcome::Stopping,
            _ => CancelOutcome::NotRunning,
        }
    }

    /// Queues a validated submission and dispatches it if an agent is free.
    /// Judges a finished submission again against `rejudge`; its past verdicts are kept.
    pub async fn rejudge(&self, id: SubmissionId, rejudge: crate::judge::Rejudge) -> Result<(), SubmitError> {
        {
            let mut state = self.lock();
            state.apply(Command::Rejudge { submission_id: id, rejudge, now_ms: self.now() })?;
        }
        info!(submission = id, "submission queued for a rejudge");
        self.pump();
        Ok(())
    }

    /// Finished submissions to the problem `slug`.
    pub async fn done_for_problem(&self, slug: &str) -> Vec<SubmissionId> {
        self.lock().done_for_problem(slug)
    }

    pub async fn submit(&self, submission: NewSubmission) -> Result<SubmissionId, SubmitError> {
        let language = submission.language.clone();
        let id = {
            let mut state = self.lock();
            if state.queued_len() >= self.inner.config.max_queued {
                self.inner.metrics.refused("queue_full");
                return Err(SubmitError::QueueFull(state.queued_len()));
            }
            let command = Command::Accept { submission, now_ms: self.now() };
            match state.apply(command)? {
                Effect::Accepted { id } => id,
                other => return Err(SubmitError::Internal(format!("Accept answered {other:?}"))),
            }
        };
        self.inner.metrics.accepted(&language);
        info!(submission = id, "submission queued");
        self.pump();
        Ok(id)
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
    /// (`RecvError::Lagged`) and must re-read the state instead.
    pub fn completions(&self) -> tokio::sync::broadcast::Receiver<SubmissionId> {
        self.inner.completed.subscribe()
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

    /// Consumes link events until the link drops its sender.
    pub async fn run(self, mut events: UnboundedReceiver<LinkEvent>) {
        while let Some(event) = events.recv().await {
            self.handle_event(event);
        }
        info!("link event channel closed; scheduler stops");
    }

    /// Applies one link event and dispatches whatever became assignable.
    pub fn handle_event(&self, event: LinkEvent) {
        let now_ms = self.now();
        let command = match event {
            LinkEvent::AgentUp { agent_id, languages, slots } => {
                info!(agent = %agent_id, ?languages, slots, "agent up");
                self.inner.metrics.heard_from(&agent_id);
                Command::AgentUp { agent_id, languages, slots, now_ms }
            }
            LinkEvent::AgentDown { agent_id } => {
                info!(agent = %agent_id, "agent down");
                self.inner.metrics.agent_gone(&agent_id);
                Command::AgentDown { agent_id, now_ms }
            }
            LinkEvent::Heartbeat { agent_id, free_slots } => {
                self.inner.metrics.heard_from(&agent_id);
                // Only changes are applied: heartbeats are frequent and carry no news most
                // of the time, which matters once commands go through a replicated log.
                let unchanged = self.lock().agent(&agent_id).is_some_and(|a| a.reported_free_slots == Some(free_slots));
                if unchanged {
                    return;
                }
                Command::AgentSlots { agent_id, free_slots }
            }
            LinkEvent::TestResult { agent_id, result } => {
                let copy = self.inner.observer.get().map(|o| (o.clone(), result.clone()));
                let command = Command::TestDone { submission_id: result.submission_id, agent_id, result };
                if let (Some(Effect::TestRecorded), Some((observer, result))) = (self.apply(command), copy) {
                    observer.test_recorded(&result);
                }
                self.pump();
                return;
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
        self.apply(command);
        self.pump();
    }

    fn apply(&self, command: Command) -> Option<Effect> {
        let completing = match &command {
            Command::Complete { submission_id, .. } => Some(*submission_id),
            _ => None,
        };
        let subject = match &command {
            Command::Complete { submission_id, .. } | Command::Requeue { submission_id, .. } => Some(*submission_id),
            _ => None,
        };
        let result = {
            let mut state = self.lock();
            let result = state.apply(command);
            if let Ok(effect) = &result {
                self.inner.metrics.effect(&state, subject, effect);
            }
            result
        };
        let observer = self.inner.observer.get();
        match result {
            Ok(effect) => {
                if let Effect::Requeued { gave_up, .. } | Effect::AgentRegistered { gave_up, .. } = &effect {
                    for id in gave_up {
                        warn!(submission = id, "out of attempts; completed with IE");
                        // No receiver is normal: nobody waits on that submission.
                        let _ = self.inner.completed.send(*id);
                        if let Some(o) = observer {
                            o.completed(*id);
                        }
                    }
                }
                if let (Effect::Completed { .. }, Some(id)) = (&effect, completing) {
                    let _ = self.inner.completed.send(id);
                    if let Some(o) = observer {
                        o.completed(id);
                    }
                }
                Some(effect)
            }
            Err(rejected) => {
                // Expected in normal operation (late or duplicate reports), so not a warning.
                debug!(%rejected, "command rejected");
                None
            }
        }
    }

    /// Assigns and dispatches until nothing more is assignable.
    fn pump(&self) {
        loop {
            let jobs = self.assign_all();
            if jobs.is_empty() {
                return;
            }
            let mut failed = false;
            for (agent_id, job) in jobs {
                let (submission_id, sent) = match job {
                    Outgoing::Classic(job) => (job.submission_id, self.inner.dispatch.dispatch(&agent_id, job)),
                    Outgoing::Function(job) => {
                        (job.job.submission_id, self.inner.dispatch.dispatch_function(&agent_id, job))
                    }
                };
                debug!(submission = submission_id, agent = %agent_id, "dispatched");
                if let Err(err) = sent {
                    warn!(submission = submission_id, agent = %agent_id, %err, "dispatch failed; requeueing");
                    self.inner.metrics.link_error("dispatch");
                    self.dispatch_failed(submission_id, &agent_id, &err);
                    failed = true;
                }
            }
            // Only a failure can free something assignable again; without one, stop.
            if !failed {
                return;
            }
        }
    }

    fn dispatch_failed(&self, submission_id: SubmissionId, agent_id: &str, err: &DispatchError) {
        let now_ms = self.now();
        let reason = err.to_string();
        match err {
            // The link no longer knows the agent: its AgentDown is on the way or lost. Dropping
            // it now keeps `pump` from handing the same job to it again in a loop.
            DispatchError::UnknownAgent(_) => {
                self.apply(Command::Requeue { submission_id, agent_id: Some(agent_id.to_owned()), reason, now_ms });
                self.apply(Command::AgentDown { agent_id: agent_id.to_owned(), now_ms });
            }
            // The agent is judging it already, which is what the new lease says too: its
            // results will arrive on the existing stream.
            DispatchError::AlreadyRunning { .. } => {}
        }
    }

    /// Leases every assignable submission under one lock and builds its job.
    fn assign_all(&self) -> Vec<(String, Outgoing)> {
        let now_ms = self.now();
        let mut state = self.lock();
        let mut jobs = Vec::new();
        while let Some((submission_id, agent_id)) = state.next_assignment() {
            let command = Command::Assign { submission_id, agent_id: agent_id.clone(), now_ms };
            if let Err(rejected) = state.apply(command) {
                // next_assignment only proposes valid assignments; bail out rather than spin.
                warn!(%rejected, "proposed assignment refused");
                break;
            }
            self.inner.metrics.assigned(&state, submission_id, now_ms);
            if let Some(sub) = state.get(submission_id) {
                let job = Job {
                    submission_id,
                    language: sub.language.clone(),
                    source: sub.source.clone(),
                    tests: sub.tests.clone(),
                    limits: sub.limits,
                    options: sub.options.clone(),
                };
                let job = match &sub.function {
                    Some(function) => Outgoing::Function(FunctionJob { job, function: function.clone() }),
                    None => Outgoing::Classic(job),
                };
                jobs.push((agent_id, job));
            }
        }
        jobs
    }

    fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    fn lock(&self) -> MutexGuard<'_, JudgeState> {
        // Every command validates before it mutates, so a panic elsewhere while holding the
        // lock cannot leave a half-applied command behind: the state is safe to keep using.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
