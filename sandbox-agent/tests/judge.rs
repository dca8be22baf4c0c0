//! The judge on real compilers and interpreters in real sandboxes (needs root).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use protocol::{Job, JobOptions, LimitHit, Limits, TestCase, TestResult, Verdict};
use sandbox_agent::judge::Judge;
use sandbox_agent::sandbox::Sandbox;

fn judge(language: &str, source: &str, tests: &[(&str, &str)]) -> (protocol::FinalResult, Vec<TestResult>) {
    let tests: Vec<_> = tests.iter().map(|(i, o)| (*i, Some(*o))).collect();
    judge_with(language, source, &tests, 256, JobOptions::default())
}

fn judge_with(
    language: &str,
    source: &str,
    tests: &[(&str, Option<&str>)],
    memory_mb: u64,
    options: JobOptions,
) -> (protocol::FinalResult, Vec<TestResult>) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = rootfs::Spec::builtin().unwrap();
    assert_eq!(spec.mounts.resolve_probes(), Vec::<String>::new());
    let spec = Arc::new(spec);
    let sandbox = Sandbox::new(dir.path(), &spec).unwrap();
    let judge = Judge::new(sandbox, spec, dir.path(), 61000, 2).unwrap();
    let job = Job {
        submission_id: 1,
        language: language.into(),
        source: source.as_bytes().to_vec(),
        tests: tests
            .iter()
            .map(|(i, o)| TestCase { input: i.as_bytes().to_vec(), expected_output: o.map(|o| o.as_bytes().to_vec()) })
            .collect(),
        limits: Limits {
            cpu_ms: 1000,
            wall_ms: 6000,
            memory_bytes: memory_mb << 20,
            max_processes: 64,
            output_bytes: 1 << 20,
        },
        options,
    };
    let mut results = Vec::new();
    let fin = judge.judge(&job, |r| results.push(r));
    (fin, results)
}

#[test]
fn each_language_gets_ac_and_wa() {
    let sources = [
        ("c", "#include <stdio.h>\nint main(){long a,b;scanf(\"%ld %ld\",&a,&b);printf(\"%ld\\n\",a+b);}"),
        ("cpp", "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b<<std::endl;}"),
        ("python", "a, b = map(int, input().split())\nprint(a + b)\n"),
        ("javascript", "const [a,b]=require('fs').readFileSync(0,'utf8').trim().split(/\\s+/).map(Number);console.log(a+b);"),
    ];
    for (lang, src) in sources {
        let (fin, results) = judge(lang, src, &[("1 2\n", "3\n"), ("2 2\n", "5\n")]);
        assert_eq!(fin.verdict, Verdict::WA, "{lang}: {fin:?} {results:?}");
        assert_eq!(results[0].verdict, Verdict::AC, "{lang}: {results:?}");
        assert_eq!(results[1].verdict, Verdict::WA, "{lang}: {results:?}");
        assert!(fin.message.contains("test 2"), "{fin:?}");
    }
}

#[test]
fn syntax_errors_are_ce_with_the_compiler_output() {
    for (lang, src) in [("c", "int main( {"), ("cpp", "int main( {"), ("python", "def f(:\n"), ("javascript", "function (")] {
        let (fin, results) = judge(lang, src, &[("", "")]);
        assert_eq!(fin.verdict, Verdict::CE, "{lang}: {fin:?}");
        assert!(!fin.compile_output.is_empty(), "{lang}: {fin:?}");
        assert!(results.is_empty());
    }
}

#[test]
fn judge0_options_args_merged_stderr_no_expected_output() {
    let src = "#include <stdio.h>\nint main(int c,char**v){for(int i=1;i<c;i++)printf(\"[%s]\",v[i]);fflush(stdout);fprintf(stderr,\"E\");printf(\"O\\n\");return 0;}";
    let options = JobOptions {
        compiler_args: vec!["-DX=1".into(), "-Wall".into()],
        run_args: vec!["a b".into(), "$(id)".into()],
        merge_stderr: true,
        runs: 2,
        ..JobOptions::default()
    };
    let (fin, results) = judge_with("c", src, &[("", None)], 256, options);
    assert_eq!(fin.verdict, Verdict::AC, "{fin:?} {results:?}");
    // Arguments arrive verbatim (no shell expansion), stderr interleaved into stdout.
    assert_eq!(String::from_utf8_lossy(&results[0].stdout), "[a b][$(id)]EO\n");
    assert!(results[0].stderr.is_empty());
}

