//! Function-style jobs: the language's harness (rootfs/harness/) loads the user's code,
//! calls its function with each test's JSON arguments and reports the returned value; the
//! code's `viz` steps arrive on descriptor 3 while it runs and are handed on at once, with
//! the run's cgroup readings of that instant.
//!
//! Lines on descriptor 3: `S{json}` a step, `R{json}` the call's outcome (last). Anything
//! else there was written by the user's code itself and is ignored.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use protocol::{FinalResult, FunctionJob, Generator, LimitHit, ReturnValue, Step, TestResult, Verdict};
use serde_json::Value;

use crate::judge::{Judge, describe_exit, prepare_box, remove_job_dir, run_limits};
use crate::sandbox::{Exit, Observer, Profile, RunLimits, RunOutcome, RunSpec, SandboxError, StepEvent, StepLimits};

/// Steps per test run at most, whatever the job asks for.
pub const MAX_STEPS: u32 = 10_000;
/// A line on descriptor 3 longer than this is dropped by the sandbox (a step's data
/// structure is cut to 64 KiB by the harness; this leaves room for a large return value).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Bytes of step lines per run; beyond this lines are dropped (and counted).
pub const MAX_TOTAL_BYTES: u64 = 32 << 20;
/// Benchmark repetitions per test at most, whatever the job asks for.
pub const MAX_REPETITIONS: u32 = 100;
/// Characters of a value quoted in a wrong-answer message.
const QUOTED: usize = 200;

/// A benchmark's input generator runs under these limits, its own and not the job's: it
/// is the problem's program, not the user's, and its time is never the user's. Its
/// output (the call's arguments as JSON) is capped at `output_bytes`.
pub const GENERATOR_LIMITS: RunLimits = RunLimits {
    cpu: Duration::from_secs(5),
    wall: Duration::from_secs(15),
    memory_bytes: 512 << 20,
    max_processes: 16,
    output_bytes: 8 << 20,
    file_bytes: 16 << 20,
    open_files: 64,
    stack_bytes: 64 << 20,
};
/// Characters of a failing generator's stderr (or compiler output) quoted in the error.
const GENERATOR_QUOTED: usize = 400;

/// What a function job produces, in order: steps while a test runs, then its `Return`
/// and `Test`.
#[derive(Debug)]
pub enum FunctionEvent {
    Step(Step),
    Return(ReturnValue),
    Test(TestResult),
}

