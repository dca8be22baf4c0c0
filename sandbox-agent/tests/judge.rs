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
