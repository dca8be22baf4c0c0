#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use protocol::{FinalResult, Job, TestResult, Verdict};
use salvo::Service;
use salvo::test::{ResponseExt, TestClient};
use serde_json::{Value, json};

use super::*;
use crate::api::{ApiLimits, router_with};
use crate::link::{Dispatch, DispatchError, LinkEvent};

const BASE: &str = "http://127.0.0.1:5801";

struct NoAgents;

impl Dispatch for NoAgents {
    fn dispatch(&self, _agent_id: &str, _job: Job) -> Result<(), DispatchError> {
        Ok(())
    }
}

fn setup() -> (Service, Scheduler) {
    let scheduler = Scheduler::new(Arc::new(NoAgents));
    let spec = Arc::new(Spec::builtin().unwrap());
    let config = Judge0Config { max_wait: Duration::from_millis(300), ..Judge0Config::default() };
    (Service::new(router_with(scheduler.clone(), spec, ApiLimits::default(), config)), scheduler)
}

async fn get(router: &Service, path: &str) -> (u16, Value) {
    let mut res = TestClient::get(format!("{BASE}{path}")).add_header("X-Auth-Token", "ignored", true).send(router).await;
    (res.status_code.unwrap().as_u16(), res.take_json().await.unwrap())
}

async fn post(router: &Service, path: &str, body: &Value) -> (u16, Value) {
    let mut res = TestClient::post(format!("{BASE}{path}")).raw_json(body.to_string()).send(router).await;
    (res.status_code.unwrap().as_u16(), res.take_json().await.unwrap())
}

/// Judge0's documented example, with a language id of ours.
fn hello() -> Value {
    json!({
        "source_code": "#include <stdio.h>\n\nint main(void) {\n  char name[10];\n  scanf(\"%s\", name);\n  printf(\"hello, %s\\n\", name);\n  return 0;\n}",
        "language_id": 50,
        "stdin": "Judge0",
        "expected_output": "hello, Judge0",
    })
}

/// Plays an agent: registers, takes the queued submission `id`, reports `result`.
fn finish(scheduler: &Scheduler, id: u64, mut result: TestResult, verdict: Verdict) {
    scheduler.handle_event(LinkEvent::AgentUp { agent_id: "a".into(), languages: vec!["c".into()], slots: 4 });
    result.submission_id = id;
    scheduler.handle_event(LinkEvent::TestResult { agent_id: "a".into(), result });
    let fin = FinalResult { submission_id: id, verdict, compile_output: String::new(), message: String::new() };
    scheduler.handle_event(LinkEvent::Final { agent_id: "a".into(), result: fin });
}

fn result(verdict: Verdict, stdout: &[u8], exit_code: Option<i32>, signal: Option<i32>) -> TestResult {
    TestResult {
        submission_id: 0,
        index: 0,
        verdict,
        limit: None,
        cpu_time_us: 1_500,
        wall_time_us: 4_200,
        peak_memory_bytes: 380 * 1024,
        exit_code,
        signal,
        stdout: stdout.to_vec(),
        stderr: Vec::new(),
        message: String::new(),
        score: None,
    }
}

#[tokio::test]
async fn create_returns_a_token_and_get_shows_it_queued_with_default_fields() {
    let (router, _) = setup();
    let (status, body) = post(&router, "/submissions", &hello()).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(token).unwrap().get_version_num(), 4);
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");

    let (status, sub) = get(&router, &format!("/submissions/{token}")).await;
    assert_eq!(status, 200);
    let keys: std::collections::BTreeSet<_> = sub.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect());
    assert_eq!(sub["status"], json!({"id": 1, "description": "In Queue"}));
    assert_eq!(sub["token"], token);

    let (status, sub) = get(&router, &format!("/submissions/{token}?fields=stdin,language_id,memory_limit,cpu_time_limit")).await;
    assert_eq!(status, 200);
    assert_eq!(sub, json!({"stdin": "Judge0", "language_id": 50, "memory_limit": 128000, "cpu_time_limit": "2.0"}));
    assert_eq!(get(&router, "/submissions/not-a-token").await.0, 404);
    assert_eq!(get(&router, &format!("/submissions/{token}?fields=bogus")).await.0, 400);
}

