//! JSON shapes of the API's answers.

use serde_json::{Value, json};

use crate::judge::TestRecord;
use crate::scheduler::SubmissionView;

/// Output bytes shown per stream per test.
pub const SHOWN_OUTPUT_BYTES: usize = 64 * 1024;

/// Whether the details of a problem's secret tests (output, checker message) are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Shown,
    Hidden,
}

pub fn submission(view: &SubmissionView, secrets: Secrets) -> Value {
    let mut body = json!({
        "id": view.id,
        "language": view.language,
        "status": view.status.as_str(),
        "verdict": view.verdict.map(|v| v.as_str()),
        "message": view.message,
        "compileOutput": view.compile_output,
        "limits": {
            "cpuMs": view.limits.cpu_ms,
            "wallMs": view.limits.wall_ms,
            "memoryMb": view.limits.memory_bytes >> 20,
            "maxProcesses": view.limits.max_processes,
            "outputBytes": view.limits.output_bytes,
        },
        "testCount": view.test_count,
        "tests": view.tests.iter().map(test).collect::<Vec<_>>(),
        // Times it was handed to an agent: more than one means a run was lost and redone.
        "attempts": view.attempts,
    });
    let finished = view.status == crate::judge::Status::Done;
    body["history"] = view
        .history
        .iter()
        .map(|h| {
            let mut past = json!({
                "verdict": h.outcome.verdict.as_str(),
                "message": h.outcome.message,
                "finishedMs": h.finished_ms,
                "tests": h.results.iter().map(test).collect::<Vec<_>>(),
            });
            if let Some(problem) = &h.problem {
                let report = crate::contest::score(problem, &h.results, true);
                past["score"] = json!(report.score);
                past["maxScore"] = json!(report.max_score);
            }
            if let (Some(problem), Some(tests)) = (&h.problem, past["tests"].as_array_mut()) {
                annotate(problem, tests, secrets);
            }
            if let (Some(problem), Secrets::Hidden) = (&h.problem, secrets) {
                past["message"] = json!(public_message(problem, &h.outcome.message));
            }
            past
        })
        .collect();
    if let Some(problem) = &view.problem {
        let report = crate::contest::score(problem, &view.tests, finished);
        body["problem"] = json!(problem.slug);
        body["scoring"] = json!(problem.scoring.as_str());
        body["score"] = json!(report.score);
        body["maxScore"] = json!(report.max_score);
        body["groups"] = serde_json::to_value(&report.groups).unwrap_or(Value::Null);
        if let Some(tests) = body["tests"].as_array_mut() {
            annotate(problem, tests, secrets);
        }
        if secrets == Secrets::Hidden {
            body["message"] = json!(public_message(problem, &view.message));
        }
    }
    body
}

/// A judging's message as anybody may see it. The judge names the first failing test
/// ("test 3: line 1: expected ..., got ..."); of a secret test only its number stays,
/// the rest would leak its answer or input. Other messages (a compile error, a judge
/// failure) say nothing of the tests and are kept.
pub fn public_message(problem: &crate::contest::ProblemRef, message: &str) -> String {
    let Some(rest) = message.strip_prefix("test ") else { return message.to_string() };
    let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if !rest[number.len()..].starts_with(':') {
        return message.to_string();
    }
    let sample = number.parse::<usize>().ok().and_then(|n| problem.tests.get(n.checked_sub(1)?)).is_some_and(|t| t.sample);
    if sample { message.to_string() } else { format!("test {number}: failed (a secret test)") }
}

/// Names each test of a problem's submission after the problem's tests and, unless
/// `secrets` says otherwise, blanks what a secret test's run printed and what its checker
/// said. A test that cannot be matched to the problem counts as secret.
fn annotate(problem: &crate::contest::ProblemRef, tests: &mut [Value], secrets: Secrets) {
    for t in tests {
        let meta = t["index"].as_u64().and_then(|i| problem.tests.get(usize::try_from(i).ok()?));
        if let Some(meta) = meta {
            t["name"] = json!(meta.name);
            t["sample"] = json!(meta.sample);
            t["group"] = json!(problem.groups.get(meta.group as usize).map(|g| g.name.as_str()));
        }
        if secrets == Secrets::Hidden && !meta.is_some_and(|m| m.sample) {
            t["stdout"] = json!("");
            t["stderr"] = json!("");
            t["message"] = json!("");
            t["hidden"] = json!(true);
        }
    }
}

fn test(record: &TestRecord) -> Value {
    let r = &record.result;
    json!({
        "index": r.index,
        "verdict": r.verdict.as_str(),
        "limit": r.limit,
        "cpuTimeUs": r.cpu_time_us,
        "wallTimeUs": r.wall_time_us,
        "peakMemoryBytes": r.peak_memory_bytes,
        "exitCode": r.exit_code,
        "signal": r.signal,
        "stdout": output(&r.stdout, record.stdout_len),
        "stderr": output(&r.stderr, record.stderr_len),
        "message": r.message,
        "score": r.score,
    })
}

/// Lossy UTF-8 of at most `SHOWN_OUTPUT_BYTES`, with a marker when anything was cut,
/// here or earlier when the judge stored it. `total` is the length the agent reported.
pub fn output(kept: &[u8], total: u64) -> String {
    let shown = &kept[..kept.len().min(SHOWN_OUTPUT_BYTES)];
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if total > shown.len() as u64 {
        text.push_str(&format!("\n[output truncated: showing {} of {} bytes]", shown.len(), total));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::public_message;
    use crate::contest::{GroupRef, ProblemRef, Scoring, TestRef};

    #[test]
    fn a_secret_tests_message_keeps_only_its_number() {
        let test = |sample| TestRef { name: String::new(), group: 0, sample };
        let problem = ProblemRef {
            slug: "p".into(),
            scoring: Scoring::PassFail,
            groups: vec![GroupRef { name: "g".into(), score: 1.0 }],
            tests: vec![test(true), test(false)],
        };
        let sample = "test 1: line 1: expected \"3\", got \"4\"";
        assert_eq!(public_message(&problem, sample), sample);
        assert_eq!(public_message(&problem, "test 2: line 1: expected \"3000000000\", got \"-1294967296\""), "test 2: failed (a secret test)");
        // A test the problem does not know counts as secret; other messages stay.
        assert_eq!(public_message(&problem, "test 9: x"), "test 9: failed (a secret test)");
        assert_eq!(public_message(&problem, "test 0: x"), "test 0: failed (a secret test)");
        assert_eq!(public_message(&problem, "compilation failed"), "compilation failed");
        assert_eq!(public_message(&problem, "test suite: ok"), "test suite: ok");
    }
}
