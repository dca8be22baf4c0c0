//! The agent link end to end: real QUIC on 127.0.0.1, real certificates in temporary
//! directories, the real agent (`sandbox_agent::link::run`) or a hand-driven QUIC client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coordinator::link::{AgentHub, Dispatch, LinkEvent};
use coordinator::tls::{ClusterTls, SERVER_NAME};
use protocol::{
    AgentMsg, CoordinatorMsg, ErrorCode, FinalResult, Hello, Job, Limits, PROTOCOL_VERSION, TestCase, TestResult,
    Verdict, read_frame, write_frame,
};
use sandbox_agent::link::{JobRunner, LinkConfig, LinkError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

struct Cluster {
    data: tempfile::TempDir,
    tls: ClusterTls,
    hub: AgentHub,
    events: mpsc::UnboundedReceiver<LinkEvent>,
}

async fn cluster() -> Cluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let data = tempfile::tempdir().unwrap();
    let tls = ClusterTls::load_or_create(data.path()).unwrap();
    let (tx, events) = mpsc::unbounded_channel();
    let hub = AgentHub::bind("127.0.0.1:0".parse().unwrap(), &tls, "coord-test".into(), tx).await.unwrap();
    Cluster { data, tls, hub, events }
}

impl Cluster {
    fn agent_dir(&self, agent_id: &str) -> PathBuf {
        let dir = self.data.path().join("agents").join(agent_id);
        self.tls.issue_agent_cert(agent_id, &dir).unwrap();
        dir
    }

    /// The next event other than a heartbeat.
    async fn next(&mut self) -> LinkEvent {
        loop {
            match timeout(WAIT, self.events.recv()).await.expect("no link event in time").expect("hub gone") {
                LinkEvent::Heartbeat { .. } => continue,
                event => return event,
            }
        }
    }

    fn assert_no_agent_up(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            assert!(!matches!(event, LinkEvent::AgentUp { .. }), "unexpected {event:?}");
        }
        assert!(self.hub.agents().is_empty());
    }
}

struct Agent {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), LinkError>>,
}

impl Agent {
    fn start(hub: &AgentHub, tls_dir: &Path, agent_id: &str, runner: Arc<dyn JobRunner>) -> Agent {
        let config = LinkConfig {
            coordinator: hub.local_addr(),
            also: Vec::new(),
            server_name: SERVER_NAME.into(),
            tls_dir: tls_dir.to_path_buf(),
            agent_id: agent_id.into(),
            languages: vec!["c".into(), "python".into()],
            slots: 2,
        };
        let (stop, rx) = watch::channel(false);
        Agent { stop, task: tokio::spawn(sandbox_agent::link::run(config, runner, rx)) }
    }

    /// Waits for `run` to end by itself (a refusal).
    async fn outcome(self) -> Result<(), LinkError> {
        timeout(WAIT, self.task).await.expect("agent kept running").unwrap()
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.outcome().await.unwrap();
    }
}

/// Answers every test with its input as output, then AC.
struct Echo;

impl JobRunner for Echo {
    fn run(
        &self,
        job: Job,
        results: mpsc::Sender<TestResult>,
    ) -> std::pin::Pin<Box<dyn Future<Output = FinalResult> + Send>> {
        Box::pin(async move {
            for (index, test) in job.tests.iter().enumerate() {
                let result = TestResult {
                    submission_id: job.submission_id,
                    index: index as u32,
                    verdict: Verdict::AC,
                    limit: None,
                    cpu_time_us: 1,
                    wall_time_us: 2,
                    peak_memory_bytes: 3,
                    exit_code: Some(0),
                    signal: None,
                    stdout: test.input.clone(),
                    stderr: vec![],
                    message: String::new(),
                    score: None,
                };
                results.send(result).await.unwrap();
            }
            FinalResult {
                submission_id: job.submission_id,
                verdict: Verdict::AC,
                compile_output: String::new(),
                message: String::new(),
            }
        })
    }
}

/// Reports that the job started, then never finishes.
struct Stuck(mpsc::UnboundedSender<u64>);

impl JobRunner for Stuck {
    fn run(&self, job: Job, _: mpsc::Sender<TestResult>) -> std::pin::Pin<Box<dyn Future<Output = FinalResult> + Send>> {
        let _ = self.0.send(job.submission_id);
        Box::pin(std::future::pending())
    }
}

