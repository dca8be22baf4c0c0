//! The API as an operator exposes it: `coordinator up --allow-anonymous=false` with its
//! private PostgreSQL. Credentials on every door (REST, Judge0, WebSocket), sessions from
//! a password login, schemathesis against `/api/openapi.json`, and (ignored by default)
//! the wrk benchmark of the hot read routes.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use judge_tests::{Judge, bin_dir, uid_base};
use serde_json::{Value, json};

/// The schemathesis `.ci/run` installs (pinned) into a venv under the target dir.
const SCHEMATHESIS: &str = "schemathesis-4.32.5";

fn admin_token(judge: &Judge) -> String {
    std::fs::read_to_string(judge.data_dir.path().join("admin-token")).unwrap().trim().to_owned()
}

fn request(judge: &Judge, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let mut req = reqwest::blocking::Client::new().request(method, judge.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn python() -> &'static str {
    // Debian's python3 has python3-websockets from apt (.ci/run installs it).
    if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// A WebSocket client: connects (with `?token=` when given), optionally sends AUTH,
/// runs two_sum, and prints the type of each frame it got until the run ended.
const WS_CLIENT: &str = r#"
import asyncio, json, sys, websockets, websockets.exceptions
url, auth = sys.argv[1], sys.argv[2]
CODE = "def two_sum(nums, target):\n    seen = {}\n    for i, n in enumerate(nums):\n        if target - n in seen: return [seen[target - n], i]\n        seen[n] = i\n"
async def run(ws):
    if auth != "-":
        await ws.send(json.dumps({"type": "AUTH", "token": auth}))
        print(json.loads(await asyncio.wait_for(ws.recv(), 30))["type"])
    await ws.send(json.dumps({"type": "EXECUTE_ALGORITHM", "algorithmName": "two_sum", "language": "python",
                              "algorithmCode": CODE, "testData": {"nums": [2, 7, 11, 15], "target": 9}}))
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 60))
        print(m["type"])
        if m["type"] in ("EXECUTION_COMPLETED", "EXECUTION_ERROR", "error"):
            return
# websockets 10 (Debian 12) says InvalidStatusCode, later versions InvalidStatus.
REFUSED = tuple(getattr(websockets.exceptions, n) for n in ("InvalidStatusCode", "InvalidStatus") if hasattr(websockets.exceptions, n))
async def main():
    try:
        async with websockets.connect(url) as ws:
            await run(ws)
    except REFUSED as e:
        print("REFUSED", getattr(e, "status_code", None) or e.response.status_code)
asyncio.run(main())
"#;

