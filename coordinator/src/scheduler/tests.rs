#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use protocol::{FinalResult, Limits, TestCase, TestResult};

use super::*;

/// Records dispatched jobs; agents listed in `gone` fail like a disconnected agent.
#[derive(Default)]
struct FakeDispatch {
    sent: Mutex<Vec<(String, Job)>>,
    gone: Mutex<Vec<String>>,
    /// Agents connected to another coordinator (or to none): `serves` is false for them.
    elsewhere: Mutex<Vec<String>>,
}

impl FakeDispatch {
    fn sent(&self) -> Vec<(String, u64)> {
        self.sent.lock().unwrap().iter().map(|(a, j)| (a.clone(), j.submission_id)).collect()
    }
}

impl Dispatch for FakeDispatch {
    fn dispatch(&self, agent_id: &str, job: Job) -> Result<(), DispatchError> {
        if self.gone.lock().unwrap().iter().any(|g| g == agent_id) {
            return Err(DispatchError::UnknownAgent(agent_id.to_owned()));
        }
        self.sent.lock().unwrap().push((agent_id.to_owned(), job));
        Ok(())
    }

    fn serves(&self, agent_id: &str) -> bool {
        !self.elsewhere.lock().unwrap().iter().any(|g| g == agent_id)
    }
}

fn scheduler(config: SchedulerConfig) -> (Scheduler, Arc<FakeDispatch>) {
    let fake = Arc::new(FakeDispatch::default());
    let ticks = Arc::new(AtomicU64::new(1_000));
    let clock: Clock = Arc::new(move || ticks.fetch_add(1, Ordering::SeqCst));
    (Scheduler::with_config(fake.clone(), config, clock), fake)
}

fn submission(language: &str) -> NewSubmission {
    NewSubmission {
        language: language.into(),
        source: b"print(input())".to_vec(),
        tests: vec![
            TestCase { input: b"1\n".to_vec(), expected_output: Some(b"1\n".to_vec()) },
            TestCase { input: b"2\n".to_vec(), expected_output: Some(b"2\n".to_vec()) },
        ],
        limits: Limits {
            cpu_ms: 1000,
            wall_ms: 4000,
            memory_bytes: 256 << 20,
            max_processes: 64,
            output_bytes: 1 << 20,
        },
        options: Default::default(),
        judge0: None,
        problem: None,
    }
}

fn agent_up(id: &str, languages: &[&str], slots: u32) -> LinkEvent {
    LinkEvent::AgentUp { agent_id: id.into(), languages: languages.iter().map(|l| l.to_string()).collect(), slots }
}

fn test_result(id: u64, index: u32) -> TestResult {
    TestResult {
        submission_id: id,
        index,
        verdict: Verdict::AC,
        limit: None,
        cpu_time_us: 10,
        wall_time_us: 20,
        peak_memory_bytes: 30,
        exit_code: Some(0),
        signal: None,
        stdout: b"ok".to_vec(),
        stderr: Vec::new(),
        message: String::new(),
        score: None,
    }
}

fn final_event(agent: &str, id: u64, verdict: Verdict) -> LinkEvent {
    LinkEvent::Final {
        agent_id: agent.into(),
        result: FinalResult { submission_id: id, verdict, compile_output: "warning".into(), message: "done".into() },
    }
}

#[tokio::test]
async fn submission_is_dispatched_judged_and_shown_done() {
    let (s, fake) = scheduler(SchedulerConfig::default());
    let id = s.submit(submission("py")).await.unwrap();
    assert_eq!(id, 1);
    assert!(fake.sent().is_empty(), "no agent yet");
    assert_eq!(s.get(id).await.unwrap().status, Status::Queued);

    s.handle_event(agent_up("a", &["py"], 2)).await;
    assert_eq!(fake.sent(), vec![("a".to_string(), id)]);
    let job = fake.sent.lock().unwrap()[0].1.clone();
    assert_eq!(job.tests.len(), 2);
    assert_eq!(job.language, "py");
    assert_eq!(job.limits.cpu_ms, 1000);
    assert_eq!(s.get(id).await.unwrap().status, Status::Running);
    assert_eq!(s.agents_summary().await, AgentsSummary { connected: 1, slots: 2, free_slots: 1 });
    assert_eq!(s.queue_summary().await, QueueSummary { queued: 0, running: 1 });

    // Out of order on purpose: the view sorts by index.
    s.handle_event(LinkEvent::TestResult { agent_id: "a".into(), result: test_result(id, 1) }).await;
    s.handle_event(LinkEvent::TestResult { agent_id: "a".into(), result: test_result(id, 0) }).await;
    s.handle_event(final_event("a", id, Verdict::AC)).await;
    let view = s.get(id).await.unwrap();
    assert_eq!(view.status, Status::Done);
    assert_eq!(view.verdict, Some(Verdict::AC));
    assert_eq!(view.message, "done");
    assert_eq!(view.compile_output, "warning");
    assert_eq!(view.tests.iter().map(|t| t.result.index).collect::<Vec<_>>(), vec![0, 1]);
    assert!(view.finished_ms.is_some());
    assert_eq!(s.queue_summary().await, QueueSummary { queued: 0, running: 0 });

    // A second Final changes nothing.
    s.handle_event(final_event("a", id, Verdict::WA)).await;
    assert_eq!(s.get(id).await.unwrap().verdict, Some(Verdict::AC));
}