fn job(submission_id: u64, tests: usize) -> Job {
    Job {
        submission_id,
        language: "c".into(),
        source: b"int main(){}".to_vec(),
        tests: (0..tests)
            .map(|i| TestCase { input: format!("in {i}").into_bytes(), expected_output: None })
            .collect(),
        limits: Limits { cpu_ms: 1000, wall_ms: 2000, memory_bytes: 1 << 26, max_processes: 8, output_bytes: 1 << 16 },
        options: Default::default(),
    }
}

#[tokio::test]
async fn registered_agent_runs_a_dispatched_job() {
    let mut c = cluster().await;
    let dir = c.agent_dir("agent-1");
    let agent = Agent::start(&c.hub, &dir, "agent-1", Arc::new(Echo));
    assert_eq!(
        c.next().await,
        LinkEvent::AgentUp { agent_id: "agent-1".into(), languages: vec!["c".into(), "python".into()], slots: 2 }
    );
    c.hub.dispatch("agent-1", job(42, 3)).unwrap();
    for i in 0..3u32 {
        match c.next().await {
            LinkEvent::TestResult { agent_id, result } => {
                assert_eq!((agent_id.as_str(), result.submission_id, result.index), ("agent-1", 42, i));
                assert_eq!(result.stdout, format!("in {i}").into_bytes());
            }
            other => panic!("expected a test result, got {other:?}"),
        }
    }
    match c.next().await {
        LinkEvent::Final { agent_id, result } => assert_eq!((agent_id.as_str(), result.verdict), ("agent-1", Verdict::AC)),
        other => panic!("expected the final result, got {other:?}"),
    }
    assert!(c.hub.dispatch("nobody", job(1, 1)).is_err());

    agent.stop().await;
    assert_eq!(c.next().await, LinkEvent::AgentDown { agent_id: "agent-1".into() });
    assert!(c.hub.agents().is_empty());
    c.hub.shutdown().await;
}

#[tokio::test]
async fn heartbeats_arrive() {
    let mut c = cluster().await;
    let dir = c.agent_dir("agent-hb");
    let agent = Agent::start(&c.hub, &dir, "agent-hb", Arc::new(Echo));
    assert!(matches!(c.next().await, LinkEvent::AgentUp { .. }));
    let hb = timeout(WAIT, c.events.recv()).await.unwrap().unwrap();
    assert_eq!(hb, LinkEvent::Heartbeat { agent_id: "agent-hb".into(), free_slots: 2 });
    agent.stop().await;
    c.hub.shutdown().await;
}

#[tokio::test]
async fn client_cert_from_another_ca_is_refused() {
    let mut c = cluster().await;
    let other_data = tempfile::tempdir().unwrap();
    let other = ClusterTls::load_or_create(other_data.path()).unwrap();
    let dir = other_data.path().join("agent");
    other.issue_agent_cert("agent-1", &dir).unwrap();
    // Trust the real coordinator, so it is the coordinator that must do the refusing.
    std::fs::copy(c.data.path().join("tls/ca.pem"), dir.join("ca.pem")).unwrap();

    let agent = Agent::start(&c.hub, &dir, "agent-1", Arc::new(Echo));
    let err = agent.outcome().await.unwrap_err();
    assert!(matches!(&err, LinkError::Rejected(m) if m.contains("refused our certificate")), "{err}");
    c.assert_no_agent_up();
    c.hub.shutdown().await;
}

#[tokio::test]
async fn agent_refuses_a_coordinator_of_another_ca() {
    let mut c = cluster().await;
    let other_data = tempfile::tempdir().unwrap();
    let other = ClusterTls::load_or_create(other_data.path()).unwrap();
    let dir = other_data.path().join("agent");
    other.issue_agent_cert("agent-1", &dir).unwrap();

    let agent = Agent::start(&c.hub, &dir, "agent-1", Arc::new(Echo));
    let err = agent.outcome().await.unwrap_err();
    assert!(matches!(&err, LinkError::Rejected(m) if m.contains("not trusted")), "{err}");
    c.assert_no_agent_up();
    c.hub.shutdown().await;
}

#[tokio::test]
async fn hello_with_another_agents_id_is_refused() {
    let mut c = cluster().await;
    let dir = c.agent_dir("agent-a");
    let agent = Agent::start(&c.hub, &dir, "agent-b", Arc::new(Echo));
    let err = agent.outcome().await.unwrap_err();
    assert!(matches!(&err, LinkError::Refused(m) if m.contains("does not match")), "{err}");
    c.assert_no_agent_up();
    c.hub.shutdown().await;
}

