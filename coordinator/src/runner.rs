//! Runs a job on behalf of a request handler and waits for its end: the REST API's
//! `/api/execution` and `/api/testing` answer with the outcome, unlike `/api/submissions`
//! (poll) or `/ws` (push).
//!
//! The verdict and measurements come from the judge state machine (through the
//! scheduler's completions); the values a function returned come from the agent's live
//! data, which never enters the state machine. So the runner is the agent hub's
//! `LiveSink`: it keeps the `Return`s of the runs it waits for and hands every step and
//! return on to the next sink (the WebSocket hub), which still sees them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use protocol::{FunctionSpec, ReturnValue, Step};
use tokio::sync::broadcast::error::RecvError;

use crate::judge::{NewSubmission, Status, SubmissionId};
use crate::link::LiveSink;
use crate::scheduler::{Scheduler, SubmissionView, SubmitError};

/// A finished run: the judge's view, and the returned values by test index.
#[derive(Debug, Clone)]
pub struct Finished {
    pub view: SubmissionView,
    pub returns: HashMap<u32, ReturnValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// Not finished in time (no agent for the language, or a long queue); it was cancelled.
    #[error("submission {id} did not finish within {waited:?}; it was cancelled")]
    TimedOut { id: SubmissionId, waited: Duration },
    /// The scheduler's completion channel closed: it is shutting down.
    #[error("the scheduler stopped before submission {0} finished")]
    Stopped(SubmissionId),
}

pub struct Runner {
    scheduler: Scheduler,
    next: OnceLock<Arc<dyn LiveSink>>,
    /// Returns of the runs being waited for; a run absent here is not ours.
    watched: Mutex<HashMap<SubmissionId, HashMap<u32, ReturnValue>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Updates are single map operations that cannot panic half-way.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Runner {
    pub fn new(scheduler: Scheduler) -> Arc<Runner> {
        Arc::new(Runner { scheduler, next: OnceLock::new(), watched: Mutex::new(HashMap::new()) })
    }

    /// Where live data goes after the runner has looked at it; only the first call counts.
    pub fn forward_to(&self, next: Arc<dyn LiveSink>) {
        let _ = self.next.set(next);
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Queues a function-style run and waits until it is done or `wait` has passed.
    /// `accepted` learns the run's id as soon as it is queued.
    pub async fn run_function(
        &self,
        submission: NewSubmission,
        function: FunctionSpec,
        wait: Duration,
        accepted: impl FnOnce(SubmissionId),
    ) -> Result<Finished, RunError> {
        // Subscribed before the run exists, so its completion cannot be missed.
        let completions = self.scheduler.completions();
        let id = self
            .scheduler
            .submit_function(submission, function, |id| {
                lock(&self.watched).insert(id, HashMap::new());
            })
            .await?;
        accepted(id);
        let done = self.wait(id, completions, wait).await;
        let returns = lock(&self.watched).remove(&id).unwrap_or_default();
        done.map(|view| Finished { view, returns })
    }

    /// Queues a classic run (stdin/stdout) and waits like `run_function`.
    pub async fn run_program(
        &self,
        submission: NewSubmission,
        wait: Duration,
        accepted: impl FnOnce(SubmissionId),
    ) -> Result<SubmissionView, RunError> {
        let completions = self.scheduler.completions();
        let id = self.scheduler.submit(submission).await?;
        accepted(id);
        self.wait(id, completions, wait).await
    }

    async fn wait(
        &self,
        id: SubmissionId,
        mut completions: tokio::sync::broadcast::Receiver<SubmissionId>,
        wait: Duration,
    ) -> Result<SubmissionView, RunError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let finished = match tokio::time::timeout_at(deadline, completions.recv()).await {
                Ok(Ok(done)) => done == id,
                // Missed ids: the state says whether ours is done.
                Ok(Err(RecvError::Lagged(_))) => true,
                Ok(Err(RecvError::Closed)) => {
                    return match self.scheduler.get(id).await {
                        Some(view) if view.status == Status::Done => Ok(view),
                        _ => Err(RunError::Stopped(id)),
                    };
                }
                Err(_elapsed) => {
                    let outcome = self.scheduler.cancel(id, "the API stopped waiting for it").await;
                    tracing::warn!(submission = id, ?outcome, "run not finished in time; cancelled");
                    return Err(RunError::TimedOut { id, waited: wait });
                }
            };
            if finished
                && let Some(view) = self.scheduler.get(id).await
                && view.status == Status::Done
            {
                return Ok(view);
            }
        }
    }
}

impl LiveSink for Runner {
    fn step(&self, step: Step) {
        if let Some(next) = self.next.get() {
            next.step(step);
        }
    }

    fn returned(&self, value: ReturnValue) {
        if let Some(returns) = lock(&self.watched).get_mut(&value.submission_id) {
            returns.insert(value.test_index, value.clone());
        }
        if let Some(next) = self.next.get() {
            next.returned(value);
        }
    }
}
