#![allow(clippy::unwrap_used)]

use protocol::{FinalResult, Limits, TestCase, TestResult, Verdict};

use super::*;

fn limits() -> Limits {
    Limits { cpu_ms: 1000, wall_ms: 3000, memory_bytes: 256 << 20, max_processes: 64, output_bytes: 1 << 20 }
}

fn new_sub(language: &str, tests: usize) -> NewSubmission {
    NewSubmission {
        language: language.into(),
        source: b"print(1)".to_vec(),
        tests: (0..tests).map(|_| TestCase { input: b"".to_vec(), expected_output: Some(b"1\n".to_vec()) }).collect(),
        limits: limits(),
        options: Default::default(),
        judge0: None,
        problem: None,
    }
}

fn accept(s: &mut JudgeState, language: &str) -> SubmissionId {
    match s.apply(Command::Accept { submission: new_sub(language, 2), now_ms: 10 }).unwrap() {
        Effect::Accepted { id } => id,
        other => panic!("unexpected {other:?}"),
    }
}

fn agent_up(s: &mut JudgeState, id: &str, langs: &[&str], slots: u32) {
    let languages = langs.iter().map(|l| l.to_string()).collect();
    s.apply(Command::AgentUp { agent_id: id.into(), languages, slots, now_ms: 0 }).unwrap();
}

fn assign(s: &mut JudgeState, id: SubmissionId, agent: &str) -> Result<Effect, Rejected> {
    s.apply(Command::Assign { submission_id: id, agent_id: agent.into(), now_ms: 20 })
}

fn test_result(id: SubmissionId, index: u32) -> TestResult {
    TestResult {
        submission_id: id,
        index,
        verdict: Verdict::AC,
        limit: None,
        cpu_time_us: 1,
        wall_time_us: 2,
        peak_memory_bytes: 3,
        exit_code: Some(0),
        signal: None,
        stdout: b"1\n".to_vec(),
        stderr: Vec::new(),
        message: String::new(),
        score: None,
    }
}

fn final_result(id: SubmissionId, verdict: Verdict) -> FinalResult {
    FinalResult { submission_id: id, verdict, compile_output: String::new(), message: String::new() }
}

fn complete(s: &mut JudgeState, id: SubmissionId, agent: Option<&str>, verdict: Verdict) -> Result<Effect, Rejected> {
    s.apply(Command::Complete {
        submission_id: id,
        agent_id: agent.map(str::to_owned),
        result: final_result(id, verdict),
        now_ms: 30,
    })
}

#[test]
fn accept_assigns_sequential_ids_and_queues_fifo() {
    let mut s = JudgeState::new();
    assert_eq!(accept(&mut s, "py"), 1);
    assert_eq!(accept(&mut s, "c"), 2);
    assert_eq!(accept(&mut s, "py"), 3);
    assert_eq!(s.queue().collect::<Vec<_>>(), vec![1, 2, 3]);
    let sub = s.get(2).unwrap();
    assert_eq!(sub.status, Status::Queued);
    assert_eq!(sub.accepted_ms, 10);
    assert_eq!(sub.test_count, 2);
    assert!(s.get(4).is_none());
}

#[test]
fn accept_without_tests_is_rejected_and_consumes_no_id() {
    let mut s = JudgeState::new();
    let r = s.apply(Command::Accept { submission: new_sub("py", 0), now_ms: 0 });
    assert_eq!(r, Err(Rejected::NoTests));
    assert_eq!(accept(&mut s, "py"), 1);
}

#[test]
fn assign_moves_queued_to_running_with_lease() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 2);
    assert_eq!(assign(&mut s, id, "a"), Ok(Effect::Assigned));
    let sub = s.get(id).unwrap();
    assert_eq!(sub.status, Status::Running);
    assert_eq!(sub.lease, Some(Lease { agent_id: "a".into(), since_ms: 20 }));
    assert_eq!(sub.attempts, 1);
    assert_eq!(s.queued_len(), 0);
    assert_eq!(s.running_len(), 1);
    assert_eq!(s.agent("a").unwrap().free_slots(), 1);
}

