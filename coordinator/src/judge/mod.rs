//! The judge state machine: submissions, their leases on agents, and their verdicts.
//!
//! Everything here is deterministic: no I/O, no clock, no randomness, no hash-map
//! iteration order. Time arrives inside commands and ids come from a counter, so the same
//! sequence of `Command`s always produces the same state. That is what lets a replicated
//! log drive this code unchanged later.
//!
//! `JudgeState::apply` either changes the state and returns an `Effect`, or returns a
//! `Rejected` and leaves the state exactly as it was. Rejections are normal (a late result
//! from an agent that lost its lease, a second `Final`), not bugs.

mod state;
#[cfg(test)]
mod tests;

pub use state::JudgeState;

use protocol::{FinalResult, FunctionSpec, JobOptions, Limits, TestCase, TestResult, Verdict};

pub type SubmissionId = u64;

/// Output bytes of each stream kept per test. Agents may send up to the job's output cap
/// (megabytes) per stream per test; keeping all of it for every finished submission would
/// grow without bound, and nobody reads more than this through the API.
pub const KEPT_OUTPUT_BYTES: usize = 64 * 1024;

/// How often a submission may be handed to an agent before the judge gives up with `IE`.
/// Without a bound, a submission that kills every agent it lands on would do so forever.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// A submission as accepted from a client, already validated.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NewSubmission {
    pub language: String,
    pub source: Vec<u8>,
    pub tests: Vec<TestCase>,
    pub limits: Limits,
    pub options: JobOptions,
    /// Set for submissions made through the Judge0-compatible API.
    pub judge0: Option<Judge0Meta>,
    /// Set for submissions to a contest problem: how they are scored.
    pub problem: Option<crate::contest::ProblemRef>,
}

/// What the Judge0-compatible API needs to remember about a submission. The token is
/// chosen at the edge (a UUID v4) and carried in the command, so the state stays a pure
/// function of the command log and the token map can be replicated with it.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Judge0Meta {
    pub token: String,
    pub language_id: u32,
    /// Where the result is PUT when the submission is done.
    pub callback_url: Option<String>,
    /// How the client asked at creation: the callback answers in kind.
    pub base64_encoded: bool,
    /// The Judge0 request fields as given (seconds, KB), echoed back by `fields=`.
    pub cpu_extra_time_ms: u64,
    pub max_file_size_kb: u64,
    pub stack_limit_kb: u64,
    pub number_of_runs: u32,
    pub compiler_options: Option<String>,
    pub command_line_arguments: Option<String>,
    pub redirect_stderr_to_stdout: bool,
}

