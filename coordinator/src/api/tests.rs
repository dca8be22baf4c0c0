#![allow(clippy::unwrap_used)]

use protocol::{FinalResult, TestResult, Verdict};
use salvo::Service;
use salvo::test::{ResponseExt, TestClient};
use serde_json::{Value, json};

use super::*;
use crate::link::LinkEvent;

use super::test_fixture::{BASE, NoAgents};

fn small_caps() -> ApiLimits {
    ApiLimits {
        max_body_bytes: 4096,
        max_source_bytes: 100,
        max_test_bytes: 50,
        max_tests_total_bytes: 120,
        max_tests: 3,
        ..ApiLimits::default()
    }
}

fn setup(caps: ApiLimits) -> (Service, Scheduler) {
    let scheduler = Scheduler::new(Arc::new(NoAgents));
    let spec = Arc::new(Spec::builtin().unwrap());
    (Service::new(router(scheduler.clone(), spec, caps)), scheduler)
}

async fn get(router: &Service, path: &str) -> (u16, Value) {
    let mut res = TestClient::get(format!("{BASE}{path}")).send(router).await;
    (res.status_code.unwrap().as_u16(), res.take_json().await.unwrap())
}

async fn post_raw(router: &Service, body: impl Into<String>) -> (u16, Value) {
    let mut res = TestClient::post(format!("{BASE}/api/submissions")).raw_json(body).send(router).await;
    (res.status_code.unwrap().as_u16(), res.take_json().await.unwrap())
}

async fn post(router: &Service, body: &Value) -> (u16, Value) {
    post_raw(router, body.to_string()).await
}

fn valid() -> Value {
    json!({
        "language": "python",
        "source": "print(input())",
        "tests": [{ "input": "1\n", "expectedOutput": "1\n" }],
    })
}

fn with(mut body: Value, pointer: &str, value: Value) -> Value {
    *body.pointer_mut(pointer).unwrap() = value;
    body
}

fn without(mut body: Value, key: &str) -> Value {
    body.as_object_mut().unwrap().remove(key);
    body
}

/// Asserts the status and error code, and that the message mentions `mentions`.
fn assert_error((status, body): (u16, Value), want_status: u16, code: &str, mentions: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(mentions), "message {message:?} should mention {mentions:?}");
}

#[tokio::test]
async fn valid_submission_is_created_and_shown_queued() {
    let (router, scheduler) = setup(ApiLimits::default());
    let (status, body) = post(&router, &valid()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, json!({ "id": 1 }));
    let (status, body) = get(&router, "/api/submissions/1").await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], 1);
    assert_eq!(body["language"], "python");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["verdict"], Value::Null);
    assert_eq!(body["tests"], json!([]));
    let sub = scheduler.get(1).await.unwrap();
    assert_eq!(sub.test_count, 1);
}

#[tokio::test]
async fn defaults_fill_missing_limits() {
    let (router, scheduler) = setup(ApiLimits::default());
    post(&router, &valid()).await;
    let body = with(valid(), "/tests/0", json!({ "input": "", "expectedOutput": "" }));
    let body = json!({ "language": body["language"], "source": body["source"], "tests": body["tests"],
        "limits": { "cpuMs": 500 } });
    assert_eq!(post(&router, &body).await.0, 201);
    let first = scheduler.get(1).await.unwrap().limits;
    assert_eq!((first.cpu_ms, first.wall_ms, first.memory_bytes), (2000, 7000, 256 << 20));
    assert_eq!((first.max_processes, first.output_bytes), (64, 16 << 20));
    let second = scheduler.get(2).await.unwrap().limits;
    assert_eq!((second.cpu_ms, second.wall_ms), (500, 2500));
}

#[tokio::test]
async fn explicit_limits_are_kept() {
    let (router, scheduler) = setup(ApiLimits::default());
    let body = json!({ "language": "c", "source": "int main(){}", "tests": [{ "input": "", "expectedOutput": "" }],
        "limits": { "cpuMs": 20000, "wallMs": 60000, "memoryMb": 16 } });
    assert_eq!(post(&router, &body).await.0, 201);
    let limits = scheduler.get(1).await.unwrap().limits;
    assert_eq!((limits.cpu_ms, limits.wall_ms, limits.memory_bytes), (20000, 60000, 16 << 20));
}

#[tokio::test]
async fn malformed_json_is_refused() {
    let (router, _) = setup(ApiLimits::default());
    assert_error(post_raw(&router, "{\"language\": ").await, 400, "malformed_json", "");
    assert_error(post_raw(&router, "not json").await, 400, "malformed_json", "");
    assert_error(post_raw(&router, "").await, 400, "malformed_json", "");
    assert_error(post_raw(&router, format!("{} trailing", valid())).await, 400, "malformed_json", "");
}

