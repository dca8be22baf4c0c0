//! The HTTP API (salvo): health, languages, submissions. JSON in and out, camelCase.
//!
//! Every answer, errors included, is JSON; errors are `{"error": {"code", "message"}}`
//! (see `ApiError`). Serve with `serve`, or by hand:
//! `Server::new(TcpListener::new(addr).bind().await).serve(router)`.

mod analytics;
mod auth;
#[cfg(test)]
mod auth_tests;
mod cache;
mod catalog;
#[cfg(test)]
mod catalog_tests;
mod dashboard;
#[cfg(test)]
mod dashboard_tests;
mod diff;
mod error;
mod gate;
pub mod judge0;
pub mod jwt;
pub mod limits;
pub mod openapi;
mod execution;
mod members;
mod problems;
#[cfg(test)]
mod problems_tests;
mod stats;
mod submit;
mod testing;
mod users;
#[cfg(test)]
mod test_fixture;
#[cfg(test)]
mod tests;
mod view;

pub use auth::{AuthConfig, Authn, Caller};
pub use catalog::CatalogLimits;
pub use limits::{Cors, RateLimit, RunCaps};
pub use dashboard::{DashboardLimits, DashboardSetup};
pub use error::ApiError;
pub use judge0::Judge0Config;
pub use view::SHOWN_OUTPUT_BYTES;
pub(crate) use gate::client_ip;

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use rootfs::Spec;
use salvo::conn::tcp::TcpAcceptor;
use salvo::http::{Method, ParseError, StatusCode};
use salvo::writing::Json;
use salvo::{Depot, FlowCtrl, Handler, Request, Response, Router, Server, async_trait};
use serde_json::{Value, json};

use crate::scheduler::{Scheduler, SubmitError};
use crate::store::Store;
use crate::store::auth::Role;
use limits::Key;

const MIB: usize = 1 << 20;

/// Caps on what clients may ask for, and the defaults filled in for what they omit.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiLimits {
    /// Whole request body. JSON escaping can double binary-ish test data, so this is
    /// above the sum of the field caps; bodies over it are refused before parsing.
    pub max_body_bytes: usize,
    pub max_source_bytes: usize,
    /// Each test's input and each expected output, separately.
    pub max_test_bytes: usize,
    /// All inputs and expected outputs of one submission together.
    pub max_tests_total_bytes: usize,
    pub max_tests: usize,
    pub cpu_ms: RangeInclusive<u64>,
    pub wall_ms: RangeInclusive<u64>,
    pub memory_mb: RangeInclusive<u64>,
    pub default_cpu_ms: u64,
    pub default_memory_mb: u64,
    /// Not client-settable: processes and threads of a run.
    pub max_processes: u32,
    /// Not client-settable: bytes of stdout and of stderr allowed per run (more is OLE).
    pub output_bytes: u64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: 64 * MIB,
            max_source_bytes: 256 * 1024,
            max_test_bytes: 16 * MIB,
            max_tests_total_bytes: 48 * MIB,
            max_tests: 100,
            cpu_ms: 1..=20_000,
            wall_ms: 1..=60_000,
            memory_mb: 16..=2048,
            default_cpu_ms: 2000,
            default_memory_mb: 256,
            max_processes: 64,
            output_bytes: 16 * MIB as u64,
        }
    }
}

impl ApiLimits {
    /// Defaults are clamped into the configured ranges, so a tightened range never makes
    /// a request without limits fail.
    pub fn default_cpu_ms(&self) -> u64 {
        self.default_cpu_ms.clamp(*self.cpu_ms.start(), *self.cpu_ms.end())
    }

    pub fn default_memory_mb(&self) -> u64 {
        self.default_memory_mb.clamp(*self.memory_mb.start(), *self.memory_mb.end())
    }

    /// Three times the CPU limit plus a second: room for a program that waits on I/O or
    /// shares the core, while a sleeping program still ends well before a client gives up.
    pub fn default_wall_ms(&self, cpu_ms: u64) -> u64 {
        cpu_ms.saturating_mul(3).saturating_add(1000).clamp(*self.wall_ms.start(), *self.wall_ms.end())
    }
}

struct Api {
    scheduler: Scheduler,
    spec: Arc<Spec>,
    caps: ApiLimits,
    judge0: judge0::Judge0,
    /// The catalog and history; None runs the judge alone (the catalog answers 503).
    store: Option<Store>,
    catalog: CatalogLimits,
    authn: Authn,
    /// MAX_EXECUTION_TIME, MAX_MEMORY_USAGE and MAX_CONCURRENT_EXECUTIONS, for every
    /// route that runs code.
    run_caps: RunCaps,
    /// `/api/execution`, `/api/testing`, `/api/analytics` (api/dashboard.rs); None
    /// without a database or without a runner (`ApiOptions::dashboard`).
    dashboard: Option<Arc<dashboard::Dashboard>>,
    /// `/api/cluster`.
    cluster: crate::cluster::api::ClusterApi,
    /// Every route's path template, for telling 405 from 404.
    templates: Vec<&'static str>,
    /// `/api/openapi.json`, built once from the route table.
    openapi: Value,
    /// Answers of `GET /api/algorithms`, for a second.
    list_cache: cache::ResponseCache,
}