/// Every input of the state machine. Plain data, so it can be logged and replayed.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Command {
    /// A new submission enters the queue; its id is assigned by the state.
    Accept { submission: NewSubmission, now_ms: u64 },
    /// A function-style submission (the WebSocket API's runs): like `Accept`, and its job
    /// goes out as `RunFunction`. Its tests' inputs are JSON arguments, see `FunctionJob`.
    AcceptFunction { submission: NewSubmission, function: FunctionSpec, now_ms: u64 },
    /// Queued -> running on `agent_id`.
    Assign { submission_id: SubmissionId, agent_id: String, now_ms: u64 },
    /// One test finished; kept only while the submission runs on `agent_id`.
    TestDone { submission_id: SubmissionId, agent_id: String, result: TestResult },
    /// The submission's verdict. `agent_id: None` is the coordinator's own decision and is
    /// accepted while queued or running; from an agent it must hold the lease.
    Complete { submission_id: SubmissionId, agent_id: Option<String>, result: FinalResult, now_ms: u64 },
    /// Running -> queued, dropping partial results (its agent died, the stream broke).
    /// With `agent_id`, only if that agent still holds the lease: a report about an old
    /// lease must not requeue the submission from under its new agent.
    /// `now_ms` is there because a submission out of attempts is completed (`IE`) instead.
    Requeue { submission_id: SubmissionId, agent_id: Option<String>, reason: String, now_ms: u64 },
    /// An agent joined (or rejoined: its old leases are then void and requeued).
    AgentUp { agent_id: String, languages: Vec<String>, slots: u32, now_ms: u64 },
    /// An agent left; everything it was running goes back to the queue.
    AgentDown { agent_id: String, now_ms: u64 },
    /// The agent's own count of free slots. Informational: scheduling counts leases,
    /// because a heartbeat is always a little stale.
    AgentSlots { agent_id: String, free_slots: u32 },
    /// The agent's coordinator heard from it: its leases are renewed until `now_ms`.
    AgentAlive { agent_id: String, now_ms: u64 },
    /// Like `AgentDown`, but only if the agent was not heard of after `silent_since_ms`:
    /// its coordinator may be gone, so nobody would ever report it down, and its jobs
    /// would stay leased forever. The condition makes a late expiry harmless to an agent
    /// that has just been heard of again (through any coordinator).
    ExpireAgent { agent_id: String, silent_since_ms: u64, now_ms: u64 },
    /// Done -> queued again with (possibly new) tests, limits and options: the problem's
    /// data changed, or a verdict is in doubt. The finished judging is kept in `history`.
    Rejudge { submission_id: SubmissionId, rejudge: Rejudge, now_ms: u64 },
    /// Names the cluster (a random id chosen by the proposer), once: the history in the
    /// database is keyed on it, so every coordinator of the cluster projects into one
    /// stream, and a cluster started afresh (ids from 1 again) into a new one.
    NameCluster { cluster_id: String },
    /// Where coordinator `node_id` listens (raft peer link, HTTP API): the address book of
    /// nodes added at run time, replicated (and kept in snapshots) so every node, even one
    /// restarted long after, can reach them. Who votes is raft's membership, not this.
    AddMember { node_id: u64, raft: String, api: String },
    /// Like `AgentUp`, but the leases of `held` (submissions the agent still runs, or has
    /// results of, from a connection it lost) stay with it if it still holds them: their
    /// results follow, through whichever coordinator it reached. Its other leases are
    /// void and requeued. (A variant of its own, last, so logs written before it decode.)
    AgentRejoin { agent_id: String, languages: Vec<String>, slots: u32, held: Vec<SubmissionId>, now_ms: u64 },
}

/// What a rejudged submission is judged against now (a problem's current version).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Rejudge {
    pub tests: Vec<TestCase>,
    pub limits: Limits,
    pub options: JobOptions,
    pub problem: Option<crate::contest::ProblemRef>,
}

/// What an accepted command did.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Accepted {
        id: SubmissionId,
    },
    Assigned,
    TestRecorded,
    Completed {
        verdict: Verdict,
    },
    /// Submissions put back in the queue, and those that ran out of attempts and were
    /// completed with `IE` instead.
    Requeued {
        requeued: Vec<SubmissionId>,
        gave_up: Vec<SubmissionId>,
    },
    AgentRegistered {
        requeued: Vec<SubmissionId>,
        gave_up: Vec<SubmissionId>,
    },
    SlotsUpdated,
    AgentSeen,
    Rejudged,
    ClusterNamed,
    MemberAdded,
}

