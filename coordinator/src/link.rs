//! The coordinator's end of the agent link: a QUIC server with mutual TLS.
//!
//! `AgentHub` accepts agents whose client certificate is signed by the cluster CA, does the
//! Hello/Welcome handshake on the agent's control stream, and reports everything that
//! happens as `LinkEvent`s. Jobs go down a new bidirectional stream each
//! (`CoordinatorMsg::Job`), results come back on it.
//!
//! Event order per connection is strict: `AgentUp`, then heartbeats and job events, then
//! `JobLost` for every job still in flight, then `AgentDown` exactly once, and nothing after.
//! Every dispatched job ends in exactly one `Final` or `JobLost`. This holds because all of a
//! connection's events are sent under its session lock, which also records "down".

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use protocol::{
    AgentMsg, Cancel, CoordinatorMsg, ErrorCode, ErrorMsg, FinalResult, FrameError, FunctionJob, Job,
    PROTOCOL_VERSION, ReturnValue, Step, TestResult, Welcome, read_frame, write_frame,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::timeout;
use tracing::Instrument;

use crate::tls::{ClusterTls, TlsError};

/// What the link reports to the scheduler. Sent on an unbounded channel: none may be lost.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// An agent passed the handshake.
    AgentUp { agent_id: String, languages: Vec<String>, slots: u32 },
    /// An agent passed the handshake still holding jobs of a connection it lost (to this
    /// coordinator or another); their results follow on the control stream.
    AgentRejoin { agent_id: String, languages: Vec<String>, slots: u32, held: Vec<u64> },
    /// The agent's connection closed or its heartbeats stopped.
    AgentDown { agent_id: String },
    Heartbeat { agent_id: String, free_slots: u32 },
    TestResult { agent_id: String, result: TestResult },
    Final { agent_id: String, result: FinalResult },
    /// A dispatched job's stream failed before its `Final` arrived.
    JobLost { agent_id: String, submission_id: u64, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("agent {0} is not connected")]
    UnknownAgent(String),
    #[error("submission {submission_id} is already running on agent {agent_id}")]
    AlreadyRunning { agent_id: String, submission_id: u64 },
}

/// Hands a job to a connected agent. Implemented by `AgentHub`; the scheduler only sees this.
pub trait Dispatch: Send + Sync + 'static {
    /// Starts sending `job` to `agent_id` and returns at once; the outcome arrives as
    /// `LinkEvent`s (`TestResult`s then `Final`, or `JobLost`).
    fn dispatch(&self, agent_id: &str, job: Job) -> Result<(), DispatchError>;

    /// Like `dispatch`, for a function-style job; `Step` and `Return` frames go to the
    /// live sink (see `AgentHub::set_live`), never into `LinkEvent`s.
    fn dispatch_function(&self, agent_id: &str, job: FunctionJob) -> Result<(), DispatchError> {
        let _ = job;
        Err(DispatchError::UnknownAgent(agent_id.to_string()))
    }

    /// Whether `agent_id` is connected here. With several coordinators, each assigns only
    /// to the agents connected to it (the log orders competing assignments).
    fn serves(&self, agent_id: &str) -> bool {
        let _ = agent_id;
        true
    }

    /// Asks the agent to stop a function-style job; false when it is not in flight there.
    fn cancel(&self, agent_id: &str, submission_id: u64, reason: &str) -> bool {
        let _ = (agent_id, submission_id, reason);
        false
    }
}