fn ws_run(judge: &Judge, query: &str, auth: Option<&str>) -> Vec<String> {
    let url = format!("{}/ws{query}", judge.api.replacen("http://", "ws://", 1));
    let out = Command::new(python()).args(["-c", WS_CLIENT, &url, auth.unwrap_or("-")]).output().unwrap();
    assert!(out.status.success(), "ws client failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn credentials_guard_every_door_when_anonymous_runs_are_off() {
    let judge = Judge::up(uid_base(0), &["--allow-anonymous=false", "--slots", "1"]);
    let admin = admin_token(&judge);
    let program = json!({ "language": "python", "source": "print(input())", "tests": [{ "input": "hi\n", "expectedOutput": "hi\n" }] });

    let (status, body) = request(&judge, reqwest::Method::POST, "/api/submissions", None, Some(&program));
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let judge0 = json!({ "source_code": "print(1)", "language_id": 71 });
    let (status, body) = request(&judge, reqwest::Method::POST, "/submissions", None, Some(&judge0));
    assert_eq!(status, 401, "{body}");
    // Reads of the catalog stay open.
    let (status, _) = request(&judge, reqwest::Method::GET, "/api/algorithms", None, None);
    assert_eq!(status, 200);

    // The admin makes a user with a password; the user logs in and runs code with the session.
    let user = json!({ "name": "ada", "email": "ada@example.org", "role": "user", "password": "correct horse" });
    let (status, body) = request(&judge, reqwest::Method::POST, "/api/users", Some(&admin), Some(&user));
    assert_eq!(status, 201, "{body}");
    let login = json!({ "login": "ada@example.org", "password": "correct horse" });
    let (status, session) = request(&judge, reqwest::Method::POST, "/api/auth/login", None, Some(&login));
    assert_eq!(status, 200, "{session}");
    let jwt = session["token"].as_str().unwrap().to_owned();
    let (status, body) = request(&judge, reqwest::Method::POST, "/api/submissions", Some(&jwt), Some(&program));
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_u64().unwrap();
    let start = Instant::now();
    loop {
        let (_, v) = request(&judge, reqwest::Method::GET, &format!("/api/submissions/{id}"), Some(&jwt), None);
        if v["status"] == "done" {
            assert_eq!(v["verdict"], "AC", "{v}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "not judged: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The WebSocket: a bad token is refused at the upgrade, anonymous runs get an error,
    // a token in the query or an AUTH message lets the run through.
    let refused = ws_run(&judge, "?token=jc_wrong", None);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].starts_with("REFUSED") && refused[0].contains("401"), "{refused:?}");
    assert_eq!(ws_run(&judge, "", None), ["error"]);
    let by_query = ws_run(&judge, &format!("?token={jwt}"), None);
    assert_eq!(by_query.last().map(String::as_str), Some("EXECUTION_COMPLETED"), "{by_query:?}");
    let by_message = ws_run(&judge, "", Some(&admin));
    assert_eq!(by_message.first().map(String::as_str), Some("AUTHENTICATED"), "{by_message:?}");
    assert_eq!(by_message.last().map(String::as_str), Some("EXECUTION_COMPLETED"), "{by_message:?}");
    judge.stop();
}

fn schemathesis() -> PathBuf {
    // bin_dir() is target/<profile>; the venv sits beside the profiles.
    let exe = bin_dir().parent().unwrap().join(SCHEMATHESIS).join("bin/schemathesis");
    assert!(
        exe.exists(),
        "{} is missing: .ci/run installs it (python3 -m venv target/{SCHEMATHESIS} && target/{SCHEMATHESIS}/bin/pip install schemathesis==4.32.5)",
        exe.display()
    );
    exe
}

/// Two stored benchmarks of the same inputs (ids 1 and 2), through `/ws`.
const WS_BENCHMARKS: &str = r#"
import asyncio, json, sys, websockets
url = sys.argv[1]
CODE = "def bubble_sort(arr):\n    a = list(arr)\n    for i in range(len(a)):\n        for j in range(len(a) - 1 - i):\n            if a[j] > a[j + 1]:\n                a[j], a[j + 1] = a[j + 1], a[j]\n    return a\n"
async def main():
    async with websockets.connect(url) as ws:
        for _ in range(2):
            await ws.send(json.dumps({"type": "PERFORMANCE_BENCHMARK", "algorithmName": "bubble_sort", "language": "python",
                                      "algorithmCode": CODE, "maxSize": 16, "seed": 7}))
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 120))
                if m["type"] in ("BENCHMARK_COMPLETED", "BENCHMARK_ERROR", "error"):
                    print(m["type"])
                    break
asyncio.run(main())
"#;

/// What the document's examples name (ids 1 and 2, two_sum): two benchmarks, two code
/// versions, a run and a passing test suite, so schemathesis sees those routes answer
/// with data, not only 404s.
fn seed_examples(judge: &Judge, admin: &str) {
    let url = format!("{}/ws?token={admin}", judge.api.replacen("http://", "ws://", 1));
    let out = Command::new(python()).args(["-c", WS_BENCHMARKS, &url]).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().collect::<Vec<_>>(), ["BENCHMARK_COMPLETED"; 2], "{printed}{}", String::from_utf8_lossy(&out.stderr));
    let code = "def two_sum(nums, target):\n    seen = {}\n    for i, n in enumerate(nums):\n        if target - n in seen:\n            return [seen[target - n], i]\n        seen[n] = i\n";
    for note in ["first", "second"] {
        let version = json!({ "algorithm": "two_sum", "language": "python", "code": code, "note": note });
        let (status, body) = request(judge, reqwest::Method::POST, "/api/execution/versions", Some(admin), Some(&version));
        assert_eq!(status, 201, "{body}");
    }
    let run = json!({ "algorithm": "two_sum", "language": "python", "code": code, "input": [[2, 7], 9] });
    let (status, body) = request(judge, reqwest::Method::POST, "/api/execution/run", Some(admin), Some(&run));
    assert_eq!((status, body["success"].as_bool()), (200, Some(true)), "{body}");
    let suite = json!({ "algorithm": "two_sum", "versionId": 2 });
    let (status, body) = request(judge, reqwest::Method::POST, "/api/testing/run", Some(admin), Some(&suite));
    assert_eq!((status, body["success"].as_bool()), (200, Some(true)), "{body}");
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    let exe = schemathesis();
    let judge = Judge::up(uid_base(1), &["--allow-anonymous=false", "--slots", "1"]);
    let admin = admin_token(&judge);
    seed_examples(&judge, &admin);
    let report = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut child = Command::new(exe)
        .arg("run")
        .arg(judge.url("/api/openapi.json"))
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
        // One worker: two run ast.parse in parallel threads, which CPython 3.11 can fail
        // with "AST constructor recursion depth mismatch" (an internal error, seen in CI).
        .args(["--phases", "examples,coverage,fuzzing", "--max-examples", "12", "--seed", "1", "--workers", "1"])
        .args(["--generation-database", "none", "--request-timeout", "90", "--no-color"])
        // schemathesis cannot generate application/zip bodies (problem packages); the
        // import is tested with real packages in contest.rs.
        .args(["--exclude-operation-id", "post_api_problems"])
        // As the admin: every route's handler is reached, not just its 401.
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .arg("--report-dir")
        .arg(report.path())
        // It keeps a cache in its working directory.
        .current_dir(report.path())
        .spawn()
        .unwrap();
    // A hung run fails the test instead of hanging CI.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            panic!("schemathesis still running after 240 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("schemathesis took {:.1} s", start.elapsed().as_secs_f64());
    assert!(status.success(), "schemathesis found failures (see its output above)");
    // The judge survived the fuzzing.
    assert_eq!(judge.health()["status"], "ok");
    judge.stop();
}

