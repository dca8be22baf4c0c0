//! The HTTP API (salvo): health, languages, submissions. JSON in and out, camelCase.
//!
//! Every answer, errors included, is JSON; errors are `{"error": {"code", "message"}}`
//! (see `ApiError`). Serve with `serve`, or by hand:
//! `Server::new(TcpListener::new(addr).bind().await).serve(router)`.

mod analytics;
mod auth;
mod catalog;
#[cfg(test)]
mod catalog_tests;
mod dashboard;
#[cfg(test)]
mod dashboard_tests;
mod diff;
mod error;
mod execution;
pub mod judge0;
mod problems;
#[cfg(test)]
mod problems_tests;
mod stats;
mod submit;
mod testing;
mod users;
#[cfg(test)]
mod tests;
mod view;

pub use catalog::CatalogLimits;
pub use dashboard::{DashboardLimits, dashboard_router, dashboard_unavailable};
pub use error::ApiError;
pub use judge0::Judge0Config;
pub use view::SHOWN_OUTPUT_BYTES;

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use rootfs::Spec;
use salvo::conn::tcp::TcpAcceptor;
use salvo::http::{ParseError, StatusCode};
use salvo::writing::Json;
use salvo::{Depot, FlowCtrl, Handler, Request, Response, Router, Server, async_trait};
use serde_json::{Value, json};

use crate::scheduler::{Scheduler, SubmitError};
use crate::store::Store;

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
}

#[derive(Clone, Copy)]
enum Route {
    Health,
    Languages,
    Submit,
    GetSubmission,
    ListAlgorithms,
    CreateAlgorithm,
    GetAlgorithm,
    UpdateAlgorithm,
    DeleteAlgorithm,
    CreateUser,
    ImportProblem,
    ListProblems,
    GetProblem,
    ExportProblem,
    SubmitToProblem,
    RejudgeSubmission,
    RejudgeProblem,
    Judge0(judge0::Judge0Route),
    Fallback,
}

struct Endpoint {
    api: Arc<Api>,
    route: Route,
}

