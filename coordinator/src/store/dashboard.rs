//! The dashboard's data: runs through `/api/execution` and `/api/testing`, saved code
//! versions, per-algorithm statistics, leaderboards, progress and achievements.
//!
//! A run is written when it is queued (`start_run`) and completed when it ends
//! (`finish_run`); the status of a run whose completion never came (its coordinator died
//! while it waited) is read from the anonymous `executions` row of the same (epoch,
//! submission id), which the projection writes exactly once. Progress and achievements
//! are updated in the transaction that completes a test-suite run; their rules are
//! `docs/analytics.md`'s.

use serde_json::Value;
use tokio_postgres::GenericClient;

use super::{Store, StoreError, put_blob, ts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// One call on given arguments.
    Execute,
    /// The algorithm's whole test suite.
    Test,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Execute => "EXECUTE",
            RunKind::Test => "TEST",
        }
    }
}

/// A run as it is queued.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub epoch: i64,
    pub submission_id: u64,
    pub user_id: i64,
    pub algorithm_id: i64,
    pub language: &'a str,
    pub kind: RunKind,
    pub source: &'a [u8],
    pub code_version_id: Option<i64>,
    pub input: Option<&'a Value>,
    pub total: i32,
}

/// What the API saw when the run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub status: &'static str,
    pub verdict: Option<&'static str>,
    pub result: Value,
    pub error: Option<String>,
    pub step_count: i64,
    pub passed: i32,
    pub cpu_us: i64,
    pub wall_us: i64,
    pub peak_bytes: i64,
}

/// A row of the caller's history.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub submission_id: i64,
    pub algorithm: String,
    pub language: String,
    pub kind: String,
    pub status: String,
    pub verdict: Option<String>,
    pub input: Option<Value>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub step_count: i64,
    pub passed: Option<i32>,
    pub total: i32,
    pub cpu_us: Option<i64>,
    pub wall_us: Option<i64>,
    pub peak_bytes: Option<i64>,
    pub code_version_id: Option<i64>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CodeVersion {
    pub id: i64,
    pub user_id: i64,
    pub algorithm: String,
    pub language: String,
    pub version: i32,
    pub note: String,
    pub sha256: Vec<u8>,
    pub size: i64,
    pub created_at: String,
    /// Only when one version is fetched.
    pub source: Option<String>,
}

