//! The dashboard routes against a real PostgreSQL (a fresh database per test), with a
//! scheduler that has no agent: every route and role, bad input refused with nothing
//! written, and the analytics rules over runs recorded through the store. Runs in real
//! sandboxes are tests/tests/dashboard.rs.
#![allow(clippy::unwrap_used)]

use salvo::test::TestClient;
use serde_json::{Value, json};

use super::test_fixture::{BASE, Fixture, NoAgents, Setup, assert_error, send};
use super::*;
use crate::store::Queries;
use crate::store::dashboard::{NewRun, RunKind, RunOutcome};

async fn fixture() -> Fixture {
    Fixture::new().await
}

async fn get(f: &Fixture, path: &str, token: Option<&str>) -> (u16, Value) {
    f.get(path, token).await
}

async fn post(f: &Fixture, path: &str, body: impl Into<String>, token: Option<&str>) -> (u16, Value) {
    f.post(path, body, token).await
}

async fn nothing_written(f: &Fixture) {
    assert_eq!(f.store.dashboard_row_counts().await.unwrap(), (0, 0));
    let queue = f.scheduler.queue_summary().await;
    assert_eq!((queue.queued, queue.running), (0, 0), "nothing may reach the judge");
}

const TWO_SUM: &str = "def two_sum(nums, target):\n    return [0, 1]\n";

#[tokio::test]
async fn anonymous_callers_run_only_where_allowed_and_read_statistics() {
    let f = fixture().await;
    let run = json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "input": {"nums": [1, 2], "target": 3} });
    for (method, path) in [
        ("GET", "/api/execution/history"),
        ("GET", "/api/execution/history/1"),
        ("GET", "/api/execution/versions"),
        ("POST", "/api/execution/versions"),
        ("GET", "/api/execution/versions/1"),
        ("GET", "/api/execution/versions/1/diff/2"),
        ("GET", "/api/analytics/progress"),
        ("GET", "/api/analytics/achievements"),
    ] {
        let answer = if method == "POST" { post(&f, path, run.to_string(), None).await } else { get(&f, path, None).await };
        assert_error(&answer, 401, "unauthorized", "Bearer");
    }
    let (status, stats) = get(&f, "/api/analytics/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["stats"], json!([]));

    let (status, board) = get(&f, "/api/analytics/leaderboard/two_sum", None).await;
    assert_eq!(status, 200, "{board}");
    assert_eq!(board["entries"], json!([]));
    // A token that is present but wrong is refused even where anonymous would do.
    let bad = format!("jc_{}", "0".repeat(64));
    assert_error(&get(&f, "/api/analytics/stats", Some(&bad)).await, 401, "unauthorized", "unknown or revoked");
    nothing_written(&f).await;

    // Runs are open to anonymous callers where the operator allows them (the seed's
    // frontend calls these without a login); they are recorded under no user. No agent
    // takes them here, so they time out — after being queued and recorded.
    let tests = json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM });
    assert_error(&post(&f, "/api/execution/run", run.to_string(), None).await, 504, "run_timed_out", "cancelled");
    assert_error(&post(&f, "/api/testing/run", tests.to_string(), None).await, 504, "run_timed_out", "cancelled");
    assert_eq!(f.store.dashboard_row_counts().await.unwrap(), (2, 0));
    assert_eq!(f.store.anonymous_run_count().await.unwrap(), 2);
    let closed = Fixture::with(Setup {
        options: ApiOptions { auth: AuthConfig { allow_anonymous: false, jwt: None }, ..ApiOptions::default() },
        ..Setup::default()
    })
    .await;
    for (path, body) in [("/api/execution/run", &run), ("/api/testing/run", &tests)] {
        assert_error(&post(&closed, path, body.to_string(), None).await, 401, "unauthorized", "Bearer");
    }
    nothing_written(&closed).await;
}