impl Judge {
    /// Judges a function-style job. `emit` gets every event; for a `Step` it must not block
    /// (the sandbox's monitor calls it) and returns false when it had to drop the step.
    /// Setting `cancel` stops the current run within 100 ms and ends the job with `IE`.
    /// Blocking: call from a blocking thread.
    pub fn judge_function(
        &self,
        job: &FunctionJob,
        cancel: &AtomicBool,
        emit: &mut (dyn FnMut(FunctionEvent) -> bool + Send),
    ) -> FinalResult {
        let id = self.take_id();
        let dir = self.jobs_dir.join(format!(
            "fn-{}-{}",
            job.job.submission_id,
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        let result = self.function_in(job, &dir, id, cancel, emit);
        // The generator's /box is a mount of its own under the job's directory.
        remove_job_dir(&dir.join("generator"));
        remove_job_dir(&dir);
        self.put_id(id);
        result
    }

    fn function_in(
        &self,
        fj: &FunctionJob,
        dir: &Path,
        id: u32,
        cancel: &AtomicBool,
        emit: &mut (dyn FnMut(FunctionEvent) -> bool + Send),
    ) -> FinalResult {
        let job = &fj.job;
        let fin = |verdict, compile_output: String, message: String| FinalResult {
            submission_id: job.submission_id,
            verdict,
            compile_output,
            message,
        };
        let Some(lang) = self.spec.language(&job.language) else {
            return fin(Verdict::IE, String::new(), format!("this agent has no language {:?}", job.language));
        };
        let Some(harness) = rootfs::harness(&job.language) else {
            return fin(Verdict::IE, String::new(), format!("function-style runs do not support {:?} yet", job.language));
        };
        let box_dir = dir.join("box");
        let prepared = prepare_box(&box_dir, &lang.source, &job.source, id).and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            let path = box_dir.join(harness.file_name);
            std::fs::write(&path, harness.source)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        });
        if let Err(e) = prepared {
            return fin(Verdict::IE, String::new(), format!("cannot prepare the work dir: {e}"));
        }
        let input = dir.join("input");

        // A compiled language's harness is linked with the user's code by its own command.
        let linked;
        let compile_lang = match harness.compile {
            Some(argv) => {
                linked = rootfs::Language { compile: Some(argv.iter().map(|s| s.to_string()).collect()), ..lang.clone() };
                &linked
            }
            None => lang,
        };
        if let Err((verdict, output, message)) = self.compile(compile_lang, &[], &box_dir, &input, id, Some(cancel)) {
            return fin(verdict, output, message);
        }

        let generator = match &fj.function.generator {
            Some(g) => match self.prepare_generator(g, dir, id, cancel) {
                Ok(prepared) => Some(prepared),
                Err(message) => return fin(Verdict::IE, String::new(), message),
            },
            None => None,
        };

        let argv: Vec<String> = harness.run.iter().map(|s| s.to_string()).collect();
        let max_steps = fj.function.max_steps.min(MAX_STEPS);
        let step_limits = StepLimits {
            // The truncation marker and the result line come on top of the steps.
            max_steps: u64::from(max_steps) + 2,
            max_line_bytes: MAX_LINE_BYTES,
            max_total_bytes: MAX_TOTAL_BYTES,
        };
        let limits = run_limits(job, lang);
        let mut verdict = Verdict::AC;
        let mut message = String::new();
        for (index, test) in job.tests.iter().enumerate() {
            let index = index as u32;
            if cancel.load(Ordering::SeqCst) {
                return fin(Verdict::IE, String::new(), "cancelled".into());
            }
            let args: Value = match &generator {
                Some(g) => match self.generate(g, &test.input, index == 0, id, cancel) {
                    Ok(v) => v,
                    Err(why) => {
                        // The problem's generator failed, not the user's code: an internal
                        // error of the benchmark, which the coordinator reports as such.
                        let msg = format!("the input generator failed on `{}` (n m seed): {why}", String::from_utf8_lossy(&test.input).trim());
                        emit(FunctionEvent::Test(ie_result(job.submission_id, index, &msg)));
                        return fin(Verdict::IE, String::new(), msg);
                    }
                },
                None => match serde_json::from_slice(&test.input) {
                    Ok(v) => v,
                    Err(e) => return fin(Verdict::IE, String::new(), format!("test {}: the arguments are not JSON: {e}", index + 1)),
                },
            };
            let request = serde_json::json!({
                "source": lang.source,
                "entry": fj.function.entry_point,
                "name": fj.function.algorithm_name,
                "args": args,
                "maxSteps": max_steps,
                "repetitions": fj.function.repetitions.min(MAX_REPETITIONS),
                "budgetMs": fj.function.budget_ms,
            });
            if let Err(e) = std::fs::write(&input, request.to_string()) {
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
            let mut outcome_line: Option<Vec<u8>> = None;
            let (mut steps, mut dropped) = (0u64, 0u64);
            let run = {
                let submission_id = job.submission_id;
                let mut sink = |e: StepEvent<'_>| match e.line.first() {
                    Some(b'S') => {
                        let step = Step {
                            submission_id,
                            test_index: index,
                            index: steps,
                            cpu_us: e.cpu.as_micros() as u64,
                            memory_bytes: e.memory_bytes,
                            elapsed_us: e.elapsed.as_micros() as u64,
                            payload: e.line[1..].to_vec(),
                        };
                        steps += 1;
                        if !emit(FunctionEvent::Step(step)) {
                            dropped += 1;
                        }
                    }
                    Some(b'R') => outcome_line = Some(e.line[1..].to_vec()),
                    _ => {}
                };
                let observer = Observer { steps: Some((step_limits, &mut sink)), cancel: Some(cancel) };
                self.sandbox.run_observed(&spec, observer)
            };
            let o = match run {
                Ok(o) => o,
                Err(SandboxError::Cancelled) => {
                    emit(FunctionEvent::Test(ie_result(job.submission_id, index, "cancelled")));
                    return fin(Verdict::IE, String::new(), "cancelled".into());
                }
                Err(e) => {
                    let msg = format!("sandbox failed: {e}");
                    emit(FunctionEvent::Test(ie_result(job.submission_id, index, &msg)));
                    return fin(Verdict::IE, String::new(), format!("test {}: {msg}", index + 1));
                }
            };
            dropped += o.steps_dropped;
            let call = Call::parse(outcome_line.as_deref());
            let (test_verdict, test_message) = decide(&o, &call, test.expected_output.as_deref().unwrap_or_default(), fj.function.unordered, limits);
            emit(FunctionEvent::Return(ReturnValue {
                submission_id: job.submission_id,
                test_index: index,
                value: call.value.clone().unwrap_or_default(),
                error: call.error.clone(),
                function_time_us: call.time_us,
                steps,
                steps_dropped: dropped,
                call_cpu_ns: call.cpu_ns.clone(),
                empty_call_cpu_ns: call.empty_ns,
                call_peak_bytes: call.peak_bytes,
            }));
            let (exit_code, signal) = match o.exit {
                Exit::Code(c) => (Some(c), None),
                Exit::Signal(s) => (None, Some(s)),
            };
            let mut stderr = o.stderr.clone();
            if !call.trace.is_empty() {
                stderr.extend_from_slice(call.trace.as_bytes());
            }
            stderr.truncate(crate::judge::RETURNED_OUTPUT_BYTES);
            emit(FunctionEvent::Test(TestResult {
                submission_id: job.submission_id,
                index,
                verdict: test_verdict,
                limit: o.limit,
                cpu_time_us: o.cpu.as_micros() as u64,
                wall_time_us: o.wall.as_micros() as u64,
                peak_memory_bytes: o.peak_memory_bytes,
                exit_code,
                signal,
                stdout: o.stdout[..o.stdout.len().min(crate::judge::RETURNED_OUTPUT_BYTES)].to_vec(),
                stderr,
                message: test_message.clone(),
                score: None,
            }));
            if call.entry_error {
                // The code has no function to call: no other test can go differently.
                return fin(Verdict::CE, call.error.clone(), call.error);
            }
            if verdict == Verdict::AC && test_verdict != Verdict::AC {
                verdict = test_verdict;
                message = format!("test {}: {test_message}", index + 1);
            }
        }
        fin(verdict, String::new(), message)
    }
}

