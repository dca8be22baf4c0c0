//! The Judge0-compatible API (Judge0 CE 1.13.1): the routes, field names, units, status
//! ids and error shapes Judge0 clients already speak, on top of the same scheduler.
//!
//! A Judge0 submission is one run with `stdin`; without `expected_output` a run that ends
//! normally is Accepted. Units are Judge0's: seconds (floats) for times, KB for memory,
//! stack and file size. Errors are Judge0's too: 422 `{"field": ["reason"]}` for a bad
//! attribute, `{"error": "..."}` otherwise. `X-Auth-Token` is accepted and ignored (no
//! authentication yet).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::{JobOptions, LimitHit, Limits, TestCase, Verdict};
use rootfs::{Language, Spec};
use salvo::http::StatusCode;
use salvo::writing::Json;
use salvo::{Request, Response};
use serde_json::{Map, Value, json};

use super::ApiLimits;
use crate::judge::{Judge0Meta, NewSubmission, Status, SubmissionId};
use crate::scheduler::{Scheduler, SubmissionView, SubmitError};

/// The Judge0 API version whose behaviour this module follows.
pub const JUDGE0_VERSION: &str = "1.13.1";

/// Judge0's status ids and descriptions.
pub const STATUSES: [(u32, &str); 14] = [
    (1, "In Queue"),
    (2, "Processing"),
    (3, "Accepted"),
    (4, "Wrong Answer"),
    (5, "Time Limit Exceeded"),
    (6, "Compilation Error"),
    (7, "Runtime Error (SIGSEGV)"),
    (8, "Runtime Error (SIGXFSZ)"),
    (9, "Runtime Error (SIGFPE)"),
    (10, "Runtime Error (SIGABRT)"),
    (11, "Runtime Error (NZEC)"),
    (12, "Runtime Error (Other)"),
    (13, "Internal Error"),
    (14, "Exec Format Error"),
];

const DEFAULT_FIELDS: [&str; 8] = ["token", "stdout", "time", "memory", "stderr", "compile_output", "message", "status"];

const ALL_FIELDS: [&str; 33] = [
    "source_code",
    "language_id",
    "stdin",
    "expected_output",
    "compiler_options",
    "command_line_arguments",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "redirect_stderr_to_stdout",
    "callback_url",
    "additional_files",
    "number_of_runs",
    "stdout",
    "stderr",
    "compile_output",
    "message",
    "exit_code",
    "exit_signal",
    "status",
    "status_id",
    "created_at",
    "finished_at",
    "token",
    "time",
    "wall_time",
    "memory",
];

const NOT_UTF8: &str =
    "some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter";

/// Judge0's configuration variables: defaults and maxima of the per-submission limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Judge0Config {
    pub cpu_extra_time_ms: u64,
    pub max_cpu_extra_time_ms: u64,
    pub memory_limit_kb: u64,
    pub stack_limit_kb: u64,
    pub max_stack_limit_kb: u64,
    pub max_processes: u32,
    pub max_max_processes: u32,
    pub max_file_size_kb: u64,
    pub max_max_file_size_kb: u64,
    pub number_of_runs: u32,
    pub max_number_of_runs: u32,
    pub max_batch: usize,
    /// How long `wait=true` holds a request before answering with the current state.
    pub max_wait: Duration,
    /// Callback attempts, the first included, and the pause before the second.
    pub callback_attempts: u32,
    pub callback_backoff: Duration,
}

impl Default for Judge0Config {
    fn default() -> Self {
        Judge0Config {
            cpu_extra_time_ms: 500,
            max_cpu_extra_time_ms: 5000,
            memory_limit_kb: 128_000,
            stack_limit_kb: 64_000,
            max_stack_limit_kb: 128_000,
            max_processes: 60,
            max_max_processes: 120,
            max_file_size_kb: 1024,
            max_max_file_size_kb: 4096,
            number_of_runs: 1,
            max_number_of_runs: 20,
            max_batch: 20,
            max_wait: Duration::from_secs(60),
            callback_attempts: 5,
            callback_backoff: Duration::from_millis(500),
        }
    }
}

/// Every way a Judge0 request fails, rendered in Judge0's shapes.
#[derive(Debug, thiserror::Error)]
pub enum Judge0Error {
    /// 422 `{"field": ["reason"]}`.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// 400 `{"error": "..."}`: bad query parameters, bad base64, output needing base64.
    #[error("{0}")]
    BadRequest(String),
    #[error("Not Found")]
    NotFound,
    #[error("queue is full")]
    QueueFull,
    #[error("{0}")]
    Internal(String),
}

