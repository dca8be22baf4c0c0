//! The sandbox on this host's real cgroups and namespaces (needs root, as CI has).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use sandbox_agent::sandbox::{Exit, RunLimits, RunOutcome, RunSpec, Sandbox};

struct Fixture {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    box_dir: std::path::PathBuf,
    stdin: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path(), rootfs::Spec::builtin().unwrap().mounts).unwrap();
    let box_dir = dir.path().join("box");
    std::fs::create_dir(&box_dir).unwrap();
    let stdin = dir.path().join("input");
    std::fs::write(&stdin, "").unwrap();
    Fixture { _dir: dir, sandbox, box_dir, stdin }
}

fn limits() -> RunLimits {
    RunLimits {
        cpu: Duration::from_secs(2),
        wall: Duration::from_secs(5),
        memory_bytes: 256 << 20,
        max_processes: 64,
        output_bytes: 1 << 20,
        file_bytes: 16 << 20,
        open_files: 64,
        stack_bytes: 64 << 20,
    }
}

fn env() -> BTreeMap<String, String> {
    [("PATH".to_string(), "/usr/bin:/bin".to_string())].into()
}

fn run(f: &Fixture, argv: &[&str], limits: RunLimits) -> RunOutcome {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let env = env();
    let spec = RunSpec {
        argv: &argv,
        env: &env,
        box_dir: &f.box_dir,
        box_writable: false,
        stdin: &f.stdin,
        limits,
        uid: 60000,
        gid: 60000,
    };
    f.sandbox.run(&spec).unwrap()
}

fn sh(f: &Fixture, script: &str) -> RunOutcome {
    run(f, &["/bin/sh", "-c", script], limits())
}

#[test]
fn true_exits_zero_and_is_measured() {
    let f = fixture();
    let o = run(&f, &["/bin/true"], limits());
    assert_eq!(o.exit, Exit::Code(0), "{o:?}");
    assert!(o.peak_memory_bytes > 0);
    assert!(o.limit.is_none());
}

#[test]
fn program_sees_only_the_sandbox() {
    let f = fixture();
    let o = sh(&f, "id -u; id -g; hostname; ls /; cat /proc/self/status | grep -E '^(CapEff|CapBnd|NoNewPrivs)'; ls /proc | grep -E '^[0-9]+$' | wc -l; cat /sys/class/net/*/operstate 2>&1 | head -1");
    let out = String::from_utf8_lossy(&o.stdout);
    eprintln!("{out}\n{o:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "60000");
    assert_eq!(lines[1], "60000");
    assert_eq!(lines[2], "judge");
    assert!(!out.contains("root\n") && !out.contains("home\n") && !out.contains("work\n"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}
