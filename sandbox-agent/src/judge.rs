//! Judging one job: compile once, run every test in a fresh sandbox, check the output,
//! decide each verdict from the measurements.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{FinalResult, Job, LimitHit, TestResult, Verdict};
use rootfs::{Expansion, Language};

use crate::check;
use crate::metrics::AgentMetrics;
use crate::sandbox::{Exit, Profile, RunLimits, RunOutcome, RunSpec, Sandbox};

/// Bytes of a run's stdout/stderr sent back in a result; the rest is only checked.
pub const RETURNED_OUTPUT_BYTES: usize = 64 * 1024;

/// Limits of compilation, the same for every submission.
const COMPILE_LIMITS: RunLimits = RunLimits {
    cpu: Duration::from_secs(10),
    wall: Duration::from_secs(20),
    memory_bytes: 1 << 30,
    max_processes: 64,
    output_bytes: 1 << 20,
    file_bytes: 256 << 20,
    open_files: 256,
    stack_bytes: 64 << 20,
};

/// Largest file a run may write to its /tmp.
const RUN_FILE_BYTES: u64 = 64 << 20;

pub struct Judge {
    pub(crate) sandbox: Sandbox,
    pub(crate) spec: Arc<rootfs::Spec>,
    pub(crate) jobs_dir: PathBuf,
    /// One uid/gid per slot, so concurrent runs never share an identity.
    free_ids: Mutex<Vec<u32>>,
    fallback_id: u32,
    uid_base: u32,
    /// The CPU of each slot, when every slot can have its own.
    slot_cpus: Vec<u32>,
    pub(crate) counter: AtomicU64,
    metrics: AgentMetrics,
}

impl Judge {
    pub fn new(sandbox: Sandbox, spec: Arc<rootfs::Spec>, work_dir: &Path, uid_base: u32, slots: u32) -> std::io::Result<Judge> {
        let jobs_dir = work_dir.join("jobs");
        // Leftovers of a crashed agent are not anyone's anymore (their /box mounts died
        // with its mount namespace; outside one, they are unmounted here).
        if let Ok(entries) = std::fs::read_dir(&jobs_dir) {
            for e in entries.flatten() {
                remove_job_dir(&e.path());
            }
        }
        std::fs::create_dir_all(&jobs_dir)?;
        // One core per slot; with more slots than cores, pinning would stack runs on a
        // core while another idles, so they float instead.
        let cpus = sandbox.pinnable_cpus();
        let slot_cpus = if (slots as usize) <= cpus.len() { cpus[..slots as usize].to_vec() } else { Vec::new() };
        tracing::info!(?slot_cpus, "slots pinned to CPUs");
        Ok(Judge {
            uid_base,
            slot_cpus,
            sandbox,
            spec,
            jobs_dir,
            free_ids: Mutex::new((0..slots).map(|i| uid_base + i).collect()),
            fallback_id: uid_base + slots,
            counter: AtomicU64::new(0),
            metrics: AgentMetrics::unregistered(),
        })
    }

    /// Counts jobs and measures runs into `metrics` (served by the agent's `/metrics`).
    pub fn with_metrics(mut self, metrics: AgentMetrics) -> Judge {
        self.metrics = metrics;
        self
    }

    /// Stops every run in progress: the agent is shutting down.
    pub fn abort_all(&self) {
        self.sandbox.abort_all();
    }

    /// The languages this agent can offer: those whose `requires` exist here.
    pub fn languages(&self) -> Vec<String> {
        let mut offered = Vec::new();
        for (lang, missing) in self.spec.missing_requirements() {
            if missing.is_empty() {
                offered.push(lang.id.clone());
            } else {
                tracing::warn!(language = %lang.id, ?missing, "language left out: its toolchain is missing on this host");
            }
        }
        offered
    }

    /// Judges a job, handing each test's result to `on_result` as soon as it is known.
    /// Blocking: call from a blocking thread.
    pub fn judge(&self, job: &Job, mut on_result: impl FnMut(TestResult)) -> FinalResult {
        let _busy = self.metrics.job_started();
        let id = self.take_id();
        let dir = self.jobs_dir.join(format!("{}-{}", job.submission_id, self.counter.fetch_add(1, Ordering::Relaxed)));
        let result = self.judge_in(job, &dir, id, &mut on_result);
        remove_job_dir(&dir.join(crate::checker::CHECKER_DIR));
        remove_job_dir(&dir);
        self.put_id(id);
        self.metrics.job_done(&job.language, result.verdict);
        result
    }

