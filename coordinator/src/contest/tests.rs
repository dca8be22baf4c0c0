#![allow(clippy::unwrap_used)]

use protocol::{TestResult, Verdict};

use super::package::{self, Files, PackageError};
use super::zip::{PackageCaps, read_dir, read_zip, write_zip};
use super::*;
use crate::judge::TestRecord;

fn record(index: u32, verdict: Verdict, score: Option<f64>) -> TestRecord {
    TestRecord {
        result: TestResult {
            submission_id: 1,
            index,
            verdict,
            limit: None,
            cpu_time_us: 0,
            wall_time_us: 0,
            peak_memory_bytes: 0,
            exit_code: Some(0),
            signal: None,
            stdout: vec![],
            stderr: vec![],
            message: String::new(),
            score,
        },
        stdout_len: 0,
        stderr_len: 0,
    }
}

/// Samples (score 0), then group a (30 points, 2 tests) and group b (70 points, 2 tests).
fn problem(scoring: Scoring) -> ProblemRef {
    let test = |name: &str, group, sample| TestRef { name: name.into(), group, sample };
    ProblemRef {
        slug: "p".into(),
        scoring,
        groups: vec![
            GroupRef { name: "sample".into(), score: 0.0 },
            GroupRef { name: "secret/a".into(), score: 30.0 },
            GroupRef { name: "secret/b".into(), score: 70.0 },
        ],
        tests: vec![test("s1", 0, true), test("a1", 1, false), test("a2", 1, false), test("b1", 2, false), test("b2", 2, false)],
    }
}

#[test]
fn ioi_min_gives_a_group_only_when_all_of_it_passes() {
    let results = [
        record(0, Verdict::AC, None),
        record(1, Verdict::AC, None),
        record(2, Verdict::AC, None),
        record(3, Verdict::AC, None),
        record(4, Verdict::TLE, None),
    ];
    let r = score(&problem(Scoring::Min), &results, true);
    assert_eq!((r.score, r.max_score), (30.0, 100.0));
    assert_eq!(r.groups[1].verdict, Some("AC"));
    assert_eq!(r.groups[2].verdict, Some("TLE"));
    assert_eq!((r.groups[2].tests, r.groups[2].passed), (2, 1));
}

#[test]
fn sum_gives_each_passed_test_its_share_and_checker_scores_count() {
    let results = [
        record(1, Verdict::AC, None),
        record(2, Verdict::WA, None),
        record(3, Verdict::AC, Some(0.5)),
        record(4, Verdict::AC, Some(7.0)),
    ];
    let r = score(&problem(Scoring::Sum), &results, true);
    // a: 30 * 1/2; b: 70 * (0.5 + 1 (clamped)) / 2.
    assert_eq!(r.score, 15.0 + 52.5);
    let odd = [record(1, Verdict::AC, Some(f64::NAN)), record(2, Verdict::AC, Some(f64::INFINITY))];
    assert_eq!(score(&problem(Scoring::Sum), &odd, true).groups[1].score, 30.0);
    assert_eq!(r.groups[0].verdict, None, "the sample has no result: {:?}", r.groups[0]);
}

#[test]
fn pass_fail_is_all_or_nothing_and_skipped_tests_fail() {
    let all: Vec<_> = (0..5).map(|i| record(i, Verdict::AC, None)).collect();
    assert_eq!(score(&problem(Scoring::PassFail), &all, true).score, 1.0);
    // Lazy judging stopped after the WA: the rest never ran.
    let lazy = [record(0, Verdict::AC, None), record(1, Verdict::WA, None)];
    let r = score(&problem(Scoring::PassFail), &lazy, true);
    assert_eq!((r.score, r.max_score), (0.0, 1.0));
    assert_eq!(r.groups[1].verdict, Some("WA"));
    // While running, a group with missing results has no verdict yet.
    let r = score(&problem(Scoring::Min), &[record(1, Verdict::AC, None)], false);
    assert_eq!(r.groups[1].verdict, None);
}

fn files(entries: &[(&str, &str)]) -> Files {
    entries.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
}

