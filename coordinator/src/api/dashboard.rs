//! The dashboard's data routes: `/api/execution` (run once, history, code versions),
//! `/api/testing` (a whole test suite) and `/api/analytics` (statistics, leaderboards,
//! progress, achievements). Entries of the route table (`api::dashboard_routes`), so
//! they are documented, gated and access-checked like every route.
//!
//! Runs go through the scheduler to real agents like every other job; the handler waits
//! for the end (`Runner`) and answers with the outcome. Users need a credential of role
//! user or above to run code and to see their own data (runs are recorded per user);
//! statistics and leaderboards are public. Runs take the routes' fixed limits lowered to
//! the operator's caps, and count against the caller's MAX_CONCURRENT_EXECUTIONS.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use protocol::Limits;
use rootfs::Spec;
use salvo::Request;
use salvo::http::{ParseError, StatusCode};
use serde_json::Value;

use super::auth::{self, Caller};
use super::catalog::store_error;
use super::error::ApiError;
use super::limits::{Admission, RunCaps};
use super::{execution, stats, testing};
use crate::runner::{RunError, Runner};
use crate::store::Store;
use crate::store::auth::Principal;
use crate::store::catalog::Algorithm;
use crate::ws::catalog::{BuiltinCatalog, Catalog};

/// Caps of the dashboard routes.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardLimits {
    /// Whole request body; larger bodies are refused before parsing.
    pub max_body_bytes: usize,
    pub max_code_bytes: usize,
    /// The arguments of one run, as compact JSON.
    pub max_input_bytes: usize,
    pub max_note_bytes: usize,
    /// Limits of each run in the sandbox (the seed's 30 s and 512 MB).
    pub run: Limits,
    /// Limits of the compile check on save; only the compile step matters.
    pub check: Limits,
    /// How long a request waits for its run (queue included) before cancelling it.
    pub wait: Duration,
    pub max_per_page: i64,
}

impl Default for DashboardLimits {
    fn default() -> Self {
        DashboardLimits {
            max_body_bytes: 1 << 20,
            max_code_bytes: crate::ws::MAX_CODE_BYTES,
            max_input_bytes: 256 * 1024,
            max_note_bytes: 200,
            run: Limits { cpu_ms: 10_000, wall_ms: 30_000, memory_bytes: 512 << 20, max_processes: 64, output_bytes: 1 << 20 },
            check: Limits { cpu_ms: 5_000, wall_ms: 15_000, memory_bytes: 256 << 20, max_processes: 64, output_bytes: 64 << 10 },
            wait: Duration::from_secs(120),
            max_per_page: 100,
        }
    }
}

/// What the dashboard's run routes need beyond the store: the runner that waits for
/// runs (it must be the agent hub's live sink, or runs never see their returned values),
/// the projection stream of this coordinator run (runs are keyed by (epoch, id)), and
/// the routes' caps.
#[derive(Clone)]
pub struct DashboardSetup {
    pub runner: Arc<Runner>,
    pub epoch: i64,
    pub limits: DashboardLimits,
}

impl std::fmt::Debug for DashboardSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardSetup").field("epoch", &self.epoch).field("limits", &self.limits).finish_non_exhaustive()
    }
}

pub(super) struct Dashboard {
    pub store: Store,
    pub spec: Arc<Spec>,
    pub runner: Arc<Runner>,
    /// The projection stream of this coordinator run: runs are keyed by (epoch, id).
    pub epoch: i64,
    pub limits: DashboardLimits,
    /// MAX_EXECUTION_TIME and MAX_MEMORY_USAGE lower `limits.run` and `limits.check`.
    pub caps: RunCaps,
    /// Algorithms whose results compare as multisets (two_sum's pair of indices).
    pub unordered: HashSet<String>,
}

impl Dashboard {
    pub fn new(store: Store, spec: Arc<Spec>, setup: DashboardSetup, caps: RunCaps) -> Dashboard {
        let unordered = match BuiltinCatalog::with_shipped() {
            Ok(catalog) => crate::store::catalog::shipped::all()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| catalog.algorithm(&e.slug).is_some_and(|a| a.order_insensitive))
                .map(|e| e.slug)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "no order-insensitive algorithms known");
                HashSet::new()
            }
        };
        Dashboard { store, spec, runner: setup.runner, epoch: setup.epoch, limits: setup.limits, caps, unordered }
    }

    /// The limits of a run (`limits.run`), within the operator's caps.
    pub fn run_limits(&self) -> Limits {
        self.caps.clamp(self.limits.run)
    }

    /// The limits of a compile check on save, within the operator's caps.
    pub fn check_limits(&self) -> Limits {
        self.caps.clamp(self.limits.check)
    }
}

/// The dashboard's routes; their paths and access rules are in `api::routes`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DashRoute {
    Run,
    History,
    GetRun,
    ListVersions,
    SaveVersion,
    GetVersion,
    Diff,
    RunTests,
    Stats,
    Leaderboard,
    Progress,
    Achievements,
}

impl DashRoute {
    /// Routes that make the judge run code (a save runs the compile check).
    pub fn runs_code(self) -> bool {
        matches!(self, DashRoute::Run | DashRoute::SaveVersion | DashRoute::RunTests)
    }
}

