//! Finished submissions into the history tables, exactly once.
//!
//! The judge state machine (replicated by the raft log) is the source of truth for live
//! judging; the store keeps history.
//!
//! A raft cluster projects into one stream per cluster (`cluster_stream`, named by the
//! cluster id in the log): *every* coordinator projects every completion it applies, and
//! the (stream, submission id, judging) key lets exactly one row in (`project_judging`).
//! Nothing depends on which node leads, how often a node restarted (a restart replays its
//! completions again), or whether it caught up entry by entry or from a snapshot (which
//! announces every finished submission it holds): a row already there is a duplicate.
//! The cost is one insert attempt per coordinator per completion.
//!
//! `project` is the positional variant for a single stream of completions:
//! its `executions` row, its `test_results` rows and the stream's new position commit in
//! one transaction. A stream is one run of the judge (an `epoch`, because submission ids
//! restart at 1 with each run); its positions are the order in which completions were
//! seen, 1, 2, 3, … (with raft: the log index). So:
//! - a completion delivered twice with the same position is skipped by the position,
//! - the same submission at a later position is skipped by the (epoch, submission id,
//!   judging) key, where `judging` counts its rejudges (each of which is projected),
//! - a projector that dies between rows and position commits neither, and the one that
//!   resumes from the stored position writes them again once.

use protocol::Verdict;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::{Queries, Store, StoreError, put_blob};
use crate::judge::{Status, SubmissionId};
use crate::scheduler::{Scheduler, SubmissionView};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projected {
    /// Rows written; the position advanced.
    Written,
    /// The submission was already in the history; only the position advanced.
    Duplicate,
    /// The position was applied before: nothing changed.
    AlreadyApplied,
}

/// The seed's ExecutionStatus of a finished submission.
pub fn status_of(verdict: Option<Verdict>) -> &'static str {
    match verdict {
        None => "PENDING",
        Some(Verdict::AC) => "SUCCESS",
        Some(Verdict::TLE) => "TIMEOUT",
        Some(Verdict::MLE) => "MEMORY_EXCEEDED",
        Some(_) => "ERROR",
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Starts a new stream (one per coordinator run) at position 0.
    pub async fn new_epoch(&self) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx.query_one("INSERT INTO judge_epochs DEFAULT VALUES RETURNING id", &[]).await?.try_get(0)?;
        tx.execute("INSERT INTO projection (stream, position) VALUES ($1, 0)", &[&id]).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The stream of the raft cluster named `cluster` (see `Command::NameCluster`),
    /// created by whichever of its coordinators asks first.
    pub async fn cluster_stream(&self, cluster: &str) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Two coordinators asking at once: the second's insert waits for the first's
        // commit, then does nothing; the select sees the committed row.
        tx.execute("INSERT INTO judge_epochs (cluster) VALUES ($1) ON CONFLICT (cluster) DO NOTHING", &[&cluster]).await?;
        let id: i64 = tx.query_one("SELECT id FROM judge_epochs WHERE cluster = $1", &[&cluster]).await?.try_get(0)?;
        tx.execute("INSERT INTO projection (stream, position) VALUES ($1, 0) ON CONFLICT (stream) DO NOTHING", &[&id]).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Projects the finished submission `view` into the cluster stream `stream`, once per
    /// judging whoever calls; the stream's position counts the judgings written.
    pub async fn project_judging(&self, stream: i64, view: &SubmissionView) -> Result<Projected, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !insert_judging(&tx, stream, view).await? {
            return Ok(Projected::Duplicate);
        }
        tx.execute("UPDATE projection SET position = position + 1, updated_at = now() WHERE stream = $1", &[&stream]).await?;
        tx.commit().await?;
        Ok(Projected::Written)
    }

    /// The last position applied on `stream`.
    pub async fn position(&self, stream: i64) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt("SELECT position FROM projection WHERE stream = $1", &[&stream]).await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Projects the finished submission `view`, seen at `position` of `stream`.
    pub async fn project(&self, stream: i64, position: i64, view: &SubmissionView) -> Result<Projected, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The row lock serializes projectors of one stream (an old leader still running).
        let applied: i64 = tx
            .query_opt("SELECT position FROM projection WHERE stream = $1 FOR UPDATE", &[&stream])
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no projection stream {stream}")))?
            .try_get(0)?;
        if applied >= position {
            return Ok(Projected::AlreadyApplied);
        }
        let outcome = if insert_judging(&tx, stream, view).await? { Projected::Written } else { Projected::Duplicate };
        tx.execute("UPDATE projection SET position = $2, updated_at = now() WHERE stream = $1", &[&stream, &position])
            .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// How many history rows one submission of a stream has (tests).
    pub async fn execution_count(&self, stream: i64, submission: SubmissionId) -> Result<i64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT count(*) FROM executions WHERE epoch = $1 AND submission_id = $2", &[&stream, &i64_of(submission)])
            .await?
            .try_get(0)?)
    }
}