fn scored_package() -> Files {
    files(&[
        ("problem.yaml", "name: Sum It\ntype: scoring\nvalidator_flags: float_tolerance 1e-6\nlimits:\n  memory: 128\n"),
        (".timelimit", "1.5\n"),
        ("data/testdata.yaml", "grader_flags: min\n"),
        ("data/sample/1.in", "1 2\n"),
        ("data/sample/1.ans", "3\n"),
        ("data/secret/small/testdata.yaml", "score: 40\n"),
        ("data/secret/small/01.in", "2 2\n"),
        ("data/secret/small/01.ans", "4\n"),
        ("data/secret/large/testdata.yaml", "score: 60\n"),
        ("data/secret/large/01.in", "1000000 1\n"),
        ("data/secret/large/01.ans", "1000001\n"),
        ("data/secret/large/02.in", "5 5\n"),
        ("data/secret/large/02.ans", "10\n"),
    ])
}

#[test]
fn a_scored_package_with_groups_parses() {
    let p = package::parse("sum-it", &scored_package()).unwrap();
    assert_eq!(p.meta.name, "Sum It");
    assert_eq!((p.meta.time_limit_ms, p.meta.memory_mb), (1500, 128));
    assert_eq!(p.meta.scoring, Scoring::Min);
    assert!(!p.meta.lazy, "scored problems run every test by default");
    assert_eq!(p.meta.checker, BuiltinChecker::Float { absolute: 1e-6, relative: 1e-6, case_sensitive: false });
    let groups: Vec<_> = p.meta.groups.iter().map(|g| (g.name.as_str(), g.score)).collect();
    assert_eq!(groups, [("sample", 0.0), ("secret/large", 60.0), ("secret/small", 40.0)]);
    let tests: Vec<_> = p.tests.iter().map(|t| (t.name.as_str(), t.group, t.sample)).collect();
    assert_eq!(
        tests,
        [("sample/1", 0, true), ("secret/large/01", 1, false), ("secret/large/02", 1, false), ("secret/small/01", 2, false)]
    );
    assert_eq!(p.tests[0].answer, b"3\n");
}

#[test]
fn export_then_import_gives_the_same_problem() {
    let mut pkg = scored_package();
    pkg.insert("problem.yaml".into(), b"name: Sum It\ntype: scoring\nvalidation: custom\nlimits: {memory: 64}\n".to_vec());
    pkg.insert("output_validators/check/validate.py".into(), b"import sys\nsys.exit(42)\n".to_vec());
    let p = package::parse("sum-it", &pkg).unwrap();
    assert_eq!(p.validator.as_ref().map(|v| v.meta.language.as_str()), Some("python"));
    let zip = write_zip("sum-it", &package::export(&p)).unwrap();
    let unpacked = read_zip(&zip, PackageCaps::default()).unwrap();
    assert_eq!(unpacked.root_name.as_deref(), Some("sum-it"));
    assert_eq!(package::parse("sum-it", &unpacked.files).unwrap(), p);
    // A pass-fail problem with the default checker, too.
    let plain = files(&[("problem.yaml", "name: A\n"), ("data/secret/1.in", "x"), ("data/secret/1.ans", "y")]);
    let p = package::parse("a", &plain).unwrap();
    assert!(p.meta.lazy);
    assert_eq!(p.meta.checker, BuiltinChecker::Tokens { case_sensitive: false });
    assert_eq!(package::parse("a", &package::export(&p)).unwrap(), p);
}