/// What a route does; `Endpoint::handle` dispatches on it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    Health,
    Metrics,
    OpenApi,
    Languages,
    Submit,
    GetSubmission,
    ListAlgorithms,
    CreateAlgorithm,
    GetAlgorithm,
    UpdateAlgorithm,
    DeleteAlgorithm,
    CreateUser,
    Login,
    Session,
    Me,
    SetPassword,
    Logout,
    ListUsers,
    SetRole,
    DeleteUser,
    ListTokens,
    IssueToken,
    RevokeToken,
    ImportProblem,
    ListProblems,
    GetProblem,
    ExportProblem,
    SubmitToProblem,
    RejudgeSubmission,
    RejudgeProblem,
    AddClusterNode,
    RemoveClusterNode,
    /// The dashboard's runs, code versions, statistics, progress (api/dashboard.rs).
    Dashboard(dashboard::DashRoute),
    /// Stored benchmark runs (api/analytics.rs).
    Benchmarks(analytics::BenchRoute),
    /// This raft cluster as this node sees it (cluster/api.rs).
    Cluster(crate::cluster::api::ClusterRoute),
    Judge0(judge0::Judge0Route),
    Fallback,
}

/// Who may call a route; checked before its handler runs, and stated in the OpenAPI
/// document. Finer rules (a role that sees more) stay in the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone, without a credential.
    Public,
    /// Runs code: any user; anonymous callers only with `--allow-anonymous`.
    Run,
    /// Any user with a credential; reading a run's result is open like running one.
    AtLeast(Role),
}

/// Who may call and what they want, for the rest of the request's handling.
#[derive(Debug, Clone)]
struct Identity {
    caller: Caller,
    /// What per-caller limits count against.
    key: Key,
}

/// Options around the routes: authentication, rate limits, CORS, and the parts the
/// dashboard and cluster routes need.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    pub auth: AuthConfig,
    /// Requests per key (user or IP); None: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Unfinished runs per key (MAX_CONCURRENT_EXECUTIONS); None: unlimited.
    pub max_concurrent_runs: Option<usize>,
    pub cors: Cors,
    /// The limiters of `rate_limit` and `max_concurrent_runs`, shared by everything
    /// built from clones of these options (routers, gates, `/ws`), so a caller has one
    /// budget across all doors.
    pub limiter: SharedLimiter,
    /// What the dashboard's run routes need beyond the store; None: they answer 503.
    pub dashboard: Option<DashboardSetup>,
    /// `/api/cluster`'s view of the peers; None: a node alone, its address unknown.
    pub cluster: Option<crate::cluster::api::ClusterApi>,
}

/// Opaque: leave it to `Default`.
#[derive(Clone, Default)]
pub struct SharedLimiter {
    rate: Arc<std::sync::OnceLock<Arc<limits::RateLimiter>>>,
    runs: Arc<std::sync::OnceLock<Arc<limits::Concurrency>>>,
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLimiter")
    }
}

impl ApiOptions {
    /// The per-caller request budget (`rate_limit`), the same one for every door.
    pub fn limiter(&self) -> Option<Arc<limits::RateLimiter>> {
        self.rate_limit.map(|l| self.limiter.rate.get_or_init(|| Arc::new(limits::RateLimiter::new(l))).clone())
    }

    /// The caps of every run, from `caps` (MAX_EXECUTION_TIME, MAX_MEMORY_USAGE) and
    /// `max_concurrent_runs`; `/ws` takes its own from here so that a caller's unfinished
    /// runs count once across REST, Judge0 and WebSocket.
    pub fn run_caps(&self, caps: &ApiLimits) -> RunCaps {
        RunCaps {
            max_cpu_ms: *caps.cpu_ms.end(),
            max_wall_ms: *caps.wall_ms.end(),
            max_memory_bytes: caps.memory_mb.end().saturating_mul(1 << 20),
            concurrency: self
                .max_concurrent_runs
                .map(|max| self.limiter.runs.get_or_init(|| Arc::new(limits::Concurrency::new(max))).clone()),
        }
    }
}

struct Endpoint {
    api: Arc<Api>,
    route: Route,
    access: Access,
}