#[test]
fn extra_cpu_time_still_judges_by_the_limit() {
    let src = "int main(){volatile unsigned long x=0;for(;;)x++;}";
    let options = JobOptions { extra_cpu_ms: 500, ..JobOptions::default() };
    let (fin, results) = judge_with("c", src, &[("", None)], 256, options);
    assert_eq!(fin.verdict, Verdict::TLE, "{fin:?}");
    assert_eq!(results[0].limit, Some(LimitHit::Cpu));
    // Stopped only after the extra time: the real time is reported.
    assert!(results[0].cpu_time_us >= 1_400_000, "{:?}", results[0]);
}

/// DOMjudge's users' complaint: a JVM program well within the limit must not be MLE.
/// The heap flags come from the limit; memory is the cgroup's peak as for any language.
#[test]
fn java_within_the_memory_limit_is_not_mle_and_over_it_is_not_ac() {
    let within = "public class Main { public static void main(String[] a) { byte[] b = new byte[40 << 20]; for (int i = 0; i < b.length; i += 4096) b[i] = 1; System.out.println(b[4096]); } }";
    let (fin, results) = judge_with("java", within, &[("", Some("1"))], 128, JobOptions::default());
    assert_eq!(fin.verdict, Verdict::AC, "{fin:?} {results:?}");
    assert!(results[0].peak_memory_bytes > 40 << 20, "{:?}", results[0]);
    let over = within.replace("40 << 20", "200 << 20");
    let (fin, _) = judge_with("java", &over, &[("", Some("1"))], 128, JobOptions::default());
    assert!(matches!(fin.verdict, Verdict::RE | Verdict::MLE), "{fin:?}");
}

const ECHO_PY: &str = "import sys\nsys.stdout.write(sys.stdin.read())\n";

fn checker(convention: protocol::CheckerConvention, source: &str) -> protocol::Checker {
    protocol::Checker::Program(protocol::CheckerProgram {
        convention,
        language: "python".into(),
        source: source.as_bytes().to_vec(),
        args: vec!["float_tolerance".into(), "0.01".into()],
        limits: Limits { cpu_ms: 2000, wall_ms: 5000, memory_bytes: 256 << 20, max_processes: 16, output_bytes: 1 << 20 },
    })
}

#[test]
fn lazy_judging_skips_the_rest_of_a_failed_group_only() {
    let options = JobOptions { lazy: true, groups: vec![0, 0, 0, 1], ..JobOptions::default() };
    let tests = [("1", Some("1")), ("2", Some("3")), ("3", Some("3")), ("4", Some("4"))];
    let (fin, results) = judge_with("python", ECHO_PY, &tests, 256, options);
    assert_eq!(fin.verdict, Verdict::WA, "{fin:?}");
    let judged: Vec<_> = results.iter().map(|r| (r.index, r.verdict)).collect();
    assert_eq!(judged, [(0, Verdict::AC), (1, Verdict::WA), (3, Verdict::AC)]);
    // Without lazy, every test runs.
    let options = JobOptions { groups: vec![0, 0, 0, 1], ..JobOptions::default() };
    let (_, results) = judge_with("python", ECHO_PY, &tests, 256, options);
    assert_eq!(results.len(), 4);
}

#[test]
fn built_in_checkers_judge_in_the_agent() {
    let options = JobOptions {
        checker: protocol::Checker::Float { absolute: 1e-3, relative: 0.0, case_sensitive: false },
        ..JobOptions::default()
    };
    let src = "print('Answer', 0.3333)";
    let (fin, results) = judge_with("python", src, &[("", Some("answer 0.33333")), ("", Some("answer 0.3"))], 256, options);
    assert_eq!(results[0].verdict, Verdict::AC, "{results:?}");
    assert_eq!(results[1].verdict, Verdict::WA);
    assert!(results[1].message.contains("token 2"), "{:?}", results[1].message);
    assert_eq!(fin.verdict, Verdict::WA);
}

