//! `/api/execution`: run a function once on given arguments (the seed's
//! executeAlgorithm), the caller's run history, and code management — saved versions
//! (checked to compile before they are kept), listing, fetching and a line diff.

use protocol::{FunctionSpec, Verdict};
use salvo::Request;
use salvo::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::catalog::store_error;
use super::dashboard::{self, Dashboard};
use super::error::ApiError;
use super::limits::{Admission, Ticket};
use super::submit::decode_json;
use crate::judge::NewSubmission;
use crate::runner::Finished;
use crate::store::auth::Role;
use crate::store::dashboard::{CodeVersion, NewRun, RunKind, RunOutcome, RunRow};
use crate::store::projection::status_of;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunRequest {
    algorithm: String,
    language: String,
    code: String,
    /// The function's arguments: an object by parameter name, or an array in order.
    input: Value,
    #[serde(default)]
    entry_point: Option<String>,
}

fn check_code(d: &Dashboard, code: &str) -> Result<(), ApiError> {
    if code.trim().is_empty() {
        return Err(ApiError::InvalidField("code: must not be empty".into()));
    }
    if code.len() > d.limits.max_code_bytes {
        return Err(ApiError::TooLarge { field: "code".into(), size: code.len(), limit: d.limits.max_code_bytes });
    }
    if code.contains('\0') {
        return Err(ApiError::InvalidField("code: must not contain NUL characters".into()));
    }
    Ok(())
}

fn check_entry_point(name: &str) -> Result<(), ApiError> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(()) } else { Err(ApiError::InvalidField(format!("entryPoint: {name:?} is not an identifier"))) }
}

pub(super) async fn run(
    d: &Dashboard,
    req: &mut Request,
    caller: &Caller,
    admission: Option<Admission>,
) -> Result<(StatusCode, Value), ApiError> {
    let who = dashboard::user(caller)?;
    let body = dashboard::read_body(req, d.limits.max_body_bytes).await?;
    let request: RunRequest = decode_json(body)?;
    dashboard::function_language(&d.spec, &request.language)?;
    check_code(d, &request.code)?;
    if let Some(e) = &request.entry_point {
        check_entry_point(e)?;
    }
    let input = request.input.to_string();
    if input.len() > d.limits.max_input_bytes {
        return Err(ApiError::TooLarge { field: "input".into(), size: input.len(), limit: d.limits.max_input_bytes });
    }
    let algorithm = dashboard::algorithm(&d.store, &request.algorithm).await?;
    let submission = NewSubmission {
        language: request.language.clone(),
        source: request.code.clone().into_bytes(),
        tests: vec![protocol::TestCase { input: input.into_bytes(), expected_output: None }],
        limits: d.run_limits(),
        options: Default::default(),
        judge0: None,
        problem: None,
    };
    let function = FunctionSpec {
        entry_point: request.entry_point.clone().unwrap_or_else(|| dashboard::entry_point(&algorithm)),
        algorithm_name: algorithm.slug.clone(),
        unordered: false,
        // Live steps are for /ws watchers; a REST caller gets the value and the counts.
        max_steps: 0,
        ..FunctionSpec::default()
    };
    let (run_id, finished) = start_and_wait(
        d,
        submission,
        function,
        admission,
        NewRun {
            epoch: d.epoch,
            submission_id: 0,
            user_id: who.user_id,
            algorithm_id: algorithm.id,
            language: &request.language,
            kind: RunKind::Execute,
            source: request.code.as_bytes(),
            code_version_id: None,
            input: Some(&request.input),
            total: 1,
        },
    )
    .await?;
    let view = &finished.view;
    let test = view.tests.first().map(|t| &t.result);
    let ret = finished.returns.get(&0);
    let value = ret.and_then(|r| serde_json::from_slice::<Value>(&r.value).ok()).unwrap_or(Value::Null);
    let verdict = view.verdict.unwrap_or(Verdict::IE);
    let error = error_text(&finished, 0);
    let (cpu_us, wall_us, peak) = test.map_or((0, 0, 0), |t| (t.cpu_time_us, t.wall_time_us, t.peak_memory_bytes));
    let outcome = RunOutcome {
        status: status_of(view.verdict),
        verdict: view.verdict.map(|v| v.as_str()),
        result: value.clone(),
        error: error.clone(),
        step_count: ret.map_or(0, |r| i64::try_from(r.steps).unwrap_or(i64::MAX)),
        passed: i32::from(verdict == Verdict::AC),
        cpu_us: i64::try_from(cpu_us).unwrap_or(i64::MAX),
        wall_us: i64::try_from(wall_us).unwrap_or(i64::MAX),
        peak_bytes: i64::try_from(peak).unwrap_or(i64::MAX),
    };
    d.store.finish_run(run_id, &outcome).await.map_err(store_error)?;
    Ok((
        StatusCode::OK,
        json!({
            "executionId": run_id,
            "submissionId": view.id,
            "algorithm": algorithm.slug,
            "language": request.language,
            "status": outcome.status,
            "verdict": verdict.as_str(),
            "success": verdict == Verdict::AC,
            "result": value,
            "error": error,
            "executionTime": ret.map_or(wall_us as f64 / 1000.0, |r| r.function_time_us as f64 / 1000.0),
            "cpuTime": cpu_us as f64 / 1000.0,
            "wallTime": wall_us as f64 / 1000.0,
            "memoryUsage": peak as f64 / (1024.0 * 1024.0),
            "cpuUsage": if wall_us > 0 { (cpu_us as f64 / wall_us as f64 * 100.0).min(100.0) } else { 0.0 },
            "output": test.map(|t| String::from_utf8_lossy(&t.stdout).into_owned()).unwrap_or_default(),
            "stepCount": outcome.step_count,
        }),
    ))
}

