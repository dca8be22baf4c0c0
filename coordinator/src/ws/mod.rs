//! WebSocket `/ws`: the dashboard's live protocol (docs/websocket.md), as the seed's
//! frontend speaks it, with steps streamed while the code runs instead of replayed.
//!
//! Flow: a client message becomes a function-style submission of the scheduler (it goes
//! through the state machine like any other); the agent streams `viz` steps over QUIC to
//! [`Live`] (a `LiveSink`), which fans them out to the subscribers of the execution's
//! topics. Steps never enter the state machine; results and verdicts do, and reach `Live`
//! through the scheduler's `Observer`.
//!
//! Back-pressure: every client has one bounded queue of frames. A step that finds fewer
//! than `RESERVED` free places is dropped for that client (counted, and announced by a
//! `STEPS_DROPPED` frame before its next delivered frame); any other frame that finds the
//! queue full closes that client with code 1008 "client too slow". The run and the other
//! clients never wait for a slow client.

pub mod catalog;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, SinkExt, StreamExt};
use protocol::{FunctionSpec, Limits, ReturnValue, Step, TestResult, Verdict};
use rootfs::Spec;
use salvo::websocket::{Message, WebSocket, WebSocketUpgrade};
use salvo::{Depot, FlowCtrl, Handler, Request, Response, async_trait};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::analytics::complexity::{self, Sample};
use crate::api::{Authn, Caller};
use crate::store::auth::Principal;
use crate::judge::{NewSubmission, SubmissionId};
use crate::link::LiveSink;
use crate::scheduler::{CancelOutcome, Observer, Scheduler, SubmissionView};
use catalog::{BENCHMARK_SIZES, Catalog, benchmark_repetitions, generate_test_data};

/// Frames waiting for one client.
pub const CLIENT_QUEUE: usize = 1024;
/// Places of a client's queue only non-step frames may take, so a flood of steps never
/// crowds out a result.
pub const RESERVED: usize = 64;
/// Largest message a client may send (code up to 256 KiB plus test data).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
pub const MAX_CODE_BYTES: usize = 256 * 1024;
/// Runs one connection may have queued or running at once.
pub const MAX_RUNS_PER_CLIENT: usize = 4;
/// Topics one connection may subscribe to.
pub const MAX_TOPICS_PER_CLIENT: usize = 64;
/// Steps of an execution kept to repeat in EXECUTION_COMPLETED's `result.steps`, as the
/// seed's result carries them; beyond this budget `stepsTruncated` is set.
pub const KEPT_STEP_BYTES: usize = 512 * 1024;
/// Steps a run may log (the harness writes a truncation marker after the last).
pub const MAX_STEPS: u32 = 10_000;
const CLUSTER_INTERVAL: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Updates under these locks are single map operations that cannot panic half-way.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Execute,
    Tests,
    Benchmark,
}

/// A run started over the WebSocket, until it completes.
struct Run {
    kind: Kind,
    owner: u64,
    algorithm: String,
    /// Per test: the arguments, the expected value, the input size (benchmarks).
    tests: Vec<(Value, Value, usize)>,
    returns: BTreeMap<u32, ReturnValue>,
    results: Vec<Value>,
    steps: Vec<Arc<str>>,
    step_bytes: usize,
    steps_truncated: bool,
}

struct Client {
    tx: mpsc::Sender<Arc<str>>,
    /// Who this client is, from the `token` query parameter or an `AUTH` message.
    user: Option<Principal>,
    /// Steps dropped since the last STEPS_DROPPED notice.
    dropped: u64,
    close: watch::Sender<Option<String>>,
    topics: HashSet<String>,
    runs: HashSet<SubmissionId>,
}

#[derive(Default)]
struct State {
    next_client: u64,
    clients: HashMap<u64, Client>,
    topics: HashMap<String, HashSet<u64>>,
    runs: HashMap<SubmissionId, Run>,
}

/// The live hub: clients, topics, runs in progress.
pub struct Live {
    /// Checks credentials; unset (library use, tests) lets every client run code.
    authn: std::sync::OnceLock<Authn>,
    scheduler: Scheduler,
    spec: Arc<Spec>,
    catalog: Arc<dyn Catalog>,
    state: Mutex<State>,
}

fn execution_topic(id: SubmissionId) -> String {
    format!("execution:{id}")
}

fn algorithm_topic(name: &str) -> String {
    format!("algorithm:{name}")
}

impl Live {
    /// Creates the hub and hooks it into the scheduler (results) and the agent hub (steps).
    pub fn install(
        scheduler: &Scheduler,
        hub: &crate::link::AgentHub,
        spec: Arc<Spec>,
        catalog: Arc<dyn Catalog>,
    ) -> Arc<Live> {
        let live = Live::new(scheduler.clone(), spec, catalog);
        scheduler.set_observer(live.clone());
        hub.set_live(live.clone());
        live
    }

