//! The agent's end of the link: a QUIC client with its own certificate.
//!
//! `run` connects, says Hello on a control stream, sends heartbeats, accepts one
//! bidirectional stream per job, hands the job to the `JobRunner`, streams each
//! `TestResult` as it comes and the `Final` last. It reconnects with backoff when the
//! coordinator goes away. A job (not a function run: those are live, and cancelled with
//! their stream) runs to its end even when its connection is lost: the next Hello names
//! it in `held`, and its results go out on the next control stream, to whichever
//! coordinator the agent reached, which takes them if the agent still holds the lease. A refusal (untrusted certificate either way, or an Error frame in
//! answer to Hello) ends `run` with an error instead: retrying cannot fix it, an operator must.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use protocol::{
    AgentMsg, CoordinatorMsg, ErrorCode, ErrorMsg, FinalResult, FunctionJob, Heartbeat, Hello, Job, PROTOCOL_VERSION,
    TestResult, read_frame, write_frame,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::timeout;
use tracing::Instrument;

use crate::metrics::AgentMetrics;

/// Judges jobs. Implemented by the agent's judge; the link only sees this.
pub trait JobRunner: Send + Sync + 'static {
    /// Judges `job`, sending each finished test on `results` as soon as it is known, and
    /// returns the final result. Never panics on bad jobs: an unusable job is an IE result.
    fn run(
        &self,
        job: Job,
        results: tokio::sync::mpsc::Sender<TestResult>,
    ) -> Pin<Box<dyn Future<Output = FinalResult> + Send>>;

    /// Judges a function-style job, sending `Step`, `Return` and `TestResult` messages on
    /// `events` as they come; setting `cancel` stops it. Runners without function support
    /// answer `IE`.
    fn run_function(
        &self,
        job: FunctionJob,
        events: mpsc::Sender<AgentMsg>,
        cancel: Arc<AtomicBool>,
    ) -> Pin<Box<dyn Future<Output = FinalResult> + Send>> {
        let _ = (events, cancel);
        let submission_id = job.job.submission_id;
        Box::pin(async move {
            FinalResult {
                submission_id,
                verdict: protocol::Verdict::IE,
                compile_output: String::new(),
                message: "this agent cannot run function-style jobs".into(),
            }
        })
    }
}