impl Judge0Error {
    fn invalid(field: &str, reason: impl Into<String>) -> Judge0Error {
        Judge0Error::Invalid { field: field.to_owned(), reason: reason.into() }
    }

    fn status(&self) -> StatusCode {
        match self {
            Judge0Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Judge0Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Judge0Error::NotFound => StatusCode::NOT_FOUND,
            Judge0Error::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
            Judge0Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> Value {
        match self {
            Judge0Error::Invalid { field, reason } => json!({ field: [reason] }),
            other => json!({ "error": other.to_string() }),
        }
    }

    pub fn write(&self, res: &mut Response) {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, "Judge0 request failed");
        }
        res.status_code(self.status());
        res.render(Json(self.body()));
    }
}

/// Shared by the Judge0 handlers.
pub struct Judge0 {
    pub scheduler: Scheduler,
    pub spec: Arc<Spec>,
    pub caps: ApiLimits,
    pub config: Judge0Config,
}

#[derive(Clone, Copy, Debug)]
pub enum Judge0Route {
    Create,
    List,
    Show,
    CreateBatch,
    ShowBatch,
    Languages,
    Language,
    Statuses,
    About,
    ConfigInfo,
    SystemInfo,
    Workers,
}

impl Judge0 {
    pub async fn handle(&self, route: Judge0Route, req: &mut Request) -> Result<(StatusCode, Value), Judge0Error> {
        match route {
            Judge0Route::Create => self.create(req).await,
            Judge0Route::List => self.list(req).await,
            Judge0Route::Show => self.show(req).await,
            Judge0Route::CreateBatch => self.create_batch(req).await,
            Judge0Route::ShowBatch => self.show_batch(req).await,
            Judge0Route::Languages => Ok((StatusCode::OK, self.languages())),
            Judge0Route::Language => self.language(req),
            Judge0Route::Statuses => Ok((StatusCode::OK, statuses())),
            Judge0Route::About => Ok((StatusCode::OK, about())),
            Judge0Route::ConfigInfo => Ok((StatusCode::OK, self.config_info())),
            Judge0Route::SystemInfo => Ok((StatusCode::OK, system_info())),
            Judge0Route::Workers => Ok((StatusCode::OK, self.workers().await)),
        }
    }

    async fn body(&self, req: &mut Request) -> Result<Value, Judge0Error> {
        let limit = self.caps.max_body_bytes;
        let bytes = req
            .payload_with_max_size(limit)
            .await
            .map_err(|e| Judge0Error::BadRequest(format!("cannot read the request body: {e}")))?;
        serde_json::from_slice(bytes).map_err(|e| Judge0Error::BadRequest(format!("malformed JSON: {e}")))
    }