#[async_trait]
impl Handler for Endpoint {
    async fn handle(&self, req: &mut Request, depot: &mut Depot, res: &mut Response, ctrl: &mut FlowCtrl) {
        let api = &self.api;
        let identity = depot.get_typed::<Identity>().ok().cloned();
        let caller = identity.as_ref().map_or(Caller::Anonymous, |i| i.caller.clone());
        let key = identity.map(|i| i.key);
        if let Err(err) = self.allowed(&caller) {
            return if matches!(self.route, Route::Judge0(_)) { err.write_judge0(res) } else { err.write(res) };
        }
        // MAX_CONCURRENT_EXECUTIONS: places are reserved before the run is submitted.
        let mut admission = match (&key, self.route.runs_code()) {
            (Some(key), true) => match api.run_caps.admit(&api.scheduler, key.clone()) {
                Ok(a) => a,
                Err((running, max)) => {
                    let err = ApiError::TooManyRunning { running, max };
                    return if matches!(self.route, Route::Judge0(_)) { err.write_judge0(res) } else { err.write(res) };
                }
            },
            _ => None,
        };
        let answer = match self.route {
            Route::Health => Ok((StatusCode::OK, health(api).await)),
            Route::Metrics => {
                let metrics = crate::metrics::MetricsEndpoint { scheduler: api.scheduler.clone() };
                return metrics.handle(req, depot, res, ctrl).await;
            }
            Route::OpenApi => Ok((StatusCode::OK, api.openapi.clone())),
            Route::Languages => Ok((StatusCode::OK, languages(&api.spec))),
            Route::Submit => submit(api, req).await,
            Route::GetSubmission => get_submission(api, req, &caller).await,
            Route::Login => auth::login(&api.authn, req).await,
            Route::Session => auth::exchange(&api.authn, &caller).await,
            Route::Logout => auth::logout(&api.authn, &caller).await,
            Route::Me => auth::me(&caller),
            Route::SetPassword => auth::set_password(&api.authn, req, &caller).await,
            Route::AddClusterNode => members::add(api, req).await,
            Route::RemoveClusterNode => members::remove(api, req).await,
            Route::ListAlgorithms
            | Route::CreateAlgorithm
            | Route::GetAlgorithm
            | Route::UpdateAlgorithm
            | Route::DeleteAlgorithm
            | Route::CreateUser
            | Route::ListUsers
            | Route::SetRole
            | Route::DeleteUser
            | Route::ListTokens
            | Route::IssueToken
            | Route::RevokeToken
            | Route::ImportProblem
            | Route::ListProblems
            | Route::GetProblem
            | Route::SubmitToProblem
            | Route::RejudgeSubmission
            | Route::RejudgeProblem => with_store(api, self.route, req, &caller).await,
            Route::ExportProblem => {
                match export_problem(api, req, &caller).await {
                    Ok(zip) => {
                        res.status_code(StatusCode::OK);
                        res.headers_mut().insert(
                            salvo::http::header::CONTENT_TYPE,
                            salvo::http::HeaderValue::from_static("application/zip"),
                        );
                        if let Err(e) = res.write_body(zip) {
                            ApiError::Internal(format!("cannot write the body: {e}")).write(res);
                        }
                    }
                    Err(err) => err.write(res),
                }
                return;
            }
            Route::Dashboard(route) => match &api.dashboard {
                Some(d) => dashboard::handle(d, route, req, &caller, admission.take()).await,
                None if api.store.is_none() => Err(ApiError::NoDatabase),
                None => Err(ApiError::RunUnavailable("the dashboard routes are not set up on this router".into())),
            },
            Route::Benchmarks(route) => {
                let Some(store) = &api.store else { return ApiError::NoDatabase.write(res) };
                if let analytics::BenchRoute::Plot = route {
                    match analytics::plot(store, req).await {
                        Ok(svg) => {
                            res.status_code(StatusCode::OK);
                            res.headers_mut().insert(
                                salvo::http::header::CONTENT_TYPE,
                                salvo::http::HeaderValue::from_static("image/svg+xml"),
                            );
                            if let Err(e) = res.write_body(svg) {
                                ApiError::Internal(format!("cannot write the body: {e}")).write(res);
                            }
                        }
                        Err(err) => err.write(res),
                    }
                    return;
                }
                analytics::handle(store, route, req).await
            }
            Route::Cluster(route) => Ok((StatusCode::OK, api.cluster.answer(route).await)),
            Route::Judge0(route) => {
                // Judge0's own error shapes, which its clients parse.
                match api.judge0.handle(route, req).await {
                    Ok((status, body)) => {
                        if let Some(a) = admission {
                            a.record(judge0_tickets(&body));
                        }
                        res.status_code(status);
                        res.render(Json(body));
                    }
                    Err(err) => err.write(res),
                }
                return;
            }
            Route::Fallback => Err(fallback(req, &api.templates)),
        };
        match answer {
            Ok((status, body)) => {
                if let (Some(a), Some(id)) = (admission, body.get("id").and_then(Value::as_u64)) {
                    a.record(vec![limits::Ticket::Id(id)]);
                }
                res.status_code(status);
                res.render(Json(body));
            }
            Err(err) => err.write(res),
        }
    }
}

impl Route {
    /// Whether the route makes the judge run code: MAX_CONCURRENT_EXECUTIONS applies.
    fn runs_code(self) -> bool {
        use judge0::Judge0Route as J;
        match self {
            Route::Submit | Route::SubmitToProblem | Route::Judge0(J::Create | J::CreateBatch) => true,
            Route::Dashboard(d) => d.runs_code(),
            _ => false,
        }
    }
}

impl Endpoint {
    fn allowed(&self, caller: &Caller) -> Result<(), ApiError> {
        match self.access {
            Access::Public => Ok(()),
            Access::Run => self.api.authn.may_execute(caller).map(|_| ()),
            Access::AtLeast(role) => auth::require(caller, role).map(|_| ()),
        }
    }
}