pub struct LinkConfig {
    pub coordinator: SocketAddr,
    /// The cluster's other coordinators. After a lost or failed connection the link tries
    /// the next address in turn, so an agent keeps judging while a coordinator is down.
    pub also: Vec<SocketAddr>,
    /// The name the coordinator's certificate must carry (normally "judge-coordinator").
    pub server_name: String,
    /// Holds `ca.pem`, `agent.pem` and `agent.key`, as the coordinator issued them.
    pub tls_dir: PathBuf,
    /// Must equal the CN of `agent.pem`: the coordinator refuses anything else.
    pub agent_id: String,
    pub languages: Vec<String>,
    pub slots: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid link configuration: {0}")]
    Config(String),
    #[error("could not load {path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    #[error("could not build the TLS client config: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS config unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("could not open a UDP socket: {0}")]
    Socket(std::io::Error),
    #[error("could not start connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: quinn::ConnectError },
    /// The TLS handshake failed on a certificate (ours or the coordinator's).
    #[error("TLS handshake rejected: {0}")]
    Rejected(String),
    /// The coordinator answered Hello with an error.
    #[error("coordinator refused this agent: {0}")]
    Refused(String),
    /// The connection failed or ended; `run` retries these.
    #[error("connection lost: {0}")]
    Connection(String),
    /// The coordinator broke the protocol; `run` retries these.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl LinkError {
    /// Whether reconnecting could help.
    fn is_transient(&self) -> bool {
        matches!(self, LinkError::Connection(_) | LinkError::Protocol(_))
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Must match the coordinator's close code for a refused handshake.
const CLOSE_REFUSED: u32 = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded sets are updated by single calls that cannot panic half-way.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn credentials_error(path: &Path, reason: impl ToString) -> LinkError {
    LinkError::Credentials { path: path.to_path_buf(), reason: reason.to_string() }
}

/// The QUIC client config of the link: TLS 1.3, ALPN, our certificate from `tls_dir`, and the
/// coordinator verified against `tls_dir/ca.pem` alone (never the system roots).
pub fn client_config(tls_dir: &Path) -> Result<quinn::ClientConfig, LinkError> {
    let [ca, cert, key] = ["ca.pem", "agent.pem", "agent.key"].map(|f| tls_dir.join(f));
    for path in [&ca, &cert, &key] {
        if !path.is_file() {
            return Err(credentials_error(path, "missing; issue this agent's certificate on the coordinator"));
        }
    }
    let ca_cert = CertificateDer::from_pem_file(&ca).map_err(|e| credentials_error(&ca, e))?;
    let chain = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| credentials_error(&cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| credentials_error(&cert, e))?;
    if chain.is_empty() {
        return Err(credentials_error(&cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(&key).map_err(|e| credentials_error(&key, e))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert).map_err(|e| credentials_error(&ca, e))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)?;
    tls.alpn_protocols = vec![protocol::ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    // A coordinator host that vanishes without a close is noticed after this long.
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(10_000))));
    transport.keep_alive_interval(Some(Duration::from_secs(2)));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Runs the link until `shutdown` turns true (or its sender is dropped), reconnecting with
/// capped exponential backoff. Errors only on configuration problems and refusals.
pub async fn run(config: LinkConfig, runner: Arc<dyn JobRunner>, shutdown: watch::Receiver<bool>) -> Result<(), LinkError> {
    run_with_metrics(config, runner, shutdown, &AgentMetrics::unregistered()).await
}

/// Like `run`, reporting the link's state and errors into `metrics`.
pub async fn run_with_metrics(
    config: LinkConfig,
    runner: Arc<dyn JobRunner>,
    mut shutdown: watch::Receiver<bool>,
    metrics: &AgentMetrics,
) -> Result<(), LinkError> {
    if config.slots == 0 {
        return Err(LinkError::Config("slots must be at least 1".into()));
    }
    let id_ok = (1..=64).contains(&config.agent_id.len())
        && config.agent_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !id_ok {
        return Err(LinkError::Config(format!("invalid agent id {:?}", config.agent_id)));
    }
    let client = client_config(&config.tls_dir)?;
    let bind: SocketAddr = if config.coordinator.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(LinkError::Socket)?;
    endpoint.set_default_client_config(client);
    let jobs = Arc::new(Jobs::new(config.slots));

    let span = tracing::info_span!("link", agent.id = %config.agent_id, coordinator = %config.coordinator);
    let result = async {
        let mut backoff = BACKOFF_MIN;
        let targets: Vec<SocketAddr> = std::iter::once(config.coordinator).chain(config.also.iter().copied()).collect();
        let mut target = 0;
        loop {
            let mut established = false;
            let addr = targets[target % targets.len()];
            let outcome = tokio::select! {
                r = session(&endpoint, addr, &config, &runner, &jobs, &mut established, metrics) => r,
                () = shutdown_requested(&mut shutdown) => return Ok(()),
            };
            metrics.link_connected(false);
            if let Err(e) = &outcome {
                metrics.link_error(match e {
                    LinkError::Connection(_) => "connection",
                    LinkError::Protocol(_) => "protocol",
                    _ => "refused",
                });
            }
            match outcome {
                Err(e) if !e.is_transient() => {
                    tracing::error!(error = %e, "link refused; not retrying");
                    return Err(e);
                }
                Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "link down"),
                Ok(()) => tracing::info!(retry_in = ?backoff, "link closed"),
            }
            if established {
                backoff = BACKOFF_MIN;
            }
            target += 1;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown_requested(&mut shutdown) => return Ok(()),
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
    .instrument(span)
    .await;
    // Closing the endpoint closes the connection at once, so the coordinator learns of the
    // lost jobs now rather than after its heartbeat timeout.
    endpoint.close(0u32.into(), b"agent shutting down");
    let _ = timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    result
}

/// Completes when shutdown is requested; a dropped sender counts, as nobody could ask later.
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    // QUIC carries TLS alerts as transport errors 0x100..=0x1ff (RFC 9001, section 4.8).
    (0x100..0x200).contains(&u64::from(code))
}

fn classify(e: &quinn::ConnectionError) -> LinkError {
    match e {
        quinn::ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => {
            LinkError::Rejected(format!("the coordinator refused our certificate ({c})"))
        }
        quinn::ConnectionError::TransportError(t) if is_crypto(t.code) => {
            LinkError::Rejected(format!("the coordinator's certificate is not trusted ({t})"))
        }
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(CLOSE_REFUSED) => {
            LinkError::Refused(String::from_utf8_lossy(&c.reason).into_owned())
        }
        other => LinkError::Connection(other.to_string()),
    }
}

/// The error of a failed stream operation: with TLS 1.3 the coordinator's verdict on our
/// certificate can arrive after `connect` succeeded, as the close of the connection.
fn stream_error(conn: &quinn::Connection, e: impl std::fmt::Display) -> LinkError {
    match conn.close_reason() {
        Some(reason) => classify(&reason),
        None => LinkError::Connection(e.to_string()),
    }
}

/// One connection, from handshake to loss. Sets `established` once Welcome arrived.
async fn session(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    config: &LinkConfig,
    runner: &Arc<dyn JobRunner>,
    jobs: &Arc<Jobs>,
    established: &mut bool,
    metrics: &AgentMetrics,
) -> Result<(), LinkError> {
    let connecting = endpoint
        .connect(addr, &config.server_name)
        .map_err(|source| LinkError::Connect { addr, source })?;
    let conn = connecting.await.map_err(|e| classify(&e))?;
    // However the session ends, the connection ends with it, so that jobs still writing
    // into its streams fail at once and hold their results for the next one.
    let _close = CloseOnDrop(conn.clone());

    let hello = AgentMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_id: config.agent_id.clone(),
        languages: config.languages.clone(),
        slots: config.slots,
        // Every job known now came on an earlier connection.
        held: jobs.held_ids(),
    });
    let handshake = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| classify(&e))?;
        write_frame(&mut send, &hello).await.map_err(|e| stream_error(&conn, e))?;
        let reply = read_frame::<_, CoordinatorMsg>(&mut recv).await.map_err(|e| stream_error(&conn, e))?;
        Ok::<_, LinkError>((send, recv, reply))
    };
    let (mut send, mut recv, reply) = timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| LinkError::Connection("no answer to Hello in time".into()))??;
    let welcome = match reply {
        Some(CoordinatorMsg::Welcome(w)) if w.protocol_version == PROTOCOL_VERSION => w,
        Some(CoordinatorMsg::Welcome(w)) => {
            return Err(LinkError::Refused(format!("coordinator speaks protocol {}", w.protocol_version)));
        }
        Some(CoordinatorMsg::Error(e)) => return Err(LinkError::Refused(format!("{:?}: {}", e.code, e.message))),
        Some(CoordinatorMsg::Job(_) | CoordinatorMsg::RunFunction(_) | CoordinatorMsg::Cancel(_)) => {
            return Err(LinkError::Protocol("job frame on the control stream".into()));
        }
        None => return Err(stream_error(&conn, "control stream ended before Welcome")),
    };
    *established = true;
    metrics.link_connected(true);
    tracing::info!(coordinator.id = %welcome.coordinator_id, "connected");

    let interval = Duration::from_millis(welcome.heartbeat_interval_ms.into()).clamp(BACKOFF_MIN, BACKOFF_MAX);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let languages: Arc<[String]> = config.languages.clone().into();
    // Polled in place across iterations: a frame read is not cancel-safe.
    let control = read_frame::<_, CoordinatorMsg>(&mut recv);
    tokio::pin!(control);
    // Results held from earlier connections go first.
    jobs.undelivered.notify_one();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let running = lock(&jobs.running).iter().copied().collect();
                let hb = Heartbeat { free_slots: jobs.slots.available_permits() as u32, running };
                write_frame(&mut send, &AgentMsg::Heartbeat(hb)).await.map_err(|e| stream_error(&conn, e))?;
            }
            () = jobs.undelivered.notified() => {
                jobs.deliver_held(&mut send).await.map_err(|e| stream_error(&conn, e))?;
            }
            stream = conn.accept_bi() => {
                let (job_send, job_recv) = stream.map_err(|e| classify(&e))?;
                // Not tied to the session: a job outlives a lost connection (a function run
                // is cancelled by its own watcher when its stream breaks).
                tokio::spawn(serve_job(job_send, job_recv, runner.clone(), languages.clone(), jobs.clone()).in_current_span());
            }
            msg = &mut control => {
                return Err(match msg {
                    Ok(Some(CoordinatorMsg::Error(e))) => LinkError::Protocol(format!("coordinator: {:?}: {}", e.code, e.message)),
                    Ok(Some(_)) => LinkError::Protocol("unexpected frame on the control stream".into()),
                    Ok(None) => stream_error(&conn, "coordinator ended the control stream"),
                    Err(e) => stream_error(&conn, e),
                });
            }
        }
    }
}

