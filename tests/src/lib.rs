//! Helpers for the cross-process tests in `tests/tests/`: build and start the real
//! binaries, talk to them over HTTP, and check that nothing is left behind.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Directory of the workspace's built binaries, building them once per test process.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // The test binary is target/<profile>/deps/<name>; the binaries sit in <profile>.
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // Cargo gives a test the package's variables (CARGO_MANIFEST_DIR=tests/, ...); some
        // build scripts (ring's) rerun when those differ from the outer build's, which
        // rebuilt half the tree on every test run.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| {
                k.starts_with("CARGO_PKG_")
                    || ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"].contains(&k)
            }) {
                cmd.env_remove(key);
            }
        }
        // With this crate selected too, features unify as in the test build (see
        // Cargo.toml), so this is a no-op after `cargo test`.
        cmd.args(["build", "--bins", "-p", "coordinator", "-p", "sandbox-agent", "-p", "judge-tests"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "building the binaries failed");
        dir
    })
}

/// A range of 16 uids for the runs of one judge, unique to this test process and `slot`
/// (one per test file), so concurrent test runs (other checkouts, CI) never see each
/// other's processes as leftovers.
pub fn uid_base(slot: u32) -> u32 {
    assert!(slot < 16, "uid slots are 0..16 per test process");
    100_000 + (std::process::id() % 25_000) * 256 + slot * 16
}

/// A `coordinator up` started for one test, in its own data dir, on free ports.
pub struct Judge {
    pub child: Child,
    pub api: String,
    pub data_dir: tempfile::TempDir,
    pub uid_base: u32,
    /// Lines the coordinator (and its local agent) printed after the API's address.
    pub stdout: Arc<Mutex<Vec<String>>>,
}

impl Judge {
    /// Starts `coordinator up` and waits until its local agent has registered.
    pub fn up(uid_base: u32, extra: &[&str]) -> Judge {
        Judge::up_in(tempfile::tempdir().unwrap(), uid_base, extra)
    }

    /// `up` on a given data dir (a second start on the data of a first).
    pub fn up_in(data_dir: tempfile::TempDir, uid_base: u32, extra: &[&str]) -> Judge {
        Judge::up_with_env(data_dir, uid_base, extra, &[])
    }

    /// `up` with environment variables of its own (its local agent inherits them).
    pub fn up_with_env(data_dir: tempfile::TempDir, uid_base: u32, extra: &[&str], env: &[(&str, &str)]) -> Judge {
        let child = Command::new(bin_dir().join("coordinator"))
            .envs(env.iter().copied())
            .args(["up", "--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .args(["--uid-base", &uid_base.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (judge, _) = Judge::attach(child, data_dir, uid_base);
        judge.wait_for(Duration::from_secs(30), |health| health["agents"]["connected"].as_u64() >= Some(1));
        judge
    }

    /// Starts `coordinator serve` without a database or a local agent (anonymous runs
    /// allowed); returns it and the address agents connect to. Agents are the caller's.
    pub fn serve_without_agent(uid_base: u32) -> (Judge, String) {
        let data_dir = tempfile::tempdir().unwrap();
        let child = Command::new(bin_dir().join("coordinator"))
            .args(["serve", "--no-database", "--allow-anonymous", "--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (judge, line) = Judge::attach(child, data_dir, uid_base);
        let agents = line.split("agents connect to ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
        (judge, agents)
    }

    /// Waits for the line where a started coordinator names its API's address, then keeps
    /// draining its stdout (so it never blocks on a full pipe); returns that line too.
    fn attach(mut child: Child, data_dir: tempfile::TempDir, uid_base: u32) -> (Judge, String) {
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (api, line) = loop {
            let line = lines.next().expect("coordinator exited before printing its address").unwrap();
            if let Some(rest) = line.split("API on ").nth(1) {
                break (rest.split_whitespace().next().unwrap().to_string(), line);
            }
        };
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        (Judge { child, api, data_dir, uid_base, stdout }, line)
    }

    /// The first word after `prefix` in a line printed on stdout, waiting for it up to `deadline`.
    pub fn printed_after(&self, prefix: &str, deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            let found = self.stdout.lock().unwrap().iter().find_map(|l| {
                l.split(prefix).nth(1).and_then(|rest| rest.split_whitespace().next()).map(str::to_string)
            });
            if let Some(word) = found {
                return word;
            }
            assert!(start.elapsed() < deadline, "nothing printed after {prefix:?} in {deadline:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.api, path)
    }

    pub fn health(&self) -> serde_json::Value {
        reqwest::blocking::get(self.url("/health")).unwrap().json().unwrap()
    }

    /// Polls /health until `pred` holds; fails the test at the deadline.
    pub fn wait_for(&self, deadline: Duration, pred: impl Fn(&serde_json::Value) -> bool) {
        let start = Instant::now();
        loop {
            if let Ok(r) = reqwest::blocking::get(self.url("/health"))
                && let Ok(h) = r.json::<serde_json::Value>()
                && pred(&h)
            {
                return;
            }
            assert!(start.elapsed() < deadline, "condition on /health not reached in {deadline:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Submits and returns the id.
    pub fn submit(&self, body: &serde_json::Value) -> u64 {
        let r = reqwest::blocking::Client::new().post(self.url("/api/submissions")).json(body).send().unwrap();
        let status = r.status();
        let v: serde_json::Value = r.json().unwrap();
        assert!(status.is_success(), "submit failed: {status} {v}");
        v["id"].as_u64().unwrap()
    }

    /// Waits for a submission to be done and returns it.
    pub fn result(&self, id: u64, deadline: Duration) -> serde_json::Value {
        self.result_as(id, None, deadline)
    }

    /// `result` as the holder of `token` (anonymous without).
    pub fn result_as(&self, id: u64, token: Option<&str>, deadline: Duration) -> serde_json::Value {
        let start = Instant::now();
        let client = reqwest::blocking::Client::new();
        loop {
            let mut req = client.get(self.url(&format!("/api/submissions/{id}")));
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let v: serde_json::Value = req.send().unwrap().json().unwrap();
            if v["status"] == "done" {
                return v;
            }
            assert!(start.elapsed() < deadline, "submission {id} not done in {deadline:?}: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the judge with SIGTERM and waits for it, failing if it takes too long.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    /// `stop`, handing back the data dir for another start.
    pub fn stop_keeping_data(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let status = self.terminate();
        let dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        (status, dir)
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child process, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("coordinator did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Judge {
    fn drop(&mut self) {
        // A failed test must not leave a judge running.
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child process, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// Processes on this host running as one of the uids in `uids`.
pub fn processes_with_uid(uids: std::ops::Range<u32>) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if uid.is_some_and(|u| uids.contains(&u)) {
            found.push(status.lines().next().unwrap_or_default().to_string());
        }
    }
    found
}

/// Run cgroups of the judge left on this host (any hierarchy), named `run-<pid>-<n>`,
/// belonging to processes that are gone.
pub fn leftover_run_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() || p.is_symlink() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("run-").and_then(|r| r.split('-').next())
                && dir.file_name().is_some_and(|n| n == "judge-cluster")
            {
                if !Path::new("/proc").join(pid).exists() {
                    found.push(p);
                }
                continue;
            }
            stack.push(p);
        }
    }
    found
}