    async fn create(&self, req: &mut Request) -> Result<(StatusCode, Value), Judge0Error> {
        let base64 = query_bool(req, "base64_encoded")?;
        let wait = query_bool(req, "wait")?;
        let fields = Fields::parse(req.query::<String>("fields").as_deref())?;
        let body = self.body(req).await?;
        let new = parse_submission(&body, base64, &self.spec, &self.caps, &self.config)?;
        let token = new.judge0.as_ref().map(|m| m.token.clone()).unwrap_or_default();
        if !wait {
            self.submit(new).await?;
            return Ok((StatusCode::CREATED, json!({ "token": token })));
        }
        // Subscribed before submitting, so the completion cannot slip by unseen.
        let mut done = self.scheduler.completions();
        let id = self.submit(new).await?;
        let deadline = tokio::time::Instant::now() + self.config.max_wait;
        loop {
            match tokio::time::timeout_at(deadline, done.recv()).await {
                Ok(Ok(finished)) if finished == id => break,
                Ok(Ok(_)) => {}
                // Missed some completions: ours may be among them, so look.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    if self.scheduler.get(id).await.is_some_and(|v| v.status == Status::Done) {
                        break;
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) | Err(_) => break,
            }
        }
        let view = self.scheduler.get(id).await.ok_or(Judge0Error::NotFound)?;
        match render(&view, &self.spec, &fields, base64) {
            Ok(v) => Ok((StatusCode::CREATED, v)),
            // Judge0 still hands out the token, so the client can ask again in base64.
            Err(Judge0Error::BadRequest(e)) => Ok((StatusCode::CREATED, json!({ "token": token, "error": e }))),
            Err(e) => Err(e),
        }
    }

    async fn submit(&self, new: NewSubmission) -> Result<SubmissionId, Judge0Error> {
        self.scheduler.submit(new).await.map_err(|e| match e {
            SubmitError::QueueFull(_) => Judge0Error::QueueFull,
            other => Judge0Error::Internal(other.to_string()),
        })
    }

    async fn show(&self, req: &mut Request) -> Result<(StatusCode, Value), Judge0Error> {
        let base64 = query_bool(req, "base64_encoded")?;
        let fields = Fields::parse(req.query::<String>("fields").as_deref())?;
        let token = req.param::<String>("token").unwrap_or_default();
        let view = self.scheduler.get_by_token(&token).await.ok_or(Judge0Error::NotFound)?;
        Ok((StatusCode::OK, render(&view, &self.spec, &fields, base64)?))
    }

    async fn list(&self, req: &mut Request) -> Result<(StatusCode, Value), Judge0Error> {
        let base64 = query_bool(req, "base64_encoded")?;
        let fields = Fields::parse(req.query::<String>("fields").as_deref())?;
        let page = query_positive(req, "page", 1)?;
        let per_page = query_positive(req, "per_page", 20)?.min(100);
        let skip = (page - 1).saturating_mul(per_page);
        let (views, total) = self.scheduler.judge0_page(skip, per_page).await;
        let submissions = views.iter().map(|v| render(v, &self.spec, &fields, base64)).collect::<Result<Vec<_>, _>>()?;
        let total_pages = total.div_ceil(per_page);
        let meta = json!({
            "current_page": page,
            "next_page": if page < total_pages { Some(page + 1) } else { None },
            "prev_page": if page > 1 { Some(page - 1) } else { None },
            "total_pages": total_pages,
            "total_count": total,
        });
        Ok((StatusCode::OK, json!({ "submissions": submissions, "meta": meta })))
    }

    /// Each submission of the batch succeeds or fails on its own, as in Judge0: the answer
    /// lists a token or that submission's errors, in order.
    async fn create_batch(&self, req: &mut Request) -> Result<(StatusCode, Value), Judge0Error> {
        let base64 = query_bool(req, "base64_encoded")?;
        let body = self.body(req).await?;
        let Some(items) = body.get("submissions").and_then(Value::as_array) else {
            return Err(Judge0Error::invalid("submissions", "must be an array of submissions"));
        };
        if items.is_empty() || items.len() > self.config.max_batch {
            return Err(Judge0Error::invalid(
                "submissions",
                format!("must hold 1 to {} submissions, got {}", self.config.max_batch, items.len()),
            ));
        }
        let mut answers = Vec::with_capacity(items.len());
        for item in items {
            let answer = match parse_submission(item, base64, &self.spec, &self.caps, &self.config) {
                Ok(new) => {
                    let token = new.judge0.as_ref().map(|m| m.token.clone()).unwrap_or_default();
                    match self.submit(new).await {
                        Ok(_) => json!({ "token": token }),
                        Err(e) => e.body(),
                    }
                }
                Err(e) => e.body(),
            };
            answers.push(answer);
        }
        Ok((StatusCode::CREATED, Value::Array(answers)))
    }

    async fn show_batch(&self, req: &mut Request) -> Result<(StatusCode, Value), Judge0Error> {
        let base64 = query_bool(req, "base64_encoded")?;
        let fields = Fields::parse(req.query::<String>("fields").as_deref())?;
        let tokens = req.query::<String>("tokens").unwrap_or_default();
        let tokens: Vec<&str> = tokens.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() || tokens.len() > self.config.max_batch {
            return Err(Judge0Error::BadRequest(format!("tokens: give 1 to {} comma-separated tokens", self.config.max_batch)));
        }
        let mut out = Vec::with_capacity(tokens.len());
        for token in tokens {
            out.push(match self.scheduler.get_by_token(token).await {
                Some(view) => render(&view, &self.spec, &fields, base64)?,
                None => Value::Null,
            });
        }
        Ok((StatusCode::OK, json!({ "submissions": out })))
    }

    fn languages(&self) -> Value {
        let mut langs: Vec<_> = self.spec.languages.iter().filter_map(|l| l.judge0_id.map(|id| (id, l))).collect();
        langs.sort_by_key(|(id, _)| *id);
        langs.into_iter().map(|(id, l)| json!({ "id": id, "name": language_name(l), "version": l.version })).collect()
    }

    fn language(&self, req: &mut Request) -> Result<(StatusCode, Value), Judge0Error> {
        let raw = req.param::<String>("id").unwrap_or_default();
        let lang = raw.parse().ok().and_then(|id| self.spec.language_by_judge0_id(id)).ok_or(Judge0Error::NotFound)?;
        Ok((
            StatusCode::OK,
            json!({
                "id": lang.judge0_id,
                "name": language_name(lang),
                "version": lang.version,
                "is_archived": false,
                "source_file": lang.source,
                "compile_cmd": lang.compile.as_ref().map(|c| c.join(" ")),
                "run_cmd": lang.run.join(" "),
            }),
        ))
    }

    fn config_info(&self) -> Value {
        let c = &self.config;
        let caps = &self.caps;
        let cpu = caps.default_cpu_ms();
        json!({
            "maintenance_mode": false,
            "enable_wait_result": true,
            "enable_compiler_options": true,
            "allowed_languages_for_compile_options":
                self.spec.languages.iter().filter(|l| l.takes_compiler_options()).map(language_name).collect::<Vec<_>>(),
            "enable_command_line_arguments": true,
            "enable_submission_delete": false,
            "enable_callbacks": true,
            "callbacks_max_tries": c.callback_attempts,
            "callbacks_timeout": 5.0,
            "enable_additional_files": false,
            "max_queue_size": self.scheduler.max_queued(),
            "cpu_time_limit": secs(cpu),
            "max_cpu_time_limit": secs(*caps.cpu_ms.end()),
            "cpu_extra_time": secs(c.cpu_extra_time_ms),
            "max_cpu_extra_time": secs(c.max_cpu_extra_time_ms),
            "wall_time_limit": secs(caps.default_wall_ms(cpu)),
            "max_wall_time_limit": secs(*caps.wall_ms.end()),
            "memory_limit": c.memory_limit_kb,
            "max_memory_limit": caps.memory_mb.end() * 1024,
            "stack_limit": c.stack_limit_kb,
            "max_stack_limit": c.max_stack_limit_kb,
            "max_processes_and_or_threads": c.max_processes,
            "max_max_processes_and_or_threads": c.max_max_processes,
            "enable_per_process_and_thread_time_limit": false,
            "allow_enable_per_process_and_thread_time_limit": false,
            "enable_per_process_and_thread_memory_limit": false,
            "allow_enable_per_process_and_thread_memory_limit": false,
            "max_file_size": c.max_file_size_kb,
            "max_max_file_size": c.max_max_file_size_kb,
            "number_of_runs": c.number_of_runs,
            "max_number_of_runs": c.max_number_of_runs,
            "redirect_stderr_to_stdout": false,
            "max_extract_size": 0,
            "enable_batched_submissions": true,
            "max_submission_batch_size": c.max_batch,
            "submission_cache_duration": 0,
            "use_docs_as_homepage": false,
            "allow_enable_network": false,
            "enable_network": false,
        })
    }

    async fn workers(&self) -> Value {
        let agents = self.scheduler.agents_summary().await;
        let queue = self.scheduler.queue_summary().await;
        json!([{
            "queue": "default",
            "size": queue.queued,
            "available": agents.slots,
            "idle": agents.free_slots,
            "working": queue.running,
            "paused": 0,
            "failed": 0,
        }])
    }
}

