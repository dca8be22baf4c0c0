//! `/ws` as the seed's frontend uses it, through a real `coordinator up`: the scenarios of
//! tests/ws_client.py (Python `websockets`), which asserts and exits nonzero on failure.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use judge_tests::{Judge, uid_base};


fn python() -> &'static str {
    // Debian's python3 has python3-websockets from apt (.ci/run installs it).
    if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

fn client(judge: &Judge, args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ws_client.py");
    let ws = format!("{}/ws", judge.api.replacen("http://", "ws://", 1));
    // The admin token `up` wrote, for the scenarios that add to the catalog.
    let admin = std::fs::read_to_string(judge.data_dir.path().join("admin-token")).unwrap_or_default();
    let out = Command::new(python())
        .arg(script)
        .arg(&ws)
        .arg(&judge.api)
        .args(args)
        .env("JUDGE_ADMIN_TOKEN", admin.trim())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ws_client.py {args:?} failed");
    stdout
}

#[test]
fn seed_frontend_scenarios_over_websocket() {
    let judge = Judge::up(uid_base(3), &["--slots", "2"]);
    let out = client(&judge, &[]);
    for scenario in [
        "seed_two_sum",
        "bubble_sort_live",
        "run_tests_and_watchers",
        "malformed_and_unknown",
        "oversized_frame",
        "flood_steps",
        "cancel_never_returns",
        "performance_benchmark",
        "c_functions",
        "benchmark_generators",
        "stored_algorithm",
    ] {
        assert!(out.contains(&format!("OK {scenario}")), "{scenario} did not pass:\n{out}");
    }
    // A small smoke run of the latency benchmark; the figures are printed, not asserted.
    client(&judge, &["bench", "500"]);
    assert!(judge.stop().success());
}

/// The step-latency benchmark: 10,000 steps, p50/p99 printed. Run it on a release build:
/// `cargo test --release -p judge-tests --test websocket -- --ignored --nocapture`.
#[test]
#[ignore]
fn step_latency_benchmark() {
    let judge = Judge::up(uid_base(4), &["--slots", "1"]);
    let out = client(&judge, &["bench", "10000"]);
    println!("{out}");
}
