//! `/api/problems`: import a Kattis/ICPC package (a zip body), list, show, export, and
//! submit to a problem. Imports and exports need a setter's token (packages hold secret
//! data); listing, showing (samples only) and submitting are open like `/api/submissions`.

use protocol::{CheckerProgram, JobOptions, Limits, TestCase};
use rootfs::Spec;
use salvo::Request;
use salvo::http::{ParseError, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Caller, require};
use super::catalog::store_error;
use super::error::ApiError;
use super::{Api, ApiLimits};
use crate::contest::package::{self, PackageError};
use crate::contest::zip::{PackageCaps, read_zip, write_zip};
use crate::contest::{Problem, Scoring};
use crate::judge::NewSubmission;
use crate::scheduler::SubmitError;
use crate::store::Store;
use crate::store::auth::Role;

/// `POST /api/problems?slug=&replace=`: the body is the package as a zip.
pub(super) async fn import(api: &Api, store: &Store, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let who = require(caller, Role::Setter)?;
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/zip")) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a problem package is sent as Content-Type: application/zip, not {content_type:?}"
        )));
    }
    let slug_given = req.query::<String>("slug");
    let replace = req.query::<String>("replace").is_some_and(|r| r == "true" || r == "1");
    let limit = api.caps.max_body_bytes;
    let body = req.payload_with_max_size(limit).await.map_err(|e| match e {
        ParseError::PayloadTooLarge => ApiError::BodyTooLarge { limit },
        other => ApiError::BadBody(other.to_string()),
    })?;
    let body = body.to_vec();
    // Inflating and parsing is CPU work on attacker-sized input: off the async workers.
    let problem = tokio::task::spawn_blocking(move || -> Result<Problem, PackageError> {
        let unpacked = read_zip(&body, PackageCaps::default())?;
        let slug = slug_given.or(unpacked.root_name).unwrap_or_default();
        package::parse(&slug, &unpacked.files)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("package task: {e}")))?
    .map_err(package_error)?;
    check_languages(&problem, &api.spec)?;
    store.put_problem(&problem, replace, Some(who.user_id)).await.map_err(store_error)?;
    tracing::info!(problem = %problem.slug, tests = problem.tests.len(), "problem imported");
    Ok((StatusCode::CREATED, summary(&problem)))
}

fn package_error(e: PackageError) -> ApiError {
    match e {
        PackageError::TooLarge(m) => ApiError::PackageTooLarge(m),
        other => ApiError::BadPackage(other.to_string()),
    }
}

/// A validator in a language this judge lacks would make every submission IE.
fn check_languages(problem: &Problem, spec: &Spec) -> Result<(), ApiError> {
    if let Some(v) = &problem.validator
        && spec.language(&v.meta.language).is_none()
    {
        return Err(ApiError::BadPackage(format!(
            "problem {:?}: output_validator/{}: this judge has no language {:?}",
            problem.slug, v.meta.file_name, v.meta.language
        )));
    }
    Ok(())
}

pub(super) async fn list(store: &Store) -> Result<(StatusCode, Value), ApiError> {
    let problems = store.list_problems().await.map_err(store_error)?;
    let items: Vec<Value> =
        problems.iter().map(|p| json!({ "slug": p.slug, "name": p.name, "testCount": p.tests })).collect();
    Ok((StatusCode::OK, json!({ "problems": items })))
}

async fn load(store: &Store, req: &Request) -> Result<Problem, ApiError> {
    let slug = req.param::<String>("slug").unwrap_or_default();
    store.get_problem(&slug).await.map_err(store_error)?.ok_or(ApiError::ProblemNotFound(slug))
}

/// The problem with its samples (secret data stays secret).
pub(super) async fn get(store: &Store, req: &Request) -> Result<(StatusCode, Value), ApiError> {
    let problem = load(store, req).await?;
    let mut body = summary(&problem);
    let samples: Vec<Value> = problem
        .tests
        .iter()
        .filter(|t| t.sample)
        .map(|t| {
            json!({
                "name": t.name,
                "input": String::from_utf8_lossy(&t.input),
                "answer": String::from_utf8_lossy(&t.answer),
            })
        })
        .collect();
    body["samples"] = Value::Array(samples);
    Ok((StatusCode::OK, body))
}