    /// The CPU of the slot whose identity is `id`.
    pub(crate) fn cpu_for(&self, id: u32) -> Option<u32> {
        self.slot_cpus.get(id.checked_sub(self.uid_base)? as usize).copied()
    }

    pub(crate) fn take_id(&self) -> u32 {
        self.free_ids.lock().map(|mut v| v.pop()).ok().flatten().unwrap_or(self.fallback_id)
    }

    pub(crate) fn put_id(&self, id: u32) {
        if id != self.fallback_id
            && let Ok(mut v) = self.free_ids.lock()
        {
            v.push(id);
        }
    }

    fn judge_in(&self, job: &Job, dir: &Path, id: u32, on_result: &mut impl FnMut(TestResult)) -> FinalResult {
        let fin = |verdict, compile_output: String, message: String| FinalResult {
            submission_id: job.submission_id,
            verdict,
            compile_output,
            message,
        };
        let Some(lang) = self.spec.language(&job.language) else {
            return fin(Verdict::IE, String::new(), format!("this agent has no language {:?}", job.language));
        };
        let box_dir = dir.join("box");
        if let Err(e) = prepare_box(&box_dir, &lang.source, &job.source, id) {
            return fin(Verdict::IE, String::new(), format!("cannot prepare the work dir: {e}"));
        }
        let input = dir.join("input");

        if let Err((verdict, output, message)) =
            self.compile(lang, &job.options.compiler_args, &box_dir, &input, id, None)
        {
            return fin(verdict, output, message);
        }

        let checker = match &job.options.checker {
            protocol::Checker::Program(program) => match self.prepare_checker(program, dir, id) {
                Ok(c) => Some(c),
                Err(message) => return fin(Verdict::IE, String::new(), message),
            },
            _ => None,
        };
        let interactor = match &job.options.interactor {
            // Both would live in the same checker directory, and a problem has one or
            // the other: the coordinator never sends both.
            Some(_) if checker.is_some() => {
                return fin(Verdict::IE, String::new(), "a job has a checker program or an interactor, not both".into());
            }
            Some(program) => match self.prepare_checker(program, dir, id) {
                Ok(c) => Some(c),
                Err(message) => return fin(Verdict::IE, String::new(), message.replace("checker", "interactor")),
            },
            None => None,
        };

        let limits = run_limits(job, lang);
        let argv = run_argv(job, lang, limits);
        let mut verdict = Verdict::AC;
        let mut message = String::new();
        // Groups with a failure, whose remaining tests a lazy job skips.
        let mut failed_groups = std::collections::BTreeSet::new();
        for (index, test) in job.tests.iter().enumerate() {
            let group = job.options.groups.get(index).copied().unwrap_or(0);
            if job.options.lazy && failed_groups.contains(&group) {
                continue;
            }
            if let Err(e) = std::fs::write(&input, &test.input) {
                return fin(Verdict::IE, String::new(), format!("cannot write the input: {e}"));
            }
            let spec = RunSpec {
                argv: &argv,
                env: &lang.env,
                box_dir: &box_dir,
                box_writable: false,
                stdin: &input,
                limits,
                uid: id,
                gid: id,
                profile: Profile::Program,
                pin_cpu: self.cpu_for(id),
            };
            let expected = test.expected_output.as_deref().unwrap_or_default();
            let outcome = {
                let _running = self.metrics.run_started();
                match &interactor {
                    Some(c) => self
                        .run_interactive(c, &spec, &test.input, expected, id)
                        .map(|(o, judged)| (o, Some(judged)))
                        .map_err(crate::sandbox::SandboxError::Invalid),
                    None => self.run_repeated(&spec, job.options.runs.max(1)).map(|o| (o, None)),
                }
            };
            let result = match outcome {
                Ok((o, Some(judged))) => {
                    self.metrics.tested(&lang.id, &o);
                    // The interactor's rejection stands even when the program then died
                    // of the closed pipe; otherwise the program's own failure comes first.
                    let rejected = judged.verdict == Verdict::WA;
                    let message = judged.message.clone();
                    let mut r = test_result(job, index as u32, &o, |_| judged, lang, limits);
                    if rejected && r.verdict != Verdict::WA {
                        r.verdict = Verdict::WA;
                        r.limit = None;
                        r.message = message;
                    }
                    r
                }
                Ok((o, None)) => {
                    self.metrics.tested(&lang.id, &o);
                    let judge_output = |stdout: &[u8]| -> Judged {
                        match (&checker, test.expected_output.as_deref()) {
                            (Some(c), expected) => {
                                self.run_checker(c, &test.input, expected.unwrap_or_default(), stdout, id)
                            }
                            (None, None) => Judged::accepted(),
                            (None, Some(expected)) => match check::check(&job.options.checker, expected, stdout) {
                                Ok(()) => Judged::accepted(),
                                Err(diff) => Judged { verdict: Verdict::WA, message: diff, score: None },
                            },
                        }
                    };
                    test_result(job, index as u32, &o, judge_output, lang, limits)
                }
                Err(e) => {
                    self.metrics.sandbox_error("test");
                    TestResult {
                        submission_id: job.submission_id,
                        index: index as u32,
                        verdict: Verdict::IE,
                        limit: None,
                        cpu_time_us: 0,
                        wall_time_us: 0,
                        peak_memory_bytes: 0,
                        exit_code: None,
                        signal: None,
                        stdout: Vec::new(),
                        stderr: Vec::new(),
                        message: format!("sandbox failed: {e}"),
                        score: None,
                    }
                }
            };
            if result.verdict != Verdict::AC {
                failed_groups.insert(group);
                if verdict == Verdict::AC {
                    verdict = result.verdict;
                    message = format!("test {}: {}", index + 1, result.message);
                }
            }
            on_result(result);
        }
        fin(verdict, String::new(), message)
    }
}

