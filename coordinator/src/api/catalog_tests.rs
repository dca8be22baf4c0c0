//! `/api/algorithms` against a real PostgreSQL (one private cluster per test binary, a
//! fresh database per test): every route, every role, bad input changing nothing.
#![allow(clippy::unwrap_used)]

use salvo::Service;
use salvo::test::{RequestBuilder, TestClient};
use serde_json::{Value, json};

use super::test_fixture::{BASE, Fixture, NoAgents};
use super::*;
use crate::store::Queries;
use crate::store::catalog::shipped;

async fn fixture() -> Fixture {
    Fixture::new().await
}

async fn send(service: &Service, req: RequestBuilder) -> (u16, Value) {
    super::test_fixture::send(service, req, None).await
}

async fn get(f: &Fixture, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = TestClient::get(format!("{BASE}{path}"));
    if let Some(t) = token {
        req = req.add_header("authorization", format!("Bearer {t}"), true);
    }
    send(&f.service, req).await
}

fn with_token(req: RequestBuilder, token: Option<&str>) -> RequestBuilder {
    match token {
        Some(t) => req.add_header("authorization", format!("Bearer {t}"), true),
        None => req,
    }
}

async fn post(f: &Fixture, body: impl Into<String>, token: Option<&str>) -> (u16, Value) {
    send(&f.service, with_token(TestClient::post(format!("{BASE}/api/algorithms")).raw_json(body), token)).await
}

async fn put(f: &Fixture, slug: &str, body: impl Into<String>, token: Option<&str>) -> (u16, Value) {
    send(&f.service, with_token(TestClient::put(format!("{BASE}/api/algorithms/{slug}")).raw_json(body), token)).await
}

async fn delete(f: &Fixture, slug: &str, token: Option<&str>) -> (u16, Value) {
    send(&f.service, with_token(TestClient::delete(format!("{BASE}/api/algorithms/{slug}")), token)).await
}

#[track_caller]
fn assert_error(answer: (u16, Value), want_status: u16, code: &str, mentions: &str) {
    super::test_fixture::assert_error(&answer, want_status, code, mentions);
}

fn new_algorithm() -> Value {
    json!({
        "slug": "sum_list",
        "name": "Sum of a List",
        "description": "Return the sum of `nums`.",
        "difficulty": "EASY",
        "category": "ARRAYS",
        "timeComplexity": "O(n)",
        "spaceComplexity": "O(1)",
        "tags": ["array"],
        "hints": ["Add them up.", "Start from 0."],
        "solution": "A running total.",
        "tutorial": "Folding a list.",
        "entryPoint": "sum_list",
        "testCases": [
            { "input": [[1, 2, 3]], "expected": 6, "sample": true },
            { "input": [[]], "expected": 0 }
        ],
        "referenceSolutions": { "python": "def sum_list(nums):\n    return sum(nums)\n" }
    })
}

async fn total(f: &Fixture) -> i64 {
    get(f, "/api/algorithms", None).await.1["total"].as_i64().unwrap()
}