/// A Kattis output validator: compares one number within the tolerance of its flags,
/// explains itself in judgemessage.txt and scores in score.txt.
const KATTIS_VALIDATOR: &str = r#"
import sys
inp, ans, feedback = sys.argv[1], sys.argv[2], sys.argv[3]
tol = float(sys.argv[sys.argv.index("float_tolerance") + 1])
expected = float(open(ans).read())
given = sys.stdin.read().split()
if open(inp).read().strip() == "crash":
    raise SystemExit(1)
def verdict(code, message, score=None):
    open(feedback + "judgemessage.txt", "w").write(message)
    if score is not None:
        open(feedback + "score.txt", "w").write(str(score))
    sys.exit(code)
if len(given) != 1:
    verdict(43, "expected one number, got %d tokens" % len(given))
if abs(float(given[0]) - expected) > tol:
    verdict(43, "off by %.3f" % abs(float(given[0]) - expected))
verdict(42, "fine", 7)
"#;

#[test]
fn kattis_validators_decide_and_a_crash_is_ie() {
    let options = JobOptions { checker: checker(protocol::CheckerConvention::Kattis, KATTIS_VALIDATOR), ..JobOptions::default() };
    let tests = [("1.0", Some("1.005")), ("2.0", Some("2.5")), ("crash", Some("0"))];
    let src = "import sys\nx = sys.stdin.read().strip()\nprint(x if x != 'crash' else 0)\n";
    let (fin, results) = judge_with("python", src, &tests, 256, options);
    assert_eq!(results[0].verdict, Verdict::AC, "{results:?}");
    assert_eq!(results[0].message, "fine");
    assert_eq!(results[0].score, Some(7.0));
    assert_eq!(results[1].verdict, Verdict::WA, "{results:?}");
    assert_eq!(results[1].message, "off by 0.500");
    assert_eq!(results[2].verdict, Verdict::IE, "{results:?}");
    assert!(results[2].message.contains("exited with 1"), "{:?}", results[2].message);
    assert_eq!(fin.verdict, Verdict::WA);
}

#[test]
fn testlib_checkers_map_exit_codes_and_points() {
    let src = r#"
import sys
inp, out, ans = sys.argv[1:4]
o, a = open(out).read().split(), open(ans).read().split()
if o == a:
    sys.exit(0)
if o == ["pe"]:
    sys.stderr.write("spacing"); sys.exit(2)
if o == ["half"]:
    sys.stderr.write("points 0.5 half right"); sys.exit(7)
if o == ["fail"]:
    sys.stderr.write("the answer file is wrong"); sys.exit(3)
sys.stderr.write("wrong answer: expected %s" % a); sys.exit(1)
"#;
    let options = JobOptions { checker: checker(protocol::CheckerConvention::Testlib, src), ..JobOptions::default() };
    let tests = [("ok", Some("ok")), ("x", Some("y")), ("pe", Some("y")), ("half", Some("y")), ("fail", Some("y"))];
    let (_, results) = judge_with("python", ECHO_PY, &tests, 256, options);
    let got: Vec<_> = results.iter().map(|r| (r.verdict, r.score)).collect();
    assert_eq!(
        got,
        [
            (Verdict::AC, None),
            (Verdict::WA, None),
            (Verdict::WA, None),
            (Verdict::AC, Some(0.5)),
            (Verdict::IE, None)
        ],
        "{results:?}"
    );
    assert!(results[2].message.starts_with("presentation error"), "{:?}", results[2].message);
    assert!(results[4].message.contains("the answer file is wrong"), "{:?}", results[4].message);
}

#[test]
fn a_checker_that_does_not_compile_is_ie_for_the_job() {
    let options = JobOptions { checker: checker(protocol::CheckerConvention::Kattis, "def (:\n"), ..JobOptions::default() };
    let (fin, results) = judge_with("python", ECHO_PY, &[("1", Some("1"))], 256, options);
    assert_eq!(fin.verdict, Verdict::IE, "{fin:?}");
    assert!(fin.message.contains("checker does not compile"), "{fin:?}");
    assert!(results.is_empty());
}

/// Guess the number in /box/in (1..=1000) in at most 10 guesses; the interactor answers
/// each guess with "lower", "higher" or "correct".
const GUESS_INTERACTOR: &str = r#"
import sys
secret = int(open(sys.argv[1]).read())
feedback = sys.argv[3]
def verdict(code, message):
    open(feedback + "judgemessage.txt", "w").write(message)
    sys.exit(code)