    pub fn new(scheduler: Scheduler, spec: Arc<Spec>, catalog: Arc<dyn Catalog>) -> Arc<Live> {
        let live = Arc::new(Live { authn: std::sync::OnceLock::new(), scheduler, spec, catalog, state: Mutex::new(State::default()) });
        // Cluster status for subscribers of "cluster"; a weak handle so the task ends with the hub.
        let weak = Arc::downgrade(&live);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CLUSTER_INTERVAL);
            loop {
                tick.tick().await;
                let Some(live) = weak.upgrade() else { return };
                if lock(&live.state).topics.get("cluster").is_some_and(|s| !s.is_empty()) {
                    let frame = live.cluster_status();
                    live.publish(&["cluster".to_string()], &frame, false);
                }
            }
        });
        live
    }

    /// Checks clients' credentials with `authn` and applies its anonymous-run rule. Once.
    pub fn set_auth(&self, authn: Authn) {
        let _ = self.authn.set(authn);
    }

    /// The salvo handler of `/ws`.
    pub fn handler(self: &Arc<Live>) -> WsEndpoint {
        WsEndpoint { live: self.clone() }
    }

    fn cluster_status(&self) -> Value {
        let agents = self.scheduler.agents_summary().now_or_never().unwrap_or_default();
        let queue = self.scheduler.queue_summary().now_or_never().unwrap_or_default();
        json!({
            "type": "CLUSTER_STATUS",
            "agents": { "connected": agents.connected, "slots": agents.slots, "freeSlots": agents.free_slots },
            "queue": { "queued": queue.queued, "running": queue.running },
            "timestamp": now_ms(),
        })
    }

    fn register(&self, user: Option<Principal>) -> (u64, mpsc::Receiver<Arc<str>>, watch::Receiver<Option<String>>) {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let (close, close_rx) = watch::channel(None);
        let mut state = lock(&self.state);
        state.next_client += 1;
        let id = state.next_client;
        state.clients.insert(id, Client { tx, user, dropped: 0, close, topics: HashSet::new(), runs: HashSet::new() });
        self.scheduler.metrics().ws_client(true);
        (id, rx, close_rx)
    }

    /// Forgets a client and cancels the runs it started: nobody asked for them anymore.
    fn unregister(&self, client: u64) {
        let runs: Vec<SubmissionId> = {
            let mut state = lock(&self.state);
            let Some(c) = state.clients.remove(&client) else { return };
            self.scheduler.metrics().ws_client(false);
            for topic in &c.topics {
                if let Some(set) = state.topics.get_mut(topic) {
                    set.remove(&client);
                    if set.is_empty() {
                        state.topics.remove(topic);
                    }
                }
            }
            c.runs.into_iter().collect()
        };
        for id in runs {
            let outcome = self.scheduler.cancel(id, "the client disconnected");
            tracing::info!(submission = id, ?outcome, "run of a closed WebSocket cancelled");
        }
    }

    fn subscribe(state: &mut State, client: u64, topic: String) -> bool {
        let Some(c) = state.clients.get_mut(&client) else { return false };
        if c.topics.len() >= MAX_TOPICS_PER_CLIENT && !c.topics.contains(&topic) {
            return false;
        }
        c.topics.insert(topic.clone());
        state.topics.entry(topic).or_default().insert(client);
        true
    }

    /// Sends to one client (answers, errors): never dropped; a full queue closes it.
    fn send_to(&self, client: u64, frame: &Value) {
        let text: Arc<str> = frame.to_string().into();
        let mut state = lock(&self.state);
        if let Some(c) = state.clients.get_mut(&client) {
            deliver(c, &text, false, self.scheduler.metrics());
        }
    }

    /// Sends a frame to every client subscribed to any of `topics`, once each.
    fn publish(&self, topics: &[String], frame: &Value, droppable: bool) {
        let text: Arc<str> = frame.to_string().into();
        let mut state = lock(&self.state);
        let mut targets: Vec<u64> = Vec::new();
        for t in topics {
            if let Some(set) = state.topics.get(t) {
                targets.extend(set.iter().copied());
            }
        }
        targets.sort_unstable();
        targets.dedup();
        for id in targets {
            if let Some(c) = state.clients.get_mut(&id) {
                deliver(c, &text, droppable, self.scheduler.metrics());
            }
        }
    }

    fn run_topics(id: SubmissionId, algorithm: &str) -> Vec<String> {
        let mut topics = vec![execution_topic(id)];
        if !algorithm.is_empty() {
            topics.push(algorithm_topic(algorithm));
        }
        topics
    }

    /// Handles one text message of a client; answers go to its queue.
    async fn handle(&self, client: u64, text: &str) {
        let msg: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return self.error(client, "Invalid message format: expected a JSON object"),
            Err(e) => return self.error(client, &format!("Invalid message format: {e}")),
        };
        let Some(kind) = msg.get("type").and_then(Value::as_str) else {
            return self.error(client, "Invalid message format: missing \"type\"");
        };
        let result = match kind {
            "EXECUTE_ALGORITHM" => self.start(client, &msg, Kind::Execute).await,
            "RUN_TESTS" => self.start(client, &msg, Kind::Tests).await,
            "PERFORMANCE_BENCHMARK" => self.start(client, &msg, Kind::Benchmark).await,
            "SUBSCRIBE" => self.handle_subscribe(client, &msg),
            "CANCEL" => self.handle_cancel(client, &msg),
            "AUTH" => self.handle_auth(client, &msg).await,
            other => Err(format!("Unknown message type: {}", truncate(other, 64))),
        };
        if let Err(message) = result {
            self.error(client, &message);
        }
    }

    fn error(&self, client: u64, message: &str) {
        self.send_to(client, &json!({ "type": "error", "message": message, "timestamp": now_ms() }));
    }

    fn handle_subscribe(&self, client: u64, msg: &Value) -> Result<(), String> {
        let raw = msg.get("topic").and_then(Value::as_str).ok_or("SUBSCRIBE needs a string \"topic\"")?;
        let topic = if raw.bytes().all(|b| b.is_ascii_digit()) && !raw.is_empty() {
            execution_topic(raw.parse().map_err(|_| "bad execution id".to_string())?)
        } else if raw == "cluster" || raw.starts_with("execution:") || raw.starts_with("algorithm:") {
            raw.to_string()
        } else {
            return Err(format!(
                "unknown topic {:?}: use an execution id, \"algorithm:NAME\" or \"cluster\"",
                truncate(raw, 64)
            ));
        };
        if topic.len() > 200 {
            return Err("topic too long".into());
        }
        if !Live::subscribe(&mut lock(&self.state), client, topic.clone()) {
            return Err(format!("too many subscriptions (at most {MAX_TOPICS_PER_CLIENT})"));
        }
        self.send_to(client, &json!({ "type": "SUBSCRIBED", "topic": topic, "timestamp": now_ms() }));
        if topic == "cluster" {
            self.send_to(client, &self.cluster_status());
        }
        Ok(())
    }

    fn handle_cancel(&self, client: u64, msg: &Value) -> Result<(), String> {
        let raw = msg.get("executionId").ok_or("CANCEL needs an \"executionId\"")?;
        let id = match raw {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
        .ok_or("bad executionId")?;
        let owned = lock(&self.state).clients.get(&client).is_some_and(|c| c.runs.contains(&id));
        if !owned {
            return Err(format!("execution {id} is not running on this connection"));
        }
        match self.scheduler.cancel(id, "cancelled by the client") {
            CancelOutcome::NotRunning => Err(format!("execution {id} is not running")),
            // The EXECUTION_ERROR (or TESTS_COMPLETED) follows from the completion.
            CancelOutcome::Dequeued | CancelOutcome::Stopping => Ok(()),
        }
    }

    /// `{"type": "AUTH", "token": "..."}`: the client is that user from now on.
    async fn handle_auth(&self, client: u64, msg: &Value) -> Result<(), String> {
        let token = msg.get("token").and_then(Value::as_str).ok_or("AUTH needs a \"token\"")?;
        let Some(authn) = self.authn.get() else { return Err("authentication is not configured here".into()) };
        let user = match authn.resolve(Some(token)).await {
            Ok(Caller::User(p)) => p,
            Ok(Caller::Anonymous) => return Err("authentication failed".into()),
            Err(e) => return Err(format!("authentication failed: {e}")),
        };
        let frame = json!({
            "type": "AUTHENTICATED",
            "user": { "id": user.user_id, "name": user.name, "role": user.role.as_str() },
            "timestamp": now_ms(),
        });
        if let Some(c) = lock(&self.state).clients.get_mut(&client) {
            c.user = Some(user);
        }
        self.send_to(client, &frame);
        Ok(())
    }

    async fn start(&self, client: u64, msg: &Value, kind: Kind) -> Result<(), String> {
        if let Some(authn) = self.authn.get()
            && !authn.config.allow_anonymous
            && lock(&self.state).clients.get(&client).is_some_and(|c| c.user.is_none())
        {
            return Err("running code needs a credential: connect with ?token=... or send {\"type\": \"AUTH\", \"token\": ...} first".into());
        }
        let code = msg.get("algorithmCode").and_then(Value::as_str).ok_or("missing \"algorithmCode\"")?;
        if code.len() > MAX_CODE_BYTES {
            return Err(format!("algorithmCode is over {MAX_CODE_BYTES} bytes"));
        }
        let language = msg.get("language").and_then(Value::as_str).unwrap_or("python");
        if self.spec.language(language).is_none() || rootfs::harness(language).is_none() {
            return Err(format!("language {:?} cannot run functions here (python, javascript)", truncate(language, 32)));
        }
        let algorithm = msg.get("algorithmName").and_then(Value::as_str).unwrap_or("").to_string();
        if algorithm.len() > 100 {
            return Err("algorithmName is too long".into());
        }
        let meta = self.catalog.algorithm(&algorithm);
        let mut entry_point = msg.get("entryPoint").and_then(Value::as_str).map(str::to_string);
        if entry_point.is_none() {
            entry_point = meta.as_ref().and_then(|m| m.entry_point.clone());
        }
        let unordered = msg
            .get("orderInsensitive")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| meta.as_ref().is_some_and(|m| m.order_insensitive));

        // Per test: arguments, expected value (null: any), input size.
        let tests: Vec<(Value, Value, usize)> = match kind {
            Kind::Execute => vec![(msg.get("testData").cloned().unwrap_or(Value::Null), Value::Null, 0)],
            Kind::Benchmark => BENCHMARK_SIZES
                .iter()
                .flat_map(|&n| {
                    let args = generate_test_data(&algorithm, n);
                    std::iter::repeat_n((args, Value::Null, n), benchmark_repetitions(n))
                })
                .collect(),
            Kind::Tests => match msg.get("testCases") {
                Some(Value::Array(cases)) => cases
                    .iter()
                    .map(|c| {
                        let input = c.get("input").cloned().ok_or("every test case needs an \"input\"")?;
                        let expected = c.get("expected").or_else(|| c.get("expectedOutput")).cloned();
                        Ok((input, expected.unwrap_or(Value::Null), 0))
                    })
                    .collect::<Result<_, &str>>()?,
                Some(_) => return Err("testCases must be an array".into()),
                None => match &meta {
                    Some(m) if !m.tests.is_empty() => {
                        m.tests.iter().map(|t| (t.input.clone(), t.expected.clone(), 0)).collect()
                    }
                    _ => {
                        return Err(format!(
                            "no test cases for algorithm {:?}: send \"testCases\" (the catalog is not there yet)",
                            truncate(&algorithm, 64)
                        ));
                    }
                },
            },
        };
        if tests.is_empty() || tests.len() > 100 {
            return Err("between 1 and 100 test cases".into());
        }
        {
            let state = lock(&self.state);
            if state.clients.get(&client).is_some_and(|c| c.runs.len() >= MAX_RUNS_PER_CLIENT) {
                return Err(format!("at most {MAX_RUNS_PER_CLIENT} runs at once per connection"));
            }
        }
        let submission = NewSubmission {
            language: language.to_string(),
            source: code.as_bytes().to_vec(),
            tests: tests
                .iter()
                .map(|(input, expected, _)| protocol::TestCase {
                    input: input.to_string().into_bytes(),
                    expected_output: (!expected.is_null()).then(|| expected.to_string().into_bytes()),
                })
                .collect(),
            // The seed's limits: 30 s, 512 MB.
            limits: Limits {
                cpu_ms: 10_000,
                wall_ms: 30_000,
                memory_bytes: 512 << 20,
                max_processes: 64,
                output_bytes: 1 << 20,
            },
            options: Default::default(),
            judge0: None,
            problem: None,
        };
        let function = FunctionSpec {
            entry_point: entry_point.unwrap_or_default(),
            algorithm_name: algorithm.clone(),
            unordered,
            max_steps: if kind == Kind::Execute { MAX_STEPS } else { 0 },
        };
        // A benchmark counts sizes, as the seed's frontend shows them, not repetitions.
        let total = if kind == Kind::Benchmark { BENCHMARK_SIZES.len() } else { tests.len() };
        let run = Run {
            kind,
            owner: client,
            algorithm: algorithm.clone(),
            tests,
            returns: BTreeMap::new(),
            results: Vec::new(),
            steps: Vec::new(),
            step_bytes: 0,
            steps_truncated: false,
        };
        let started = self
            .scheduler
            .submit_function(submission, function, |id| {
                // Before the run can be dispatched: no step can come before this.
                {
                    let mut state = lock(&self.state);
                    state.runs.insert(id, run);
                    if let Some(c) = state.clients.get_mut(&client) {
                        c.runs.insert(id);
                    }
                    Live::subscribe(&mut state, client, execution_topic(id));
                }
                let ts = now_ms();
                let frame = match kind {
                    Kind::Execute => json!({ "type": "EXECUTION_STARTED", "executionId": id.to_string(), "timestamp": ts }),
                    Kind::Tests => json!({ "type": "TESTS_STARTED", "executionId": id.to_string(), "totalTests": total, "timestamp": ts }),
                    Kind::Benchmark => json!({ "type": "BENCHMARK_STARTED", "benchmarkId": id.to_string(), "totalTests": total, "timestamp": ts }),
                };
                self.publish(&Live::run_topics(id, &algorithm), &frame, false);
            })
            .await;
        started.map(|_| ()).map_err(|e| e.to_string())
    }

    fn test_summary(run: &Run, result: &TestResult) -> Value {
        let index = result.index as usize;
        let ret = run.returns.get(&result.index);
        let actual = ret.and_then(|r| serde_json::from_slice::<Value>(&r.value).ok()).unwrap_or(Value::Null);
        let (input, expected, size) = run.tests.get(index).cloned().unwrap_or((Value::Null, Value::Null, 0));
        let error = if result.verdict == Verdict::AC { Value::Null } else { Value::String(result.message.clone()) };
        json!({
            "testNumber": index + 1,
            "passed": result.verdict == Verdict::AC,
            "verdict": result.verdict.as_str(),
            "input": input,
            "expected": expected,
            "actual": actual,
            "inputSize": size,
            "executionTime": ret.map_or(0.0, |r| r.function_time_us as f64 / 1000.0),
            "cpuTime": result.cpu_time_us as f64 / 1000.0,
            "memoryUsage": result.peak_memory_bytes as f64 / (1024.0 * 1024.0),
            "output": String::from_utf8_lossy(&result.stdout),
            "error": error,
        })
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((cut, _)) => &s[..cut],
        None => s,
    }
}