#[tokio::test]
async fn missing_fields_are_named() {
    let (router, _) = setup(ApiLimits::default());
    for field in ["language", "source", "tests"] {
        assert_error(post(&router, &without(valid(), field)).await, 400, "missing_field", field);
    }
    let body = with(valid(), "/tests/0", json!({ "input": "" }));
    assert_error(post(&router, &body).await, 400, "missing_field", "tests[0]: missing field `expectedOutput`");
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_named() {
    let (router, _) = setup(ApiLimits::default());
    assert_error(post(&router, &with(valid(), "/language", json!(5))).await, 400, "invalid_field", "language");
    assert_error(post(&router, &with(valid(), "/tests", json!("x"))).await, 400, "invalid_field", "tests");
    assert_error(
        post(&router, &with(valid(), "/tests/0/input", json!([1]))).await,
        400,
        "invalid_field",
        "tests[0].input",
    );
    let negative = json!({ "language": "c", "source": "x", "tests": [{ "input": "", "expectedOutput": "" }],
        "limits": { "cpuMs": -1 } });
    assert_error(post(&router, &negative).await, 400, "invalid_field", "limits.cpuMs");
    let fractional = with(negative, "/limits/cpuMs", json!(1.5));
    assert_error(post(&router, &fractional).await, 400, "invalid_field", "limits.cpuMs");
    let mut typo = valid();
    typo["expected_output"] = json!("");
    assert_error(post(&router, &typo).await, 400, "unknown_field", "expected_output");
    assert_error(post(&router, &json!([1, 2])).await, 400, "invalid_field", "");
}

#[tokio::test]
async fn unknown_language_is_refused() {
    let (router, _) = setup(ApiLimits::default());
    assert_error(post(&router, &with(valid(), "/language", json!("cobol"))).await, 400, "unknown_language", "cobol");
}

#[tokio::test]
async fn test_count_must_be_within_bounds() {
    let (router, _) = setup(small_caps());
    assert_error(post(&router, &with(valid(), "/tests", json!([]))).await, 400, "no_tests", "at least one");
    let four = Value::Array(vec![json!({ "input": "", "expectedOutput": "" }); 4]);
    assert_error(post(&router, &with(valid(), "/tests", four)).await, 400, "too_many_tests", "4 tests");
}

#[tokio::test]
async fn oversized_fields_are_refused_with_413() {
    let (router, _) = setup(small_caps());
    let big = |n| json!("x".repeat(n));
    assert_error(post(&router, &with(valid(), "/source", big(101))).await, 413, "too_large", "source");
    assert_error(post(&router, &with(valid(), "/source", json!(""))).await, 400, "invalid_field", "source");
    assert_error(post(&router, &with(valid(), "/tests/0/input", big(51))).await, 413, "too_large", "tests[0].input");
    let body = with(valid(), "/tests/0/expectedOutput", big(51));
    assert_error(post(&router, &body).await, 413, "too_large", "tests[0].expectedOutput");
    let t = json!({ "input": "x".repeat(25), "expectedOutput": "x".repeat(25) });
    let three = json!([t.clone(), t.clone(), t]);
    assert_error(post(&router, &with(valid(), "/tests", three)).await, 413, "too_large", "tests (all");
}

#[tokio::test]
async fn oversized_body_is_refused_with_413() {
    let (router, _) = setup(small_caps());
    let body = with(valid(), "/source", json!("x".repeat(5000)));
    assert_error(post(&router, &body).await, 413, "body_too_large", "4096");
}

#[tokio::test]
async fn limits_out_of_range_are_refused() {
    let (router, _) = setup(ApiLimits::default());
    let cases = [
        ("cpuMs", 0, "limits.cpuMs"),
        ("cpuMs", 20_001, "limits.cpuMs"),
        ("wallMs", 0, "limits.wallMs"),
        ("wallMs", 60_001, "limits.wallMs"),
        ("memoryMb", 15, "limits.memoryMb"),
        ("memoryMb", 2049, "limits.memoryMb"),
    ];
    for (field, value, name) in cases {
        let mut body = valid();
        body["limits"] = json!({ field: value });
        assert_error(post(&router, &body).await, 400, "out_of_range", name);
    }
}

#[tokio::test]
async fn rejected_submissions_never_enter_the_state() {
    let (router, scheduler) = setup(small_caps());
    post(&router, &with(valid(), "/language", json!("cobol"))).await;
    post(&router, &with(valid(), "/tests", json!([]))).await;
    post_raw(&router, "{").await;
    assert_eq!(scheduler.queue_summary().await.queued, 0);
    // The first accepted submission still gets id 1: nothing was half-written before.
    assert_eq!(post(&router, &valid()).await.1, json!({ "id": 1 }));
}

#[tokio::test]
async fn bad_or_unknown_ids_are_refused() {
    let (router, _) = setup(ApiLimits::default());
    assert_error(get(&router, "/api/submissions/abc").await, 400, "invalid_id", "abc");
    assert_error(get(&router, "/api/submissions/-1").await, 400, "invalid_id", "-1");
    assert_error(get(&router, "/api/submissions/99999999999999999999999").await, 400, "invalid_id", "");
    assert_error(get(&router, "/api/submissions/42").await, 404, "submission_not_found", "42");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let (router, _) = setup(ApiLimits::default());
    assert_error(get(&router, "/nope").await, 404, "not_found", "/nope");
    assert_error(get(&router, "/").await, 404, "not_found", "");
    assert_error(get(&router, "/api/submissions/1/extra").await, 404, "not_found", "");
    assert_error(get(&router, "/api/submissions").await, 405, "method_not_allowed", "GET");
    let mut res = TestClient::delete(format!("{BASE}/health")).send(&router).await;
    assert_eq!(res.status_code.unwrap().as_u16(), 405);
    let body: Value = res.take_json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn languages_come_from_the_spec() {
    let (router, _) = setup(ApiLimits::default());
    let (status, body) = get(&router, "/api/languages").await;
    assert_eq!(status, 200);
    let ids: Vec<_> = body.as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect();
    assert!(ids.contains(&"python".to_owned()), "{body}");
    assert!(body[0]["name"].is_string());
}

#[tokio::test]
async fn health_reports_agents_and_queue() {
    let (router, scheduler) = setup(ApiLimits::default());
    post(&router, &valid()).await;
    post(&router, &valid()).await;
    scheduler.handle_event(LinkEvent::AgentUp { agent_id: "a".into(), languages: vec!["python".into()], slots: 3 }).await;
    let (status, body) = get(&router, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "status": "ok", "agents": { "connected": 1, "slots": 3, "freeSlots": 1 },
                "queue": { "queued": 0, "running": 2 }, "database": { "status": "disabled" } })
    );
}

