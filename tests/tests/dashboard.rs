//! The dashboard routes on a real `coordinator up` (private PostgreSQL, local agent, real
//! sandboxes): a function run once, code versions checked by the real compile step, a
//! whole test suite, and what the history, statistics, leaderboard, progress and
//! achievements make of them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use judge_tests::{Judge, uid_base};
use serde_json::{Value, json};

fn call(judge: &Judge, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let mut req = match method {
        "POST" => client.post(judge.url(path)),
        _ => client.get(judge.url(path)),
    };
    req = req.bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

const SOLUTION_PY: &str = "def two_sum(nums, target):
    seen = {}
    for j, x in enumerate(nums):
        i = seen.get(target - x)
        if i is not None:
            return [i, j]
        seen[x] = j
    return []
";

const SOLUTION_JS: &str = "function twoSum(nums, target) {
  const seen = new Map();
  for (let j = 0; j < nums.length; j++) {
    const i = seen.get(target - nums[j]);
    if (i !== undefined) return [i, j];
    seen.set(nums[j], j);
  }
  return [];
}
";

#[test]
fn runs_versions_and_test_suites_in_the_sandbox_feed_the_analytics() {
    let judge = Judge::up(uid_base(0), &[]);
    let admin = std::fs::read_to_string(judge.data_dir.path().join("admin-token")).unwrap().trim().to_owned();
    let (status, user) = call(&judge, "POST", "/api/users", &admin, Some(json!({ "name": "uma", "role": "user" })));
    assert_eq!(status, 201, "{user}");
    let token = user["token"].as_str().unwrap().to_owned();
    let uma = user["id"].as_i64().unwrap();

    // One call on given arguments.
    let run = json!({ "algorithm": "two_sum", "language": "python", "code": SOLUTION_PY, "input": [[2, 7, 11, 15], 9] });
    let (status, done) = call(&judge, "POST", "/api/execution/run", &token, Some(run));
    assert_eq!(status, 200, "{done}");
    assert_eq!((done["success"].as_bool(), done["status"].as_str()), (Some(true), Some("SUCCESS")), "{done}");
    assert_eq!(done["result"], json!([0, 1]));
    assert!(done["cpuTime"].as_f64().unwrap() > 0.0 && done["memoryUsage"].as_f64().unwrap() > 0.0, "{done}");
    // An exception is the run's result, not an API error.
    let raising = json!({ "algorithm": "two_sum", "language": "python", "code": "def two_sum(nums, target):\n    return 1 // 0\n", "input": [[1], 1] });
    let (status, failed) = call(&judge, "POST", "/api/execution/run", &token, Some(raising));
    assert_eq!(status, 200, "{failed}");
    assert_eq!((failed["success"].as_bool(), failed["verdict"].as_str()), (Some(false), Some("RE")), "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("ZeroDivisionError"), "{failed}");

    // Saving: the real compile step refuses a syntax error, with the compiler's message.
    let broken = json!({ "algorithm": "two_sum", "language": "python", "code": "def two_sum(nums, target)\n    return []\n" });
    let (status, refused) = call(&judge, "POST", "/api/execution/versions", &token, Some(broken));
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "compile_error");
    assert!(refused["error"]["message"].as_str().unwrap().contains("SyntaxError"), "{refused}");
    let (_, list) = call(&judge, "GET", "/api/execution/versions", &token, None);
    assert_eq!(list["versions"], json!([]), "a refused version is not saved");
    let first = SOLUTION_PY.replace("    return []\n", "    return None\n");
    let (status, v1) = call(&judge, "POST", "/api/execution/versions", &token, Some(json!({ "algorithm": "two_sum", "language": "python", "code": first, "note": "draft" })));
    assert_eq!(status, 201, "{v1}");
    assert_eq!((v1["version"].as_i64(), v1["check"]["compiles"].as_bool()), (Some(1), Some(true)));
    let (status, v2) = call(&judge, "POST", "/api/execution/versions", &token, Some(json!({ "algorithm": "two_sum", "language": "python", "code": SOLUTION_PY })));
    assert_eq!(status, 201, "{v2}");
    assert_eq!(v2["version"], 2);
    let (_, diff) = call(&judge, "GET", &format!("/api/execution/versions/{}/diff/{}", v1["id"], v2["id"]), &token, None);
    assert_eq!(diff["unified"].as_str().unwrap().lines().filter(|l| l.starts_with(['+', '-'])).count(), 2, "{diff}");

    // The whole suite, from the saved version; hidden tests show no data to a user.
    let (status, suite) = call(&judge, "POST", "/api/testing/run", &token, Some(json!({ "algorithm": "two_sum", "versionId": v2["id"] })));
    assert_eq!(status, 200, "{suite}");
    assert_eq!((suite["success"].as_bool(), suite["passed"].as_u64(), suite["total"].as_u64()), (Some(true), Some(6), Some(6)), "{suite}");
    let results = suite["results"].as_array().unwrap();
    assert_eq!(results[0]["actual"], json!([0, 1]));
    assert!(results[0]["sample"].as_bool().unwrap() && results[0].get("input").is_some());
    assert!(!results[2]["sample"].as_bool().unwrap() && results[2].get("input").is_none(), "{}", results[2]);
    assert!(results.iter().all(|r| r["cpuTime"].as_f64().unwrap() > 0.0));
    assert_eq!(suite["newAchievements"], json!(["FIRST_SOLUTION"]));
    // An admin (like a setter) sees every test's data; the run is theirs, not uma's.
    let (_, as_admin) = call(&judge, "POST", "/api/testing/run", &admin, Some(json!({ "algorithm": "two_sum", "language": "python", "code": SOLUTION_PY })));
    assert_eq!(as_admin["passed"], 6, "{as_admin}");
    assert_eq!(as_admin["results"][2]["input"], json!([[3, 3], 6]), "{as_admin}");
    assert_eq!(as_admin["results"][2]["actual"], json!([0, 1]));
    // A wrong solution: per-test verdicts.
    let wrong = SOLUTION_PY.replace("return [i, j]", "return [j, i + 1]");
    let (_, bad) = call(&judge, "POST", "/api/testing/run", &token, Some(json!({ "algorithm": "two_sum", "language": "python", "code": wrong })));
    assert_eq!((bad["success"].as_bool(), bad["verdict"].as_str()), (Some(false), Some("WA")), "{bad}");
    assert!(bad["results"].as_array().unwrap().iter().any(|r| r["verdict"] == "WA"), "{bad}");
    // And JavaScript: passed in two languages is MASTERED.
    let (_, js) = call(&judge, "POST", "/api/testing/run", &token, Some(json!({ "algorithm": "two_sum", "language": "javascript", "code": SOLUTION_JS })));
    assert_eq!(js["success"], true, "{js}");

    let (_, history) = call(&judge, "GET", "/api/execution/history?algorithm=two_sum", &token, None);
    assert_eq!(history["total"], 5, "{history}");
    let kinds: Vec<&str> = history["executions"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["TEST", "TEST", "TEST", "EXECUTE", "EXECUTE"]);
    assert_eq!(history["executions"][4]["output"], json!([0, 1]));
    assert_eq!(history["executions"][2]["codeVersionId"], v2["id"]);
    let (status, one) = call(&judge, "GET", &format!("/api/execution/history/{}", suite["executionId"]), &token, None);
    assert_eq!(status, 200, "{one}");
    assert_eq!((one["passed"].as_i64(), one["status"].as_str()), (Some(6), Some("SUCCESS")), "{one}");
    assert_eq!(one["output"].as_array().unwrap().len(), 6, "the per-test results are kept: {one}");

    let (_, progress) = call(&judge, "GET", "/api/analytics/progress", &token, None);
    let two_sum = progress["progress"].as_array().unwrap().iter().find(|p| p["algorithm"] == "two_sum").unwrap();
    assert_eq!((two_sum["status"].as_str(), two_sum["attempts"].as_i64()), (Some("MASTERED"), Some(3)), "{two_sum}");
    let (_, stats) = call(&judge, "GET", "/api/analytics/stats?algorithm=two_sum&language=python", &token, None);
    let s = &stats["stats"][0];
    // Uma's four Python runs and the admin's one.
    assert_eq!((s["count"].as_i64(), s["succeeded"].as_i64()), (Some(5), Some(3)), "{stats}");
    assert!(s["cpuTimeMs"]["min"].as_f64().unwrap() > 0.0, "{stats}");
    let (_, board) = call(&judge, "GET", "/api/analytics/leaderboard/two_sum", &token, None);
    assert_eq!(board["entries"].as_array().unwrap().len(), 2, "one row per user: {board}");
    assert!(board["entries"].as_array().unwrap().iter().any(|e| e["userId"] == uma), "{board}");

    // NUL characters, which PostgreSQL's text and jsonb refuse, in the arguments, the
    // returned value and an exception: the caller gets them as they are, the history
    // keeps U+FFFD in their place (this was a 500).
    let nul = json!({ "algorithm": "gcd", "language": "python", "code": "def gcd(a, b):\n    return 'x\\0' + a\n", "input": ["a\u{0}", 1] });
    let (status, done) = call(&judge, "POST", "/api/execution/run", &token, Some(nul));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["result"], "x\u{0}a\u{0}", "{done}");
    let raising = json!({ "algorithm": "gcd", "language": "python", "code": "def gcd(a, b):\n    raise ValueError('\\0')\n" });
    let (status, suite) = call(&judge, "POST", "/api/testing/run", &token, Some(raising));
    assert_eq!((status, suite["verdict"].as_str()), (200, Some("RE")), "{suite}");
    let (_, history) = call(&judge, "GET", "/api/execution/history?algorithm=gcd", &token, None);
    let rows = history["executions"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{history}");
    assert_eq!((&rows[1]["input"][0], &rows[1]["output"]), (&json!("a\u{fffd}"), &json!("x\u{fffd}a\u{fffd}")), "{history}");
    assert!(rows[0]["error"].as_str().unwrap().contains("ValueError"), "{history}");

    // A solution that passes the samples, fails the hidden tests and prints its
    // arguments: nothing of a hidden test (its arguments, its answer) reaches uma, not in
    // the suite's answer, not in the run's history, not through the submission's own route.
    let peeking = "def two_sum(nums, target):\n    print('PEEK', nums, target)\n    if target == 9:\n        return [0, 1]\n    if nums == [3, 2, 4]:\n        return [1, 2]\n    return [7, 7]\n";
    let (_, peek) = call(&judge, "POST", "/api/testing/run", &token, Some(json!({ "algorithm": "two_sum", "language": "python", "code": peeking })));
    assert_eq!((peek["verdict"].as_str(), peek["passed"].as_u64()), (Some("WA"), Some(2)), "{peek}");
    let (_, peek_record) = call(&judge, "GET", &format!("/api/execution/history/{}", peek["executionId"]), &token, None);
    let (status, peek_submission) = call(&judge, "GET", &format!("/api/submissions/{}", peek["submissionId"]), &token, None);
    assert_eq!(status, 200, "{peek_submission}");
    for (what, shown) in [("the suite's answer", &peek), ("the history", &peek_record), ("the submission", &peek_submission)] {
        let text = shown.to_string();
        for secret in ["[3, 3]", "[3,3]", "[-1, -2", "[-1,-2", "[2, 4]", "[2,4]", "[0, 3]", "[0,3]", "[0, 4, 3", "[1, 5, 9", "[3,4]", "[3, 4]"] {
            assert!(!text.contains(secret), "{what} shows {secret:?} of a hidden test: {text}");
        }
    }
    // The samples' own data is still there.
    assert!(peek.to_string().contains("[3, 2, 4]") || peek.to_string().contains("[3,2,4]"), "{peek}");
    assert!(judge.stop().success());
}

