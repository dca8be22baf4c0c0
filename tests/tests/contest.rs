//! Contest problems end to end: the example Kattis packages in `tests/problems/` are
//! imported through the API (by `coordinator problem import`, and one exported and
//! imported again as a zip), and every example submission in them is judged by a real
//! agent with the verdict its directory names (Kattis's layout: `submissions/accepted`,
//! `wrong_answer`, `time_limit_exceeded`, `run_time_error`; `partial` is WA with a score).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use judge_tests::{Judge, bin_dir, uid_base};
use serde_json::{Value, json};

fn problems_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("problems")
}

fn admin_token(judge: &Judge) -> String {
    let file = judge.data_dir.path().join("admin-token");
    let start = Instant::now();
    loop {
        if let Ok(t) = std::fs::read_to_string(&file)
            && !t.trim().is_empty()
        {
            return t.trim().to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no admin token in {}", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `coordinator problem <args>` against the judge; its stdout, or the failure.
fn cli(judge: &Judge, token: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(bin_dir().join("coordinator"))
        .arg("problem")
        .args(args)
        .args(["--url", &judge.api])
        .env("JUDGE_TOKEN", token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if out.status.success() { Ok(stdout) } else { Err(stderr) }
}

fn language(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("py") => "python",
        Some("c") => "c",
        Some("cpp") => "cpp",
        other => panic!("no language for {other:?}"),
    }
}

/// Every example submission: (problem, path under submissions/, expected verdict).
fn examples(slug: &str) -> Vec<(String, PathBuf, &'static str)> {
    let dir = problems_dir().join(slug).join("submissions");
    let mut found = Vec::new();
    for kind in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = kind.file_name().to_string_lossy().into_owned();
        let verdict = match name.as_str() {
            "accepted" => "AC",
            "wrong_answer" | "partial" => "WA",
            "time_limit_exceeded" => "TLE",
            "run_time_error" => "RE",
            other => panic!("unknown submissions directory {other}"),
        };
        for file in std::fs::read_dir(kind.path()).unwrap().flatten() {
            found.push((slug.to_owned(), file.path(), verdict));
        }
    }
    found.sort();
    found
}

fn submit(judge: &Judge, slug: &str, file: &Path) -> u64 {
    let source = std::fs::read_to_string(file).unwrap();
    let r = reqwest::blocking::Client::new()
        .post(judge.url(&format!("/api/problems/{slug}/submissions")))
        .json(&json!({ "language": language(file), "source": source }))
        .send()
        .unwrap();
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status.as_u16(), 201, "{slug} {}: {body}", file.display());
    body["id"].as_u64().unwrap()
}

#[test]
fn example_packages_import_and_every_submission_gets_its_verdict() {
    let judge = Judge::up(uid_base(0), &[]);
    let token = admin_token(&judge);
    for slug in ["add", "hypot", "guess"] {
        let dir = problems_dir().join(slug);
        assert_eq!(cli(&judge, &token, &["import", dir.to_str().unwrap()]), Ok(slug.to_owned()));
    }
    // Export as a zip, import the zip under another name: the same problem.
    let tmp = tempfile::tempdir().unwrap();
    let zip = tmp.path().join("add.zip");
    cli(&judge, &token, &["export", "add", "--out", zip.to_str().unwrap()]).unwrap();
    assert_eq!(cli(&judge, &token, &["import", zip.to_str().unwrap(), "--slug", "add-again"]), Ok("add-again".into()));
    let problem = |slug: &str| -> Value { reqwest::blocking::get(judge.url(&format!("/api/problems/{slug}"))).unwrap().json().unwrap() };
    let (a, b) = (problem("add"), problem("add-again"));
    assert_eq!((a["testCount"].clone(), a["groups"].clone()), (b["testCount"].clone(), b["groups"].clone()));
    assert_eq!(problem("guess")["interactive"], true);
    assert_eq!(problem("hypot")["scoring"], "min");

    // Refusals: without a token, and a package that is not one.
    let err = cli(&judge, "", &["import", problems_dir().join("add").to_str().unwrap()]).unwrap_err();
    assert!(err.contains("401"), "{err}");
    let r = reqwest::blocking::Client::new()
        .post(judge.url("/api/problems"))
        .bearer_auth(&token)
        .header("content-type", "application/zip")
        .body(b"PK\x03\x04 not really".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Submit everything first, so the agent's slots work in parallel, then check.
    let mut all: Vec<_> = ["add", "hypot", "guess"].iter().flat_map(|s| examples(s)).collect();
    all.push(("add-again".into(), problems_dir().join("add/submissions/accepted/add.py"), "AC"));
    let ids: Vec<u64> = all.iter().map(|(slug, file, _)| submit(&judge, slug, file)).collect();
    for ((slug, file, verdict), id) in all.iter().zip(&ids) {
        let name = format!("{slug}/{}", file.strip_prefix(problems_dir().join(slug)).unwrap_or(file).display());
        let r = judge.result_as(*id, Some(&token), Duration::from_secs(120));
        assert_eq!(r["verdict"], *verdict, "{name}: {r:#}");
        assert_eq!(r["problem"], slug.as_str(), "{name}");
        check_secrets_hidden(&name, &judge.result(*id, Duration::from_secs(5)));
        let expected_score = match (slug.as_str(), *verdict) {
            (_, "AC") if slug == "hypot" => 100.0,
            (_, "AC") => 1.0,
            ("hypot", _) if file.to_string_lossy().contains("partial") => 30.0,
            _ => 0.0,
        };
        assert_eq!(r["score"].as_f64(), Some(expected_score), "{name}: {r:#}");
        check_details(&name, &r);
    }

    // A rejudge of a problem runs every submission to it again and keeps the old verdicts.
    let client = reqwest::blocking::Client::new();
    let r = client.post(judge.url("/api/problems/add/rejudge")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client.post(judge.url("/api/problems/add/rejudge")).bearer_auth(&token).send().unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let body: Value = r.json().unwrap();
    let to_add: Vec<u64> = all.iter().zip(&ids).filter(|((slug, _, _), _)| slug == "add").map(|(_, id)| *id).collect();
    assert_eq!(body["rejudged"], json!(to_add));
    for ((slug, file, verdict), id) in all.iter().zip(&ids).filter(|((slug, _, _), _)| slug == "add") {
        let r = judge.result(*id, Duration::from_secs(120));
        assert_eq!(r["verdict"], *verdict, "{slug} {}: {r:#}", file.display());
        let history = r["history"].as_array().unwrap();
        assert_eq!(history.len(), 1, "{r:#}");
        assert_eq!(history[0]["verdict"], *verdict);
    }
}

/// What anybody but a setter sees of a submission: the samples' details, nothing of what
/// a secret test's run printed or its checker said (it would leak the test data).
fn check_secrets_hidden(name: &str, r: &Value) {
    for t in r["tests"].as_array().unwrap() {
        if t["sample"] == true {
            assert!(t.get("hidden").is_none(), "{name}: a sample is hidden: {t:#}");
        } else {
            assert_eq!(t["hidden"], true, "{name}: {t:#}");
            assert_eq!((&t["stdout"], &t["stderr"], &t["message"]), (&json!(""), &json!(""), &json!("")), "{name}: {t:#}");
        }
    }
    if name == "add/wrong_answer/overflow.c" {
        assert!(!r.to_string().contains("3000000000"), "{name}: a secret answer shows: {r:#}");
    }
}

/// What each kind of problem shows beyond the verdict.
fn check_details(name: &str, r: &Value) {
    let tests = r["tests"].as_array().unwrap();
    let verdicts: Vec<&str> = tests.iter().map(|t| t["verdict"].as_str().unwrap()).collect();
    if name.starts_with("add/") || name.starts_with("add-again/") {
        // Pass-fail stops at the first failure: nothing runs after it.
        let first_bad = verdicts.iter().position(|v| *v != "AC");
        assert_eq!(tests.len(), first_bad.map_or(4, |i| i + 1), "{name}: {verdicts:?}");
        assert_eq!(tests[0]["sample"], true, "{name}: the sample runs first");
    }
    if name == "add/wrong_answer/overflow.c" {
        assert_eq!(tests[2]["name"], "secret/02", "{r:#}");
        assert!(tests[2]["message"].as_str().unwrap().contains("expected \"3000000000\""), "{r:#}");
    }
    if name.starts_with("hypot/") {
        // Scored: every test runs; subtasks score all or nothing.
        assert_eq!(tests.len(), 5, "{name}: {verdicts:?}");
        let groups: Vec<(&str, f64)> =
            r["groups"].as_array().unwrap().iter().map(|g| (g["name"].as_str().unwrap(), g["score"].as_f64().unwrap())).collect();
        let small = if name.contains("wrong_answer") { 0.0 } else { 30.0 };
        let large = if r["verdict"] == "AC" { 70.0 } else { 0.0 };
        assert_eq!(groups, [("sample", 0.0), ("secret/large", large), ("secret/small", small)], "{name}");
        if r["verdict"] == "AC" {
            assert!(tests[0]["message"].as_str().unwrap().contains("within 1e-06"), "{r:#}");
        }
    }
    if name == "guess/wrong_answer/upwards.py" {
        let lost = tests.iter().find(|t| t["verdict"] == "WA").unwrap();
        assert_eq!(lost["message"], "no luck in 10 guesses", "{r:#}");
    }
    if name.starts_with("guess/accepted") {
        assert!(tests.iter().all(|t| t["message"].as_str().unwrap().starts_with("found in")), "{r:#}");
    }
}