#[test]
fn invalid_assignments_are_rejected_without_change() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    agent_up(&mut s, "c-only", &["c"], 1);
    agent_up(&mut s, "full", &["py"], 1);
    let before = s.clone();
    assert_eq!(assign(&mut s, 99, "full"), Err(Rejected::UnknownSubmission(99)));
    assert_eq!(assign(&mut s, id, "ghost"), Err(Rejected::UnknownAgent("ghost".into())));
    assert!(matches!(assign(&mut s, id, "c-only"), Err(Rejected::LanguageUnsupported { .. })));
    assert_eq!(s, before);

    let other = accept(&mut s, "py");
    assign(&mut s, id, "full").unwrap();
    assert_eq!(assign(&mut s, other, "full"), Err(Rejected::NoFreeSlot("full".into())));
    assert!(matches!(assign(&mut s, id, "full"), Err(Rejected::WrongStatus { actual: Status::Running, .. })));
}

#[test]
fn assign_of_a_done_job_is_rejected() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    assign(&mut s, id, "a").unwrap();
    complete(&mut s, id, Some("a"), Verdict::AC).unwrap();
    assert!(matches!(assign(&mut s, id, "a"), Err(Rejected::WrongStatus { actual: Status::Done, .. })));
}

#[test]
fn test_results_are_kept_only_from_the_lease_holder() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    agent_up(&mut s, "b", &["py"], 1);
    let done = |s: &mut JudgeState, agent: &str, r: TestResult| {
        s.apply(Command::TestDone { submission_id: id, agent_id: agent.into(), result: r })
    };
    // Not running yet.
    assert!(matches!(done(&mut s, "a", test_result(id, 0)), Err(Rejected::WrongStatus { .. })));
    assign(&mut s, id, "a").unwrap();
    assert_eq!(done(&mut s, "a", test_result(id, 0)), Ok(Effect::TestRecorded));
    assert_eq!(done(&mut s, "b", test_result(id, 1)), Err(Rejected::NotLeaseHolder { id, agent: "b".into() }));
    assert_eq!(done(&mut s, "a", test_result(id, 0)), Err(Rejected::DuplicateTest(0)));
    assert_eq!(done(&mut s, "a", test_result(id, 2)), Err(Rejected::TestOutOfRange { index: 2, count: 2 }));
    assert_eq!(done(&mut s, "a", test_result(id + 1, 1)), Err(Rejected::IdMismatch { expected: id, got: id + 1 }));
    assert_eq!(s.get(id).unwrap().results.len(), 1);
}

#[test]
fn long_output_is_cut_but_its_length_remembered() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    assign(&mut s, id, "a").unwrap();
    let mut r = test_result(id, 0);
    r.stdout = vec![b'x'; KEPT_OUTPUT_BYTES + 10];
    s.apply(Command::TestDone { submission_id: id, agent_id: "a".into(), result: r }).unwrap();
    let rec = &s.get(id).unwrap().results[0];
    assert_eq!(rec.result.stdout.len(), KEPT_OUTPUT_BYTES);
    assert_eq!(rec.stdout_len, (KEPT_OUTPUT_BYTES + 10) as u64);
}

#[test]
fn complete_records_verdict_frees_slot_and_drops_inputs() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    assign(&mut s, id, "a").unwrap();
    assert_eq!(complete(&mut s, id, Some("a"), Verdict::WA), Ok(Effect::Completed { verdict: Verdict::WA }));
    let sub = s.get(id).unwrap();
    assert_eq!(sub.status, Status::Done);
    assert_eq!(sub.verdict(), Some(Verdict::WA));
    assert_eq!(sub.finished_ms, Some(30));
    assert!(sub.lease.is_none());
    assert!(sub.tests.is_empty());
    assert_eq!(sub.test_count, 2);
    assert_eq!(s.agent("a").unwrap().free_slots(), 1);
    assert_eq!(s.running_len(), 0);
}

#[test]
fn duplicate_completion_is_ignored_first_verdict_wins() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    assign(&mut s, id, "a").unwrap();
    complete(&mut s, id, Some("a"), Verdict::AC).unwrap();
    let before = s.clone();
    assert!(complete(&mut s, id, Some("a"), Verdict::WA).is_err());
    assert!(complete(&mut s, id, None, Verdict::IE).is_err());
    assert_eq!(s, before);
    assert_eq!(s.get(id).unwrap().verdict(), Some(Verdict::AC));
}

