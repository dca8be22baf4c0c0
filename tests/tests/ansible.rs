//! The Ansible deployment (`ansible/`): syntax check, ansible-lint, and a real apply of the
//! whole site playbook to localhost (as coordinator and agent) into a throwaway prefix,
//! then a second run that must change nothing.
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

/// `ok=.. changed=N ...` of the recap line for localhost.
fn changed(output: &str) -> u32 {
    let recap =
        output.lines().rev().find(|l| l.starts_with("localhost") && l.contains("changed=")).unwrap_or_else(|| {
            panic!("no PLAY RECAP for localhost in:\n{output}");
        });
    assert!(recap.contains("failed=0") && recap.contains("unreachable=0"), "{recap}");
    recap.split_whitespace().find_map(|w| w.strip_prefix("changed=")).unwrap().parse().unwrap()
}

#[test]
fn coordinator_and_agent_roles_apply_into_a_prefix_and_are_idempotent() {
    let binary = judge_tests::bin_dir().join("coordinator");
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("root");
    let pki = tmp.path().join("pki");
    let inventory = tmp.path().join("inventory.ini");
    std::fs::write(
        &inventory,
        "[coordinators]\nlocalhost ansible_connection=local\n\n[agents]\nlocalhost ansible_connection=local agent_id=ansible-test\n",
    )
    .unwrap();
    let extra = format!(
        "judge_prefix={} judge_pki_dir={} judge_binary_src={} judge_manage_system=false judge_user=root judge_group=root ansible_become=false ansible_python_interpreter=/usr/bin/python3",
        prefix.display(),
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
    assert!(first > 0, "the first run installed nothing?\n{log}");
    let (second, log) = apply();
    assert_eq!(second, 0, "the second run changed something (not idempotent):\n{log}");

    // What the roles left in the prefix.
    let unit = std::fs::read_to_string(prefix.join("etc/systemd/system/judge-agent.service")).unwrap();
    for line in
        ["Delegate=yes", "User=root", "Restart=always", "LimitNOFILE=", "--agent-id ansible-test", "--metrics-listen"]
    {
        assert!(unit.contains(line), "agent unit lacks {line:?}:\n{unit}");
    }
    let unit = std::fs::read_to_string(prefix.join("etc/systemd/system/judge-coordinator.service")).unwrap();
    for line in ["coordinator serve", "Restart=always", "LimitNOFILE=", "NoNewPrivileges=yes", "ProtectSystem=strict"] {
        assert!(unit.contains(line), "coordinator unit lacks {line:?}:\n{unit}");
    }
    let tls = prefix.join("etc/judge-cluster/agent-tls");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tls.join("agent.key")), 0o600);
    let ca = std::fs::read(prefix.join("var/lib/judge-cluster/coordinator/tls/ca.pem")).unwrap();
    assert_eq!(std::fs::read(tls.join("ca.pem")).unwrap(), ca, "the agent must trust the cluster CA");
    let cert = std::fs::read_to_string(tls.join("agent.pem")).unwrap();
    assert!(cert.contains("BEGIN CERTIFICATE"), "{cert}");
    assert!(prefix.join("usr/local/bin/coordinator").is_file());
    // Production access rules: no anonymous runs, a generated session secret, limits on.
    let env_file = prefix.join("var/lib/judge-cluster/coordinator/coordinator.env");
    assert_eq!(mode(&env_file), 0o600);
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.lines().any(|l| l == "ALLOW_ANONYMOUS=false"), "{env}");
    assert!(env.lines().any(|l| l == "RATE_LIMIT_MAX=1000"), "{env}");
    let secret = env.lines().find_map(|l| l.strip_prefix("JWT_SECRET=")).unwrap_or_default();
    assert_eq!(secret.len(), 64, "a generated 64-digit session secret");

    // The deployed PKI works: the installed coordinator, on its deployed data dir, admits
    // an agent holding the deployed certificate.
    let connected = deployed_agent_connects(&prefix, tmp.path());
    assert!(connected, "the deployed agent did not connect to the deployed coordinator");
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

fn deployed_agent_connects(prefix: &Path, scratch: &Path) -> bool {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let bin = prefix.join("usr/local/bin/coordinator");
    let mut coordinator = Reaped(
        Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0", "--data-dir"])
            .arg(prefix.join("var/lib/judge-cluster/coordinator"))
            // This checks the deployed PKI only; the prefix lives in a private temp dir
            // the embedded PostgreSQL's user could not enter.
            .arg("--no-database")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let line = BufReader::new(coordinator.0.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let word_after = |prefix: &str| line.split(prefix).nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let (api, quic) = (word_after("API on "), word_after("agents connect to "));
    let _agent = Reaped(
        Command::new(&bin)
            .args(["agent", "--coordinator", &quic, "--agent-id", "ansible-test", "--slots", "1"])
            .args(["--uid-base", "64100", "--metrics-listen", "127.0.0.1:0", "--tls-dir"])
            .arg(prefix.join("etc/judge-cluster/agent-tls"))
            .arg("--work-dir")
            .arg(scratch.join("agent-work"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = reqwest::blocking::get(format!("{api}/health"))
            && let Ok(h) = r.json::<serde_json::Value>()
            && h["agents"]["connected"] == 1
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
