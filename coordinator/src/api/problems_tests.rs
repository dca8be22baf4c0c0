//! `/api/problems` against a real PostgreSQL: import by role and content type, refusals
//! naming the file, export, submissions carrying the problem's tests and scoring.
#![allow(clippy::unwrap_used)]

use salvo::test::{ResponseExt, TestClient};
use serde_json::{Value, json};

use super::*;
use crate::contest::package::Files;
use crate::contest::zip::{PackageCaps, read_zip, write_zip};
use super::test_fixture::{BASE, Fixture, Setup};

async fn fixture() -> Fixture {
    Fixture::with(Setup { catalog: false, ..Setup::default() }).await
}

fn package() -> Files {
    [
        ("problem.yaml", "name: Add\ntype: scoring\nvalidator_flags: float_tolerance 0.001\n"),
        (".timelimit", "2\n"),
        ("data/testdata.yaml", "grader_flags: min\n"),
        ("data/sample/1.in", "1 2\n"),
        ("data/sample/1.ans", "3\n"),
        ("data/secret/a/testdata.yaml", "score: 25\n"),
        ("data/secret/a/1.in", "2 2\n"),
        ("data/secret/a/1.ans", "4\n"),
        ("data/secret/b/testdata.yaml", "score: 75\n"),
        ("data/secret/b/1.in", "5 5\n"),
        ("data/secret/b/1.ans", "10\n"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

async fn import(f: &Fixture, zip: Vec<u8>, content_type: &str, token: Option<&str>, query: &str) -> (u16, Value) {
    let mut req = TestClient::post(format!("{BASE}/api/problems{query}")).add_header("content-type", content_type, true);
    if let Some(t) = token {
        req = req.add_header("authorization", format!("Bearer {t}"), true);
    }
    let mut res = req.body(zip).send(&f.service).await;
    (res.status_code.unwrap().as_u16(), res.take_json().await.unwrap())
}

async fn get(f: &Fixture, path: &str) -> (u16, Value) {
    let mut res = TestClient::get(format!("{BASE}{path}")).send(&f.service).await;
    (res.status_code.unwrap().as_u16(), res.take_json().await.unwrap())
}

#[tokio::test]
async fn import_needs_a_setter_and_a_zip() {
    let f = fixture().await;
    let zip = write_zip("add", &package()).unwrap();
    let (status, body) = import(&f, zip.clone(), "application/zip", None, "").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = import(&f, zip.clone(), "application/zip", Some(&f.user.1), "").await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = import(&f, zip.clone(), "application/json", Some(&f.setter), "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "{body}");
    let (status, body) = import(&f, zip.clone(), "application/zip", Some(&f.setter), "").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["slug"], "add");
    assert_eq!(body["scoring"], "min");
    assert_eq!(body["timeLimitMs"], 2000);
    assert_eq!(body["groups"], json!([{"name": "sample", "score": 0.0, "tests": 1}, {"name": "secret/a", "score": 25.0, "tests": 1}, {"name": "secret/b", "score": 75.0, "tests": 1}]));
    // The same slug again is a conflict, unless replaced; ?slug= renames.
    let (status, _) = import(&f, zip.clone(), "application/zip", Some(&f.setter), "").await;
    assert_eq!(status, 409);
    let (status, _) = import(&f, zip.clone(), "application/zip", Some(&f.setter), "?replace=true").await;
    assert_eq!(status, 201);
    let (status, body) = import(&f, zip, "application/zip", Some(&f.setter), "?slug=add-two").await;
    assert_eq!((status, body["slug"].as_str()), (201, Some("add-two")));
    let (status, body) = get(&f, "/api/problems").await;
    assert_eq!(status, 200);
    assert_eq!(body["problems"].as_array().unwrap().len(), 2);
    let (status, body) = get(&f, "/api/problems/add").await;
    assert_eq!(status, 200);
    assert_eq!(body["samples"], json!([{"name": "sample/1", "input": "1 2\n", "answer": "3\n"}]));
    let (status, body) = get(&f, "/api/problems/nope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("problem_not_found")));
}

#[tokio::test]
async fn bad_packages_are_refused_naming_problem_and_file() {
    let f = fixture().await;
    let mut broken = package();
    broken.remove("data/secret/b/1.ans");
    let (status, body) = import(&f, write_zip("add", &broken).unwrap(), "application/zip", Some(&f.setter), "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_package")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("problem \"add\"") && message.contains("data/secret/b/1.in"), "{message}");
    let mut bad_validator = package();
    bad_validator.insert("problem.yaml".into(), b"validation: custom\n".to_vec());
    bad_validator.insert("output_validator/check.go".into(), b"package main".to_vec());
    bad_validator.insert("output_validator/check.py".into(), b"".to_vec());
    let (status, body) = import(&f, write_zip("v", &bad_validator).unwrap(), "application/zip", Some(&f.setter), "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("2 validator sources"), "{body}");
    let (status, body) = import(&f, b"not a zip".to_vec(), "application/zip", Some(&f.setter), "").await;
    assert_eq!(status, 400, "{body}");
    // Nothing was stored by any of these.
    let (_, body) = get(&f, "/api/problems").await;
    assert_eq!(body["problems"], json!([]));
}

#[tokio::test]
async fn export_gives_back_the_package_and_submissions_carry_the_problem() {
    let f = fixture().await;
    let (status, _) =
        import(&f, write_zip("add", &package()).unwrap(), "application/zip", Some(&f.setter), "").await;
    assert_eq!(status, 201);
    let res = TestClient::get(format!("{BASE}/api/problems/add/package")).send(&f.service).await;
    assert_eq!(res.status_code.unwrap().as_u16(), 401, "secret data needs a setter");
    let mut res = TestClient::get(format!("{BASE}/api/problems/add/package"))
        .add_header("authorization", format!("Bearer {}", f.setter), true)
        .send(&f.service)
        .await;
    assert_eq!(res.status_code.unwrap().as_u16(), 200);
    let zip = res.take_bytes(None).await.unwrap();
    let unpacked = read_zip(&zip, PackageCaps::default()).unwrap();
    let original = crate::contest::package::parse("add", &package()).unwrap();
    assert_eq!(crate::contest::package::parse("add", &unpacked.files).unwrap(), original);

    let mut res = TestClient::post(format!("{BASE}/api/problems/add/submissions"))
        .raw_json(json!({"language": "python", "source": "print(sum(map(int, input().split())))"}).to_string())
        .send(&f.service)
        .await;
    assert_eq!(res.status_code.unwrap().as_u16(), 201);
    let body: Value = res.take_json().await.unwrap();
    let id = body["id"].as_u64().unwrap();
    let view = f.scheduler.get(id).await.unwrap();
    assert_eq!(view.limits.cpu_ms, 2000);
    assert_eq!(view.inputs.len(), 3);
    assert_eq!(view.options.groups, vec![0, 1, 2]);
    assert!(matches!(view.options.checker, protocol::Checker::Float { .. }));
    let (status, body) = get(&f, &format!("/api/submissions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!((body["problem"].as_str(), body["maxScore"].as_f64()), (Some("add"), Some(100.0)), "{body}");
    assert_eq!(body["groups"].as_array().unwrap().len(), 3);
    let mut res = TestClient::post(format!("{BASE}/api/problems/add/submissions"))
        .raw_json(json!({"language": "cobol", "source": "x"}).to_string())
        .send(&f.service)
        .await;
    assert_eq!(res.status_code.unwrap().as_u16(), 400);
    let body: Value = res.take_json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_language");
    let mut res = TestClient::post(format!("{BASE}/api/problems/nope/submissions"))
        .raw_json(json!({"language": "python", "source": "x"}).to_string())
        .send(&f.service)
        .await;
    assert_eq!(res.status_code.unwrap().as_u16(), 404);
    let _: Value = res.take_json().await.unwrap();
}

/// A problem's limits are lowered to the operator's caps, and its submissions count
/// against the caller's MAX_CONCURRENT_EXECUTIONS like any run.
#[tokio::test]
async fn problem_submissions_keep_to_the_operators_caps() {
    let caps = ApiLimits { cpu_ms: 1..=1500, wall_ms: 1..=2500, memory_mb: 16..=128, ..ApiLimits::default() };
    let options = ApiOptions { max_concurrent_runs: Some(1), ..ApiOptions::default() };
    let f = Fixture::with(Setup { options, caps, catalog: false, ..Setup::default() }).await;
    let (status, _) = import(&f, write_zip("add", &package()).unwrap(), "application/zip", Some(&f.setter), "").await;
    assert_eq!(status, 201);
    let submit = || {
        TestClient::post(format!("{BASE}/api/problems/add/submissions"))
            .raw_json(json!({"language": "python", "source": "print(1)"}).to_string())
    };
    let (status, body) = f.send(submit(), Some(&f.user.1)).await;
    assert_eq!(status, 201, "{body}");
    let limits = f.scheduler.get(body["id"].as_u64().unwrap()).await.unwrap().limits;
    // The package says 2 s; the operator allows 1.5 s of CPU and 2.5 s of wall time.
    assert_eq!((limits.cpu_ms, limits.wall_ms), (1500, 2500));
    assert!(limits.memory_bytes <= 128 << 20);
    let (status, body) = f.send(submit(), Some(&f.user.1)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("too_many_running")), "{body}");
    assert_eq!(f.scheduler.queue_summary().await.queued, 1);
    assert_eq!(f.send(submit(), Some(&f.other.1)).await.0, 201, "others have their own place");
}
