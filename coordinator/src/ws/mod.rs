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
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, SinkExt, StreamExt};
use protocol::{FunctionSpec, Limits, ReturnValue, Step, TestResult, Verdict};
use rootfs::Spec;
use salvo::websocket::{Message, WebSocket, WebSocketUpgrade};
use salvo::{Depot, FlowCtrl, Handler, Request, Response, async_trait};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::analytics::benchmark::{self as bench, InputKind, SizeRun};
use crate::api::limits::{Key, RunCaps, Ticket};
use crate::api::{Authn, Caller};
use crate::store::auth::Principal;

use crate::judge::{NewSubmission, SubmissionId};
use crate::link::LiveSink;
use crate::scheduler::{CancelOutcome, Observer, Scheduler, SubmissionView};
use catalog::Catalog;

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
    /// Per test: whether its data (arguments, answer, what the code returned, printed or
    /// raised) is withheld from the frames: a catalog test that is not a sample, run by
    /// anybody but a setter or admin.
    hidden: Vec<bool>,
    returns: BTreeMap<u32, ReturnValue>,
    results: Vec<Value>,
    steps: Vec<Arc<str>>,
    step_bytes: usize,
    steps_truncated: bool,
    /// Benchmarks: what each size measured, in order, and why the series stopped early.
    sizes: Vec<SizeRun>,
    stopped: Option<String>,
    /// An internal error that ends the benchmark without a result (the input generator
    /// failed, a sandbox broke): BENCHMARK_ERROR, whatever sizes passed before.
    failed: Option<String>,
    /// The built-in input kind's name, or `generator:<hash>` of the generator program.
    input_kind: Option<String>,
    /// What a stored benchmark records about its run (empty for other kinds).
    language: String,
    source: Vec<u8>,
    seed: u64,
}

struct Client {
    tx: mpsc::Sender<Arc<str>>,
    /// Who this client is, from the `token` query parameter or an `AUTH` message.
    user: Option<Principal>,
    /// The peer's address: what an anonymous client's runs count against.
    ip: IpAddr,
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
    /// MAX_EXECUTION_TIME, MAX_MEMORY_USAGE, MAX_CONCURRENT_EXECUTIONS; unset: the
    /// runs' own limits and no cap on unfinished runs.
    caps: std::sync::OnceLock<RunCaps>,
    /// The REST API's per-caller request budget, also spent by the upgrade to /ws and by
    /// every run a client starts here; unset: unlimited.
    rate: std::sync::OnceLock<Arc<crate::api::limits::RateLimiter>>,
    scheduler: Scheduler,
    spec: Arc<Spec>,
    catalog: Arc<dyn Catalog>,
    state: Mutex<State>,
    /// Where finished benchmarks are kept (`/api/analytics/benchmarks`); none without a
    /// database.
    store: std::sync::OnceLock<crate::store::Store>,
    /// This hub, for tasks that outlive a callback (storing a benchmark).
    me: std::sync::Weak<Live>,
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
        let live = Arc::new_cyclic(|me| Live {
            authn: std::sync::OnceLock::new(),
            caps: std::sync::OnceLock::new(),
            rate: std::sync::OnceLock::new(),
            scheduler,
            spec,
            catalog,
            state: Mutex::new(State::default()),
            store: std::sync::OnceLock::new(),
            me: me.clone(),
        });
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

    /// Keeps finished benchmarks in the store from now on; only the first call counts.
    pub fn set_store(&self, store: crate::store::Store) {
        let _ = self.store.set(store);
    }

    /// Checks clients' credentials with `authn` and applies its anonymous-run rule. Once.
    pub fn set_auth(&self, authn: Authn) {
        let _ = self.authn.set(authn);
    }

    /// Applies the operator's caps to every run started here (limits lowered to them,
    /// unfinished runs counted per user or anonymous IP with the REST API's). Once.
    pub fn set_run_caps(&self, caps: RunCaps) {
        let _ = self.caps.set(caps);
    }

    /// Spends `limiter`'s budget (the REST API's, shared per user or anonymous IP) on
    /// the upgrade to /ws and on each run started over it. Once.
    pub fn set_rate_limiter(&self, limiter: Arc<crate::api::limits::RateLimiter>) {
        let _ = self.rate.set(limiter);
    }

