//! `POST /api/submissions`: from request bytes to a validated `NewSubmission`.
//!
//! Everything is checked here, before the scheduler sees anything, so a refused request
//! leaves no trace in the judge state.

use protocol::{Limits, TestCase};
use rootfs::Spec;
use serde::Deserialize;
use serde_json::error::Category;

use super::ApiLimits;
use super::error::ApiError;
use crate::judge::NewSubmission;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubmitRequest {
    language: String,
    source: String,
    tests: Vec<TestIn>,
    #[serde(default)]
    limits: Option<LimitsIn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestIn {
    input: String,
    expected_output: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LimitsIn {
    cpu_ms: Option<u64>,
    wall_ms: Option<u64>,
    memory_mb: Option<u64>,
}

pub fn parse(body: &[u8], spec: &Spec, caps: &ApiLimits) -> Result<NewSubmission, ApiError> {
    let request = decode(body)?;
    validate(request, spec, caps)
}

fn decode(body: &[u8]) -> Result<SubmitRequest, ApiError> {
    decode_json(body)
}

/// Strict JSON of one `T`, errors naming the offending field (also the catalog's bodies).
pub(super) fn decode_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let request: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        json_error(e.into_inner(), &path)
    })?;
    // Trailing garbage after the object is as malformed as a missing brace.
    de.end().map_err(|e| json_error(e, "."))?;
    Ok(request)
}

/// serde reports the kind of a data error only in its message, hence the prefixes.
fn json_error(e: serde_json::Error, path: &str) -> ApiError {
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedJson(e.to_string()),
        Category::Data => {
            let inner = e.to_string();
            // Strip serde_json's " at line 1 column 7": the path says where, more usefully.
            let detail = inner.rsplit_once(" at line ").map_or(inner.as_str(), |(d, _)| d);
            let message = if path == "." { detail.to_owned() } else { format!("{path}: {detail}") };
            if detail.starts_with("missing field") {
                ApiError::MissingField(message)
            } else if detail.starts_with("unknown field") {
                ApiError::UnknownField(message)
            } else {
                ApiError::InvalidField(message)
            }
        }
    }
}

fn validate(request: SubmitRequest, spec: &Spec, caps: &ApiLimits) -> Result<NewSubmission, ApiError> {
    if spec.language(&request.language).is_none() {
        let known = spec.languages.iter().map(|l| l.id.as_str()).collect::<Vec<_>>().join(", ");
        return Err(ApiError::UnknownLanguage { language: request.language, known });
    }
    if request.source.is_empty() {
        return Err(ApiError::InvalidField("source: must not be empty".into()));
    }
    check_size("source", request.source.len(), caps.max_source_bytes)?;
    if request.tests.is_empty() {
        return Err(ApiError::NoTests);
    }
    if request.tests.len() > caps.max_tests {
        return Err(ApiError::TooManyTests { count: request.tests.len(), max: caps.max_tests });
    }
    let mut total = 0usize;
    for (i, t) in request.tests.iter().enumerate() {
        check_size(&format!("tests[{i}].input"), t.input.len(), caps.max_test_bytes)?;
        check_size(&format!("tests[{i}].expectedOutput"), t.expected_output.len(), caps.max_test_bytes)?;
        total = total.saturating_add(t.input.len()).saturating_add(t.expected_output.len());
    }
    check_size("tests (all inputs and outputs together)", total, caps.max_tests_total_bytes)?;
    let limits = limits(request.limits.unwrap_or_default(), caps)?;
    Ok(NewSubmission {
        language: request.language,
        source: request.source.into_bytes(),
        tests: request
            .tests
            .into_iter()
            .map(|t| TestCase { input: t.input.into_bytes(), expected_output: Some(t.expected_output.into_bytes()) })
            .collect(),
        limits,
        options: Default::default(),
        judge0: None,
        problem: None,
    })
}

fn check_size(field: &str, size: usize, limit: usize) -> Result<(), ApiError> {
    if size > limit {
        return Err(ApiError::TooLarge { field: field.to_owned(), size, limit });
    }
    Ok(())
}

fn limits(given: LimitsIn, caps: &ApiLimits) -> Result<Limits, ApiError> {
    let in_range = |field: &'static str, value: u64, range: &std::ops::RangeInclusive<u64>| {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ApiError::OutOfRange { field, value, min: *range.start(), max: *range.end() })
        }
    };
    let cpu_ms = in_range("limits.cpuMs", given.cpu_ms.unwrap_or_else(|| caps.default_cpu_ms()), &caps.cpu_ms)?;
    let wall_ms = match given.wall_ms {
        Some(w) => in_range("limits.wallMs", w, &caps.wall_ms)?,
        None => caps.default_wall_ms(cpu_ms),
    };
    let memory_mb =
        in_range("limits.memoryMb", given.memory_mb.unwrap_or_else(|| caps.default_memory_mb()), &caps.memory_mb)?;
    Ok(Limits {
        cpu_ms,
        wall_ms,
        memory_bytes: memory_mb.saturating_mul(1 << 20),
        max_processes: caps.max_processes,
        output_bytes: caps.output_bytes,
    })
}