/// Why a command was refused. The state is unchanged after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("submission {0} does not exist")]
    UnknownSubmission(SubmissionId),
    #[error("agent {0:?} is not registered")]
    UnknownAgent(String),
    #[error("submission {id} is {actual}, expected {expected}")]
    WrongStatus { id: SubmissionId, actual: Status, expected: &'static str },
    #[error("submission {id} is not leased to agent {agent:?}")]
    NotLeaseHolder { id: SubmissionId, agent: String },
    #[error("agent {agent:?} does not speak {language:?}")]
    LanguageUnsupported { agent: String, language: String },
    #[error("agent {0:?} has no free slot")]
    NoFreeSlot(String),
    #[error("result is for submission {got}, command is for {expected}")]
    IdMismatch { expected: SubmissionId, got: SubmissionId },
    #[error("test index {index} out of range (submission has {count} tests)")]
    TestOutOfRange { index: u32, count: usize },
    #[error("test {0} already has a result")]
    DuplicateTest(u32),
    #[error("a submission needs at least one test")]
    NoTests,
    #[error("token {0:?} is taken")]
    DuplicateToken(String),
    #[error("agent {0:?} was heard of since; its leases stand")]
    AgentNotSilent(String),
    #[error("submission {0} is a function run; only program submissions are rejudged")]
    NotRejudgeable(SubmissionId),
    #[error("the cluster is named {0:?} already")]
    ClusterNamed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Done,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done => "done",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A per-test result as kept: output cut to `KEPT_OUTPUT_BYTES`, original sizes remembered
/// so readers can tell a cut apart from output that happened to be exactly that long.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TestRecord {
    pub result: TestResult,
    pub stdout_len: u64,
    pub stderr_len: u64,
}

impl TestRecord {
    fn keep(mut result: TestResult) -> TestRecord {
        let stdout_len = result.stdout.len() as u64;
        let stderr_len = result.stderr.len() as u64;
        result.stdout.truncate(KEPT_OUTPUT_BYTES);
        result.stderr.truncate(KEPT_OUTPUT_BYTES);
        TestRecord { result, stdout_len, stderr_len }
    }
}

/// A coordinator's addresses, as added at run time.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Member {
    pub raft: String,
    pub api: String,
}

/// The agent currently judging a submission.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Lease {
    pub agent_id: String,
    pub since_ms: u64,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Submission {
    pub id: SubmissionId,
    pub language: String,
    pub source: Vec<u8>,
    /// Emptied once the submission is done: inputs can be tens of megabytes and are only
    /// needed to build the job. `test_count` survives. Judge0 submissions keep theirs:
    /// Judge0 clients read `stdin` and `expected_output` back.
    pub tests: Vec<TestCase>,
    pub test_count: usize,
    pub limits: Limits,
    pub options: JobOptions,
    pub judge0: Option<Judge0Meta>,
    pub problem: Option<crate::contest::ProblemRef>,
    /// Set for function-style submissions.
    pub function: Option<FunctionSpec>,
    pub status: Status,
    pub accepted_ms: u64,
    pub lease: Option<Lease>,
    /// Times the submission was assigned to an agent.
    pub attempts: u32,
    /// Why it was last requeued, for diagnosis.
    pub last_requeue_reason: Option<String>,
    pub results: Vec<TestRecord>,
    pub outcome: Option<FinalResult>,
    pub finished_ms: Option<u64>,
    /// Earlier judgings of a rejudged submission, oldest first.
    pub history: Vec<PastJudging>,
}

/// One finished judging of a submission that was rejudged since.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PastJudging {
    pub outcome: FinalResult,
    pub results: Vec<TestRecord>,
    pub problem: Option<crate::contest::ProblemRef>,
    pub finished_ms: u64,
}

impl Submission {
    pub fn verdict(&self) -> Option<Verdict> {
        self.outcome.as_ref().map(|o| o.verdict)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Agent {
    pub id: String,
    pub languages: std::collections::BTreeSet<String>,
    pub slots: u32,
    /// Last heartbeat's own count, for display only.
    pub reported_free_slots: Option<u32>,
    pub running: std::collections::BTreeSet<SubmissionId>,
    /// When it last joined or was heard of (`AgentUp`, `AgentAlive`): its leases hold
    /// until this plus the lease time.
    pub last_seen_ms: u64,
}

impl Agent {
    /// Slots not covered by a lease in this state.
    pub fn free_slots(&self) -> u32 {
        let running = u32::try_from(self.running.len()).unwrap_or(u32::MAX);
        self.slots.saturating_sub(running)
    }
}