/// One wrk run: requests per second and latency percentiles in ms, from its report.
#[derive(Debug)]
struct WrkRun {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: String,
}

fn ms(text: &str) -> f64 {
    let (num, unit) = text.split_at(text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len()));
    let v: f64 = num.parse().unwrap();
    match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        other => panic!("unknown wrk unit {other:?}"),
    }
}

/// `wrk` on `url` for `seconds` with `connections`; each connection pauses `pause_ms`
/// between requests when given (wrk has no fixed rate: pausing caps it at
/// connections × 1000 / pause_ms per second).
fn wrk(url: &str, connections: u32, seconds: u32, pause_ms: Option<u32>, header: Option<&str>) -> WrkRun {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"]);
    if let Some(p) = pause_ms {
        let script = dir.path().join("pace.lua");
        std::fs::write(&script, format!("function delay() return {p} end\n")).unwrap();
        cmd.arg("-s").arg(&script);
    }
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let pct = |p: &str| {
        let line = text.lines().find(|l| l.trim_start().starts_with(p)).unwrap_or_else(|| panic!("no {p} in {text}"));
        ms(line.split_whitespace().nth(1).unwrap())
    };
    let rps = text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).unwrap().trim().parse().unwrap();
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .collect::<Vec<_>>()
        .join("; ");
    WrkRun { rps, p50_ms: pct("50%"), p99_ms: pct("99%"), errors }
}

/// The hot read routes under wrk: `GET /api/algorithms` (a PostgreSQL query per request)
/// and `GET /api/submissions/{id}` (the judge's memory), at a paced ~5000 requests/s and
/// flat out. Goal: p99 ≤ 5 ms at 5000/s. Build with --release for meaningful figures:
/// `cargo test --release -p judge-tests --test api_access -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench_hot_reads_with_wrk() {
    let judge = Judge::up(uid_base(2), &["--slots", "1"]);
    let program = json!({ "language": "python", "source": "print(input())", "tests": [{ "input": "hi\n", "expectedOutput": "hi\n" }] });
    let id = judge.submit(&program);
    judge.result(id, Duration::from_secs(60));
    let admin = admin_token(&judge);
    let (_, session) = request(&judge, reqwest::Method::POST, "/api/auth/session", Some(&admin), None);
    let jwt = format!("Authorization: Bearer {}", session["token"].as_str().unwrap());
    let token = format!("Authorization: Bearer {admin}");
    let cases: [(&str, String, Option<&str>); 4] = [
        ("GET /api/algorithms", judge.url("/api/algorithms"), None),
        ("GET /api/submissions/{id}", judge.url(&format!("/api/submissions/{id}")), None),
        ("GET /api/submissions/{id}, JWT", judge.url(&format!("/api/submissions/{id}")), Some(jwt.as_str())),
        ("GET /api/submissions/{id}, API token", judge.url(&format!("/api/submissions/{id}")), Some(token.as_str())),
    ];
    println!("{:<40} {:>28} {:>28}", "route", "paced 50 conns x 100/s", "flat out, 32 conns");
    for (name, url, header) in &cases {
        // Warm-up: connections, the pool, caches.
        wrk(url, 16, 2, None, *header);
        let paced = wrk(url, 50, 10, Some(10), *header);
        let flat = wrk(url, 32, 10, None, *header);
        println!(
            "{name:<40} {:>7.0}/s p50 {:>5.2} p99 {:>6.2} ms {:>7.0}/s p50 {:>5.2} p99 {:>6.2} ms {}{}",
            paced.rps, paced.p50_ms, paced.p99_ms, flat.rps, flat.p50_ms, flat.p99_ms, paced.errors, flat.errors
        );
        assert!(paced.errors.is_empty() && flat.errors.is_empty(), "{name}: errors: {paced:?} {flat:?}");
    }
    judge.stop();
}