/// Why test `index` failed, in words (None when it passed).
pub(super) fn error_text(finished: &Finished, index: u32) -> Option<String> {
    let view = &finished.view;
    if view.verdict == Some(Verdict::CE) {
        return Some(if view.compile_output.is_empty() { view.message.clone() } else { view.compile_output.clone() });
    }
    let test = view.tests.iter().find(|t| t.result.index == index).map(|t| &t.result);
    match test {
        Some(t) if t.verdict == Verdict::AC => None,
        Some(t) => {
            let raised = finished.returns.get(&index).map(|r| r.error.as_str()).filter(|e| !e.is_empty());
            Some(raised.map(str::to_owned).unwrap_or_else(|| if t.message.is_empty() { t.verdict.as_str().to_owned() } else { t.message.clone() }))
        }
        None if view.verdict == Some(Verdict::AC) => None,
        None => Some(if view.message.is_empty() { "the test did not run".to_owned() } else { view.message.clone() }),
    }
}

/// Queues the run, records it, waits for its end. The row is written after the run is
/// accepted (its key is the submission id); a run that fails to be recorded is cancelled.
/// The caller's place (`admission`) goes to the run once it has an id, so it counts
/// until the run ends even if the client hangs up.
pub(super) async fn start_and_wait(
    d: &Dashboard,
    submission: NewSubmission,
    function: FunctionSpec,
    admission: Option<Admission>,
    mut record: NewRun<'_>,
) -> Result<(i64, Finished), ApiError> {
    let runner = d.runner.clone();
    let wait = d.limits.wait;
    // The run and its row: the runner waits in its own task so the row can be written
    // while the run is queued, and a client that hangs up does not leave a run nobody
    // records.
    let (id_tx, id_rx) = tokio::sync::oneshot::channel();
    let waiting = tokio::spawn(async move {
        runner.run_function(submission, function, wait, move |id| {
            if let Some(a) = admission {
                a.record(vec![Ticket::Id(id)]);
            }
            let _ = id_tx.send(id);
        })
        .await
    });
    let Ok(id) = id_rx.await else {
        // Refused before it had an id (queue full): the task's error says why.
        return match waiting.await {
            Ok(Err(e)) => Err(dashboard::run_error(e)),
            Ok(Ok(_)) => Err(ApiError::Internal("a run finished without an id".into())),
            Err(e) => Err(ApiError::Internal(format!("the run's task failed: {e}"))),
        };
    };
    record.submission_id = id;
    let run_id = match d.store.start_run(&record).await {
        Ok(run_id) => run_id,
        Err(e) => {
            d.runner.scheduler().cancel(id, "its run could not be recorded").await;
            return Err(store_error(e));
        }
    };
    let error = match waiting.await {
        Ok(Ok(finished)) => return Ok((run_id, finished)),
        Ok(Err(e)) => dashboard::run_error(e),
        Err(e) => ApiError::Internal(format!("the run's task failed: {e}")),
    };
    // The run was cancelled: its row says so rather than stay pending forever.
    let outcome = RunOutcome {
        status: status_of(Some(Verdict::IE)),
        verdict: Some(Verdict::IE.as_str()),
        result: Value::Null,
        error: Some(error.to_string()),
        step_count: 0,
        passed: 0,
        cpu_us: 0,
        wall_us: 0,
        peak_bytes: 0,
    };
    if let Err(e) = d.store.finish_run(run_id, &outcome).await {
        tracing::warn!(run = run_id, error = %e, "could not record a cancelled run");
    }
    Err(error)
}