/// Puts a frame in a client's queue under the back-pressure policy of the module docs.
fn deliver(c: &mut Client, text: &Arc<str>, droppable: bool, metrics: &crate::metrics::Metrics) {
    if c.close.borrow().is_some() {
        return;
    }
    if droppable && c.tx.capacity() <= RESERVED {
        c.dropped += 1;
        metrics.ws_dropped("step_dropped");
        return;
    }
    if c.dropped > 0 && c.tx.capacity() > RESERVED {
        let notice = json!({ "type": "STEPS_DROPPED", "count": c.dropped, "reason": "client too slow", "timestamp": now_ms() });
        if c.tx.try_send(notice.to_string().into()).is_ok() {
            c.dropped = 0;
        }
    }
    if c.tx.try_send(text.clone()).is_err() {
        metrics.ws_dropped("client_closed");
        let _ = c.close.send(Some("client too slow".into()));
    }
}

impl LiveSink for Live {
    fn step(&self, step: Step) {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Payload {
            #[serde(default)]
            description: Value,
            #[serde(default)]
            data_structure: Value,
            #[serde(default)]
            highlights: Value,
            #[serde(default)]
            truncated: bool,
        }
        // The payload comes from user code: anything that is not a step object is skipped.
        let Ok(p) = serde_json::from_slice::<Payload>(&step.payload) else { return };
        let ts = now_ms();
        let mut body = json!({
            "stepNumber": step.index,
            "description": p.description,
            "dataStructure": p.data_structure,
            "highlights": if p.highlights.is_null() { json!([]) } else { p.highlights },
            "performance": {
                "time": step.cpu_us as f64 / 1000.0,
                "memory": step.memory_bytes as f64 / (1024.0 * 1024.0),
                "operations": step.index + 1,
            },
            "elapsed": step.elapsed_us as f64 / 1000.0,
            "timestamp": ts,
        });
        if p.truncated
            && let Some(o) = body.as_object_mut()
        {
            o.insert("truncated".into(), Value::Bool(true));
        }
        let algorithm = {
            let mut state = lock(&self.state);
            let Some(run) = state.runs.get_mut(&step.submission_id) else { return };
            let kept: Arc<str> = body.to_string().into();
            if run.step_bytes + kept.len() <= KEPT_STEP_BYTES {
                run.step_bytes += kept.len();
                run.steps.push(kept);
            } else {
                run.steps_truncated = true;
            }
            run.algorithm.clone()
        };
        let frame = json!({
            "type": "EXECUTION_STEP",
            "executionId": step.submission_id.to_string(),
            "step": body,
            "timestamp": ts,
        });
        self.publish(&Live::run_topics(step.submission_id, &algorithm), &frame, true);
    }