/// Where live data of function jobs goes: `Step`s and `Return`s, as they arrive. Called
/// on the link's tasks, in stream order, before the job's `Final` becomes a `LinkEvent`;
/// must not block.
pub trait LiveSink: Send + Sync + 'static {
    fn step(&self, step: Step);
    fn returned(&self, value: ReturnValue);
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("could not bind the agent link on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Agents heartbeat this often; three missed intervals and the agent is down.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);
/// Time an agent gets from connecting to saying Hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refusal waits for the agent to receive the Error frame before closing: a
/// QUIC close discards unsent stream data, and the agent deserves to know why.
const ERROR_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

// Application close codes. The agent treats REFUSED during its handshake as final.
const CLOSE_NORMAL: u32 = 0;
const CLOSE_REFUSED: u32 = 1;
const CLOSE_PROTOCOL: u32 = 2;
const CLOSE_REPLACED: u32 = 3;
const CLOSE_TIMEOUT: u32 = 4;

/// The set of connected agents. Cheap to clone. Call [`AgentHub::shutdown`] to stop it:
/// its tasks hold it alive until then.
#[derive(Clone)]
pub struct AgentHub {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    coordinator_id: String,
    events: UnboundedSender<LinkEvent>,
    /// The current session of each admitted agent.
    agents: Mutex<HashMap<String, Arc<Session>>>,
    /// `dispatch` is synchronous and may be called outside a runtime context.
    runtime: tokio::runtime::Handle,
    /// `judge_link_errors_total{kind}`, when the coordinator exports metrics.
    errors: Option<prometheus::IntCounterVec>,
    live: std::sync::OnceLock<Arc<dyn LiveSink>>,
    /// Cancel triggers of the function jobs in flight, by submission id.
    cancels: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<String>>>,
}

/// Counts one link error of `kind` (see `metrics::LINK_ERROR_KINDS`).
fn count_error(errors: &Option<prometheus::IntCounterVec>, kind: &str) {
    if let Some(errors) = errors {
        errors.with_label_values(&[kind]).inc();
    }
}

/// One admitted connection of one agent.
struct Session {
    agent_id: String,
    conn: quinn::Connection,
    events: UnboundedSender<LinkEvent>,
    state: Mutex<SessionState>,
    errors: Option<prometheus::IntCounterVec>,
}

#[derive(Default)]
struct SessionState {
    down: bool,
    in_flight: HashSet<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these locks can panic half-way through an update, so poison is moot.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    /// Sends a connection-level event unless the session is already down.
    fn emit(&self, event: LinkEvent) {
        let state = lock(&self.state);
        if !state.down {
            let _ = self.events.send(event);
        }
    }

    /// Sends a job's event if the job is still in flight; `last` ends the job. Returns false
    /// when the job was already reported lost, so its stream is of no more interest.
    fn job_event(&self, submission_id: u64, event: LinkEvent, last: bool) -> bool {
        let mut state = lock(&self.state);
        let live = !state.down
            && if last { state.in_flight.remove(&submission_id) } else { state.in_flight.contains(&submission_id) };
        if live {
            let _ = self.events.send(event);
        }
        live
    }

    fn job_lost(&self, submission_id: u64, reason: String) {
        let event = LinkEvent::JobLost { agent_id: self.agent_id.clone(), submission_id, reason };
        self.job_event(submission_id, event, true);
    }

    /// Marks the session down: `JobLost` for each job in flight, then `AgentDown`, once.
    fn go_down(&self, reason: &str) {
        let mut state = lock(&self.state);
        if std::mem::replace(&mut state.down, true) {
            return;
        }
        tracing::info!(agent.id = %self.agent_id, reason, jobs_lost = state.in_flight.len(), "agent down");
        for submission_id in state.in_flight.drain() {
            let reason = format!("agent connection ended: {reason}");
            let _ = self.events.send(LinkEvent::JobLost { agent_id: self.agent_id.clone(), submission_id, reason });
        }
        let _ = self.events.send(LinkEvent::AgentDown { agent_id: self.agent_id.clone() });
    }
}

impl AgentHub {
    /// Listens for agents on `addr` (port 0 picks one; see [`AgentHub::local_addr`]).
    pub async fn bind(
        addr: SocketAddr,
        tls: &ClusterTls,
        coordinator_id: String,
        events: UnboundedSender<LinkEvent>,
    ) -> Result<AgentHub, LinkError> {
        AgentHub::bind_with_metrics(addr, tls, coordinator_id, events, None).await
    }

    /// Like `bind`, counting link errors into `errors` (`Metrics::link_errors`).
    pub async fn bind_with_metrics(
        addr: SocketAddr,
        tls: &ClusterTls,
        coordinator_id: String,
        events: UnboundedSender<LinkEvent>,
        errors: Option<prometheus::IntCounterVec>,
    ) -> Result<AgentHub, LinkError> {
        let mut config = tls.server_config()?;
        let mut transport = quinn::TransportConfig::default();
        // An agent opens one stream, the control stream; everything else the coordinator opens.
        transport.max_concurrent_bidi_streams(1u32.into()).max_concurrent_uni_streams(0u32.into());
        config.transport_config(Arc::new(transport));
        let bind_err = |source| LinkError::Bind { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
        // Keys that survive a restart: agents of the previous process learn at once that
        // their connection is gone (see `ClusterTls::endpoint_config`).
        let endpoint = quinn::Endpoint::new(tls.endpoint_config("link"), Some(config), socket, Arc::new(quinn::TokioRuntime))
            .map_err(bind_err)?;
        let local_addr = endpoint.local_addr().map_err(|source| LinkError::Bind { addr, source })?;
        let inner = Arc::new(Inner {
            endpoint,
            local_addr,
            coordinator_id,
            events,
            agents: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
            errors,
            live: std::sync::OnceLock::new(),
            cancels: Mutex::new(HashMap::new()),
        });
        tracing::info!(addr = %local_addr, "agent link listening");
        tokio::spawn(accept_loop(inner.clone()));
        Ok(AgentHub { inner })
    }

    /// Installs the sink of live function-job data; only the first call counts. Without
    /// one, steps are discarded.
    pub fn set_live(&self, sink: Arc<dyn LiveSink>) {
        let _ = self.inner.live.set(sink);
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Ids of the agents connected now.
    pub fn agents(&self) -> Vec<String> {
        lock(&self.inner.agents).keys().cloned().collect()
    }

    /// Closes every connection (reporting their jobs lost and the agents down) and stops
    /// accepting new ones.
    pub async fn shutdown(&self) {
        self.inner.endpoint.close(CLOSE_NORMAL.into(), b"coordinator shutting down");
        let sessions: Vec<_> = lock(&self.inner.agents).drain().map(|(_, s)| s).collect();
        for session in sessions {
            session.go_down("coordinator shutting down");
        }
        // Lets the close frames go out; an agent that never answers must not hold us up.
        let _ = timeout(Duration::from_secs(2), self.inner.endpoint.wait_idle()).await;
    }
}

impl Dispatch for AgentHub {
    fn serves(&self, agent_id: &str) -> bool {
        lock(&self.inner.agents).get(agent_id).is_some_and(|s| !lock(&s.state).down)
    }

    fn dispatch(&self, agent_id: &str, job: Job) -> Result<(), DispatchError> {
        let unknown = || DispatchError::UnknownAgent(agent_id.to_string());
        let session = lock(&self.inner.agents).get(agent_id).cloned().ok_or_else(unknown)?;
        let submission_id = job.submission_id;
        {
            let mut state = lock(&session.state);
            if state.down {
                return Err(unknown());
            }
            if !state.in_flight.insert(submission_id) {
                return Err(DispatchError::AlreadyRunning { agent_id: agent_id.to_string(), submission_id });
            }
        }
        let span = tracing::info_span!("job", agent.id = %agent_id, submission.id = submission_id);
        self.inner.runtime.spawn(
            async move {
                if let Err(reason) = stream_job(&session, job).await {
                    tracing::warn!(%reason, "job lost");
                    count_error(&session.errors, "job_stream");
                    session.job_lost(submission_id, reason);
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    fn dispatch_function(&self, agent_id: &str, job: FunctionJob) -> Result<(), DispatchError> {
        let unknown = || DispatchError::UnknownAgent(agent_id.to_string());
        let session = lock(&self.inner.agents).get(agent_id).cloned().ok_or_else(unknown)?;
        let submission_id = job.job.submission_id;
        {
            let mut state = lock(&session.state);
            if state.down {
                return Err(unknown());
            }
            if !state.in_flight.insert(submission_id) {
                return Err(DispatchError::AlreadyRunning { agent_id: agent_id.to_string(), submission_id });
            }
        }
        let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel();
        lock(&self.inner.cancels).insert(submission_id, cancel_tx);
        let inner = self.inner.clone();
        let span = tracing::info_span!("function_job", agent.id = %agent_id, submission.id = submission_id);
        self.inner.runtime.spawn(
            async move {
                let live = inner.live.get().cloned();
                if let Err(reason) = stream_function_job(&session, job, cancel_rx, live).await {
                    tracing::warn!(%reason, "job lost");
                    session.job_lost(submission_id, reason);
                }
                lock(&inner.cancels).remove(&submission_id);
            }
            .instrument(span),
        );
        Ok(())
    }

    fn cancel(&self, agent_id: &str, submission_id: u64, reason: &str) -> bool {
        let in_flight = lock(&self.inner.agents)
            .get(agent_id)
            .is_some_and(|s| lock(&s.state).in_flight.contains(&submission_id));
        match lock(&self.inner.cancels).remove(&submission_id) {
            Some(tx) if in_flight => tx.send(reason.to_string()).is_ok(),
            _ => false,
        }
    }
}

async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => serve_connection(inner, conn).await,
                // Untrusted certificates end here: rustls refused them during the handshake.
                Err(e) => {
                    count_error(&inner.errors, "tls_handshake");
                    tracing::warn!(%remote, error = %e, "agent connection failed during the TLS handshake");
                }
            }
        });
    }
}

/// The agent id the client certificate vouches for: its CN.
fn peer_common_name(conn: &quinn::Connection) -> Option<String> {
    let certs = conn.peer_identity()?.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    crate::tls::common_name(certs.first()?)
}

async fn serve_connection(inner: Arc<Inner>, conn: quinn::Connection) {
    let remote = conn.remote_address();
    let Some(cert_id) = peer_common_name(&conn) else {
        tracing::warn!(%remote, "agent certificate has no usable CN");
        count_error(&inner.errors, "refused");
        conn.close(CLOSE_REFUSED.into(), b"client certificate has no usable CN");
        return;
    };
    let span = tracing::info_span!("agent_link", agent.id = %cert_id, %remote);
    async move {
        let Some((send, recv, hello)) = handshake(&inner, &conn, &cert_id).await else { return };
        let session = Arc::new(Session {
            agent_id: cert_id.clone(),
            conn: conn.clone(),
            events: inner.events.clone(),
            state: Mutex::new(SessionState::default()),
            errors: inner.errors.clone(),
        });
        {
            let mut agents = lock(&inner.agents);
            if let Some(old) = agents.insert(cert_id.clone(), session.clone()) {
                // Under the map lock, so the old AgentDown precedes the new AgentUp.
                old.go_down("replaced by a new connection of the same agent");
                old.conn.close(CLOSE_REPLACED.into(), b"replaced by a new connection of the same agent");
            }
            tracing::info!(languages = ?hello.languages, slots = hello.slots, held = ?hello.held, "agent up");
            let (agent_id, languages, slots) = (cert_id.clone(), hello.languages, hello.slots);
            session.emit(if hello.held.is_empty() {
                LinkEvent::AgentUp { agent_id, languages, slots }
            } else {
                LinkEvent::AgentRejoin { agent_id, languages, slots, held: hello.held }
            });
        }
        let reason = control_loop(&session, send, recv).await;
        session.go_down(&reason);
        let mut agents = lock(&inner.agents);
        if agents.get(&cert_id).is_some_and(|s| Arc::ptr_eq(s, &session)) {
            agents.remove(&cert_id);
        }
    }
    .instrument(span)
    .await
}

/// Accepts the control stream and checks the Hello; `None` when the agent was refused.
async fn handshake(
    inner: &Inner,
    conn: &quinn::Connection,
    cert_id: &str,
) -> Option<(quinn::SendStream, quinn::RecvStream, protocol::Hello)> {
    let (mut send, mut recv) = match timeout(HANDSHAKE_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "agent left before opening its control stream");
            return None;
        }
        Err(_) => {
            tracing::warn!("agent opened no control stream in time");
            conn.close(CLOSE_TIMEOUT.into(), b"no control stream");
            return None;
        }
    };
    let refusal = match timeout(HANDSHAKE_TIMEOUT, read_frame::<_, AgentMsg>(&mut recv)).await {
        Ok(Ok(Some(AgentMsg::Hello(hello)))) => {
            if hello.protocol_version != PROTOCOL_VERSION {
                let msg = format!("coordinator speaks protocol {PROTOCOL_VERSION}, agent {}", hello.protocol_version);
                (ErrorCode::VersionMismatch, msg)
            } else if hello.agent_id != cert_id {
                // Otherwise one agent's certificate could take over another agent's jobs.
                (ErrorCode::BadFrame, format!("agent id {:?} does not match the certificate's {cert_id:?}", hello.agent_id))
            } else if hello.slots == 0 {
                (ErrorCode::BadFrame, "an agent needs at least one slot".to_string())
            } else {
                let welcome = CoordinatorMsg::Welcome(Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    coordinator_id: inner.coordinator_id.clone(),
                    heartbeat_interval_ms: HEARTBEAT_INTERVAL.as_millis() as u32,
                });
                return match write_frame(&mut send, &welcome).await {
                    Ok(()) => Some((send, recv, hello)),
                    Err(e) => {
                        tracing::info!(error = %e, "could not welcome the agent");
                        None
                    }
                };
            }
        }
        Ok(Ok(Some(other))) => (ErrorCode::BadFrame, format!("expected Hello, got {}", msg_name(&other))),
        Ok(Ok(None)) => (ErrorCode::BadFrame, "control stream ended before Hello".to_string()),
        Ok(Err(e)) => (ErrorCode::BadFrame, format!("bad Hello frame: {e}")),
        Err(_) => (ErrorCode::BadFrame, "no Hello in time".to_string()),
    };
    count_error(&inner.errors, "refused");
    refuse(conn, &mut send, CLOSE_REFUSED, refusal.0, refusal.1).await;
    None
}