/// Closes a connection when dropped.
struct CloseOnDrop(quinn::Connection);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(0u32.into(), b"link session ended");
    }
}

/// The agent's jobs across connections.
struct Jobs {
    slots: Arc<Semaphore>,
    /// Every job and function run in progress, for the heartbeat.
    running: Arc<Mutex<BTreeSet<u64>>>,
    /// Jobs (not function runs) whose results are not all known to be delivered, by
    /// submission: running, or done with frames waiting for a connection.
    held: Mutex<BTreeMap<u64, Held>>,
    /// Poked when `held` has frames to send.
    undelivered: Notify,
}

#[derive(Default)]
struct Held {
    /// Frames for the next control stream (all of the job's so far once its stream broke:
    /// the coordinator refuses a test result or a verdict it already has).
    frames: Vec<AgentMsg>,
    /// Its `Final` is among them: the entry goes once they are sent.
    finished: bool,
}

impl Jobs {
    fn new(slots: u32) -> Jobs {
        Jobs {
            slots: Arc::new(Semaphore::new(slots as usize)),
            running: Arc::new(Mutex::new(BTreeSet::new())),
            held: Mutex::new(BTreeMap::new()),
            undelivered: Notify::new(),
        }
    }

    fn held_ids(&self) -> Vec<u64> {
        lock(&self.held).keys().copied().collect()
    }