#[tokio::test]
async fn bad_runs_are_refused_before_anything_is_queued_or_written() {
    let f = fixture().await;
    let t = Some(f.user.1.as_str());
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("{\"algorithm\": \"two_sum\",".into(), 400, "malformed_json", "EOF"),
        ("[1, 2]".into(), 400, "invalid_field", "invalid type"),
        (json!({ "algorithm": "two_sum", "language": "python", "code": 5, "input": [] }).to_string(), 400, "invalid_field", "code"),
        (json!({ "algorithm": "two_sum", "language": "python", "input": [] }).to_string(), 400, "missing_field", "code"),
        (json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "input": [], "extra": 1 }).to_string(), 400, "unknown_field", "extra"),
        (json!({ "algorithm": "no_such_thing", "language": "python", "code": TWO_SUM, "input": [] }).to_string(), 404, "algorithm_not_found", "no_such_thing"),
        (json!({ "algorithm": "two_sum", "language": "cobol", "code": TWO_SUM, "input": [] }).to_string(), 400, "unknown_language", "python"),
        // A language of the judge, but not one that runs functions.
        (json!({ "algorithm": "two_sum", "language": "cpp", "code": TWO_SUM, "input": [] }).to_string(), 400, "unknown_language", "javascript"),
        (json!({ "algorithm": "two_sum", "language": "python", "code": "  \n", "input": [] }).to_string(), 400, "invalid_field", "empty"),
        (json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "input": [], "entryPoint": "os.system" }).to_string(), 400, "invalid_field", "entryPoint"),
        (json!({ "algorithm": "two_sum", "language": "python", "code": "x".repeat(300 * 1024), "input": [] }).to_string(), 413, "too_large", "code"),
        (json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "input": "y".repeat(300 * 1024) }).to_string(), 413, "too_large", "input"),
        (json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "input": "y".repeat(2 << 20) }).to_string(), 413, "body_too_large", "exceeds"),
    ];
    for (body, status, code, mentions) in &cases {
        let answer = post(&f, "/api/execution/run", body.clone(), t).await;
        assert_error(&answer, *status, code, mentions);
        let answer = post(&f, "/api/testing/run", body.clone(), t).await;
        assert!((400..500).contains(&answer.0), "{answer:?}");
    }
    // Version saves and test runs have their own fields.
    let save = |body: Value| post(&f, "/api/execution/versions", body.to_string(), t);
    assert_error(&save(json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "note": "n".repeat(201) })).await, 400, "invalid_field", "note");
    assert_error(&save(json!({ "algorithm": "nope", "language": "python", "code": TWO_SUM })).await, 404, "algorithm_not_found", "nope");
    assert_error(&save(json!({ "algorithm": "two_sum", "language": "python", "code": [1] })).await, 400, "invalid_field", "code");
    let tests = |body: Value| post(&f, "/api/testing/run", body.to_string(), t);
    assert_error(&tests(json!({ "algorithm": "two_sum" })).await, 400, "missing_field", "versionId");
    assert_error(&tests(json!({ "algorithm": "two_sum", "versionId": 1, "code": TWO_SUM })).await, 400, "invalid_field", "not both");
    assert_error(&tests(json!({ "algorithm": "two_sum", "versionId": 77 })).await, 404, "version_not_found", "77");
    assert_error(&tests(json!({ "algorithm": "nope", "language": "python", "code": TWO_SUM })).await, 404, "algorithm_not_found", "nope");
    nothing_written(&f).await;
}

#[tokio::test]
async fn a_run_no_agent_takes_times_out_is_cancelled_and_recorded_as_such() {
    let f = fixture().await;
    let body = json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "input": {"nums": [1, 2], "target": 3} });
    let answer = post(&f, "/api/execution/run", body.to_string(), Some(&f.user.1)).await;
    assert_error(&answer, 504, "run_timed_out", "cancelled");
    let queue = f.scheduler.queue_summary().await;
    assert_eq!((queue.queued, queue.running), (0, 0), "the run was cancelled");
    let (status, history) = get(&f, "/api/execution/history", Some(&f.user.1)).await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["total"], 1);
    let row = &history["executions"][0];
    assert_eq!((row["status"].as_str(), row["verdict"].as_str(), row["kind"].as_str()), (Some("ERROR"), Some("IE"), Some("EXECUTE")));
    assert_eq!(row["input"], json!({"nums": [1, 2], "target": 3}));
    assert!(row["error"].as_str().unwrap().contains("did not finish"), "{row}");
    // Someone else's history does not show it.
    let (_, theirs) = get(&f, "/api/execution/history", Some(&f.other.1)).await;
    assert_eq!(theirs["total"], 0);
    let one = format!("/api/execution/history/{}", row["id"]);
    let (status, again) = get(&f, &one, Some(&f.user.1)).await;
    assert_eq!((status, &again), (200, row));
    assert_error(&get(&f, &one, Some(&f.other.1)).await, 404, "execution_not_found", "does not exist");
    assert_eq!(get(&f, &one, Some(&f.admin)).await.0, 200);
    assert_error(&get(&f, "/api/execution/history/-1", Some(&f.user.1)).await, 400, "invalid_field", "-1");

    // A save whose compile check never runs saves nothing.
    let save = json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM });
    let answer = post(&f, "/api/execution/versions", save.to_string(), Some(&f.user.1)).await;
    assert_error(&answer, 504, "run_timed_out", "cancelled");
    assert_eq!(f.store.dashboard_row_counts().await.unwrap(), (1, 0));
}

