//! The complexity fit on the reference corpus (tests/complexity/): functions of known time
//! and memory complexity in Python, JavaScript and C, each benchmarked by
//! PERFORMANCE_BENCHMARK over /ws (measured by the language's harness in the sandbox) and
//! classified by our fit and by the seed's method on the same measurements; memory by our
//! fit of the call's own allocation.
//!
//! CI runs a small subset (`corpus_subset_is_classified_right`); the whole corpus, several
//! runs each, with confusion tables is a benchmark:
//! `cargo test -p judge-tests --test complexity -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use coordinator::analytics::complexity::{self, Sample};
use judge_tests::{Judge, uid_base};
use serde_json::Value;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("complexity")
}

#[derive(Debug, Clone)]
struct Row {
    file: String,
    expect: String,
    ours: String,
    confidence: f64,
    seed: String,
    memory_expect: String,
    memory: String,
    memory_confidence: f64,
    /// The seed's method on the same memory measurements (one per size).
    memory_seed: String,
    detail: String,
}

/// Corpus files through tests/complexity_client.py.
fn function_rows(judge: &Judge, files: &[PathBuf], seed: u64) -> Vec<Row> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/complexity_client.py");
    let ws = format!("{}/ws", judge.api.replacen("http://", "ws://", 1));
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let out = Command::new(python).arg(script).arg(&ws).arg(seed.to_string()).args(files).output().unwrap();
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "complexity_client.py failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
            Row {
                file: s("file"),
                expect: s("expect"),
                ours: if v["error"].is_string() { "error".into() } else { s("ours") },
                confidence: v["confidence"].as_f64().unwrap_or(0.0),
                seed: s("seed"),
                memory_expect: s("memoryExpect"),
                memory: if v["error"].is_string() { "error".into() } else { s("memory") },
                memory_confidence: v["memoryConfidence"].as_f64().unwrap_or(0.0),
                memory_seed: {
                    let samples: Vec<Sample> = v["memoryValues"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|p| Some(Sample { n: p[0].as_f64()?, value: p[1].as_f64()? }))
                                .collect()
                        })
                        .unwrap_or_default();
                    complexity::seed_baseline(&samples).0.to_string()
                },
                detail: format!(
                    "n {}, {} samples, memory {} ({:.2}, {}){}\n    medians (n, ms): {}\n    memory (n, bytes): {}",
                    v["sizes"], v["samples"], s("memory"), v["memoryConfidence"].as_f64().unwrap_or(0.0), s("memoryMeasure"),
                    v["error"].as_str().map(|e| format!(", error: {e}")).unwrap_or_default(),
                    v["medians"], v["memoryValues"]
                ),
            }
        })
        .collect()
}

fn files(language: &str, ext: &str, names: &[&str]) -> Vec<PathBuf> {
    let dir = corpus().join(language);
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .filter(|p| names.is_empty() || names.iter().any(|n| p.file_stem().is_some_and(|s| s == *n)))
        .collect();
    all.sort();
    all
}

/// The corpus files named `(language, stem)`, every file when `only` is empty.
fn run_corpus(judge: &Judge, only: &[(&str, &str)], seed: u64) -> Vec<Row> {
    let pick = |language: &str, ext: &str| {
        let names: Vec<&str> = only.iter().filter(|o| o.0 == language).map(|o| o.1).collect();
        if only.is_empty() || !names.is_empty() { files(language, ext, &names) } else { Vec::new() }
    };
    let mut fns = pick("python", "py");
    fns.extend(pick("javascript", "js"));
    fns.extend(pick("c", "c"));
    function_rows(judge, &fns, seed)
}

fn confusion(rows: &[Row], truth: impl Fn(&Row) -> &str, pick: impl Fn(&Row) -> &str, title: &str) -> usize {
    let classes = ["O(1)", "O(log n)", "O(n)", "O(n log n)", "O(n²)", "O(n³)", "O(2ⁿ)"];
    let mut counts: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let mut right = 0;
    for r in rows {
        let row = classes.iter().position(|c| *c == truth(r)).unwrap();
        *counts.entry((row, pick(r).to_string())).or_default() += 1;
        right += usize::from(pick(r) == truth(r));
    }
    let mut columns: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
    for (_, got) in counts.keys() {
        if !columns.contains(got) {
            columns.push(got.clone());
        }
    }
    println!("\n{title}: {right}/{} right ({:.1} %)", rows.len(), 100.0 * right as f64 / rows.len().max(1) as f64);
    print!("{:>12} |", "true \\ fit");
    for c in &columns {
        print!("{c:>11}");
    }
    println!();
    for (i, class) in classes.iter().enumerate() {
        print!("{class:>12} |");
        for c in &columns {
            let v = counts.get(&(i, c.clone())).copied().unwrap_or(0);
            print!("{:>11}", if v == 0 { ".".to_string() } else { v.to_string() });
        }
        println!();
    }
    right
}