fn statuses() -> Value {
    STATUSES.iter().map(|(id, d)| json!({ "id": id, "description": d })).collect()
}

fn about() -> Value {
    json!({
        "version": JUDGE0_VERSION,
        "homepage": "https://judge0.com",
        "source_code": "https://github.com/judge0/judge0",
        "maintainer": "judge-cluster (a Judge0-compatible judge, not Judge0 itself)",
    })
}

fn system_info() -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).map(|l| l.trim_start_matches("MemTotal:").trim().to_owned()));
    json!({
        "Architecture": std::env::consts::ARCH,
        "CPU(s)": cpus.to_string(),
        "Mem": mem,
        "OS": std::env::consts::OS,
    })
}

/// Judge0 names carry the version: "C (GCC 12, C17, -O2) 12.2.0" would be odd, so the
/// table's name is used as is when it already names a version, else the version is added.
fn language_name(l: &Language) -> String {
    if l.name.contains(&l.version) { l.name.clone() } else { format!("{} [{}]", l.name, l.version) }
}

/// Seconds as Judge0 shows limits: "2.0", "0.5", "1.25".
fn secs(ms: u64) -> String {
    let s = format!("{:.3}", ms as f64 / 1000.0);
    let s = s.trim_end_matches('0');
    if s.ends_with('.') { format!("{s}0") } else { s.to_owned() }
}

