//! Authentication, sessions, anonymous runs, rate limits, run caps and CORS through the
//! router, against a real PostgreSQL (a fresh database per test).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use salvo::test::{RequestBuilder, ResponseExt, TestClient};
use serde_json::{Value, json};

use super::jwt::JwtKey;
use super::test_fixture::{BASE, Fixture, Setup};
use crate::store::Queries;
use super::*;

fn strict() -> ApiOptions {
    ApiOptions {
        auth: AuthConfig { allow_anonymous: false, jwt: Some(JwtKey::random(Duration::from_secs(600)).unwrap()) },
        ..ApiOptions::default()
    }
}

async fn fixture(options: ApiOptions) -> Fixture {
    Fixture::with(Setup { options, ..Setup::default() }).await
}

/// `req` as it is (credentials in its headers, if any).
async fn send(f: &Fixture, req: RequestBuilder) -> (u16, Value) {
    f.send(req, None).await
}

fn bearer(req: RequestBuilder, token: Option<&str>) -> RequestBuilder {
    match token {
        Some(t) => req.add_header("authorization", format!("Bearer {t}"), true),
        None => req,
    }
}

fn submission() -> Value {
    json!({ "language": "python", "source": "print(1)", "tests": [{ "input": "", "expectedOutput": "1\n" }] })
}

async fn submit(f: &Fixture, token: Option<&str>) -> (u16, Value) {
    send(f, bearer(TestClient::post(format!("{BASE}/api/submissions")).json(&submission()), token)).await
}