/// Tells the agent why on the stream, then closes the connection.
async fn refuse(conn: &quinn::Connection, send: &mut quinn::SendStream, close: u32, code: ErrorCode, message: String) {
    tracing::warn!(?code, %message, "closing agent connection");
    let frame = CoordinatorMsg::Error(ErrorMsg { code, message: message.clone() });
    if write_frame(send, &frame).await.is_ok() && send.finish().is_ok() {
        let _ = timeout(ERROR_FLUSH_TIMEOUT, send.stopped()).await;
    }
    conn.close(close.into(), message.as_bytes());
}

/// Reads heartbeats, and results of jobs of an earlier connection, until the connection
/// ends; returns why it ended.
async fn control_loop(session: &Session, mut send: quinn::SendStream, mut recv: quinn::RecvStream) -> String {
    let conn = &session.conn;
    loop {
        match timeout(HEARTBEAT_INTERVAL * 3, read_frame::<_, AgentMsg>(&mut recv)).await {
            Ok(Ok(Some(AgentMsg::Heartbeat(hb)))) => {
                tracing::trace!(free_slots = hb.free_slots, running = ?hb.running, "heartbeat");
                session.emit(LinkEvent::Heartbeat { agent_id: session.agent_id.clone(), free_slots: hb.free_slots });
            }
            // The state machine takes these only while the agent holds the lease, so results
            // of jobs it never had, or had lost meanwhile, are refused there.
            Ok(Ok(Some(AgentMsg::TestResult(result)))) => {
                session.emit(LinkEvent::TestResult { agent_id: session.agent_id.clone(), result });
            }
            Ok(Ok(Some(AgentMsg::Final(result)))) => {
                tracing::info!(submission.id = result.submission_id, "result of a job of an earlier connection");
                session.emit(LinkEvent::Final { agent_id: session.agent_id.clone(), result });
            }
            Ok(Ok(Some(AgentMsg::Error(e)))) => {
                count_error(&session.errors, "protocol");
                let reason = format!("agent reported {:?}: {}", e.code, e.message);
                conn.close(CLOSE_PROTOCOL.into(), reason.as_bytes());
                return reason;
            }
            Ok(Ok(Some(other))) => {
                count_error(&session.errors, "protocol");
                let reason = format!("unexpected {} on the control stream", msg_name(&other));
                refuse(conn, &mut send, CLOSE_PROTOCOL, ErrorCode::BadFrame, reason.clone()).await;
                return reason;
            }
            Ok(Ok(None)) => {
                conn.close(CLOSE_NORMAL.into(), b"control stream ended");
                return "agent ended its control stream".to_string();
            }
            Ok(Err(FrameError::Io(e))) => {
                // Usually the connection itself is gone; its close reason says more than the stream.
                return match conn.close_reason() {
                    Some(reason) => format!("connection closed: {reason}"),
                    None => {
                        conn.close(CLOSE_PROTOCOL.into(), b"control stream failed");
                        format!("control stream failed: {e}")
                    }
                };
            }
            Ok(Err(e)) => {
                count_error(&session.errors, "protocol");
                let reason = format!("bad frame on the control stream: {e}");
                refuse(conn, &mut send, CLOSE_PROTOCOL, ErrorCode::BadFrame, reason.clone()).await;
                return reason;
            }
            Err(_) => {
                count_error(&session.errors, "heartbeat_timeout");
                conn.close(CLOSE_TIMEOUT.into(), b"no heartbeat");
                return format!("no heartbeat for {:?}", HEARTBEAT_INTERVAL * 3);
            }
        }
    }
}

