//! The Ansible deployment (`ansible/`): syntax check, ansible-lint, and a real apply of the
//! whole site playbook for a 3-coordinator inventory (all on this host, 127.0.0.1-3, each
//! in a throwaway prefix; the first also an agent), then a second run that must change
//! nothing, the rendered configs checked against each other, and the installed cluster
//! started from them. Also the plain systemd units of deploy/, checked by systemd.
//!
//! Needs Debian's `ansible` and `ansible-lint` packages; `.ci/run` installs them.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ansible_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("ansible")
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(ansible_dir())
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install Debian's ansible and ansible-lint (.ci/run does)")
        })
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn playbook_syntax_is_valid() {
    let out = run("ansible-playbook", &["--syntax-check", "-i", "inventory.example.ini", "site.yml"]);
    assert!(out.status.success(), "ansible-playbook --syntax-check:\n{}", text(&out));
}

#[test]
fn ansible_lint_is_clean() {
    let out = run("ansible-lint", &["--offline", "-q"]);
    assert!(out.status.success(), "ansible-lint:\n{}", text(&out));
}

/// `changed=N` of every host's PLAY RECAP line, by host.
fn changed(output: &str) -> Vec<(String, u32)> {
    let recap = output.split("PLAY RECAP").nth(1).unwrap_or_else(|| panic!("no PLAY RECAP in:\n{output}"));
    recap
        .lines()
        .filter(|l| l.contains("changed="))
        .map(|l| {
            assert!(l.contains("failed=0") && l.contains("unreachable=0"), "{l}");
            let host = l.split_whitespace().next().unwrap().to_string();
            let n = l.split_whitespace().find_map(|w| w.strip_prefix("changed=")).unwrap().parse().unwrap();
            (host, n)
        })
        .collect()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Three coordinators (127.0.0.1-3, one install prefix each, the first also an agent) as
/// the inventory of a real cluster: applied twice (the second run must change nothing),
/// the rendered configs must name each other consistently, and the installed binaries,
/// started from those configs, must form one raft cluster that judges a submission.
#[test]
fn a_three_coordinator_cluster_applies_into_prefixes_idempotently_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    // Without its debug info (a quarter of the size): the playbook copies it four times.
    let binary = tmp.path().join("coordinator");
    let out = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&binary)
        .arg(judge_tests::bin_dir().join("coordinator"))
        .output()
        .expect("strip (binutils, installed with gcc)");
    assert!(out.status.success(), "strip: {}", text(&out));
    let prefix = |k: usize| tmp.path().join(format!("c{k}"));
    let pki = tmp.path().join("pki");
    let inventory = tmp.path().join("inventory.ini");
    let mut ini = String::from("[coordinators]\n");
    for k in 1..=3 {
        ini += &format!("c{k} ansible_connection=local ansible_host=127.0.0.{k} judge_prefix={}\n", prefix(k).display());
    }
    ini += "\n[agents]\nc1 agent_id=ansible-test\n";
    std::fs::write(&inventory, ini).unwrap();
    let (api_port, agent_port, raft_port) = (free_tcp_port(), free_udp_port(), free_udp_port());
    let extra = format!(
        "judge_pki_dir={} judge_binary_src={} judge_manage_system=false judge_user=root judge_group=root \
         ansible_become=false ansible_python_interpreter=/usr/bin/python3 \
         coordinator_api_port={api_port} coordinator_agent_port={agent_port} coordinator_raft_port={raft_port}",
        pki.display(),
        binary.display()
    );
    let apply = || {
        let out = run("ansible-playbook", &["-i", inventory.to_str().unwrap(), "-e", &extra, "site.yml"]);
        let log = text(&out);
        assert!(out.status.success(), "ansible-playbook failed:\n{log}");
        (changed(&log), log)
    };

    let (first, log) = apply();
    assert_eq!(first.len(), 3, "{log}");
    assert!(first.iter().all(|(_, n)| *n > 0), "a host got nothing installed? {first:?}\n{log}");
    let (second, log) = apply();
    assert!(second.iter().all(|(_, n)| *n == 0), "the second run changed something (not idempotent): {second:?}\n{log}");

    // The units are deploy/systemd's, as they are.
    let deploy = ansible_dir().parent().unwrap().join("deploy/systemd");
    for (k, unit) in [(1, "judge-agent.service"), (1, "judge-coordinator.service"), (3, "judge-coordinator.service")] {
        assert_eq!(
            std::fs::read_to_string(prefix(k).join("etc/systemd/system").join(unit)).unwrap(),
            std::fs::read_to_string(deploy.join(unit)).unwrap(),
            "c{k}'s {unit} is not deploy/systemd's"
        );
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let tls = prefix(1).join("etc/judge-cluster/agent-tls");
    assert_eq!(mode(&tls.join("agent.key")), 0o600);
    assert!(prefix(2).join("usr/local/bin/coordinator").is_file());

    // One cluster CA everywhere; the agent trusts it.
    let ca = |k: usize, file: &str| std::fs::read(prefix(k).join("var/lib/judge-cluster/coordinator/tls").join(file)).unwrap();
    for k in 2..=3 {
        assert_eq!(ca(k, "ca.pem"), ca(1, "ca.pem"), "c{k} has another CA");
        assert_eq!(ca(k, "ca.key"), ca(1, "ca.key"), "c{k} cannot issue its raft peer certificate");
    }
    assert_eq!(std::fs::read(tls.join("ca.pem")).unwrap(), ca(1, "ca.pem"), "the agent must trust the cluster CA");

    // Secrets: root-only, one generated session secret shared by all.
    let secret = |k: usize| {
        let env_file = prefix(k).join("etc/judge-cluster/coordinator.env");
        assert_eq!(mode(&env_file), 0o600);
        let env = std::fs::read_to_string(&env_file).unwrap();
        let secret = env.lines().find_map(|l| l.strip_prefix("JWT_SECRET=")).unwrap_or_default().to_string();
        assert_eq!(secret.len(), 64, "a generated 64-digit session secret: {env}");
        assert!(!env.contains("DATABASE_URL"), "no postgres host, no database: {env}");
        secret
    };
    assert!(secret(2) == secret(1) && secret(3) == secret(1), "every coordinator needs the same session secret");

    // The configs name each other consistently: distinct ids, and each peer entry is the
    // id, raft address and API address that peer's own config says.
    let configs: Vec<toml::Table> = (1..=3)
        .map(|k| std::fs::read_to_string(prefix(k).join("etc/judge-cluster/coordinator.toml")).unwrap().parse().unwrap())
        .collect();
    let own = |c: &toml::Table| {
        let s = |key: &str| c[key].as_str().unwrap().to_string();
        format!("{}={},{}", c["node-id"].as_integer().unwrap(), s("raft-listen"), s("listen"))
    };
    let ids: std::collections::BTreeSet<i64> = configs.iter().map(|c| c["node-id"].as_integer().unwrap()).collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    for (k, c) in configs.iter().enumerate() {
        let mut peers: Vec<String> =
            c["peer"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
        peers.sort();
        let mut others: Vec<String> = configs.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, o)| own(o)).collect();
        others.sort();
        assert_eq!(peers, others, "c{}'s peers", k + 1);
        assert_eq!(c["listen"].as_str().unwrap(), format!("127.0.0.{}:{api_port}", k + 1));
        assert_eq!(c["allow-anonymous"].as_bool(), Some(false), "deployed coordinators refuse anonymous runs");
        assert_eq!(c["rate-limit-max"].as_integer(), Some(1000));
        assert_eq!(c["no-database"].as_bool(), Some(true));
    }
    let agent_env = std::fs::read_to_string(prefix(1).join("etc/judge-cluster/agent.env")).unwrap();
    let agent_args: Vec<String> = agent_env
        .lines()
        .find_map(|l| l.strip_prefix("JUDGE_AGENT_ARGS="))
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let all = format!("127.0.0.1:{agent_port},127.0.0.2:{agent_port},127.0.0.3:{agent_port}");
    assert!(agent_args.windows(2).any(|w| w[0] == "--coordinator" && w[1] == all), "{agent_env}");

    deployed_cluster_judges(&prefix, &agent_args, tmp.path(), api_port);
}

