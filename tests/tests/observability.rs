//! Metrics and dashboards against real processes: `coordinator up` with its local agent,
//! a real Prometheus (Debian's `prometheus` package) scraping both, and every PromQL
//! expression of every Grafana panel evaluated through Prometheus's HTTP API.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use judge_tests::{Judge, uid_base};
use serde_json::{Value, json};

/// Short, so rate() windows hold several samples within seconds of the judging.
const SCRAPE_INTERVAL: &str = "1s";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every dashboard file and the `expr` of every target of every panel (rows included).
fn dashboard_exprs() -> Vec<(String, String, String)> {
    fn walk(file: &str, panels: &[Value], out: &mut Vec<(String, String, String)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((file.to_string(), title.clone(), expr.to_string()));
                }
            }
            walk(file, p["panels"].as_array().map(Vec::as_slice).unwrap_or_default(), out);
        }
    }
    let mut out = Vec::new();
    let dir = repo_root().join("grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        walk(&name, d["panels"].as_array().unwrap(), &mut out);
    }
    out
}

/// Grafana's variables and macros, replaced the way Grafana would for "All agents" and a
/// short range: what is left must be plain PromQL.
fn as_promql(expr: &str) -> String {
    let e = expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$agent", ".*");
    assert!(!e.contains('$'), "unknown Grafana variable in {expr:?}");
    e
}

#[test]
fn dashboards_are_well_formed() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "expected the three dashboards' panels, found {} expressions", exprs.len());
    let provisioning =
        std::fs::read_to_string(repo_root().join("grafana/provisioning/datasources/prometheus.yaml")).unwrap();
    for entry in std::fs::read_dir(repo_root().join("grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "{} has no uid", path.display());
        let mut ids = std::collections::BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            assert!(ids.insert(p["id"].as_u64().unwrap()), "{}: duplicate panel id {}", path.display(), p["id"]);
            if let Some(uid) = p["datasource"]["uid"].as_str() {
                assert!(
                    provisioning.contains(&format!("uid: {uid}")),
                    "{}: datasource {uid} is not provisioned",
                    path.display()
                );
            }
        }
    }
}

/// A Prometheus server of our own: temp config and storage, loopback port, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").split('/').next().unwrap().to_string()
}

impl Prometheus {
    fn start(coordinator: &str, agent: &str) -> Prometheus {
        let binary = Path::new("/usr/bin/prometheus");
        assert!(binary.exists(), "/usr/bin/prometheus is missing: install Debian's `prometheus` (.ci/run does)");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\n\
                 scrape_configs:\n  - job_name: judge-coordinator\n    static_configs:\n      - targets: ['{coordinator}']\n\
                 \x20 - job_name: judge-agent\n    static_configs:\n      - targets: ['{agent}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        let start = Instant::now();
        while !reqwest::blocking::get(format!("{}/-/ready", p.url)).is_ok_and(|r| r.status().is_success()) {
            assert!(start.elapsed() < Duration::from_secs(30), "prometheus not ready in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// An instant query: `Err` with Prometheus's error when the expression is invalid.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let r: Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .map_err(|e| e.to_string())?
            .json()
            .map_err(|e| e.to_string())?;
        if r["status"] != "success" {
            return Err(format!("{}: {}", r["errorType"], r["error"]));
        }
        Ok(r["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

fn promtool_check(name: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: install Debian's `prometheus` (.ci/run does)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics on the {name}'s /metrics:\n{report}"
    );
}

fn submission(source: &str, expected: &str) -> Value {
    json!({
        "language": "c",
        "source": source,
        "tests": [{"input": "1 2\n", "expectedOutput": expected}],
        "limits": {"cpuMs": 300, "wallMs": 2000, "memoryMb": 64},
    })
}

#[test]
fn prometheus_scrapes_both_and_every_dashboard_query_has_data() {
    let judge = Judge::up(uid_base(2), &["--slots", "2"]);
    let coordinator_metrics = judge.url("/metrics");
    let agent_metrics = judge.printed_after("agent metrics on ", Duration::from_secs(30));
    let prometheus = Prometheus::start(&host_port(&coordinator_metrics), &host_port(&agent_metrics));

    let add = "#include <stdio.h>\nint main(){long a,b;scanf(\"%ld %ld\",&a,&b);printf(\"%ld\\n\",a+b);return 0;}";
    let programs = [
        (add, "AC"),
        ("#include <stdio.h>\nint main(){puts(\"4\");return 0;}", "WA"),
        ("int main( {", "CE"),
        ("int main(){volatile unsigned long x=0;for(;;)x++;}", "TLE"),
    ];
    let ids: Vec<u64> = programs.iter().map(|(src, _)| judge.submit(&submission(src, "3\n"))).collect();
    for ((_, verdict), id) in programs.iter().zip(&ids) {
        let r = judge.result(*id, Duration::from_secs(60));
        assert_eq!(r["verdict"], *verdict, "{r}");
    }

    // A statement PostgreSQL refuses: a second user with the same email, which the API
    // answers with 409. The query-error panel must show it.
    let token = std::fs::read_to_string(judge.data_dir.path().join("admin-token")).unwrap();
    let user = json!({"name": "grace", "email": "grace@example.org", "role": "user"});
    let client = reqwest::blocking::Client::new();
    let statuses: Vec<u16> = (0..2)
        .map(|_| client.post(judge.url("/api/users")).bearer_auth(token.trim()).json(&user).send().unwrap().status().as_u16())
        .collect();
    assert_eq!(statuses, [201, 409]);

    // The text format of both endpoints, with histograms filled.
    let text = |url: &str| reqwest::blocking::get(url).unwrap().text().unwrap();
    promtool_check("coordinator", &text(&coordinator_metrics));
    promtool_check("agent", &text(&agent_metrics));

    // Poll until Prometheus has scraped the judged state and every panel has series.
    let exprs = dashboard_exprs();
    let deadline = Instant::now() + Duration::from_secs(45);
    let failures = loop {
        let scraped = prometheus
            .query(
                "sum(judge_submissions_finished_total) >= 4 and sum(judge_agent_jobs_total) >= 4 \
                 and sum(judge_db_query_errors_total{area=\"auth\",class=\"integrity_constraint_violation\"}) == 1",
            )
            .is_ok_and(|r| !r.is_empty());
        let mut failures = Vec::new();
        for (file, title, expr) in &exprs {
            match prometheus.query(&as_promql(expr)) {
                Ok(series) if series.is_empty() => failures.push(format!("{file} / {title}: no series: {expr}")),
                Ok(_) => {}
                Err(e) => failures.push(format!("{file} / {title}: invalid: {expr}: {e}")),
            }
        }
        if scraped && failures.is_empty() {
            break failures;
        }
        if Instant::now() > deadline {
            let mut failures = failures;
            if !scraped {
                failures.push("prometheus never saw the four verdicts and the one refused INSERT".into());
            }
            break failures;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}",
        failures.len(),
        exprs.len(),
        failures.join("\n")
    );

    // The agent dashboard's variable lists the local agent.
    let agents = prometheus.query("count by (agent) (judge_agent_slots)").unwrap();
    assert!(agents.iter().any(|s| s["metric"]["agent"] == "local"), "{agents:?}");

    drop(prometheus);
    assert!(judge.stop().success());
}