    /// What the catalog says of `name`: the store's entry when there is one (an
    /// algorithm a setter added or edited, as the catalog API shows it now, with its
    /// benchmark generator), with what only the shipped catalog knows
    /// (`orderInsensitive`); else the shipped catalog's.
    async fn algorithm_meta(&self, name: &str) -> Option<catalog::Algorithm> {
        let shipped = self.catalog.algorithm(name);
        let Some(store) = self.store.get().filter(|_| !name.is_empty()) else { return shipped };
        let stored = match store.get_algorithm(name).await {
            Ok(Some(a)) => a,
            Ok(None) => return shipped,
            Err(e) => {
                tracing::warn!(algorithm = name, error = %e, "catalog lookup failed; using the shipped catalog");
                return shipped;
            }
        };
        let order_insensitive = shipped.as_ref().is_some_and(|s| s.order_insensitive);
        let mut algorithm = catalog::Algorithm::of_catalog(
            stored.slug,
            stored.entry_point,
            stored.category,
            stored.test_cases,
            stored.generator,
            order_insensitive,
        );
        // A database seeded before generators were stored has none for Dijkstra.
        algorithm.generator = algorithm.generator.or_else(|| shipped.and_then(|s| s.generator));
        Some(algorithm)
    }

    /// Counts one request of `key` against the rate limit.
    fn rate_check(&self, key: &Key) -> Result<(), crate::api::ApiError> {
        match self.rate.get() {
            Some(limiter) => limiter.admit(key).inspect_err(|_| self.scheduler.metrics().rate_limited(key.scope())),
            None => Ok(()),
        }
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

    fn register(&self, user: Option<Principal>, ip: IpAddr) -> (u64, mpsc::Receiver<Arc<str>>, watch::Receiver<Option<String>>) {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let (close, close_rx) = watch::channel(None);
        let mut state = lock(&self.state);
        state.next_client += 1;
        let id = state.next_client;
        state.clients.insert(id, Client { tx, user, ip, dropped: 0, close, topics: HashSet::new(), runs: HashSet::new() });
        self.scheduler.metrics().ws_client(true);
        (id, rx, close_rx)
    }

    /// Forgets a client and cancels the runs it started: nobody asked for them anymore.
    async fn unregister(&self, client: u64) {
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
            let outcome = self.scheduler.cancel(id, "the client disconnected").await;
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
            "CANCEL" => self.handle_cancel(client, &msg).await,
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

    async fn handle_cancel(&self, client: u64, msg: &Value) -> Result<(), String> {
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
        match self.scheduler.cancel(id, "cancelled by the client").await {
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
            return Err(format!("language {:?} cannot run functions here (python, javascript, c)", truncate(language, 32)));
        }
        let algorithm = msg.get("algorithmName").and_then(Value::as_str).unwrap_or("").to_string();
        if algorithm.len() > 100 {
            return Err("algorithmName is too long".into());
        }
        let meta = self.algorithm_meta(&algorithm).await;
        let mut entry_point = msg.get("entryPoint").and_then(Value::as_str).map(str::to_string);
        if entry_point.is_none() {
            entry_point = meta.as_ref().and_then(|m| m.entry_point.clone());
        }
        let unordered = msg
            .get("orderInsensitive")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| meta.as_ref().is_some_and(|m| m.order_insensitive));

        let mut input_kind = None;
        let mut generator = None;
        let mut seed = 0;
        let mut hidden = Vec::new();
        // Per test: arguments, expected value (null: any), input size.
        let tests: Vec<(Value, Value, usize)> = match kind {
            Kind::Execute => vec![(msg.get("testData").cloned().unwrap_or(Value::Null), Value::Null, 0)],
            Kind::Benchmark => {
                let input = benchmark_input(msg, &algorithm, meta.as_ref())?;
                seed = msg.get("seed").and_then(Value::as_u64).filter(|s| i64::try_from(*s).is_ok()).unwrap_or(1);
                let largest = match &input {
                    BenchInput::Builtin(kind) => kind.max_size(),
                    BenchInput::Program(g) => {
                        if self.spec.language(&g.language).is_none() {
                            return Err(format!("the generator's language {:?} is not one of /api/languages", truncate(&g.language, 32)));
                        }
                        bench::GENERATOR_MAX_SIZE
                    }
                };
                let max = msg
                    .get("maxSize")
                    .and_then(Value::as_u64)
                    .map_or(largest, |m| (m as usize).clamp(bench::FIRST_SIZE, largest));
                let sizes = bench::sizes(bench::FIRST_SIZE, max).into_iter();
                match input {
                    BenchInput::Builtin(kind) => {
                        input_kind = Some(kind.name().to_string());
                        sizes.map(|n| (bench::generate(kind, &algorithm, n, seed), Value::Null, n)).collect()
                    }
                    BenchInput::Program(g) => {
                        input_kind = Some(g.kind_name());
                        generator = Some(g);
                        // What the summaries show as a size's input: the generator's.
                        sizes.map(|n| (json!({ "generator": bench::GeneratorSource::stdin(n, seed).trim() }), Value::Null, n)).collect()
                    }
                }
            }
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
                        let setter = lock(&self.state)
                            .clients
                            .get(&client)
                            .and_then(|c| c.user.as_ref())
                            .is_some_and(|p| p.role >= crate::store::auth::Role::Setter);
                        hidden = m.tests.iter().map(|t| !t.sample && !setter).collect();
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
        let key = {
            let state = lock(&self.state);
            let Some(c) = state.clients.get(&client) else { return Err("the connection is closing".into()) };
            if c.runs.len() >= MAX_RUNS_PER_CLIENT {
                return Err(format!("at most {MAX_RUNS_PER_CLIENT} runs at once per connection"));
            }
            c.user.as_ref().map_or(Key::Ip(c.ip), |p| Key::User(p.user_id))
        };
        self.rate_check(&key).map_err(|e| e.to_string())?;
        // MAX_CONCURRENT_EXECUTIONS, with the caller's runs through the REST API: a place
        // is reserved now and goes to the run once it has an id.
        let caps = self.caps.get();
        let admission = match caps.map(|c| c.admit(&self.scheduler, key)) {
            None => None,
            Some(Ok(a)) => a,
            Some(Err((running, max))) => {
                return Err(format!("{running} runs of yours are unfinished; at most {max} at once"));
            }
        };
        let submission = NewSubmission {
            language: language.to_string(),
            source: code.as_bytes().to_vec(),
            tests: tests
                .iter()
                .map(|(input, expected, n)| protocol::TestCase {
                    // With a generator, a test is the generator's stdin for its size.
                    input: match &generator {
                        Some(_) => bench::GeneratorSource::stdin(*n, seed).into_bytes(),
                        None => input.to_string().into_bytes(),
                    },
                    expected_output: (!expected.is_null()).then(|| expected.to_string().into_bytes()),
                })
                .collect(),
            // The seed's limits: 30 s, 512 MB; a benchmark's size gets its budget, the
            // first call (up to the stop threshold) and the harness's start-up and copies.
            // Lowered to the operator's caps (MAX_EXECUTION_TIME, MAX_MEMORY_USAGE): a
            // benchmark size that then runs out of time ends the series early.
            limits: caps.map_or_else(
                || run_limits(kind),
                |c| c.clamp(run_limits(kind)),
            ),
            options: Default::default(),
            judge0: None,
            problem: None,
        };
        let function = FunctionSpec {
            entry_point: entry_point.unwrap_or_default(),
            algorithm_name: algorithm.clone(),
            unordered,
            max_steps: if kind == Kind::Execute { MAX_STEPS } else { 0 },
            repetitions: if kind == Kind::Benchmark { bench::REPETITIONS } else { 0 },
            budget_ms: if kind == Kind::Benchmark { bench::SIZE_BUDGET_MS } else { 0 },
            generator: generator
                .as_ref()
                .map(|g| protocol::Generator { language: g.language.clone(), source: g.source.as_bytes().to_vec() }),
        };
        let total = tests.len();
        let algorithm_sizes: Vec<usize> = tests.iter().map(|t| t.2).collect();
        let run = Run {
            kind,
            owner: client,
            algorithm: algorithm.clone(),
            tests,
            hidden,
            returns: BTreeMap::new(),
            results: Vec::new(),
            steps: Vec::new(),
            step_bytes: 0,
            steps_truncated: false,
            sizes: Vec::new(),
            stopped: None,
            failed: None,
            input_kind: input_kind.clone(),
            language: language.to_string(),
            source: if kind == Kind::Benchmark { code.as_bytes().to_vec() } else { Vec::new() },
            seed,
        };
        let started = self
            .scheduler
            .submit_function(submission, function, |id| {
                if let Some(a) = admission {
                    a.record(vec![Ticket::Id(id)]);
                }
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
                    Kind::Benchmark => json!({
                        "type": "BENCHMARK_STARTED", "benchmarkId": id.to_string(), "totalTests": total,
                        "inputSizes": algorithm_sizes, "inputKind": input_kind,
                        "repetitions": bench::REPETITIONS, "sizeBudgetMs": bench::SIZE_BUDGET_MS, "timestamp": ts,
                    }),
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
        if run.hidden.get(index).copied().unwrap_or(false) {
            let error = (result.verdict != Verdict::AC).then(|| format!("{} on a hidden test", result.verdict.as_str()));
            return json!({
                "testNumber": index + 1,
                "passed": result.verdict == Verdict::AC,
                "verdict": result.verdict.as_str(),
                "hidden": true,
                "input": Value::Null,
                "expected": Value::Null,
                "actual": Value::Null,
                "inputSize": size,
                "executionTime": ret.map_or(0.0, |r| r.function_time_us as f64 / 1000.0),
                "cpuTime": result.cpu_time_us as f64 / 1000.0,
                "memoryUsage": result.peak_memory_bytes as f64 / (1024.0 * 1024.0),
                "output": "",
                "error": error,
            });
        }
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

/// The seed's limits of a run: 10 s of CPU, 30 s, 512 MB; a benchmark's size gets its
/// budget, the first call (up to the stop threshold) and the harness's start-up and copies.
fn run_limits(kind: Kind) -> Limits {
    let benchmark_cpu_ms = u64::from(3 * bench::SIZE_BUDGET_MS + 3_000);
    Limits {
        cpu_ms: if kind == Kind::Benchmark { benchmark_cpu_ms } else { 10_000 },
        wall_ms: if kind == Kind::Benchmark { 3 * benchmark_cpu_ms } else { 30_000 },
        memory_bytes: 512 << 20,
        max_processes: 64,
        output_bytes: 1 << 20,
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

impl Live {
    /// Stores a finished benchmark in the background, then tells the run's subscribers
    /// its id with `BENCHMARK_SAVED` (a database failure is logged, the run is not
    /// affected).
    fn save_benchmark(&self, store: crate::store::Store, id: SubmissionId, run: &Run, frame: &Value, topics: Vec<String>) {
        let record = crate::store::benchmarks::NewBenchmark {
            algorithm_name: run.algorithm.clone(),
            language: run.language.clone(),
            input_kind: run.input_kind.clone().unwrap_or_else(|| InputKind::Array.name().to_string()),
            seed: run.seed,
            source: run.source.clone(),
            results: frame["results"].clone(),
            complexity: frame["complexityAnalysis"].clone(),
            memory: frame["memoryAnalysis"].clone(),
            seed_method: frame["seedMethod"].clone(),
            stopped_early: run.stopped.clone(),
        };
        let Some(live) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            match store.insert_benchmark(&record).await {
                Ok(stored) => {
                    let saved = json!({ "type": "BENCHMARK_SAVED", "benchmarkId": id.to_string(), "id": stored, "timestamp": now_ms() });
                    live.publish(&topics, &saved, false);
                }
                Err(e) => tracing::warn!(submission = id, error = %e, "storing a benchmark failed"),
            }
        });
    }
}

impl Observer for Live {
    fn test_recorded(&self, result: &TestResult) {
        let id = result.submission_id;
        let mut stop = false;
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
                // After the series stopped, the cancelled size's result is no news.
                Kind::Benchmark if run.stopped.is_some() || run.failed.is_some() => return,
                // The judge could not measure this size (the generator failed, a sandbox
                // broke): no measurement of the user's code, the benchmark has failed.
                Kind::Benchmark if result.verdict == Verdict::IE => {
                    run.failed = Some(if result.message.is_empty() { "internal error".into() } else { result.message.clone() });
                    return;
                }
                Kind::Benchmark => {
                    let size = size_run(run, result);
                    let stops = size.stops_series() && (result.index as usize + 1) < total;
                    // A failed size is a progress frame with `success: false` and its error:
                    // BENCHMARK_ERROR ends a benchmark for the seed's frontend, and the sizes
                    // before it still make a result.
                    let frame = json!({
                        "type": "BENCHMARK_PROGRESS", "benchmarkId": id.to_string(),
                        "currentTest": result.index + 1, "totalTests": total,
                        "result": size.to_json(), "timestamp": ts,
                    });
                    if stops {
                        let why = if size.passed {
                            format!("a call at n = {} took over {} ms, a third of the size's budget", size.n, bench::STOP_CALL_NS / 1_000_000)
                        } else {
                            format!("n = {} failed: {}", size.n, result.message)
                        };
                        run.stopped = Some(why);
                        stop = true;
                    }
                    run.sizes.push(size);
                    frame
                }
            };
            (frame, Live::run_topics(id, &run.algorithm))
        };
        self.publish(&topics, &frame, false);
        if stop {
            // The larger sizes would only take longer; BENCHMARK_COMPLETED follows the cancel.
            // Called while a command is applied: the cancel is a proposal of its own, so it
            // must not be awaited here.
            let scheduler = self.scheduler.clone();
            tokio::spawn(async move {
                let outcome = scheduler.cancel(id, "the benchmark's series stopped").await;
                tracing::debug!(submission = id, ?outcome, "benchmark series stopped");
            });
        }
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
        if frame["type"] == "BENCHMARK_COMPLETED"
            && let Some(store) = self.store.get()
        {
            self.save_benchmark(store.clone(), id, &run, &frame, topics.clone());
        }
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
    let mut error_text = if view.message.is_empty() { verdict.as_str().to_string() } else { view.message.clone() };
    if verdict == Verdict::CE && !view.compile_output.trim().is_empty() {
        // What the compiler said is the useful part (a C function's code linked with the
        // harness, say, that defines its own main).
        error_text = format!("{error_text}: {}", truncate(view.compile_output.trim(), 2000));
    }
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
            // The judge's message names the first failing test and quotes its answer.
            let failed_hidden = view.tests.iter().any(|t| {
                t.result.verdict != Verdict::AC && run.hidden.get(t.result.index as usize).copied().unwrap_or(false)
            });
            if failed_hidden && verdict != Verdict::CE {
                error_text = format!("{}: a hidden test failed", verdict.as_str());
            }
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
            if let Some(failed) = &run.failed {
                return json!({ "type": "BENCHMARK_ERROR", "benchmarkId": id.to_string(), "error": failed, "timestamp": ts });
            }
            if run.sizes.iter().all(|s| !s.passed) {
                return json!({ "type": "BENCHMARK_ERROR", "benchmarkId": id.to_string(), "error": error_text, "timestamp": ts });
            }
            let (time, memory, seed) = bench::analyses(&run.sizes, &run.language);
            json!({
                "type": "BENCHMARK_COMPLETED",
                "benchmarkId": id.to_string(),
                "results": run.sizes.iter().map(SizeRun::to_json).collect::<Vec<_>>(),
                "complexityAnalysis": time,
                "memoryAnalysis": memory,
                "seedMethod": seed,
                "inputKind": run.input_kind,
                "stoppedEarly": run.stopped,
                "timestamp": ts,
            })
        }
    }
}

/// One size's measurements from its test result and the harness's report.
fn size_run(run: &Run, result: &TestResult) -> SizeRun {
    let n = run.tests.get(result.index as usize).map_or(0, |t| t.2);
    let ret = run.returns.get(&result.index);
    let empty_ns = ret.map_or(0, |r| r.empty_call_cpu_ns);
    let call_ms: Vec<f64> = ret
        .map(|r| r.call_cpu_ns.iter().map(|&ns| ns.saturating_sub(empty_ns) as f64 / 1e6).collect())
        .unwrap_or_default();
    let passed = result.verdict == Verdict::AC && !call_ms.is_empty();
    SizeRun {
        n,
        call_ms,
        empty_ms: empty_ns as f64 / 1e6,
        call_peak_bytes: ret.and_then(|r| r.call_peak_bytes),
        run_peak_bytes: result.peak_memory_bytes,
        run_cpu_ms: result.cpu_time_us as f64 / 1000.0,
        passed,
        error: (!passed).then(|| {
            if result.message.is_empty() { "the harness reported no measurements".to_string() } else { result.message.clone() }
        }),
    }
}

/// Where a benchmark's inputs come from.
#[derive(Debug, Clone, PartialEq)]
enum BenchInput {
    Builtin(InputKind),
    Program(bench::GeneratorSource),
}

/// The benchmark's inputs: the message's `generator` program, else its `inputKind`
/// (`generator`: the algorithm's own generator), else the algorithm's generator if the
/// catalog has one, else the seed's generator for the seed's own algorithm names, else
/// a built-in kind from the catalog's category.
fn benchmark_input(msg: &Value, algorithm: &str, meta: Option<&catalog::Algorithm>) -> Result<BenchInput, String> {
    let own = || meta.and_then(|m| m.generator.clone());
    if let Some(g) = msg.get("generator") {
        if msg.get("inputKind").is_some() {
            return Err("send either \"generator\" or \"inputKind\", not both".into());
        }
        let language = g.get("language").and_then(Value::as_str).ok_or("generator.language must be a language id")?;
        let code = g.get("code").and_then(Value::as_str).ok_or("generator.code must be the generator's source")?;
        if code.len() > MAX_CODE_BYTES {
            return Err(format!("generator.code is over {MAX_CODE_BYTES} bytes"));
        }
        return Ok(BenchInput::Program(bench::GeneratorSource { language: language.to_string(), source: code.to_string() }));
    }
    if let Some(raw) = msg.get("inputKind") {
        let name = raw.as_str().ok_or("inputKind must be a string")?;
        if name == "generator" {
            return own().map(BenchInput::Program).ok_or_else(|| {
                format!("algorithm {:?} has no input generator: send one as \"generator\": {{language, code}}", truncate(algorithm, 64))
            });
        }
        return InputKind::parse(name).map(BenchInput::Builtin).ok_or_else(|| {
            format!("unknown inputKind {:?}: array, sorted_array, string, graph, number, seed or generator", truncate(name, 32))
        });
    }
    if let Some(g) = own() {
        return Ok(BenchInput::Program(g));
    }
    if matches!(algorithm, "two_sum" | "twoSum") {
        return Ok(BenchInput::Builtin(InputKind::Seed));
    }
    Ok(BenchInput::Builtin(meta.and_then(|m| m.category.as_deref()).map_or(InputKind::Array, InputKind::for_category)))
}

/// The salvo handler of `GET /ws`.
pub struct WsEndpoint {
    live: Arc<Live>,
}

#[async_trait]
impl Handler for WsEndpoint {
    async fn handle(&self, req: &mut Request, _depot: &mut Depot, res: &mut Response, _ctrl: &mut FlowCtrl) {
        let live = self.live.clone();
        let ip = crate::api::client_ip(req);
        // A bad token is refused before the upgrade, as the HTTP API would.
        let user = match (req.query::<String>("token"), live.authn.get()) {
            (Some(token), Some(authn)) => match authn.resolve(Some(&token)).await {
                Ok(Caller::User(p)) => Some(p),
                Ok(Caller::Anonymous) => None,
                Err(e) => return e.write(res),
            },
            _ => None,
        };
        // The upgrade is a request like any other: it spends the caller's budget.
        let key = user.as_ref().map_or(Key::Ip(ip), |p| Key::User(p.user_id));
        if let Err(e) = live.rate_check(&key) {
            return e.write(res);
        }
        let upgrade = WebSocketUpgrade::new().max_message_size(MAX_MESSAGE_BYTES).max_frame_size(MAX_MESSAGE_BYTES);
        if let Err(e) = upgrade.upgrade(req, res, move |ws| connection(live, ws, user, ip)).await {
            res.render(e);
        }
    }
}

/// One WebSocket connection: its queue out, its messages in, until either side ends.
async fn connection(live: Arc<Live>, ws: WebSocket, user: Option<Principal>, ip: IpAddr) {
    let (client, mut frames, mut close) = live.register(user, ip);
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
    live.unregister(client).await;
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

    fn algorithm(category: Option<&str>) -> catalog::Algorithm {
        catalog::Algorithm {
            name: "x".into(),
            entry_point: None,
            order_insensitive: false,
            tests: Vec::new(),
            category: category.map(str::to_string),
            generator: None,
        }
    }

    struct NoAgents;

    impl crate::link::Dispatch for NoAgents {
        fn dispatch(&self, _agent_id: &str, _job: protocol::Job) -> Result<(), crate::link::DispatchError> {
            Ok(())
        }
    }

    async fn next_frame(frames: &mut mpsc::Receiver<Arc<str>>) -> Value {
        let frame = tokio::time::timeout(Duration::from_secs(10), frames.recv()).await.unwrap().unwrap();
        serde_json::from_str(&frame).unwrap()
    }

    /// MAX_EXECUTION_TIME and MAX_MEMORY_USAGE lower every /ws run's limits; a caller's
    /// unfinished runs are capped (an error frame says so) per user or anonymous IP.
    #[tokio::test]
    async fn runs_keep_to_the_operators_caps() {
        let scheduler = Scheduler::new(Arc::new(NoAgents));
        let spec = Arc::new(Spec::builtin().unwrap());
        let live = Live::new(scheduler.clone(), spec, Arc::new(catalog::BuiltinCatalog::with_shipped().unwrap()));
        let concurrency = Arc::new(crate::api::limits::Concurrency::new(1));
        live.set_run_caps(RunCaps { max_cpu_ms: 700, max_wall_ms: 900, max_memory_bytes: 64 << 20, concurrency: Some(concurrency) });
        let (client, mut frames, _close) = live.register(None, "10.0.0.7".parse().unwrap());
        let code = "def two_sum(nums, target):\n    return [0, 1]\n";
        let message = |kind: &str| {
            json!({ "type": kind, "algorithmName": "two_sum", "language": "python", "algorithmCode": code,
                "testData": {"nums": [1, 2], "target": 3} })
            .to_string()
        };
        live.handle(client, &message("EXECUTE_ALGORITHM")).await;
        let started = next_frame(&mut frames).await;
        assert_eq!(started["type"], "EXECUTION_STARTED", "{started}");
        let id: SubmissionId = started["executionId"].as_str().unwrap().parse().unwrap();
        let limits = scheduler.get(id).await.unwrap().limits;
        assert_eq!((limits.cpu_ms, limits.wall_ms, limits.memory_bytes), (700, 900, 64 << 20));
        // Whatever the kind, a second run waits for the first to end.
        for kind in ["EXECUTE_ALGORITHM", "RUN_TESTS", "PERFORMANCE_BENCHMARK"] {
            live.handle(client, &message(kind)).await;
            let refused = next_frame(&mut frames).await;
            assert_eq!(refused["type"], "error", "{kind}: {refused}");
            assert!(refused["message"].as_str().unwrap().contains("1 runs of yours are unfinished; at most 1"), "{refused}");
        }
        assert_eq!(scheduler.queue_summary().await.queued, 1, "refused runs are not queued");
        // Another address is another anonymous caller.
        let (other, mut theirs, _) = live.register(None, "10.0.0.8".parse().unwrap());
        live.handle(other, &message("RUN_TESTS")).await;
        assert_eq!(next_frame(&mut theirs).await["type"], "TESTS_STARTED");
        // Once the first run is over its place is free: a benchmark, with capped limits too.
        scheduler.cancel(id, "test").await;
        live.handle(client, &message("PERFORMANCE_BENCHMARK")).await;
        let started = next_frame(&mut frames).await;
        assert_eq!(started["type"], "BENCHMARK_STARTED", "{started}");
        let id: SubmissionId = started["benchmarkId"].as_str().unwrap().parse().unwrap();
        let limits = scheduler.get(id).await.unwrap().limits;
        assert_eq!((limits.cpu_ms, limits.wall_ms, limits.memory_bytes), (700, 900, 64 << 20));
    }

    /// Runs started over /ws spend the REST API's per-caller budget: past it an error
    /// frame says when to retry, nothing is queued, and another caller is unaffected.
    #[tokio::test]
    async fn runs_spend_the_callers_request_budget() {
        use crate::api::limits::{RateLimit, RateLimiter};
        let scheduler = Scheduler::new(Arc::new(NoAgents));
        let spec = Arc::new(Spec::builtin().unwrap());
        let live = Live::new(scheduler.clone(), spec, Arc::new(catalog::BuiltinCatalog::with_shipped().unwrap()));
        let limiter = Arc::new(RateLimiter::new(RateLimit { max: 2, window: Duration::from_secs(600) }));
        live.set_rate_limiter(limiter.clone());
        let (client, mut frames, _close) = live.register(None, "10.0.0.9".parse().unwrap());
        let message = json!({ "type": "EXECUTE_ALGORITHM", "algorithmName": "two_sum", "language": "python",
            "algorithmCode": "def two_sum(nums, target):\n    return [0, 1]\n", "testData": {"nums": [1, 2], "target": 3} })
        .to_string();
        // The upgrade took one request of this address's budget.
        limiter.check(&Key::Ip("10.0.0.9".parse().unwrap()), std::time::Instant::now()).unwrap();
        live.handle(client, &message).await;
        assert_eq!(next_frame(&mut frames).await["type"], "EXECUTION_STARTED");
        live.handle(client, &message).await;
        let refused = next_frame(&mut frames).await;
        assert_eq!(refused["type"], "error", "{refused}");
        let text = refused["message"].as_str().unwrap();
        assert!(text.contains("too many requests: at most 2 per 600 s; retry in"), "{refused}");
        assert_eq!(scheduler.queue_summary().await.queued, 1, "the refused run is not queued");
        let (other, mut theirs, _) = live.register(None, "10.0.0.10".parse().unwrap());
        live.handle(other, &message).await;
        assert_eq!(next_frame(&mut theirs).await["type"], "EXECUTION_STARTED");
    }

    /// The upgrade to /ws spends the caller's budget like any request: past it, a 429
    /// with Retry-After before any upgrade.
    #[tokio::test]
    async fn the_upgrade_is_refused_past_the_rate_limit() {
        use crate::api::limits::{RateLimit, RateLimiter};
        use salvo::test::TestClient;
        let scheduler = Scheduler::new(Arc::new(NoAgents));
        let spec = Arc::new(Spec::builtin().unwrap());
        let live = Live::new(scheduler, spec, Arc::new(catalog::BuiltinCatalog::with_shipped().unwrap()));
        live.set_rate_limiter(Arc::new(RateLimiter::new(RateLimit { max: 1, window: Duration::from_secs(600) })));
        let service = salvo::Service::new(salvo::Router::with_path("ws").goal(live.handler()));
        let first = TestClient::get("http://127.0.0.1:3001/ws").send(&service).await;
        assert_ne!(first.status_code.map(|s| s.as_u16()), Some(429));
        let second = TestClient::get("http://127.0.0.1:3001/ws").send(&service).await;
        assert_eq!(second.status_code.map(|s| s.as_u16()), Some(429));
        assert!(second.headers().contains_key("retry-after"));
    }

    #[test]
    fn benchmark_input_from_the_message_the_seed_or_the_category() {
        use BenchInput::Builtin;
        let none = json!({});
        assert_eq!(benchmark_input(&json!({"inputKind": "graph"}), "x", None), Ok(Builtin(InputKind::Graph)));
        assert!(benchmark_input(&json!({"inputKind": "tree"}), "x", None).unwrap_err().contains("unknown inputKind"));
        assert!(benchmark_input(&json!({"inputKind": 3}), "x", None).is_err());
        assert_eq!(benchmark_input(&none, "two_sum", None), Ok(Builtin(InputKind::Seed)));
        assert_eq!(benchmark_input(&none, "x", Some(&algorithm(Some("searching".to_uppercase().as_str())))), Ok(Builtin(InputKind::SortedArray)));
        assert_eq!(benchmark_input(&none, "x", Some(&algorithm(None))), Ok(Builtin(InputKind::Array)));
        assert_eq!(benchmark_input(&none, "x", None), Ok(Builtin(InputKind::Array)));
    }

    #[test]
    fn benchmark_input_from_a_generator_program() {
        use BenchInput::{Builtin, Program};
        let g = bench::GeneratorSource { language: "c".into(), source: "int main(){}".into() };
        // (A category spelled so tests/asyncapi.rs does not take it for a message type.)
        let with = catalog::Algorithm { generator: Some(g.clone()), ..algorithm(Some("graphs".to_uppercase().as_str())) };
        // The algorithm's own generator wins over its category; an explicit kind over both.
        assert_eq!(benchmark_input(&json!({}), "x", Some(&with)), Ok(Program(g.clone())));
        assert_eq!(benchmark_input(&json!({"inputKind": "generator"}), "x", Some(&with)), Ok(Program(g.clone())));
        assert_eq!(benchmark_input(&json!({"inputKind": "array"}), "x", Some(&with)), Ok(Builtin(InputKind::Array)));
        let e = benchmark_input(&json!({"inputKind": "generator"}), "x", Some(&algorithm(None))).unwrap_err();
        assert!(e.contains("has no input generator"), "{e}");
        let inline = json!({"generator": {"language": "python", "code": "print([1])"}});
        assert_eq!(
            benchmark_input(&inline, "x", Some(&with)),
            Ok(Program(bench::GeneratorSource { language: "python".into(), source: "print([1])".into() }))
        );
        assert!(benchmark_input(&json!({"generator": {"language": "python"}}), "x", None).is_err());
        assert!(benchmark_input(&json!({"generator": {"language": "c", "code": "x"}, "inputKind": "array"}), "x", None).is_err());
        let big = json!({"generator": {"language": "c", "code": "x".repeat(MAX_CODE_BYTES + 1)}});
        assert!(benchmark_input(&big, "x", None).is_err());
    }
}
