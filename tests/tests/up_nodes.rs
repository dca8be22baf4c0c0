//! `coordinator up --nodes 3`, the cluster for trying things out on one host: three
//! supervised coordinators on consecutive API ports and one local agent. A submission to
//! one node is judged and read back on another, and a coordinator that dies is restarted.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use judge_tests::{bin_dir, uid_base};
use serde_json::{Value, json};

/// A base port whose API (TCP), agent (UDP +100) and raft (UDP +200) ports are all free for
/// three nodes, as `up --nodes` lays them out.
fn free_base() -> u16 {
    for _ in 0..200 {
        let base = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if base > 60_000 {
            continue;
        }
        let free = (0..3u16).all(|k| {
            TcpListener::bind(("127.0.0.1", base + k)).is_ok()
                && UdpSocket::bind(("127.0.0.1", base + 100 + k)).is_ok()
                && UdpSocket::bind(("127.0.0.1", base + 200 + k)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no free port range for three nodes");
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn get(url: &str) -> Option<Value> {
    let r = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap().get(url).send().ok()?;
    r.status().is_success().then(|| r.json().ok()).flatten()
}

fn wait_until<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            eprintln!("{what}: {:?}", start.elapsed());
            return v;
        }
        assert!(start.elapsed() < deadline, "{what}: not within {deadline:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pid of the child of `parent` whose command line contains `needle`.
fn child_pid(parent: u32, needle: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // The ppid is the second field after the parenthesised command name.
        let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        (ppid == parent && cmdline.contains(needle)).then_some(pid)
    })
}

#[test]
fn up_nodes_judges_on_any_node_and_restarts_a_dead_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base();
    let mut child = Command::new(bin_dir().join("coordinator"))
        .args(["up", "--nodes", "3", "--listen", &format!("127.0.0.1:{base}"), "--data-dir"])
        .arg(dir.path())
        .args(["--uid-base", &uid_base(0).to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let up = Up(child);
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {});
    let api = |k: u16, path: &str| format!("http://127.0.0.1:{}{path}", base + k);

    // Every node agrees on one leader, and the agent is registered in the shared state.
    let leader = wait_until("one leader seen by all three", Duration::from_secs(60), || {
        let views: Vec<Value> = (0..3).map(|k| get(&api(k, "/api/cluster"))).collect::<Option<_>>()?;
        let leader = views[0]["leader"].as_u64()?;
        let agents = get(&api(0, "/health"))?["agents"]["connected"].as_u64()?;
        (views.iter().all(|v| v["leader"].as_u64() == Some(leader)) && agents >= 1).then_some(leader)
    });
    assert!((1..=3).contains(&leader), "leader id {leader}");

    // Submitted to node 2 (anonymous runs are on for up on loopback), read on node 3.
    let client = reqwest::blocking::Client::new();
    let body = json!({
        "language": "python",
        "source": "print(int(input()) * 2)",
        "tests": [{ "input": "21\n", "expectedOutput": "42\n" }],
    });
    let r = client.post(api(1, "/api/submissions")).json(&body).send().unwrap();
    assert!(r.status().is_success(), "submit to node 2: {}", r.status());
    let id = r.json::<Value>().unwrap()["id"].as_u64().unwrap();
    let done = wait_until("the verdict on node 3", Duration::from_secs(60), || {
        get(&api(2, &format!("/api/submissions/{id}"))).filter(|v| v["status"] == "done")
    });
    assert_eq!(done["verdict"], "AC", "{done}");
    assert_eq!(done["tests"][0]["stdout"], "42\n", "{done}");

    // SIGKILL coordinator 3: the supervisor starts it again, and it catches up.
    let pid = child_pid(up.0.id(), "--node-id=3").expect("coordinator 3 among up's children");
    // SAFETY: a plain kill of a process we found among our child's children.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let restarted = wait_until("coordinator 3 restarted", Duration::from_secs(30), || {
        child_pid(up.0.id(), "--node-id=3").filter(|&p| p != pid)
    });
    assert_ne!(restarted, pid);
    let seen = wait_until("the restarted node serves the old verdict", Duration::from_secs(60), || {
        get(&api(2, &format!("/api/submissions/{id}"))).filter(|v| v["status"] == "done")
    });
    assert_eq!(seen["verdict"], "AC", "{seen}");
}