for guesses in range(1, 11):
    line = sys.stdin.readline()
    if not line:
        verdict(43, "no guess after %d guesses" % (guesses - 1))
    g = int(line)
    if g == secret:
        print("correct", flush=True)
        verdict(42, "found in %d guesses" % guesses)
    print("lower" if g > secret else "higher", flush=True)
verdict(43, "too many guesses")
"#;

#[test]
fn interactive_programs_talk_to_the_interactor_through_pipes() {
    let interactor = protocol::CheckerProgram {
        convention: protocol::CheckerConvention::Kattis,
        language: "python".into(),
        source: GUESS_INTERACTOR.as_bytes().to_vec(),
        args: vec![],
        limits: Limits { cpu_ms: 2000, wall_ms: 5000, memory_bytes: 256 << 20, max_processes: 16, output_bytes: 1 << 20 },
    };
    let options = JobOptions { interactor: Some(interactor), ..JobOptions::default() };
    let bisect = "lo, hi = 1, 1000\nwhile True:\n    mid = (lo + hi) // 2\n    print(mid, flush=True)\n    r = input()\n    if r == 'correct':\n        break\n    if r == 'lower':\n        hi = mid - 1\n    else:\n        lo = mid + 1\n";
    let tests = [("1", Some("")), ("777", Some("")), ("1000", Some(""))];
    let (fin, results) = judge_with("python", bisect, &tests, 256, options.clone());
    assert_eq!(fin.verdict, Verdict::AC, "{fin:?} {results:?}");
    assert!(results.iter().all(|r| r.message.starts_with("found in")), "{results:?}");
    // The program's own time, not the interactor's.
    assert!(results.iter().all(|r| r.cpu_time_us > 0 && r.cpu_time_us < 2_000_000), "{results:?}");

    let linear = "g = 1\nwhile True:\n    print(g, flush=True)\n    if input() == 'correct':\n        break\n    g += 1\n";
    let (fin, results) = judge_with("python", linear, &tests, 256, options.clone());
    assert_eq!(results[0].verdict, Verdict::AC, "{results:?}");
    // The interactor gives up; the program dies of the closed pipe, and it is WA.
    assert_eq!((results[1].verdict, results[1].message.as_str()), (Verdict::WA, "too many guesses"), "{results:?}");
    assert_eq!(fin.verdict, Verdict::WA);

    let (_, results) = judge_with("python", "pass\n", &tests[..1], 256, options.clone());
    assert_eq!((results[0].verdict, results[0].message.as_str()), (Verdict::WA, "no guess after 0 guesses"));

    // A program that never answers: its own time limit, not a hang.
    let (_, results) = judge_with("python", "import time\ntime.sleep(60)\n", &tests[..1], 256, options);
    assert_eq!(results[0].verdict, Verdict::TLE, "{results:?}");
}

/// A validator is the problem setter's code, not the agent's: between its runs it may
/// leave symlinks in its own box pointing at host paths. The agent must neither write
/// the next test's files through them nor read feedback through them.
#[test]
fn a_validator_cannot_make_the_agent_touch_host_files() {
    let host = tempfile::tempdir().unwrap();
    let victim = host.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let secret_dir = host.path().join("secret");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("judgemessage.txt"), "host secret").unwrap();
    let validator = format!(
        r#"
import os, sys
for name in ("in", "ans", "out"):
    try:
        os.unlink("/box/" + name)
    except OSError:
        pass
    os.symlink({victim:?}, "/box/" + name)
import shutil
shutil.rmtree("/box/feedback")
os.symlink({secret:?}, "/box/feedback")
sys.exit(42)
"#,
        victim = victim.to_str().unwrap(),
        secret = secret_dir.to_str().unwrap(),
    );
    let options = JobOptions { checker: checker(protocol::CheckerConvention::Kattis, &validator), ..JobOptions::default() };
    let tests = [("first", Some("x")), ("second", Some("y")), ("third", Some("z"))];
    let (_, results) = judge_with("python", ECHO_PY, &tests, 256, options);
    assert_eq!(results.len(), 3, "{results:?}");
    for r in &results {
        assert!(!r.message.contains("host secret"), "feedback read through a symlink: {r:?}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched", "a test file was written through a symlink");
}