/// Aggregates of the runs of one algorithm in one language.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub algorithm: String,
    pub name: String,
    pub language: String,
    pub runs: i64,
    pub finished: i64,
    pub succeeded: i64,
    /// Over successful runs only: a run stopped at a limit measures the limit.
    pub cpu_us: Aggregate,
    pub peak_bytes: Aggregate,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Aggregate {
    pub avg: Option<f64>,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaderboardRow {
    pub user_id: i64,
    pub user: String,
    pub language: String,
    pub cpu_us: i64,
    pub peak_bytes: i64,
    pub run_id: i64,
    pub achieved_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProgressRow {
    pub algorithm: String,
    pub name: String,
    pub difficulty: String,
    pub category: String,
    pub status: String,
    pub attempts: i32,
    pub best_cpu_us: Option<i64>,
    pub best_peak_bytes: Option<i64>,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Achievement {
    pub kind: String,
    pub title: String,
    pub description: String,
    pub points: i32,
    pub unlocked_at: String,
}

/// Every achievement: type, title, description, points. The rules are in
/// `unlock_achievements` and docs/analytics.md.
pub const ACHIEVEMENTS: [(&str, &str, &str, i32); 6] = [
    ("FIRST_SOLUTION", "First solution", "Passed the whole test suite of an algorithm", 10),
    ("ALGORITHM_EXPLORER", "Algorithm explorer", "Solved algorithms in 3 different categories", 25),
    ("COMPLEXITY_MASTER", "Complexity master", "Solved algorithms of 3 different time complexities", 25),
    ("STREAK_KEEPER", "Streak keeper", "Passed a test suite on 3 consecutive days (UTC)", 30),
    ("PERFORMANCE_CHAMPION", "Performance champion", "First on an algorithm's leaderboard, ahead of another user", 50),
    ("OPTIMIZATION_GURU", "Optimization guru", "Halved your own best CPU time on an algorithm in one language", 40),
];

/// A new best at most this fraction of the previous best unlocks OPTIMIZATION_GURU.
pub const OPTIMIZATION_FACTOR: f64 = 0.5;

/// The status of a run: its own when the API completed it, else the projection's.
const STATUS: &str = "coalesce(r.status, e.status, 'PENDING')";
const JOIN_EXECUTIONS: &str = "LEFT JOIN executions e ON e.epoch = r.epoch AND e.submission_id = r.submission_id";

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Records a queued run; returns its id.
    pub async fn start_run(&self, run: &NewRun<'_>) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let source = put_blob(&*tx, run.source).await?;
        let input = run.input.map(super::storable_json);
        let id: i64 = tx
            .query_one(
                "INSERT INTO dashboard_runs (epoch, submission_id, user_id, algorithm_id, language, kind, source_sha256,
                     code_version_id, input, total)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                &[
                    &run.epoch,
                    &i64_of(run.submission_id),
                    &run.user_id,
                    &run.algorithm_id,
                    &run.language,
                    &run.kind.as_str(),
                    &&source[..],
                    &run.code_version_id,
                    &input.as_deref(),
                    &run.total,
                ],
            )
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(id)
    }

    /// Completes a run, and for a test-suite run the user's progress and achievements,
    /// in one transaction. Returns the achievements unlocked now.
    pub async fn finish_run(&self, run_id: i64, outcome: &RunOutcome) -> Result<Vec<String>, StoreError> {
        // What the user's code returned or raised may hold NUL characters.
        let result = super::storable_json(&outcome.result);
        let error = outcome.error.as_deref().map(super::storable_text);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "UPDATE dashboard_runs SET status = $2, verdict = $3, result = $4, error = $5, step_count = $6,
                     passed = $7, cpu_us = $8, wall_us = $9, peak_bytes = $10, success = $11, finished_at = now()
                 WHERE id = $1 AND finished_at IS NULL
                 RETURNING user_id, algorithm_id, language, kind",
                &[
                    &run_id,
                    &outcome.status,
                    &outcome.verdict,
                    &*result,
                    &error.as_deref(),
                    &outcome.step_count,
                    &outcome.passed,
                    &outcome.cpu_us,
                    &outcome.wall_us,
                    &outcome.peak_bytes,
                    &(outcome.status == "SUCCESS"),
                ],
            )
            .await?;
        // Already finished (a retry): progress was counted then.
        let Some(row) = row else { return Ok(Vec::new()) };
        let user: Option<i64> = row.try_get(0)?;
        let algorithm: i64 = row.try_get(1)?;
        let language: String = row.try_get(2)?;
        let kind: String = row.try_get(3)?;
        let mut unlocked = Vec::new();
        if let Some(user) = user {
            let success = outcome.status == "SUCCESS";
            if kind == RunKind::Test.as_str() {
                let previous_best = previous_best(&*tx, user, algorithm, &language, run_id).await?;
                record_progress(&*tx, user, algorithm, success, outcome).await?;
                if success {
                    unlocked = unlock_achievements(&*tx, user, algorithm, outcome.cpu_us, previous_best).await?;
                }
            } else {
                tx.execute(
                    "INSERT INTO user_progress (user_id, algorithm_id, status) VALUES ($1, $2, 'IN_PROGRESS')
                     ON CONFLICT (user_id, algorithm_id) DO NOTHING",
                    &[&user, &algorithm],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(unlocked)
    }

    /// A page of `user`'s runs, newest first, and how many there are in all.
    pub async fn run_history(
        &self,
        user: i64,
        algorithm: Option<i64>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RunRow>, i64), StoreError> {
        let client = self.client().await?;
        let total: i64 = client
            .query_one(
                "SELECT count(*) FROM dashboard_runs WHERE user_id = $1 AND ($2::bigint IS NULL OR algorithm_id = $2)",
                &[&user, &algorithm],
            )
            .await?
            .try_get(0)?;
        let rows = client
            .query(
                &format!(
                    "{} WHERE r.user_id = $1 AND ($2::bigint IS NULL OR r.algorithm_id = $2)
                     ORDER BY r.id DESC LIMIT $3 OFFSET $4",
                    run_select()
                ),
                &[&user, &algorithm, &limit, &offset],
            )
            .await?;
        let list = rows.iter().map(run_row).collect::<Result<Vec<_>, StoreError>>()?;
        Ok((list, total))
    }

    /// One run and its owner (None: anonymous).
    pub async fn run(&self, id: i64) -> Result<Option<(Option<i64>, RunRow)>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("{} WHERE r.id = $1", run_select()), &[&id]).await?;
        match row {
            Some(r) => Ok(Some((r.try_get(19)?, run_row(&r)?))),
            None => Ok(None),
        }
    }

    /// Saves `source` as the next version of the user's solution of an algorithm in a
    /// language (versions count from 1 per user, algorithm and language).
    pub async fn save_version(
        &self,
        user: i64,
        algorithm: i64,
        language: &str,
        source: &[u8],
        note: &str,
    ) -> Result<CodeVersion, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Two saves at once must not pick the same number: serialize per user and
        // algorithm. Ids beyond 2^31 wrap, which only makes unrelated saves wait.
        tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&(user as i32), &(algorithm as i32)]).await?;
        let hash = put_blob(&*tx, source).await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO code_versions (user_id, algorithm_id, language, version, source_sha256, note)
                 SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4, $5 FROM code_versions
                 WHERE user_id = $1 AND algorithm_id = $2 AND language = $3
                 RETURNING id",
                &[&user, &algorithm, &language, &&hash[..], &note],
            )
            .await?
            .try_get(0)?;
        tx.commit().await?;
        drop(client);
        self.code_version(id).await?.ok_or_else(|| StoreError::Corrupt(format!("code version {id} vanished")))
    }

    /// The user's versions (without source), newest first.
    pub async fn list_versions(
        &self,
        user: i64,
        algorithm: Option<i64>,
        language: Option<&str>,
    ) -> Result<Vec<CodeVersion>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT v.id, v.user_id, a.slug, v.language, v.version, v.note, v.source_sha256,
                         length(b.content)::bigint, {}, NULL::text
                     FROM code_versions v JOIN algorithms a ON a.id = v.algorithm_id JOIN blobs b ON b.sha256 = v.source_sha256
                     WHERE v.user_id = $1 AND ($2::bigint IS NULL OR v.algorithm_id = $2) AND ($3::text IS NULL OR v.language = $3)
                     ORDER BY v.id DESC LIMIT 1000",
                    ts!("v.created_at")
                ),
                &[&user, &algorithm, &language],
            )
            .await?;
        rows.iter().map(code_version).collect()
    }

    /// One version with its source.
    pub async fn code_version(&self, id: i64) -> Result<Option<CodeVersion>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT v.id, v.user_id, a.slug, v.language, v.version, v.note, v.source_sha256,
                         length(b.content)::bigint, {}, convert_from(b.content, 'UTF8')
                     FROM code_versions v JOIN algorithms a ON a.id = v.algorithm_id JOIN blobs b ON b.sha256 = v.source_sha256
                     WHERE v.id = $1",
                    ts!("v.created_at")
                ),
                &[&id],
            )
            .await?;
        row.as_ref().map(code_version).transpose()
    }

    /// Per algorithm and language: how many runs, how many succeeded, and CPU time and
    /// peak memory over the successful ones.
    pub async fn run_stats(&self, algorithm: Option<i64>, language: Option<&str>) -> Result<Vec<Stats>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "WITH runs AS (
                         SELECT r.algorithm_id, r.language, {STATUS} AS status, r.cpu_us, r.peak_bytes
                         FROM dashboard_runs r {JOIN_EXECUTIONS}
                         WHERE ($1::bigint IS NULL OR r.algorithm_id = $1) AND ($2::text IS NULL OR r.language = $2))
                     SELECT a.slug, a.name, runs.language, count(*),
                         count(*) FILTER (WHERE status NOT IN ('PENDING', 'RUNNING')),
                         count(*) FILTER (WHERE status = 'SUCCESS'),
                         (avg(cpu_us) FILTER (WHERE status = 'SUCCESS'))::float8,
                         min(cpu_us) FILTER (WHERE status = 'SUCCESS'), max(cpu_us) FILTER (WHERE status = 'SUCCESS'),
                         (avg(peak_bytes) FILTER (WHERE status = 'SUCCESS'))::float8,
                         min(peak_bytes) FILTER (WHERE status = 'SUCCESS'), max(peak_bytes) FILTER (WHERE status = 'SUCCESS')
                     FROM runs JOIN algorithms a ON a.id = runs.algorithm_id
                     GROUP BY a.slug, a.name, runs.language ORDER BY a.slug, runs.language"
                ),
                &[&algorithm, &language],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Stats {
                    algorithm: r.try_get(0)?,
                    name: r.try_get(1)?,
                    language: r.try_get(2)?,
                    runs: r.try_get(3)?,
                    finished: r.try_get(4)?,
                    succeeded: r.try_get(5)?,
                    cpu_us: Aggregate { avg: r.try_get(6)?, min: r.try_get(7)?, max: r.try_get(8)? },
                    peak_bytes: Aggregate { avg: r.try_get(9)?, min: r.try_get(10)?, max: r.try_get(11)? },
                })
            })
            .collect()
    }

    /// One row per user: their best passing test-suite run of the algorithm (least CPU
    /// time, then least memory, then earliest), best first.
    pub async fn leaderboard(&self, algorithm: i64, language: Option<&str>, limit: i64) -> Result<Vec<LeaderboardRow>, StoreError> {
        let client = self.client().await?;
        leaderboard(&**client, algorithm, language, limit).await
    }

    /// Every algorithm with the user's status on it (NOT_STARTED where they never ran it).
    pub async fn progress(&self, user: i64) -> Result<Vec<ProgressRow>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT a.slug, a.name, a.difficulty, a.category, coalesce(p.status, 'NOT_STARTED'),
                         coalesce(p.attempts, 0), p.best_cpu_us, p.best_peak_bytes, {}
                     FROM algorithms a LEFT JOIN user_progress p ON p.algorithm_id = a.id AND p.user_id = $1
                     ORDER BY a.id",
                    ts!("p.completed_at")
                ),
                &[&user],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ProgressRow {
                    algorithm: r.try_get(0)?,
                    name: r.try_get(1)?,
                    difficulty: r.try_get(2)?,
                    category: r.try_get(3)?,
                    status: r.try_get(4)?,
                    attempts: r.try_get(5)?,
                    best_cpu_us: r.try_get(6)?,
                    best_peak_bytes: r.try_get(7)?,
                    completed_at: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// The user's unlocked achievements, oldest first.
    pub async fn achievements(&self, user: i64) -> Result<Vec<Achievement>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT type, title, description, points, {} FROM achievements WHERE user_id = $1 ORDER BY unlocked_at, id",
                    ts!("unlocked_at")
                ),
                &[&user],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Achievement {
                    kind: r.try_get(0)?,
                    title: r.try_get(1)?,
                    description: r.try_get(2)?,
                    points: r.try_get(3)?,
                    unlocked_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Whether a user exists (an admin asking for someone's progress).
    pub async fn user_exists(&self, user: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client.query_opt("SELECT 1 FROM users WHERE id = $1", &[&user]).await?.is_some())
    }

    /// Whether the user has passed the algorithm's whole test suite (COMPLETED or
    /// MASTERED): the catalog then shows them its solution.
    pub async fn has_solved(&self, user: i64, algorithm: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT 1 FROM user_progress WHERE user_id = $1 AND algorithm_id = $2 AND status IN ('COMPLETED', 'MASTERED')",
                &[&user, &algorithm],
            )
            .await?;
        Ok(row.is_some())
    }

    /// How many dashboard runs and code versions there are (tests: nothing written).
    pub async fn dashboard_row_counts(&self) -> Result<(i64, i64), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT (SELECT count(*) FROM dashboard_runs), (SELECT count(*) FROM code_versions)", &[])
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}