#[tokio::test]
async fn anyone_lists_with_filters_and_pages() {
    let f = fixture().await;
    let all = shipped::ENTRIES.len() as i64;
    let (status, body) = get(&f, "/api/algorithms", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["total"].as_i64(), body["page"].as_i64(), body["perPage"].as_i64()), (Some(all), Some(1), Some(20)));
    assert_eq!(body["algorithms"].as_array().unwrap().len(), 20);
    let first = &body["algorithms"][0];
    assert_eq!(first["slug"], "two_sum");
    assert!(first.get("solution").is_none() && first.get("hints").is_none(), "{first}");
    assert_eq!(first["hintCount"], 3);

    let (_, page) = get(&f, "/api/algorithms?page=2&perPage=10", None).await;
    assert_eq!(page["algorithms"].as_array().unwrap().len(), 10);
    let (_, last) = get(&f, "/api/algorithms?page=3&perPage=10", None).await;
    assert_eq!(last["algorithms"].as_array().unwrap().len() as i64, all - 20);
    let (_, beyond) = get(&f, "/api/algorithms?page=99", None).await;
    assert_eq!((beyond["algorithms"].as_array().unwrap().len(), beyond["total"].as_i64()), (0, Some(all)));

    let slugs = |v: &Value| v["algorithms"].as_array().unwrap().iter().map(|a| a["slug"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let (_, sorting) = get(&f, "/api/algorithms?category=SORTING", None).await;
    assert_eq!(slugs(&sorting), ["bubble_sort", "merge_sort", "quick_sort"]);
    let (_, hard_graphs) = get(&f, "/api/algorithms?category=GRAPHS&difficulty=HARD", None).await;
    assert_eq!(slugs(&hard_graphs), ["dijkstra"]);
    let (_, heap) = get(&f, "/api/algorithms?tag=heap", None).await;
    assert_eq!(slugs(&heap), ["dijkstra"]);
    let (_, search) = get(&f, "/api/algorithms?search=LEVENSHTEIN", None).await;
    assert_eq!(slugs(&search), ["edit_distance"]);
    // LIKE's wildcards are taken literally.
    let (_, percent) = get(&f, "/api/algorithms?search=%25", None).await;
    assert_eq!(percent["total"], 0);
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let f = fixture().await;
    assert_error(get(&f, "/api/algorithms?category=POETRY", None).await, 400, "invalid_field", "category");
    assert_error(get(&f, "/api/algorithms?difficulty=easy", None).await, 400, "invalid_field", "difficulty");
    assert_error(get(&f, "/api/algorithms?perPage=0", None).await, 400, "invalid_field", "perPage");
    assert_error(get(&f, "/api/algorithms?perPage=101", None).await, 400, "invalid_field", "perPage");
    assert_error(get(&f, "/api/algorithms?page=abc", None).await, 400, "invalid_field", "page");
    assert_error(get(&f, "/api/algorithms/two_sum?hints=-1", None).await, 400, "invalid_field", "hints");
}

#[tokio::test]
async fn hints_are_revealed_one_by_one_and_the_solution_only_to_admins() {
    let f = fixture().await;
    let (status, anon) = get(&f, "/api/algorithms/two_sum", None).await;
    assert_eq!(status, 200, "{anon}");
    assert_eq!(anon["hints"], json!([]));
    assert_eq!((anon["hintCount"].as_u64(), anon["entryPoint"].as_str()), (Some(3), Some("two_sum")));
    assert!(anon.get("solution").is_none());
    let samples = anon["testCases"].as_array().unwrap();
    assert!(!samples.is_empty() && samples.iter().all(|t| t["sample"] == true));
    assert!(anon["testCount"].as_u64().unwrap() > samples.len() as u64);

    let (_, one) = get(&f, "/api/algorithms/two_sum?hints=1", None).await;
    assert_eq!(one["hints"].as_array().unwrap().len(), 1);
    let (_, two) = get(&f, "/api/algorithms/two_sum?hints=2", None).await;
    assert_eq!(two["hints"][0], one["hints"][0]);
    assert_eq!(two["hints"].as_array().unwrap().len(), 2);
    let (_, all) = get(&f, "/api/algorithms/two_sum?hints=50", None).await;
    assert_eq!(all["hints"].as_array().unwrap().len(), 3);

    let (_, user) = get(&f, "/api/algorithms/two_sum", Some(&f.user.1)).await;
    assert!(user.get("solution").is_none());
    let (_, setter) = get(&f, "/api/algorithms/two_sum", Some(&f.setter)).await;
    assert!(setter.get("solution").is_none());
    assert_eq!(setter["testCases"].as_array().unwrap().len() as u64, setter["testCount"].as_u64().unwrap());
    let (_, admin) = get(&f, "/api/algorithms/two_sum", Some(&f.admin)).await;
    assert!(admin["solution"]["explanation"].as_str().unwrap().contains("hash map"));
    assert!(admin["solution"]["referenceSolutions"]["python"].as_str().unwrap().contains("def two_sum"));
    assert!(admin["solution"]["referenceSolutions"]["javascript"].as_str().unwrap().contains("function two_sum"));

    assert_error(get(&f, "/api/algorithms/no_such_thing", None).await, 404, "algorithm_not_found", "no_such_thing");
}

#[tokio::test]
async fn tokens_are_checked_even_for_reads() {
    let f = fixture().await;
    let bogus = crate::store::auth::new_token().unwrap();
    assert_error(get(&f, "/api/algorithms", Some(&bogus)).await, 401, "unauthorized", "unknown or revoked");
    let basic = TestClient::get(format!("{BASE}/api/algorithms")).add_header("authorization", "Basic YTpi", true);
    assert_error(send(&f.service, basic).await, 401, "unauthorized", "Bearer");
    // Judge0 clients' header works too.
    let x = TestClient::get(format!("{BASE}/api/algorithms/two_sum")).add_header("x-auth-token", f.admin.clone(), true);
    let (status, body) = send(&f.service, x).await;
    assert_eq!(status, 200);
    assert!(body.get("solution").is_some());
}

#[tokio::test]
async fn writes_need_a_setter_or_an_admin() {
    let f = fixture().await;
    let before = total(&f).await;
    let body = new_algorithm().to_string();
    assert_error(post(&f, body.clone(), None).await, 401, "unauthorized", "setter");
    assert_error(post(&f, body.clone(), Some(&f.user.1)).await, 403, "forbidden", "role is user");
    assert_error(put(&f, "two_sum", body.clone(), Some(&f.user.1)).await, 403, "forbidden", "setter");
    assert_error(delete(&f, "two_sum", None).await, 401, "unauthorized", "token");
    assert_error(delete(&f, "two_sum", Some(&f.user.1)).await, 403, "forbidden", "setter");
    assert_eq!(total(&f).await, before);

    let (status, created) = post(&f, body.clone(), Some(&f.setter)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["slug"].as_str(), created["testCount"].as_u64()), (Some("sum_list"), Some(2)));
    assert_eq!(created["hints"].as_array().unwrap().len(), 2);
    assert_error(post(&f, body, Some(&f.admin)).await, 409, "conflict", "sum_list");

    let mut changed = new_algorithm();
    changed["name"] = json!("Sum of Numbers");
    changed["testCases"] = json!([{ "input": [[5]], "expected": 5, "sample": true }]);
    changed.as_object_mut().unwrap().remove("slug");
    let (status, updated) = put(&f, "sum_list", changed.to_string(), Some(&f.admin)).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!((updated["name"].as_str(), updated["testCount"].as_u64()), (Some("Sum of Numbers"), Some(1)));
    let (_, shown) = get(&f, "/api/algorithms/sum_list", Some(&f.admin)).await;
    assert_eq!(shown["solution"]["referenceSolutions"]["python"], new_algorithm()["referenceSolutions"]["python"]);

    assert_error(put(&f, "nope", changed.to_string(), Some(&f.setter)).await, 404, "algorithm_not_found", "nope");
    let mut renamed = changed.clone();
    renamed["slug"] = json!("other");
    assert_error(put(&f, "sum_list", renamed.to_string(), Some(&f.setter)).await, 400, "invalid_field", "renamed");

    let (status, gone) = delete(&f, "sum_list", Some(&f.setter)).await;
    assert_eq!((status, gone), (200, json!({ "deleted": "sum_list" })));
    assert_error(get(&f, "/api/algorithms/sum_list", None).await, 404, "algorithm_not_found", "sum_list");
    assert_error(delete(&f, "sum_list", Some(&f.admin)).await, 404, "algorithm_not_found", "sum_list");
    assert_eq!(total(&f).await, before);
}