#[test]
fn complete_of_unknown_id_or_from_wrong_agent_is_rejected() {
    let mut s = JudgeState::new();
    assert_eq!(complete(&mut s, 7, None, Verdict::AC), Err(Rejected::UnknownSubmission(7)));
    assert_eq!(complete(&mut s, 7, Some("a"), Verdict::AC), Err(Rejected::UnknownSubmission(7)));
    let id = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    agent_up(&mut s, "b", &["py"], 1);
    // Agents cannot complete a submission they do not hold.
    assert!(matches!(complete(&mut s, id, Some("a"), Verdict::AC), Err(Rejected::WrongStatus { .. })));
    assign(&mut s, id, "a").unwrap();
    assert!(matches!(complete(&mut s, id, Some("b"), Verdict::AC), Err(Rejected::NotLeaseHolder { .. })));
    let mismatched = Command::Complete {
        submission_id: id,
        agent_id: Some("a".into()),
        result: final_result(id + 1, Verdict::AC),
        now_ms: 0,
    };
    assert!(matches!(s.apply(mismatched), Err(Rejected::IdMismatch { .. })));
    assert_eq!(s.get(id).unwrap().status, Status::Running);
}

#[test]
fn coordinator_can_complete_a_queued_submission() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    assert_eq!(complete(&mut s, id, None, Verdict::IE), Ok(Effect::Completed { verdict: Verdict::IE }));
    assert_eq!(s.queued_len(), 0);
}

#[test]
fn requeue_returns_running_job_to_its_place_and_clears_results() {
    let mut s = JudgeState::new();
    let first = accept(&mut s, "py");
    let second = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    assign(&mut s, first, "a").unwrap();
    s.apply(Command::TestDone { submission_id: first, agent_id: "a".into(), result: test_result(first, 0) }).unwrap();
    let r =
        s.apply(Command::Requeue { submission_id: first, agent_id: None, reason: "stream reset".into(), now_ms: 40 });
    assert_eq!(r, Ok(Effect::Requeued { requeued: vec![first], gave_up: vec![] }));
    let sub = s.get(first).unwrap();
    assert_eq!(sub.status, Status::Queued);
    assert!(sub.results.is_empty());
    assert!(sub.lease.is_none());
    assert_eq!(sub.last_requeue_reason.as_deref(), Some("stream reset"));
    assert_eq!(s.queue().collect::<Vec<_>>(), vec![first, second]);
    assert_eq!(s.agent("a").unwrap().free_slots(), 1);
    // The old lease holder's late results no longer count.
    let late = s.apply(Command::TestDone { submission_id: first, agent_id: "a".into(), result: test_result(first, 1) });
    assert!(late.is_err());
}

#[test]
fn requeue_of_queued_done_or_unknown_is_rejected() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    let requeue = |s: &mut JudgeState, id| {
        s.apply(Command::Requeue { submission_id: id, agent_id: None, reason: "x".into(), now_ms: 0 })
    };
    assert!(matches!(requeue(&mut s, id), Err(Rejected::WrongStatus { actual: Status::Queued, .. })));
    assert_eq!(requeue(&mut s, 42), Err(Rejected::UnknownSubmission(42)));
    complete(&mut s, id, None, Verdict::IE).unwrap();
    assert!(matches!(requeue(&mut s, id), Err(Rejected::WrongStatus { actual: Status::Done, .. })));
}

#[test]
fn agent_down_requeues_its_jobs_and_unregisters_it() {
    let mut s = JudgeState::new();
    let a1 = accept(&mut s, "py");
    let a2 = accept(&mut s, "py");
    let b1 = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 2);
    agent_up(&mut s, "b", &["py"], 1);
    assign(&mut s, a1, "a").unwrap();
    assign(&mut s, a2, "a").unwrap();
    assign(&mut s, b1, "b").unwrap();
    let r = s.apply(Command::AgentDown { agent_id: "a".into(), now_ms: 50 });
    assert_eq!(r, Ok(Effect::Requeued { requeued: vec![a1, a2], gave_up: vec![] }));
    assert!(s.agent("a").is_none());
    assert_eq!(s.queue().collect::<Vec<_>>(), vec![a1, a2]);
    assert_eq!(s.get(b1).unwrap().status, Status::Running);
    assert_eq!(
        s.apply(Command::AgentDown { agent_id: "a".into(), now_ms: 51 }),
        Err(Rejected::UnknownAgent("a".into()))
    );
}