fn run_select() -> String {
    format!(
        "SELECT r.id, r.submission_id, a.slug, r.language, r.kind, {STATUS}, coalesce(r.verdict, e.verdict),
             r.input, r.result, coalesce(r.error, e.error), r.step_count, r.passed, r.total, r.cpu_us,
             r.wall_us, r.peak_bytes, r.code_version_id, {}, {}, r.user_id
         FROM dashboard_runs r JOIN algorithms a ON a.id = r.algorithm_id {JOIN_EXECUTIONS}",
        ts!("r.created_at"),
        ts!("coalesce(r.finished_at, e.finished_at)")
    )
}

fn run_row(r: &tokio_postgres::Row) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: r.try_get(0)?,
        submission_id: r.try_get(1)?,
        algorithm: r.try_get(2)?,
        language: r.try_get(3)?,
        kind: r.try_get(4)?,
        status: r.try_get(5)?,
        verdict: r.try_get(6)?,
        input: r.try_get(7)?,
        result: r.try_get(8)?,
        error: r.try_get(9)?,
        step_count: r.try_get(10)?,
        passed: r.try_get(11)?,
        total: r.try_get(12)?,
        cpu_us: r.try_get(13)?,
        wall_us: r.try_get(14)?,
        peak_bytes: r.try_get(15)?,
        code_version_id: r.try_get(16)?,
        created_at: r.try_get(17)?,
        finished_at: r.try_get(18)?,
    })
}