/// The Judge0 tokens of a create or batch answer.
fn judge0_tickets(body: &Value) -> Vec<limits::Ticket> {
    let one = |v: &Value| v.get("token").and_then(Value::as_str).map(|t| limits::Ticket::Judge0(t.to_owned()));
    match body {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

/// One route: method, path template (salvo's and OpenAPI's `{param}` syntax alike), what
/// it does, who may call it, and its documentation. The table below builds both the
/// router and `/api/openapi.json`, so a route cannot be served undocumented.
pub(crate) struct Op {
    pub method: Method,
    pub path: &'static str,
    pub route: Route,
    pub access: Access,
    pub doc: openapi::Doc,
}

/// Every route. Adding one: a `Route` variant, its arm in `Endpoint::handle`, and one
/// line here (see ARCHITECTURE.md, "Adding a route").
fn routes() -> Vec<Op> {
    use Access::{AtLeast, Public, Run};
    use judge0::Judge0Route as J;
    use openapi::{Doc, schema as s};
    use salvo::http::Method as M;
    let op = |method, path, route, access, doc| Op { method, path, route, access, doc };
    let mut table = vec![
        op(M::GET, "/health", Route::Health, Public, Doc::new("judge", "Liveness, agents, queue and database status").ok(200, s::health())),
        op(M::GET, "/metrics", Route::Metrics, Public, Doc::new("operations", "Prometheus metrics (text format)").text()),
        op(M::GET, "/api/openapi.json", Route::OpenApi, Public, Doc::new("operations", "This document").ok(200, s::object())),
        op(M::GET, "/api/languages", Route::Languages, Public, Doc::new("judge", "Languages of the judge").ok(200, s::languages())),
        op(M::POST, "/api/submissions", Route::Submit, Run, Doc::new("judge", "Submit a program and its tests").body(s::new_submission()).ok(201, s::created_id())),
        op(M::GET, "/api/submissions/{id}", Route::GetSubmission, Run, Doc::new("judge", "A submission's state and results (consistent=true: linearizable, via the raft leader)").param("id", s::id()).query(&[("consistent", s::boolean())]).ok(200, s::submission())),
        op(M::GET, "/api/algorithms", Route::ListAlgorithms, Public, Doc::new("catalog", "List algorithms").query(&[("category", s::string()), ("difficulty", s::string()), ("tag", s::string()), ("search", s::string()), ("page", s::positive()), ("perPage", s::positive())]).ok(200, s::algorithm_page()).db()),
        op(M::POST, "/api/algorithms", Route::CreateAlgorithm, AtLeast(Role::Setter), Doc::new("catalog", "Create an algorithm").body(s::algorithm_input()).ok(201, s::algorithm()).db()),
        op(M::GET, "/api/algorithms/{slug}", Route::GetAlgorithm, Public, Doc::new("catalog", "One algorithm; more for setters and admins").param("slug", s::string()).query(&[("hints", s::count())]).ok(200, s::algorithm()).db()),
        op(M::PUT, "/api/algorithms/{slug}", Route::UpdateAlgorithm, AtLeast(Role::Setter), Doc::new("catalog", "Replace an algorithm").param("slug", s::string()).body(s::algorithm_input()).ok(200, s::algorithm()).db()),
        op(M::DELETE, "/api/algorithms/{slug}", Route::DeleteAlgorithm, AtLeast(Role::Setter), Doc::new("catalog", "Delete an algorithm").param("slug", s::string()).ok(200, s::deleted()).db()),
        op(M::POST, "/api/problems", Route::ImportProblem, AtLeast(Role::Setter), Doc::new("contest", "Import a problem package (zip body)").zip_body().ok(201, s::object()).db()),
        op(M::GET, "/api/problems", Route::ListProblems, Public, Doc::new("contest", "List problems").ok(200, s::object()).db()),
        op(M::GET, "/api/problems/{slug}", Route::GetProblem, Public, Doc::new("contest", "One problem").param("slug", s::string()).ok(200, s::object()).db()),
        op(M::GET, "/api/problems/{slug}/package", Route::ExportProblem, AtLeast(Role::Setter), Doc::new("contest", "Export a problem package (zip)").param("slug", s::string()).zip().db()),
        op(M::POST, "/api/problems/{slug}/submissions", Route::SubmitToProblem, Run, Doc::new("contest", "Submit to a problem").param("slug", s::string()).body(s::object()).ok(201, s::object()).db()),
        op(M::POST, "/api/problems/{slug}/rejudge", Route::RejudgeProblem, AtLeast(Role::Setter), Doc::new("contest", "Judge every submission of a problem again").param("slug", s::string()).ok(200, s::object()).db()),
        op(M::POST, "/api/submissions/{id}/rejudge", Route::RejudgeSubmission, AtLeast(Role::Setter), Doc::new("contest", "Judge a submission again").param("id", s::id()).ok(200, s::object()).db()),
        op(M::GET, "/api/users", Route::ListUsers, AtLeast(Role::Admin), Doc::new("auth", "Every user").ok(200, s::users()).db()),
        op(M::PUT, "/api/users/{id}/role", Route::SetRole, AtLeast(Role::Admin), Doc::new("auth", "Give a user another role (not one's own)").param("id", s::id()).body(s::new_role()).ok(200, s::role_set()).db()),
        op(M::DELETE, "/api/users/{id}", Route::DeleteUser, AtLeast(Role::Admin), Doc::new("auth", "Delete a user, their tokens and sessions (not oneself)").param("id", s::id()).ok(200, s::user_deleted()).db()),
        op(M::GET, "/api/users/{id}/tokens", Route::ListTokens, AtLeast(Role::User), Doc::new("auth", "A user's API tokens (one's own; anyone's for admins)").param("id", s::id()).ok(200, s::tokens()).db()),
        op(M::POST, "/api/users/{id}/tokens", Route::IssueToken, AtLeast(Role::User), Doc::new("auth", "A new API token, shown this once (one's own; anyone's for admins)").param("id", s::id()).body(s::new_token()).ok(201, s::issued_token()).db()),
        op(M::DELETE, "/api/users/{id}/tokens/{tokenId}", Route::RevokeToken, AtLeast(Role::User), Doc::new("auth", "Revoke an API token (not the one of this request)").param("id", s::id()).param("tokenId", s::id()).ok(200, s::token_revoked()).db()),
        op(M::POST, "/api/users", Route::CreateUser, AtLeast(Role::Admin), Doc::new("auth", "Create a user and their first API token").body(s::new_user()).ok(201, s::created_user()).db()),
        op(M::POST, "/api/cluster/nodes", Route::AddClusterNode, AtLeast(Role::Admin), Doc::new("cluster", "Add a running coordinator (started with --join) to the raft cluster").body(s::new_cluster_node()).ok(200, s::voters())),
        op(M::DELETE, "/api/cluster/nodes/{id}", Route::RemoveClusterNode, AtLeast(Role::Admin), Doc::new("cluster", "Remove a coordinator from the raft cluster (ask another member)").param("id", s::id()).ok(200, s::voters())),
        op(M::POST, "/api/auth/login", Route::Login, Public, Doc::new("auth", "Log in with a password; returns a session (JWT)").body(s::login()).ok(200, s::session()).db()),
        op(M::POST, "/api/auth/session", Route::Session, AtLeast(Role::User), Doc::new("auth", "Exchange the credential sent for a fresh session (JWT)").ok(200, s::session())),
        op(M::GET, "/api/auth/me", Route::Me, AtLeast(Role::User), Doc::new("auth", "The caller").ok(200, s::user())),
        op(M::POST, "/api/auth/logout", Route::Logout, AtLeast(Role::User), Doc::new("auth", "End every login session of the caller (API tokens stay valid)").ok(200, s::sessions_ended()).db()),
        op(M::PUT, "/api/auth/password", Route::SetPassword, AtLeast(Role::User), Doc::new("auth", "Set the caller's (or, as admin, a user's) password").body(s::new_password()).ok(200, s::password_set()).db()),
        // Judge0 CE's API at the root. The batch routes before `{token}`, which would match "batch" too.
        op(M::GET, "/submissions/batch", Route::Judge0(J::ShowBatch), Run, Doc::judge0("Several submissions").query(&[("tokens", s::string()), ("base64_encoded", s::boolean()), ("fields", s::string())]).ok(200, s::object())),
        op(M::POST, "/submissions/batch", Route::Judge0(J::CreateBatch), Run, Doc::judge0("Create several submissions").query(&[("base64_encoded", s::boolean())]).body(s::judge0_batch()).ok(201, s::array())),
        op(M::GET, "/submissions", Route::Judge0(J::List), Run, Doc::judge0("A page of submissions").query(&[("base64_encoded", s::boolean()), ("fields", s::string()), ("page", s::positive()), ("per_page", s::positive())]).ok(200, s::object())),
        op(M::POST, "/submissions", Route::Judge0(J::Create), Run, Doc::judge0("Create a submission").query(&[("base64_encoded", s::boolean()), ("wait", s::boolean()), ("fields", s::string())]).body(s::judge0_submission()).ok(201, s::object())),
        op(M::GET, "/submissions/{token}", Route::Judge0(J::Show), Run, Doc::judge0("One submission").param("token", s::string()).query(&[("base64_encoded", s::boolean()), ("fields", s::string())]).ok(200, s::object())),
        op(M::GET, "/languages", Route::Judge0(J::Languages), Public, Doc::judge0("Languages").ok(200, s::array())),
        op(M::GET, "/languages/{id}", Route::Judge0(J::Language), Public, Doc::judge0("One language").param("id", s::id()).ok(200, s::object())),
        op(M::GET, "/statuses", Route::Judge0(J::Statuses), Public, Doc::judge0("Statuses").ok(200, s::array())),
        op(M::GET, "/about", Route::Judge0(J::About), Public, Doc::judge0("About this server").ok(200, s::object())),
        op(M::GET, "/config_info", Route::Judge0(J::ConfigInfo), Public, Doc::judge0("Configuration").ok(200, s::object())),
        op(M::GET, "/system_info", Route::Judge0(J::SystemInfo), Public, Doc::judge0("The host").ok(200, s::object())),
        op(M::GET, "/workers", Route::Judge0(J::Workers), Public, Doc::judge0("Queues and workers").ok(200, s::array())),
    ];
    table.extend(dashboard_routes());
    table.extend(cluster_routes());
    table
}

/// The dashboard's routes (docs/dashboard.md): runs, code versions, statistics, progress,
/// and the stored benchmarks of `/ws`.
fn dashboard_routes() -> Vec<Op> {
    use Access::{AtLeast, Public, Run};
    use analytics::BenchRoute as B;
    use dashboard::DashRoute as D;
    use openapi::{Doc, schema as s};
    use salvo::http::Method as M;
    let op = |method, path, route, access, doc| Op { method, path, route, access, doc };
    let user = AtLeast(Role::User);
    let page = [("page", s::positive()), ("perPage", s::positive())];
    // Ids and a slug that exist in CI's schemathesis run (tests/tests/api_access.rs).
    let (first, second) = (s::example(s::positive(), json!(1)), s::example(s::positive(), json!(2)));
    vec![
        op(M::POST, "/api/execution/run", Route::Dashboard(D::Run), Run, Doc::new("dashboard", "Run a function once on given arguments, waiting for its end").body(s::execution_request()).ok(200, s::execution_result()).db()),
        op(M::GET, "/api/execution/history", Route::Dashboard(D::History), user, Doc::new("dashboard", "The caller's runs, newest first").query(&[("algorithm", s::string())]).query(&page).ok(200, s::execution_page()).db()),
        op(M::GET, "/api/execution/history/{id}", Route::Dashboard(D::GetRun), user, Doc::new("dashboard", "One run of the caller's (any, for admins)").param("id", first.clone()).ok(200, s::execution_row()).db()),
        op(M::GET, "/api/execution/versions", Route::Dashboard(D::ListVersions), user, Doc::new("dashboard", "The caller's saved code versions").query(&[("algorithm", s::string()), ("language", s::string())]).ok(200, s::version_list()).db()),
        op(M::POST, "/api/execution/versions", Route::Dashboard(D::SaveVersion), user, Doc::new("dashboard", "Save a solution as a new version once it compiles (422 with the compiler's message if not)").body(s::version_input()).ok(201, s::version()).db()),
        op(M::GET, "/api/execution/versions/{id}", Route::Dashboard(D::GetVersion), user, Doc::new("dashboard", "One version with its code").param("id", first.clone()).ok(200, s::version()).db()),
        op(M::GET, "/api/execution/versions/{id}/diff/{other}", Route::Dashboard(D::Diff), user, Doc::new("dashboard", "Line diff of two versions").param("id", first.clone()).param("other", second.clone()).ok(200, s::version_diff()).db()),
        op(M::POST, "/api/testing/run", Route::Dashboard(D::RunTests), Run, Doc::new("dashboard", "Run an algorithm's whole test suite on a solution").body(s::testing_request()).ok(200, s::testing_result()).db()),
        op(M::GET, "/api/analytics/stats", Route::Dashboard(D::Stats), Public, Doc::new("analytics", "Per algorithm and language: runs, success rate, CPU time and memory").query(&[("algorithm", s::string()), ("language", s::string())]).ok(200, s::run_stats()).db()),
        op(M::GET, "/api/analytics/leaderboard/{slug}", Route::Dashboard(D::Leaderboard), Public, Doc::new("analytics", "Best run per user: CPU time, then memory").param("slug", s::example(s::string(), json!("two_sum"))).query(&[("language", s::string()), ("limit", s::positive())]).ok(200, s::leaderboard()).db()),
        op(M::GET, "/api/analytics/progress", Route::Dashboard(D::Progress), user, Doc::new("analytics", "The caller's progress per algorithm (admins: any user's)").query(&[("userId", s::positive())]).ok(200, s::progress()).db()),
        op(M::GET, "/api/analytics/achievements", Route::Dashboard(D::Achievements), user, Doc::new("analytics", "The caller's achievements and the rules (admins: any user's)").query(&[("userId", s::positive())]).ok(200, s::achievements()).db()),
        op(M::GET, "/api/analytics/benchmarks", Route::Benchmarks(B::List), Public, Doc::new("analytics", "Stored WebSocket benchmarks, newest first").query(&[("algorithm", s::string())]).query(&page).ok(200, s::benchmark_page()).db()),
        op(M::GET, "/api/analytics/benchmarks/{id}", Route::Benchmarks(B::Get), Public, Doc::new("analytics", "One stored benchmark with every size's measurements and fits").param("id", first.clone()).ok(200, s::benchmark()).db()),
        op(M::GET, "/api/analytics/benchmarks/{id}/plot.svg", Route::Benchmarks(B::Plot), Public, Doc::new("analytics", "A benchmark's plot (SVG)").param("id", first.clone()).svg().db()),
        op(M::GET, "/api/analytics/compare", Route::Benchmarks(B::Compare), Public, Doc::new("analytics", "Two benchmarks on the same inputs: fits and per-size speedups").query(&[("a", first), ("b", second)]).ok(200, s::benchmark_comparison()).db()),
    ]
}

/// The raft cluster's state (cluster/api.rs).
fn cluster_routes() -> Vec<Op> {
    use crate::cluster::api::ClusterRoute as C;
    use openapi::{Doc, schema as s};
    use salvo::http::Method as M;
    let op = |method, path, route, access, doc| Op { method, path, route, access, doc };
    vec![
        op(M::GET, "/api/cluster", Route::Cluster(C::Whole), Access::Public, Doc::new("cluster", "Every node as this node sees the cluster (peers asked with a short time-out)").ok(200, s::cluster())),
        op(M::GET, "/api/cluster/self", Route::Cluster(C::Own), Access::Public, Doc::new("cluster", "This node's raft state").ok(200, s::cluster_node())),
    ]
}

/// All routes, plus a catch-all so unknown paths answer JSON rather than salvo's page.
/// The Judge0-compatible routes sit at the root, as Judge0 clients expect them.
pub fn router(scheduler: Scheduler, spec: Arc<Spec>, caps: ApiLimits) -> Router {
    router_with(scheduler, spec, caps, Judge0Config::default())
}

/// `router` with the Judge0 API's configuration. Starts the callback sender when called
/// inside a tokio runtime (always, in the coordinator).
pub fn router_with(scheduler: Scheduler, spec: Arc<Spec>, caps: ApiLimits, config: Judge0Config) -> Router {
    router_with_store(scheduler, spec, caps, config, None)
}

/// `router_with` plus the store behind the catalog (`/api/algorithms`) and `/health`'s
/// database status.
pub fn router_with_store(
    scheduler: Scheduler,
    spec: Arc<Spec>,
    caps: ApiLimits,
    config: Judge0Config,
    store: Option<Store>,
) -> Router {
    router_with_options(scheduler, spec, caps, config, store, ApiOptions::default())
}

/// `router_with_store` with authentication, rate limits and CORS configured.
pub fn router_with_options(
    scheduler: Scheduler,
    spec: Arc<Spec>,
    caps: ApiLimits,
    config: Judge0Config,
    store: Option<Store>,
    options: ApiOptions,
) -> Router {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(judge0::run_callbacks(scheduler.clone(), spec.clone(), config.clone()));
    } else {
        tracing::warn!("no tokio runtime: Judge0 callbacks are off");
    }
    let judge0 = judge0::Judge0 { scheduler: scheduler.clone(), spec: spec.clone(), caps: caps.clone(), config };
    let ops = routes();
    let openapi = openapi::document(&ops, options.auth.allow_anonymous);
    let templates = ops.iter().map(|op| op.path).collect();
    let authn = Authn::new(options.auth.clone(), store.clone());
    let run_caps = options.run_caps(&caps);
    let dashboard = match (&store, &options.dashboard) {
        (Some(store), Some(setup)) => {
            Some(Arc::new(dashboard::Dashboard::new(store.clone(), spec.clone(), setup.clone(), run_caps.clone())))
        }
        _ => None,
    };
    let cluster = options
        .cluster
        .clone()
        .unwrap_or_else(|| crate::cluster::api::ClusterApi::new(scheduler.clone(), String::new(), Vec::new()));
    let api = Arc::new(Api {
        scheduler,
        spec,
        caps,
        judge0,
        store,
        catalog: CatalogLimits::default(),
        authn: authn.clone(),
        run_caps,
        dashboard,
        cluster,
        templates,
        openapi,
        list_cache: cache::ResponseCache::new(Duration::from_secs(1), 1024),
    });
    let metrics = api.scheduler.metrics().clone();
    let gate = gate::Gate { authn, limiter: options.limiter(), cors: options.cors.clone(), metrics: metrics.clone() };
    let mut router = Router::new().hoop(crate::metrics::HttpMetrics { metrics }).hoop(gate);
    // One router per path, in the table's order, with each of its methods.
    let mut paths: Vec<(&'static str, Vec<Op>)> = Vec::new();
    for op in ops {
        match paths.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, list)) => list.push(op),
            None => paths.push((op.path, vec![op])),
        }
    }
    for (path, list) in paths {
        let mut r = Router::with_path(path.trim_start_matches('/'));
        for op in list {
            let handler = Endpoint { api: api.clone(), route: op.route, access: op.access };
            r = match op.method {
                Method::POST => r.post(handler),
                Method::PUT => r.put(handler),
                Method::DELETE => r.delete(handler),
                Method::PATCH => r.patch(handler),
                _ => r.get(handler),
            };
        }
        router = router.push(r);
    }
    router.push(Router::with_path("{**rest}").goal(Endpoint { api, route: Route::Fallback, access: Access::Public }))
}