/// A compiled generator, ready to run once per size.
struct PreparedGenerator<'a> {
    lang: &'a rootfs::Language,
    box_dir: std::path::PathBuf,
    input: std::path::PathBuf,
}

impl Judge {
    /// Writes the generator into a /box of its own and compiles it there (compile limits,
    /// as any compilation); errors are the message of the benchmark's failure.
    fn prepare_generator<'a>(
        &'a self,
        g: &Generator,
        dir: &Path,
        id: u32,
        cancel: &AtomicBool,
    ) -> Result<PreparedGenerator<'a>, String> {
        let lang = self
            .spec
            .language(&g.language)
            .ok_or_else(|| format!("the input generator's language {:?} is not one of this agent's", g.language))?;
        let gen_dir = dir.join("generator");
        let box_dir = gen_dir.join("box");
        prepare_box(&box_dir, &lang.source, &g.source, id)
            .map_err(|e| format!("cannot prepare the input generator's work dir: {e}"))?;
        let input = gen_dir.join("input");
        if let Err((_, output, message)) = self.compile(lang, &[], &box_dir, &input, id, Some(cancel)) {
            let detail = if output.trim().is_empty() { message } else { output };
            return Err(format!("the input generator does not compile: {}", cut(detail.trim(), GENERATOR_QUOTED)));
        }
        Ok(PreparedGenerator { lang, box_dir, input })
    }

    /// Runs the generator on one size's `n m seed` and parses what it printed. With
    /// `twice`, runs it a second time and insists on the same bytes: a generator that is
    /// not deterministic by its seed would make two solutions' benchmarks incomparable.
    fn generate(&self, g: &PreparedGenerator<'_>, stdin: &[u8], twice: bool, id: u32, cancel: &AtomicBool) -> Result<Value, String> {
        std::fs::write(&g.input, stdin).map_err(|e| format!("cannot write its input: {e}"))?;
        let first = self.run_generator(g, id, cancel)?;
        if twice && self.run_generator(g, id, cancel)? != first {
            return Err("it printed different inputs for the same n, m and seed: it must be deterministic by its seed".into());
        }
        serde_json::from_slice::<Value>(&first).map_err(|e| {
            let head = String::from_utf8_lossy(&first[..first.len().min(80)]).into_owned();
            format!("its output is not the JSON of the function's arguments ({e}); it began {head:?}")
        })
    }

    fn run_generator(&self, g: &PreparedGenerator<'_>, id: u32, cancel: &AtomicBool) -> Result<Vec<u8>, String> {
        let x = rootfs::Expansion {
            memory_mb: GENERATOR_LIMITS.memory_bytes >> 20,
            stack_kb: GENERATOR_LIMITS.stack_bytes >> 10,
            compiler_options: &[],
        };
        let argv = g.lang.expand(&g.lang.run, &x);
        let limits = RunLimits {
            max_processes: GENERATOR_LIMITS.max_processes.max(g.lang.min_processes),
            open_files: GENERATOR_LIMITS.open_files.max(g.lang.min_open_files),
            ..GENERATOR_LIMITS
        };
        let spec = RunSpec {
            argv: &argv,
            env: &g.lang.env,
            box_dir: &g.box_dir,
            box_writable: false,
            stdin: &g.input,
            limits,
            uid: id,
            gid: id,
            profile: Profile::Program,
            pin_cpu: self.cpu_for(id),
        };
        let o = match self.sandbox.run_observed(&spec, Observer { steps: None, cancel: Some(cancel) }) {
            Ok(o) => o,
            Err(SandboxError::Cancelled) => return Err("cancelled".into()),
            Err(e) => return Err(format!("the sandbox failed: {e}")),
        };
        let why = match o.limit {
            Some(LimitHit::Cpu) => Some(format!("it ran over its CPU limit of {} ms", limits.cpu.as_millis())),
            Some(LimitHit::Wall) => Some(format!("it ran over its wall time limit of {} ms", limits.wall.as_millis())),
            Some(LimitHit::Memory) => Some(format!("it ran over its memory limit of {} MiB", limits.memory_bytes >> 20)),
            Some(LimitHit::Output) => Some(format!("it printed over its output limit of {} bytes", limits.output_bytes)),
            Some(LimitHit::Processes) => Some(format!("{} after reaching its process limit", describe_exit(o.exit))),
            None if o.exit != Exit::Code(0) => Some(describe_exit(o.exit)),
            None => None,
        };
        if let Some(why) = why {
            let stderr = String::from_utf8_lossy(&o.stderr);
            return Err(if stderr.trim().is_empty() { why } else { format!("{why}; stderr: {}", cut(stderr.trim(), GENERATOR_QUOTED)) });
        }
        Ok(o.stdout)
    }
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