#[tokio::test]
async fn lost_job_is_dispatched_again() {
    let (s, fake) = scheduler(SchedulerConfig::default());
    s.handle_event(agent_up("a", &["py"], 1)).await;
    let id = s.submit(submission("py")).await.unwrap();
    assert_eq!(fake.sent(), vec![("a".to_string(), id)]);
    s.handle_event(LinkEvent::TestResult { agent_id: "a".into(), result: test_result(id, 0) }).await;
    s.handle_event(LinkEvent::JobLost { agent_id: "a".into(), submission_id: id, reason: "stream reset".into() }).await;
    assert_eq!(fake.sent(), vec![("a".to_string(), id), ("a".to_string(), id)]);
    let view = s.get(id).await.unwrap();
    assert_eq!(view.status, Status::Running);
    assert!(view.tests.is_empty(), "partial results of the lost run are dropped");
    assert_eq!(view.attempts, 2);
}

#[tokio::test]
async fn agent_down_moves_its_jobs_to_another_agent() {
    let (s, fake) = scheduler(SchedulerConfig::default());
    s.handle_event(agent_up("a", &["py"], 1)).await;
    let id = s.submit(submission("py")).await.unwrap();
    s.handle_event(LinkEvent::AgentDown { agent_id: "a".into() }).await;
    assert_eq!(s.get(id).await.unwrap().status, Status::Queued);
    s.handle_event(agent_up("b", &["py"], 1)).await;
    assert_eq!(fake.sent(), vec![("a".to_string(), id), ("b".to_string(), id)]);
    assert_eq!(s.agents_summary().await.connected, 1);
}

#[tokio::test]
async fn dispatch_error_requeues_and_forgets_the_agent() {
    let (s, fake) = scheduler(SchedulerConfig::default());
    fake.gone.lock().unwrap().push("ghost".into());
    s.handle_event(agent_up("ghost", &["py"], 4)).await;
    let id = s.submit(submission("py")).await.unwrap();
    assert!(fake.sent().is_empty());
    assert_eq!(s.get(id).await.unwrap().status, Status::Queued);
    assert_eq!(s.agents_summary().await.connected, 0);
    s.handle_event(agent_up("b", &["py"], 1)).await;
    assert_eq!(fake.sent(), vec![("b".to_string(), id)]);
}

#[tokio::test]
async fn jobs_wait_for_a_free_slot() {
    let (s, fake) = scheduler(SchedulerConfig::default());
    s.handle_event(agent_up("a", &["py"], 1)).await;
    let first = s.submit(submission("py")).await.unwrap();
    let second = s.submit(submission("py")).await.unwrap();
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(s.queue_summary().await, QueueSummary { queued: 1, running: 1 });
    s.handle_event(final_event("a", first, Verdict::AC)).await;
    assert_eq!(fake.sent(), vec![("a".to_string(), first), ("a".to_string(), second)]);
}

#[tokio::test]
async fn heartbeats_do_not_disturb_scheduling() {
    let (s, fake) = scheduler(SchedulerConfig::default());
    s.handle_event(agent_up("a", &["py"], 2)).await;
    s.handle_event(LinkEvent::Heartbeat { agent_id: "a".into(), free_slots: 0 }).await;
    s.submit(submission("py")).await.unwrap();
    assert_eq!(fake.sent().len(), 1);
    s.handle_event(LinkEvent::Heartbeat { agent_id: "nobody".into(), free_slots: 3 }).await;
}

#[tokio::test]
async fn full_queue_refuses_submissions() {
    let (s, _fake) = scheduler(SchedulerConfig { max_queued: 1, ..SchedulerConfig::default() });
    s.submit(submission("py")).await.unwrap();
    assert!(matches!(s.submit(submission("py")).await, Err(SubmitError::QueueFull(1))));
    assert!(s.get(2).await.is_none());
}

