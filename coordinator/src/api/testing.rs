//! `/api/testing`: a solution against its algorithm's whole test suite, in one
//! function-style job (compiled once, each test in a fresh sandbox), with per-test results.
//!
//! Everyone sees whether each test passed and what it cost; the arguments, the expected
//! and the returned values of tests that are not samples only setters and admins see, as
//! in the catalog, so hidden tests stay hidden.

use protocol::{FunctionSpec, Verdict};
use salvo::Request;
use salvo::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::catalog::store_error;
use super::dashboard::{self, Dashboard};
use super::error::ApiError;
use super::execution::{error_text, start_and_wait};
use super::limits::Admission;
use super::submit::decode_json;
use crate::judge::NewSubmission;
use crate::store::auth::Role;
use crate::store::catalog::json_bytes;
use crate::store::dashboard::{NewRun, RunKind, RunOutcome};
use crate::store::projection::status_of;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestRequest {
    algorithm: String,
    /// The code and its language, or a saved version of the caller's.
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    version_id: Option<i64>,
}

/// The suite as the judge state keeps a problem: one pass-fail group, which tests are
/// samples. Named `algorithm:<slug>` so that no problem's rejudge takes it for its own.
fn suite_ref(algorithm: &crate::store::catalog::Algorithm) -> crate::contest::ProblemRef {
    use crate::contest::{GroupRef, ProblemRef, Scoring, TestRef};
    ProblemRef {
        slug: format!("algorithm:{}", algorithm.slug),
        scoring: Scoring::PassFail,
        groups: vec![GroupRef { name: "tests".into(), score: 1.0 }],
        tests: algorithm
            .test_cases
            .iter()
            .enumerate()
            .map(|(i, t)| TestRef { name: format!("test {}", i + 1), group: 0, sample: t.sample })
            .collect(),
    }
}