/// CI: a fast subset, one run each, must be classified right in time and memory, with
/// confidence to spare (the whole corpus is the ignored benchmark below).
#[test]
fn corpus_subset_is_classified_right() {
    let judge = Judge::up(uid_base(6), &["--slots", "1"]);
    let subset = [("python", "sum"), ("python", "bubble_sort"), ("javascript", "bubble_sort"), ("c", "bubble_sort")];
    let rows = run_corpus(&judge, &subset, 1);
    for r in &rows {
        println!("{:<28} expect {:<10} ours {:<10} ({:.2}) seed {:<10} {}", r.file, r.expect, r.ours, r.confidence, r.seed, r.detail);
    }
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in &rows {
        assert_eq!(r.ours, r.expect, "{r:?}");
        assert!(r.confidence > 0.5, "{r:?}");
        // Sum and the in-place sorts allocate nothing that grows with n.
        assert_eq!(r.memory, r.memory_expect, "{r:?}");
        assert!(r.memory_confidence > 0.5, "{r:?}");
    }
    stored_benchmarks_are_served(&judge);
    assert!(judge.stop().success());
}

/// The WebSocket's benchmarks reach the store and `/api/analytics/benchmarks…`.
fn stored_benchmarks_are_served(judge: &Judge) {
    let get = |path: &str| reqwest::blocking::get(judge.url(path)).unwrap();
    // Stored in the background after BENCHMARK_COMPLETED: poll until both are there.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let list = loop {
        let list: Value = get("/api/analytics/benchmarks?perPage=10").json().unwrap();
        if list["total"].as_i64() >= Some(4) || std::time::Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(list["total"], 4, "python sum and bubble_sort, javascript and c bubble_sort: {list}");
    let runs = list["benchmarks"].as_array().unwrap();
    let bubble: Vec<&Value> = runs.iter().filter(|r| r["algorithmName"] == "bubble_sort").collect();
    assert_eq!(bubble.len(), 3, "{list}");
    assert!(bubble.iter().all(|r| r["bestFit"] == "O(n²)" && r["inputKind"] == "array" && r["seed"] == 1), "{list}");
    let id = bubble[0]["id"].as_i64().unwrap();
    let full: Value = get(&format!("/api/analytics/benchmarks/{id}")).json().unwrap();
    assert!(full["results"].as_array().unwrap().len() >= 10, "{full}");
    assert!(full["results"][0]["cpuTimes"].as_array().is_some_and(|t| !t.is_empty()), "{full}");
    let plot = get(&format!("/api/analytics/benchmarks/{id}/plot.svg"));
    assert_eq!(plot.headers()["content-type"], "image/svg+xml");
    let svg = plot.text().unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<circle").count() >= 20 && svg.matches("<path").count() == 2);
    // The two bubble sorts ran on the same inputs: a comparison per size.
    let other = bubble[1]["id"].as_i64().unwrap();
    let cmp: Value = get(&format!("/api/analytics/compare?a={id}&b={other}")).json().unwrap();
    assert!(cmp["speedups"].as_array().is_some_and(|s| s.len() >= 10), "{cmp}");
    assert!(cmp["speedups"][0]["speedup"].as_f64().is_some_and(|x| x > 0.0), "{cmp}");
    let sum = runs.iter().find(|r| r["algorithmName"] == "sum").unwrap();
    let missing = get("/api/analytics/benchmarks/999999");
    assert_eq!(missing.status(), 404);
    assert_eq!(get("/api/analytics/benchmarks/abc").status(), 400);
    assert!(sum["id"].is_i64());
}

/// The accuracy benchmark: every corpus file, `CORPUS_SEEDS` runs (seeds; default 3) each.
#[test]
#[ignore]
fn corpus_accuracy_benchmark() {
    let seeds: u64 = std::env::var("CORPUS_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let judge = Judge::up(uid_base(7), &["--slots", "1"]);
    let mut rows = Vec::new();
    for seed in 1..=seeds {
        for r in run_corpus(&judge, &[], seed) {
            println!(
                "seed {seed} {:<28} expect {:<10} ours {:<10} ({:.2}) seed method {:<10} memory expect {:<8} ours {:<8} ({:.2}) seed method {:<8} {}",
                r.file, r.expect, r.ours, r.confidence, r.seed, r.memory_expect, r.memory, r.memory_confidence, r.memory_seed, r.detail
            );
            rows.push(r);
        }
    }
    let ours = confusion(&rows, |r| r.expect.as_str(), |r| r.ours.as_str(), "time, our fit");
    let seed = confusion(&rows, |r| r.expect.as_str(), |r| r.seed.as_str(), "time, the seed's method (normalised R², one median per size)");
    let memory = confusion(&rows, |r| r.memory_expect.as_str(), |r| r.memory.as_str(), "memory (the call's own allocation), our fit");
    let memory_seed =
        confusion(&rows, |r| r.memory_expect.as_str(), |r| r.memory_seed.as_str(), "memory, the seed's method on the same measurements");
    println!(
        "\ntime: ours {ours}/{n}, seed's method {seed}/{n}; memory: ours {memory}/{n}, seed's method {memory_seed}/{n}",
        n = rows.len()
    );
    assert!(judge.stop().success());
}