    fn returned(&self, value: ReturnValue) {
        if let Some(run) = lock(&self.state).runs.get_mut(&value.submission_id) {
            run.returns.insert(value.test_index, value);
        }
    }
}

impl Observer for Live {
    fn test_recorded(&self, result: &TestResult) {
        let id = result.submission_id;
        let (frame, topics) = {
            let mut state = lock(&self.state);
            let Some(run) = state.runs.get_mut(&id) else { return };
            let summary = Live::test_summary(run, result);
            run.results.push(summary.clone());
            let total = run.tests.len();
            let ts = now_ms();
            let frame = match run.kind {
                Kind::Execute => return,
                Kind::Tests => json!({
                    "type": "TEST_RESULT", "executionId": id.to_string(), "totalTests": total,
                    "result": summary, "timestamp": ts,
                }),
                Kind::Benchmark if result.verdict == Verdict::AC => {
                    // One frame per size, after its last repetition, with the size's median.
                    let size = run.tests.get(result.index as usize).map_or(0, |t| t.2);
                    let next = run.tests.get(result.index as usize + 1).map(|t| t.2);
                    if next == Some(size) {
                        return;
                    }
                    let position = BENCHMARK_SIZES.iter().position(|&n| n == size).map_or(0, |p| p + 1);
                    json!({
                        "type": "BENCHMARK_PROGRESS", "benchmarkId": id.to_string(),
                        "currentTest": position, "totalTests": BENCHMARK_SIZES.len(),
                        "result": size_result(&run.results, size),
                        "timestamp": ts,
                    })
                }
                Kind::Benchmark => json!({
                    "type": "BENCHMARK_ERROR", "benchmarkId": id.to_string(),
                    "inputSize": summary["inputSize"], "error": result.message, "timestamp": ts,
                }),
            };
            (frame, Live::run_topics(id, &run.algorithm))
        };
        self.publish(&topics, &frame, false);
    }