#[tokio::test]
async fn finished_submission_shows_verdict_and_truncated_output() {
    let (router, scheduler) = setup(ApiLimits::default());
    post(&router, &valid()).await;
    scheduler.handle_event(LinkEvent::AgentUp { agent_id: "a".into(), languages: vec!["python".into()], slots: 1 }).await;
    let mut stdout = vec![b'y'; SHOWN_OUTPUT_BYTES + 5];
    stdout[0] = 0xff;
    let result = TestResult {
        submission_id: 1,
        index: 0,
        verdict: Verdict::TLE,
        limit: Some(protocol::LimitHit::Cpu),
        cpu_time_us: 2_000_100,
        wall_time_us: 2_100_000,
        peak_memory_bytes: 4096,
        exit_code: None,
        signal: Some(9),
        stdout,
        stderr: b"err".to_vec(),
        message: "killed by SIGKILL".into(),
        score: None,
    };
    scheduler.handle_event(LinkEvent::TestResult { agent_id: "a".into(), result }).await;
    let result = FinalResult {
        submission_id: 1,
        verdict: Verdict::TLE,
        compile_output: String::new(),
        message: "test 1".into(),
    };
    scheduler.handle_event(LinkEvent::Final { agent_id: "a".into(), result }).await;

    let (status, body) = get(&router, "/api/submissions/1").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "done");
    assert_eq!(body["verdict"], "TLE");
    assert_eq!(body["message"], "test 1");
    assert_eq!(body["compileOutput"], "");
    let t = &body["tests"][0];
    assert_eq!(t["verdict"], "TLE");
    assert_eq!(t["limit"], "cpu");
    assert_eq!(t["cpuTimeUs"], 2_000_100);
    assert_eq!(t["wallTimeUs"], 2_100_000);
    assert_eq!(t["peakMemoryBytes"], 4096);
    assert_eq!(t["exitCode"], Value::Null);
    assert_eq!(t["signal"], 9);
    assert_eq!(t["stderr"], "err");
    assert_eq!(t["message"], "killed by SIGKILL");
    let stdout = t["stdout"].as_str().unwrap();
    assert!(stdout.starts_with('\u{fffd}'), "invalid UTF-8 becomes U+FFFD");
    assert!(stdout.ends_with(&format!("[output truncated: showing 65536 of {} bytes]", SHOWN_OUTPUT_BYTES + 5)));
}

#[test]
fn output_marker_only_when_cut() {
    assert_eq!(view::output(b"abc", 3), "abc");
    assert_eq!(view::output(b"abc", 10), "abc\n[output truncated: showing 3 of 10 bytes]");
}

#[tokio::test]
async fn serve_answers_on_a_real_socket_and_shuts_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let router = router(Scheduler::new(Arc::new(NoAgents)), Arc::new(Spec::builtin().unwrap()), ApiLimits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router, async move {
        let _ = stopped.await;
    }));
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(15), server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn oversized_body_on_a_real_socket_gets_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let router = router(Scheduler::new(Arc::new(NoAgents)), Arc::new(Spec::builtin().unwrap()), small_caps());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener, router, std::future::pending()));
    let body = with(valid(), "/source", json!("x".repeat(1 << 20))).to_string();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before taking the whole body; that is fine.
    let _ = conn.write_all(body.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    server.abort();
}