#[tokio::test]
async fn run_consumes_the_event_channel() {
    let (s, fake) = scheduler(SchedulerConfig::default());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(s.clone().run(rx));
    let id = s.submit(submission("c")).await.unwrap();
    tx.send(agent_up("a", &["c"], 1)).unwrap();
    tx.send(final_event("a", id, Verdict::CE)).unwrap();
    drop(tx);
    task.await.unwrap();
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(s.get(id).await.unwrap().verdict, Some(Verdict::CE));
}

fn durable(dir: &std::path::Path, fake: Arc<FakeDispatch>) -> Scheduler {
    durable_snapshotting(dir, fake, crate::cluster::node::DEFAULT_SNAPSHOT_EVERY)
}

fn durable_snapshotting(dir: &std::path::Path, fake: Arc<FakeDispatch>, snapshot_every: u64) -> Scheduler {
    let (store, _) = LogStore::open(dir, &[1]).unwrap();
    let mut node = NodeConfig::single(1);
    node.snapshot_every = snapshot_every;
    let setup = ClusterSetup { node, store };
    let clock: Clock = Arc::new(|| 7_000);
    Scheduler::start(fake, SchedulerConfig::default(), clock, Metrics::unregistered(), setup).unwrap()
}

/// Polls `cond` until it holds; a replay runs on the node thread after `start` returns.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
}

#[tokio::test]
async fn acknowledged_submissions_and_verdicts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeDispatch::default());
    let (done, queued) = {
        let s = durable(dir.path(), fake.clone());
        s.handle_event(agent_up("a", &["py"], 1)).await;
        let done = s.submit(submission("py")).await.unwrap();
        let queued = s.submit(submission("py")).await.unwrap();
        s.handle_event(final_event("a", done, Verdict::WA)).await;
        assert_eq!(fake.sent(), vec![("a".to_string(), done), ("a".to_string(), queued)]);
        assert_eq!(s.cluster_status().role, crate::cluster::Role::Leader);
        (done, queued)
    };
    let s = durable(dir.path(), Arc::new(FakeDispatch::default()));
    // The replay runs entry by entry after `start`. The agent's one slot leased the second
    // submission only after the first's verdict, so once that lease is back, so is the
    // verdict. It is leased to `a` again: that agent's reconnect will requeue it.
    eventually("the replay of the lease", async || s.get(queued).await.is_some_and(|v| v.status == Status::Running)).await;
    let first = s.get(done).await.unwrap();
    assert_eq!((first.status, first.verdict), (Status::Done, Some(Verdict::WA)));
    // Ids go on from the log, not from 1.
    assert_eq!(s.submit(submission("py")).await.unwrap(), queued + 1);
}

#[tokio::test]
async fn a_silent_agents_jobs_return_to_the_queue_after_its_lease() {
    let fake = Arc::new(FakeDispatch::default());
    let time = Arc::new(AtomicU64::new(1_000));
    let t = time.clone();
    let clock: Clock = Arc::new(move || t.load(Ordering::SeqCst));
    let s = Scheduler::with_config(fake.clone(), SchedulerConfig::default(), clock);
    s.handle_event(agent_up("a", &["py"], 1)).await;
    let id = s.submit(submission("py")).await.unwrap();
    assert_eq!(fake.sent(), vec![("a".to_string(), id)]);

    // Heartbeats renew the lease: well past LEASE_MS since the start, nothing expires.
    for _ in 0..10 {
        time.fetch_add(LEASE_RENEW_MS, Ordering::SeqCst);
        s.handle_event(LinkEvent::Heartbeat { agent_id: "a".into(), free_slots: 0 }).await;
        s.expire_silent_agents().await;
    }
    assert_eq!(s.get(id).await.unwrap().status, Status::Running);

    // `a`'s coordinator died: nobody reports it down, and it is not connected here.
    fake.elsewhere.lock().unwrap().push("a".into());
    time.fetch_add(LEASE_MS - 1, Ordering::SeqCst);
    s.expire_silent_agents().await;
    assert_eq!(s.get(id).await.unwrap().status, Status::Running, "not before the lease ends");
    time.fetch_add(1, Ordering::SeqCst);
    s.expire_silent_agents().await;
    assert_eq!(s.get(id).await.unwrap().status, Status::Queued);
    assert_eq!(s.agents_summary().await.connected, 0);

    s.handle_event(agent_up("b", &["py"], 1)).await;
    assert_eq!(fake.sent(), vec![("a".to_string(), id), ("b".to_string(), id)]);
    // a's verdict arrives late through some coordinator: refused; b's wins.
    s.handle_event(final_event("a", id, Verdict::WA)).await;
    s.handle_event(final_event("b", id, Verdict::AC)).await;
    assert_eq!(s.get(id).await.unwrap().verdict, Some(Verdict::AC));
}