/// A benchmark's input generator is stored with the algorithm, shown to setters and
/// admins, replaced or dropped by an update; the shipped Dijkstra brings its own.
#[tokio::test]
async fn a_generator_is_kept_with_its_algorithm() {
    let f = fixture().await;
    let source = "n, m, seed = map(int, input().split())\nprint([list(range(n))])\n";
    let mut body = new_algorithm();
    body["generator"] = json!({ "language": "python", "source": source });
    let (status, created) = post(&f, body.to_string(), Some(&f.setter)).await;
    assert_eq!(status, 201, "{created}");
    let (_, shown) = get(&f, "/api/algorithms/sum_list", Some(&f.setter)).await;
    assert_eq!(shown["generator"], json!({ "language": "python", "source": source }));
    let (_, as_user) = get(&f, "/api/algorithms/sum_list", Some(&f.user.1)).await;
    assert!(as_user.get("generator").is_none(), "{as_user}");
    let stored = f.store.get_algorithm("sum_list").await.unwrap().unwrap().generator.unwrap();
    assert_eq!((stored.language.as_str(), stored.source.as_str()), ("python", source));
    let mut changed = new_algorithm();
    changed.as_object_mut().unwrap().remove("slug");
    let (status, _) = put(&f, "sum_list", changed.to_string(), Some(&f.setter)).await;
    assert_eq!(status, 200);
    assert!(f.store.get_algorithm("sum_list").await.unwrap().unwrap().generator.is_none());
    let dijkstra = f.store.get_algorithm("dijkstra").await.unwrap().unwrap().generator.unwrap();
    assert_eq!(dijkstra.language, "python");
}