#[tokio::test]
async fn versions_are_listed_fetched_and_diffed_by_their_owner_and_admins_only() {
    let f = fixture().await;
    let two_sum = f.store.get_algorithm("two_sum").await.unwrap().unwrap();
    let v1 = f.store.save_version(f.user.0, two_sum.id, "python", b"def two_sum(nums, target):\n    return []\n", "first").await.unwrap();
    let v2 = f.store.save_version(f.user.0, two_sum.id, "python", TWO_SUM.as_bytes(), "").await.unwrap();
    let js = f.store.save_version(f.user.0, two_sum.id, "javascript", b"function twoSum() { return []; }\n", "").await.unwrap();
    let theirs = f.store.save_version(f.other.0, two_sum.id, "python", TWO_SUM.as_bytes(), "").await.unwrap();
    assert_eq!((v1.version, v2.version, js.version, theirs.version), (1, 2, 1, 1), "numbered per user and language");

    let u = Some(f.user.1.as_str());
    let (status, list) = get(&f, "/api/execution/versions?algorithm=two_sum&language=python", u).await;
    assert_eq!(status, 200, "{list}");
    let versions: Vec<i64> = list["versions"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, vec![2, 1]);
    assert!(list["versions"][0].get("code").is_none(), "lists carry no source");
    let (_, all) = get(&f, "/api/execution/versions", u).await;
    assert_eq!(all["versions"].as_array().unwrap().len(), 3);

    let (status, one) = get(&f, &format!("/api/execution/versions/{}", v1.id), u).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["code"], "def two_sum(nums, target):\n    return []\n");
    assert_eq!(one["note"], "first");
    assert_eq!(one["sha256"].as_str().unwrap().len(), 64);

    let (status, diff) = get(&f, &format!("/api/execution/versions/{}/diff/{}", v1.id, v2.id), u).await;
    assert_eq!(status, 200, "{diff}");
    assert_eq!((diff["added"].as_u64(), diff["removed"].as_u64()), (Some(1), Some(1)));
    assert_eq!(diff["unified"], " def two_sum(nums, target):\n-    return []\n+    return [0, 1]\n");
    assert_eq!(diff["lines"][1], json!({ "op": "remove", "oldLine": 2, "newLine": null, "text": "    return []" }));

    // Someone else's version is not found for a user, found for an admin.
    assert_error(&get(&f, &format!("/api/execution/versions/{}", theirs.id), u).await, 404, "version_not_found", "does not exist");
    assert_error(&get(&f, &format!("/api/execution/versions/{}/diff/{}", v1.id, theirs.id), u).await, 404, "version_not_found", "");
    let (status, _) = get(&f, &format!("/api/execution/versions/{}", theirs.id), Some(&f.admin)).await;
    assert_eq!(status, 200);
    // A setter is no admin.
    assert_error(&get(&f, &format!("/api/execution/versions/{}", theirs.id), Some(&f.setter)).await, 404, "version_not_found", "");

    assert_error(&get(&f, "/api/execution/versions/abc", u).await, 400, "invalid_field", "abc");
    assert_error(&get(&f, "/api/execution/versions/0", u).await, 400, "invalid_field", "positive");
    assert_error(&get(&f, "/api/execution/versions?algorithm=nope", u).await, 404, "algorithm_not_found", "nope");
    assert_error(&get(&f, "/api/execution/versions?language=cpp", u).await, 400, "unknown_language", "cpp");
    assert_error(&get(&f, "/api/execution/history?perPage=0", u).await, 400, "invalid_field", "perPage");
    let wrong = send(&f.service, TestClient::delete(format!("{BASE}/api/execution/versions/{}", v1.id)), u).await;
    assert_error(&wrong, 405, "method_not_allowed", "DELETE");
    let wrong = send(&f.service, TestClient::get(format!("{BASE}/api/testing/run")), u).await;
    assert_error(&wrong, 405, "method_not_allowed", "GET");
    // The other routes still answer behind the dashboard's.
    let (status, _) = get(&f, "/api/algorithms/two_sum", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn concurrent_saves_get_consecutive_versions() {
    let f = fixture().await;
    let two_sum = f.store.get_algorithm("two_sum").await.unwrap().unwrap();
    let uid = f.user.0;
    let saves: Vec<_> = (0..8).map(|i| {
        let store = f.store.clone();
        tokio::spawn(async move { store.save_version(uid, two_sum.id, "python", format!("# {i}\n").as_bytes(), "").await })
    }).collect();
    let mut versions: Vec<i32> = Vec::new();
    for s in saves {
        versions.push(s.await.unwrap().unwrap().version);
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
}

/// Records a finished test-suite run the way the API does once the judge is done.
async fn passed(f: &Fixture, user: i64, slug: &str, language: &str, cpu_us: i64, success: bool) -> Vec<String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let algorithm = f.store.get_algorithm(slug).await.unwrap().unwrap();
    let run = NewRun {
        epoch: f.epoch,
        submission_id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        user_id: Some(user),
        algorithm_id: algorithm.id,
        language,
        kind: RunKind::Test,
        source: b"code",
        code_version_id: None,
        input: None,
        total: 3,
    };
    let id = f.store.start_run(&run).await.unwrap();
    let outcome = RunOutcome {
        status: if success { "SUCCESS" } else { "ERROR" },
        verdict: Some(if success { "AC" } else { "WA" }),
        result: json!([]),
        error: None,
        step_count: 0,
        passed: if success { 3 } else { 1 },
        cpu_us,
        wall_us: cpu_us * 2,
        peak_bytes: 10 << 20,
    };
    f.store.finish_run(id, &outcome).await.unwrap()
}

#[tokio::test]
async fn statistics_leaderboard_progress_and_achievements_follow_the_runs() {
    let f = fixture().await;
    let (uma, olaf) = (f.user.0, f.other.0);
    assert_eq!(passed(&f, uma, "two_sum", "python", 8000, false).await, Vec::<String>::new());
    assert_eq!(passed(&f, uma, "two_sum", "python", 5000, true).await, vec!["FIRST_SOLUTION"]);
    // Olaf is faster: champion of a board of two.
    assert_eq!(passed(&f, olaf, "two_sum", "python", 3000, true).await, vec!["FIRST_SOLUTION", "PERFORMANCE_CHAMPION"]);
    // Uma halves her best: the guru, and first again.
    assert_eq!(passed(&f, uma, "two_sum", "python", 1000, true).await, vec!["PERFORMANCE_CHAMPION", "OPTIMIZATION_GURU"]);

    let (status, board) = get(&f, "/api/analytics/leaderboard/two_sum", None).await;
    assert_eq!(status, 200, "{board}");
    let entries = board["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "one row per user: {board}");
    assert_eq!((entries[0]["user"].as_str(), entries[0]["cpuTime"].as_f64()), (Some("uma"), Some(1.0)));
    assert_eq!((entries[1]["user"].as_str(), entries[1]["rank"].as_u64()), (Some("olaf"), Some(2)));
    let (_, js_board) = get(&f, "/api/analytics/leaderboard/two_sum?language=javascript", None).await;
    assert_eq!(js_board["entries"], json!([]));
    assert_error(&get(&f, "/api/analytics/leaderboard/nope", None).await, 404, "algorithm_not_found", "nope");
    assert_error(&get(&f, "/api/analytics/leaderboard/two_sum?limit=1000", None).await, 400, "invalid_field", "limit");

    let (status, stats) = get(&f, "/api/analytics/stats?algorithm=two_sum", None).await;
    assert_eq!(status, 200, "{stats}");
    let s = &stats["stats"][0];
    assert_eq!((s["algorithm"].as_str(), s["language"].as_str(), s["count"].as_i64()), (Some("two_sum"), Some("python"), Some(4)));
    assert_eq!(s["successRate"].as_f64(), Some(0.75));
    // CPU over the successful runs only: 5, 3 and 1 ms.
    assert_eq!(s["cpuTimeMs"], json!({ "avg": 3.0, "min": 1.0, "max": 5.0 }));
    assert_eq!(s["memoryMb"]["max"].as_f64(), Some(10.0));
    assert_error(&get(&f, "/api/analytics/stats?algorithm=nope", None).await, 404, "algorithm_not_found", "nope");
    assert_error(&get(&f, "/api/analytics/stats?language=cobol", None).await, 400, "unknown_language", "cobol");

    // Progress: COMPLETED in one language, MASTERED in two; attempts count failures too.
    let (status, progress) = get(&f, "/api/analytics/progress", Some(&f.user.1)).await;
    assert_eq!(status, 200, "{progress}");
    let two_sum = progress["progress"].as_array().unwrap().iter().find(|p| p["algorithm"] == "two_sum").unwrap().clone();
    assert_eq!((two_sum["status"].as_str(), two_sum["attempts"].as_i64(), two_sum["bestTime"].as_f64()), (Some("COMPLETED"), Some(3), Some(1.0)));
    assert_eq!(progress["summary"]["COMPLETED"], 1);
    assert_eq!(progress["summary"]["NOT_STARTED"].as_u64().unwrap() as usize, progress["progress"].as_array().unwrap().len() - 1);
    passed(&f, uma, "two_sum", "javascript", 4000, true).await;
    let (_, progress) = get(&f, "/api/analytics/progress", Some(&f.user.1)).await;
    assert_eq!(progress["summary"]["MASTERED"], 1, "{progress}");
    // A later failure does not take it back.
    passed(&f, uma, "two_sum", "python", 9000, false).await;
    let (_, progress) = get(&f, "/api/analytics/progress", Some(&f.user.1)).await;
    assert_eq!(progress["summary"]["MASTERED"], 1, "{progress}");

    // Categories and complexities: two_sum is ARRAYS O(n); binary_search SEARCHING
    // O(log n); bubble_sort SORTING O(n^2).
    let meta = |slug: &str| {
        let f = &f;
        let slug = slug.to_owned();
        async move {
            let a = f.store.get_algorithm(&slug).await.unwrap().unwrap();
            (a.category, a.time_complexity)
        }
    };
    let (c1, t1) = meta("two_sum").await;
    let (c2, t2) = meta("binary_search").await;
    let (c3, t3) = meta("bubble_sort").await;
    assert!(c1 != c2 && c2 != c3 && c1 != c3 && t1 != t2 && t2 != t3 && t1 != t3, "{c1} {c2} {c3} {t1} {t2} {t3}");
    assert_eq!(passed(&f, uma, "binary_search", "python", 1000, true).await, Vec::<String>::new());
    assert_eq!(passed(&f, uma, "bubble_sort", "python", 1000, true).await, vec!["ALGORITHM_EXPLORER", "COMPLEXITY_MASTER"]);

    // A streak: passing runs on the two days before today, then one today.
    let c = f.store.client().await.unwrap();
    c.execute(
        "UPDATE dashboard_runs SET finished_at = now() - interval '1 day' WHERE user_id = $1 AND success
             AND id = (SELECT min(id) FROM dashboard_runs WHERE user_id = $1 AND success)",
        &[&olaf],
    )
    .await
    .unwrap();
    assert_eq!(passed(&f, olaf, "binary_search", "python", 1000, true).await, Vec::<String>::new());
    c.execute(
        "UPDATE dashboard_runs SET finished_at = now() - interval '2 days' WHERE user_id = $1 AND success
             AND algorithm_id = (SELECT id FROM algorithms WHERE slug = 'binary_search')",
        &[&olaf],
    )
    .await
    .unwrap();
    // (Olaf's third category and complexity come with it.)
    assert_eq!(
        passed(&f, olaf, "bubble_sort", "python", 1000, true).await,
        vec!["ALGORITHM_EXPLORER", "COMPLEXITY_MASTER", "STREAK_KEEPER"]
    );

    let (status, mine) = get(&f, "/api/analytics/achievements", Some(&f.user.1)).await;
    assert_eq!(status, 200, "{mine}");
    let unlocked: Vec<&str> = mine["unlocked"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap()).collect();
    assert_eq!(unlocked.len(), 5, "{mine}");
    assert!(!unlocked.contains(&"STREAK_KEEPER"));
    assert_eq!(mine["achievements"].as_array().unwrap().len(), 6);
    assert_eq!(mine["points"], 10 + 50 + 40 + 25 + 25);

    // Others' progress and achievements: admins only.
    let path = format!("/api/analytics/achievements?userId={olaf}");
    assert_error(&get(&f, &path, Some(&f.user.1)).await, 403, "forbidden", "admins");
    assert_error(&get(&f, &path, Some(&f.setter)).await, 403, "forbidden", "admins");
    let (status, theirs) = get(&f, &path, Some(&f.admin)).await;
    assert_eq!(status, 200, "{theirs}");
    assert!(theirs["unlocked"].as_array().unwrap().iter().any(|a| a["type"] == "STREAK_KEEPER"));
    let (status, _) = get(&f, &format!("/api/analytics/progress?userId={olaf}"), Some(&f.admin)).await;
    assert_eq!(status, 200);
    assert_error(&get(&f, "/api/analytics/progress?userId=999999", Some(&f.admin)).await, 400, "invalid_field", "999999");
    assert_error(&get(&f, "/api/analytics/progress?userId=x", Some(&f.admin)).await, 400, "invalid_field", "userId");
}

#[tokio::test]
async fn without_a_database_the_dashboard_answers_503_and_leaves_other_paths_alone() {
    let scheduler = Scheduler::new(Arc::new(NoAgents));
    let spec = Arc::new(Spec::builtin().unwrap());
    let router = router_with(scheduler, spec, ApiLimits::default(), Judge0Config::default());
    let service = salvo::Service::new(router);
    // Public routes say there is no database; the others first want a credential, which
    // no one can have without a database.
    for path in ["/api/analytics/leaderboard/two_sum", "/api/analytics/stats", "/api/analytics/benchmarks/1"] {
        assert_error(&send(&service, TestClient::get(format!("{BASE}{path}")), None).await, 503, "no_database", "without a database");
    }
    // Runs, open to anonymous callers here, say the same.
    for path in ["/api/execution/run", "/api/testing/run"] {
        let req = TestClient::post(format!("{BASE}{path}")).raw_json("{}");
        assert_error(&send(&service, req, None).await, 503, "no_database", "without a database");
    }
    assert_error(&send(&service, TestClient::get(format!("{BASE}/api/execution/versions/3")), None).await, 401, "unauthorized", "Bearer");
    // Other paths under /api/analytics are no route at all; the benchmark routes answer
    // 503 like the dashboard's without a database.
    let (status, _) = send(&service, TestClient::get(format!("{BASE}/api/analytics/nothing")), None).await;
    assert_eq!(status, 404);
    assert_error(&send(&service, TestClient::get(format!("{BASE}/api/analytics/benchmarks")), None).await, 503, "no_database", "without a database");
}

fn projected_view(id: u64) -> crate::scheduler::SubmissionView {
    crate::scheduler::SubmissionView {
        id,
        language: "python".into(),
        status: crate::judge::Status::Done,
        verdict: Some(protocol::Verdict::AC),
        message: String::new(),
        compile_output: String::new(),
        test_count: 0,
        limits: DashboardLimits::default().run,
        tests: Vec::new(),
        attempts: 1,
        accepted_ms: 1_700_000_000_000,
        finished_ms: Some(1_700_000_000_500),
        source: TWO_SUM.as_bytes().to_vec(),
        inputs: Vec::new(),
        options: Default::default(),
        judge0: None,
        problem: None,
        history: Vec::new(),
    }
}

/// The projection's row names the run's user and algorithm whichever row comes first, and
/// a run the API never completed (its coordinator died) takes its status from it.
#[tokio::test]
async fn the_projected_row_of_a_dashboard_run_is_attributed_and_stands_in_for_a_lost_outcome() {
    let f = fixture().await;
    let two_sum = f.store.get_algorithm("two_sum").await.unwrap().unwrap();
    let record = |submission_id| NewRun {
        epoch: f.epoch,
        submission_id,
        user_id: Some(f.user.0),
        algorithm_id: two_sum.id,
        language: "python",
        kind: RunKind::Execute,
        source: TWO_SUM.as_bytes(),
        code_version_id: None,
        input: None,
        total: 1,
    };
    // The API's row first, then the projection's; then the other way round.
    f.store.start_run(&record(50)).await.unwrap();
    f.store.project(f.epoch, 1, &projected_view(50)).await.unwrap();
    f.store.project(f.epoch, 2, &projected_view(60)).await.unwrap();
    f.store.start_run(&record(60)).await.unwrap();
    // An anonymous judge submission stays anonymous.
    f.store.project(f.epoch, 3, &projected_view(70)).await.unwrap();
    let c = f.store.client().await.unwrap();
    let rows = c
        .query("SELECT submission_id, user_id, algorithm_id FROM executions WHERE epoch = $1 ORDER BY submission_id", &[&f.epoch])
        .await
        .unwrap();
    let got: Vec<(i64, Option<i64>, Option<i64>)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let (u, a) = (Some(f.user.0), Some(two_sum.id));
    assert_eq!(got, vec![(50, u, a), (60, u, a), (70, None, None)]);

    let (_, history) = get(&f, "/api/execution/history", Some(&f.user.1)).await;
    let statuses: Vec<(&str, &str)> = history["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["status"].as_str().unwrap(), e["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, vec![("SUCCESS", "AC"), ("SUCCESS", "AC")], "{history}");
}

/// MAX_EXECUTION_TIME and MAX_MEMORY_USAGE lower the dashboard's fixed limits, and its
/// runs share the caller's MAX_CONCURRENT_EXECUTIONS with every other door.
#[tokio::test]
async fn dashboard_runs_keep_to_the_operators_caps() {
    let caps = ApiLimits { cpu_ms: 1..=700, wall_ms: 1..=900, memory_mb: 16..=64, ..ApiLimits::default() };
    let options = ApiOptions { max_concurrent_runs: Some(1), ..ApiOptions::default() };
    let f = Fixture::with(Setup { options, caps, ..Setup::default() }).await;
    let (u, o) = (Some(f.user.1.as_str()), Some(f.other.1.as_str()));
    let run = json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "input": {"nums": [1, 2], "target": 3} }).to_string();
    let tests = json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM }).to_string();
    let save = json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM }).to_string();

    // No agent takes the run: it times out, and what was queued had the capped limits.
    assert_error(&post(&f, "/api/execution/run", run.clone(), u).await, 504, "run_timed_out", "cancelled");
    let limits = f.scheduler.get(1).await.unwrap().limits;
    assert_eq!((limits.cpu_ms, limits.wall_ms, limits.memory_bytes), (700, 900, 64 << 20));
    assert_error(&post(&f, "/api/execution/versions", save.clone(), o).await, 504, "run_timed_out", "cancelled");
    let check = f.scheduler.get(2).await.unwrap().limits;
    assert_eq!((check.cpu_ms, check.wall_ms, check.memory_bytes), (700, 900, 64 << 20), "the compile check too");
    assert_error(&post(&f, "/api/testing/run", tests.clone(), o).await, 504, "run_timed_out", "cancelled");
    let suite = f.scheduler.get(3).await.unwrap().limits;
    assert_eq!((suite.cpu_ms, suite.wall_ms, suite.memory_bytes), (700, 900, 64 << 20));
    let written = f.store.dashboard_row_counts().await.unwrap();

    // Uma's queued submission takes her only place: each door that runs code says 429.
    let program = json!({ "language": "python", "source": "print(1)", "tests": [{ "input": "", "expectedOutput": "1\n" }] });
    assert_eq!(post(&f, "/api/submissions", program.to_string(), u).await.0, 201);
    for (path, body) in [("/api/execution/run", &run), ("/api/testing/run", &tests), ("/api/execution/versions", &save)] {
        assert_error(&post(&f, path, body.clone(), u).await, 429, "too_many_running", "at most 1");
    }
    assert_eq!(f.store.dashboard_row_counts().await.unwrap(), written, "a refused run writes nothing");
    assert_eq!(f.scheduler.queue_summary().await.queued, 1, "and queues nothing");
    // Olaf has a place of his own.
    assert_error(&post(&f, "/api/execution/run", run, o).await, 504, "run_timed_out", "cancelled");
}