/// Connects with the agent's credentials and says `hello`, returning the coordinator's answer.
async fn raw_agent(
    c: &Cluster,
    dir: &Path,
    hello: Hello,
) -> (quinn::Endpoint, quinn::Connection, quinn::SendStream, quinn::RecvStream, CoordinatorMsg) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(sandbox_agent::link::client_config(dir).unwrap());
    let conn = endpoint.connect(c.hub.local_addr(), SERVER_NAME).unwrap().await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    write_frame(&mut send, &AgentMsg::Hello(hello)).await.unwrap();
    let reply = timeout(WAIT, read_frame::<_, CoordinatorMsg>(&mut recv)).await.unwrap().unwrap().unwrap();
    (endpoint, conn, send, recv, reply)
}

fn hello(agent_id: &str) -> Hello {
    Hello { protocol_version: PROTOCOL_VERSION, agent_id: agent_id.into(), languages: vec!["c".into()], slots: 1, held: vec![] }
}

#[tokio::test]
async fn other_protocol_version_is_refused() {
    let mut c = cluster().await;
    let dir = c.agent_dir("agent-v");
    let (_endpoint, conn, _, _, reply) = raw_agent(&c, &dir, Hello { protocol_version: 999, ..hello("agent-v") }).await;
    assert!(matches!(reply, CoordinatorMsg::Error(ref e) if e.code == ErrorCode::VersionMismatch), "{reply:?}");
    let closed = timeout(WAIT, conn.closed()).await.unwrap();
    assert!(matches!(closed, quinn::ConnectionError::ApplicationClosed(_)), "{closed}");
    c.assert_no_agent_up();
    c.hub.shutdown().await;
}

#[tokio::test]
async fn agent_shutdown_loses_its_running_job() {
    let mut c = cluster().await;
    let dir = c.agent_dir("agent-1");
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let agent = Agent::start(&c.hub, &dir, "agent-1", Arc::new(Stuck(started_tx)));
    assert!(matches!(c.next().await, LinkEvent::AgentUp { .. }));
    c.hub.dispatch("agent-1", job(7, 2)).unwrap();
    assert!(matches!(
        c.hub.dispatch("agent-1", job(7, 2)),
        Err(coordinator::link::DispatchError::AlreadyRunning { submission_id: 7, .. })
    ));
    assert_eq!(timeout(WAIT, started.recv()).await.unwrap(), Some(7));

    agent.stop().await;
    match c.next().await {
        LinkEvent::JobLost { agent_id, submission_id, reason } => {
            assert_eq!((agent_id.as_str(), submission_id), ("agent-1", 7), "{reason}");
        }
        other => panic!("expected the job lost, got {other:?}"),
    }
    assert_eq!(c.next().await, LinkEvent::AgentDown { agent_id: "agent-1".into() });
    // Exactly once: nothing more arrives for this agent.
    c.hub.shutdown().await;
    assert!(c.events.try_recv().is_err());
}

#[tokio::test]
async fn silent_agent_is_declared_down() {
    let mut c = cluster().await;
    let dir = c.agent_dir("agent-quiet");
    let (_endpoint, conn, _send, _recv, reply) = raw_agent(&c, &dir, hello("agent-quiet")).await;
    assert!(matches!(reply, CoordinatorMsg::Welcome(ref w) if w.heartbeat_interval_ms == 1000), "{reply:?}");
    assert!(matches!(c.next().await, LinkEvent::AgentUp { .. }));
    // No heartbeat is ever sent: the coordinator gives up after three intervals.
    assert_eq!(c.next().await, LinkEvent::AgentDown { agent_id: "agent-quiet".into() });
    let closed = timeout(WAIT, conn.closed()).await.unwrap();
    assert!(matches!(closed, quinn::ConnectionError::ApplicationClosed(_)), "{closed}");
    c.hub.shutdown().await;
}

#[tokio::test]
async fn result_of_another_submission_loses_the_job() {
    let mut c = cluster().await;
    let dir = c.agent_dir("agent-liar");
    let (_endpoint, conn, _send, _recv, _) = raw_agent(&c, &dir, hello("agent-liar")).await;
    assert!(matches!(c.next().await, LinkEvent::AgentUp { .. }));
    c.hub.dispatch("agent-liar", job(5, 1)).unwrap();
    let (mut send, mut recv) = timeout(WAIT, conn.accept_bi()).await.unwrap().unwrap();
    let got = read_frame::<_, CoordinatorMsg>(&mut recv).await.unwrap();
    assert!(matches!(got, Some(CoordinatorMsg::Job(ref j)) if j.submission_id == 5));
    let lie = FinalResult { submission_id: 6, verdict: Verdict::AC, compile_output: String::new(), message: String::new() };
    write_frame(&mut send, &AgentMsg::Final(lie)).await.unwrap();
    match c.next().await {
        LinkEvent::JobLost { submission_id: 5, reason, .. } => assert!(reason.contains("submission 6"), "{reason}"),
        other => panic!("expected the job lost, got {other:?}"),
    }
    c.hub.shutdown().await;
}