    /// The job's stream broke: `frames` (everything it sent or will send) go on the next
    /// control stream instead.
    fn hold(&self, submission_id: u64, frames: Vec<AgentMsg>, finished: bool) {
        let mut held = lock(&self.held);
        let entry = held.entry(submission_id).or_default();
        entry.frames.extend(frames);
        entry.finished |= finished;
        drop(held);
        self.undelivered.notify_one();
    }

    /// Writes the held frames on the control stream. A frame is dropped only once written
    /// (a failure leaves the rest, and possibly a duplicate, for the next connection).
    async fn deliver_held(&self, send: &mut quinn::SendStream) -> Result<(), protocol::FrameError> {
        let batch: Vec<(u64, Vec<AgentMsg>)> =
            lock(&self.held).iter().filter(|(_, h)| !h.frames.is_empty()).map(|(id, h)| (*id, h.frames.clone())).collect();
        for (submission_id, frames) in batch {
            for frame in &frames {
                write_frame(send, frame).await?;
            }
            tracing::info!(submission.id = submission_id, frames = frames.len(), "results of a job of a lost connection sent");
            let mut held = lock(&self.held);
            if let Some(entry) = held.get_mut(&submission_id) {
                entry.frames.drain(..frames.len().min(entry.frames.len()));
                if entry.finished && entry.frames.is_empty() {
                    held.remove(&submission_id);
                }
            }
        }
        Ok(())
    }
}