#[tokio::test]
async fn validation_answers_422_naming_the_attribute() {
    let (router, scheduler) = setup();
    let cases = [
        (json!({"source_code": "x"}), "language_id", "can't be blank"),
        (json!({"source_code": "x", "language_id": 150000}), "language_id", "language with id 150000 doesn't exist"),
        (json!({"language_id": 50}), "source_code", "can't be blank"),
        (json!({"source_code": "x", "language_id": 50, "wall_time_limit": 100000}), "wall_time_limit", "less than or equal to 60.0"),
        (json!({"source_code": "x", "language_id": 50, "cpu_time_limit": 0}), "cpu_time_limit", "greater than or equal"),
        (json!({"source_code": "x", "language_id": 50, "memory_limit": 4_000_000}), "memory_limit", "less than or equal"),
        (json!({"source_code": "x", "language_id": 71, "compiler_options": "-O3"}), "compiler_options", "not allowed"),
        (json!({"source_code": "x", "language_id": 50, "number_of_runs": 21}), "number_of_runs", "less than or equal to 20"),
        (json!({"source_code": "x", "language_id": 50, "callback_url": "ftp://x/"}), "callback_url", "https://"),
        (json!({"source_code": "x", "language_id": 50, "stdin": 5}), "stdin", "string"),
        (json!({"source_code": "x", "language_id": 50, "compiler_options": "x".repeat(513)}), "compiler_options", "too long"),
    ];
    for (body, field, reason) in cases {
        let (status, answer) = post(&router, "/submissions", &body).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        let got = answer[field][0].as_str().unwrap_or_else(|| panic!("{answer}"));
        assert!(got.contains(reason), "{field}: {got:?} should say {reason:?}");
    }
    // A numeric string is a number to Judge0, as its own docs send it.
    let (status, _) = post(&router, "/submissions", &json!({"source_code": "x", "language_id": "50"})).await;
    assert_eq!(status, 201);
    let https = json!({"source_code": "x", "language_id": 50, "callback_url": "https://hooks.example/judge"});
    assert_eq!(post(&router, "/submissions", &https).await.0, 201);
    let (status, answer) = post(&router, "/submissions?base64_encoded=true", &json!({"source_code": "%%%", "language_id": 50})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(post(&router, "/submissions?wait=maybe", &hello()).await.0, 400);
    // Only the two valid submissions reached the state machine.
    assert_eq!(scheduler.queue_summary().await.queued, 2);
}

#[tokio::test]
async fn attributes_map_to_the_job() {
    let body = json!({
        "source_code": "x", "language_id": 54, "cpu_time_limit": 1.5, "cpu_extra_time": 0.25,
        "wall_time_limit": 4, "memory_limit": 65536, "stack_limit": 32000, "max_processes_and_or_threads": 10,
        "max_file_size": 2048, "number_of_runs": 3, "redirect_stderr_to_stdout": true,
        "compiler_options": " -O3  -DX=1 ", "command_line_arguments": "a  'b c'", "stdin": "in",
    });
    let spec = Spec::builtin().unwrap();
    let new = parse_submission(&body, false, &spec, &ApiLimits::default(), &Judge0Config::default()).unwrap();
    assert_eq!(new.language, "cpp");
    assert_eq!((new.limits.cpu_ms, new.limits.wall_ms, new.limits.memory_bytes), (1500, 4000, 65536 * 1024));
    assert_eq!(new.limits.max_processes, 10);
    assert_eq!(new.options.extra_cpu_ms, 250);
    assert_eq!(new.options.stack_bytes, Some(32000 * 1024));
    assert_eq!(new.options.file_bytes, Some(2048 * 1024));
    assert_eq!(new.options.runs, 3);
    assert!(new.options.merge_stderr);
    assert_eq!(new.options.compiler_args, ["-O3", "-DX=1"]);
    // Split on whitespace only: quotes are not a shell's, they stay as they are.
    assert_eq!(new.options.run_args, ["a", "'b", "c'"]);
    assert_eq!(new.tests[0].input, b"in");
    assert_eq!(new.tests[0].expected_output, None);
}

#[test]
fn statuses_follow_judge0_and_say_the_truth_in_message() {
    let spec = Spec::builtin().unwrap();
    let scheduler = Scheduler::new(Arc::new(NoAgents));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // verdict, limit, exit code, signal -> Judge0 status id, what `message` says.
    type Case = (Verdict, Option<LimitHit>, Option<i32>, Option<i32>, u32, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (Verdict::AC, None, Some(0), None, 3, None),
        (Verdict::WA, None, Some(0), None, 4, None),
        (Verdict::TLE, Some(LimitHit::Cpu), None, Some(9), 5, Some("CPU")),
        (Verdict::RE, None, None, Some(libc::SIGSEGV), 7, Some("SIGSEGV")),
        (Verdict::RE, None, None, Some(libc::SIGFPE), 9, None),
        (Verdict::RE, None, None, Some(libc::SIGABRT), 10, None),
        (Verdict::RE, None, Some(1), None, 11, None),
        (Verdict::RE, None, None, Some(libc::SIGTERM), 12, None),
        (Verdict::MLE, Some(LimitHit::Memory), None, Some(9), 12, Some("memory limit")),
        (Verdict::OLE, Some(LimitHit::Output), None, Some(9), 8, Some("output limit")),
    ];
    for (verdict, limit, exit, signal, want, says) in cases {
        let mut new = parse_submission(&hello(), false, &spec, &ApiLimits::default(), &Judge0Config::default()).unwrap();
        new.language = "c".into();
        let id = rt.block_on(scheduler.submit(new)).unwrap();
        let mut r = result(verdict, b"", exit, signal);
        r.limit = limit;
        r.message = match verdict {
            Verdict::TLE => "CPU time limit of 2000 ms exceeded".into(),
            Verdict::MLE => "memory limit of 125 MiB exceeded".into(),
            Verdict::OLE => "output limit of 16 bytes exceeded".into(),
            Verdict::RE if signal == Some(libc::SIGSEGV) => "killed by SIGSEGV (segmentation fault)".into(),
            _ => String::new(),
        };
        finish(&scheduler, id, r, verdict);
        let view = rt.block_on(scheduler.get(id)).unwrap();
        let (status, message) = status_of(&view);
        assert_eq!(status, want, "{verdict:?} {signal:?}");
        if let Some(says) = says {
            assert!(message.as_deref().unwrap_or("").contains(says), "{verdict:?}: {message:?}");
        }
    }
}

#[tokio::test]
async fn finished_submission_renders_times_memory_and_base64() {
    let (router, scheduler) = setup();
    let (_, body) = post(&router, "/submissions", &hello()).await;
    let token = body["token"].as_str().unwrap().to_owned();
    let id = scheduler.get_by_token(&token).await.unwrap().id;
    finish(&scheduler, id, result(Verdict::AC, b"hello, Judge0\n", Some(0), None), Verdict::AC);

    let (status, sub) = get(&router, &format!("/submissions/{token}")).await;
    assert_eq!(status, 200);
    assert_eq!(sub["status"], json!({"id": 3, "description": "Accepted"}));
    assert_eq!(sub["stdout"], "hello, Judge0\n");
    assert_eq!(sub["time"], "0.002");
    assert_eq!(sub["memory"], 380);
    assert_eq!(sub["stderr"], Value::Null);

    let (_, sub) = get(&router, &format!("/submissions/{token}?base64_encoded=true&fields=stdout,stdin,wall_time,exit_code")).await;
    assert_eq!(sub, json!({"stdout": "aGVsbG8sIEp1ZGdlMAo=", "stdin": "SnVkZ2Uw", "wall_time": "0.004", "exit_code": 0}));

    let (_, all) = get(&router, &format!("/submissions/{token}?fields=*")).await;
    for f in ALL_FIELDS {
        assert!(all.get(f).is_some(), "fields=* lacks {f}: {all}");
    }
    assert!(all["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn output_that_is_not_utf8_needs_base64() {
    let (router, scheduler) = setup();
    let (_, body) = post(&router, "/submissions", &hello()).await;
    let token = body["token"].as_str().unwrap().to_owned();
    let id = scheduler.get_by_token(&token).await.unwrap().id;
    finish(&scheduler, id, result(Verdict::AC, b"\xfe\n", Some(0), None), Verdict::AC);
    let (status, answer) = get(&router, &format!("/submissions/{token}")).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("base64_encoded=true"));
    let (status, answer) = get(&router, &format!("/submissions/{token}?base64_encoded=true&fields=stdout")).await;
    assert_eq!((status, answer), (200, json!({"stdout": "/go="})));
}

#[tokio::test]
async fn wait_is_bounded_and_answers_the_current_state() {
    let (router, _) = setup();
    // No agent: the wait ends at the configured cap with the submission still queued.
    let (status, sub) = post(&router, "/submissions?wait=true", &hello()).await;
    assert_eq!(status, 201, "{sub}");
    assert_eq!(sub["status"]["id"], 1);
    assert!(sub["token"].is_string());
}

#[tokio::test]
async fn batches_list_pages_and_static_routes() {
    let (router, _) = setup();
    let batch = json!({"submissions": [hello(), {"source_code": "x"}, hello()]});
    let (status, answer) = post(&router, "/submissions/batch", &batch).await;
    assert_eq!(status, 201, "{answer}");
    let answer = answer.as_array().unwrap();
    assert!(answer[0]["token"].is_string());
    assert_eq!(answer[1]["language_id"][0], "can't be blank");
    let tokens = format!("{},{},unknown", answer[0]["token"].as_str().unwrap(), answer[2]["token"].as_str().unwrap());
    let (status, got) = get(&router, &format!("/submissions/batch?tokens={tokens}&fields=token,status_id")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["submissions"][0], json!({"token": answer[0]["token"], "status_id": 1}));
    assert_eq!(got["submissions"][2], Value::Null);

    let (status, page) = get(&router, "/submissions?page=1&per_page=1&fields=token").await;
    assert_eq!(status, 200);
    assert_eq!(page["submissions"][0]["token"], answer[2]["token"], "newest first");
    assert_eq!(page["meta"], json!({"current_page": 1, "next_page": 2, "prev_page": null, "total_pages": 2, "total_count": 2}));
    assert_eq!(get(&router, "/submissions?page=-4").await, (400, json!({"error": "invalid page: -4"})));

    let (_, langs) = get(&router, "/languages").await;
    let ids: Vec<u64> = langs.as_array().unwrap().iter().map(|l| l["id"].as_u64().unwrap()).collect();
    for id in [50, 54, 60, 62, 63, 71, 73, 1020] {
        assert!(ids.contains(&id), "{id} missing from {langs}");
    }
    assert!(langs.as_array().unwrap().iter().all(|l| l["version"].is_string()));
    let (status, java) = get(&router, "/languages/62").await;
    assert_eq!(status, 200);
    assert_eq!(java["source_file"], "Main.java");
    assert_eq!(get(&router, "/languages/9999").await.0, 404);
    let (_, statuses) = get(&router, "/statuses").await;
    assert_eq!(statuses.as_array().unwrap().len(), 14);
    assert_eq!(statuses[10], json!({"id": 11, "description": "Runtime Error (NZEC)"}));
    assert_eq!(get(&router, "/about").await.1["version"], "1.13.1");
    let (_, config) = get(&router, "/config_info").await;
    assert_eq!(config["memory_limit"], 128000);
    assert_eq!(config["max_cpu_time_limit"], "20.0");
    assert_eq!(get(&router, "/workers").await.1[0]["queue"], "default");
    assert!(get(&router, "/system_info").await.1["CPU(s)"].is_string());
    assert_eq!(TestClient::delete(format!("{BASE}/submissions")).send(&router).await.status_code.unwrap().as_u16(), 405);
}

#[test]
fn time_formats() {
    assert_eq!(secs(2000), "2.0");
    assert_eq!(secs(500), "0.5");
    assert_eq!(secs(1250), "1.25");
    assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601(1_709_251_199_123), "2024-02-29T23:59:59.123Z");
}