#[tokio::test]
async fn anonymous_runs_are_refused_unless_allowed_and_reads_stay_open() {
    let f = fixture(strict()).await;
    let (status, body) = submit(&f, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["message"].as_str().unwrap().contains("credential"), "{body}");
    // Judge0 clients get Judge0's shape, and X-Auth-Token works for them.
    let judge0 = json!({ "source_code": "print(1)", "language_id": 71 });
    let (status, body) = send(&f, TestClient::post(format!("{BASE}/submissions")).json(&judge0)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = send(
        &f,
        TestClient::post(format!("{BASE}/submissions")).add_header("x-auth-token", f.user.1.clone(), true).json(&judge0),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["token"].is_string());
    let (status, body) = submit(&f, Some(&f.user.1)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_u64().unwrap();
    // Reading a result is a run's business too.
    let (status, _) = send(&f, TestClient::get(format!("{BASE}/api/submissions/{id}"))).await;
    assert_eq!(status, 401);
    // The catalog, the languages and the document stay open.
    for path in ["/api/algorithms", "/api/languages", "/api/openapi.json", "/languages", "/health"] {
        let (status, body) = send(&f, TestClient::get(format!("{BASE}{path}"))).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // A wrong credential is 401 even where none is needed.
    let (status, body) = send(&f, bearer(TestClient::get(format!("{BASE}/api/algorithms")), Some("jc_nope"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));

    let open = fixture(ApiOptions::default()).await;
    let (status, body) = submit(&open, None).await;
    assert_eq!(status, 201, "{body}");
    // Judge0 without authentication ignores X-Auth-Token; so do we when runs are open,
    // on its routes only.
    let req = TestClient::post(format!("{BASE}/submissions")).add_header("x-auth-token", "whatever", true).json(&judge0);
    assert_eq!(send(&open, req).await.0, 201);
    let req = TestClient::post(format!("{BASE}/api/submissions")).add_header("x-auth-token", "whatever", true).json(&submission());
    assert_eq!(send(&open, req).await.0, 401);
}

#[tokio::test]
async fn password_login_gives_a_session_that_works_like_a_token() {
    let f = fixture(strict()).await;
    // An admin creates a user with a password.
    let new = json!({ "name": "Ada", "email": "ada@example.org", "role": "setter", "password": "correct horse" });
    let (status, body) = send(&f, bearer(TestClient::post(format!("{BASE}/api/users")).json(&new), Some(&f.admin))).await;
    assert_eq!(status, 201, "{body}");
    let ada = body["id"].as_i64().unwrap();

    let login = |login: &str, password: &str| json!({ "login": login, "password": password });
    let (status, body) =
        send(&f, TestClient::post(format!("{BASE}/api/auth/login")).json(&login("ada@example.org", "wrong horse"))).await;
    assert_eq!((status, body["error"]["message"].as_str()), (401, Some("wrong login or password")));
    let (status, body) =
        send(&f, TestClient::post(format!("{BASE}/api/auth/login")).json(&login("nobody@example.org", "x"))).await;
    assert_eq!((status, body["error"]["message"].as_str()), (401, Some("wrong login or password")));
    // A user without a password cannot log in with any.
    let (status, _) = send(&f, TestClient::post(format!("{BASE}/api/auth/login")).json(&login("uma", "anything at all"))).await;
    assert_eq!(status, 401);

    for name in ["ada@example.org", "Ada"] {
        let (status, body) = send(&f, TestClient::post(format!("{BASE}/api/auth/login")).json(&login(name, "correct horse"))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user"], json!({ "id": ada, "name": "Ada", "role": "setter" }));
        assert_eq!(body["tokenType"], "Bearer");
        let jwt = body["token"].as_str().unwrap().to_owned();
        let (status, me) = send(&f, bearer(TestClient::get(format!("{BASE}/api/auth/me")), Some(&jwt))).await;
        assert_eq!((status, me["role"].as_str()), (200, Some("setter")), "{me}");
        // The session runs code and carries its role: a setter may delete, a user may not.
        assert_eq!(submit(&f, Some(&jwt)).await.0, 201);
    }
    let (_, body) = send(&f, TestClient::post(format!("{BASE}/api/auth/login")).json(&login("Ada", "correct horse"))).await;
    let jwt = body["token"].as_str().unwrap().to_owned();
    // A tampered session is refused.
    let mut forged = jwt.clone();
    forged.pop();
    forged.push(if jwt.ends_with('A') { 'B' } else { 'A' });
    let (status, body) = send(&f, bearer(TestClient::get(format!("{BASE}/api/auth/me")), Some(&forged))).await;
    assert_eq!(status, 401, "{body}");

    // An API token is exchanged for a session; a user sets their own password only.
    let (status, body) = send(&f, bearer(TestClient::post(format!("{BASE}/api/auth/session")), Some(&f.user.1))).await;
    assert_eq!((status, body["user"]["name"].as_str()), (200, Some("uma")), "{body}");
    let (status, body) = send(
        &f,
        bearer(TestClient::put(format!("{BASE}/api/auth/password")).json(&json!({ "password": "short" })), Some(&f.user.1)),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_field")), "{body}");
    let (status, body) = send(
        &f,
        bearer(
            TestClient::put(format!("{BASE}/api/auth/password")).json(&json!({ "password": "long enough", "userId": ada })),
            Some(&f.user.1),
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = send(
        &f,
        bearer(TestClient::put(format!("{BASE}/api/auth/password")).json(&json!({ "password": "long enough" })), Some(&f.user.1)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(f.store.login("uma", "long enough").await.unwrap().map(|p| p.name), Some("uma".into()));
    // Anonymous: no session to exchange.
    let (status, _) = send(&f, TestClient::post(format!("{BASE}/api/auth/session"))).await;
    assert_eq!(status, 401);
}

/// A logout ends every session of the user (API tokens stay), a password change ends
/// them too, and a new login works at once; a session whose user is gone is refused.
#[tokio::test]
async fn logout_and_a_new_password_end_the_sessions_issued_before() {
    let f = &fixture(strict()).await;
    let new = json!({ "name": "Lin", "role": "user", "password": "first password" });
    let (status, body) = send(f, bearer(TestClient::post(format!("{BASE}/api/users")).json(&new), Some(&f.admin))).await;
    assert_eq!(status, 201, "{body}");
    let lin = body["id"].as_i64().unwrap();
    let api_token = body["token"].as_str().unwrap().to_owned();
    let login = |password: &'static str| async move {
        let body = json!({ "login": "Lin", "password": password });
        let (status, session) = send(f, TestClient::post(format!("{BASE}/api/auth/login")).json(&body)).await;
        assert_eq!(status, 200, "{session}");
        session["token"].as_str().unwrap().to_owned()
    };
    let me = |token: String| async move { send(f, bearer(TestClient::get(format!("{BASE}/api/auth/me")), Some(&token))).await };
    let (laptop, phone) = (login("first password").await, login("first password").await);
    assert_eq!(me(laptop.clone()).await.0, 200);
    let (status, body) = send(f, bearer(TestClient::post(format!("{BASE}/api/auth/logout")), Some(&phone))).await;
    assert_eq!((status, &body), (200, &json!({ "userId": lin, "sessionsEnded": true })));
    for ended in [&laptop, &phone] {
        let (status, body) = me(ended.clone()).await;
        assert_eq!(status, 401, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("session has ended"), "{body}");
    }
    assert_eq!(me(api_token.clone()).await.0, 200, "API tokens are not sessions");
    let fresh = login("first password").await;
    assert_eq!(me(fresh.clone()).await.0, 200);
    // A new password ends the sessions made with the old one.
    let change = TestClient::put(format!("{BASE}/api/auth/password")).json(&json!({ "password": "second password" }));
    assert_eq!(send(f, bearer(change, Some(&api_token))).await.0, 200);
    assert_eq!(me(fresh).await.0, 401);
    assert_eq!(me(login("second password").await).await.0, 200);
    // A session outlives neither its user nor a change of role.
    let last = login("second password").await;
    let c = f.store.client().await.unwrap();
    c.execute("UPDATE users SET role = 'setter' WHERE id = $1", &[&lin]).await.unwrap();
    // (Within SESSION_RECHECK the cached role may still answer.)
    let deadline = std::time::Instant::now() + super::auth::SESSION_RECHECK * 5;
    while me(last.clone()).await.1["role"] != "setter" {
        assert!(std::time::Instant::now() < deadline, "the new role never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.execute("DELETE FROM users WHERE id = $1", &[&lin]).await.unwrap();
    let deadline = std::time::Instant::now() + super::auth::SESSION_RECHECK * 5;
    loop {
        let (status, body) = me(last.clone()).await;
        if status == 401 {
            assert!(body["error"]["message"].as_str().unwrap().contains("no longer exists"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a deleted user's session still works");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Admins list users, change roles and delete users, never their own; a user lists,
/// creates and revokes their own tokens (an admin anyone's), never the one in use.
#[tokio::test]
async fn users_and_their_tokens_are_managed_through_the_api() {
    let f = &fixture(strict()).await;
    let call = |method: &str, path: String, token: String, body: Option<Value>| {
        let req = match method {
            "GET" => TestClient::get(format!("{BASE}{path}")),
            "POST" => TestClient::post(format!("{BASE}{path}")),
            "PUT" => TestClient::put(format!("{BASE}{path}")),
            _ => TestClient::delete(format!("{BASE}{path}")),
        };
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        async move { send(f, bearer(req, Some(&token))).await }
    };
    let admin = f.admin.clone();
    let (status, bo) = call("POST", "/api/users".into(), admin.clone(), Some(json!({ "name": "Bo", "role": "user" }))).await;
    assert_eq!(status, 201, "{bo}");
    let (bo_id, first) = (bo["id"].as_i64().unwrap(), bo["token"].as_str().unwrap().to_owned());
    let (status, list) = call("GET", "/api/users".into(), admin.clone(), None).await;
    assert_eq!(status, 200, "{list}");
    let row = list["users"].as_array().unwrap().iter().find(|u| u["id"] == bo_id).unwrap().clone();
    assert_eq!((row["name"].as_str(), row["activeTokens"].as_i64(), row["hasPassword"].as_bool()), (Some("Bo"), Some(1), Some(false)));
    assert_eq!(call("GET", "/api/users".into(), first.clone(), None).await.0, 403);

    // Bo's own tokens.
    let (status, issued) = call("POST", format!("/api/users/{bo_id}/tokens"), first.clone(), Some(json!({ "label": "ci" }))).await;
    assert_eq!(status, 201, "{issued}");
    let second = issued["token"].as_str().unwrap().to_owned();
    let (_, tokens) = call("GET", format!("/api/users/{bo_id}/tokens"), second.clone(), None).await;
    let tokens = tokens["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    assert!(!Value::Array(tokens.clone()).to_string().contains(&first[3..]), "a token's secret is never listed");
    let first_id = tokens[0]["id"].as_i64().unwrap();
    let (status, body) = call("DELETE", format!("/api/users/{bo_id}/tokens/{first_id}"), first.clone(), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    assert_eq!(call("DELETE", format!("/api/users/{bo_id}/tokens/{first_id}"), second.clone(), None).await.0, 200);
    assert_eq!(call("GET", "/api/auth/me".into(), first.clone(), None).await.0, 401, "a revoked token is refused");
    assert_eq!(call("DELETE", format!("/api/users/{bo_id}/tokens/{first_id}"), second.clone(), None).await.0, 404);
    // Not somebody else's, unless an admin.
    let uma = f.user.0;
    assert_eq!(call("GET", format!("/api/users/{uma}/tokens"), second.clone(), None).await.0, 403);
    assert_eq!(call("GET", format!("/api/users/{uma}/tokens"), admin.clone(), None).await.0, 200);
    assert_eq!(call("GET", "/api/users/999999/tokens".into(), admin.clone(), None).await.0, 404);

    // Roles: the new one applies to the user's next request; an admin's own stays.
    let (status, _) = call("PUT", format!("/api/users/{bo_id}/role"), admin.clone(), Some(json!({ "role": "setter" }))).await;
    assert_eq!(status, 200);
    assert_eq!(call("GET", "/api/auth/me".into(), second.clone(), None).await.1["role"], "setter");
    let (status, body) = call("PUT", format!("/api/users/{bo_id}/role"), admin.clone(), Some(json!({ "role": "god" }))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_field")), "{body}");
    let admin_id = f.store.authenticate(&admin).await.unwrap().unwrap().user_id;
    let (status, _) = call("PUT", format!("/api/users/{admin_id}/role"), admin.clone(), Some(json!({ "role": "user" }))).await;
    assert_eq!(status, 409);
    assert_eq!(call("DELETE", format!("/api/users/{admin_id}"), admin.clone(), None).await.0, 409);
    assert_eq!(call("PUT", "/api/users/999999/role".into(), admin.clone(), Some(json!({ "role": "user" }))).await.0, 404);

    // Deleted: their tokens die with them.
    let (status, body) = call("DELETE", format!("/api/users/{bo_id}"), admin.clone(), None).await;
    assert_eq!((status, &body), (200, &json!({ "deleted": bo_id })));
    assert_eq!(call("GET", "/api/auth/me".into(), second, None).await.0, 401);
    assert_eq!(call("DELETE", format!("/api/users/{bo_id}"), admin, None).await.0, 404);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_per_caller() {
    let mut options = strict();
    options.rate_limit = Some(RateLimit { max: 3, window: Duration::from_secs(60) });
    let f = fixture(options).await;
    for _ in 0..3 {
        assert_eq!(send(&f, TestClient::get(format!("{BASE}/api/languages"))).await.0, 200);
    }
    let mut res = TestClient::get(format!("{BASE}/api/languages")).send(&f.service).await;
    assert_eq!(res.status_code.unwrap().as_u16(), 429);
    let retry: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "one request every 20 s: retry after {retry}");
    let body: Value = res.take_json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // A user has their own budget; health and metrics are never limited.
    assert_eq!(send(&f, bearer(TestClient::get(format!("{BASE}/api/languages")), Some(&f.user.1))).await.0, 200);
    assert_eq!(send(&f, TestClient::get(format!("{BASE}/health"))).await.0, 200);
    let text = TestClient::get(format!("{BASE}/metrics")).send(&f.service).await.take_string().await.unwrap();
    assert!(text.contains("judge_http_rate_limited_total{scope=\"ip\"} 1"), "{text}");
    assert!(text.contains("judge_http_rate_limited_total{scope=\"user\"} 0"), "{text}");
    // Nor is what raft peers poll to build /api/cluster.
    let (status, own) = send(&f, TestClient::get(format!("{BASE}/api/cluster/self"))).await;
    assert_eq!((status, own["reachable"].as_bool()), (200, Some(true)), "{own}");
    assert_eq!(send(&f, TestClient::get(format!("{BASE}/api/cluster"))).await.0, 429);
    let _ = &f.metrics;
}

#[tokio::test]
async fn unfinished_runs_are_capped_per_caller() {
    let mut options = strict();
    options.max_concurrent_runs = Some(2);
    let f = fixture(options).await;
    // No agent: runs stay queued.
    assert_eq!(submit(&f, Some(&f.user.1)).await.0, 201);
    assert_eq!(submit(&f, Some(&f.user.1)).await.0, 201);
    let (status, body) = submit(&f, Some(&f.user.1)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("too_many_running")), "{body}");
    // Judge0 clients are refused in Judge0's shape, single or batch.
    let judge0 = json!({ "source_code": "print(1)", "language_id": 71 });
    for (path, body) in [("/submissions", judge0.clone()), ("/submissions/batch", json!({ "submissions": [judge0] }))] {
        let req = TestClient::post(format!("{BASE}{path}")).add_header("x-auth-token", f.user.1.clone(), true).json(&body);
        let (status, body) = send(&f, req).await;
        assert_eq!(status, 429, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("at most 2"), "{path}: {body}");
    }
    // A refused request keeps no place, and others have their own.
    assert_eq!(submit(&f, Some(&f.admin)).await.0, 201);
    let (status, _) = submit(&f, Some(&f.user.1)).await;
    assert_eq!(status, 429);
    assert_eq!(f.scheduler.queue_summary().await.queued, 3, "refused runs are not queued");
}

#[tokio::test]
async fn cors_grants_only_configured_origins() {
    let mut options = strict();
    options.cors = Cors::parse(&["http://localhost:3000".into()]).unwrap();
    let f = fixture(options).await;
    let preflight = |origin: &str| {
        TestClient::options(format!("{BASE}/api/submissions"))
            .add_header("origin", origin.to_owned(), true)
            .add_header("access-control-request-method", "POST", true)
            .add_header("access-control-request-headers", "authorization, content-type", true)
    };
    let res = preflight("http://localhost:3000").send(&f.service).await;
    assert_eq!(res.status_code.unwrap().as_u16(), 204);
    assert_eq!(res.headers().get("access-control-allow-origin").unwrap(), "http://localhost:3000");
    assert!(res.headers().get("access-control-allow-headers").unwrap().to_str().unwrap().contains("authorization"));
    let res = preflight("http://evil.example").send(&f.service).await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = TestClient::get(format!("{BASE}/api/languages")).add_header("origin", "http://localhost:3000", true).send(&f.service).await;
    assert_eq!(res.headers().get("access-control-allow-origin").unwrap(), "http://localhost:3000");
}

#[tokio::test]
async fn the_document_lists_the_routes_the_router_serves() {
    let f = fixture(strict()).await;
    let (status, doc) = send(&f, TestClient::get(format!("{BASE}/api/openapi.json"))).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    for op in routes() {
        let method = op.method.as_str().to_lowercase();
        assert!(doc["paths"][op.path][&method].is_object(), "{method} {}", op.path);
        // Each documented route is served: neither the catch-all's 404 nor 405.
        let path = op.path.replace("{id}", "1").replace("{other}", "2").replace("{slug}", "two_sum").replace("{token}", "x");
        let req = match op.method {
            Method::GET => TestClient::get(format!("{BASE}{path}")),
            Method::POST => TestClient::post(format!("{BASE}{path}")),
            Method::PUT => TestClient::put(format!("{BASE}{path}")),
            Method::DELETE => TestClient::delete(format!("{BASE}{path}")),
            other => panic!("the route table uses {other}, which the router does not serve"),
        };
        let mut res = bearer(req, Some(&f.user.1)).send(&f.service).await;
        let status = res.status_code.unwrap().as_u16();
        let body: Value = serde_json::from_str(&res.take_string().await.unwrap()).unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert_ne!(body["error"]["code"], "not_found", "{method} {path} is not routed");
    }
    // Wrong methods on known paths are still told apart from unknown paths.
    let (status, _) = send(&f, TestClient::delete(format!("{BASE}/api/languages"))).await;
    assert_eq!(status, 405);
    let (status, _) = send(&f, TestClient::get(format!("{BASE}/api/nothing"))).await;
    assert_eq!(status, 404);
}