/// Removes a job from the heartbeat's running list when it ends, however it ends.
struct Running {
    set: Arc<Mutex<BTreeSet<u64>>>,
    submission_id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.submission_id);
    }
}

async fn reply_error(send: &mut quinn::SendStream, code: ErrorCode, message: String) {
    tracing::warn!(?code, %message, "refusing a job stream");
    if write_frame(send, &AgentMsg::Error(ErrorMsg { code, message })).await.is_ok() {
        let _ = send.finish();
    }
}

async fn serve_job(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    runner: Arc<dyn JobRunner>,
    languages: Arc<[String]>,
    jobs: Arc<Jobs>,
) {
    let job = match read_frame::<_, CoordinatorMsg>(&mut recv).await {
        Ok(Some(CoordinatorMsg::Job(job))) => job,
        Ok(Some(CoordinatorMsg::RunFunction(job))) => {
            return serve_function(send, recv, job, runner, languages, jobs.slots.clone(), jobs.running.clone()).await;
        }
        Ok(Some(_)) => return reply_error(&mut send, ErrorCode::BadFrame, "expected a Job".into()).await,
        Ok(None) => return,
        Err(e) => return reply_error(&mut send, ErrorCode::BadFrame, format!("bad Job frame: {e}")).await,
    };
    let submission_id = job.submission_id;
    if !languages.contains(&job.language) {
        let msg = format!("no {:?} here (submission {submission_id})", job.language);
        return reply_error(&mut send, ErrorCode::UnknownLanguage, msg).await;
    }
    let Ok(permit) = jobs.slots.clone().try_acquire_owned() else {
        let msg = format!("no free slot for submission {submission_id}");
        return reply_error(&mut send, ErrorCode::Busy, msg).await;
    };
    lock(&jobs.running).insert(submission_id);
    let guard = Running { set: jobs.running.clone(), submission_id };
    // Known from now on to the next Hello, until its results are delivered.
    lock(&jobs.held).entry(submission_id).or_default();
    tracing::info!(submission.id = submission_id, language = %job.language, tests = job.tests.len(), "job started");

    let (tx, mut rx) = mpsc::channel(16);
    let mut judging = runner.run(job, tx);
    let mut out = JobOutput { send: Some(send), sent: Vec::new(), submission_id, jobs: &jobs };
    let final_result = loop {
        tokio::select! {
            Some(result) = rx.recv() => out.emit(AgentMsg::TestResult(result), false).await,
            final_result = &mut judging => break final_result,
        }
    };
    // Free the slot before the coordinator can see Final and send the next job here.
    drop((permit, guard));
    while let Ok(result) = rx.try_recv() {
        out.emit(AgentMsg::TestResult(result), false).await;
    }
    out.emit(AgentMsg::Final(final_result), true).await;
    match out.send.take() {
        Some(mut send) => {
            // Delivered once the coordinator has acknowledged the stream's data; a
            // connection lost before that holds the results for the next one.
            let acked = match send.finish() {
                Ok(()) => send.stopped().await.is_ok(),
                Err(_) => false,
            };
            if acked {
                lock(&jobs.held).remove(&submission_id);
                tracing::info!(submission.id = submission_id, "job done");
            } else {
                tracing::warn!(submission.id = submission_id, "job done, its connection lost: results held");
                jobs.hold(submission_id, std::mem::take(&mut out.sent), true);
            }
        }
        None => tracing::warn!(submission.id = submission_id, "job done, its connection lost: results held"),
    }
}

