//! The complexity fit on the reference corpus (tests/complexity/): implementations of known
//! complexity in Python, JavaScript (PERFORMANCE_BENCHMARK over /ws, measured by the
//! harness in the sandbox) and C (programs through the REST API, measured by the run's
//! cgroup), each classified by our fit and by the seed's method on the same measurements.
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
use serde_json::{Value, json};

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
    detail: String,
}

/// Python and JavaScript files through tests/complexity_client.py.
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
                detail: format!(
                    "n {}, {} samples, memory {} ({}){}\n    medians (n, ms): {}",
                    v["sizes"], v["samples"], s("memory"), s("memoryMeasure"),
                    v["error"].as_str().map(|e| format!(", error: {e}")).unwrap_or_default(),
                    v["medians"]
                ),
            }
        })
        .collect()
}

/// `// expect: CLASS  max: N` or `// expect: CLASS  sizes: a b c` of a C file.
fn c_header(path: &Path) -> (String, Vec<u64>) {
    let text = std::fs::read_to_string(path).unwrap();
    let first = text.lines().next().unwrap();
    let field = |name: &str| first.split(&format!("{name}:")).nth(1).map(str::trim);
    // The class may have spaces ("O(n log n)"); two spaces end it.
    let expect = field("expect").unwrap().split("  ").next().unwrap().trim().to_string();
    let sizes = if let Some(list) = field("sizes") {
        list.split_whitespace().map(|s| s.parse().unwrap()).collect()
    } else {
        let max: u64 = field("max").unwrap().split_whitespace().next().unwrap().parse().unwrap();
        std::iter::successors(Some(8u64), |n| Some(n * 2)).take_while(|&n| n <= max).collect()
    };
    (expect, sizes)
}

const C_REPETITIONS: usize = 3;

/// A C file: one submission, every size three times; the fit sees the cgroup's CPU time of
/// each run (start-up is the fit's constant b: a C program's is well under a millisecond).
fn c_row(judge: &Judge, path: &Path, seed: u64, scratch: &Path) -> Row {
    let (expect, sizes) = c_header(path);
    // The expected outputs come from the same program built on the host.
    let exe = scratch.join(path.file_stem().unwrap());
    let built = Command::new("gcc").args(["-O2", "-o"]).arg(&exe).arg(path).status().unwrap();
    assert!(built.success(), "{path:?} does not build");
    let mut tests = Vec::new();
    for &n in &sizes {
        let input = format!("{n} {seed}\n");
        let mut child = Command::new(&exe)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let expected = String::from_utf8(out.stdout).unwrap();
        for _ in 0..C_REPETITIONS {
            tests.push(json!({ "input": input, "expectedOutput": expected }));
        }
    }
    let id = judge.submit(&json!({
        "language": "c", "source": std::fs::read_to_string(path).unwrap(), "tests": tests,
        "limits": { "cpuMs": 5000, "wallMs": 15000, "memoryMb": 256 },
    }));
    let result = judge.result(id, Duration::from_secs(600));
    let mut samples = Vec::new();
    for (i, t) in result["tests"].as_array().unwrap().iter().enumerate() {
        assert_eq!(t["verdict"], "AC", "{path:?} test {i}: {t}");
        samples.push(Sample { n: sizes[i / C_REPETITIONS] as f64, value: t["cpuTimeUs"].as_f64().unwrap() / 1000.0 });
    }
    let analysis = complexity::analyze(&samples).unwrap();
    let medians: Vec<Sample> = samples
        .chunks(C_REPETITIONS)
        .map(|c| {
            let mut v: Vec<f64> = c.iter().map(|s| s.value).collect();
            v.sort_by(f64::total_cmp);
            Sample { n: c[0].n, value: v[v.len() / 2] }
        })
        .collect();
    Row {
        file: format!("c/{}", path.file_name().unwrap().to_string_lossy()),
        expect,
        ours: analysis.best.class.name().to_string(),
        confidence: analysis.confidence,
        seed: complexity::seed_baseline(&medians).0.to_string(),
        detail: format!(
            "n [{}, {}], {} samples, cgroup CPU, runner-up {:?}\n    medians (n, ms): {:?}",
            sizes[0],
            sizes[sizes.len() - 1],
            samples.len(),
            analysis.runner_up.map(|r| (r.class.name(), r.weight)),
            medians.iter().map(|s| (s.n, s.value)).collect::<Vec<_>>()
        ),
    }
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
    let scratch = tempfile::tempdir().unwrap();
    let pick = |language: &str, ext: &str| {
        let names: Vec<&str> = only.iter().filter(|o| o.0 == language).map(|o| o.1).collect();
        if only.is_empty() || !names.is_empty() { files(language, ext, &names) } else { Vec::new() }
    };
    let mut fns = pick("python", "py");
    fns.extend(pick("javascript", "js"));
    let mut rows = function_rows(judge, &fns, seed);
    for path in pick("c", "c") {
        rows.push(c_row(judge, &path, seed, scratch.path()));
    }
    rows
}

fn confusion(rows: &[Row], pick: impl Fn(&Row) -> &str, title: &str) -> usize {
    let classes = ["O(1)", "O(log n)", "O(n)", "O(n log n)", "O(n²)", "O(n³)", "O(2ⁿ)"];
    let mut counts: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let mut right = 0;
    for r in rows {
        let row = classes.iter().position(|c| *c == r.expect).unwrap();
        *counts.entry((row, pick(r).to_string())).or_default() += 1;
        right += usize::from(pick(r) == r.expect);
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

/// CI: a fast subset, one run each, must be classified right, with confidence to spare
/// (the whole corpus is the ignored benchmark below).
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
        if list["total"].as_i64() >= Some(3) || std::time::Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(list["total"], 3, "python sum and bubble_sort, javascript bubble_sort: {list}");
    let runs = list["benchmarks"].as_array().unwrap();
    let bubble: Vec<&Value> = runs.iter().filter(|r| r["algorithmName"] == "bubble_sort").collect();
    assert_eq!(bubble.len(), 2);
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
            println!("seed {seed} {:<28} expect {:<10} ours {:<10} ({:.2}) seed method {:<10} {}", r.file, r.expect, r.ours, r.confidence, r.seed, r.detail);
            rows.push(r);
        }
    }
    let ours = confusion(&rows, |r| r.ours.as_str(), "our fit");
    let seed = confusion(&rows, |r| r.seed.as_str(), "the seed's method (normalised R², one median per size)");
    println!("\nours {ours}/{n}, seed's method {seed}/{n}", n = rows.len());
    assert!(judge.stop().success());
}