/// Kills and reaps a child we started, however the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn get(url: &str) -> Option<serde_json::Value> {
    reqwest::blocking::get(url).ok()?.json().ok()
}

/// Starts what the roles installed, as the units would (`serve --config`, the agent with
/// agent.env's flags) with the paths moved into the prefixes, and judges one submission
/// through a follower.
fn deployed_cluster_judges(prefix: &dyn Fn(usize) -> PathBuf, agent_args: &[String], scratch: &Path, api_port: u16) {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let coordinators: Vec<Reaped> = (1..=3)
        .map(|k| {
            Reaped(
                Command::new(prefix(k).join("usr/local/bin/coordinator"))
                    .arg("serve")
                    .arg("--config")
                    .arg(prefix(k).join("etc/judge-cluster/coordinator.toml"))
                    // The command line over the file: the prefix's data dir, and anonymous
                    // runs so the test needs no user database.
                    .arg("--data-dir")
                    .arg(prefix(k).join("var/lib/judge-cluster/coordinator"))
                    .arg("--allow-anonymous")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let mut args = agent_args.to_vec();
    let mut set = |flag: &str, value: String| {
        let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("agent.env lacks {flag}"));
        args[at + 1] = value;
    };
    set("--tls-dir", prefix(1).join("etc/judge-cluster/agent-tls").display().to_string());
    set("--work-dir", scratch.join("agent-work").display().to_string());
    set("--uid-base", judge_tests::uid_base(0).to_string());
    set("--metrics-listen", "127.0.0.1:0".into());
    let _agent = Reaped(
        Command::new(prefix(1).join("usr/local/bin/coordinator"))
            .arg("agent")
            .args(&args)
            .args(["--slots", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = |k: usize| format!("http://127.0.0.{k}:{api_port}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        let cluster = get(&format!("{}/api/cluster", api(3)));
        let agents = get(&format!("{}/health", api(2))).and_then(|h| h["agents"]["connected"].as_u64());
        let formed = cluster.as_ref().is_some_and(|c| {
            c["leader"].as_u64().is_some_and(|l| (1..=3).contains(&l))
                && c["nodes"].as_array().is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["reachable"] == true))
        });
        if formed && agents == Some(1) {
            break cluster;
        }
        if Instant::now() > deadline {
            panic!("no 3-node cluster with its agent in 60 s: /api/cluster {cluster:?}, agents {agents:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let ready = ready.unwrap();
    let leader = ready["leader"].as_u64().unwrap() as usize;
    let follower = (1..=3).find(|k| *k != leader).unwrap();

    let add = "#include <stdio.h>\nint main(){long a,b;scanf(\"%ld %ld\",&a,&b);printf(\"%ld\\n\",a+b);return 0;}";
    let body = serde_json::json!({
        "language": "c", "source": add,
        "tests": [{"input": "1 2\n", "expectedOutput": "3\n"}],
        "limits": {"cpuMs": 1000, "wallMs": 3000, "memoryMb": 64},
    });
    let r = reqwest::blocking::Client::new().post(format!("{}/api/submissions", api(follower))).json(&body).send().unwrap();
    let status = r.status();
    let v: serde_json::Value = r.json().unwrap();
    assert!(status.is_success(), "submission through follower {follower}: {status} {v}");
    let id = v["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = get(&format!("{}/api/submissions/{id}", api(follower)));
        if s.as_ref().is_some_and(|s| s["status"] == "done") {
            assert_eq!(s.as_ref().unwrap()["verdict"], "AC", "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "submission {id} not judged in 60 s: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(coordinators);
}

/// The plain units of deploy/systemd as systemd itself reads them: no unknown key, no
/// value it would ignore.
#[test]
fn deploy_units_pass_systemd_analyze_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = ansible_dir().parent().unwrap().join("deploy/systemd");
    let binary = judge_tests::bin_dir().join("coordinator");
    let mut units = Vec::new();
    for unit in ["judge-coordinator.service", "judge-agent.service"] {
        // verify wants ExecStart's binary to exist: the one just built stands in.
        let text = std::fs::read_to_string(deploy.join(unit)).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/coordinator "), "{unit}");
        let path = tmp.path().join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/coordinator", binary.to_str().unwrap())).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze").arg("verify").args(&units).output().unwrap_or_else(|e| {
        panic!("cannot run systemd-analyze ({e}): install Debian's systemd package (.ci/run does)")
    });
    let report = text(&out);
    assert!(out.status.success() && report.trim().is_empty(), "systemd-analyze verify:\n{report}");
}
