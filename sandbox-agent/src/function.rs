//! Function-style jobs: the language's harness (rootfs/harness/) loads the user's code,
//! calls its function with each test's JSON arguments and reports the returned value; the
//! code's `viz` steps arrive on descriptor 3 while it runs and are handed on at once, with
//! the run's cgroup readings of that instant.
//!
//! Lines on descriptor 3: `S{json}` a step, `R{json}` the call's outcome (last). Anything
//! else there was written by the user's code itself and is ignored.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use protocol::{FinalResult, FunctionJob, LimitHit, ReturnValue, Step, TestResult, Verdict};
use serde_json::Value;

use crate::judge::{Judge, describe_exit, prepare_box, remove_job_dir, run_limits};
use crate::sandbox::{Exit, Observer, Profile, RunOutcome, RunSpec, SandboxError, StepEvent, StepLimits};

/// Steps per test run at most, whatever the job asks for.
pub const MAX_STEPS: u32 = 10_000;
/// A line on descriptor 3 longer than this is dropped by the sandbox (a step's data
/// structure is cut to 64 KiB by the harness; this leaves room for a large return value).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Bytes of step lines per run; beyond this lines are dropped (and counted).
pub const MAX_TOTAL_BYTES: u64 = 32 << 20;
/// Characters of a value quoted in a wrong-answer message.
const QUOTED: usize = 200;

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

        if let Err((verdict, output, message)) = self.compile(lang, &[], &box_dir, &input, id, Some(cancel)) {
            return fin(verdict, output, message);
        }

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
            let args: Value = match serde_json::from_slice(&test.input) {
                Ok(v) => v,
                Err(e) => return fin(Verdict::IE, String::new(), format!("test {}: the arguments are not JSON: {e}", index + 1)),
            };
            let request = serde_json::json!({
                "source": lang.source,
                "entry": fj.function.entry_point,
                "name": fj.function.algorithm_name,
                "args": args,
                "maxSteps": max_steps,
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
}