fn query_bool(req: &Request, name: &str) -> Result<bool, Judge0Error> {
    match req.query::<String>(name).as_deref() {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(Judge0Error::BadRequest(format!("invalid {name}: {other}"))),
    }
}

fn query_positive(req: &Request, name: &str, default: usize) -> Result<usize, Judge0Error> {
    match req.query::<String>(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(Judge0Error::BadRequest(format!("invalid {name}: {raw}"))),
        },
    }
}

/// The attributes a response shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields(Vec<String>);

impl Fields {
    pub fn parse(raw: Option<&str>) -> Result<Fields, Judge0Error> {
        let raw = raw.map(str::trim).unwrap_or("");
        if raw.is_empty() {
            return Ok(Fields(DEFAULT_FIELDS.map(String::from).to_vec()));
        }
        if raw == "*" {
            return Ok(Fields(ALL_FIELDS.iter().map(|f| f.to_string()).chain(["language".to_string()]).collect()));
        }
        let mut fields = Vec::new();
        for f in raw.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if !ALL_FIELDS.contains(&f) && f != "language" {
                return Err(Judge0Error::BadRequest(format!("invalid fields: [{f}]")));
            }
            fields.push(f.to_owned());
        }
        Ok(Fields(fields))
    }
}

/// The Judge0 status of a submission, and its `message` when we know better than the id.
pub fn status_of(view: &SubmissionView) -> (u32, Option<String>) {
    match view.status {
        Status::Queued => return (1, None),
        Status::Running => return (2, None),
        Status::Done => {}
    }
    let Some(verdict) = view.verdict else {
        return (13, Some("no verdict".into()));
    };
    let test = view.tests.first().map(|t| &t.result);
    let message = || test.map(|t| t.message.clone()).filter(|m| !m.is_empty());
    match verdict {
        Verdict::AC => (3, None),
        Verdict::WA => (4, None),
        Verdict::TLE => (5, message()),
        Verdict::CE => (6, None),
        Verdict::IE => (13, Some(view.message.clone())),
        // Judge0 sees a memory-limit kill as the SIGKILL it is: Runtime Error (Other).
        Verdict::MLE => (12, Some(message().unwrap_or_else(|| "memory limit exceeded".into()))),
        // Judge0 writes stdout to a file limited by max_file_size: SIGXFSZ.
        Verdict::OLE => (8, Some(message().unwrap_or_else(|| "output limit exceeded".into()))),
        Verdict::RE => {
            let id = match (test.and_then(|t| t.signal), test.map(|t| t.limit)) {
                (_, Some(Some(LimitHit::Processes))) => 12,
                (Some(libc::SIGSEGV), _) | (Some(libc::SIGBUS), _) => 7,
                (Some(libc::SIGXFSZ), _) => 8,
                (Some(libc::SIGFPE), _) => 9,
                (Some(libc::SIGABRT), _) => 10,
                (Some(_), _) => 12,
                (None, _) => 11,
            };
            (id, message())
        }
    }
}