fn code_version(r: &tokio_postgres::Row) -> Result<CodeVersion, StoreError> {
    Ok(CodeVersion {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        algorithm: r.try_get(2)?,
        language: r.try_get(3)?,
        version: r.try_get(4)?,
        note: r.try_get(5)?,
        sha256: r.try_get(6)?,
        size: r.try_get(7)?,
        created_at: r.try_get(8)?,
        source: r.try_get(9)?,
    })
}

async fn leaderboard(
    client: &impl GenericClient,
    algorithm: i64,
    language: Option<&str>,
    limit: i64,
) -> Result<Vec<LeaderboardRow>, StoreError> {
    let rows = client
        .query(
            &format!(
                "WITH best AS (
                     SELECT DISTINCT ON (r.user_id) r.user_id, r.language, r.cpu_us, r.peak_bytes, r.id, r.finished_at
                     FROM dashboard_runs r
                     WHERE r.algorithm_id = $1 AND r.kind = 'TEST' AND r.success AND r.user_id IS NOT NULL
                         AND r.cpu_us IS NOT NULL AND ($2::text IS NULL OR r.language = $2)
                     ORDER BY r.user_id, r.cpu_us, r.peak_bytes, r.id)
                 SELECT b.user_id, u.name, b.language, b.cpu_us, b.peak_bytes, b.id, {}
                 FROM best b JOIN users u ON u.id = b.user_id
                 ORDER BY b.cpu_us, b.peak_bytes, b.id LIMIT $3",
                ts!("b.finished_at")
            ),
            &[&algorithm, &language, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(LeaderboardRow {
                user_id: r.try_get(0)?,
                user: r.try_get(1)?,
                language: r.try_get(2)?,
                cpu_us: r.try_get(3)?,
                peak_bytes: r.try_get(4)?,
                run_id: r.try_get(5)?,
                achieved_at: r.try_get(6)?,
            })
        })
        .collect()
}