/// Where a job's frames go: its stream while that works, then the held frames.
struct JobOutput<'a> {
    send: Option<quinn::SendStream>,
    /// Everything written to the stream, in case it turns out not to have arrived.
    sent: Vec<AgentMsg>,
    submission_id: u64,
    jobs: &'a Jobs,
}

impl JobOutput<'_> {
    async fn emit(&mut self, frame: AgentMsg, last: bool) {
        if let Some(send) = &mut self.send {
            if write_frame(send, &frame).await.is_ok() {
                self.sent.push(frame);
                return;
            }
            tracing::warn!(submission.id = self.submission_id, "job stream lost; holding its results for the next connection");
            self.send = None;
            self.sent.push(frame);
            self.jobs.hold(self.submission_id, std::mem::take(&mut self.sent), last);
            return;
        }
        self.jobs.hold(self.submission_id, vec![frame], last);
    }
}

/// Steps, returns and results of a function job waiting for the network. Steps that find
/// it full are dropped and counted (see `function::run_function_blocking`).
const FUNCTION_QUEUE: usize = 1024;

async fn serve_function(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    job: FunctionJob,
    runner: Arc<dyn JobRunner>,
    languages: Arc<[String]>,
    slots: Arc<Semaphore>,
    running: Arc<Mutex<BTreeSet<u64>>>,
) {
    let submission_id = job.job.submission_id;
    if !languages.contains(&job.job.language) {
        let msg = format!("no {:?} here (submission {submission_id})", job.job.language);
        return reply_error(&mut send, ErrorCode::UnknownLanguage, msg).await;
    }
    let Ok(permit) = slots.try_acquire_owned() else {
        let msg = format!("no free slot for submission {submission_id}");
        return reply_error(&mut send, ErrorCode::Busy, msg).await;
    };
    lock(&running).insert(submission_id);
    let guard = Running { set: running, submission_id };
    tracing::info!(submission.id = submission_id, language = %job.job.language, tests = job.job.tests.len(), "function job started");

    // The coordinator keeps its side of the stream open for a Cancel. A broken stream
    // cancels too: nobody could receive the results anymore.
    let cancel = Arc::new(AtomicBool::new(false));
    let watcher = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            match read_frame::<_, CoordinatorMsg>(&mut recv).await {
                Ok(None) => {}
                Ok(Some(CoordinatorMsg::Cancel(c))) => {
                    tracing::info!(submission.id = submission_id, reason = %c.reason, "cancel requested");
                    cancel.store(true, Ordering::SeqCst);
                }
                Ok(Some(_)) | Err(_) => cancel.store(true, Ordering::SeqCst),
            }
        })
    };
    let (tx, mut rx) = mpsc::channel(FUNCTION_QUEUE);
    let mut judging = runner.run_function(job, tx, cancel);
    let sent = async {
        let final_result = loop {
            tokio::select! {
                Some(msg) = rx.recv() => write_frame(&mut send, &msg).await?,
                final_result = &mut judging => break final_result,
            }
        };
        drop((permit, guard));
        while let Ok(msg) = rx.try_recv() {
            write_frame(&mut send, &msg).await?;
        }
        write_frame(&mut send, &AgentMsg::Final(final_result)).await
    };
    let outcome = sent.await;
    watcher.abort();
    match outcome {
        Ok(()) => {
            let _ = send.finish();
            tracing::info!(submission.id = submission_id, "function job done");
        }
        Err(e) => tracing::warn!(submission.id = submission_id, error = %e, "could not send job results"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn missing_credentials_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = client_config(dir.path()).unwrap_err();
        assert!(matches!(&err, LinkError::Credentials { path, .. } if path.ends_with("ca.pem")), "{err}");
        assert!(err.to_string().contains("missing"));
    }

    #[test]
    fn lost_connections_are_retried() {
        assert!(classify(&quinn::ConnectionError::TimedOut).is_transient());
        assert!(classify(&quinn::ConnectionError::Reset).is_transient());
        assert!(!LinkError::Refused("no".into()).is_transient());
    }
}