#[test]
fn agent_rejoining_with_held_jobs_keeps_their_leases_and_their_results_count() {
    let mut s = JudgeState::new();
    let (held, lost, other) = (accept(&mut s, "py"), accept(&mut s, "py"), accept(&mut s, "py"));
    agent_up(&mut s, "a", &["py"], 3);
    agent_up(&mut s, "b", &["py"], 1);
    assign(&mut s, held, "a").unwrap();
    assign(&mut s, lost, "a").unwrap();
    assign(&mut s, other, "b").unwrap();
    // `other` is b's: a's claim on it is no lease.
    let rejoin = Command::AgentRejoin {
        agent_id: "a".into(),
        languages: vec!["py".into()],
        slots: 3,
        held: vec![held, other],
        now_ms: 5,
    };
    assert_eq!(s.apply(rejoin), Ok(Effect::AgentRegistered { requeued: vec![lost], gave_up: vec![] }));
    assert_eq!(s.get(held).unwrap().status, Status::Running);
    assert_eq!(s.get(held).unwrap().attempts, 1);
    assert_eq!(s.get(lost).unwrap().status, Status::Queued);
    assert_eq!(s.get(other).unwrap().lease.as_ref().unwrap().agent_id, "b");
    assert_eq!(s.agent("a").unwrap().free_slots(), 2);
    // The held job's results, re-sent after the rejoin, are taken; the first verdict wins.
    s.apply(Command::TestDone { submission_id: held, agent_id: "a".into(), result: test_result(held, 0) }).unwrap();
    assert_eq!(complete(&mut s, held, Some("a"), Verdict::AC), Ok(Effect::Completed { verdict: Verdict::AC }));
    assert!(complete(&mut s, held, Some("a"), Verdict::WA).is_err());
    assert_eq!(s.get(held).unwrap().outcome.as_ref().unwrap().verdict, Verdict::AC);
    assert!(complete(&mut s, other, Some("a"), Verdict::AC).is_err());
}

#[test]
fn agent_rejoining_voids_its_old_leases() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    assign(&mut s, id, "a").unwrap();
    let r = s.apply(Command::AgentUp { agent_id: "a".into(), languages: vec!["py".into()], slots: 4, now_ms: 5 });
    assert_eq!(r, Ok(Effect::AgentRegistered { requeued: vec![id], gave_up: vec![] }));
    assert_eq!(s.get(id).unwrap().status, Status::Queued);
    assert_eq!(s.agent("a").unwrap().free_slots(), 4);
}

#[test]
fn gives_up_with_ie_after_max_attempts() {
    let mut s = JudgeState::with_max_attempts(2);
    let id = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    assign(&mut s, id, "a").unwrap();
    s.apply(Command::Requeue { submission_id: id, agent_id: None, reason: "crash".into(), now_ms: 1 }).unwrap();
    assign(&mut s, id, "a").unwrap();
    let r = s.apply(Command::AgentDown { agent_id: "a".into(), now_ms: 2 });
    assert_eq!(r, Ok(Effect::Requeued { requeued: vec![], gave_up: vec![id] }));
    let sub = s.get(id).unwrap();
    assert_eq!(sub.status, Status::Done);
    assert_eq!(sub.verdict(), Some(Verdict::IE));
    assert!(sub.outcome.as_ref().unwrap().message.contains("gave up after 2 attempts"));
}

#[test]
fn agent_slots_is_informational_and_needs_a_known_agent() {
    let mut s = JudgeState::new();
    assert!(s.apply(Command::AgentSlots { agent_id: "a".into(), free_slots: 1 }).is_err());
    agent_up(&mut s, "a", &["py"], 2);
    assert_eq!(s.apply(Command::AgentSlots { agent_id: "a".into(), free_slots: 0 }), Ok(Effect::SlotsUpdated));
    assert_eq!(s.agent("a").unwrap().reported_free_slots, Some(0));
    let id = accept(&mut s, "py");
    assert_eq!(s.next_assignment(), Some((id, "a".into())));
}