#[tokio::test]
async fn agent_refuses_jobs_beyond_its_slots_or_languages() {
    let mut c = cluster().await;
    let dir = c.agent_dir("agent-1");
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let agent = Agent::start(&c.hub, &dir, "agent-1", Arc::new(Stuck(started_tx)));
    assert!(matches!(c.next().await, LinkEvent::AgentUp { slots: 2, .. }));
    for id in [1, 2] {
        c.hub.dispatch("agent-1", job(id, 1)).unwrap();
        assert!(timeout(WAIT, started.recv()).await.unwrap().is_some());
    }
    c.hub.dispatch("agent-1", job(3, 1)).unwrap();
    match c.next().await {
        LinkEvent::JobLost { submission_id: 3, reason, .. } => assert!(reason.contains("Busy"), "{reason}"),
        other => panic!("expected the job refused, got {other:?}"),
    }
    // A language the agent lacks is refused before slots are even looked at.
    c.hub.dispatch("agent-1", Job { language: "cobol".into(), ..job(4, 1) }).unwrap();
    match c.next().await {
        LinkEvent::JobLost { submission_id: 4, reason, .. } => assert!(reason.contains("UnknownLanguage"), "{reason}"),
        other => panic!("expected the job refused, got {other:?}"),
    }
    agent.stop().await;
    c.hub.shutdown().await;
}

#[tokio::test]
async fn second_connection_of_an_agent_replaces_the_first() {
    let mut c = cluster().await;
    let dir = c.agent_dir("agent-r");
    let (_e1, first, _s1, _r1, _) = raw_agent(&c, &dir, hello("agent-r")).await;
    assert!(matches!(c.next().await, LinkEvent::AgentUp { .. }));
    let (_e2, _second, _s2, _r2, reply) = raw_agent(&c, &dir, hello("agent-r")).await;
    assert!(matches!(reply, CoordinatorMsg::Welcome(_)));
    assert_eq!(c.next().await, LinkEvent::AgentDown { agent_id: "agent-r".into() });
    assert!(matches!(c.next().await, LinkEvent::AgentUp { .. }));
    let closed = timeout(WAIT, first.closed()).await.unwrap();
    assert!(matches!(closed, quinn::ConnectionError::ApplicationClosed(_)), "{closed}");
    assert_eq!(c.hub.agents(), vec!["agent-r".to_string()]);
    c.hub.shutdown().await;
    assert_eq!(c.next().await, LinkEvent::AgentDown { agent_id: "agent-r".into() });
}

#[tokio::test]
async fn agent_reconnects_when_its_connection_is_taken_away() {
    let mut c = cluster().await;
    let dir = c.agent_dir("agent-1");
    let agent = Agent::start(&c.hub, &dir, "agent-1", Arc::new(Echo));
    assert!(matches!(c.next().await, LinkEvent::AgentUp { .. }));

    // A second connection with the same certificate replaces the agent's; the agent then
    // reconnects by itself and takes its place back.
    let (_endpoint, intruder, ..) = raw_agent(&c, &dir, hello("agent-1")).await;
    assert_eq!(c.next().await, LinkEvent::AgentDown { agent_id: "agent-1".into() });
    assert!(matches!(c.next().await, LinkEvent::AgentUp { slots: 1, .. }));
    assert_eq!(c.next().await, LinkEvent::AgentDown { agent_id: "agent-1".into() });
    assert!(matches!(c.next().await, LinkEvent::AgentUp { slots: 2, .. }));
    let closed = timeout(WAIT, intruder.closed()).await.unwrap();
    assert!(matches!(closed, quinn::ConnectionError::ApplicationClosed(_)), "{closed}");

    c.hub.dispatch("agent-1", job(9, 1)).unwrap();
    assert!(matches!(c.next().await, LinkEvent::TestResult { .. }));
    assert!(matches!(c.next().await, LinkEvent::Final { ref result, .. } if result.submission_id == 9));
    agent.stop().await;
    c.hub.shutdown().await;
}