    fn completed(&self, id: SubmissionId) {
        let Some(run) = ({
            let mut state = lock(&self.state);
            let run = state.runs.remove(&id);
            if let Some(run) = &run
                && let Some(c) = state.clients.get_mut(&run.owner)
            {
                c.runs.remove(&id);
            }
            run
        }) else {
            return;
        };
        // `get` takes no await point: the state is behind a plain mutex.
        let Some(view) = self.scheduler.get(id).now_or_never().flatten() else { return };
        let topics = Live::run_topics(id, &run.algorithm);
        let frame = completion_frame(id, &run, &view);
        self.publish(&topics, &frame, false);
        // The execution's topic has no more news; subscribers of it are dropped.
        let mut state = lock(&self.state);
        if let Some(clients) = state.topics.remove(&execution_topic(id)) {
            for c in clients {
                if let Some(c) = state.clients.get_mut(&c) {
                    c.topics.remove(&execution_topic(id));
                }
            }
        }
    }
}

fn completion_frame(id: SubmissionId, run: &Run, view: &SubmissionView) -> Value {
    let ts = now_ms();
    let verdict = view.verdict.unwrap_or(Verdict::IE);
    let error_text = if view.message.is_empty() { verdict.as_str().to_string() } else { view.message.clone() };
    match run.kind {
        Kind::Execute => {
            let test = view.tests.first().map(|t| &t.result);
            // Cancels, judge failures and time-outs are errors of the execution, as the
            // seed's engine rejects on its timeout; anything the code did is a result.
            let failed_to_run = matches!(verdict, Verdict::IE | Verdict::TLE) || test.is_none();
            if failed_to_run {
                return json!({ "type": "EXECUTION_ERROR", "executionId": id.to_string(), "error": error_text, "timestamp": ts });
            }
            let ret = run.returns.get(&0);
            let value = ret.and_then(|r| serde_json::from_slice::<Value>(&r.value).ok()).unwrap_or(Value::Null);
            let steps: Vec<Value> = run.steps.iter().filter_map(|s| serde_json::from_str(s).ok()).collect();
            let (cpu_us, wall_us, peak, stdout) =
                test.map_or((0, 0, 0, String::new()), |t| (t.cpu_time_us, t.wall_time_us, t.peak_memory_bytes, String::from_utf8_lossy(&t.stdout).into_owned()));
            json!({
                "type": "EXECUTION_COMPLETED",
                "executionId": id.to_string(),
                "result": {
                    "success": verdict == Verdict::AC,
                    "result": value,
                    "executionTime": ret.map_or(wall_us as f64 / 1000.0, |r| r.function_time_us as f64 / 1000.0),
                    "memoryUsage": peak as f64 / (1024.0 * 1024.0),
                    "cpuUsage": if wall_us > 0 { (cpu_us as f64 / wall_us as f64 * 100.0).min(100.0) } else { 0.0 },
                    "cpuTime": cpu_us as f64 / 1000.0,
                    "wallTime": wall_us as f64 / 1000.0,
                    "output": stdout,
                    "steps": steps,
                    "stepCount": ret.map_or(0, |r| r.steps),
                    "stepsDropped": ret.map_or(0, |r| r.steps_dropped),
                    "stepsTruncated": run.steps_truncated,
                    "verdict": verdict.as_str(),
                    "error": if verdict == Verdict::AC { Value::Null } else { Value::String(error_text) },
                },
                "timestamp": ts,
            })
        }
        Kind::Tests => {
            let passed = run.results.iter().filter(|r| r["passed"] == Value::Bool(true)).count();
            json!({
                "type": "TESTS_COMPLETED",
                "executionId": id.to_string(),
                "success": verdict == Verdict::AC,
                "verdict": verdict.as_str(),
                "passed": passed,
                "failed": run.tests.len() - passed,
                "total": run.tests.len(),
                "results": run.results,
                "error": if verdict == Verdict::AC { Value::Null } else { Value::String(error_text) },
                "timestamp": ts,
            })
        }
        Kind::Benchmark => {
            let mut sizes: Vec<u64> = run.results.iter().filter_map(|r| r["inputSize"].as_u64()).collect();
            sizes.dedup();
            let results: Vec<Value> = sizes.iter().map(|&n| size_result(&run.results, n as usize)).collect();
            if matches!(verdict, Verdict::IE | Verdict::CE) && results.is_empty() {
                return json!({ "type": "BENCHMARK_ERROR", "benchmarkId": id.to_string(), "error": error_text, "timestamp": ts });
            }
            json!({
                "type": "BENCHMARK_COMPLETED",
                "benchmarkId": id.to_string(),
                "results": results,
                "complexityAnalysis": benchmark_analysis(&run.results),
                "timestamp": ts,
            })
        }
    }
}

