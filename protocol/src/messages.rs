use rkyv::{Archive, Deserialize, Serialize};

/// What an agent sends to the coordinator.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum AgentMsg {
    /// First frame on the control stream.
    Hello(Hello),
    /// Periodic liveness and capacity report on the control stream.
    Heartbeat(Heartbeat),
    /// One test of a job finished (on the job's stream; on the control stream for a job
    /// of an earlier connection, see `Hello::held`).
    TestResult(TestResult),
    /// The job finished; the last frame on the job's stream (or, as above, on the control
    /// stream).
    Final(FinalResult),
    /// The agent could not handle a frame.
    Error(ErrorMsg),
    /// A `viz` step of a function-style run, sent the moment the program wrote it (on the
    /// job's stream). Live data only: never part of the replicated state.
    Step(Step),
    /// The value a function-style test returned (or why it returned none), just before
    /// that test's `TestResult`.
    Return(ReturnValue),
}

/// What the coordinator sends to an agent.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum CoordinatorMsg {
    /// Answer to `Hello` when the agent is admitted.
    Welcome(Welcome),
    /// A job to judge; the first and only coordinator frame on a job stream.
    Job(Job),
    /// The coordinator refuses the agent or a frame, and closes the stream.
    Error(ErrorMsg),
    /// A function-style job: the first coordinator frame on a job stream, like `Job`, but
    /// the coordinator keeps its side open so it can send `Cancel` later.
    RunFunction(FunctionJob),
    /// Stop the job of this stream now; its `Final` follows (verdict `IE`).
    Cancel(Cancel),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Hello {
    pub protocol_version: u32,
    pub agent_id: String,
    /// Language ids this agent can compile and run.
    pub languages: Vec<String>,
    /// Jobs the agent runs at once (cores reserved for judging).
    pub slots: u32,
    /// Submissions of jobs received on an earlier connection that this agent still runs or
    /// has finished without delivering the results: their leases should stay with it. The
    /// results follow as `TestResult` and `Final` frames on the control stream.
    pub held: Vec<u64>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Welcome {
    pub protocol_version: u32,
    pub coordinator_id: String,
    /// The coordinator declares the agent gone after three missed intervals.
    pub heartbeat_interval_ms: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub free_slots: u32,
    /// Submissions the agent is judging now.
    pub running: Vec<u64>,
}

/// Limits of one run. Zero is never "unlimited": the coordinator fills in defaults.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub cpu_ms: u64,
    pub wall_ms: u64,
    pub memory_bytes: u64,
    /// Processes and threads of the run together.
    pub max_processes: u32,
    /// Bytes of stdout and of stderr kept and allowed; more is OLE.
    pub output_bytes: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TestCase {
    pub input: Vec<u8>,
    /// `None`: the output is not compared; a run that ends normally is accepted
    /// (Judge0's submissions without `expected_output`).
    pub expected_output: Option<Vec<u8>>,
}

/// How a job's runs differ from the language table's defaults. `Default` is the plain
/// judge: the table's commands as they are, stderr apart, one run per test.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct JobOptions {
    /// CPU time a run may use past `cpu_ms` before it is stopped; it is still TLE, but
    /// its real time is reported (Judge0's `cpu_extra_time`).
    pub extra_cpu_ms: u64,
    /// Stack rlimit of runs; `None`: as large as the memory limit.
    pub stack_bytes: Option<u64>,
    /// Largest file a run may write (and the size of its /tmp); `None`: the agent's default.
    pub file_bytes: Option<u64>,
    /// Spliced into the compile command where the table says `{compiler_options}`.
    /// Never through a shell.
    pub compiler_args: Vec<String>,
    /// Appended to the run command. Never through a shell.
    pub run_args: Vec<String>,
    /// The program's stderr goes to its stdout, interleaved as written.
    pub merge_stderr: bool,
    /// Runs per test (0 counts as 1); the result reports the average time and memory.
    pub runs: u32,
    /// How each test's output is judged.
    pub checker: Checker,
    /// The group of each test (by index; missing entries are group 0). With `lazy`, the
    /// first failing test of a group skips the rest of that group: no result is sent
    /// for a skipped test.
    pub groups: Vec<u32>,
    /// Stop at the first failure (per group); otherwise every test runs.
    pub lazy: bool,
    /// Interactive problems: the program talks to this interactor through pipes, and
    /// the interactor's exit decides each test (Kattis convention). `checker` is unused.
    pub interactor: Option<CheckerProgram>,
}