#[test]
fn no_assignment_without_an_agent_speaking_the_language() {
    let mut s = JudgeState::new();
    assert_eq!(s.next_assignment(), None);
    let id = accept(&mut s, "rust");
    assert_eq!(s.next_assignment(), None);
    agent_up(&mut s, "a", &["py", "c"], 4);
    assert_eq!(s.next_assignment(), None);
    agent_up(&mut s, "b", &["rust"], 1);
    assert_eq!(s.next_assignment(), Some((id, "b".into())));
}

#[test]
fn next_assignment_skips_unrunnable_jobs_and_prefers_the_freest_agent() {
    let mut s = JudgeState::new();
    let stuck = accept(&mut s, "cobol");
    let py = accept(&mut s, "py");
    agent_up(&mut s, "b", &["py"], 2);
    agent_up(&mut s, "a", &["py"], 2);
    agent_up(&mut s, "c", &["py"], 3);
    assert_eq!(s.next_assignment(), Some((py, "c".into())));
    assign(&mut s, py, "c").unwrap();
    // Now a, b and c all have 2 free: the smallest id wins.
    let next = accept(&mut s, "py");
    assert_eq!(s.next_assignment(), Some((next, "a".into())));
    assert_eq!(s.queue().next(), Some(stuck));
}

#[test]
fn next_assignment_is_none_when_all_slots_are_leased() {
    let mut s = JudgeState::new();
    let first = accept(&mut s, "py");
    let _second = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    assign(&mut s, first, "a").unwrap();
    assert_eq!(s.next_assignment(), None);
    complete(&mut s, first, Some("a"), Verdict::AC).unwrap();
    assert_eq!(s.next_assignment(), Some((2, "a".into())));
}

#[test]
fn replaying_the_same_commands_gives_the_same_state() {
    let commands = [
        Command::AgentUp { agent_id: "a".into(), languages: vec!["py".into()], slots: 1, now_ms: 0 },
        Command::Accept { submission: new_sub("py", 1), now_ms: 1 },
        Command::Assign { submission_id: 1, agent_id: "a".into(), now_ms: 2 },
        Command::Requeue { submission_id: 1, agent_id: Some("a".into()), reason: "lost".into(), now_ms: 3 },
        Command::Accept { submission: new_sub("py", 1), now_ms: 4 },
        Command::Assign { submission_id: 1, agent_id: "a".into(), now_ms: 5 },
        Command::Complete {
            submission_id: 1,
            agent_id: Some("a".into()),
            result: final_result(1, Verdict::AC),
            now_ms: 6,
        },
    ];
    let run = || {
        let mut s = JudgeState::new();
        let effects: Vec<_> = commands.iter().cloned().map(|c| s.apply(c)).collect();
        (s, effects)
    };
    assert_eq!(run(), run());
}

#[test]
fn requeue_from_a_former_lease_holder_is_rejected() {
    let mut s = JudgeState::new();
    let id = accept(&mut s, "py");
    agent_up(&mut s, "a", &["py"], 1);
    agent_up(&mut s, "b", &["py"], 1);
    assign(&mut s, id, "a").unwrap();
    s.apply(Command::Requeue { submission_id: id, agent_id: Some("a".into()), reason: "lost".into(), now_ms: 1 })
        .unwrap();
    assign(&mut s, id, "b").unwrap();
    let stale = Command::Requeue { submission_id: id, agent_id: Some("a".into()), reason: "late".into(), now_ms: 2 };
    assert_eq!(s.apply(stale), Err(Rejected::NotLeaseHolder { id, agent: "a".into() }));
    assert_eq!(s.get(id).unwrap().lease.as_ref().unwrap().agent_id, "b");
}