/// The user's best CPU time on the algorithm in the run's language before this run.
async fn previous_best(
    client: &impl GenericClient,
    user: i64,
    algorithm: i64,
    language: &str,
    run_id: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(client
        .query_one(
            "SELECT min(cpu_us) FROM dashboard_runs WHERE user_id = $1 AND algorithm_id = $2 AND language = $3
                 AND kind = 'TEST' AND success AND id <> $4",
            &[&user, &algorithm, &language, &run_id],
        )
        .await?
        .try_get(0)?)
}

/// Counts the attempt; a pass makes the algorithm COMPLETED, and MASTERED once it has
/// passed in two languages.
async fn record_progress(
    client: &impl GenericClient,
    user: i64,
    algorithm: i64,
    success: bool,
    outcome: &RunOutcome,
) -> Result<(), StoreError> {
    let languages: i64 = client
        .query_one(
            "SELECT count(DISTINCT language) FROM dashboard_runs
             WHERE user_id = $1 AND algorithm_id = $2 AND kind = 'TEST' AND success",
            &[&user, &algorithm],
        )
        .await?
        .try_get(0)?;
    let status = match (success, languages) {
        (true, n) if n >= 2 => "MASTERED",
        (true, _) => "COMPLETED",
        (false, _) => "IN_PROGRESS",
    };
    let (cpu, peak) = if success { (Some(outcome.cpu_us), Some(outcome.peak_bytes)) } else { (None, None) };
    // A failed attempt never lowers a status already reached.
    client
        .execute(
            "INSERT INTO user_progress (user_id, algorithm_id, status, attempts, best_cpu_us, best_peak_bytes, completed_at)
             VALUES ($1, $2, $3, 1, $4, $5, CASE WHEN $6 THEN now() END)
             ON CONFLICT (user_id, algorithm_id) DO UPDATE SET
                 attempts = user_progress.attempts + 1,
                 status = CASE
                     WHEN EXCLUDED.status = 'MASTERED' OR user_progress.status = 'MASTERED' THEN 'MASTERED'
                     WHEN EXCLUDED.status = 'COMPLETED' OR user_progress.status = 'COMPLETED' THEN 'COMPLETED'
                     ELSE 'IN_PROGRESS' END,
                 best_cpu_us = least(user_progress.best_cpu_us, EXCLUDED.best_cpu_us),
                 best_peak_bytes = least(user_progress.best_peak_bytes, EXCLUDED.best_peak_bytes),
                 completed_at = coalesce(user_progress.completed_at, EXCLUDED.completed_at),
                 updated_at = now()",
            &[&user, &algorithm, &status, &cpu, &peak, &success],
        )
        .await?;
    Ok(())
}