impl Judge {
    /// Compiles the source in /box (writable) under the compile limits, once per job.
    /// `Err` carries the job's final verdict, compiler output and message: CE for what
    /// the compiler refused or a compile limit, IE for the judge's own failures.
    pub(crate) fn compile(
        &self,
        lang: &Language,
        compiler_args: &[String],
        box_dir: &Path,
        input: &Path,
        id: u32,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<(), (Verdict, String, String)> {
        let Some(compile) = &lang.compile else { return Ok(()) };
        let ie = |message: String| Err((Verdict::IE, String::new(), message));
        if let Err(e) = std::fs::write(input, b"") {
            return ie(format!("cannot write the input: {e}"));
        }
        if !compiler_args.is_empty() && !lang.takes_compiler_options() {
            return ie(format!("{} takes no compiler options", lang.id));
        }
        let limits = RunLimits {
            max_processes: COMPILE_LIMITS.max_processes.max(lang.min_processes),
            open_files: COMPILE_LIMITS.open_files.max(lang.min_open_files),
            ..COMPILE_LIMITS
        };
        let x = Expansion { memory_mb: limits.memory_bytes >> 20, stack_kb: limits.stack_bytes >> 10, compiler_options: compiler_args };
        let argv = lang.expand(compile, &x);
        let spec = RunSpec {
            argv: &argv,
            env: &lang.env,
            box_dir,
            box_writable: true,
            stdin: input,
            limits,
            uid: id,
            gid: id,
            profile: Profile::Tool,
            pin_cpu: self.cpu_for(id),
        };
        let outcome = {
            let _running = self.metrics.run_started();
            self.sandbox.run_observed(&spec, crate::sandbox::Observer { steps: None, cancel })
        };
        let o = match outcome {
            Ok(o) => o,
            Err(crate::sandbox::SandboxError::Cancelled) => return ie("cancelled".into()),
            Err(e) => {
                self.metrics.sandbox_error("compile");
                return ie(format!("compilation sandbox failed: {e}"));
            }
        };
        self.metrics.compiled(&lang.id, &o);
        let mut output = o.stdout.clone();
        output.extend_from_slice(&o.stderr);
        let output = lossy_truncated(&output);
        if let Some(limit) = o.limit {
            return Err((Verdict::CE, output, format!("compilation exceeded its {} limit", limit_name(limit))));
        }
        if o.exit != Exit::Code(0) {
            return Err((Verdict::CE, output, format!("compiler {}", describe_exit(o.exit))));
        }
        Ok(())
    }

    /// Runs a test `runs` times (Judge0's `number_of_runs`) and reports the first run
    /// that failed, or the last one with CPU, wall time and memory averaged over all.
    fn run_repeated(&self, spec: &RunSpec, runs: u32) -> Result<RunOutcome, crate::sandbox::SandboxError> {
        let (mut cpu, mut wall, mut memory) = (Duration::ZERO, Duration::ZERO, 0u64);
        let mut last = None;
        for _ in 0..runs {
            let o = self.sandbox.run(spec)?;
            if o.limit.is_some() || o.exit != Exit::Code(0) {
                return Ok(o);
            }
            cpu += o.cpu;
            wall += o.wall;
            memory = memory.saturating_add(o.peak_memory_bytes);
            last = Some(o);
        }
        let mut o = last.ok_or_else(|| crate::sandbox::SandboxError::Invalid("no run".into()))?;
        o.cpu = cpu / runs;
        o.wall = wall / runs;
        o.peak_memory_bytes = memory / u64::from(runs);
        Ok(o)
    }
}

/// The run command: the table's, placeholders filled from the run's limits, the job's
/// arguments appended. Merging stderr into stdout takes a shell that only redirects and
/// execs: the program and its arguments are positional parameters, never parsed.
fn run_argv(job: &Job, lang: &Language, limits: RunLimits) -> Vec<String> {
    let x = Expansion { memory_mb: limits.memory_bytes >> 20, stack_kb: limits.stack_bytes >> 10, compiler_options: &[] };
    let mut argv = lang.expand(&lang.run, &x);
    argv.extend(job.options.run_args.iter().cloned());
    if job.options.merge_stderr {
        let mut wrapped: Vec<String> = ["/bin/sh", "-c", "exec \"$@\" 2>&1", "sh"].map(String::from).to_vec();
        wrapped.extend(argv);
        argv = wrapped;
    }
    argv
}

/// Bytes and files a job's /box may hold: the source, the compiler's output and
/// whatever compile-time code (a `-wrapper`, a build script) writes there.
const BOX_BYTES: u64 = 256 << 20;
const BOX_INODES: u64 = 8192;

/// Makes the job's /box: a size- and inode-limited tmpfs (the compiler writes into it,
/// so it must not be able to fill the host's disk), owned by the slot's uid, holding the
/// source. `remove_job_dir` undoes it.
pub(crate) fn prepare_box(box_dir: &Path, source_name: &str, source: &[u8], id: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(box_dir)?;
    let parent = box_dir.parent().unwrap_or(box_dir);
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))?;
    crate::sandbox::mount_tmpfs(box_dir, BOX_BYTES, BOX_INODES, id)?;
    let src = box_dir.join(source_name);
    std::fs::write(&src, source)?;
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644))
}

