//! The one error type of the HTTP API, and its mapping to a status and a JSON body.

use salvo::http::StatusCode;
use salvo::{Response, writing::Json};
use serde_json::json;

/// Every way a request can fail. `code()` is the stable, machine-readable part of the
/// answer; the message is for humans and names the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("cannot read request body: {0}")]
    BadBody(String),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    MissingField(String),
    #[error("{0}")]
    UnknownField(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("unknown language {language:?}; known: {known}")]
    UnknownLanguage { language: String, known: String },
    #[error("a submission needs at least one test")]
    NoTests,
    #[error("{count} tests given, at most {max} allowed")]
    TooManyTests { count: usize, max: usize },
    #[error("{field} is {size} bytes, at most {limit} allowed")]
    TooLarge { field: String, size: usize, limit: usize },
    #[error("{field} is {value}, must be within {min}..={max}")]
    OutOfRange { field: &'static str, value: u64, min: u64, max: u64 },
    #[error("submission id {0:?} is not a number")]
    InvalidId(String),
    #[error("submission {0} does not exist")]
    SubmissionNotFound(u64),
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("{0}")]
    QueueFull(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The write was not committed in time (no leader, no quorum): retry shortly.
    #[error("{0}")]
    NotCommitted(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("algorithm {0:?} does not exist")]
    AlgorithmNotFound(String),
    #[error("benchmark {0} does not exist")]
    BenchmarkNotFound(i64),
    #[error("{0}")]
    Conflict(String),
    #[error("this coordinator runs without a database; the catalog is unavailable")]
    NoDatabase,
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("login sessions are not enabled on this coordinator")]
    SessionsDisabled,
    #[error("user {0} does not exist")]
    UserNotFound(i64),
    #[error("too many requests: at most {limit} per {window_s} s; retry in {retry_after_s} s")]
    RateLimited { limit: u64, window_s: u64, retry_after_s: u64 },
    #[error("{running} runs of yours are unfinished; at most {max} at once")]
    TooManyRunning { running: usize, max: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    BadPackage(String),
    #[error("{0}")]
    PackageTooLarge(String),
    #[error("problem {0:?} does not exist")]
    ProblemNotFound(String),
    #[error("the code does not compile: {0}")]
    CompileFailed(String),
    #[error("{0}")]
    RunTimedOut(String),
    #[error("{0}")]
    RunUnavailable(String),
    #[error("code version {0} does not exist")]
    VersionNotFound(i64),
    #[error("execution {0} does not exist")]
    RunNotFound(i64),
    #[error("no unrevoked token {0} of this user")]
    TokenNotFound(i64),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BodyTooLarge { .. } | ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadBody(_)
            | ApiError::MalformedJson(_)
            | ApiError::MissingField(_)
            | ApiError::UnknownField(_)
            | ApiError::InvalidField(_)
            | ApiError::UnknownLanguage { .. }
            | ApiError::NoTests
            | ApiError::TooManyTests { .. }
            | ApiError::OutOfRange { .. }
            | ApiError::InvalidId(_)
            | ApiError::BadPackage(_) => StatusCode::BAD_REQUEST,
            ApiError::PackageTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ProblemNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::SubmissionNotFound(_)
            | ApiError::RouteNotFound { .. }
            | ApiError::AlgorithmNotFound(_)
            | ApiError::BenchmarkNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NoDatabase | ApiError::DatabaseUnavailable(_) | ApiError::SessionsDisabled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::UserNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::RateLimited { .. } | ApiError::TooManyRunning { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::QueueFull(_) | ApiError::NotCommitted(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::CompileFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RunTimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::RunUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::VersionNotFound(_) | ApiError::RunNotFound(_) | ApiError::TokenNotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::BadBody(_) => "bad_body",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::MissingField(_) => "missing_field",
            ApiError::UnknownField(_) => "unknown_field",
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::UnknownLanguage { .. } => "unknown_language",
            ApiError::NoTests => "no_tests",
            ApiError::TooManyTests { .. } => "too_many_tests",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::OutOfRange { .. } => "out_of_range",
            ApiError::InvalidId(_) => "invalid_id",
            ApiError::SubmissionNotFound(_) => "submission_not_found",
            ApiError::RouteNotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::QueueFull(_) => "queue_full",
            ApiError::Internal(_) => "internal",
            ApiError::NotCommitted(_) => "not_committed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::AlgorithmNotFound(_) => "algorithm_not_found",
            ApiError::BenchmarkNotFound(_) => "benchmark_not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::NoDatabase => "no_database",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
            ApiError::SessionsDisabled => "sessions_disabled",
            ApiError::UserNotFound(_) => "user_not_found",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooManyRunning { .. } => "too_many_running",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BadPackage(_) => "bad_package",
            ApiError::PackageTooLarge(_) => "package_too_large",
            ApiError::ProblemNotFound(_) => "problem_not_found",
            ApiError::CompileFailed(_) => "compile_error",
            ApiError::RunTimedOut(_) => "run_timed_out",
            ApiError::RunUnavailable(_) => "run_unavailable",
            ApiError::VersionNotFound(_) => "version_not_found",
            ApiError::RunNotFound(_) => "execution_not_found",
            ApiError::TokenNotFound(_) => "token_not_found",
        }
    }

    pub fn write(&self, res: &mut Response) {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        res.status_code(self.status());
        if let ApiError::NotCommitted(_) = self {
            res.headers_mut().insert(salvo::http::header::RETRY_AFTER, salvo::http::HeaderValue::from_static("1"));
        }
        if let ApiError::RateLimited { retry_after_s, .. } = self {
            res.headers_mut().insert(salvo::http::header::RETRY_AFTER, (*retry_after_s).into());
        }
        res.render(Json(json!({ "error": { "code": self.code(), "message": self.to_string() } })));
    }

    /// The same error in Judge0's shape (`{"error": "..."}`), for its routes.
    pub fn write_judge0(&self, res: &mut Response) {
        res.status_code(self.status());
        if let ApiError::RateLimited { retry_after_s, .. } = self {
            res.headers_mut().insert(salvo::http::header::RETRY_AFTER, (*retry_after_s).into());
        }
        res.render(Json(json!({ "error": self.to_string() })));
    }
}