/// Sends the job and relays its results; `Err` is the reason the job is lost.
async fn stream_job(session: &Session, job: Job) -> Result<(), String> {
    let submission_id = job.submission_id;
    let tests = job.tests.len();
    let (mut send, mut recv) = session.conn.open_bi().await.map_err(|e| format!("could not open a job stream: {e}"))?;
    write_frame(&mut send, &CoordinatorMsg::Job(job)).await.map_err(|e| format!("could not send the job: {e}"))?;
    send.finish().map_err(|e| format!("could not send the job: {e}"))?;
    loop {
        let (event, last) = stream_event(read_frame::<_, AgentMsg>(&mut recv).await, submission_id, tests, &session.agent_id)?;
        if !session.job_event(submission_id, event, last) || last {
            return Ok(());
        }
    }
}

/// What the next event on a function job's stream is.
enum Next {
    Frame(Result<Option<AgentMsg>, FrameError>),
    Cancel(String),
}

/// Sends a function job, relays steps to `live` and results as events, and forwards a
/// cancel to the agent; `Err` is the reason the job is lost.
async fn stream_function_job(
    session: &Session,
    job: FunctionJob,
    cancel: tokio::sync::oneshot::Receiver<String>,
    live: Option<Arc<dyn LiveSink>>,
) -> Result<(), String> {
    let submission_id = job.job.submission_id;
    let tests = job.job.tests.len();
    let (mut send, mut recv) = session.conn.open_bi().await.map_err(|e| format!("could not open a job stream: {e}"))?;
    write_frame(&mut send, &CoordinatorMsg::RunFunction(job)).await.map_err(|e| format!("could not send the job: {e}"))?;
    let mut cancel = Some(cancel);
    loop {
        // A frame read is not cancel-safe: the same future is polled until it completes,
        // while a cancel may come in between.
        let frame = {
            let read = read_frame::<_, AgentMsg>(&mut recv);
            tokio::pin!(read);
            loop {
                let next = tokio::select! {
                    r = &mut read => Next::Frame(r),
                    c = async {
                        match cancel.as_mut() {
                            Some(rx) => rx.await.ok(),
                            None => std::future::pending().await,
                        }
                    } => match c {
                        Some(reason) => Next::Cancel(reason),
                        // The hub dropped the trigger: nobody can cancel anymore.
                        None => { cancel = None; continue; }
                    },
                };
                match next {
                    Next::Frame(r) => break r,
                    Next::Cancel(reason) => {
                        cancel = None;
                        let msg = CoordinatorMsg::Cancel(Cancel { submission_id, reason });
                        if let Err(e) = write_frame(&mut send, &msg).await {
                            // The stream is failing; the read below will say how.
                            tracing::warn!(error = %e, "could not send a cancel");
                        }
                    }
                }
            }
        };
        let (event, last) = match frame {
            Ok(Some(AgentMsg::Step(step))) if step.submission_id == submission_id => {
                if let Some(live) = &live {
                    live.step(step);
                }
                continue;
            }
            Ok(Some(AgentMsg::Return(value))) if value.submission_id == submission_id => {
                if let Some(live) = &live {
                    live.returned(value);
                }
                continue;
            }
            Ok(Some(AgentMsg::Step(_) | AgentMsg::Return(_))) => {
                return Err("agent sent live data of another submission".to_string());
            }
            other => stream_event(other, submission_id, tests, &session.agent_id)?,
        };
        if !session.job_event(submission_id, event, last) || last {
            let _ = send.finish();
            return Ok(());
        }
    }
}