/// Removes a job's directory, unmounting its /box first.
pub(crate) fn remove_job_dir(dir: &Path) {
    crate::sandbox::unmount(&dir.join("box"));
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a job's directory");
    }
}

fn scaled(ms: u64, lang: &Language) -> Duration {
    Duration::from_secs_f64(ms as f64 * lang.time_multiplier / 1000.0)
}

/// The sandbox's limits of a run. The CPU limit includes the job's extra time: the run
/// is stopped only then, but judged against `cpu_ms` (see `test_result`).
pub(crate) fn run_limits(job: &Job, lang: &Language) -> RunLimits {
    RunLimits {
        cpu: scaled(job.limits.cpu_ms.saturating_add(job.options.extra_cpu_ms), lang),
        wall: scaled(job.limits.wall_ms, lang),
        memory_bytes: job.limits.memory_bytes,
        max_processes: job.limits.max_processes.max(lang.min_processes),
        output_bytes: job.limits.output_bytes,
        file_bytes: job.options.file_bytes.unwrap_or(RUN_FILE_BYTES),
        open_files: 256u64.max(lang.min_open_files),
        stack_bytes: job.options.stack_bytes.unwrap_or(job.limits.memory_bytes),
    }
}

/// How a checker judged one output.
pub(crate) struct Judged {
    pub verdict: Verdict,
    pub message: String,
    pub score: Option<f64>,
}

impl Judged {
    fn accepted() -> Judged {
        Judged { verdict: Verdict::AC, message: String::new(), score: None }
    }
}