#[test]
fn judge0_tokens_are_unique_and_their_inputs_survive_completion() {
    let mut s = JudgeState::new();
    let meta = Judge0Meta {
        token: "t-1".into(),
        language_id: 71,
        callback_url: None,
        base64_encoded: false,
        cpu_extra_time_ms: 0,
        max_file_size_kb: 1024,
        stack_limit_kb: 64000,
        number_of_runs: 1,
        compiler_options: None,
        command_line_arguments: None,
        redirect_stderr_to_stdout: false,
    };
    let with_token = NewSubmission { judge0: Some(meta), ..new_sub("python", 1) };
    let id = match s.apply(Command::Accept { submission: with_token.clone(), now_ms: 1 }) {
        Ok(Effect::Accepted { id }) => id,
        other => panic!("{other:?}"),
    };
    let before = s.clone();
    assert_eq!(s.apply(Command::Accept { submission: with_token, now_ms: 2 }), Err(Rejected::DuplicateToken("t-1".into())));
    assert_eq!(s, before, "a rejected command changes nothing");
    assert_eq!(s.by_token("t-1").map(|x| x.id), Some(id));
    let fin = FinalResult { submission_id: id, verdict: Verdict::AC, compile_output: String::new(), message: String::new() };
    s.apply(Command::Complete { submission_id: id, agent_id: None, result: fin, now_ms: 3 }).unwrap();
    assert_eq!(s.get(id).unwrap().tests.len(), 1, "Judge0 clients read stdin back");
    let (page, total) = s.judge0_page(0, 10);
    assert_eq!((page.len(), total), (1, 1));
}

#[test]
fn a_silent_agents_lease_expires_unless_it_was_heard_of_since() {
    let mut s = JudgeState::new();
    agent_up(&mut s, "a", &["py"], 1);
    let id = accept(&mut s, "py");
    assign(&mut s, id, "a").unwrap();
    s.apply(Command::AgentAlive { agent_id: "a".into(), now_ms: 5_000 }).unwrap();
    assert_eq!(s.silent_agents(4_999).count(), 0);
    assert_eq!(s.silent_agents(5_000).map(|a| a.id.as_str()).collect::<Vec<_>>(), ["a"]);

    // Heard of at 5 000: an expiry of "silent since 4 000" is stale and changes nothing.
    let before = s.clone();
    let stale = Command::ExpireAgent { agent_id: "a".into(), silent_since_ms: 4_000, now_ms: 19_000 };
    assert_eq!(s.apply(stale), Err(Rejected::AgentNotSilent("a".into())));
    assert_eq!(s, before);

    let expire = Command::ExpireAgent { agent_id: "a".into(), silent_since_ms: 5_000, now_ms: 20_000 };
    assert_eq!(s.apply(expire), Ok(Effect::Requeued { requeued: vec![id], gave_up: vec![] }));
    assert!(s.agent("a").is_none());
    assert_eq!(s.get(id).unwrap().status, Status::Queued);
    assert_eq!(s.get(id).unwrap().last_requeue_reason.as_deref(), Some("lease of agent a expired"));
    // Its late verdict is not taken; a new agent gets the job.
    let late = FinalResult { submission_id: id, verdict: Verdict::AC, compile_output: String::new(), message: String::new() };
    assert!(s.apply(Command::Complete { submission_id: id, agent_id: Some("a".into()), result: late, now_ms: 21_000 }).is_err());
    agent_up(&mut s, "b", &["py"], 1);
    assert_eq!(s.next_assignment(), Some((id, "b".to_string())));
}

#[test]
fn a_rejudge_requeues_a_done_submission_and_keeps_its_past_verdict() {
    let mut s = JudgeState::new();
    agent_up(&mut s, "a1", &["python"], 1);
    let id = accept(&mut s, "python");
    let rejudge = || crate::judge::Rejudge {
        tests: vec![TestCase { input: b"new".to_vec(), expected_output: Some(b"x".to_vec()) }],
        limits: limits(),
        options: JobOptions::default(),
        problem: None,
    };
    // Only a finished submission is rejudged.
    let before = s.clone();
    let err = s.apply(Command::Rejudge { submission_id: id, rejudge: rejudge(), now_ms: 30 }).unwrap_err();
    assert!(matches!(err, Rejected::WrongStatus { .. }), "{err:?}");
    assert_eq!(s, before);
    assign(&mut s, id, "a1").unwrap();
    s.apply(Command::TestDone { submission_id: id, agent_id: "a1".into(), result: test_result(id, 0) }).unwrap();
    complete(&mut s, id, Some("a1"), Verdict::WA).unwrap();
    assert_eq!(s.apply(Command::Rejudge { submission_id: id, rejudge: rejudge(), now_ms: 40 }), Ok(Effect::Rejudged));
    let sub = s.get(id).unwrap();
    assert_eq!((sub.status, sub.test_count, sub.attempts, sub.outcome.clone()), (Status::Queued, 1, 0, None));
    assert_eq!(sub.history.len(), 1);
    assert_eq!(sub.history[0].outcome.verdict, Verdict::WA);
    assert_eq!(sub.history[0].results.len(), 1);
    assert!(sub.results.is_empty());
    assert_eq!(s.queue().collect::<Vec<_>>(), vec![id]);
    // It runs again like any queued submission, and a second verdict adds to the history.
    assign(&mut s, id, "a1").unwrap();
    complete(&mut s, id, Some("a1"), Verdict::AC).unwrap();
    s.apply(Command::Rejudge { submission_id: id, rejudge: rejudge(), now_ms: 50 }).unwrap();
    let verdicts: Vec<_> = s.get(id).unwrap().history.iter().map(|h| h.outcome.verdict).collect();
    assert_eq!(verdicts, [Verdict::WA, Verdict::AC]);
}