#[tokio::test]
async fn a_silent_agent_connected_here_is_renewed_not_expired() {
    let fake = Arc::new(FakeDispatch::default());
    let time = Arc::new(AtomicU64::new(1_000));
    let t = time.clone();
    let clock: Clock = Arc::new(move || t.load(Ordering::SeqCst));
    let s = Scheduler::with_config(fake.clone(), SchedulerConfig::default(), clock);
    s.handle_event(agent_up("a", &["py"], 1)).await;
    let id = s.submit(submission("py")).await.unwrap();
    time.fetch_add(LEASE_MS * 2, Ordering::SeqCst);
    s.expire_silent_agents().await;
    assert_eq!(s.get(id).await.unwrap().status, Status::Running);
    assert_eq!(s.agents_summary().await.connected, 1);
}

#[tokio::test]
async fn a_restart_from_a_snapshot_and_the_compacted_log_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeDispatch::default());
    let (views, status) = {
        let s = durable_snapshotting(dir.path(), fake.clone(), 7);
        s.handle_event(agent_up("a", &["py"], 1)).await;
        let mut ids = Vec::new();
        for _ in 0..12 {
            ids.push(s.submit(submission("py")).await.unwrap());
        }
        // Finish the first eight, one after the other (each frees the slot for the next).
        for &id in &ids[..8] {
            s.handle_event(final_event("a", id, if id % 2 == 0 { Verdict::AC } else { Verdict::WA })).await;
        }
        let mut views = Vec::new();
        for &id in &ids {
            views.push(s.get(id).await.unwrap());
        }
        (views, s.cluster_status())
    };
    assert!(status.snapshot_index >= 7, "snapshots were taken: {status:?}");
    assert!(status.applied > status.snapshot_index, "and entries came after the last one: {status:?}");
    {
        // The log on disk starts after the snapshot (a later one if a snapshot was under
        // way when the node stopped: the node finishes it before it lets go).
        let (store, recovery) = LogStore::open(dir.path(), &[1]).unwrap();
        assert!(recovery.snapshot_index >= status.snapshot_index, "{recovery:?} {status:?}");
        assert_eq!(raft::Storage::first_index(&store.storage()).unwrap(), recovery.snapshot_index + 1);
    }
    let s = durable_snapshotting(dir.path(), Arc::new(FakeDispatch::default()), 7);
    let last = views.last().unwrap().id;
    eventually("the tail of the log replayed", async || s.get(last).await.is_some()).await;
    eventually("every submission as before", async || {
        let mut now = Vec::new();
        for v in &views {
            now.push(s.get(v.id).await);
        }
        now.into_iter().zip(&views).all(|(a, b)| a.as_ref() == Some(b))
    })
    .await;
    // Alone, the node leads again and commits the whole log it had.
    eventually("the whole log applied", async || s.cluster_status().applied >= status.applied).await;
    assert_eq!(views.iter().filter(|v| v.status == Status::Done).count(), 8);
}

/// An `Assign` whose proposal timed out (its fate unknown to the proposer) but committed
/// is settled by sending the job: the lease is not left with an agent that never got it.
#[tokio::test]
async fn an_assignment_of_unknown_fate_that_committed_is_dispatched() {
    let (s, fake) = scheduler(SchedulerConfig::default());
    let id = s.submit(submission("py")).await.unwrap();
    // The agent, registered without a pump round: as if the pump's proposal were the one
    // in doubt.
    let up = Command::AgentUp { agent_id: "a".into(), languages: vec!["py".into()], slots: 1, now_ms: 2_000 };
    s.propose(up).await.unwrap().unwrap();
    let assign = Command::Assign { submission_id: id, agent_id: "a".into(), now_ms: 2_000 };
    assert_eq!(s.propose(assign).await.unwrap().unwrap(), Effect::Assigned);
    assert!(fake.sent().is_empty());
    s.settle_assignment(id, "a".into()).await;
    assert_eq!(fake.sent(), vec![("a".to_string(), id)], "the committed assignment is sent");
    assert_eq!(s.get(id).await.unwrap().status, Status::Running);
}
