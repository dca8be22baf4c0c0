#![allow(clippy::unwrap_used)]

use protocol::{JobOptions, Limits, TestResult, Verdict};

use super::auth::Role;
use super::migrate::{self, Migration};
use super::projection::Projected;
use super::testing::{fresh_database, fresh_store};
use super::*;
use crate::judge::{Status, TestRecord};
use crate::scheduler::SubmissionView;

#[tokio::test]
async fn migrations_apply_once_and_are_idempotent() {
    let config = fresh_database().await;
    let store = Store::connect(config.clone()).unwrap();
    assert_eq!(store.schema_version().await.ok(), None, "no schema_version table before migrating");
    let every: Vec<i32> = migrate::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(store.migrate().await.unwrap(), every);
    assert_eq!(store.migrate().await.unwrap(), Vec::<i32>::new());
    // A second coordinator opening the same database applies nothing either.
    let again = Store::open(config).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), migrate::latest());
}

#[tokio::test]
async fn concurrent_start_ups_apply_each_migration_once() {
    let config = fresh_database().await;
    let (one, two) = (Store::connect(config.clone()).unwrap(), Store::connect(config).unwrap());
    let (a, b) = tokio::join!(one.migrate(), two.migrate());
    let mut all = a.unwrap();
    all.extend(b.unwrap());
    all.sort();
    assert_eq!(all, migrate::MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_newer_schema_is_refused_with_a_clear_error() {
    let config = fresh_database().await;
    let store = Store::open(config.clone()).await.unwrap();
    store
        .client()
        .await
        .unwrap()
        .execute("INSERT INTO schema_version (version, name, sha256) VALUES (999, 'from the future', '\\x00')", &[])
        .await
        .unwrap();
    let err = Store::open(config).await.err().unwrap();
    assert!(matches!(err, StoreError::SchemaTooNew { database: 999, binary, .. } if binary == migrate::latest()), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("newer than this coordinator") && message.contains("999"), "{message}");
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let store = fresh_store().await;
    let edited = [Migration { version: 1, name: "init", sql: "SELECT 1" }];
    let err = migrate::run(&mut store.pool.get().await.unwrap(), &edited).await.err().unwrap();
    assert!(matches!(err, StoreError::MigrationChanged { version: 1, .. }), "{err:?}");
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind() {
    let store = fresh_store().await;
    let mut list: Vec<Migration> = migrate::MIGRATIONS.iter().map(|m| Migration { version: m.version, name: m.name, sql: m.sql }).collect();
    let next = migrate::latest() + 1;
    list.push(Migration { version: next, name: "broken", sql: "CREATE TABLE half_done (x int); SELECT no_such_column FROM users" });
    let err = migrate::run(&mut store.pool.get().await.unwrap(), &list).await.err().unwrap();
    assert!(matches!(err, StoreError::Migration { version, .. } if version == next), "{err:?}");
    assert_eq!(store.schema_version().await.unwrap(), migrate::latest());
    let c = store.client().await.unwrap();
    assert!(c.query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'half_done'", &[]).await.unwrap().is_none());
}

#[tokio::test]
async fn tokens_authenticate_their_user_only_while_unrevoked() {
    let store = fresh_store().await;
    let (id, token) = store.create_user_with_token("ada", Role::Setter).await.unwrap();
    let who = store.authenticate(&token).await.unwrap().unwrap();
    assert_eq!((who.user_id, who.name.as_str(), who.role), (id, "ada", Role::Setter));
    assert_eq!(store.authenticate("jc_nonsense").await.unwrap(), None);
    let other = auth::new_token().unwrap();
    assert_eq!(store.authenticate(&other).await.unwrap(), None);
    // Only the hash is stored.
    let c = store.client().await.unwrap();
    let stored: Vec<u8> = c.query_one("SELECT token_sha256 FROM api_tokens", &[]).await.unwrap().get(0);
    assert_eq!(stored, sha256(token.as_bytes()).to_vec());
    c.execute("UPDATE api_tokens SET revoked_at = now()", &[]).await.unwrap();
    assert_eq!(store.authenticate(&token).await.unwrap(), None);
}

#[tokio::test]
async fn the_admin_token_is_created_once_and_written_0600() {
    use std::os::unix::fs::PermissionsExt;
    let store = fresh_store().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    let token = store.ensure_admin(&file).await.unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(store.authenticate(&token).await.unwrap().unwrap().role, Role::Admin);
    assert_eq!(store.ensure_admin(&file).await.unwrap(), None);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token, "a later start keeps the file");
}

#[tokio::test]
async fn the_shipped_catalog_is_seeded_once() {
    let store = fresh_store().await;
    let entries = catalog::shipped::all().unwrap();
    assert!(entries.len() >= 20);
    assert_eq!(store.seed_catalog(&entries).await.unwrap(), entries.len());
    assert_eq!(store.seed_catalog(&entries).await.unwrap(), 0);
    let two_sum = store.get_algorithm("two_sum").await.unwrap().unwrap();
    assert_eq!(two_sum.entry_point, "two_sum");
    assert!(!two_sum.test_cases.is_empty() && two_sum.reference_solutions.contains_key("python"));
    // Deleted by an admin: not brought back by the next start.
    assert!(store.delete_algorithm("two_sum").await.unwrap());
    assert_eq!(store.seed_catalog(&entries).await.unwrap(), 0);
    assert!(store.get_algorithm("two_sum").await.unwrap().is_none());
}

#[tokio::test]
async fn equal_test_data_is_stored_once() {
    let store = fresh_store().await;
    let entries = catalog::shipped::all().unwrap();
    store.seed_catalog(&entries).await.unwrap();
    let c = store.client().await.unwrap();
    let tests: i64 = c.query_one("SELECT count(DISTINCT input_sha256) FROM test_cases", &[]).await.unwrap().get(0);
    let blobs: i64 = c.query_one("SELECT count(*) FROM blobs", &[]).await.unwrap().get(0);
    let refs: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT input_sha256 FROM test_cases UNION SELECT expected_sha256 FROM test_cases
             UNION SELECT source_sha256 FROM reference_solutions UNION SELECT source_sha256 FROM algorithm_generators) x",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(tests > 0);
    assert_eq!(blobs, refs, "every blob is referenced, and no content twice");
}

fn finished(id: u64, verdict: Verdict) -> SubmissionView {
    let result = TestResult {
        submission_id: id,
        index: 0,
        verdict,
        limit: None,
        cpu_time_us: 1200,
        wall_time_us: 3400,
        peak_memory_bytes: 5 << 20,
        exit_code: Some(0),
        signal: None,
        stdout: b"3\n".to_vec(),
        stderr: Vec::new(),
        message: String::new(),
        score: None,
    };
    SubmissionView {
        id,
        language: "python".into(),
        status: Status::Done,
        verdict: Some(verdict),
        message: String::new(),
        compile_output: String::new(),
        test_count: 1,
        limits: Limits { cpu_ms: 1000, wall_ms: 3000, memory_bytes: 256 << 20, max_processes: 64, output_bytes: 1 << 20 },
        tests: vec![TestRecord { result, stdout_len: 2, stderr_len: 0 }],
        attempts: 1,
        accepted_ms: 1_700_000_000_000,
        finished_ms: Some(1_700_000_000_500),
        source: b"print(1+2)".to_vec(),
        inputs: Vec::new(),
        options: JobOptions::default(),
        judge0: None,
        problem: None,
        history: Vec::new(),
    }
}

#[tokio::test]
async fn a_completion_replayed_is_projected_once() {
    let store = fresh_store().await;
    let stream = store.new_epoch().await.unwrap();
    let view = finished(7, Verdict::AC);
    assert_eq!(store.project(stream, 1, &view).await.unwrap(), Projected::Written);
    // The same delivery again (a retry after a lost commit acknowledgement).
    assert_eq!(store.project(stream, 1, &view).await.unwrap(), Projected::AlreadyApplied);
    // The same submission at a later position (the completion broadcast twice).
    assert_eq!(store.project(stream, 2, &view).await.unwrap(), Projected::Duplicate);
    assert_eq!(store.execution_count(stream, 7).await.unwrap(), 1);
    assert_eq!(store.position(stream).await.unwrap(), Some(2));
    let c = store.client().await.unwrap();
    let row = c
        .query_one("SELECT status, verdict, cpu_us, peak_bytes, (SELECT count(*) FROM test_results) FROM executions", &[])
        .await
        .unwrap();
    let (status, verdict, cpu, peak, tests): (String, String, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!((status.as_str(), verdict.as_str(), cpu, peak, tests), ("SUCCESS", "AC", 1200, 5 << 20, 1));
    // Another run of the judge (a new epoch) may reuse submission id 7.
    let next = store.new_epoch().await.unwrap();
    assert_eq!(store.project(next, 1, &finished(7, Verdict::TLE)).await.unwrap(), Projected::Written);
}

#[tokio::test]
async fn concurrent_projectors_of_one_stream_write_once() {
    let store = fresh_store().await;
    let stream = store.new_epoch().await.unwrap();
    let view = finished(1, Verdict::WA);
    let (a, b) = tokio::join!(store.project(stream, 1, &view), store.project(stream, 1, &view));
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| *o == Projected::Written);
    assert_eq!(outcomes, [Projected::AlreadyApplied, Projected::Written]);
    assert_eq!(store.execution_count(stream, 1).await.unwrap(), 1);
}

#[tokio::test]
async fn the_scheduler_completions_reach_the_history() {
    use crate::link::{Dispatch, DispatchError};
    struct NoAgents;
    impl Dispatch for NoAgents {
        fn dispatch(&self, _: &str, _: protocol::Job) -> Result<(), DispatchError> {
            Ok(())
        }
    }
    let store = fresh_store().await;
    let stream = store.new_epoch().await.unwrap();
    let scheduler = crate::scheduler::Scheduler::new(std::sync::Arc::new(NoAgents));
    let completions = scheduler.completions();
    tokio::spawn(projection::run(scheduler.clone(), store.clone(), stream, completions));
    let sub = crate::judge::NewSubmission {
        language: "python".into(),
        source: b"print(1)".to_vec(),
        tests: vec![protocol::TestCase { input: Vec::new(), expected_output: Some(b"1\n".to_vec()) }],
        limits: finished(1, Verdict::AC).limits,
        options: JobOptions::default(),
        judge0: None,
        problem: None,
    };
    let id = scheduler.submit(sub).await.unwrap();
    // An agent registers, takes the job and reports a verdict.
    use crate::link::LinkEvent;
    scheduler.handle_event(LinkEvent::AgentUp { agent_id: "a".into(), languages: vec!["python".into()], slots: 1 }).await;
    let final_result = protocol::FinalResult { submission_id: id, verdict: Verdict::AC, compile_output: String::new(), message: String::new() };
    scheduler.handle_event(LinkEvent::Final { agent_id: "a".into(), result: final_result.clone() }).await;
    // A duplicate Final (a retried stream) is rejected by the judge; nothing new either way.
    scheduler.handle_event(LinkEvent::Final { agent_id: "a".into(), result: final_result }).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.execution_count(stream, id).await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "never projected");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(store.execution_count(stream, id).await.unwrap(), 1);
    assert_eq!(store.position(stream).await.unwrap(), Some(1));
}

#[tokio::test]
async fn problems_round_trip_and_conflict_unless_replaced() {
    use crate::contest::package;
    let store = fresh_store().await;
    let files: package::Files = [
        ("problem.yaml", "name: Echo\nvalidation: custom\n"),
        ("data/sample/1.in", "a"),
        ("data/sample/1.ans", "a"),
        ("data/secret/1.in", "b"),
        ("data/secret/1.ans", "b"),
        ("output_validator/v.py", "import sys\nsys.exit(42)\n"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    let p = package::parse("echo", &files).unwrap();
    store.put_problem(&p, false, None).await.unwrap();
    assert_eq!(store.get_problem("echo").await.unwrap(), Some(p.clone()));
    assert!(matches!(store.put_problem(&p, false, None).await, Err(StoreError::Conflict(_))));
    let mut fewer = p.clone();
    fewer.tests.truncate(1);
    fewer.meta.name = "Echo 2".into();
    store.put_problem(&fewer, true, None).await.unwrap();
    assert_eq!(store.get_problem("echo").await.unwrap(), Some(fewer));
    let list = store.list_problems().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].name.as_str(), list[0].tests), ("Echo 2", 1));
    assert_eq!(store.get_problem("nope").await.unwrap(), None);
}