#[tokio::test]
async fn bad_bodies_are_4xx_and_write_nothing() {
    let f = fixture().await;
    let before = total(&f).await;
    let t = Some(f.setter.as_str());
    let with = |pointer: &str, value: Value| {
        let mut v = new_algorithm();
        *v.pointer_mut(pointer).unwrap() = value;
        v.to_string()
    };
    let without = |key: &str| {
        let mut v = new_algorithm();
        v.as_object_mut().unwrap().remove(key);
        v.to_string()
    };
    assert_error(post(&f, "{\"slug\": ", t).await, 400, "malformed_json", "EOF");
    assert_error(post(&f, format!("{} trailing", new_algorithm()), t).await, 400, "malformed_json", "trailing");
    assert_error(post(&f, with("/difficulty", json!(3)), t).await, 400, "invalid_field", "difficulty");
    assert_error(post(&f, with("/tags", json!("array")), t).await, 400, "invalid_field", "tags");
    assert_error(post(&f, with("/testCases/0/sample", json!("yes")), t).await, 400, "invalid_field", "testCases[0].sample");
    assert_error(post(&f, without("name"), t).await, 400, "missing_field", "name");
    assert_error(post(&f, without("slug"), t).await, 400, "missing_field", "slug");
    let mut extra = new_algorithm();
    extra["author"] = json!("me");
    assert_error(post(&f, extra.to_string(), t).await, 400, "unknown_field", "author");
    assert_error(post(&f, with("/difficulty", json!("TRIVIAL")), t).await, 400, "invalid_field", "EASY, MEDIUM");
    assert_error(post(&f, with("/category", json!("POETRY")), t).await, 400, "invalid_field", "category");
    assert_error(post(&f, with("/slug", json!("Bad Slug")), t).await, 400, "invalid_field", "slug");
    assert_error(post(&f, with("/entryPoint", json!("1st")), t).await, 400, "invalid_field", "entryPoint");
    assert_error(post(&f, with("/name", json!("   ")), t).await, 400, "invalid_field", "name");
    assert_error(post(&f, with("/testCases", json!([])), t).await, 400, "invalid_field", "testCases");
    assert_error(post(&f, with("/testCases/0/input", json!(5)), t).await, 400, "invalid_field", "testCases[0].input");
    assert_error(post(&f, with("/referenceSolutions", json!({ "cobol": "x" })), t).await, 400, "unknown_language", "cobol");
    let mut generator = new_algorithm();
    generator["generator"] = json!({ "language": "cobol", "source": "x" });
    assert_error(post(&f, generator.to_string(), t).await, 400, "unknown_language", "cobol");
    generator["generator"] = json!({ "language": "python", "source": "" });
    assert_error(post(&f, generator.to_string(), t).await, 400, "invalid_field", "generator.source");
    generator["generator"] = json!({ "language": "python", "source": "x", "seed": 1 });
    assert_error(post(&f, generator.to_string(), t).await, 400, "unknown_field", "seed");
    assert_error(post(&f, with("/description", json!("x".repeat(70_000))), t).await, 413, "too_large", "description");
    let huge = format!("{{\"slug\": \"{}\"}}", "a".repeat(17 << 20));
    assert_error(post(&f, huge, t).await, 413, "body_too_large", "exceeds");
    assert_error(put(&f, "two_sum", "[1, 2]", t).await, 400, "invalid_field", "invalid type");
    assert_eq!(total(&f).await, before);
    let c = f.store.client().await.unwrap();
    let n: i64 = c.query_one("SELECT count(*) FROM algorithms WHERE slug = 'sum_list'", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
    // two_sum untouched by the refused PUT.
    let (_, two_sum) = get(&f, "/api/algorithms/two_sum", None).await;
    assert_eq!(two_sum["name"], "Two Sum");
}

#[tokio::test]
async fn wrong_methods_are_405() {
    let f = fixture().await;
    let req = TestClient::patch(format!("{BASE}/api/algorithms/two_sum")).raw_json("{}");
    assert_error(send(&f.service, req).await, 405, "method_not_allowed", "PATCH");
    let req = TestClient::delete(format!("{BASE}/api/algorithms"));
    assert_error(send(&f.service, req).await, 405, "method_not_allowed", "DELETE");
}

#[tokio::test]
async fn health_reports_the_database() {
    let f = fixture().await;
    let (status, body) = get(&f, "/health", None).await;
    assert_eq!(status, 200);
    assert_eq!((body["status"].as_str(), body["database"]["status"].as_str()), (Some("ok"), Some("ok")));
    f.store.close();
    let (_, body) = get(&f, "/health", None).await;
    assert_eq!((body["status"].as_str(), body["database"]["status"].as_str()), (Some("degraded"), Some("unavailable")));
    assert_error(get(&f, "/api/algorithms", None).await, 503, "database_unavailable", "database");
}

#[tokio::test]
async fn without_a_store_the_catalog_is_503_and_health_says_disabled() {
    let router = router(Scheduler::new(Arc::new(NoAgents)), Arc::new(Spec::builtin().unwrap()), ApiLimits::default());
    let service = Service::new(router);
    let (_, health) = send(&service, TestClient::get(format!("{BASE}/health"))).await;
    assert_eq!(health["database"]["status"], "disabled");
    assert_error(send(&service, TestClient::get(format!("{BASE}/api/algorithms"))).await, 503, "no_database", "without a database");
}

#[tokio::test]
async fn admins_create_users_whose_tokens_work() {
    let f = fixture().await;
    let post_user = |body: Value, token: Option<&str>| {
        with_token(TestClient::post(format!("{BASE}/api/users")).raw_json(body.to_string()), token)
    };
    let body = json!({ "name": "Sue", "email": "sue@example.org", "role": "setter" });
    assert_error(send(&f.service, post_user(body.clone(), None)).await, 401, "unauthorized", "admin");
    assert_error(send(&f.service, post_user(body.clone(), Some(&f.setter))).await, 403, "forbidden", "admin");
    let (status, created) = send(&f.service, post_user(body.clone(), Some(&f.admin))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["role"].as_str(), created["name"].as_str()), (Some("setter"), Some("Sue")));
    let token = created["token"].as_str().unwrap();
    let (status, _) = post(&f, new_algorithm().to_string(), Some(token)).await;
    assert_eq!(status, 201);
    assert_error(send(&f.service, post_user(body, Some(&f.admin))).await, 409, "conflict", "sue@example.org");
    let bad_role = json!({ "name": "x", "role": "root" });
    assert_error(send(&f.service, post_user(bad_role, Some(&f.admin))).await, 400, "invalid_field", "role");
    let bad_email = json!({ "name": "x", "email": "nope", "role": "user" });
    assert_error(send(&f.service, post_user(bad_email, Some(&f.admin))).await, 400, "invalid_field", "email");
    let c = f.store.client().await.unwrap();
    let users: i64 = c.query_one("SELECT count(*) FROM users", &[]).await.unwrap().get(0);
    assert_eq!(users, 5, "four from the fixture and Sue");
}