#[test]
fn malformed_packages_name_the_problem_and_the_file() {
    let cases: Vec<(Files, &str)> = vec![
        (files(&[("data/secret/1.in", "")]), "problem.yaml: missing"),
        (files(&[("problem.yaml", "name: [")]), "problem.yaml: not valid YAML"),
        (files(&[("problem.yaml", "type: golf"), ("data/secret/1.in", ""), ("data/secret/1.ans", "")]), "type: \"golf\""),
        (files(&[("problem.yaml", ""), ("data/secret/1.in", "")]), "data/secret/1.in: has no answer file"),
        (files(&[("problem.yaml", ""), ("data/secret/1.ans", "")]), "data/secret/1.ans: has no input file"),
        (files(&[("problem.yaml", ""), ("data/sample/1.in", ""), ("data/sample/1.ans", "")]), "data/secret: no tests"),
        (files(&[("problem.yaml", ""), (".timelimit", "soon"), ("data/secret/1.in", ""), ("data/secret/1.ans", "")]), ".timelimit: \"soon\""),
        (
            files(&[("problem.yaml", "validator_flags: float_tolerance"), ("data/secret/1.in", ""), ("data/secret/1.ans", "")]),
            "float_tolerance needs a value",
        ),
        (
            files(&[("problem.yaml", "validation: custom"), ("data/secret/1.in", ""), ("data/secret/1.ans", "")]),
            "no validator source",
        ),
        (
            files(&[("problem.yaml", "limits: {memory: 100000}"), ("data/secret/1.in", ""), ("data/secret/1.ans", "")]),
            "limits.memory: 100000 MiB",
        ),
    ];
    for (pkg, expected) in cases {
        let e = package::parse("demo", &pkg).unwrap_err().to_string();
        assert!(e.starts_with("problem \"demo\": "), "{e}");
        assert!(e.contains(expected), "{e:?} should contain {expected:?}");
    }
    assert!(package::parse("../etc", &scored_package()).is_err());
}

fn zip_of(entries: &[(&str, &[u8])], options: ::zip::write::SimpleFileOptions) -> Vec<u8> {
    use std::io::Write;
    let mut z = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in entries {
        z.start_file(*name, options).unwrap();
        z.write_all(content).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn hostile_zips_are_refused() {
    let deflate = ::zip::write::SimpleFileOptions::default().compression_method(::zip::CompressionMethod::Deflated);
    let caps = PackageCaps { max_files: 10, max_file_bytes: 1 << 20, max_total_bytes: 2 << 20 };
    // Path traversal and absolute paths.
    for name in ["../evil", "a/../../evil", "/etc/passwd", "a\\..\\b"] {
        let z = zip_of(&[("problem.yaml", b""), (name, b"x")], deflate);
        let e = read_zip(&z, caps).err().unwrap();
        assert!(matches!(e, PackageError::Unsafe(_)), "{name}: {e}");
    }
    // A bomb: 64 MiB of zeros compresses to ~64 KiB; the cap stops the inflation early.
    let zeros = vec![0u8; 64 << 20];
    let z = zip_of(&[("data/secret/1.in", &zeros)], deflate);
    assert!(z.len() < 1 << 20);
    let e = read_zip(&z, caps).err().unwrap();
    assert!(matches!(e, PackageError::TooLarge(_)), "{e}");
    // Too many entries, and files that only together exceed the total.
    let many: Vec<(String, Vec<u8>)> = (0..11).map(|i| (format!("f{i}"), vec![])).collect();
    let many: Vec<(&str, &[u8])> = many.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
    assert!(matches!(read_zip(&zip_of(&many, deflate), caps), Err(PackageError::TooLarge(_))));
    let mb = vec![1u8; 900 << 10];
    let z = zip_of(&[("a", &mb), ("b", &mb), ("c", &mb)], deflate);
    assert!(matches!(read_zip(&z, caps), Err(PackageError::TooLarge(_))));
    // A symbolic link entry.
    let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.add_symlink("data/secret/1.in", "/etc/shadow", deflate).unwrap();
    let z = w.finish().unwrap().into_inner();
    assert!(matches!(read_zip(&z, caps), Err(PackageError::Unsafe(m)) if m.contains("symbolic link")));
    // Not a zip at all.
    assert!(matches!(read_zip(b"PK\x03\x04garbage", caps), Err(PackageError::Unsafe(_))));
}

#[test]
fn directories_with_symlinks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/secret")).unwrap();
    std::fs::write(dir.path().join("problem.yaml"), "name: x\n").unwrap();
    std::fs::write(dir.path().join("data/secret/1.in"), "1").unwrap();
    std::fs::write(dir.path().join("data/secret/1.ans"), "1").unwrap();
    let files = read_dir(dir.path(), PackageCaps::default()).unwrap();
    assert_eq!(package::parse("x", &files).unwrap().tests.len(), 1);
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("data/secret/2.in")).unwrap();
    let e = read_dir(dir.path(), PackageCaps::default()).err().unwrap();
    assert!(e.to_string().contains("data/secret/2.in: symbolic links"), "{e}");
}