/// How a test's output is compared with its expected output.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub enum Checker {
    /// Trailing whitespace of each line and trailing blank lines ignored.
    #[default]
    Whitespace,
    /// Byte for byte.
    Exact,
    /// Like `Whitespace`, ASCII letters compared without case.
    CaseInsensitive,
    /// Whitespace-separated tokens; where the expected token is a number, the output's
    /// must be one within either tolerance (Kattis `float_absolute_tolerance`,
    /// `float_relative_tolerance`); other tokens compare as with `Tokens`.
    Float { absolute: f64, relative: f64, case_sensitive: bool },
    /// Whitespace-separated tokens compared one by one, line breaks ignored (Kattis's
    /// default validator, which ignores case unless `case_sensitive`).
    Tokens { case_sensitive: bool },
    /// A program of the problem setter's, run in a sandbox of its own.
    Program(CheckerProgram),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CheckerProgram {
    pub convention: CheckerConvention,
    /// A language of the agent's table, compiled once per job.
    pub language: String,
    pub source: Vec<u8>,
    /// Kattis `validator_flags`, after the three file arguments.
    pub args: Vec<String>,
    /// Limits of each checker run (independent of the submission's).
    pub limits: Limits,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckerConvention {
    /// `validator input answer feedback_dir [args] < output`; 42 accepts, 43 rejects,
    /// `judgemessage.txt` and `score.txt` in the feedback directory.
    Kattis,
    /// `checker input output answer`; 0 OK, 1 WA, 2 PE, 3 FAIL, 7 points.
    Testlib,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Job {
    pub submission_id: u64,
    pub language: String,
    pub source: Vec<u8>,
    pub tests: Vec<TestCase>,
    pub limits: Limits,
    pub options: JobOptions,
}

/// The verdict codes of the judge. The string forms are part of the public API.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Verdict {
    /// Accepted.
    AC,
    /// Wrong answer.
    WA,
    /// Time limit exceeded (CPU or wall; `TestResult::limit` says which).
    TLE,
    /// Memory limit exceeded: the cgroup's OOM killer stopped the run.
    MLE,
    /// Runtime error: nonzero exit or a signal.
    RE,
    /// Output limit exceeded.
    OLE,
    /// Compilation error.
    CE,
    /// Internal error of the judge; the message says why.
    IE,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::AC => "AC",
            Verdict::WA => "WA",
            Verdict::TLE => "TLE",
            Verdict::MLE => "MLE",
            Verdict::RE => "RE",
            Verdict::OLE => "OLE",
            Verdict::CE => "CE",
            Verdict::IE => "IE",
        }
    }
}

/// Which limit stopped a run, when one did.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LimitHit {
    Cpu,
    Wall,
    Memory,
    Output,
    Processes,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TestResult {
    pub submission_id: u64,
    pub index: u32,
    pub verdict: Verdict,
    pub limit: Option<LimitHit>,
    /// user + sys, from the run's cgroup.
    pub cpu_time_us: u64,
    pub wall_time_us: u64,
    /// Peak memory of the run's cgroup.
    pub peak_memory_bytes: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Truncated to the job's output cap.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Human-readable detail: the signal's name, the first difference, the IE reason.
    pub message: String,
    /// Points a custom checker gave (Kattis `score.txt`, testlib points).
    pub score: Option<f64>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FinalResult {
    pub submission_id: u64,
    pub verdict: Verdict,
    pub compile_output: String,
    pub message: String,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// A frame failed validation or came out of order.
    BadFrame,
    /// The agent does not have the job's language.
    UnknownLanguage,
    /// The agent has no free slot.
    Busy,
    Internal,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    pub message: String,
}

/// A function-style job: every test's `input` is the JSON of the function's arguments (an
/// object binds by parameter name, an array is positional), `expected_output` the JSON of
/// the expected return value, or empty when any value is fine (a plain run).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FunctionJob {
    pub job: Job,
    pub function: FunctionSpec,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionSpec {
    /// The function to call; empty: found from `algorithm_name` (snake_case, camelCase),
    /// else the only top-level function.
    pub entry_point: String,
    pub algorithm_name: String,
    /// Compare a returned array with the expected one as a multiset.
    pub unordered: bool,
    /// `viz` steps kept per test run; 0 turns `viz` into a no-op.
    pub max_steps: u32,
    /// Benchmark measurement: 0 calls the function once (timed by the wall clock, as
    /// EXECUTE_ALGORITHM reports it); N > 0 also measures N repetitions of the call by the
    /// thread's CPU clock, an empty call's cost and the call's peak memory, within
    /// `budget_ms` of CPU per test.
    pub repetitions: u32,
    pub budget_ms: u32,
    /// Benchmarks with a generator program: every test's `input` is then the generator's
    /// stdin (`n m seed`), and the agent runs the generator in a sandbox of its own before
    /// each call to make the call's arguments (the JSON it prints).
    pub generator: Option<Generator>,
}

/// A program that prints a benchmark's input: given `n m seed` on stdin, the JSON of the
/// function's arguments on stdout, the same for the same three numbers.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Generator {
    /// A language id of languages.toml (any, not only those with a harness).
    pub language: String,
    pub source: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Cancel {
    pub submission_id: u64,
    pub reason: String,
}

/// One `viz` step with the run's cgroup readings at the moment it arrived.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Step {
    pub submission_id: u64,
    pub test_index: u32,
    /// 0-based, per test run.
    pub index: u64,
    /// CPU time of the run so far.
    pub cpu_us: u64,
    /// Memory the run's cgroup uses now.
    pub memory_bytes: u64,
    /// Since the run started.
    pub elapsed_us: u64,
    /// JSON object `{description, dataStructure, highlights}` as the harness wrote it;
    /// the agent does not parse it, the coordinator validates it.
    pub payload: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ReturnValue {
    pub submission_id: u64,
    pub test_index: u32,
    /// JSON of the returned value; empty when the function raised or never returned.
    pub value: Vec<u8>,
    /// The exception (with its traceback) or why no value came back.
    pub error: String,
    /// Time of the call alone, measured by the harness inside the sandbox.
    pub function_time_us: u64,
    pub steps: u64,
    /// Steps lost to the caps (in the sandbox or a full queue on the agent).
    pub steps_dropped: u64,
    /// With `FunctionSpec::repetitions`: CPU nanoseconds of one call, per repetition
    /// (a repetition of a fast call times a batch of calls and divides); empty otherwise.
    pub call_cpu_ns: Vec<u64>,
    /// CPU nanoseconds of a call of an empty function through the same timing code
    /// (the median of as many repetitions); 0 when not measured.
    pub empty_call_cpu_ns: u64,
    /// Peak bytes the call allocated on top of what existed before it (Python's
    /// tracemalloc); None when the language cannot tell or the budget did not allow it.
    pub call_peak_bytes: Option<u64>,
}
