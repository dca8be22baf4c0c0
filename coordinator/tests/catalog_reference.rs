//! The shipped catalog (`coordinator/catalog/`): every entry parses and is valid, the list
//! in the code matches the directories, and each reference solution passes its own tests.
//!
//! Until the sandboxed function harness lands (issue 6), the solutions run on the host
//! under `catalog/_harness/run.py` and `run.js`, which call the entry point with each
//! test's JSON arguments and compare the JSON result.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use coordinator::store::catalog::{CATEGORIES, DIFFICULTIES, shipped};

fn catalog_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog")
}

#[test]
fn every_directory_is_listed_and_every_entry_is_valid() {
    let mut dirs: Vec<String> = std::fs::read_dir(catalog_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    dirs.sort();
    let mut listed: Vec<String> = shipped::ENTRIES.iter().map(|e| e.slug.to_owned()).collect();
    listed.sort();
    assert_eq!(dirs, listed, "catalog directories and shipped::ENTRIES differ");
    assert!(listed.len() >= 20);
    for entry in shipped::all().unwrap() {
        let slug = &entry.slug;
        assert!(DIFFICULTIES.contains(&entry.difficulty.as_str()), "{slug}: difficulty {}", entry.difficulty);
        assert!(CATEGORIES.contains(&entry.category.as_str()), "{slug}: category {}", entry.category);
        assert!(entry.hints.len() >= 2, "{slug}: hints");
        assert!(!entry.description.is_empty() && !entry.solution.is_empty() && !entry.tutorial.is_empty(), "{slug}");
        assert!(entry.test_cases.len() >= 4, "{slug}: tests");
        assert!(entry.test_cases.iter().any(|t| t.sample), "{slug}: no sample test");
        assert!(entry.test_cases.iter().all(|t| t.input.is_array()), "{slug}: inputs must be argument arrays");
    }
}

fn run(program: &str, harness: &str, solution: &str) {
    let dir = catalog_dir();
    let mut failures = Vec::new();
    for entry in shipped::all().unwrap() {
        let out = Command::new(program)
            .arg(dir.join("_harness").join(harness))
            .arg(dir.join(&entry.slug).join(solution))
            .arg(&entry.entry_point)
            .arg(dir.join(&entry.slug).join("tests.json"))
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        if !out.status.success() {
            failures.push(format!(
                "{}: {}{}",
                entry.slug,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "reference solutions failing their tests:\n{}", failures.join("\n"));
}

#[test]
fn python_reference_solutions_pass_their_tests() {
    run("python3", "run.py", "solution.py");
}

#[test]
fn javascript_reference_solutions_pass_their_tests() {
    run("node", "run.js", "solution.js");
}