/// A submission in Judge0's shape, with `fields` only. Text attributes are base64 when
/// asked; otherwise text that is not UTF-8 is an error, as in Judge0.
pub fn render(view: &SubmissionView, spec: &Spec, fields: &Fields, base64: bool) -> Result<Value, Judge0Error> {
    let (status_id, message) = status_of(view);
    let meta = view.judge0.as_ref();
    let test = view.tests.first().map(|t| &t.result);
    let input = view.inputs.first();
    let done = view.status == Status::Done;
    let ran = done && test.is_some();
    let text = |bytes: Option<&[u8]>| -> Result<Value, Judge0Error> {
        match bytes {
            None => Ok(Value::Null),
            Some(b) if base64 => Ok(Value::String(B64.encode(b))),
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => Ok(Value::String(s.to_owned())),
                Err(_) => Err(Judge0Error::BadRequest(NOT_UTF8.into())),
            },
        }
    };
    let nonempty = |b: &[u8]| if b.is_empty() { None } else { Some(b.to_vec()) };
    let compile_output = if done { nonempty(view.compile_output.as_bytes()) } else { None };
    let language = spec.language(&view.language);
    let mut out = Map::new();
    for f in &fields.0 {
        let v = match f.as_str() {
            "source_code" => text(Some(&view.source))?,
            "language_id" => json!(meta.map(|m| m.language_id)),
            "language" => json!({
                "id": meta.map(|m| m.language_id),
                "name": language.map(language_name),
            }),
            "stdin" => text(input.map(|t| t.input.as_slice()))?,
            "expected_output" => text(input.and_then(|t| t.expected_output.as_deref()))?,
            "compiler_options" => json!(meta.and_then(|m| m.compiler_options.clone())),
            "command_line_arguments" => json!(meta.and_then(|m| m.command_line_arguments.clone())),
            "cpu_time_limit" => json!(secs(view.limits.cpu_ms)),
            "cpu_extra_time" => json!(secs(view.options.extra_cpu_ms)),
            "wall_time_limit" => json!(secs(view.limits.wall_ms)),
            "memory_limit" => json!(view.limits.memory_bytes / 1024),
            "stack_limit" => json!(meta.map(|m| m.stack_limit_kb)),
            "max_processes_and_or_threads" => json!(view.limits.max_processes),
            "enable_per_process_and_thread_time_limit" | "enable_per_process_and_thread_memory_limit" => json!(false),
            "max_file_size" => json!(meta.map(|m| m.max_file_size_kb)),
            "redirect_stderr_to_stdout" => json!(view.options.merge_stderr),
            "callback_url" => json!(meta.and_then(|m| m.callback_url.clone())),
            "additional_files" => Value::Null,
            "number_of_runs" => json!(meta.map(|m| m.number_of_runs)),
            "stdout" => text(test.filter(|_| ran).and_then(|t| nonempty(&t.stdout)).as_deref())?,
            "stderr" => text(test.filter(|_| ran).and_then(|t| nonempty(&t.stderr)).as_deref())?,
            "compile_output" => text(compile_output.as_deref())?,
            "message" => text(message.as_deref().map(str::as_bytes))?,
            "exit_code" => json!(test.filter(|_| ran).and_then(|t| t.exit_code)),
            "exit_signal" => json!(test.filter(|_| ran).and_then(|t| t.signal)),
            "status" => json!({ "id": status_id, "description": description(status_id) }),
            "status_id" => json!(status_id),
            "created_at" => json!(iso8601(view.accepted_ms)),
            "finished_at" => json!(view.finished_ms.map(iso8601)),
            "token" => json!(meta.map(|m| m.token.clone())),
            "time" => json!(test.filter(|_| ran).map(|t| format!("{:.3}", t.cpu_time_us as f64 / 1e6))),
            "wall_time" => json!(test.filter(|_| ran).map(|t| format!("{:.3}", t.wall_time_us as f64 / 1e6))),
            "memory" => json!(test.filter(|_| ran).map(|t| t.peak_memory_bytes / 1024)),
            _ => continue,
        };
        out.insert(f.clone(), v);
    }
    Ok(Value::Object(out))
}

fn description(id: u32) -> &'static str {
    STATUSES.iter().find(|(i, _)| *i == id).map_or("Unknown", |(_, d)| d)
}

