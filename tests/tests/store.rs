//! `coordinator up` with its private PostgreSQL: the catalog is served from it, the
//! admin token is created once, and no PostgreSQL process outlives the coordinator —
//! after SIGTERM, and after SIGKILL too.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use judge_tests::{Judge, uid_base};
use serde_json::Value;

/// Processes whose command line mentions `path` (our PostgreSQL runs with `-D <path>/postgres`).
fn processes_mentioning(path: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(path) {
            found.push((pid, cmdline));
        }
    }
    found
}

fn postgres_of(path: &str) -> Vec<(i32, String)> {
    processes_mentioning(path).into_iter().filter(|(_, c)| c.contains("postgres -D")).collect()
}

fn get(judge: &Judge, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::blocking::Client::new().get(judge.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

#[test]
fn up_serves_the_catalog_from_its_private_postgres_and_stops_it() {
    let judge = Judge::up(uid_base(5), &[]);
    let health = judge.health();
    assert_eq!(health["database"]["status"], "ok", "{health}");
    let (status, list) = get(&judge, "/api/algorithms?perPage=100", None);
    assert_eq!(status, 200, "{list}");
    assert!(list["total"].as_u64().unwrap() >= 20, "{list}");
    assert_eq!(list["algorithms"].as_array().unwrap().len() as u64, list["total"].as_u64().unwrap());

    // The admin token: printed, saved 0600, and good for the solution.
    let printed = judge.printed_after("admin token (saved in ", Duration::from_secs(5));
    assert!(printed.ends_with("admin-token):"), "{printed}");
    let file = judge.data_dir.path().join("admin-token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(judge.stdout.lock().unwrap().iter().any(|l| l.ends_with(&token)));
    let (status, two_sum) = get(&judge, "/api/algorithms/two_sum", Some(&token));
    assert_eq!(status, 200);
    assert!(two_sum["solution"]["referenceSolutions"]["python"].is_string(), "{two_sum}");
    let (status, anon) = get(&judge, "/api/algorithms/two_sum", None);
    assert_eq!(status, 200);
    assert!(anon.get("solution").is_none());

    let path = judge.data_dir.path().to_string_lossy().into_owned();
    assert_eq!(postgres_of(&path).len(), 1, "one postmaster for the data dir");
    let (status, dir) = judge.stop_keeping_data();
    assert!(status.success(), "{status}");
    assert!(postgres_of(&path).is_empty(), "PostgreSQL left running: {:?}", postgres_of(&path));

    // A second start on the same data: same catalog, no new admin token.
    let judge = Judge::up_in(dir, uid_base(5), &[]);
    let (_, again) = get(&judge, "/api/algorithms", Some(&token));
    assert_eq!(again["total"], list["total"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!judge.stdout.lock().unwrap().iter().any(|l| l.contains("admin token")), "a second admin token was made");
    assert!(judge.stop().success());
    assert!(postgres_of(&path).is_empty());
}

#[test]
fn a_killed_coordinator_takes_its_postgres_down() {
    let mut judge = Judge::up(uid_base(6), &[]);
    let path = judge.data_dir.path().to_string_lossy().into_owned();
    assert_eq!(postgres_of(&path).len(), 1);
    judge.child.kill().unwrap();
    let _ = judge.child.wait();
    let start = Instant::now();
    while !postgres_of(&path).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "PostgreSQL outlived a SIGKILLed coordinator");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The local agent is in its own process group and notices the lost link on its own;
    // stop it here rather than leave it to the link timeout.
    for (pid, cmdline) in processes_mentioning(&path) {
        if cmdline.contains(" agent ") {
            // SAFETY: plain kill(2) of the agent this test's coordinator started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// `psql` against the private server of `judge` (as its superuser), returning stdout.
fn psql(judge: &Judge, sql: &str) -> String {
    let out = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .arg("-h")
        .arg(judge.data_dir.path().join("postgres-run"))
        .args(["-U", "judge", "-d", "judge", "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// How a `coordinator serve --database-url ...` start ended.
enum Started {
    /// Listening on this API address.
    Up(std::process::Child, String),
    /// Exited; what it wrote on stderr.
    Exited(std::process::ExitStatus, String),
}

fn serve_with_url(url: &str, data: &std::path::Path) -> Started {
    use std::io::{BufRead, BufReader, Read};
    let mut child = std::process::Command::new(judge_tests::bin_dir().join("coordinator"))
        .args(["serve", "--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0", "--database-url", url, "--data-dir"])
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both pipes drained on threads, so the coordinator never blocks on a full one.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("API on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    loop {
        if let Ok(api) = rx.try_recv() {
            return Started::Up(child, api);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Started::Exited(status, errors.join().unwrap());
        }
        assert!(start.elapsed() < Duration::from_secs(30), "coordinator neither listened nor exited");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_coordinator_shares_the_database_by_url_and_a_newer_schema_is_refused() {
    let judge = Judge::up(uid_base(7), &[]);
    let url = format!("host={} user=judge dbname=judge", judge.data_dir.path().join("postgres-run").display());

    // Same database: the catalog is there, no second admin is made.
    let data = tempfile::tempdir().unwrap();
    let (mut second, api) = match serve_with_url(&url, data.path()) {
        Started::Up(child, api) => (child, api),
        Started::Exited(status, stderr) => panic!("second coordinator exited ({status}): {stderr}"),
    };
    let list: Value = reqwest::blocking::get(format!("{api}/api/algorithms")).unwrap().json().unwrap();
    assert!(list["total"].as_u64().unwrap() >= 20, "{list}");
    assert_eq!(psql(&judge, "SELECT count(*) FROM users WHERE role = 'admin'"), "1");
    // SAFETY: signalling our own child process, not yet reaped.
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    assert!(second.wait().unwrap().success());

    // A newer coordinator migrated the database: this one refuses to start, saying why.
    psql(&judge, "INSERT INTO schema_version (version, name, sha256) VALUES (999, 'future', '\\x00')");
    let stderr = match serve_with_url(&url, data.path()) {
        Started::Up(mut child, _) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("started against a newer schema");
        }
        Started::Exited(status, stderr) => {
            assert!(!status.success());
            stderr
        }
    };
    assert!(stderr.contains("newer than this coordinator") && stderr.contains("999"), "{stderr}");
    assert!(judge.stop().success());
}
