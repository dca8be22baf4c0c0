//! The agent's end of the link: a QUIC client with its own certificate.
//!
//! `run` connects, says Hello on a control stream, sends heartbeats, accepts one
//! bidirectional stream per job, hands the job to the `JobRunner`, streams each
//! `TestResult` as it comes and the `Final` last. It reconnects with backoff when the
//! coordinator goes away. A refusal (untrusted certificate either way, or an Error frame in
//! answer to Hello) ends `run` with an error instead: retrying cannot fix it, an operator must.

use std::collections::BTreeSet;
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
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
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

    let span = tracing::info_span!("link", agent.id = %config.agent_id, coordinator = %config.coordinator);
    let result = async {
        let mut backoff = BACKOFF_MIN;
        let targets: Vec<SocketAddr> = std::iter::once(config.coordinator).chain(config.also.iter().copied()).collect();
        let mut target = 0;
        loop {
            let mut established = false;
            let addr = targets[target % targets.len()];
            let outcome = tokio::select! {
                r = session(&endpoint, addr, &config, &runner, &mut established, metrics) => r,
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
    established: &mut bool,
    metrics: &AgentMetrics,
) -> Result<(), LinkError> {
    let connecting = endpoint
        .connect(addr, &config.server_name)
        .map_err(|source| LinkError::Connect { addr, source })?;
    let conn = connecting.await.map_err(|e| classify(&e))?;

    let hello = AgentMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_id: config.agent_id.clone(),
        languages: config.languages.clone(),
        slots: config.slots,
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
    let slots = Arc::new(Semaphore::new(config.slots as usize));
    let languages: Arc<[String]> = config.languages.clone().into();
    let running = Arc::new(Mutex::new(BTreeSet::new()));
    // Dropping the set aborts the jobs: once the connection is gone their results have
    // nowhere to go, and the coordinator has already reported them lost.
    let mut jobs = JoinSet::new();
    // Polled in place across iterations: a frame read is not cancel-safe.
    let control = read_frame::<_, CoordinatorMsg>(&mut recv);
    tokio::pin!(control);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let running = lock(&running).iter().copied().collect();
                let hb = Heartbeat { free_slots: slots.available_permits() as u32, running };
                write_frame(&mut send, &AgentMsg::Heartbeat(hb)).await.map_err(|e| stream_error(&conn, e))?;
            }
            stream = conn.accept_bi() => {
                let (job_send, job_recv) = stream.map_err(|e| classify(&e))?;
                let task = serve_job(job_send, job_recv, runner.clone(), languages.clone(), slots.clone(), running.clone());
                jobs.spawn(task.in_current_span());
            }
            Some(done) = jobs.join_next() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "job task failed");
                }
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
    slots: Arc<Semaphore>,
    running: Arc<Mutex<BTreeSet<u64>>>,
) {
    let job = match read_frame::<_, CoordinatorMsg>(&mut recv).await {
        Ok(Some(CoordinatorMsg::Job(job))) => job,
        Ok(Some(CoordinatorMsg::RunFunction(job))) => {
            return serve_function(send, recv, job, runner, languages, slots, running).await;
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
    let Ok(permit) = slots.try_acquire_owned() else {
        let msg = format!("no free slot for submission {submission_id}");
        return reply_error(&mut send, ErrorCode::Busy, msg).await;
    };
    lock(&running).insert(submission_id);
    let guard = Running { set: running, submission_id };
    tracing::info!(submission.id = submission_id, language = %job.language, tests = job.tests.len(), "job started");

    let (tx, mut rx) = mpsc::channel(16);
    let mut judging = runner.run(job, tx);
    let sent = async {
        let final_result = loop {
            tokio::select! {
                Some(result) = rx.recv() => write_frame(&mut send, &AgentMsg::TestResult(result)).await?,
                final_result = &mut judging => break final_result,
            }
        };
        // Free the slot before the coordinator can see Final and send the next job here.
        drop((permit, guard));
        while let Ok(result) = rx.try_recv() {
            write_frame(&mut send, &AgentMsg::TestResult(result)).await?;
        }
        write_frame(&mut send, &AgentMsg::Final(final_result)).await
    };
    match sent.await {
        Ok(()) => {
            let _ = send.finish();
            tracing::info!(submission.id = submission_id, "job done");
        }
        Err(e) => tracing::warn!(submission.id = submission_id, error = %e, "could not send job results"),
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