/// A benchmark's result for one size, over its repetitions: the median call time (one
/// preempted run does not move it), the largest peak memory, success if all passed.
fn size_result(results: &[Value], size: usize) -> Value {
    let runs: Vec<&Value> = results.iter().filter(|r| r["inputSize"].as_u64() == Some(size as u64)).collect();
    let mut times: Vec<f64> = runs.iter().filter_map(|r| r["executionTime"].as_f64()).collect();
    times.sort_by(f64::total_cmp);
    let median = match times.len() {
        0 => 0.0,
        len if len % 2 == 1 => times[len / 2],
        len => (times[len / 2 - 1] + times[len / 2]) / 2.0,
    };
    let memory = runs.iter().filter_map(|r| r["memoryUsage"].as_f64()).fold(0.0, f64::max);
    let success = !runs.is_empty() && runs.iter().all(|r| r["passed"] == Value::Bool(true));
    json!({ "inputSize": size, "executionTime": median, "memoryUsage": memory, "success": success, "runs": runs.len() })
}

/// The complexity fit of a benchmark's passed runs (`complexityAnalysis`), every
/// repetition a sample.
///
/// The value fitted is `executionTime`, the function call alone timed inside the sandbox:
/// it leaves out interpreter start-up and the harness, which the cgroup's `cpuTime`
/// includes (a constant the fit would have to absorb in `b`, and noisier). The cgroup CPU
/// time is the fallback when a run has no call time (0: the harness did not report one).
/// `measure` says which was used.
fn benchmark_analysis(results: &[Value]) -> Value {
    let passed: Vec<&Value> = results.iter().filter(|r| r["passed"] == Value::Bool(true)).collect();
    let call_times = passed.iter().all(|r| r["executionTime"].as_f64().is_some_and(|t| t > 0.0));
    let (field, measure) = if call_times { ("executionTime", "functionTime") } else { ("cpuTime", "cpuTime") };
    let samples: Vec<Sample> = passed
        .iter()
        .filter_map(|r| Some(Sample { n: r["inputSize"].as_f64()?, value: r[field].as_f64()? }))
        .collect();
    let mut analysis = complexity::to_json(complexity::analyze(&samples).as_ref());
    if let Some(obj) = analysis.as_object_mut() {
        obj.insert("measure".into(), Value::from(measure));
        obj.insert("unit".into(), Value::from("ms"));
    }
    analysis
}