fn ie_result(submission_id: u64, index: u32, message: &str) -> TestResult {
    TestResult {
        submission_id,
        index,
        verdict: Verdict::IE,
        limit: None,
        cpu_time_us: 0,
        wall_time_us: 0,
        peak_memory_bytes: 0,
        exit_code: None,
        signal: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        message: message.to_string(),
        score: None,
    }
}

/// The harness's `R` line, read defensively: the user's code can write to descriptor 3.
#[derive(Debug, Default)]
struct Call {
    reported: bool,
    value: Option<Vec<u8>>,
    error: String,
    trace: String,
    entry_error: bool,
    time_us: u64,
    cpu_ns: Vec<u64>,
    empty_ns: u64,
    peak_bytes: Option<u64>,
}

impl Call {
    fn parse(line: Option<&[u8]>) -> Call {
        let Some(line) = line else { return Call::default() };
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return Call { reported: true, error: "the harness's report is not JSON".into(), ..Call::default() };
        };
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        if v.get("ok") == Some(&Value::Bool(true)) {
            let value = v.get("value").cloned().unwrap_or(Value::Null);
            Call {
                reported: true,
                value: Some(value.to_string().into_bytes()),
                time_us: v.get("timeUs").and_then(Value::as_u64).unwrap_or(0),
                // Written by the harness in the run's process, so the user's code could
                // forge them: only their shape is checked, and their number capped.
                cpu_ns: v
                    .get("cpuNs")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).take(MAX_REPETITIONS as usize).collect())
                    .unwrap_or_default(),
                empty_ns: v.get("emptyNs").and_then(Value::as_u64).unwrap_or(0),
                peak_bytes: v.get("peakBytes").and_then(Value::as_u64),
                ..Call::default()
            }
        } else {
            Call {
                reported: true,
                error: text("error"),
                trace: text("trace"),
                entry_error: text("kind") == "entry",
                ..Call::default()
            }
        }
    }
}