/// Serves `router` on an already bound listener until `shutdown` resolves, then lets
/// requests in flight finish for up to ten seconds. Binding is the caller's business so
/// it can bind port 0 and learn the address first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux. Without it, small
    // WebSocket frames (live steps) wait for the peer's delayed ACK: tens of ms.
    set_nodelay(&listener)?;
    let acceptor = TcpAcceptor::try_from(listener)?;
    let server = Server::new(acceptor);
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.await;
        handle.stop_graceful(Duration::from_secs(10));
    });
    server.try_serve(router).await
}

fn set_nodelay(listener: &tokio::net::TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

async fn health(api: &Api) -> Value {
    let agents = api.scheduler.agents_summary().await;
    let queue = api.scheduler.queue_summary().await;
    let (status, database) = match &api.store {
        None => ("ok", json!({ "status": "disabled" })),
        Some(store) => match store.ping().await {
            Ok(()) => ("ok", json!({ "status": "ok" })),
            // Judging goes on without the database; the catalog and history do not.
            Err(e) => ("degraded", json!({ "status": "unavailable", "message": e.to_string() })),
        },
    };
    json!({
        "status": status,
        "agents": { "connected": agents.connected, "slots": agents.slots, "freeSlots": agents.free_slots },
        "queue": { "queued": queue.queued, "running": queue.running },
        "database": database,
    })
}

async fn with_store(api: &Api, route: Route, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let store = api.store.as_ref().ok_or(ApiError::NoDatabase)?;
    let caller = caller.clone();
    match route {
        Route::ListAlgorithms => {
            // The same answer for every caller: cached briefly (see cache.rs).
            let key = req.uri().query().unwrap_or_default().to_owned();
            match api.list_cache.get(&key) {
                Ok(hit) => Ok((StatusCode::OK, Value::clone(&hit))),
                Err(generation) => {
                    let (status, body) = catalog::list(store, req, &api.catalog).await?;
                    api.list_cache.put(key, generation, Arc::new(body.clone()));
                    Ok((status, body))
                }
            }
        }
        Route::GetAlgorithm => catalog::get(store, req, &caller).await,
        Route::CreateAlgorithm => {
            let answer = catalog::create(store, &api.spec, req, &caller, &api.catalog).await;
            api.list_cache.invalidate();
            answer
        }
        Route::UpdateAlgorithm => {
            let answer = catalog::update(store, &api.spec, req, &caller, &api.catalog).await;
            api.list_cache.invalidate();
            answer
        }
        Route::DeleteAlgorithm => {
            let answer = catalog::delete(store, req, &caller).await;
            api.list_cache.invalidate();
            answer
        }
        Route::CreateUser => users::create(store, req, &caller).await,
        Route::ListUsers => users::list(store, &caller).await,
        Route::SetRole => users::set_role(&api.authn, store, req, &caller).await,
        Route::DeleteUser => users::delete(&api.authn, store, req, &caller).await,
        Route::ListTokens => users::tokens(store, req, &caller).await,
        Route::IssueToken => users::issue_token(store, req, &caller).await,
        Route::RevokeToken => users::revoke_token(store, req, &caller).await,
        Route::ImportProblem => problems::import(api, store, req, &caller).await,
        Route::ListProblems => problems::list(store).await,
        Route::GetProblem => problems::get(store, req).await,
        Route::SubmitToProblem => problems::submit(api, store, req).await,
        Route::RejudgeSubmission => problems::rejudge_submission(api, store, req, &caller).await,
        Route::RejudgeProblem => problems::rejudge_problem(api, store, req, &caller).await,
        _ => Err(ApiError::Internal("not a route of the store".into())),
    }
}

fn languages(spec: &Spec) -> Value {
    spec.languages.iter().map(|l| json!({ "id": l.id, "name": l.name })).collect()
}

async fn submit(api: &Api, req: &mut Request) -> Result<(StatusCode, Value), ApiError> {
    let limit = api.caps.max_body_bytes;
    let body = req.payload_with_max_size(limit).await.map_err(|e| match e {
        ParseError::PayloadTooLarge => ApiError::BodyTooLarge { limit },
        other => ApiError::BadBody(other.to_string()),
    })?;
    let submission = submit::parse(body, &api.spec, &api.caps)?;
    let id = api.scheduler.submit(submission).await.map_err(|e| match e {
        SubmitError::QueueFull(_) => ApiError::QueueFull(e.to_string()),
        SubmitError::Unavailable(_) => ApiError::NotCommitted(e.to_string()),
        SubmitError::Rejected(_) | SubmitError::Internal(_) => ApiError::Internal(e.to_string()),
    })?;
    Ok((StatusCode::CREATED, json!({ "id": id })))
}

async fn get_submission(api: &Api, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let raw = req.param::<String>("id").unwrap_or_default();
    let id: u64 = raw.parse().map_err(|_| ApiError::InvalidId(raw.clone()))?;
    // By default this node's state machine answers, which may be a heartbeat (~100 ms)
    // behind the leader on a follower; `consistent=true` waits for the leader's commit.
    let consistent = match req.query::<String>("consistent").as_deref() {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => return Err(ApiError::InvalidField(format!("consistent must be true or false, not {other:?}"))),
    };
    if consistent {
        api.scheduler.read_barrier().await.map_err(|e| ApiError::NotCommitted(e.to_string()))?;
    }
    let view = api.scheduler.get(id).await.ok_or(ApiError::SubmissionNotFound(id))?;
    // A problem's secret tests stay secret: what a program printed on them would leak
    // their inputs, and a checker's message their answers. Setters and admins see all.
    let secrets = if caller.role().is_some_and(|r| r >= crate::store::auth::Role::Setter) {
        view::Secrets::Shown
    } else {
        view::Secrets::Hidden
    };
    Ok((StatusCode::OK, view::submission(&view, secrets)))
}

async fn export_problem(api: &Api, req: &mut Request, caller: &Caller) -> Result<Vec<u8>, ApiError> {
    let store = api.store.as_ref().ok_or(ApiError::NoDatabase)?;
    problems::export(store, req, caller).await
}

/// Known paths with the wrong method get 405, anything else 404.
fn fallback(req: &Request, templates: &[&str]) -> ApiError {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let trimmed = path.trim_end_matches('/');
    let known = templates.iter().any(|t| matches_template(t, trimmed));
    if known { ApiError::MethodNotAllowed { method, path } } else { ApiError::RouteNotFound { method, path } }
}

/// `/api/algorithms/{slug}` matches `/api/algorithms/x`: a `{param}` is one non-empty segment.
fn matches_template(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return false;
                }
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}