#[tokio::test]
async fn coordinators_of_one_cluster_project_each_judging_once() {
    let store = fresh_store().await;
    // Three coordinators of cluster "c1" look for its stream at once: one stream.
    let (a, b, c) = tokio::join!(store.cluster_stream("c1"), store.cluster_stream("c1"), store.cluster_stream("c1"));
    let stream = a.unwrap();
    assert_eq!((b.unwrap(), c.unwrap()), (stream, stream));
    // Each node projects every completion it applies, in its own order; one replays them
    // again after a restart or a snapshot install.
    let views: Vec<SubmissionView> = (1..=5).map(|id| finished(id, Verdict::AC)).collect();
    let node = |order: Vec<usize>| {
        let (store, views) = (store.clone(), views.clone());
        async move {
            let mut written = 0;
            for k in order {
                if store.project_judging(stream, &views[k]).await.unwrap() == Projected::Written {
                    written += 1;
                }
            }
            written
        }
    };
    let (x, y, z) = tokio::join!(node(vec![0, 1, 2, 3, 4]), node(vec![4, 3, 2, 1, 0]), node(vec![2, 0, 4, 1, 3, 0, 1, 2, 3, 4]));
    assert_eq!(x + y + z, 5, "each judging written by exactly one node");
    for id in 1..=5 {
        assert_eq!(store.execution_count(stream, id).await.unwrap(), 1, "submission {id}");
    }
    assert_eq!(store.position(stream).await.unwrap(), Some(5));
    // A rejudge is a new judging: written once more.
    let mut again = finished(3, Verdict::WA);
    again.history.push(crate::judge::PastJudging {
        outcome: protocol::FinalResult { submission_id: 3, verdict: Verdict::AC, compile_output: String::new(), message: String::new() },
        results: Vec::new(),
        problem: None,
        finished_ms: 5,
    });
    let (p, q) = tokio::join!(store.project_judging(stream, &again), store.project_judging(stream, &again));
    let mut outcomes = [p.unwrap(), q.unwrap()];
    outcomes.sort_by_key(|o| *o == Projected::Written);
    assert_eq!(outcomes, [Projected::Duplicate, Projected::Written]);
    assert_eq!(store.execution_count(stream, 3).await.unwrap(), 2);
    // A cluster started afresh (its ids from 1 again) has a stream of its own.
    let other = store.cluster_stream("c2").await.unwrap();
    assert_ne!(other, stream);
    assert_eq!(store.project_judging(other, &finished(1, Verdict::TLE)).await.unwrap(), Projected::Written);
}