/// The catalog shows an algorithm's solution to admins, and to a user once they passed its
/// whole test suite — only that algorithm's, only to them.
#[tokio::test]
async fn the_solution_shows_once_the_user_solved_the_algorithm() {
    let f = fixture().await;
    let (uma, u, o) = (f.user.0, Some(f.user.1.as_str()), Some(f.other.1.as_str()));
    assert!(get(&f, "/api/algorithms/two_sum", u).await.1.get("solution").is_none());
    passed(&f, uma, "two_sum", "python", 1000, false).await;
    assert!(get(&f, "/api/algorithms/two_sum", u).await.1.get("solution").is_none(), "a failed attempt shows nothing");
    passed(&f, uma, "two_sum", "python", 1000, true).await;
    let (status, solved) = get(&f, "/api/algorithms/two_sum", u).await;
    assert_eq!(status, 200, "{solved}");
    assert!(solved["solution"]["explanation"].as_str().is_some_and(|e| !e.is_empty()), "{solved}");
    assert!(solved["solution"]["referenceSolutions"]["python"].is_string(), "{solved}");
    for (path, token) in [("/api/algorithms/binary_search", u), ("/api/algorithms/two_sum", o), ("/api/algorithms/two_sum", None)] {
        assert!(get(&f, path, token).await.1.get("solution").is_none(), "{path} as {token:?}");
    }
    assert!(get(&f, "/api/algorithms/two_sum", Some(&f.admin)).await.1["solution"].is_object());
}

