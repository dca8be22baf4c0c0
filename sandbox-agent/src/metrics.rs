//! Prometheus metrics of the agent, and the tiny HTTP listener serving them on
//! `GET /metrics` (`--metrics-listen`).
//!
//! One `Registry` per agent, every series carrying the agent's id as the constant label
//! `agent`, so dashboards can select an agent the same way on the coordinator's
//! per-agent series. Labels are bounded: language, verdict, phase, kind.
//!
//! The listener is a hand-rolled HTTP/1.1 responder rather than a web framework: it
//! serves one path to Prometheus, closes every connection after one answer, and bounds
//! what it reads, which is all a scrape endpoint needs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use protocol::Verdict;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::sandbox::RunOutcome;

const VERDICTS: [Verdict; 8] =
    [Verdict::AC, Verdict::WA, Verdict::TLE, Verdict::MLE, Verdict::RE, Verdict::OLE, Verdict::CE, Verdict::IE];
/// Kinds of `judge_agent_link_errors_total`, pre-created at 0.
const LINK_ERROR_KINDS: [&str; 3] = ["connection", "protocol", "refused"];
/// Seconds of CPU or wall time of a run: limits go up to 20 s CPU and 60 s wall.
const TIME_BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0];
/// Seconds from clone to exec: normally a few milliseconds.
const SETUP_BUCKETS: [f64; 11] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];
/// Bytes: 1 MiB to 4 GiB in powers of four (memory limits reach 2 GiB).
const MEMORY_BUCKETS: [f64; 12] = [
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    33_554_432.0,
    67_108_864.0,
    134_217_728.0,
    268_435_456.0,
    536_870_912.0,
    1_073_741_824.0,
    2_147_483_648.0,
    3_221_225_472.0,
    4_294_967_296.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("defining a metric: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// Cheap to clone; clones share one registry.
#[derive(Clone)]
pub struct AgentMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    slots: IntGauge,
    slots_busy: IntGauge,
    jobs: IntCounterVec,
    runs_in_progress: IntGauge,
    run_cpu: HistogramVec,
    run_wall: HistogramVec,
    run_memory: HistogramVec,
    setup: HistogramVec,
    compile: HistogramVec,
    sandbox_errors: IntCounterVec,
    link_connected: IntGauge,
    link_errors: IntCounterVec,
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
}

impl AgentMetrics {
    /// All agent metrics in a fresh registry, labelled `agent=agent_id`.
    pub fn new(agent_id: &str, slots: u32, languages: &[String]) -> Result<AgentMetrics, MetricsError> {
        let labels = HashMap::from([("agent".to_string(), agent_id.to_string())]);
        let registry = Registry::new_custom(None, Some(labels))?;
        let inner = Inner {
            slots: IntGauge::new("judge_agent_slots", "Jobs this agent judges at once.")?,
            slots_busy: IntGauge::new("judge_agent_slots_busy", "Jobs being judged now.")?,
            jobs: IntCounterVec::new(
                Opts::new("judge_agent_jobs_total", "Jobs judged, by language and verdict."),
                &["language", "verdict"],
            )?,
            runs_in_progress: IntGauge::new(
                "judge_agent_runs_in_progress",
                "Sandboxed runs (compiles and tests) now.",
            )?,
            run_cpu: histogram(
                "judge_agent_run_cpu_seconds",
                "CPU time of each test run, by language.",
                &TIME_BUCKETS,
                &["language"],
            )?,
            run_wall: histogram(
                "judge_agent_run_wall_seconds",
                "Wall time of each test run, by language.",
                &TIME_BUCKETS,
                &["language"],
            )?,
            run_memory: histogram(
                "judge_agent_run_peak_memory_bytes",
                "Peak memory of each test run, by language.",
                &MEMORY_BUCKETS,
                &["language"],
            )?,
            setup: histogram(
                "judge_agent_sandbox_setup_seconds",
                "Sandbox set-up overhead (clone to exec) of each run, by phase (compile or test).",
                &SETUP_BUCKETS,
                &["phase"],
            )?,
            compile: histogram(
                "judge_agent_compile_seconds",
                "Wall time of each compilation, by language.",
                &TIME_BUCKETS,
                &["language"],
            )?,
            sandbox_errors: IntCounterVec::new(
                Opts::new("judge_agent_sandbox_errors_total", "Runs the sandbox could not carry out (IE), by phase."),
                &["phase"],
            )?,
            link_connected: IntGauge::new("judge_agent_link_connected", "1 while connected to a coordinator.")?,
            link_errors: IntCounterVec::new(
                Opts::new("judge_agent_link_errors_total", "Failures of the link to the coordinator, by kind."),
                &["kind"],
            )?,
            registry,
        };
        let build = IntGaugeVec::new(
            Opts::new("judge_build_info", "Always 1; the running version in a label."),
            &["component", "version"],
        )?;
        build.with_label_values(&["agent", env!("CARGO_PKG_VERSION")]).set(1);
        let r = &inner.registry;
        r.register(Box::new(build))?;
        r.register(Box::new(inner.slots.clone()))?;
        r.register(Box::new(inner.slots_busy.clone()))?;
        r.register(Box::new(inner.jobs.clone()))?;
        r.register(Box::new(inner.runs_in_progress.clone()))?;
        r.register(Box::new(inner.run_cpu.clone()))?;
        r.register(Box::new(inner.run_wall.clone()))?;
        r.register(Box::new(inner.run_memory.clone()))?;
        r.register(Box::new(inner.setup.clone()))?;
        r.register(Box::new(inner.compile.clone()))?;
        r.register(Box::new(inner.sandbox_errors.clone()))?;
        r.register(Box::new(inner.link_connected.clone()))?;
        r.register(Box::new(inner.link_errors.clone()))?;
        inner.slots.set(i64::from(slots));
        // Zero series for every bounded label value, so panels show 0 rather than nothing.
        for language in languages {
            for verdict in VERDICTS {
                inner.jobs.with_label_values(&[language, verdict.as_str()]).inc_by(0);
            }
        }
        for phase in ["compile", "test"] {
            inner.sandbox_errors.with_label_values(&[phase]).inc_by(0);
        }
        for kind in LINK_ERROR_KINDS {
            inner.link_errors.with_label_values(&[kind]).inc_by(0);
        }
        Ok(AgentMetrics { inner: Arc::new(inner) })
    }

    /// A set nobody serves, for judges and links built without metrics (tests, library use).
    pub fn unregistered() -> AgentMetrics {
        match AgentMetrics::new("-", 0, &[]) {
            Ok(m) => m,
            Err(e) => unreachable!("constant metric definitions are valid: {e}"),
        }
    }

    /// Counts a job as busy until the returned guard drops.
    pub fn job_started(&self) -> Busy {
        Busy::new(self.inner.slots_busy.clone())
    }

    pub fn job_done(&self, language: &str, verdict: Verdict) {
        self.inner.jobs.with_label_values(&[language, verdict.as_str()]).inc();
    }

    /// Counts a sandboxed run as in progress until the returned guard drops.
    pub fn run_started(&self) -> Busy {
        Busy::new(self.inner.runs_in_progress.clone())
    }

    pub fn compiled(&self, language: &str, outcome: &RunOutcome) {
        self.inner.compile.with_label_values(&[language]).observe(outcome.wall.as_secs_f64());
        self.inner.setup.with_label_values(&["compile"]).observe(outcome.setup.as_secs_f64());
    }

    pub fn tested(&self, language: &str, outcome: &RunOutcome) {
        let m = &self.inner;
        m.run_cpu.with_label_values(&[language]).observe(outcome.cpu.as_secs_f64());
        m.run_wall.with_label_values(&[language]).observe(outcome.wall.as_secs_f64());
        m.run_memory.with_label_values(&[language]).observe(outcome.peak_memory_bytes as f64);
        m.setup.with_label_values(&["test"]).observe(outcome.setup.as_secs_f64());
    }

    /// `phase` is "compile" or "test".
    pub fn sandbox_error(&self, phase: &str) {
        self.inner.sandbox_errors.with_label_values(&[phase]).inc();
    }

    pub fn link_connected(&self, connected: bool) {
        self.inner.link_connected.set(i64::from(connected));
    }

    /// `kind` is "connection", "protocol" or "refused".
    pub fn link_error(&self, kind: &str) {
        self.inner.link_errors.with_label_values(&[kind]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.inner.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// Decrements its gauge when dropped, however the job or run ends (panics included).
pub struct Busy(IntGauge);

impl Busy {
    fn new(gauge: IntGauge) -> Busy {
        gauge.inc();
        Busy(gauge)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Bytes of request head we read at most: a scrape request is a few hundred.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: AgentMetrics) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &metrics)).await {
                        tracing::debug!(error = %e, "metrics request timed out");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: &AgentMetrics) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_REQUEST_HEAD {
            let _ = respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "too large\n").await;
            return;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let result = match (method, path) {
        (b"GET", b"/metrics") => match metrics.render() {
            Ok(text) => respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &text).await,
            Err(e) => {
                tracing::error!(error = %e, "cannot render metrics");
                respond(&mut stream, "500 Internal Server Error", "text/plain", "cannot render metrics\n").await
            }
        },
        (b"GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "only /metrics here\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET only\n").await,
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "metrics response not sent");
    }
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn serves_metrics_and_nothing_else() {
        let metrics = AgentMetrics::new("a1", 2, &["c".to_string()]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, metrics));
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get("/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("judge_agent_slots{agent=\"a1\"} 2"), "{ok}");
        assert!(get("/other").await.starts_with("HTTP/1.1 404"));
        server.abort();
    }
}