/// A program's exception or a compiler's output with NUL in it (which a text column
/// refuses) is projected with U+FFFD in its place, not retried for a minute and lost.
#[tokio::test]
async fn a_message_with_nul_is_projected() {
    let store = fresh_store().await;
    let stream = store.new_epoch().await.unwrap();
    let mut raised = finished(4, Verdict::RE);
    raised.message = "test 1: ValueError: a\0b".into();
    assert_eq!(store.project_judging(stream, &raised).await.unwrap(), Projected::Written);
    let mut compile = finished(5, Verdict::CE);
    compile.compile_output = "error at \0".into();
    assert_eq!(store.project_judging(stream, &compile).await.unwrap(), Projected::Written);
    let c = store.client().await.unwrap();
    let rows = c.query("SELECT message, error FROM executions ORDER BY submission_id", &[]).await.unwrap();
    let got: Vec<(String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got[0], ("test 1: ValueError: a\u{fffd}b".to_string(), Some("test 1: ValueError: a\u{fffd}b".to_string())));
    assert_eq!(got[1].1.as_deref(), Some("error at \u{fffd}"));
    // What the database refuses for its content is not worth a retry; a broken
    // connection is.
    let refused = c.execute("SELECT $1::text", &[&"\0"]).await.unwrap_err();
    assert!(!StoreError::from(refused).is_transient());
}