#[async_trait]
impl Handler for Endpoint {
    async fn handle(&self, req: &mut Request, _depot: &mut Depot, res: &mut Response, _ctrl: &mut FlowCtrl) {
        let api = &self.api;
        let answer = match self.route {
            Route::Health => Ok((StatusCode::OK, health(api).await)),
            Route::Languages => Ok((StatusCode::OK, languages(&api.spec))),
            Route::Submit => submit(api, req).await,
            Route::GetSubmission => get_submission(api, req).await,
            Route::ListAlgorithms
            | Route::CreateAlgorithm
            | Route::GetAlgorithm
            | Route::UpdateAlgorithm
            | Route::DeleteAlgorithm
            | Route::CreateUser
            | Route::ImportProblem
            | Route::ListProblems
            | Route::GetProblem
            | Route::SubmitToProblem
            | Route::RejudgeSubmission
            | Route::RejudgeProblem => with_store(api, self.route, req).await,
            Route::ExportProblem => {
                match export_problem(api, req).await {
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
            Route::Judge0(route) => {
                // Judge0's own error shapes, which its clients parse.
                match api.judge0.handle(route, req).await {
                    Ok((status, body)) => {
                        res.status_code(status);
                        res.render(Json(body));
                    }
                    Err(err) => err.write(res),
                }
                return;
            }
            Route::Fallback => Err(fallback(req)),
        };
        match answer {
            Ok((status, body)) => {
                res.status_code(status);
                res.render(Json(body));
            }
            Err(err) => err.write(res),
        }
    }
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
    use judge0::Judge0Route as J;
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(judge0::run_callbacks(scheduler.clone(), spec.clone(), config.clone()));
    } else {
        tracing::warn!("no tokio runtime: Judge0 callbacks are off");
    }
    let judge0 = judge0::Judge0 { scheduler: scheduler.clone(), spec: spec.clone(), caps: caps.clone(), config };
    let api = Arc::new(Api { scheduler, spec, caps, judge0, store, catalog: CatalogLimits::default() });
    let ep = |route| Endpoint { api: api.clone(), route };
    let j = |route| ep(Route::Judge0(route));
    let metrics = crate::metrics::MetricsEndpoint { scheduler: api.scheduler.clone() };
    Router::new()
        .hoop(crate::metrics::HttpMetrics { metrics: api.scheduler.metrics().clone() })
        .push(Router::with_path("metrics").get(metrics))
        .push(Router::with_path("health").get(ep(Route::Health)))
        .push(Router::with_path("api/languages").get(ep(Route::Languages)))
        .push(Router::with_path("api/submissions").post(ep(Route::Submit)))
        .push(Router::with_path("api/submissions/{id}").get(ep(Route::GetSubmission)))
        .push(Router::with_path("api/algorithms").get(ep(Route::ListAlgorithms)).post(ep(Route::CreateAlgorithm)))
        .push(
            Router::with_path("api/algorithms/{slug}")
                .get(ep(Route::GetAlgorithm))
                .put(ep(Route::UpdateAlgorithm))
                .delete(ep(Route::DeleteAlgorithm)),
        )
        .push(Router::with_path("api/users").post(ep(Route::CreateUser)))
        .push(analytics::routes(api.store.clone()))
        .push(Router::with_path("api/problems").get(ep(Route::ListProblems)).post(ep(Route::ImportProblem)))
        .push(Router::with_path("api/problems/{slug}").get(ep(Route::GetProblem)))
        .push(Router::with_path("api/problems/{slug}/package").get(ep(Route::ExportProblem)))
        .push(Router::with_path("api/problems/{slug}/submissions").post(ep(Route::SubmitToProblem)))
        .push(Router::with_path("api/problems/{slug}/rejudge").post(ep(Route::RejudgeProblem)))
        .push(Router::with_path("api/submissions/{id}/rejudge").post(ep(Route::RejudgeSubmission)))
        // The batch routes before `{token}`, which would match "batch" too.
        .push(Router::with_path("submissions/batch").get(j(J::ShowBatch)).post(j(J::CreateBatch)))
        .push(Router::with_path("submissions").get(j(J::List)).post(j(J::Create)))
        .push(Router::with_path("submissions/{token}").get(j(J::Show)))
        .push(Router::with_path("languages").get(j(J::Languages)))
        .push(Router::with_path("languages/{id}").get(j(J::Language)))
        .push(Router::with_path("statuses").get(j(J::Statuses)))
        .push(Router::with_path("about").get(j(J::About)))
        .push(Router::with_path("config_info").get(j(J::ConfigInfo)))
        .push(Router::with_path("system_info").get(j(J::SystemInfo)))
        .push(Router::with_path("workers").get(j(J::Workers)))
        .push(Router::with_path("{**rest}").goal(ep(Route::Fallback)))
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

async fn with_store(api: &Api, route: Route, req: &mut Request) -> Result<(StatusCode, Value), ApiError> {
    let store = api.store.as_ref().ok_or(ApiError::NoDatabase)?;
    let caller = auth::caller(store, req).await?;
    match route {
        Route::ListAlgorithms => catalog::list(store, req, &api.catalog).await,
        Route::GetAlgorithm => catalog::get(store, req, &caller).await,
        Route::CreateAlgorithm => catalog::create(store, &api.spec, req, &caller, &api.catalog).await,
        Route::UpdateAlgorithm => catalog::update(store, &api.spec, req, &caller, &api.catalog).await,
        Route::DeleteAlgorithm => catalog::delete(store, req, &caller).await,
        Route::CreateUser => users::create(store, req, &caller).await,
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

async fn get_submission(api: &Api, req: &mut Request) -> Result<(StatusCode, Value), ApiError> {
    let raw = req.param::<String>("id").unwrap_or_default();
    let id: u64 = raw.parse().map_err(|_| ApiError::InvalidId(raw.clone()))?;
    let view = api.scheduler.get(id).await.ok_or(ApiError::SubmissionNotFound(id))?;
    Ok((StatusCode::OK, view::submission(&view)))
}

async fn export_problem(api: &Api, req: &mut Request) -> Result<Vec<u8>, ApiError> {
    let store = api.store.as_ref().ok_or(ApiError::NoDatabase)?;
    let caller = auth::caller(store, req).await?;
    problems::export(store, req, &caller).await
}

/// Known paths with the wrong method get 405, anything else 404.
fn fallback(req: &Request) -> ApiError {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let trimmed = path.trim_end_matches('/');
    let one_more = |prefix: &str| trimmed.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
    let known = matches!(
        trimmed,
        "/health"
            | "/metrics"
            | "/api/languages"
            | "/api/submissions"
            | "/api/algorithms"
            | "/api/users"
            | "/api/problems"
            | "/submissions"
            | "/languages"
            | "/statuses"
            | "/about"
            | "/config_info"
            | "/system_info"
            | "/workers"
    ) || one_more("/api/submissions/")
        || one_more("/api/algorithms/")
        || one_more("/api/problems/")
        || one_more("/submissions/")
        || one_more("/languages/");
    if known { ApiError::MethodNotAllowed { method, path } } else { ApiError::RouteNotFound { method, path } }
}