pub(super) async fn run(
    d: &Dashboard,
    req: &mut Request,
    caller: &Caller,
    admission: Option<Admission>,
) -> Result<(StatusCode, Value), ApiError> {
    let who = dashboard::runner(caller);
    let body = dashboard::read_body(req, d.limits.max_body_bytes).await?;
    let request: TestRequest = decode_json(body)?;
    let (language, code, version) = match (request.version_id, request.language, request.code) {
        (Some(id), None, None) => {
            let v = d.store.code_version(id).await.map_err(store_error)?;
            match v {
                Some(v) if who.is_some_and(|w| v.user_id == w.user_id || w.role >= Role::Admin) => {
                    if v.algorithm != request.algorithm {
                        return Err(ApiError::InvalidField(format!(
                            "versionId: version {id} is a solution of {:?}, not {:?}",
                            v.algorithm, request.algorithm
                        )));
                    }
                    (v.language, v.source.unwrap_or_default(), Some(id))
                }
                _ => return Err(ApiError::VersionNotFound(id)),
            }
        }
        (None, Some(language), Some(code)) => (language, code, None),
        (Some(_), _, _) => {
            return Err(ApiError::InvalidField("give either versionId or language and code, not both".into()));
        }
        (None, _, _) => return Err(ApiError::MissingField("language and code (or versionId) are required".into())),
    };
    dashboard::function_language(&d.spec, &language)?;
    if code.trim().is_empty() || code.len() > d.limits.max_code_bytes || code.contains('\0') {
        return Err(ApiError::InvalidField(format!(
            "code: 1 to {} bytes, no NUL characters (it is {} bytes)",
            d.limits.max_code_bytes,
            code.len()
        )));
    }
    let algorithm = dashboard::algorithm(&d.store, &request.algorithm).await?;
    if algorithm.test_cases.is_empty() {
        return Err(ApiError::NoTests);
    }
    let total = algorithm.test_cases.len();
    let submission = NewSubmission {
        language: language.clone(),
        source: code.clone().into_bytes(),
        tests: algorithm
            .test_cases
            .iter()
            .map(|t| protocol::TestCase { input: json_bytes(&t.input), expected_output: Some(json_bytes(&t.expected)) })
            .collect(),
        limits: d.run_limits(),
        options: Default::default(),
        judge0: None,
        // Which tests are samples, so that the submission's own route
        // (`/api/submissions/{id}`) hides the others as it hides a problem's secret tests.
        problem: Some(suite_ref(&algorithm)),
    };
    let function = FunctionSpec {
        entry_point: dashboard::entry_point(&algorithm),
        algorithm_name: algorithm.slug.clone(),
        unordered: d.unordered.contains(&algorithm.slug),
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
            user_id: who.map(|p| p.user_id),
            algorithm_id: algorithm.id,
            language: &language,
            kind: RunKind::Test,
            source: code.as_bytes(),
            code_version_id: version,
            input: None,
            total: i32::try_from(total).unwrap_or(i32::MAX),
        },
    )
    .await?;
    let view = &finished.view;
    let sees_hidden = who.is_some_and(|w| w.role >= Role::Setter);
    let mut results = Vec::with_capacity(total);
    let (mut cpu_us, mut wall_us, mut peak) = (0u64, 0u64, 0u64);
    for (i, case) in algorithm.test_cases.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let result = view.tests.iter().find(|t| t.result.index == index).map(|t| &t.result);
        let ret = finished.returns.get(&index);
        let passed = result.is_some_and(|r| r.verdict == Verdict::AC);
        if let Some(r) = result {
            cpu_us = cpu_us.saturating_add(r.cpu_time_us);
            wall_us = wall_us.saturating_add(r.wall_time_us);
            peak = peak.max(r.peak_memory_bytes);
        }
        let mut entry = json!({
            "testNumber": i + 1,
            "sample": case.sample,
            "passed": passed,
            // A test that never ran (after a compile error) has no verdict of its own.
            "verdict": result.map(|r| r.verdict.as_str()),
            "executionTime": ret.map(|r| r.function_time_us as f64 / 1000.0),
            "cpuTime": result.map(|r| r.cpu_time_us as f64 / 1000.0),
            "wallTime": result.map(|r| r.wall_time_us as f64 / 1000.0),
            "memoryUsage": result.map(|r| r.peak_memory_bytes as f64 / (1024.0 * 1024.0)),
            // A hidden test's error would quote its answer ("expected ...") or what the
            // code printed or raised about its arguments: only the verdict is shown.
            "error": if case.sample || sees_hidden {
                error_text(&finished, index)
            } else {
                result.filter(|r| r.verdict != Verdict::AC).map(|r| format!("{} on a hidden test", r.verdict.as_str()))
            },
        });
        if case.sample || sees_hidden {
            entry["input"] = case.input.clone();
            entry["expected"] = case.expected.clone();
            entry["actual"] = ret.and_then(|r| serde_json::from_slice::<Value>(&r.value).ok()).unwrap_or(Value::Null);
        }
        results.push(entry);
    }
    let passed = results.iter().filter(|r| r["passed"] == Value::Bool(true)).count();
    let verdict = view.verdict.unwrap_or(Verdict::IE);
    let outcome = RunOutcome {
        status: status_of(view.verdict),
        verdict: view.verdict.map(|v| v.as_str()),
        result: Value::Array(results.clone()),
        error: (verdict != Verdict::AC).then(|| match &view.problem {
            _ if verdict == Verdict::CE && !view.compile_output.is_empty() => view.compile_output.clone(),
            Some(suite) if !sees_hidden => super::view::public_message(suite, &view.message),
            _ => view.message.clone(),
        }),
        step_count: 0,
        passed: i32::try_from(passed).unwrap_or(i32::MAX),
        cpu_us: i64::try_from(cpu_us).unwrap_or(i64::MAX),
        wall_us: i64::try_from(wall_us).unwrap_or(i64::MAX),
        peak_bytes: i64::try_from(peak).unwrap_or(i64::MAX),
    };
    let unlocked = d.store.finish_run(run_id, &outcome).await.map_err(store_error)?;
    Ok((
        StatusCode::OK,
        json!({
            "executionId": run_id,
            "submissionId": view.id,
            "algorithm": algorithm.slug,
            "language": language,
            "codeVersionId": version,
            "status": outcome.status,
            "verdict": verdict.as_str(),
            "success": verdict == Verdict::AC && passed == total,
            "passed": passed,
            "failed": total - passed,
            "total": total,
            "cpuTime": cpu_us as f64 / 1000.0,
            "wallTime": wall_us as f64 / 1000.0,
            "memoryUsage": peak as f64 / (1024.0 * 1024.0),
            "error": outcome.error,
            "results": results,
            "newAchievements": unlocked,
        }),
    ))
}