/// PostgreSQL's jsonb refuses NUL characters; arguments holding them are kept with
/// U+FFFD in their place instead of failing the request with a 500.
#[tokio::test]
async fn nul_characters_in_the_arguments_are_stored_as_replacement_characters() {
    let f = fixture().await;
    let body = json!({ "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "input": {"nums\u{0}": ["\u{0}"], "target": 3} });
    assert_error(&post(&f, "/api/execution/run", body.to_string(), Some(&f.user.1)).await, 504, "run_timed_out", "cancelled");
    let (_, history) = get(&f, "/api/execution/history", Some(&f.user.1)).await;
    assert_eq!(history["executions"][0]["input"], json!({"nums\u{fffd}": ["\u{fffd}"], "target": 3}), "{history}");
}

/// A run whose algorithm a setter deletes while it is queued cannot be recorded: the
/// caller gets a 409 that says so, not a 500.
#[tokio::test]
async fn a_run_of_an_algorithm_deleted_meanwhile_is_a_conflict_not_an_internal_error() {
    let f = fixture().await;
    let algorithm = f.store.get_algorithm("two_sum").await.unwrap().unwrap();
    assert!(f.store.delete_algorithm("two_sum").await.unwrap());
    let run = NewRun {
        epoch: f.epoch,
        submission_id: 900_001,
        user_id: Some(f.user.0),
        algorithm_id: algorithm.id,
        language: "python",
        kind: RunKind::Execute,
        source: b"code",
        code_version_id: None,
        input: None,
        total: 1,
    };
    let err = f.store.start_run(&run).await.unwrap_err();
    assert!(err.is_foreign_key_violation(), "{err:?}");
    let api = super::catalog::store_error(err);
    assert!(matches!(api, ApiError::Conflict(_)), "{api:?}");
    assert_eq!(api.status(), salvo::http::StatusCode::CONFLICT);
}