/// `2024-05-01T12:34:56.789Z` from milliseconds since the epoch (UTC, proleptic Gregorian).
fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A Judge0 request body to a validated submission with a fresh token.
pub fn parse_submission(
    body: &Value,
    base64: bool,
    spec: &Spec,
    caps: &ApiLimits,
    config: &Judge0Config,
) -> Result<NewSubmission, Judge0Error> {
    let Some(obj) = body.as_object() else {
        return Err(Judge0Error::BadRequest("the body must be a JSON object".into()));
    };
    let field = |name: &str| obj.get(name).filter(|v| !v.is_null());

    let language_id = match field("language_id") {
        None => return Err(Judge0Error::invalid("language_id", "can't be blank")),
        Some(v) => as_u64(v).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| Judge0Error::invalid("language_id", "is not a number"))?,
    };
    let language = spec
        .language_by_judge0_id(language_id)
        .ok_or_else(|| Judge0Error::invalid("language_id", format!("language with id {language_id} doesn't exist")))?;
    if obj.contains_key("additional_files") && field("additional_files").is_some() {
        return Err(Judge0Error::invalid("additional_files", "multi-file programs are not supported"));
    }

    let source = text_field(obj, "source_code", base64)?.unwrap_or_default();
    if source.is_empty() {
        return Err(Judge0Error::invalid("source_code", "can't be blank"));
    }
    if source.len() > caps.max_source_bytes {
        return Err(Judge0Error::invalid("source_code", format!("is too long (maximum is {} bytes)", caps.max_source_bytes)));
    }
    let stdin = text_field(obj, "stdin", base64)?.unwrap_or_default();
    let expected = text_field(obj, "expected_output", base64)?;
    for (name, len) in [("stdin", stdin.len()), ("expected_output", expected.as_ref().map_or(0, Vec::len))] {
        if len > caps.max_test_bytes {
            return Err(Judge0Error::invalid(name, format!("is too long (maximum is {} bytes)", caps.max_test_bytes)));
        }
    }

    let compiler_options = string_field(obj, "compiler_options", 512)?;
    if compiler_options.as_deref().is_some_and(|o| !o.trim().is_empty()) && !language.takes_compiler_options() {
        return Err(Judge0Error::invalid("compiler_options", format!("setting compiler options is not allowed for {}", language.name)));
    }
    let command_line_arguments = string_field(obj, "command_line_arguments", 512)?;

    let cpu_ms = seconds_field(obj, "cpu_time_limit", caps.default_cpu_ms(), *caps.cpu_ms.start(), *caps.cpu_ms.end())?;
    let extra_ms = seconds_field(obj, "cpu_extra_time", config.cpu_extra_time_ms, 0, config.max_cpu_extra_time_ms)?;
    let wall_ms = seconds_field(obj, "wall_time_limit", caps.default_wall_ms(cpu_ms), *caps.wall_ms.start(), *caps.wall_ms.end())?;
    let (min_kb, max_kb) = (caps.memory_mb.start() * 1024, caps.memory_mb.end() * 1024);
    let memory_kb = int_field(obj, "memory_limit", config.memory_limit_kb.clamp(min_kb, max_kb), min_kb, max_kb)?;
    let stack_kb = int_field(obj, "stack_limit", config.stack_limit_kb, 64, config.max_stack_limit_kb)?;
    let processes = int_field(obj, "max_processes_and_or_threads", u64::from(config.max_processes), 1, u64::from(config.max_max_processes))?;
    let file_kb = int_field(obj, "max_file_size", config.max_file_size_kb, 1, config.max_max_file_size_kb)?;
    let runs = int_field(obj, "number_of_runs", u64::from(config.number_of_runs), 1, u64::from(config.max_number_of_runs))?;
    let merge_stderr = bool_field(obj, "redirect_stderr_to_stdout")?;
    for name in ["enable_per_process_and_thread_time_limit", "enable_per_process_and_thread_memory_limit"] {
        if bool_field(obj, name)? {
            return Err(Judge0Error::invalid(name, "per-process limits are not supported: limits hold for the whole run"));
        }
    }
    let callback_url = string_field(obj, "callback_url", 2048)?.filter(|u| !u.is_empty());
    if let Some(url) = &callback_url {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(_) => return Err(Judge0Error::invalid("callback_url", "must be an http:// or https:// URL")),
            Err(e) => return Err(Judge0Error::invalid("callback_url", format!("is not a valid URL: {e}"))),
        }
    }

    let split = |s: &Option<String>| s.as_deref().map(|s| s.split_whitespace().map(String::from).collect()).unwrap_or_default();
    let options = JobOptions {
        extra_cpu_ms: extra_ms,
        stack_bytes: Some(stack_kb * 1024),
        file_bytes: Some(file_kb * 1024),
        compiler_args: split(&compiler_options),
        run_args: split(&command_line_arguments),
        merge_stderr,
        runs: u32::try_from(runs).unwrap_or(1),
        ..JobOptions::default()
    };
    let limits = Limits {
        cpu_ms,
        wall_ms,
        memory_bytes: memory_kb * 1024,
        max_processes: u32::try_from(processes).unwrap_or(u32::MAX),
        output_bytes: caps.output_bytes,
    };
    let judge0 = Judge0Meta {
        token: uuid::Uuid::new_v4().to_string(),
        language_id,
        callback_url,
        base64_encoded: base64,
        cpu_extra_time_ms: extra_ms,
        max_file_size_kb: file_kb,
        stack_limit_kb: stack_kb,
        number_of_runs: options.runs,
        compiler_options,
        command_line_arguments,
        redirect_stderr_to_stdout: merge_stderr,
    };
    Ok(NewSubmission {
        language: language.id.clone(),
        source,
        tests: vec![TestCase { input: stdin, expected_output: expected }],
        limits,
        options,
        judge0: Some(judge0),
        problem: None,
    })
}

/// Judge0 accepts numbers as JSON numbers or numeric strings ("language_id": "4").
fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn as_f64(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())).filter(|f| f.is_finite())
}