pub(super) async fn history(d: &Dashboard, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let who = dashboard::user(caller)?;
    let page = dashboard::int_param(req, "page", 1, 1, 1_000_000)?;
    let per_page = dashboard::int_param(req, "perPage", 20, 1, d.limits.max_per_page)?;
    let algorithm = match dashboard::text_param(req, "algorithm", 64)? {
        Some(slug) => Some(dashboard::algorithm(&d.store, &slug).await?.id),
        None => None,
    };
    let (rows, total) =
        d.store.run_history(who.user_id, algorithm, (page - 1) * per_page, per_page).await.map_err(store_error)?;
    Ok((
        StatusCode::OK,
        json!({
            "executions": rows.iter().map(history_row).collect::<Vec<_>>(),
            "total": total,
            "page": page,
            "perPage": per_page,
        }),
    ))
}

/// One run of the caller's (any run for an admin), with its per-test results.
pub(super) async fn get_run(d: &Dashboard, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let who = dashboard::user(caller)?;
    let id = dashboard::id_param(req, "id")?;
    match d.store.run(id).await.map_err(store_error)? {
        Some((owner, row)) if owner == Some(who.user_id) || who.role >= Role::Admin => Ok((StatusCode::OK, history_row(&row))),
        _ => Err(ApiError::RunNotFound(id)),
    }
}

fn ms(us: Option<i64>) -> Value {
    us.map_or(Value::Null, |us| json!(us as f64 / 1000.0))
}