/// Checks every rule after a passing test-suite run; returns the types unlocked now.
async fn unlock_achievements(
    client: &impl GenericClient,
    user: i64,
    algorithm: i64,
    cpu_us: i64,
    previous_best: Option<i64>,
) -> Result<Vec<String>, StoreError> {
    let solved = "FROM user_progress p JOIN algorithms a ON a.id = p.algorithm_id
                  WHERE p.user_id = $1 AND p.status IN ('COMPLETED', 'MASTERED')";
    let count = |sql: String| async move {
        let n: i64 = client.query_one(&sql, &[&user]).await?.try_get(0)?;
        Ok::<i64, StoreError>(n)
    };
    let mut earned = vec!["FIRST_SOLUTION"];
    if count(format!("SELECT count(DISTINCT a.category) {solved}")).await? >= 3 {
        earned.push("ALGORITHM_EXPLORER");
    }
    if count(format!("SELECT count(DISTINCT a.time_complexity) {solved}")).await? >= 3 {
        earned.push("COMPLEXITY_MASTER");
    }
    // Passing runs on today's UTC date and the two days before it.
    let streak: i64 = client
        .query_one(
            "SELECT count(DISTINCT (finished_at AT TIME ZONE 'UTC')::date) FROM dashboard_runs
             WHERE user_id = $1 AND kind = 'TEST' AND success
                 AND (finished_at AT TIME ZONE 'UTC')::date >= (now() AT TIME ZONE 'UTC')::date - 2",
            &[&user],
        )
        .await?
        .try_get(0)?;
    if streak >= 3 {
        earned.push("STREAK_KEEPER");
    }
    let board = leaderboard(client, algorithm, None, 2).await?;
    if board.len() >= 2 && board[0].user_id == user && board[0].cpu_us < board[1].cpu_us {
        earned.push("PERFORMANCE_CHAMPION");
    }
    if previous_best.is_some_and(|best| (cpu_us as f64) <= best as f64 * OPTIMIZATION_FACTOR) {
        earned.push("OPTIMIZATION_GURU");
    }
    let mut unlocked = Vec::new();
    for kind in earned {
        let Some((_, title, description, points)) = ACHIEVEMENTS.iter().find(|a| a.0 == kind) else { continue };
        let row = client
            .query_opt(
                "INSERT INTO achievements (user_id, type, title, description, points) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, type) DO NOTHING RETURNING type",
                &[&user, &kind, title, description, points],
            )
            .await?;
        if row.is_some() {
            unlocked.push(kind.to_owned());
        }
    }
    Ok(unlocked)
}
