//! A raft cluster of real coordinators (`coordinator serve --peer ...`) and real agents on
//! 127.0.0.1: leader kills under load with a Jepsen-style check of acknowledged ids, a
//! whole-cluster restart, and a node catching up from a snapshot.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use judge_tests::{bin_dir, uid_base};
use serde_json::{Value, json};

struct Node {
    id: u64,
    api: SocketAddr,
    link: SocketAddr,
    raft: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
    /// Started with --join (added to the cluster at run time).
    join: bool,
}

struct Agent {
    child: Child,
    /// Its Prometheus endpoint (jobs judged, by verdict).
    metrics: SocketAddr,
}

/// Coordinators 1..=n and agents, all killed when dropped.
struct Cluster {
    root: tempfile::TempDir,
    nodes: Vec<Node>,
    agents: Vec<Agent>,
    /// Extra arguments of every `serve`.
    extra: Vec<String>,
}

/// Certificate of agent `a` under `root`'s cluster CA (created by the first call).
fn issue_agent_cert(root: &std::path::Path, a: u32) {
    let status = Command::new(bin_dir().join("coordinator"))
        .args(["issue-agent-cert", "--agent-id", &format!("agent{a}"), "--data-dir"])
        .arg(root)
        .arg("--out")
        .arg(root.join(format!("agent{a}/tls")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Shared by every node, so an admin session signed with it is good on any of them.
const JWT_SECRET: &str = "cluster-tests-shared-secret-0123456789abcdef";

fn free_tcp(host: Ipv4Addr) -> u16 {
    TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port()
}

fn free_udp(host: Ipv4Addr) -> u16 {
    UdpSocket::bind((host, 0)).unwrap().local_addr().unwrap().port()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()
}

impl Cluster {
    fn start(nodes: u64, agents: u32, first_uid_slot: u32) -> Cluster {
        Cluster::start_in(tempfile::tempdir().unwrap(), nodes, agents, first_uid_slot)
    }

    /// On `root` (a second start reuses the data of a first).
    fn start_in(root: tempfile::TempDir, nodes: u64, agents: u32, first_uid_slot: u32) -> Cluster {
        Cluster::start_with(root, nodes, agents, first_uid_slot, &[])
    }

    fn start_with(root: tempfile::TempDir, nodes: u64, agents: u32, first_uid_slot: u32, extra: &[&str]) -> Cluster {
        let hosts = vec![Ipv4Addr::LOCALHOST; nodes as usize];
        Cluster::start_on(root, &hosts, agents, first_uid_slot, extra)
    }

    /// Node k on `hosts[k]` (a loopback address of its own lets a test cut it off).
    fn start_on(root: tempfile::TempDir, hosts: &[Ipv4Addr], agents: u32, first_uid_slot: u32, extra: &[&str]) -> Cluster {
        // Creates the cluster CA in root/tls, before the nodes copy it.
        issue_agent_cert(root.path(), 0);
        let ports: Vec<_> = hosts.iter().map(|&h| (h, free_tcp(h), free_udp(h), free_udp(h))).collect();
        let extra = extra.iter().map(|a| a.to_string()).collect();
        let mut cluster = Cluster { root, nodes: Vec::new(), agents: Vec::new(), extra };
        for (host, api, link, raft) in ports {
            cluster.push_node(host, api, link, raft, false);
        }
        for k in 0..cluster.nodes.len() {
            cluster.spawn(k);
        }
        for a in 0..agents {
            cluster.spawn_agent(a, first_uid_slot + a);
        }
        cluster
    }

    /// A node's data dir (with the cluster CA) and addresses; not started.
    fn push_node(&mut self, host: Ipv4Addr, api: u16, link: u16, raft: u16, join: bool) -> usize {
        let id = self.nodes.len() as u64 + 1;
        let dir = self.root.path().join(format!("node{id}"));
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        for f in ["ca.pem", "ca.key"] {
            std::fs::copy(self.root.path().join("tls").join(f), dir.join("tls").join(f)).unwrap();
        }
        self.nodes.push(Node {
            id,
            api: SocketAddr::from((host, api)),
            link: SocketAddr::from((host, link)),
            raft: SocketAddr::from((host, raft)),
            dir,
            child: None,
            join,
        });
        self.nodes.len() - 1
    }

    /// `coordinator cluster ARGS` against node `k`'s API; its stdout if it succeeded.
    fn admin(&self, k: usize, args: &[&str]) -> Result<String, String> {
        let out = Command::new(bin_dir().join("coordinator"))
            .arg("cluster")
            .args(args)
            .args(["--url", &format!("http://{}", self.nodes[k].api)])
            .args(["--jwt-secret", JWT_SECRET])
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if out.status.success() { Ok(text(&out.stdout)) } else { Err(text(&out.stderr)) }
    }

    /// Starts agent `a` (`uid_slot` for its runs' uids); it knows every coordinator and
    /// starts on coordinator `a` (mod the count).
    fn spawn_agent(&mut self, a: u32, uid_slot: u32) {
        issue_agent_cert(self.root.path(), a);
        let mut links: Vec<String> = self.nodes.iter().map(|n| n.link.to_string()).collect();
        let n = links.len();
        links.rotate_left(a as usize % n);
        let dir = self.root.path().join(format!("agent{a}"));
        let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp(Ipv4Addr::LOCALHOST)));
        let child = Command::new(bin_dir().join("coordinator"))
            .args(["agent", "--coordinator", &links.join(","), "--agent-id", &format!("agent{a}")])
            .args(["--server-name", "judge-coordinator", "--slots", "1", "--metrics-listen", &metrics.to_string()])
            .arg("--tls-dir")
            .arg(dir.join("tls"))
            .arg("--work-dir")
            .arg(dir.join("work"))
            .args(["--uid-base", &uid_base(uid_slot).to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.agents.push(Agent { child, metrics });
    }

    /// Stops every process (coordinators with SIGKILL) and hands back the data.
    fn into_root(mut self) -> tempfile::TempDir {
        for agent in &mut self.agents {
            // SAFETY: signalling our own child process, not yet reaped.
            unsafe { libc::kill(agent.child.id() as i32, libc::SIGTERM) };
            agent.child.wait().unwrap();
        }
        self.agents.clear();
        for k in 0..self.nodes.len() {
            self.kill(k);
        }
        std::mem::replace(&mut self.root, tempfile::tempdir().unwrap())
    }

    fn spawn(&mut self, k: usize) {
        let node = &self.nodes[k];
        let mut cmd = Command::new(bin_dir().join("coordinator"));
        cmd.args(["serve", "--no-database", "--node-id", &node.id.to_string()])
            .arg("--data-dir")
            .arg(&node.dir)
            .args(["--listen", &node.api.to_string(), "--agent-listen", &node.link.to_string()])
            .args(["--raft-listen", &node.raft.to_string()])
            // The clients here submit without credentials; access rules are api_access.rs's.
            .arg("--allow-anonymous")
            .args(["--jwt-secret", JWT_SECRET])
            .args(&self.extra);
        if node.join {
            cmd.arg("--join");
        }
        for peer in self.nodes.iter().filter(|p| p.id != node.id) {
            cmd.arg("--peer").arg(format!("{}={},{}", peer.id, peer.raft, peer.api));
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(node.dir.join("log")).unwrap();
        let child = cmd.env("RUST_LOG", "info,raft=warn").stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.nodes[k].child = Some(child);
    }

    /// SIGKILL, and reaped.
    fn kill(&mut self, k: usize) {
        if let Some(mut child) = self.nodes[k].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self, k: usize, path: &str) -> String {
        format!("http://{}{}", self.nodes[k].api, path)
    }

    fn get(&self, k: usize, path: &str) -> Option<Value> {
        let r = client().get(self.url(k, path)).send().ok()?;
        r.status().is_success().then(|| r.json().ok()).flatten()
    }

    /// The node that says it leads the highest term, among those that answer.
    fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|k| self.get(k, "/api/cluster/self").map(|s| (k, s)))
            .filter(|(_, s)| s["role"] == "leader")
            .max_by_key(|(_, s)| s["term"].as_u64())
            .map(|(k, _)| k)
    }

    fn wait_until(&self, what: &str, deadline: Duration, mut cond: impl FnMut(&Cluster) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(start.elapsed() < deadline, "{what}: not within {deadline:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A leader, every node answering, and `agents` registered in the state.
    fn wait_ready(&self, agents: u64) {
        self.wait_until("cluster ready", Duration::from_secs(60), |c| {
            c.leader().is_some()
                && (0..c.nodes.len()).all(|k| {
                    c.get(k, "/health").is_some_and(|h| h["agents"]["connected"].as_u64() == Some(agents))
                })
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                let log = std::fs::read_to_string(node.dir.join("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- node {} log, last lines ---", node.id);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        for agent in &mut self.agents {
            // SAFETY: signalling our own child process, not yet reaped.
            unsafe { libc::kill(agent.child.id() as i32, libc::SIGTERM) };
            let _ = agent.child.wait();
        }
        for k in 0..self.nodes.len() {
            self.kill(k);
        }
    }
}

fn program(tag: &str) -> Value {
    json!({
        "language": "python",
        "source": "print(input())",
        "tests": [{ "input": format!("{tag}\n"), "expectedOutput": format!("{tag}\n") }],
        "limits": { "cpuMs": 2000, "wallMs": 10000, "memoryMb": 128 },
    })
}

/// Submits to node `first`, then the others in turn, until one acknowledges; None if none
/// did within the deadline (the client would report a failure: nothing to check).
fn submit(apis: &[SocketAddr], first: usize, body: &Value) -> Option<u64> {
    let start = Instant::now();
    let client = client();
    let mut k = first;
    while start.elapsed() < Duration::from_secs(30) {
        let answer = client.post(format!("http://{}/api/submissions", apis[k % apis.len()])).json(body).send();
        if let Ok(r) = answer
            && r.status().as_u16() == 201
            && let Ok(v) = r.json::<Value>()
            && let Some(id) = v["id"].as_u64()
        {
            return Some(id);
        }
        k += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Client threads submit programs while the leader is SIGKILLed `kills` times (each
/// restarted at once), at least `total` and on until the last kill is over (so that a kill
/// never falls after the load); then every acknowledged id must be done with the verdict
/// of its own program, the same on every node.
fn leader_kills_lose_and_duplicate_nothing(total: usize, kills: usize) {
    let mut cluster = Cluster::start(3, 2, 0);
    cluster.wait_ready(2);
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    let acked = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let unacked = Arc::new(AtomicUsize::new(0));
    let (submitted, kills_over) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let threads = 4;
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let (apis, acked, unacked) = (apis.clone(), acked.clone(), unacked.clone());
            let (submitted, kills_over) = (submitted.clone(), kills_over.clone());
            std::thread::spawn(move || {
                for i in (t..).step_by(threads).take_while(|&i| i < total || !kills_over.load(Ordering::SeqCst)) {
                    submitted.fetch_add(1, Ordering::SeqCst);
                    let tag = format!("s{i}");
                    match submit(&apis, i, &program(&tag)) {
                        Some(id) => acked.lock().unwrap().push((id, tag)),
                        None => {
                            unacked.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();

    let mut failovers = Vec::new();
    for round in 1..=kills {
        // Spread the kills over the run: the next one after this share of acks.
        let due = total * round / (kills + 1);
        cluster.wait_until("acks before a kill", Duration::from_secs(120), |_| acked.lock().unwrap().len() >= due);
        // The last kill's node may still be rejoining, the others electing.
        let mut leader = None;
        cluster.wait_until("a leader before a kill", Duration::from_secs(30), |c| {
            leader = c.leader();
            leader.is_some()
        });
        let leader = leader.expect("waited for");
        let before = acked.lock().unwrap().len();
        let killed_at = Instant::now();
        cluster.kill(leader);
        cluster.spawn(leader);
        cluster.wait_until("a new ack after the kill", Duration::from_secs(30), |_| acked.lock().unwrap().len() > before);
        failovers.push(killed_at.elapsed());
        eprintln!("kill {round}: node {} was leader; next ack after {:?}", leader + 1, killed_at.elapsed());
        cluster.wait_until("the killed node back", Duration::from_secs(30), |c| c.get(leader, "/api/cluster/self").is_some());
    }
    kills_over.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    let unacked = unacked.load(Ordering::SeqCst);
    let submitted = submitted.load(Ordering::SeqCst);
    let leader = cluster.leader().unwrap();
    cluster.wait_until("every acknowledged submission done", Duration::from_secs(180), |c| {
        acked.iter().all(|(id, _)| c.get(leader, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "done"))
    });
    // Every node applies the same log; wait until all have caught up with the leader.
    let commit = cluster.get(leader, "/api/cluster/self").unwrap()["commit"].as_u64().unwrap();
    cluster.wait_until("every node applied the leader's commit", Duration::from_secs(30), |c| {
        (0..c.nodes.len()).all(|k| c.get(k, "/api/cluster/self").is_some_and(|s| s["applied"].as_u64() >= Some(commit)))
    });

    let mut ids: Vec<u64> = acked.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let duplicated_ids = acked.len() - ids.len();
    let (mut ok, mut lost, mut wrong, mut diverged) = (0, 0, 0, 0);
    for (id, tag) in &acked {
        let views: Vec<Option<Value>> = (0..cluster.nodes.len()).map(|k| cluster.get(k, &format!("/api/submissions/{id}"))).collect();
        let Some(Some(first)) = views.first() else {
            lost += 1;
            continue;
        };
        let verdict_of = |v: &Value| (v["status"].clone(), v["verdict"].clone(), v["tests"][0]["stdout"].clone());
        if views.iter().any(|v| v.as_ref().map(verdict_of) != Some(verdict_of(first))) {
            diverged += 1;
        } else if first["verdict"] == "AC" && first["tests"][0]["stdout"] == format!("{tag}\n") {
            ok += 1;
        } else {
            wrong += 1;
            eprintln!("submission {id} ({tag}): {first}");
        }
    }
    let mut sorted = failovers.clone();
    sorted.sort();
    println!(
        "cluster check: submitted {submitted}, acknowledged {}, not acknowledged {unacked}, done AC with their own output {ok}, \
         lost {lost}, wrong verdict {wrong}, nodes disagreeing {diverged}, ids acknowledged twice {duplicated_ids}; \
         {kills} leader kills, next ack after {sorted:?}",
        acked.len()
    );
    assert_eq!((lost, wrong, diverged, duplicated_ids), (0, 0, 0, 0));
    assert_eq!(ok, acked.len());
    assert!(submitted >= total);
    assert_eq!(acked.len() + unacked, submitted);
    assert!(acked.len() >= submitted * 9 / 10, "most submissions should be acknowledged: {}", acked.len());
}

#[test]
fn leader_kills_under_load_lose_and_duplicate_nothing() {
    leader_kills_lose_and_duplicate_nothing(150, 3);
}

#[test]
#[ignore = "1000 submissions, 40 s in a release build: run with --ignored"]
fn leader_kills_under_load_lose_and_duplicate_nothing_1000() {
    leader_kills_lose_and_duplicate_nothing(1000, 3);
}

#[test]
fn a_whole_cluster_restart_keeps_the_state() {
    let cluster = Cluster::start(3, 1, 2);
    cluster.wait_ready(1);
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    let ids: Vec<u64> = (0..5).map(|i| submit(&apis, i, &program(&format!("r{i}"))).unwrap()).collect();
    let leader = cluster.leader().unwrap();
    cluster.wait_until("judged", Duration::from_secs(60), |c| {
        ids.iter().all(|id| c.get(leader, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "done"))
    });
    // SIGKILL all: the restart must find everything acknowledged in the logs.
    let root = cluster.into_root();
    let cluster = Cluster::start_in(root, 3, 1, 2);
    cluster.wait_ready(1);
    for k in 0..3 {
        for (i, id) in ids.iter().enumerate() {
            cluster.wait_until("replayed", Duration::from_secs(30), |c| c.get(k, &format!("/api/submissions/{id}")).is_some());
            let v = cluster.get(k, &format!("/api/submissions/{id}")).unwrap();
            assert_eq!((v["status"].as_str(), v["verdict"].as_str()), (Some("done"), Some("AC")), "node {} id {id}", k + 1);
            assert_eq!(v["tests"][0]["stdout"], format!("r{i}\n"));
        }
    }
    // New ids continue after the old ones.
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    let next = submit(&apis, 0, &program("after")).unwrap();
    assert!(next > *ids.iter().max().unwrap());
}

#[test]
fn a_job_of_a_killed_agent_runs_elsewhere_with_one_verdict() {
    // One agent first, so the job can only be running on it when it is killed.
    let mut cluster = Cluster::start(3, 1, 3);
    cluster.wait_ready(1);
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    // Long enough to be caught running; the tag shows whose output the verdict carries.
    let mut body = program("k1");
    body["source"] = json!("import time\ntime.sleep(2)\nprint(input())");
    let id = submit(&apis, 0, &body).unwrap();
    let leader = cluster.leader().unwrap();
    cluster.wait_until("running", Duration::from_secs(30), |c| {
        c.get(leader, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "running")
    });
    let mut agent = cluster.agents.remove(0);
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    // Its coordinator notices the silence (link heartbeat, or the lease) and requeues.
    cluster.spawn_agent(1, 4);
    cluster.wait_until("done", Duration::from_secs(60), |c| {
        c.get(leader, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "done")
    });
    for k in 0..3 {
        cluster.wait_until("applied everywhere", Duration::from_secs(10), |c| {
            c.get(k, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "done")
        });
        let v = cluster.get(k, &format!("/api/submissions/{id}")).unwrap();
        assert_eq!(v["verdict"], "AC", "node {}: {v}", k + 1);
        assert_eq!(v["tests"][0]["stdout"], "k1\n");
    }
}

/// The kB of node `k`'s memory locked in RAM (VmLck).
fn locked_kb(cluster: &Cluster, k: usize) -> u64 {
    let pid = cluster.nodes[k].child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmLck:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_coordinator_locks_its_code_in_memory_unless_told_not_to() {
    let cluster = Cluster::start_with(tempfile::tempdir().unwrap(), 1, 0, 0, &[]);
    cluster.wait_ready(0);
    // VmLck counts the locked mappings: at least the binary's code, tens of MB in any build.
    let locked = locked_kb(&cluster, 0);
    assert!(locked > 10_000, "VmLck {locked} kB");
    drop(cluster);
    let cluster = Cluster::start_with(tempfile::tempdir().unwrap(), 1, 0, 0, &["--lock-memory=false"]);
    cluster.wait_ready(0);
    assert_eq!(locked_kb(&cluster, 0), 0);
}

/// Accepted submissions per second and accept latency through a 3-node cluster (no agents:
/// submissions only queue, so judging is not the bottleneck), then the time from a leader
/// kill to the next acknowledgment. Prints the figures; goals: ≥ 2000/s, p99 ≤ 10 ms,
/// failover ≤ 2 s. Build with --release for meaningful numbers.
///
/// Latency is measured twice: at saturation (32 clients, each sending its next request as
/// soon as the last is answered), and open loop at the goal's rate and at twice it (a
/// request every 500 or 250 µs whatever came back, timed from when it was due, so a stall
/// counts for every request it held up). The phases run through snapshots on every node.
#[test]
#[ignore = "benchmark: cargo test --release -p judge-tests --test cluster -- --ignored bench --nocapture"]
fn bench_accept_rate_latency_and_failover() {
    // The queue never drains here (no agents): room for both phases.
    let mut cluster = Cluster::start_with(tempfile::tempdir().unwrap(), 3, 0, 5, &["--max-queued", "100000"]);
    cluster.wait_ready(0);
    // Every node follows the same leader before the load starts (a node that has not
    // heard of it yet answers NotLeader, which the clients would retry).
    cluster.wait_until("one leader known everywhere", Duration::from_secs(30), |c| {
        let leaders: Vec<_> = (0..3).map(|k| c.get(k, "/api/cluster/self").map(|s| s["leader"].clone())).collect();
        leaders.iter().all(|l| l.as_ref().is_some_and(|l| l.is_u64() && Some(l) == leaders[0].as_ref()))
    });
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    let clients = 32;
    // Below the scheduler's queue cap of 10 000.
    let limit = 9_000;
    let accepted = Arc::new(AtomicUsize::new(0));
    // 32 clients, each a connection of its own (one request at a time, a new one as soon
    // as the last is answered), as tasks on one thread: blocking clients cost two threads
    // each and a thread hop per request, which on 2 cores were a third of the CPU.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Built before the clock starts (a client's construction blocks the one thread), and
    // each client's first request (connection set-up) is a warm-up, not counted: the
    // figures are of the steady state.
    let clients: Vec<reqwest::Client> = runtime.block_on(async {
        let clients: Vec<reqwest::Client> =
            (0..clients).map(|_| reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()).collect();
        let body = serde_json::to_vec(&program("w")).unwrap();
        for (c, client) in clients.iter().enumerate() {
            let url = format!("http://{}/api/submissions", apis[c % apis.len()]);
            let r = client.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone()).send().await;
            assert!(r.is_ok_and(|r| r.status().as_u16() == 201), "warm-up request {c} not accepted");
        }
        clients
    });
    let started = Instant::now();
    let mut timed: Vec<(Duration, Duration)> = runtime.block_on(async {
        let workers: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(c, client)| {
                let (apis, accepted, client) = (apis.clone(), accepted.clone(), client.clone());
                tokio::spawn(async move {
                    let body = serde_json::to_vec(&program("b")).unwrap();
                    let url = format!("http://{}/api/submissions", apis[c % apis.len()]);
                    let mut latencies = Vec::new();
                    while accepted.load(Ordering::SeqCst) < limit && started.elapsed() < Duration::from_secs(20) {
                        let t = Instant::now();
                        let at = started.elapsed();
                        let r = client
                            .post(&url)
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        if r.is_ok_and(|r| r.status().as_u16() == 201) {
                            latencies.push((t.elapsed(), at));
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed();
    timed.sort();
    let latencies: Vec<Duration> = timed.iter().map(|&(latency, _)| latency).collect();
    println!(
        "bench: {} accepted in {elapsed:?} by {} clients over 3 nodes: {:.0}/s; accept latency {}",
        latencies.len(),
        clients.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentiles(&latencies)
    );

    // Where the slowest acknowledgments fell, next to what the nodes did meanwhile.
    let slowest: Vec<String> =
        timed.iter().rev().take(12).map(|(latency, at)| format!("{:.1} ms at {:.3} s", latency.as_secs_f64() * 1e3, at.as_secs_f64())).collect();
    println!("bench: slowest acks: {}", slowest.join(", "));
    println!("bench: p99 (ms) of each 100 ms of load: {}", p99_by_window(timed.iter().copied(), 100));
    // Open loop at the goal's rate, then at twice it; beside each, the disk's own fsync
    // latency under the same load (the floor of any durable log on this disk).
    let urls: Vec<String> = apis.iter().map(|a| format!("http://{a}/api/submissions")).collect();
    let mut refused = 0;
    for (rate, what) in [(2000.0, "the goal's rate"), (4000.0, "twice the goal's rate")] {
        let probe = FsyncProbe::start(cluster.root.path());
        let served_before = served_within(&cluster);
        let mut paced = runtime.block_on(open_loop(&clients, &urls, rate, 10_000));
        let served = served_within(&cluster);
        let fsyncs = probe.stop();
        let not_accepted = paced.iter().filter(|(_, _, ok)| !ok).count();
        refused += not_accepted;
        paced.sort();
        let latencies: Vec<Duration> = paced.iter().map(|&(latency, _, _)| latency).collect();
        println!(
            "bench: open loop at {rate:.0}/s ({what}): {} sent, {not_accepted} not accepted; latency from when due {}",
            paced.len(),
            percentiles(&latencies)
        );
        // The coordinators' own count, from request read to response written: what the
        // client sees besides is its host's TCP and scheduling.
        let served: Vec<(&str, u64)> = served.iter().zip(&served_before).map(|((le, n), (_, m))| (le.as_str(), n - m)).collect();
        let total = served.iter().find(|(le, _)| *le == "+Inf").map_or(0, |&(_, n)| n).max(1);
        let within = |le: &str| served.iter().find(|(l, _)| *l == le).map_or(0.0, |&(_, n)| n as f64 * 100.0 / total as f64);
        println!(
            "bench:   as the coordinators timed them: {:.2}% within 5 ms, {:.2}% within 10 ms, {:.2}% within 25 ms",
            within("0.005"),
            within("0.01"),
            within("0.025")
        );
        println!("bench:   the disk meanwhile, a 1 KiB append + fdatasync every 5 ms: {}", percentiles(&fsyncs));
        let windows = p99_by_window(paced.iter().map(|&(latency, at, _)| (latency, at)), 250);
        println!("bench:   p99 (ms) of each 250 ms: {windows}");
    }
    drop(runtime);
    for node in &cluster.nodes {
        let log = std::fs::read_to_string(node.dir.join("log")).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("snapshot written") || l.contains("new segment") || l.contains("slow raft log sync")) {
            println!("bench: node {}: {line}", node.id);
        }
    }
    let start = (std::time::SystemTime::now() - started.elapsed()).duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() % 86_400.0;
    println!(
        "bench: the load started at {:02}:{:02}:{:06.3} UTC (for the log lines)",
        (start / 3600.0) as u64,
        (start % 3600.0 / 60.0) as u64,
        start % 60.0
    );

    assert_eq!(refused, 0, "every paced submission is accepted");

    let mut failovers = Vec::new();
    for _ in 0..3 {
        let leader = cluster.leader().unwrap();
        let others: Vec<SocketAddr> = (0..3).filter(|&k| k != leader).map(|k| apis[k]).collect();
        let killed = Instant::now();
        cluster.kill(leader);
        // Clients of the survivors, as a load balancer would send them.
        let client = client();
        let mut i = 0;
        loop {
            let r = client.post(format!("http://{}/api/submissions", others[i % 2])).json(&program("f")).send();
            if r.is_ok_and(|r| r.status().as_u16() == 201) {
                break;
            }
            i += 1;
            assert!(killed.elapsed() < Duration::from_secs(30), "no ack within 30 s of the kill");
        }
        failovers.push(killed.elapsed());
        cluster.spawn(leader);
        // Caught up before the next kill: the figure is of a leader lost from a healthy
        // cluster, not of a second failure while a node still recovers.
        cluster.wait_until("the killed node caught up", Duration::from_secs(30), |c| {
            let now = c.leader().and_then(|k| c.get(k, "/api/cluster/self"));
            let back = c.get(leader, "/api/cluster/self");
            now.zip(back).is_some_and(|(now, back)| back["applied"].as_u64() >= now["commit"].as_u64())
        });
    }
    println!("bench: leader kill to first new ack: {failovers:?}");
}

/// `count` submissions at `rate` per second over the nodes in turn, each sent when due
/// whatever came back: (latency from when it was due, when it was due, accepted).
async fn open_loop(clients: &[reqwest::Client], urls: &[String], rate: f64, count: usize) -> Vec<(Duration, Duration, bool)> {
    let body = serde_json::to_vec(&program("p")).unwrap();
    let start = tokio::time::Instant::now();
    let mut requests = Vec::with_capacity(count);
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let (client, url, body) = (clients[i % clients.len()].clone(), urls[i % urls.len()].clone(), body.clone());
        requests.push(tokio::spawn(async move {
            let r = client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body).send().await;
            (due.elapsed(), due - start, r.is_ok_and(|r| r.status().as_u16() == 201))
        }));
    }
    let mut all = Vec::with_capacity(count);
    for r in requests {
        all.push(r.await.unwrap());
    }
    all
}

/// Accepted submissions by latency bucket (`le`, cumulative count), summed over the nodes'
/// `judge_http_request_duration_seconds`.
fn served_within(cluster: &Cluster) -> Vec<(String, u64)> {
    let mut buckets: Vec<(String, u64)> = Vec::new();
    for node in &cluster.nodes {
        let text = client().get(format!("http://{}/metrics", node.api)).send().and_then(|r| r.text()).unwrap_or_default();
        let lines = text.lines().filter(|l| {
            l.starts_with("judge_http_request_duration_seconds_bucket{")
                && l.contains(r#"method="POST""#)
                && l.contains(r#"route="/api/submissions""#)
                && l.contains(r#"status="201""#)
        });
        for line in lines {
            let le = line.split(r#"le=""#).nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_owned();
            let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            match buckets.iter_mut().find(|(l, _)| *l == le) {
                Some((_, n)) => *n += count,
                None => buckets.push((le, count)),
            }
        }
    }
    buckets
}

/// p50, p99, p99.9 and max of sorted `latencies`.
fn percentiles(latencies: &[Duration]) -> String {
    let at = |per_mille: usize| latencies[(latencies.len() * per_mille / 1000).min(latencies.len() - 1)];
    format!("p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}", at(500), at(990), at(999), latencies[latencies.len() - 1])
}

/// A thread appending 1 KiB records to a file and fdatasyncing each, every 5 ms: what a
/// durable write costs on this disk while the cluster runs.
struct FsyncProbe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Duration>>,
}

impl FsyncProbe {
    fn start(dir: &std::path::Path) -> FsyncProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let file = std::fs::File::create(dir.join("fsync-probe")).unwrap();
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            use std::io::Write as _;
            let mut file = file;
            let mut latencies = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                let t = Instant::now();
                file.write_all(&[7u8; 1024]).unwrap();
                file.sync_data().unwrap();
                latencies.push(t.elapsed());
                std::thread::sleep(Duration::from_millis(5));
            }
            latencies
        });
        FsyncProbe { stop, thread }
    }

    /// Its latencies, sorted.
    fn stop(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::SeqCst);
        let mut latencies = self.thread.join().unwrap();
        latencies.sort();
        latencies
    }
}

/// The p99 latency of the requests sent in each `window_ms` of a run, in ms: where in the
/// run the tail came from. Samples are (latency, when sent since the start).
fn p99_by_window(samples: impl Iterator<Item = (Duration, Duration)>, window_ms: u128) -> String {
    let mut windows: Vec<Vec<Duration>> = Vec::new();
    for (latency, at) in samples {
        let w = (at.as_millis() / window_ms) as usize;
        windows.resize_with(windows.len().max(w + 1), Vec::new);
        windows[w].push(latency);
    }
    let p99: Vec<String> = windows
        .iter_mut()
        .map(|w| {
            w.sort();
            w.get(w.len() * 99 / 100).map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
        })
        .collect();
    p99.join(" ")
}

#[test]
fn a_node_down_while_the_log_is_compacted_catches_up_from_a_snapshot() {
    // Snapshots every 10 entries: a handful of submissions compacts the log many times.
    let mut cluster = Cluster::start_with(tempfile::tempdir().unwrap(), 3, 1, 5, &["--snapshot-every", "10"]);
    cluster.wait_ready(1);
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    let before = submit(&apis, 0, &program("b0")).unwrap();
    // A follower that the agent does not start on (it starts on node 1).
    let leader = cluster.leader().unwrap();
    let down = [1, 2].into_iter().find(|&k| k != leader).unwrap();
    cluster.wait_until("the follower has the first submission", Duration::from_secs(30), |c| {
        c.get(down, &format!("/api/submissions/{before}")).is_some()
    });
    let applied_when_killed = cluster.get(down, "/api/cluster/self").unwrap()["applied"].as_u64().unwrap();
    cluster.kill(down);

    let up: Vec<SocketAddr> = (0..3).filter(|&k| k != down).map(|k| apis[k]).collect();
    let ids: Vec<u64> = (0..8).map(|i| submit(&up, i, &program(&format!("d{i}"))).unwrap()).collect();
    let live = (0..3).find(|&k| k != down).unwrap();
    cluster.wait_until("judged while the node is down", Duration::from_secs(90), |c| {
        ids.iter().all(|id| c.get(live, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "done"))
    });
    // The live nodes dropped the entries the down node is missing.
    cluster.wait_until("compacted past the down node", Duration::from_secs(30), |c| {
        (0..3).filter(|&k| k != down).all(|k| {
            c.get(k, "/api/cluster/self").is_some_and(|s| s["snapshot_index"].as_u64() > Some(applied_when_killed + 10))
        })
    });

    cluster.spawn(down);
    cluster.wait_until("the node back, from a snapshot", Duration::from_secs(30), |c| {
        c.get(down, "/api/cluster/self").is_some_and(|s| s["installed_snapshot"].as_u64() > Some(applied_when_killed))
    });
    for (i, id) in ids.iter().enumerate() {
        cluster.wait_until("the node has the submission", Duration::from_secs(30), |c| {
            c.get(down, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "done")
        });
        let v = cluster.get(down, &format!("/api/submissions/{id}")).unwrap();
        assert_eq!(v["verdict"], "AC", "{v}");
        assert_eq!(v["tests"][0]["stdout"], format!("d{i}\n"));
    }
    // And it takes part again: a submission through it is judged.
    let after = submit(&apis[down..=down], 0, &program("after")).unwrap();
    assert!(after > *ids.iter().max().unwrap());
    cluster.wait_until("judged after the catch-up", Duration::from_secs(60), |c| {
        c.get(down, &format!("/api/submissions/{after}")).is_some_and(|v| v["status"] == "done" && v["verdict"] == "AC")
    });
}

#[test]
fn a_node_added_at_run_time_catches_up_and_a_removed_one_leaves() {
    let mut cluster = Cluster::start(3, 1, 6);
    cluster.wait_ready(1);
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    let first = submit(&apis, 0, &program("m0")).unwrap();
    let voters = |c: &Cluster, k: usize| c.get(k, "/api/cluster/self").map(|s| s["voters"].clone());

    // Node 4 starts outside the cluster; adding it makes the others its peers.
    let lo = Ipv4Addr::LOCALHOST;
    let new = cluster.push_node(lo, free_tcp(lo), free_udp(lo), free_udp(lo), true);
    cluster.spawn(new);
    cluster.wait_until("node 4 answers", Duration::from_secs(30), |c| c.get(new, "/api/cluster/self").is_some());
    assert_eq!(voters(&cluster, new), Some(json!([])), "a joining node has no membership of its own");
    let (id, raft, api) = (cluster.nodes[new].id.to_string(), cluster.nodes[new].raft.to_string(), cluster.nodes[new].api.to_string());
    // A node that is not running is refused (the quorum would count it).
    let refused = cluster.admin(0, &["add-node", "--id", "9", "--raft", "127.0.0.1:9", "--api", "127.0.0.1:9"]);
    assert!(refused.as_ref().is_err_and(|e| e.contains("409")), "{refused:?}");
    let added = cluster.admin(0, &["add-node", "--id", &id, "--raft", &raft, "--api", &api]);
    assert_eq!(added.as_deref().map(str::trim), Ok("[1,2,3,4]"));
    cluster.wait_until("node 4 caught up from a snapshot", Duration::from_secs(30), |c| {
        c.get(new, "/api/cluster/self").is_some_and(|s| s["installed_snapshot"].as_u64().is_some() && s["voters"] == json!([1, 2, 3, 4]))
    });
    cluster.wait_until("the first submission on node 4", Duration::from_secs(60), |c| {
        c.get(new, &format!("/api/submissions/{first}")).is_some_and(|v| v["status"] == "done" && v["verdict"] == "AC")
    });
    // Judging goes on, through the new node too.
    let second = submit(&[cluster.nodes[new].api], 0, &program("m1")).unwrap();
    cluster.wait_until("judged after the add", Duration::from_secs(60), |c| {
        c.get(new, &format!("/api/submissions/{second}")).is_some_and(|v| v["status"] == "done" && v["verdict"] == "AC")
    });
    let whole = cluster.get(0, "/api/cluster").unwrap();
    assert_eq!(whole["voters"], json!([1, 2, 3, 4]));
    assert_eq!(whole["nodes"].as_array().unwrap().len(), 4, "{whole}");

    // Remove a follower the agent is not on (it is on node 1).
    let leader = cluster.leader().unwrap();
    let gone = [1, 2].into_iter().find(|&k| k != leader).unwrap();
    let gone_id = cluster.nodes[gone].id.to_string();
    let removed = cluster.admin(new, &["remove-node", "--id", &gone_id]);
    let left: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|&i| i != gone as u64 + 1).collect();
    assert_eq!(removed.as_deref().map(str::trim), Ok(serde_json::to_string(&left).unwrap().as_str()));
    cluster.kill(gone);
    let up: Vec<SocketAddr> = (0..4).filter(|&k| k != gone).map(|k| apis.get(k).copied().unwrap_or(cluster.nodes[k].api)).collect();
    let third = submit(&up, 0, &program("m2")).unwrap();
    for k in (0..4).filter(|&k| k != gone) {
        cluster.wait_until("judged after the removal", Duration::from_secs(60), |c| {
            c.get(k, &format!("/api/submissions/{third}")).is_some_and(|v| v["status"] == "done" && v["verdict"] == "AC")
        });
        assert_eq!(voters(&cluster, k), Some(json!(left)), "node {}", k + 1);
    }
    let whole = cluster.get(new, "/api/cluster").unwrap();
    let ids: Vec<u64> = whole["nodes"].as_array().unwrap().iter().filter_map(|n| n["id"].as_u64()).collect();
    assert_eq!(ids, left, "the removed node is no longer listed: {whole}");
}

/// Cuts `host` off from every other address: an nftables table that drops each UDP
/// datagram (raft and agent links are QUIC) to or from it at input, so senders see no
/// error, as on a real network partition. HTTP (TCP) still reaches it, so the test can
/// watch and write to both sides. The table is deleted when this is dropped, also when the
/// test fails; its name carries the process id so concurrent runs keep their own.
struct Partition {
    table: String,
}

const NFT: &str = "/usr/sbin/nft";

impl Partition {
    fn isolate(host: Ipv4Addr) -> Partition {
        let table = format!("judge_partition_{}", std::process::id());
        let script = format!(
            "table inet {table} {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  \
             ip saddr {host} meta l4proto udp drop\n  ip daddr {host} meta l4proto udp drop\n }}\n}}\n"
        );
        let mut nft = match Command::new(NFT).args(["-f", "-"]).stdin(Stdio::piped()).spawn() {
            Ok(nft) => nft,
            Err(e) => panic!("{NFT}: {e} (apt-get install nftables; .ci/run does)"),
        };
        std::io::Write::write_all(&mut nft.stdin.take().unwrap(), script.as_bytes()).unwrap();
        assert!(nft.wait().unwrap().success(), "nft refused the partition's rules (root is needed)");
        Partition { table }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let deleted = Command::new(NFT).args(["delete", "table", "inet", &self.table]).status();
        if !deleted.is_ok_and(|s| s.success()) {
            eprintln!("could not delete nftables table inet {}: delete it by hand", self.table);
        }
    }
}

/// POST a submission to exactly this node (no retry elsewhere): status, Retry-After, time.
fn post_once(api: SocketAddr, body: &Value) -> (u16, Option<String>, Duration) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let start = Instant::now();
    match client.post(format!("http://{api}/api/submissions")).json(body).send() {
        Ok(r) => {
            let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (r.status().as_u16(), retry, start.elapsed())
        }
        Err(e) => panic!("POST to {api}: {e}"),
    }
}

#[test]
fn a_partitioned_leader_stops_acknowledging_and_catches_up_after_healing() {
    // Loopback addresses of their own (all of 127/8 is loopback), per process, so that
    // concurrent runs of this binary on one host never cut each other off.
    let net = (std::process::id() % 200) as u8 + 20;
    let hosts: Vec<Ipv4Addr> = (1..=3).map(|k| Ipv4Addr::new(127, net, 77, k)).collect();
    let cluster = Cluster::start_on(tempfile::tempdir().unwrap(), &hosts, 2, 7, &[]);
    cluster.wait_ready(2);
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    let old = cluster.leader().unwrap();
    let majority: Vec<SocketAddr> = (0..3).filter(|&k| k != old).map(|k| apis[k]).collect();
    let mut acked: Vec<(u64, String)> =
        (0..2).map(|i| (submit(&apis, old, &program(&format!("before{i}"))).unwrap(), format!("before{i}"))).collect();
    let old_term = cluster.get(old, "/api/cluster/self").unwrap()["term"].as_u64().unwrap();

    let cut = Partition::isolate(hosts[old]);
    let cut_at = Instant::now();
    // Clients of the old leader keep writing to it: not one write may be acknowledged.
    let writers: Vec<_> = (0..3)
        .map(|i| {
            let api = apis[old];
            std::thread::spawn(move || post_once(api, &program(&format!("minority{i}"))))
        })
        .collect();
    cluster.wait_until("the old leader steps down", Duration::from_secs(10), |c| {
        c.get(old, "/api/cluster/self").is_some_and(|s| s["role"] != "leader")
    });
    let stepped_down = cut_at.elapsed();
    let mut new_leader = None;
    cluster.wait_until("a new leader in the majority", Duration::from_secs(15), |c| {
        new_leader = (0..3).filter(|&k| k != old).find(|&k| {
            c.get(k, "/api/cluster/self").is_some_and(|s| s["role"] == "leader" && s["term"].as_u64() > Some(old_term))
        });
        new_leader.is_some()
    });
    let elected = cut_at.elapsed();
    let new_leader = new_leader.unwrap();
    // The majority keeps judging.
    for i in 0..3 {
        let tag = format!("during{i}");
        acked.push((submit(&majority, i, &program(&tag)).unwrap(), tag));
    }
    cluster.wait_until("the majority judges", Duration::from_secs(60), |c| {
        acked.iter().all(|(id, _)| c.get(new_leader, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "done"))
    });
    // Reads on the cut-off node: a plain one answers from its stale state (the majority's
    // latest write is unknown there), a consistent one cannot confirm it is current and
    // refuses rather than answer stale.
    let (latest, _) = acked.last().unwrap().clone();
    let stale = client().get(cluster.url(old, &format!("/api/submissions/{latest}"))).send().unwrap();
    assert_eq!(stale.status().as_u16(), 404, "the cut-off node knows a write it cannot have received");
    let consistent = client().get(cluster.url(old, &format!("/api/submissions/{latest}?consistent=true"))).send().unwrap();
    assert_eq!(consistent.status().as_u16(), 503, "a consistent read on the cut-off node was answered");
    assert!(consistent.headers().contains_key("retry-after"));
    for w in writers {
        let (status, retry_after, took) = w.join().unwrap();
        assert_eq!(status, 503, "a write to the partitioned old leader was answered {status} after {took:?}");
        assert!(retry_after.is_some(), "a 503 without Retry-After");
        assert!(took < Duration::from_secs(20), "the refusal took {took:?}");
    }
    // Pre-vote: cut off, the old leader never raised its term, so it cannot depose the
    // new leader when it comes back.
    let isolated = cluster.get(old, "/api/cluster/self").unwrap();
    assert_eq!(isolated["term"].as_u64(), Some(old_term), "the isolated node campaigned: {isolated}");

    drop(cut);
    let healed_at = Instant::now();
    cluster.wait_until("the old leader follows the new one and catches up", Duration::from_secs(30), |c| {
        let (Some(o), Some(n)) = (c.get(old, "/api/cluster/self"), c.get(new_leader, "/api/cluster/self")) else {
            return false;
        };
        o["role"] == "follower"
            && o["term"] == n["term"]
            && o["leader"].as_u64() == Some(new_leader as u64 + 1)
            && o["commit"] == n["commit"]
            && o["applied"] == o["commit"]
    });
    let caught_up = healed_at.elapsed();
    let leader_now = cluster.get(new_leader, "/api/cluster/self").unwrap();
    assert_eq!(leader_now["role"], "leader", "the rejoining node disrupted the leader: {leader_now}");
    // Writes through the old leader are acknowledged again (forwarded to the new one).
    acked.push((submit(&apis[old..=old], 0, &program("after")).unwrap(), "after".into()));
    cluster.wait_until("every acknowledged submission judged on every node", Duration::from_secs(60), |c| {
        acked.iter().all(|(id, _)| (0..3).all(|k| c.get(k, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "done")))
    });
    for (id, tag) in &acked {
        for k in 0..3 {
            let v = cluster.get(k, &format!("/api/submissions/{id}?consistent=true")).unwrap();
            assert_eq!(v["verdict"], "AC", "node {} id {id}: {v}", k + 1);
            assert_eq!(v["tests"][0]["stdout"], format!("{tag}\n"), "node {} id {id}", k + 1);
        }
    }
    println!(
        "partition: old leader node {} stepped down after {stepped_down:?}, node {} elected after {elected:?}, \
         the old leader caught up {caught_up:?} after healing; {} acknowledged, each with one verdict",
        old + 1,
        new_leader + 1,
        acked.len()
    );
}

#[test]
fn a_consistent_read_on_a_follower_sees_a_write_just_acknowledged() {
    let cluster = Cluster::start(3, 0, 5);
    cluster.wait_ready(0);
    let leader = cluster.leader().unwrap();
    let follower = (leader + 1) % 3;
    let client = client();
    let post = |tag: &str| -> u64 {
        let r = client.post(cluster.url(leader, "/api/submissions")).json(&program(tag)).send().unwrap();
        assert_eq!(r.status().as_u16(), 201);
        r.json::<Value>().unwrap()["id"].as_u64().unwrap()
    };
    let (rounds, mut stale_plain) = (20, 0);
    for i in 0..rounds {
        let id = post(&format!("c{i}"));
        let r = client.get(cluster.url(follower, &format!("/api/submissions/{id}?consistent=true"))).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "round {i}: a consistent read on a follower missed submission {id}");
        assert_eq!(r.json::<Value>().unwrap()["id"].as_u64(), Some(id));
        // The same race with a plain (local) read, only counted: it may or may not miss.
        let id = post(&format!("p{i}"));
        let r = client.get(cluster.url(follower, &format!("/api/submissions/{id}"))).send().unwrap();
        stale_plain += usize::from(r.status().as_u16() == 404);
    }
    let r = client.get(cluster.url(follower, "/api/submissions/1?consistent=maybe")).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    println!("consistent reads: {rounds} of {rounds} saw the write; plain follower reads right after a write missed it {stale_plain} of {rounds} times");
}

/// The node agent `agent` heartbeats to: the one whose metrics show a fresh heartbeat.
fn serving_node(cluster: &Cluster, agent: &str) -> Option<usize> {
    let key = format!("judge_agent_heartbeat_age_seconds{{agent=\"{agent}\"}} ");
    (0..cluster.nodes.len()).find(|&k| {
        let text = client().get(cluster.url(k, "/metrics")).send().and_then(|r| r.text()).unwrap_or_default();
        text.lines().filter_map(|l| l.strip_prefix(&key)).any(|v| v.trim().parse::<f64>().is_ok_and(|age| age < 2.5))
    })
}

/// Sum of a counter over its label sets in a Prometheus text page.
fn counter_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_job_outlives_its_coordinator_and_its_first_run_gives_the_verdict() {
    let mut cluster = Cluster::start(3, 1, 9);
    cluster.wait_ready(1);
    let apis: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.api).collect();
    let mut body = program("h1");
    // Long enough to be caught running, and to outlive its coordinator's restart.
    body["source"] = json!("import time\ntime.sleep(4)\nprint(input())");
    let id = submit(&apis, 0, &body).unwrap();
    cluster.wait_until("running", Duration::from_secs(30), |c| {
        (0..3).any(|k| c.get(k, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "running"))
    });
    let mut serving = None;
    cluster.wait_until("the agent's coordinator known", Duration::from_secs(10), |c| {
        serving = serving_node(c, "agent0");
        serving.is_some()
    });
    let serving = serving.unwrap();
    // As systemd would: SIGKILL, restarted at once. Its successor process resets the
    // agent's connection (same QUIC reset key), and the agent moves to the next node.
    cluster.kill(serving);
    cluster.spawn(serving);
    let other = (serving + 1) % 3;
    cluster.wait_until("done", Duration::from_secs(60), |c| {
        c.get(other, &format!("/api/submissions/{id}?consistent=true")).is_some_and(|v| v["status"] == "done")
    });
    for k in 0..3 {
        cluster.wait_until("applied everywhere", Duration::from_secs(30), |c| {
            c.get(k, &format!("/api/submissions/{id}")).is_some_and(|v| v["status"] == "done")
        });
        let v = cluster.get(k, &format!("/api/submissions/{id}")).unwrap();
        assert_eq!(v["verdict"], "AC", "node {}: {v}", k + 1);
        assert_eq!(v["tests"][0]["stdout"], "h1\n");
        // Handed out once: the lease stayed with the agent through its reconnection.
        assert_eq!(v["attempts"], 1, "node {}: {v}", k + 1);
    }
    // One run: the agent finished one job in all (a re-run after a voided lease would be
    // a second, on the only agent there is).
    let metrics = client().get(format!("http://{}/metrics", cluster.agents[0].metrics)).send().unwrap().text().unwrap();
    assert_eq!(counter_sum(&metrics, "judge_agent_jobs_total"), 1.0, "{metrics}");
}