/// The test's result from the run's measurements; `judge_output` is asked only about a
/// run that ended normally within its limits.
fn test_result(
    job: &Job,
    index: u32,
    o: &RunOutcome,
    judge_output: impl FnOnce(&[u8]) -> Judged,
    lang: &Language,
    limits: RunLimits,
) -> TestResult {
    let cpu_limit = scaled(job.limits.cpu_ms, lang);
    // Within the extra time the run was not stopped, but it is over the limit all the same;
    // and a run over its CPU limit that the wall clock stopped is still a CPU TLE.
    let limit = match o.limit {
        None | Some(LimitHit::Wall) if o.cpu > cpu_limit => Some(LimitHit::Cpu),
        l => l,
    };
    let mut score = None;
    let (verdict, message) = match limit {
        Some(LimitHit::Cpu) => (Verdict::TLE, format!("CPU time limit of {} ms exceeded", cpu_limit.as_millis())),
        Some(LimitHit::Wall) => (Verdict::TLE, format!("wall time limit of {} ms exceeded", limits.wall.as_millis())),
        Some(LimitHit::Memory) => (Verdict::MLE, format!("memory limit of {} MiB exceeded", limits.memory_bytes >> 20)),
        Some(LimitHit::Output) => (Verdict::OLE, format!("output limit of {} bytes exceeded", limits.output_bytes)),
        Some(LimitHit::Processes) => {
            (Verdict::RE, format!("{} after reaching the limit of {} processes", describe_exit(o.exit), limits.max_processes))
        }
        None => match o.exit {
            Exit::Code(0) => {
                let judged = judge_output(&o.stdout);
                score = judged.score;
                (judged.verdict, judged.message)
            }
            e => (Verdict::RE, describe_exit(e)),
        },
    };
    let (exit_code, signal) = match o.exit {
        Exit::Code(c) => (Some(c), None),
        Exit::Signal(s) => (None, Some(s)),
    };
    TestResult {
        submission_id: job.submission_id,
        index,
        verdict,
        limit,
        cpu_time_us: o.cpu.as_micros() as u64,
        wall_time_us: o.wall.as_micros() as u64,
        peak_memory_bytes: o.peak_memory_bytes,
        exit_code,
        signal,
        stdout: o.stdout[..o.stdout.len().min(RETURNED_OUTPUT_BYTES)].to_vec(),
        stderr: o.stderr[..o.stderr.len().min(RETURNED_OUTPUT_BYTES)].to_vec(),
        message,
        score,
    }
}

fn limit_name(l: LimitHit) -> &'static str {
    match l {
        LimitHit::Cpu => "CPU time",
        LimitHit::Wall => "wall time",
        LimitHit::Memory => "memory",
        LimitHit::Output => "output",
        LimitHit::Processes => "process",
    }
}

pub(crate) fn describe_exit(e: Exit) -> String {
    match e {
        Exit::Code(c) => format!("exited with code {c}"),
        Exit::Signal(s) => format!("killed by {}", signal_name(s)),
    }
}

/// The conventional name of a signal, as judges and users know them.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL (illegal instruction)",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT (aborted)",
        libc::SIGBUS => "SIGBUS (bus error)",
        libc::SIGFPE => "SIGFPE (arithmetic error)",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV (segmentation fault)",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ (file size limit)",
        libc::SIGSYS => "SIGSYS (bad system call)",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

fn lossy_truncated(bytes: &[u8]) -> String {
    let cut = bytes.len().min(RETURNED_OUTPUT_BYTES);
    let mut s = String::from_utf8_lossy(&bytes[..cut]).into_owned();
    if cut < bytes.len() {
        s.push_str("\n[output truncated]");
    }
    s
}

/// The link's view of the judge: each job on a blocking thread, results streamed back.
pub struct JudgeRunner(pub Arc<Judge>);

impl crate::link::JobRunner for JudgeRunner {
    fn run(
        &self,
        job: Job,
        results: tokio::sync::mpsc::Sender<TestResult>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = FinalResult> + Send>> {
        let judge = self.0.clone();
        Box::pin(async move {
            let submission_id = job.submission_id;
            let task = tokio::task::spawn_blocking(move || {
                judge.judge(&job, |r| {
                    // A closed channel means the link is gone; the job's result is lost
                    // anyway and the coordinator re-queues it.
                    let _ = results.blocking_send(r);
                })
            });
            task.await.unwrap_or_else(|e| FinalResult {
                submission_id,
                verdict: Verdict::IE,
                compile_output: String::new(),
                message: format!("the judge task failed: {e}"),
            })
        })
    }

    fn run_function(
        &self,
        job: protocol::FunctionJob,
        events: tokio::sync::mpsc::Sender<protocol::AgentMsg>,
        cancel: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = FinalResult> + Send>> {
        let judge = self.0.clone();
        Box::pin(async move {
            let submission_id = job.job.submission_id;
            let task =
                tokio::task::spawn_blocking(move || crate::function::run_function_blocking(judge, job, events, cancel));
            task.await.unwrap_or_else(|e| FinalResult {
                submission_id,
                verdict: Verdict::IE,
                compile_output: String::new(),
                message: format!("the judge task failed: {e}"),
            })
        })
    }
}
