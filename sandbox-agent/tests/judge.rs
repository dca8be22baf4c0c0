//! The judge on real compilers and interpreters in real sandboxes (needs root).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use protocol::{Job, Limits, TestCase, TestResult, Verdict};
use sandbox_agent::judge::Judge;
use sandbox_agent::sandbox::Sandbox;

fn judge(language: &str, source: &str, tests: &[(&str, &str)]) -> (protocol::FinalResult, Vec<TestResult>) {
    let dir = tempfile::tempdir().unwrap();
    let spec = Arc::new(rootfs::Spec::builtin().unwrap());
    let sandbox = Sandbox::new(dir.path(), &spec).unwrap();
    let judge = Judge::new(sandbox, spec, dir.path(), 61000, 2).unwrap();
    let job = Job {
        submission_id: 1,
        language: language.into(),
        source: source.as_bytes().to_vec(),
        tests: tests
            .iter()
            .map(|(i, o)| TestCase { input: i.as_bytes().to_vec(), expected_output: o.as_bytes().to_vec() })
            .collect(),
        limits: Limits { cpu_ms: 1000, wall_ms: 3000, memory_bytes: 256 << 20, max_processes: 64, output_bytes: 1 << 20 },
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