/// The package of a problem as a zip.
pub(super) async fn export(store: &Store, req: &Request, caller: &Caller) -> Result<Vec<u8>, ApiError> {
    require(caller, Role::Setter)?;
    let problem = load(store, req).await?;
    tokio::task::spawn_blocking(move || write_zip(&problem.slug, &package::export(&problem)))
        .await
        .map_err(|e| ApiError::Internal(format!("export task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("cannot write the zip: {e}")))
}

fn summary(p: &Problem) -> Value {
    let m = &p.meta;
    json!({
        "slug": p.slug,
        "name": m.name,
        "timeLimitMs": m.time_limit_ms,
        "memoryMb": m.memory_mb,
        "outputMb": m.output_mb,
        "scoring": m.scoring.as_str(),
        "lazy": m.lazy,
        "interactive": m.interactive,
        "checker": match &p.validator {
            Some(v) => json!({ "kind": "program", "convention": v.meta.convention, "language": v.meta.language }),
            None => serde_json::to_value(&m.checker).unwrap_or(Value::Null),
        },
        "testCount": p.tests.len(),
        "groups": m.groups.iter().enumerate().map(|(i, g)| json!({
            "name": g.name,
            "score": g.score,
            "tests": p.tests.iter().filter(|t| t.group as usize == i).count(),
        })).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitRequest {
    language: String,
    source: String,
}

/// `POST /api/problems/{slug}/submissions {language, source}`.
pub(super) async fn submit(api: &Api, store: &Store, req: &mut Request) -> Result<(StatusCode, Value), ApiError> {
    let limit = api.caps.max_body_bytes;
    let body = req.payload_with_max_size(limit).await.map_err(|e| match e {
        ParseError::PayloadTooLarge => ApiError::BodyTooLarge { limit },
        other => ApiError::BadBody(other.to_string()),
    })?;
    let request: SubmitRequest = super::submit::decode_json(body)?;
    if api.spec.language(&request.language).is_none() {
        let known = api.spec.languages.iter().map(|l| l.id.as_str()).collect::<Vec<_>>().join(", ");
        return Err(ApiError::UnknownLanguage { language: request.language, known });
    }
    if request.source.is_empty() {
        return Err(ApiError::InvalidField("source: must not be empty".into()));
    }
    if request.source.len() > api.caps.max_source_bytes {
        return Err(ApiError::TooLarge {
            field: "source".into(),
            size: request.source.len(),
            limit: api.caps.max_source_bytes,
        });
    }
    let problem = load(store, req).await?;
    let submission = submission_for(&problem, request.language, request.source.into_bytes(), &api.caps);
    let id = api.scheduler.submit(submission).await.map_err(|e| match e {
        SubmitError::QueueFull(_) => ApiError::QueueFull(e.to_string()),
        SubmitError::Unavailable(_) => ApiError::NotCommitted(e.to_string()),
        SubmitError::Rejected(_) | SubmitError::Internal(_) => ApiError::Internal(e.to_string()),
    })?;
    Ok((StatusCode::CREATED, json!({ "id": id, "problem": problem.slug })))
}

/// The judge's view of a submission to `problem`: its tests, limits (the language's
/// time multiplier is applied by the agent, from its table), checker and grouping.
pub(super) fn submission_for(problem: &Problem, language: String, source: Vec<u8>, caps: &ApiLimits) -> NewSubmission {
    let m = &problem.meta;
    // The package's limits, lowered to the operator's caps (MAX_EXECUTION_TIME,
    // MAX_MEMORY_USAGE) like every fixed limit: the package cannot ask for more.
    let cpu_ms = m.time_limit_ms.min(*caps.cpu_ms.end());
    let limits = Limits {
        cpu_ms,
        wall_ms: cpu_ms.saturating_mul(3).saturating_add(1000).min(*caps.wall_ms.end()),
        memory_bytes: m.memory_mb.min(*caps.memory_mb.end()) << 20,
        max_processes: caps.max_processes,
        output_bytes: m.output_mb << 20,
    };
    let program = problem.validator.as_ref().map(|v| CheckerProgram {
        convention: v.meta.convention.to_protocol(),
        language: v.meta.language.clone(),
        source: v.source.clone(),
        args: v.meta.flags.clone(),
        limits: Limits {
            cpu_ms: m.validator_time_ms,
            wall_ms: m.validator_time_ms.saturating_mul(2),
            memory_bytes: m.validator_memory_mb << 20,
            max_processes: caps.max_processes,
            output_bytes: 1 << 20,
        },
    });
    let (checker, interactor) = match program {
        Some(p) if m.interactive => (protocol::Checker::Whitespace, Some(p)),
        Some(p) => (protocol::Checker::Program(p), None),
        None => (m.checker.to_protocol(), None),
    };
    // Pass-fail stops at the first failure anywhere; scored problems per group.
    let groups = match m.scoring {
        Scoring::PassFail => Vec::new(),
        Scoring::Sum | Scoring::Min => problem.tests.iter().map(|t| t.group).collect(),
    };
    NewSubmission {
        language,
        source,
        tests: problem
            .tests
            .iter()
            .map(|t| TestCase { input: t.input.clone(), expected_output: Some(t.answer.clone()) })
            .collect(),
        limits,
        options: JobOptions { checker, groups, lazy: m.lazy, interactor, ..JobOptions::default() },
        judge0: None,
        problem: Some(problem.reference()),
    }
}

/// `POST /api/submissions/{id}/rejudge`: judges a problem submission again against the
/// problem as it is now; the earlier verdicts stay in its `history`.
pub(super) async fn rejudge_submission(api: &Api, store: &Store, req: &Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    require(caller, Role::Setter)?;
    let raw = req.param::<String>("id").unwrap_or_default();
    let id: u64 = raw.parse().map_err(|_| ApiError::InvalidId(raw.clone()))?;
    let view = api.scheduler.get(id).await.ok_or(ApiError::SubmissionNotFound(id))?;
    let slug = view
        .problem
        .as_ref()
        .map(|p| p.slug.clone())
        .ok_or_else(|| ApiError::Conflict(format!("submission {id} is not a submission to a problem")))?;
    let problem = store.get_problem(&slug).await.map_err(store_error)?.ok_or(ApiError::ProblemNotFound(slug))?;
    rejudge_one(api, &problem, id).await?;
    Ok((StatusCode::ACCEPTED, json!({ "rejudged": [id] })))
}

/// `POST /api/problems/{slug}/rejudge`: every finished submission to the problem.
pub(super) async fn rejudge_problem(api: &Api, store: &Store, req: &Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    require(caller, Role::Setter)?;
    let problem = load(store, req).await?;
    let mut rejudged = Vec::new();
    for id in api.scheduler.done_for_problem(&problem.slug).await {
        // One finished meanwhile by someone else's rejudge is simply skipped.
        if rejudge_one(api, &problem, id).await.is_ok() {
            rejudged.push(id);
        }
    }
    Ok((StatusCode::ACCEPTED, json!({ "rejudged": rejudged })))
}

async fn rejudge_one(api: &Api, problem: &Problem, id: u64) -> Result<(), ApiError> {
    // The language and source stay; tests, limits and checker are the problem's now.
    let fresh = submission_for(problem, String::new(), Vec::new(), &api.caps);
    let rejudge = crate::judge::Rejudge {
        tests: fresh.tests,
        limits: fresh.limits,
        options: fresh.options,
        problem: fresh.problem,
    };
    api.scheduler.rejudge(id, rejudge).await.map_err(|e| match e {
        SubmitError::Rejected(r) => ApiError::Conflict(r.to_string()),
        other => ApiError::Internal(other.to_string()),
    })
}