fn text_field(obj: &Map<String, Value>, name: &str, base64: bool) -> Result<Option<Vec<u8>>, Judge0Error> {
    let Some(v) = obj.get(name).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(s) = v.as_str() else {
        return Err(Judge0Error::invalid(name, "must be a string"));
    };
    if !base64 {
        return Ok(Some(s.as_bytes().to_vec()));
    }
    // Ruby's encode64 (what many Judge0 clients use) wraps lines: whitespace is no data.
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(compact).map(Some).map_err(|e| Judge0Error::BadRequest(format!("{name} is not valid base64: {e}")))
}

fn string_field(obj: &Map<String, Value>, name: &str, max_chars: usize) -> Result<Option<String>, Judge0Error> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max_chars => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(Judge0Error::invalid(name, format!("is too long (maximum is {max_chars} characters)"))),
        Some(_) => Err(Judge0Error::invalid(name, "must be a string")),
    }
}

fn bool_field(obj: &Map<String, Value>, name: &str) -> Result<bool, Judge0Error> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(_) => Err(Judge0Error::invalid(name, "must be true or false")),
    }
}

/// A time in seconds (float) to milliseconds within `min..=max` ms.
fn seconds_field(obj: &Map<String, Value>, name: &str, default: u64, min: u64, max: u64) -> Result<u64, Judge0Error> {
    let Some(v) = obj.get(name).filter(|v| !v.is_null()) else {
        return Ok(default);
    };
    let s = as_f64(v).ok_or_else(|| Judge0Error::invalid(name, "is not a number"))?;
    let ms = (s * 1000.0).round();
    if ms < min as f64 {
        return Err(Judge0Error::invalid(name, format!("must be greater than or equal to {}", secs(min))));
    }
    if ms > max as f64 {
        return Err(Judge0Error::invalid(name, format!("must be less than or equal to {}", secs(max))));
    }
    Ok(ms as u64)
}

/// A whole number (floats are truncated, as Judge0 stores KB as integers) in `min..=max`.
fn int_field(obj: &Map<String, Value>, name: &str, default: u64, min: u64, max: u64) -> Result<u64, Judge0Error> {
    let Some(v) = obj.get(name).filter(|v| !v.is_null()) else {
        return Ok(default);
    };
    let n = as_f64(v).ok_or_else(|| Judge0Error::invalid(name, "is not a number"))?;
    if n < min as f64 {
        return Err(Judge0Error::invalid(name, format!("must be greater than or equal to {min}")));
    }
    if n > max as f64 {
        return Err(Judge0Error::invalid(name, format!("must be less than or equal to {max}")));
    }
    Ok(n as u64)
}

/// PUTs each finished Judge0 submission that has a `callback_url` to it, as Judge0 does:
/// the default fields, in the encoding the client created it with. Each callback runs in
/// its own task with bounded retries, so a slow or dead receiver never holds up anything.
pub async fn run_callbacks(scheduler: Scheduler, spec: Arc<Spec>, config: Judge0Config) {
    // https receivers are verified against the Mozilla roots (webpki-roots), with ring as
    // the only crypto provider in the process.
    let client = match reqwest::Client::builder().use_rustls_tls().timeout(Duration::from_secs(5)).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the callback HTTP client; callbacks are off");
            return;
        }
    };
    let mut done = scheduler.completions();
    loop {
        let id = match done.recv().await {
            Ok(id) => id,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "callback sender lagged; some callbacks are lost");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(view) = scheduler.get(id).await else { continue };
        let Some(meta) = view.judge0.clone() else { continue };
        let Some(url) = meta.callback_url.clone() else { continue };
        let fields = Fields(DEFAULT_FIELDS.map(String::from).to_vec());
        let body = match render(&view, &spec, &fields, meta.base64_encoded) {
            Ok(b) => b,
            Err(e) => json!({ "token": meta.token, "error": e.to_string() }),
        };
        let client = client.clone();
        let (attempts, backoff) = (config.callback_attempts.max(1), config.callback_backoff);
        tokio::spawn(async move {
            let mut pause = backoff;
            for attempt in 1..=attempts {
                match client.put(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        tracing::debug!(token = %meta.token, attempt, "callback delivered");
                        return;
                    }
                    Ok(r) => tracing::info!(token = %meta.token, attempt, status = %r.status(), "callback refused"),
                    Err(e) => tracing::info!(token = %meta.token, attempt, error = %e, "callback failed"),
                }
                if attempt < attempts {
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                }
            }
            tracing::warn!(token = %meta.token, %url, attempts, "callback given up");
        });
    }
}

#[cfg(test)]
mod tests;