/// Checks one frame of a job stream: the job's test results (in range) and its final
/// result become events (`true`: the last one); anything else ends the stream.
fn stream_event(
    frame: Result<Option<AgentMsg>, protocol::FrameError>,
    submission_id: u64,
    tests: usize,
    agent_id: &str,
) -> Result<(LinkEvent, bool), String> {
    let agent_id = agent_id.to_string();
    match frame {
        Ok(Some(AgentMsg::TestResult(result))) if result.submission_id != submission_id => {
            Err(format!("agent sent a result of submission {}", result.submission_id))
        }
        Ok(Some(AgentMsg::TestResult(result))) if result.index as usize >= tests => {
            Err(format!("agent sent a result of test {} of {tests}", result.index))
        }
        Ok(Some(AgentMsg::TestResult(result))) => Ok((LinkEvent::TestResult { agent_id, result }, false)),
        Ok(Some(AgentMsg::Final(result))) if result.submission_id != submission_id => {
            Err(format!("agent sent the final result of submission {}", result.submission_id))
        }
        Ok(Some(AgentMsg::Final(result))) => Ok((LinkEvent::Final { agent_id, result }, true)),
        Ok(Some(AgentMsg::Error(e))) => Err(format!("agent refused the job ({:?}): {}", e.code, e.message)),
        Ok(Some(other)) => Err(format!("unexpected {} on the job stream", msg_name(&other))),
        Ok(None) => Err("job stream ended before the final result".to_string()),
        Err(e) => Err(format!("job stream failed: {e}")),
    }
}

fn msg_name(msg: &AgentMsg) -> &'static str {
    match msg {
        AgentMsg::Hello(_) => "Hello",
        AgentMsg::Heartbeat(_) => "Heartbeat",
        AgentMsg::TestResult(_) => "TestResult",
        AgentMsg::Final(_) => "Final",
        AgentMsg::Error(_) => "Error",
        AgentMsg::Step(_) => "Step",
        AgentMsg::Return(_) => "Return",
    }
}