fn history_row(r: &RunRow) -> Value {
    json!({
        "id": r.id,
        "submissionId": r.submission_id,
        "algorithm": r.algorithm,
        "language": r.language,
        "kind": r.kind,
        "status": r.status,
        "verdict": r.verdict,
        "input": r.input,
        "output": r.result,
        "error": r.error,
        "stepCount": r.step_count,
        "passed": r.passed,
        "total": r.total,
        "cpuTime": ms(r.cpu_us),
        "wallTime": ms(r.wall_us),
        "memoryUsage": r.peak_bytes.map(|b| b as f64 / (1024.0 * 1024.0)),
        "codeVersionId": r.code_version_id,
        "createdAt": r.created_at,
        "finishedAt": r.finished_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SaveRequest {
    algorithm: String,
    language: String,
    code: String,
    #[serde(default)]
    note: Option<String>,
}

/// Saves a new version after checking it: size, a function-style language, and that it
/// compiles in the sandbox (the language's compile step, e.g. Python's parser or
/// `node --check`). A version that does not compile is refused with the compiler's
/// message and not saved.
pub(super) async fn save_version(
    d: &Dashboard,
    req: &mut Request,
    caller: &Caller,
    admission: Option<Admission>,
) -> Result<(StatusCode, Value), ApiError> {
    let who = dashboard::user(caller)?;
    let body = dashboard::read_body(req, d.limits.max_body_bytes).await?;
    let request: SaveRequest = decode_json(body)?;
    dashboard::function_language(&d.spec, &request.language)?;
    check_code(d, &request.code)?;
    let note = request.note.unwrap_or_default();
    if note.len() > d.limits.max_note_bytes || note.contains('\0') {
        return Err(ApiError::InvalidField(format!("note: at most {} bytes, no NUL characters", d.limits.max_note_bytes)));
    }
    let algorithm = dashboard::algorithm(&d.store, &request.algorithm).await?;
    let check = NewSubmission {
        language: request.language.clone(),
        source: request.code.clone().into_bytes(),
        // One run with no input: the compile step is what counts; running the module's
        // top level tells nothing about the function, so its verdict is only reported.
        tests: vec![protocol::TestCase { input: Vec::new(), expected_output: None }],
        limits: d.check_limits(),
        options: Default::default(),
        judge0: None,
        problem: None,
    };
    let view = d
        .runner
        .run_program(check, d.limits.wait, move |id| {
            if let Some(a) = admission {
                a.record(vec![Ticket::Id(id)]);
            }
        })
        .await
        .map_err(dashboard::run_error)?;
    match view.verdict {
        Some(Verdict::CE) => {
            let output = if view.compile_output.is_empty() { view.message.clone() } else { view.compile_output.clone() };
            return Err(ApiError::CompileFailed(output));
        }
        Some(Verdict::IE) | None => {
            return Err(ApiError::RunUnavailable(format!("the compile check could not run: {}", view.message)));
        }
        Some(_) => {}
    }
    let saved = d
        .store
        .save_version(who.user_id, algorithm.id, &request.language, request.code.as_bytes(), &note)
        .await
        .map_err(store_error)?;
    let mut answer = version_json(&saved);
    answer["check"] = json!({ "compiles": true, "verdict": view.verdict.map(|v| v.as_str()) });
    Ok((StatusCode::CREATED, answer))
}

fn version_json(v: &CodeVersion) -> Value {
    let mut out = json!({
        "id": v.id,
        "userId": v.user_id,
        "algorithm": v.algorithm,
        "language": v.language,
        "version": v.version,
        "note": v.note,
        "sha256": crate::store::hex(&v.sha256),
        "size": v.size,
        "createdAt": v.created_at,
    });
    if let Some(source) = &v.source {
        out["code"] = json!(source);
    }
    out
}

pub(super) async fn list_versions(d: &Dashboard, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let who = dashboard::user(caller)?;
    let algorithm = match dashboard::text_param(req, "algorithm", 64)? {
        Some(slug) => Some(dashboard::algorithm(&d.store, &slug).await?.id),
        None => None,
    };
    let language = dashboard::text_param(req, "language", 32)?;
    if let Some(l) = &language {
        dashboard::function_language(&d.spec, l)?;
    }
    let list = d.store.list_versions(who.user_id, algorithm, language.as_deref()).await.map_err(store_error)?;
    Ok((StatusCode::OK, json!({ "versions": list.iter().map(version_json).collect::<Vec<_>>() })))
}

/// A version the caller may see: their own, or any for an admin. Others' versions are
/// "not found", so ids do not reveal what others saved.
async fn visible_version(d: &Dashboard, caller: &Caller, id: i64) -> Result<CodeVersion, ApiError> {
    let who = dashboard::user(caller)?;
    match d.store.code_version(id).await.map_err(store_error)? {
        Some(v) if v.user_id == who.user_id || who.role >= Role::Admin => Ok(v),
        _ => Err(ApiError::VersionNotFound(id)),
    }
}

pub(super) async fn get_version(d: &Dashboard, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    dashboard::user(caller)?;
    let id = dashboard::id_param(req, "id")?;
    let v = visible_version(d, caller, id).await?;
    Ok((StatusCode::OK, version_json(&v)))
}

pub(super) async fn diff(d: &Dashboard, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    dashboard::user(caller)?;
    let (from_id, to_id) = (dashboard::id_param(req, "id")?, dashboard::id_param(req, "other")?);
    let from = visible_version(d, caller, from_id).await?;
    let to = visible_version(d, caller, to_id).await?;
    let old = from.source.as_deref().unwrap_or_default();
    let new = to.source.as_deref().unwrap_or_default();
    let lines = super::diff::lines(old, new);
    let added = lines.iter().filter(|l| l.op == super::diff::Op::Add).count();
    let removed = lines.iter().filter(|l| l.op == super::diff::Op::Remove).count();
    Ok((
        StatusCode::OK,
        json!({
            "from": { "id": from.id, "version": from.version, "algorithm": from.algorithm, "language": from.language },
            "to": { "id": to.id, "version": to.version, "algorithm": to.algorithm, "language": to.language },
            "added": added,
            "removed": removed,
            "lines": lines.iter().map(|l| json!({
                "op": l.op.as_str(),
                "oldLine": l.old_line,
                "newLine": l.new_line,
                "text": l.text,
            })).collect::<Vec<_>>(),
            "unified": super::diff::unified(&lines),
        }),
    ))
}