#[test]
fn the_cluster_is_named_once() {
    let mut s = JudgeState::new();
    assert_eq!(s.cluster_id(), None);
    assert_eq!(s.apply(Command::NameCluster { cluster_id: "first".into() }), Ok(Effect::ClusterNamed));
    // A second proposer lost the race: its name is refused, the first stays.
    assert_eq!(
        s.apply(Command::NameCluster { cluster_id: "second".into() }),
        Err(Rejected::ClusterNamed("first".into()))
    );
    assert_eq!(s.cluster_id(), Some("first"));
}

#[test]
fn a_copy_of_the_state_keeps_its_submissions_while_the_state_goes_on() {
    // A snapshot encodes a copy that shares the submissions with the live state.
    let mut s = JudgeState::new();
    agent_up(&mut s, "a", &["py"], 1);
    let id = accept(&mut s, "py");
    assign(&mut s, id, "a").unwrap();
    let copy = s.clone();
    s.apply(Command::TestDone { submission_id: id, agent_id: "a".into(), result: test_result(id, 0) }).unwrap();
    complete(&mut s, id, Some("a"), Verdict::WA).unwrap();
    let (now, then) = (s.get(id).unwrap(), copy.get(id).unwrap());
    assert_eq!((now.status, now.results.len(), now.outcome.is_some()), (Status::Done, 1, true));
    assert_eq!((then.status, then.results.len(), then.outcome.is_some()), (Status::Running, 0, false));
    assert_eq!(then.tests.len(), 2, "the copy keeps the inputs the finished submission dropped");
    assert_ne!(copy, s);
}

/// The state as a snapshot: what a snapshot of many finished submissions costs (the raft
/// thread takes the copy inline, the encoding runs on a thread of its own). Prints the
/// figures.
#[test]
#[ignore = "measurement: cargo test --release -p coordinator --lib -- --ignored snapshot_cost --nocapture"]
fn snapshot_cost_of_a_large_state() {
    for n in [1_000u64, 10_000, 50_000] {
        let mut s = JudgeState::new();
        agent_up(&mut s, "a", &["py"], 1);
        for _ in 0..n {
            let id = accept(&mut s, "py");
            assign(&mut s, id, "a").unwrap();
            for i in 0..2 {
                s.apply(Command::TestDone { submission_id: id, agent_id: "a".into(), result: test_result(id, i) }).unwrap();
            }
            complete(&mut s, id, Some("a"), Verdict::AC).unwrap();
        }
        let started = std::time::Instant::now();
        let copy = s.clone();
        let copied = started.elapsed();
        drop(copy);
        let started = std::time::Instant::now();
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&s).unwrap();
        let encode = started.elapsed();
        let started = std::time::Instant::now();
        let back = rkyv::from_bytes::<JudgeState, rkyv::rancor::Error>(&bytes).unwrap();
        let decode = started.elapsed();
        assert_eq!(back, s);
        println!(
            "{n} finished submissions: copy {:.2} ms, snapshot {} KiB, encode {:.1} ms, decode+check {:.1} ms",
            copied.as_secs_f64() * 1e3,
            bytes.len() / 1024,
            encode.as_secs_f64() * 1e3,
            decode.as_secs_f64() * 1e3
        );
    }
}