/// Inserts the rows of one judging unless (stream, submission, judging) is there already;
/// true if written.
async fn insert_judging(tx: &impl Queries, stream: i64, view: &SubmissionView) -> Result<bool, StoreError> {
    let source = put_blob(tx, &view.source).await?;
    let max = |f: fn(&protocol::TestResult) -> u64| view.tests.iter().map(|t| f(&t.result)).max().map(i64_of);
    // What a program raised or a compiler printed may hold NUL, which a text column
    // refuses: the history keeps U+FFFD in its place (the judge keeps the bytes).
    let message = super::storable_text(&view.message);
    let error = match view.verdict {
        Some(Verdict::AC) | None => None,
        Some(_) if !view.compile_output.is_empty() => Some(super::storable_text(&view.compile_output)),
        Some(_) => Some(message.clone()),
    };
    let row = tx
        .query_opt(
            "INSERT INTO executions (epoch, submission_id, language, source_sha256, status, verdict, message,
                 cpu_us, wall_us, peak_bytes, error, accepted_at, finished_at, judging)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                 to_timestamp($12::float8 / 1000), to_timestamp($13::float8 / 1000), $14)
             ON CONFLICT (epoch, submission_id, judging) DO NOTHING RETURNING id",
            &[
                &stream,
                &i64_of(view.id),
                &view.language,
                &&source[..],
                &status_of(view.verdict),
                &view.verdict.map(|v| v.as_str()),
                &message,
                &max(|r| r.cpu_time_us),
                &max(|r| r.wall_time_us),
                &max(|r| r.peak_memory_bytes),
                &error,
                &(view.accepted_ms as f64),
                &view.finished_ms.map(|ms| ms as f64),
                // A rejudge is a new judging of the same submission, not a duplicate.
                &i32::try_from(view.history.len()).unwrap_or(i32::MAX),
            ],
        )
        .await?;
    let Some(row) = row else { return Ok(false) };
    let execution: i64 = row.try_get(0)?;
    for t in &view.tests {
        let r = &t.result;
        let limit = r.limit.and_then(|l| serde_json::to_value(l).ok()).and_then(|v| v.as_str().map(str::to_owned));
        tx.execute(
            "INSERT INTO test_results (execution_id, ordinal, verdict, limit_hit, cpu_us, wall_us,
                 peak_bytes, exit_code, signal, stdout, stderr, message)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &execution,
                &i32::try_from(r.index).unwrap_or(i32::MAX),
                &r.verdict.as_str(),
                &limit,
                &i64_of(r.cpu_time_us),
                &i64_of(r.wall_time_us),
                &i64_of(r.peak_memory_bytes),
                &r.exit_code,
                &r.signal,
                // NUL cannot be in a text column; the full bytes stay in the judge.
                &String::from_utf8_lossy(&r.stdout).replace('\0', "\u{fffd}"),
                &String::from_utf8_lossy(&r.stderr).replace('\0', "\u{fffd}"),
                &r.message.replace('\0', "\u{fffd}"),
            ],
        )
        .await?;
    }
    Ok(true)
}

/// Projects every completion the scheduler announces into the cluster stream `stream`,
/// until the scheduler is gone. `completions` must be subscribed before the first submission can finish (so
/// before serving). A lag (more than the channel holds finished while we were slow)
/// falls back to scanning the judge's submissions; rows already there are duplicates.
pub async fn run(scheduler: Scheduler, store: Store, stream: i64, mut completions: Receiver<SubmissionId>) {
    loop {
        let ids: Vec<SubmissionId> = match completions.recv().await {
            Ok(id) => vec![id],
            Err(RecvError::Closed) => return,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "projection lagged behind completions; rescanning the judge");
                rescan(&scheduler).await
            }
        };
        for id in ids {
            let Some(view) = scheduler.get(id).await else { continue };
            if view.status != Status::Done {
                continue;
            }
            project_with_retry(&store, stream, &view).await;
        }
    }
}

/// Ids of every finished submission the judge still knows (ids are dense from 1).
async fn rescan(scheduler: &Scheduler) -> Vec<SubmissionId> {
    let mut done = Vec::new();
    let mut id = 1;
    while let Some(view) = scheduler.get(id).await {
        if view.status == Status::Done {
            done.push(id);
        }
        id += 1;
    }
    done
}

/// The database may be briefly away (a restart, a failover): retry with growing pauses
/// for about a minute, then give up on this one submission and say so.
async fn project_with_retry(store: &Store, stream: i64, view: &SubmissionView) {
    let mut pause = std::time::Duration::from_millis(100);
    for attempt in 1..=10 {
        match store.project_judging(stream, view).await {
            Ok(outcome) => {
                tracing::debug!(submission = view.id, ?outcome, "projected");
                return;
            }
            // A row the database refuses is refused again on every retry.
            Err(e) if attempt < 10 && e.is_transient() => {
                tracing::warn!(submission = view.id, attempt, error = %e, "projecting failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(10));
            }
            Err(e) => tracing::error!(submission = view.id, error = %e, "projecting failed; not in the history"),
        }
    }
}