/// The salvo handler of `GET /ws`.
pub struct WsEndpoint {
    live: Arc<Live>,
}

#[async_trait]
impl Handler for WsEndpoint {
    async fn handle(&self, req: &mut Request, _depot: &mut Depot, res: &mut Response, _ctrl: &mut FlowCtrl) {
        let live = self.live.clone();
        // A bad token is refused before the upgrade, as the HTTP API would.
        let user = match (req.query::<String>("token"), live.authn.get()) {
            (Some(token), Some(authn)) => match authn.resolve(Some(&token)).await {
                Ok(Caller::User(p)) => Some(p),
                Ok(Caller::Anonymous) => None,
                Err(e) => return e.write(res),
            },
            _ => None,
        };
        let upgrade = WebSocketUpgrade::new().max_message_size(MAX_MESSAGE_BYTES).max_frame_size(MAX_MESSAGE_BYTES);
        if let Err(e) = upgrade.upgrade(req, res, move |ws| connection(live, ws, user)).await {
            res.render(e);
        }
    }
}

/// One WebSocket connection: its queue out, its messages in, until either side ends.
async fn connection(live: Arc<Live>, ws: WebSocket, user: Option<Principal>) {
    let (client, mut frames, mut close) = live.register(user);
    tracing::debug!(client, "websocket connected");
    let (mut sink, mut stream) = ws.split();
    let reason: Option<(u16, String)> = loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break None };
                // Whatever else is queued goes out with it, in one flush.
                let mut batch = vec![frame];
                while batch.len() < 64 && let Ok(more) = frames.try_recv() {
                    batch.push(more);
                }
                let mut failed = false;
                for f in batch {
                    if sink.feed(Message::text(f.to_string())).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || sink.flush().await.is_err() {
                    break None;
                }
            }
            changed = close.changed() => {
                let why = close.borrow().clone();
                if changed.is_err() || why.is_some() {
                    break Some((1008, why.unwrap_or_default()));
                }
            }
            msg = stream.next() => match msg {
                None => break None,
                Some(Err(e)) => {
                    let text = e.to_string();
                    // tungstenite's capacity errors: the message or frame was over the cap.
                    if text.contains("too long") || text.contains("Space limit") || text.contains("apacity") {
                        break Some((1009, format!("message over {MAX_MESSAGE_BYTES} bytes")));
                    }
                    tracing::debug!(client, error = %text, "websocket read failed");
                    break None;
                }
                Some(Ok(m)) if m.is_close() => break None,
                Some(Ok(m)) if m.is_ping() || m.is_pong() => {}
                Some(Ok(m)) => match m.as_str() {
                    Ok(text) if m.is_text() => live.handle(client, text).await,
                    _ => live.error(client, "Invalid message format: send JSON text messages"),
                },
            }
        }
    };
    live.unregister(client);
    if let Some((code, why)) = reason {
        tracing::info!(client, code, reason = %why, "closing websocket");
        let _ = sink.send(Message::close_with(code, why)).await;
    }
    let _ = sink.close().await;
    tracing::debug!(client, "websocket closed");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn result(n: usize, call_ms: f64, cpu_ms: f64, passed: bool) -> Value {
        json!({ "inputSize": n, "executionTime": call_ms, "cpuTime": cpu_ms, "memoryUsage": 1.0, "passed": passed })
    }

    #[test]
    fn benchmark_analysis_fits_the_call_time() {
        // Quadratic call times; the cgroup CPU adds 40 ms of interpreter start-up.
        let results: Vec<Value> = BENCHMARK_SIZES
            .iter()
            .map(|&n| {
                let call = 1e-4 * (n * n) as f64;
                result(n, call, call + 40.0, true)
            })
            .collect();
        let a = benchmark_analysis(&results);
        assert_eq!(a["bestFit"], "O(n²)", "{a}");
        assert_eq!(a["measure"], "functionTime");
        assert_eq!(a["samples"], 5);
        assert!(a["coefficients"]["a"].as_f64().unwrap() > 0.0);
        assert!(a["runnerUp"]["fit"].is_string());
        let growth = a["growth"].as_f64().unwrap();
        assert!((growth - 2500.0).abs() < 1.0, "{growth}");
    }

    #[test]
    fn benchmark_analysis_falls_back_to_cpu_time_and_skips_failures() {
        let mut results: Vec<Value> =
            BENCHMARK_SIZES.iter().map(|&n| result(n, 0.0, 30.0 + 0.01 * n as f64, true)).collect();
        results.push(result(10_000, 0.0, 99_999.0, false));
        let a = benchmark_analysis(&results);
        assert_eq!(a["measure"], "cpuTime");
        assert_eq!(a["bestFit"], "O(n)", "{a}");
        assert_eq!(a["samples"], 5);
    }

    #[test]
    fn size_result_takes_the_median_of_the_repetitions() {
        let results =
            [result(100, 5.0, 9.0, true), result(100, 1.0, 9.0, true), result(100, 2.0, 9.0, true), result(500, 7.0, 9.0, false)];
        let r = size_result(&results, 100);
        assert_eq!(r["executionTime"], 2.0);
        assert_eq!(r["runs"], 3);
        assert_eq!(r["success"], true);
        assert_eq!(size_result(&results, 500)["success"], false);
    }

    #[test]
    fn benchmark_analysis_without_enough_runs_is_unknown() {
        let a = benchmark_analysis(&[result(100, 1.0, 2.0, true), result(500, 0.0, 0.0, false)]);
        assert_eq!(a["bestFit"], "Unknown");
        assert_eq!(a["confidence"], 0.0);
    }
}