/// Latency of the dashboard's routes on this machine (a debug build unless run with
/// `--release`): `cargo test -p judge-tests --test dashboard -- --ignored --nocapture`.
#[test]
#[ignore]
fn dashboard_latency() {
    let judge = Judge::up(uid_base(1), &[]);
    let admin = std::fs::read_to_string(judge.data_dir.path().join("admin-token")).unwrap().trim().to_owned();
    let quantiles = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        (xs[xs.len() / 2], xs[(xs.len() * 99 / 100).min(xs.len() - 1)])
    };
    let runs = [
        ("POST /api/execution/run", "/api/execution/run", json!({ "algorithm": "two_sum", "language": "python", "code": SOLUTION_PY, "input": [[2, 7, 11, 15], 9] }), 40),
        ("POST /api/testing/run (6 tests)", "/api/testing/run", json!({ "algorithm": "two_sum", "language": "python", "code": SOLUTION_PY }), 15),
    ];
    for (name, path, body, n) in runs {
        call(&judge, "POST", path, &admin, Some(body.clone()));
        let (mut latency, mut wall) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let start = std::time::Instant::now();
            let (status, answer) = call(&judge, "POST", path, &admin, Some(body.clone()));
            latency.push(start.elapsed().as_secs_f64() * 1000.0);
            assert_eq!((status, answer["success"].as_bool()), (200, Some(true)), "{answer}");
            wall.push(answer["wallTime"].as_f64().unwrap());
        }
        let ((med, p99), (wall_med, _)) = (quantiles(latency), quantiles(wall));
        println!("{name}: n={n} median {med:.1} ms, p99 {p99:.1} ms; sandbox wall time (summed over tests) median {wall_med:.1} ms");
    }
    for path in ["/api/analytics/stats?algorithm=two_sum", "/api/analytics/leaderboard/two_sum", "/api/execution/history"] {
        let mut latency = Vec::new();
        for _ in 0..200 {
            let start = std::time::Instant::now();
            assert_eq!(call(&judge, "GET", path, &admin, None).0, 200);
            latency.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let (med, p99) = quantiles(latency);
        println!("GET {path}: median {med:.2} ms, p99 {p99:.2} ms (one client, sequential)");
    }
    assert!(judge.stop().success());
}