fn decide(
    o: &RunOutcome,
    call: &Call,
    expected: &[u8],
    unordered: bool,
    limits: crate::sandbox::RunLimits,
) -> (Verdict, String) {
    match o.limit {
        Some(LimitHit::Cpu) => return (Verdict::TLE, format!("CPU time limit of {} ms exceeded", limits.cpu.as_millis())),
        Some(LimitHit::Wall) => return (Verdict::TLE, format!("wall time limit of {} ms exceeded", limits.wall.as_millis())),
        Some(LimitHit::Memory) => {
            return (Verdict::MLE, format!("memory limit of {} MiB exceeded", limits.memory_bytes >> 20));
        }
        Some(LimitHit::Output) => return (Verdict::OLE, format!("output limit of {} bytes exceeded", limits.output_bytes)),
        Some(LimitHit::Processes) => {
            return (Verdict::RE, format!("{} after reaching the process limit", describe_exit(o.exit)));
        }
        None => {}
    }
    if call.entry_error {
        return (Verdict::CE, call.error.clone());
    }
    if !call.error.is_empty() {
        return (Verdict::RE, call.error.clone());
    }
    let Some(value) = &call.value else {
        let why = if !call.reported && o.exit == Exit::Code(0) {
            if o.steps_dropped > 0 {
                "the function's result was lost: the step channel's caps were exceeded".to_string()
            } else {
                "the program ended without returning from the function".to_string()
            }
        } else {
            describe_exit(o.exit)
        };
        return (Verdict::RE, why);
    };
    if expected.iter().all(u8::is_ascii_whitespace) {
        return (Verdict::AC, String::new());
    }
    let (Ok(got), Ok(want)) = (serde_json::from_slice::<Value>(value), serde_json::from_slice::<Value>(expected)) else {
        return (Verdict::IE, "the expected value is not JSON".into());
    };
    if json_equal(&got, &want, unordered) {
        (Verdict::AC, String::new())
    } else {
        (Verdict::WA, format!("expected {}, got {}", quote(&want), quote(&got)))
    }
}

fn quote(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(QUOTED) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

/// JSON equality where numbers compare by value (1 == 1.0); with `unordered`, top-level
/// arrays compare as multisets (two_sum's indices, permutations, sets).
pub fn json_equal(a: &Value, b: &Value, unordered: bool) -> bool {
    if unordered && let (Value::Array(x), Value::Array(y)) = (a, b) {
        if x.len() != y.len() {
            return false;
        }
        let key = |v: &Value| canonical(v).to_string();
        let mut x: Vec<String> = x.iter().map(key).collect();
        let mut y: Vec<String> = y.iter().map(key).collect();
        x.sort_unstable();
        y.sort_unstable();
        return x == y;
    }
    canonical(a) == canonical(b)
}

/// Numbers as f64, so integer and float spellings of one value are equal.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(|| v.clone(), Value::from),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), canonical(v))).collect()),
        other => other.clone(),
    }
}

/// The link's view of function jobs: on a blocking thread, events into a bounded channel.
/// Steps that find the channel full are dropped (counted in `ReturnValue::steps_dropped`):
/// the sandbox's monitor must never wait on the network.
pub(crate) fn run_function_blocking(
    judge: std::sync::Arc<Judge>,
    job: FunctionJob,
    events: tokio::sync::mpsc::Sender<protocol::AgentMsg>,
    cancel: std::sync::Arc<AtomicBool>,
) -> FinalResult {
    let mut emit = |event: FunctionEvent| -> bool {
        match event {
            FunctionEvent::Step(s) => events.try_send(protocol::AgentMsg::Step(s)).is_ok(),
            // A closed channel means the link is gone; the coordinator re-queues the job.
            FunctionEvent::Return(r) => events.blocking_send(protocol::AgentMsg::Return(r)).is_ok(),
            FunctionEvent::Test(t) => events.blocking_send(protocol::AgentMsg::TestResult(t)).is_ok(),
        }
    };
    judge.judge_function(&job, &cancel, &mut emit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_comparison() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert!(json_equal(&v("[0,1]"), &v("[0, 1.0]"), false));
        assert!(!json_equal(&v("[1,0]"), &v("[0,1]"), false));
        assert!(json_equal(&v("[1,0]"), &v("[0,1]"), true));
        assert!(!json_equal(&v("[1,1]"), &v("[0,1]"), true));
        assert!(json_equal(&v(r#"{"a":[1,2]}"#), &v(r#"{"a":[1,2.0]}"#), true));
    }

    #[test]
    fn benchmark_measurements_are_read_defensively() {
        let c = Call::parse(Some(br#"{"ok":true,"timeUs":5,"cpuNs":[1200, 1100, "x", -3],"emptyNs":40,"peakBytes":4096,"value":[1]}"#));
        assert_eq!(c.cpu_ns, vec![1200, 1100]);
        assert_eq!((c.empty_ns, c.peak_bytes, c.time_us), (40, Some(4096), 5));
        let plain = Call::parse(Some(br#"{"ok":true,"timeUs":5,"peakBytes":null,"value":1}"#));
        assert!(plain.cpu_ns.is_empty());
        assert_eq!(plain.peak_bytes, None);
        let many = format!(r#"{{"ok":true,"cpuNs":[{}],"value":0}}"#, vec!["7"; 500].join(","));
        assert_eq!(Call::parse(Some(many.as_bytes())).cpu_ns.len(), MAX_REPETITIONS as usize);
    }
}