#[tokio::test]
async fn each_judging_of_a_rejudged_submission_is_projected() {
    let store = fresh_store().await;
    let stream = store.new_epoch().await.unwrap();
    let first = finished(7, Verdict::WA);
    assert_eq!(store.project(stream, 1, &first).await.unwrap(), Projected::Written);
    let mut second = finished(7, Verdict::AC);
    second.history.push(crate::judge::PastJudging {
        outcome: protocol::FinalResult { submission_id: 7, verdict: Verdict::WA, compile_output: String::new(), message: String::new() },
        results: Vec::new(),
        problem: None,
        finished_ms: 5,
    });
    assert_eq!(store.project(stream, 2, &second).await.unwrap(), Projected::Written);
    assert_eq!(store.project(stream, 3, &second).await.unwrap(), Projected::Duplicate);
    assert_eq!(store.execution_count(stream, 7).await.unwrap(), 2);
    let c = store.client().await.unwrap();
    let rows = c.query("SELECT judging, verdict FROM executions ORDER BY judging", &[]).await.unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(0, "WA".to_string()), (1, "AC".to_string())]);
}

#[tokio::test]
async fn failed_statements_are_counted_by_area_and_class() {
    use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};
    let store = fresh_store().await;
    let queries = IntCounterVec::new(Opts::new("q", "q"), &["area"]).unwrap();
    let errors = IntCounterVec::new(Opts::new("e", "e"), &["area", "class"]).unwrap();
    store.observe_pool(PoolObserver {
        wait: Histogram::with_opts(HistogramOpts::new("w", "w")).unwrap(),
        errors: IntCounter::new("p", "p").unwrap(),
        queries: queries.clone(),
        query_errors: errors.clone(),
    });

    // A duplicate the store answers with Conflict: PostgreSQL refused the INSERT.
    store.create_user("ada", Some("ada@example.org"), Role::User).await.unwrap();
    let again = store.create_user("ada2", Some("ada@example.org"), Role::User).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(queries.with_label_values(&["auth"]).get(), 2);
    assert_eq!(errors.with_label_values(&["auth", "integrity_constraint_violation"]).get(), 1);

    // Inside a transaction too, labelled with the module that took the connection.
    let mut c = store.client().await.unwrap();
    let tx = c.transaction().await.unwrap();
    assert!(tx.execute("SELECT * FROM no_such_table", &[]).await.is_err());
    drop(tx);
    assert_eq!(errors.with_label_values(&["tests", "syntax_error_or_access_rule_violation"]).get(), 1);
    assert_eq!(queries.with_label_values(&["tests"]).get(), 2, "BEGIN and the SELECT");
    let classes: u64 = prometheus::core::Collector::collect(&errors)[0].get_metric().iter().map(|m| m.get_counter().get_value() as u64).sum();
    assert_eq!(classes, 2, "nothing else failed");
}