/// Answers one dashboard route. `admission` holds the caller's place under
/// MAX_CONCURRENT_EXECUTIONS for the routes that run code; it passes to the run once the
/// judge accepts it.
pub(super) async fn handle(
    d: &Dashboard,
    route: DashRoute,
    req: &mut Request,
    caller: &Caller,
    admission: Option<Admission>,
) -> Result<(StatusCode, Value), ApiError> {
    match route {
        DashRoute::Run => execution::run(d, req, caller, admission).await,
        DashRoute::History => execution::history(d, req, caller).await,
        DashRoute::GetRun => execution::get_run(d, req, caller).await,
        DashRoute::ListVersions => execution::list_versions(d, req, caller).await,
        DashRoute::SaveVersion => execution::save_version(d, req, caller, admission).await,
        DashRoute::GetVersion => execution::get_version(d, req, caller).await,
        DashRoute::Diff => execution::diff(d, req, caller).await,
        DashRoute::RunTests => testing::run(d, req, caller, admission).await,
        DashRoute::Stats => stats::stats(d, req).await,
        DashRoute::Leaderboard => stats::leaderboard(d, req).await,
        DashRoute::Progress => stats::progress(d, req, caller).await,
        DashRoute::Achievements => stats::achievements(d, req, caller).await,
    }
}

// Helpers shared by the dashboard's modules.

pub(super) async fn read_body(req: &mut Request, limit: usize) -> Result<&[u8], ApiError> {
    req.payload_with_max_size(limit).await.map(|b| &b[..]).map_err(|e| match e {
        ParseError::PayloadTooLarge => ApiError::BodyTooLarge { limit },
        other => ApiError::BadBody(other.to_string()),
    })
}

fn raw_query(req: &Request, name: &str) -> Option<String> {
    req.queries().get(name).map(|v| v.to_owned())
}

pub(super) fn text_param(req: &Request, name: &str, max: usize) -> Result<Option<String>, ApiError> {
    match raw_query(req, name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() > max || v.contains('\0') => {
            Err(ApiError::InvalidField(format!("{name}: at most {max} bytes, no NUL characters")))
        }
        Some(v) => Ok(Some(v)),
    }
}

pub(super) fn int_param(req: &Request, name: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    let Some(raw) = raw_query(req, name) else { return Ok(default) };
    let v: i64 = raw.parse().map_err(|_| ApiError::InvalidField(format!("{name}: {raw:?} is not an integer")))?;
    if !(min..=max).contains(&v) {
        return Err(ApiError::InvalidField(format!("{name}: {v} must be within {min}..={max}")));
    }
    Ok(v)
}

/// A path parameter that must be a positive id.
pub(super) fn id_param(req: &Request, name: &str) -> Result<i64, ApiError> {
    let raw = req.param::<String>(name).unwrap_or_default();
    match raw.parse::<i64>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(ApiError::InvalidField(format!("{name}: {raw:?} is not a positive integer"))),
    }
}

/// The caller's principal: running code and personal data need a token.
pub(super) fn user(caller: &Caller) -> Result<&Principal, ApiError> {
    auth::require(caller, crate::store::auth::Role::User)
}

/// The algorithm behind a slug, 404 if there is none.
pub(super) async fn algorithm(store: &Store, slug: &str) -> Result<Algorithm, ApiError> {
    if slug.len() > 64 {
        return Err(ApiError::InvalidField("algorithm: at most 64 bytes".into()));
    }
    // PostgreSQL refuses text with NUL characters; no slug has one.
    if slug.contains('\0') {
        return Err(ApiError::AlgorithmNotFound(slug.escape_default().to_string()));
    }
    store.get_algorithm(slug).await.map_err(store_error)?.ok_or_else(|| ApiError::AlgorithmNotFound(slug.to_owned()))
}

/// A language that runs function-style (it has a harness), else 400 naming those that do.
pub(super) fn function_language(spec: &Spec, language: &str) -> Result<(), ApiError> {
    if spec.language(language).is_some() && rootfs::harness(language).is_some() {
        return Ok(());
    }
    let known = spec.languages.iter().filter(|l| rootfs::harness(&l.id).is_some()).map(|l| l.id.as_str()).collect::<Vec<_>>();
    Err(ApiError::UnknownLanguage { language: language.chars().take(32).collect(), known: known.join(", ") })
}

/// The function a run calls: the algorithm's entry point, except that one equal to the
/// slug is left to the harness's rule, which also finds its camelCase (`twoSum` in
/// JavaScript) as /ws does.
pub(super) fn entry_point(algorithm: &Algorithm) -> String {
    if algorithm.entry_point == algorithm.slug { String::new() } else { algorithm.entry_point.clone() }
}

pub(super) fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::Submit(crate::scheduler::SubmitError::QueueFull(n)) => {
            ApiError::QueueFull(format!("the queue is full ({n} submissions waiting); try again later"))
        }
        RunError::TimedOut { .. } | RunError::Stopped(_) => ApiError::RunTimedOut(e.to_string()),
        RunError::Submit(other) => ApiError::Internal(other.to_string()),
    }
}
