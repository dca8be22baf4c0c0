//! The sandbox on this host's real cgroups and namespaces (needs root, as CI has).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use sandbox_agent::sandbox::{Profile, Exit, RunLimits, RunOutcome, RunSpec, Sandbox};

struct Fixture {
    // Dropped first: it unmounts its template before the directory goes.
    sandbox: Sandbox,
    _dir: tempfile::TempDir,
    box_dir: std::path::PathBuf,
    stdin: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path(), &rootfs::Spec::builtin().unwrap()).unwrap();
    let box_dir = dir.path().join("box");
    std::fs::create_dir(&box_dir).unwrap();
    let stdin = dir.path().join("input");
    std::fs::write(&stdin, "").unwrap();
    Fixture { sandbox, _dir: dir, box_dir, stdin }
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

/// A run of `argv` in the fixture's box, as the judged program, unpinned.
fn spec<'a>(f: &'a Fixture, argv: &'a [String], env: &'a BTreeMap<String, String>, limits: RunLimits) -> RunSpec<'a> {
    RunSpec {
        argv,
        env,
        box_dir: &f.box_dir,
        box_writable: false,
        stdin: &f.stdin,
        limits,
        uid: 60000,
        gid: 60000,
        profile: Profile::Program,
        pin_cpu: None,
    }
}

fn run(f: &Fixture, argv: &[&str], limits: RunLimits) -> RunOutcome {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let env = env();
    f.sandbox.run(&spec(f, &argv, &env, limits)).unwrap()
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
    assert!(o.setup > Duration::ZERO && o.setup < o.wall, "{o:?}");
    assert!(o.voluntary_switches + o.involuntary_switches > 0, "{o:?}");
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

fn with(f: impl FnOnce(&mut RunLimits)) -> RunLimits {
    let mut l = limits();
    f(&mut l);
    l
}

#[test]
fn cpu_limit_stops_a_busy_loop_near_the_limit() {
    let f = fixture();
    let o = run(&f, &["/bin/sh", "-c", "while :; do :; done"], with(|l| l.cpu = Duration::from_millis(500)));
    assert_eq!(o.limit, Some(protocol::LimitHit::Cpu), "{o:?}");
    assert_eq!(o.exit, Exit::Signal(libc::SIGKILL));
    assert!(o.cpu >= Duration::from_millis(500) && o.cpu < Duration::from_millis(700), "{o:?}");
}

#[test]
fn wall_limit_stops_a_sleeper() {
    let f = fixture();
    let o = run(&f, &["/bin/sleep", "30"], with(|l| l.wall = Duration::from_millis(300)));
    assert_eq!(o.limit, Some(protocol::LimitHit::Wall), "{o:?}");
    assert!(o.wall >= Duration::from_millis(300) && o.wall < Duration::from_secs(2), "{o:?}");
    assert!(o.cpu < Duration::from_millis(100));
}

#[test]
fn memory_limit_is_an_oom_kill() {
    let f = fixture();
    let o = run(
        &f,
        &["/usr/bin/python3", "-c", "b = bytearray(512 << 20); print(len(b))"],
        with(|l| l.memory_bytes = 64 << 20),
    );
    assert_eq!(o.limit, Some(protocol::LimitHit::Memory), "{o:?}");
    assert_eq!(o.exit, Exit::Signal(libc::SIGKILL));
    assert!(o.peak_memory_bytes <= 64 << 20, "{o:?}");
    assert!(o.peak_memory_bytes > 32 << 20, "{o:?}");
}

#[test]
fn endless_output_is_stopped_and_capped() {
    let f = fixture();
    let o = run(&f, &["/usr/bin/yes"], with(|l| l.output_bytes = 64 << 10));
    assert_eq!(o.limit, Some(protocol::LimitHit::Output), "{o:?}");
    assert_eq!(o.stdout.len(), 64 << 10);
    assert!(o.stdout.starts_with(b"y\ny\n"));
    assert!(o.stdout_bytes > 64 << 10, "{o:?}");
}

#[test]
fn fork_bomb_meets_the_pids_limit() {
    let f = fixture();
    let o = run(
        &f,
        &["/bin/sh", "-c", "n=0; for i in $(seq 1000); do sleep 30 & n=$((n+1)); done; echo $n; exit 3"],
        with(|l| {
            l.max_processes = 32;
            l.wall = Duration::from_secs(10);
        }),
    );
    assert!(o.pids_limit_hits > 0, "{o:?}");
    // The background sleepers died with the namespace: the run ended long before 30 s.
    assert!(o.wall < Duration::from_secs(10), "{o:?}");
}

#[test]
fn no_network_and_a_read_only_root() {
    let f = fixture();
    let o = sh(
        &f,
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; \
         cat /sys/class/net/lo/operstate 2>/dev/null; \
         touch /usr/x 2>/dev/null && echo usr-writable; touch /box/x 2>/dev/null && echo box-writable; \
         touch /x 2>/dev/null && echo root-writable; touch /tmp/x && echo tmp-ok; \
         ls /home /root /work 2>/dev/null | wc -l; \
         python3 -c 'import socket; s=socket.socket(); s.settimeout(1); s.connect((\"1.1.1.1\", 80))' 2>/dev/null || echo no-connect",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out, "lo\ntmp-ok\n0\nno-connect\n", "{o:?}");
}

#[test]
fn processes_run_as_their_own_init_tree() {
    let f = fixture();
    let o = sh(&f, "echo $$; ps -e >/dev/null 2>&1; ls /proc | grep -c '^[0-9]'");
    let out = String::from_utf8_lossy(&o.stdout);
    let mut lines = out.lines();
    // The shell is pid 2: init is pid 1 and nothing of the host is visible.
    assert_eq!(lines.next(), Some("2"), "{o:?}");
}

#[test]
fn stdin_is_the_given_file() {
    let f = fixture();
    std::fs::write(&f.stdin, "3 4\n").unwrap();
    let o = sh(&f, "read a b; echo $((a+b))");
    assert_eq!(o.stdout, b"7\n");
}

#[test]
fn missing_program_is_a_setup_error() {
    let f = fixture();
    let argv = vec!["/nonexistent".to_string()];
    let env = env();
    let spec = spec(&f, &argv, &env, limits());
    let err = f.sandbox.run(&spec).unwrap_err().to_string();
    assert!(err.contains("executing /nonexistent") && err.contains("No such file"), "{err}");
}

#[test]
fn steps_stream_while_the_program_runs_with_cgroup_readings() {
    use sandbox_agent::sandbox::{Observer, StepLimits};
    let f = fixture();
    let argv: Vec<String> = [
        "/usr/bin/python3",
        "-c",
        "import os, time\nfor i in range(5):\n    os.write(3, b'{\"i\": %d}\\n' % i)\ntime.sleep(0.3)\nos.write(3, b'x' * 5000 + b'\\n')\nos.write(3, b'last')\nprint('done')",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let env = env();
    let spec = spec(&f, &argv, &env, limits());
    let mut got: Vec<(String, Duration, u64, Duration)> = Vec::new();
    let mut sink = |e: sandbox_agent::sandbox::StepEvent<'_>| {
        got.push((String::from_utf8_lossy(e.line).into_owned(), e.cpu, e.memory_bytes, e.elapsed));
    };
    let limits = StepLimits { max_steps: 100, max_line_bytes: 1000, max_total_bytes: 1 << 20 };
    let o = f.sandbox.run_observed(&spec, Observer { steps: Some((limits, &mut sink)), cancel: None }).unwrap();
    assert_eq!(o.exit, Exit::Code(0), "{o:?}");
    assert_eq!(o.stdout, b"done\n");
    let lines: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(lines, ["{\"i\": 0}", "{\"i\": 1}", "{\"i\": 2}", "{\"i\": 3}", "{\"i\": 4}", "last"]);
    assert_eq!((o.steps, o.steps_dropped), (6, 1));
    // The first steps were seen while the program still slept: long before its end.
    assert!(got[0].3 + Duration::from_millis(250) < o.wall, "{:?} vs {:?}", got[0].3, o.wall);
    assert!(got[0].1 > Duration::ZERO && got[0].2 > 0);
}

#[test]
fn cancel_stops_a_run_quickly() {
    use sandbox_agent::sandbox::{Observer, SandboxError};
    use std::sync::atomic::{AtomicBool, Ordering};
    let f = fixture();
    let cancel = AtomicBool::new(false);
    let argv: Vec<String> = ["/bin/sleep", "30"].iter().map(|s| s.to_string()).collect();
    let env = env();
    let spec = spec(&f, &argv, &env, with(|l| l.wall = Duration::from_secs(20)));
    std::thread::scope(|s| {
        let started = std::time::Instant::now();
        let h = s.spawn(|| f.sandbox.run_observed(&spec, Observer { steps: None, cancel: Some(&cancel) }));
        std::thread::sleep(Duration::from_millis(200));
        let asked = std::time::Instant::now();
        cancel.store(true, Ordering::SeqCst);
        let r = h.join().unwrap();
        assert!(matches!(r, Err(SandboxError::Cancelled)), "{r:?}");
        assert!(asked.elapsed() < Duration::from_millis(100), "{:?}", asked.elapsed());
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn dev_shm_and_tmp_are_fresh_and_private_to_each_run() {
    let f = fixture();
    let o = sh(&f, "echo secret > /dev/shm/x && echo secret > /tmp/y && ls /dev/shm /tmp");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "/dev/shm:\nx\n\n/tmp:\ny\n", "{o:?}");
    let o = sh(&f, "ls -A /dev/shm /tmp; ls /dev");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "/dev/shm:\n\n/tmp:\nfd\nfull\nnull\nrandom\nshm\nstderr\nstdin\nstdout\nurandom\nzero\n",
        "{o:?}"
    );
}

#[test]
fn pinned_runs_stay_on_their_cpu() {
    let f = fixture();
    let cpus = f.sandbox.pinnable_cpus();
    assert!(!cpus.is_empty(), "this host has a cpuset controller: pinning must be available");
    let cpu = *cpus.last().unwrap();
    let argv: Vec<String> = [
        "/usr/bin/python3",
        "-c",
        "import os\nprint(sorted(os.sched_getaffinity(0)))\ntry:\n    os.sched_setaffinity(0, set(range(os.cpu_count())))\nexcept OSError as e:\n    print('refused')\nprint(sorted(os.sched_getaffinity(0)))",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let env = env();
    let spec = RunSpec { pin_cpu: Some(cpu), ..spec(&f, &argv, &env, limits()) };
    let o = f.sandbox.run(&spec).unwrap();
    // Widening the affinity is either refused or silently clipped to the cpuset.
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().filter(|l| *l != "refused").collect();
    assert_eq!(lines, [format!("[{cpu}]"), format!("[{cpu}]")], "{o:?}");
}

#[test]
fn a_reused_network_namespace_keeps_nothing_of_the_previous_run() {
    let f = fixture();
    // The first run leaves a listening abstract socket behind as it exits; the next run
    // (same pooled namespace: runs here are sequential) finds the name free again.
    let script = "import socket\ns = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
                  try:\n    s.connect('\\0judge-netns-probe'); print('reached')\nexcept OSError:\n    print('nothing')\n\
                  s2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s2.bind('\\0judge-netns-probe'); s2.listen(1)";
    for _ in 0..3 {
        let o = run(&f, &["/usr/bin/python3", "-c", script], limits());
        assert_eq!(o.stdout, b"nothing\n", "{o:?}");
    }
}

#[test]
fn a_prepared_image_can_be_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    for d in ["box", "tmp", "proc", "dev", "usr", "etc"] {
        std::fs::create_dir_all(image.join(d)).unwrap();
    }
    for (link, target) in [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        std::os::unix::fs::symlink(target, image.join(link)).unwrap();
    }
    std::fs::write(image.join("etc/motd"), "from the image\n").unwrap();
    let mut spec = rootfs::Spec::builtin().unwrap();
    spec.mounts = rootfs::Mounts {
        image: Some(image.clone()),
        bind: vec![rootfs::Bind { source: "/usr".into(), target: None, optional: false, probe: None }],
        symlink: vec![],
    };
    let sandbox = Sandbox::new(dir.path(), &spec).unwrap();
    let f = Fixture { sandbox, _dir: tempfile::tempdir().unwrap(), box_dir: image.join("box"), stdin: image.join("etc/motd") };
    let o = sh(&f, "cat /etc/motd; ls /; touch /etc/x 2>/dev/null || echo read-only");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from the image\nbin\nbox\ndev\netc\nlib\nlib64\nproc\ntmp\nusr\nread-only\n", "{o:?}");

    // An image without the mountpoints is refused with the reason.
    std::fs::remove_dir(image.join("proc")).unwrap();
    let err = Sandbox::new(dir.path(), &spec).err().unwrap().to_string();
    assert!(err.contains("lacks /proc"), "{err}");
}

/// Runs reuse one cgroup on a v1 host, and none sees the counters of the runs before:
/// an OOM kill, refused forks, CPU time and memory all start from zero again.
#[test]
fn a_reused_cgroup_reports_nothing_of_earlier_runs() {
    let f = fixture();
    let oom = run(
        &f,
        &["/usr/bin/python3", "-c", "b = bytearray(512 << 20)"],
        with(|l| l.memory_bytes = 64 << 20),
    );
    assert_eq!(oom.limit, Some(protocol::LimitHit::Memory), "{oom:?}");
    let forks = run(
        &f,
        &["/bin/sh", "-c", "for i in $(seq 100); do sleep 30 & done; exit 3"],
        with(|l| l.max_processes = 8),
    );
    assert!(forks.pids_limit_hits > 0, "{forks:?}");
    let busy = run(&f, &["/bin/sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"], limits());
    assert!(busy.cpu > Duration::from_millis(100), "{busy:?}");
    // Enough memory that its peak is clearly that run's own.
    let big = run(&f, &["/usr/bin/python3", "-c", "b = bytearray(96 << 20); b[::4096] = b'x' * len(b[::4096])"], limits());
    assert_eq!(big.exit, Exit::Code(0), "{big:?}");
    assert!(big.peak_memory_bytes > 96 << 20, "{big:?}");

    let o = run(&f, &["/bin/true"], limits());
    assert_eq!(o.exit, Exit::Code(0), "{o:?}");
    assert_eq!(o.limit, None, "{o:?}");
    assert_eq!(o.pids_limit_hits, 0, "{o:?}");
    assert!(o.cpu < Duration::from_millis(50), "{o:?}");
    assert!(o.peak_memory_bytes > 0 && o.peak_memory_bytes < 8 << 20, "{o:?}");
    // Tighter limits than the group had before hold for the next run.
    let o = run(&f, &["/usr/bin/python3", "-c", "b = bytearray(256 << 20)"], with(|l| l.memory_bytes = 48 << 20));
    assert_eq!(o.limit, Some(protocol::LimitHit::Memory), "{o:?}");
    assert!(o.peak_memory_bytes <= 48 << 20, "{o:?}");
    if sandbox_agent::sandbox::cgroup::CgroupManager::detect().is_ok_and(|m| !m.is_v2()) {
        assert_eq!(f.sandbox.idle_cgroup_count(), 1, "sequential runs should share one cgroup");
    }
}

/// The run's mount table is the template's and its own mounts: none of the host's.
/// (A bind mount's root field still names its source's path within its filesystem, as
/// before; the agent's real /box is a tmpfs of its own, whose root is "/".)
#[test]
fn the_mount_table_shows_nothing_of_the_host() {
    let f = fixture();
    let o = sh(&f, "cat /proc/self/mountinfo");
    let table = String::from_utf8_lossy(&o.stdout);
    eprintln!("{table}");
    assert_eq!(o.exit, Exit::Code(0), "{o:?}");
    let host_dir = f.box_dir.parent().unwrap().to_string_lossy().into_owned();
    let points: Vec<&str> = table.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    for wanted in ["/", "/box", "/tmp", "/dev/shm", "/proc", "/usr"] {
        assert!(points.contains(&wanted), "{wanted} is not mounted: {table}");
    }
    for p in &points {
        assert!(!p.starts_with(&host_dir) && !p.starts_with("/sys") && !p.starts_with("/run"), "host mount {p}: {table}");
    }
    // Each mount's root within its filesystem says nothing more than where the run sees
    // it: a bind from another host path (the rustup toolchain as /opt/rust) would name it.
    // (This fixture's /box is a host directory; the agent's is a tmpfs of the job's.)
    for line in table.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (root, point) = (fields[3], fields[4]);
        if point == "/box" {
            continue;
        }
        assert!(root == "/" || root == point, "mount root {root} at {point} names a host path: {line}");
        assert!(!line.contains("rustup") && !line.contains("/root/"), "a host path in {line}");
    }
}

/// Started as an unprivileged user, the agent refuses at once and says what this host
/// lacks for a non-root agent, rather than judging with limits it cannot enforce.
#[test]
fn a_non_root_agent_refuses_and_says_why() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandbox-agent"))
        .args(["--tls-dir", "/nonexistent", "--agent-id", "unprivileged", "--metrics-listen", "127.0.0.1:0", "--work-dir"])
        .arg(dir.path().join("work"))
        .env("RUST_BACKTRACE", "0")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("runs as uid 65534, not root, and cannot judge"), "{err}");
    assert!(err.contains("(unprivileged user namespaces are allowed here)"), "{err}");
    // Nobody delegated cgroups to uid 65534 on the test host.
    assert!(err.contains("cgroups are not delegated to uid 65534 (cannot write /sys/fs/cgroup/"), "{err}");
    assert!(!dir.path().join("work").exists(), "it created its work dir before refusing");
}

/// A program that leaves everything it can behind (`leave`), or looks for anything an
/// earlier run left (`look`): files in /tmp, /dev/shm and /box, SysV shared memory,
/// semaphores and message queues, a POSIX message queue, an abstract unix socket, a
/// double-forked daemon burning CPU, memory use; and its own pid.
const LEFTOVERS_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <mqueue.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static int abstract_socket(int bind_it) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, "\0judge-leftover", 15);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + 15;
    if (bind_it) return bind(s, (struct sockaddr *)&a, len) == 0 && listen(s, 1) == 0;
    return connect(s, (struct sockaddr *)&a, len) == 0;
}
int main(int argc, char **argv) {
    printf("pid %d\n", getpid());
    if (strcmp(argv[1], "leave") == 0) {
        FILE *f;
        if ((f = fopen("/tmp/left", "w"))) { fputs("x", f); fclose(f); } else puts("no /tmp");
        if ((f = fopen("/dev/shm/left", "w"))) { fputs("x", f); fclose(f); } else puts("no /dev/shm");
        if ((f = fopen("/box/left", "w"))) { fputs("x", f); fclose(f); } else puts("no /box");
        if (shmget(0x4a55, 4096, IPC_CREAT | 0666) < 0) puts("no shm");
        if (semget(0x4a55, 1, IPC_CREAT | 0666) < 0) puts("no sem");
        if (msgget(0x4a55, IPC_CREAT | 0666) < 0) puts("no msg");
        mqd_t q = mq_open("/judge-leftover", O_CREAT | O_RDWR, 0666, NULL);
        printf("mq %s\n", q == (mqd_t)-1 ? "refused" : "made");
        if (!abstract_socket(1)) puts("no socket");
        size_t n = 64 << 20;
        volatile char *p = malloc(n);
        for (size_t i = 0; i < n; i += 4096) p[i] = 1;
        if (fork() == 0) {
            setsid();
            if (fork() == 0) { for (;;) {} }
            _exit(0);
        }
        usleep(20000);
        puts("left");
        return 0;
    }
    int found = 0;
    if (access("/tmp/left", F_OK) == 0) { puts("found /tmp"); found = 1; }
    if (access("/dev/shm/left", F_OK) == 0) { puts("found /dev/shm"); found = 1; }
    if (access("/box/left", F_OK) == 0) { puts("found /box"); found = 1; }
    if (shmget(0x4a55, 0, 0) >= 0) { puts("found shm"); found = 1; }
    if (semget(0x4a55, 0, 0) >= 0) { puts("found sem"); found = 1; }
    if (msgget(0x4a55, 0) >= 0) { puts("found msg"); found = 1; }
    if (mq_open("/judge-leftover", O_RDONLY) != (mqd_t)-1) { puts("found mq"); found = 1; }
    if (abstract_socket(0)) { puts("found socket"); found = 1; }
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid > 0 && pid != getpid()) { printf("found process %d\n", pid); found = 1; }
    }
    puts(found ? "dirty" : "clean");
    return 0;
}
"#;

fn compile_leftovers(f: &Fixture) {
    let src = f.box_dir.join("leftovers.c");
    std::fs::write(&src, LEFTOVERS_C).unwrap();
    let st = std::process::Command::new("gcc").arg("-O2").arg("-o").arg(f.box_dir.join("leftovers")).arg(&src).status().unwrap();
    assert!(st.success());
}

#[test]
fn a_pooled_sandbox_keeps_nothing_of_its_previous_run() {
    let f = fixture();
    // One holder: every run below is served by the same one, reset in between.
    f.sandbox.set_pool_size(1);
    compile_leftovers(&f);
    let other_box = f._dir.path().join("box2");
    std::fs::create_dir(&other_box).unwrap();
    std::os::unix::fs::chown(&other_box, Some(60000), Some(60000)).unwrap();
    std::fs::copy(f.box_dir.join("leftovers"), other_box.join("leftovers")).unwrap();
    let env = env();
    for round in 0..3 {
        let argv: Vec<String> = ["/box/leftovers", "leave"].iter().map(|s| s.to_string()).collect();
        let leave = RunSpec { box_writable: true, box_dir: &other_box, ..spec(&f, &argv, &env, limits()) };
        let o = f.sandbox.run(&leave).unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "pid 2\nmq refused\nleft\n", "round {round}: {o:?}");
        assert!(o.peak_memory_bytes > 64 << 20, "{o:?}");
        assert_eq!(f.sandbox.idle_holder_count(), 1, "the run was pooled");
        let o = run(&f, &["/box/leftovers", "look"], limits());
        assert_eq!(String::from_utf8_lossy(&o.stdout), "pid 2\nclean\n", "round {round}: {o:?}");
        assert!(o.peak_memory_bytes < 16 << 20, "the earlier run's peak is not this one's: {o:?}");
        assert!(o.cpu < Duration::from_millis(100), "the daemon's CPU time is not this run's: {o:?}");
        assert_eq!(o.limit, None);
        std::fs::remove_file(other_box.join("left")).unwrap();
    }
    assert_eq!(f.sandbox.idle_holder_count(), 1);
}

#[test]
fn a_daemon_of_a_stopped_run_is_gone_before_the_next_and_the_holder_serves_on() {
    let f = fixture();
    f.sandbox.set_pool_size(1);
    compile_leftovers(&f);
    // Killed on the wall limit while a double-forked daemon burns CPU.
    let o = run(&f, &["/bin/sh", "-c", "(setsid sh -c 'while :; do :; done' &) ; sleep 100"], with(|l| l.wall = Duration::from_millis(300)));
    assert_eq!(o.limit, Some(protocol::LimitHit::Wall), "{o:?}");
    let o = run(&f, &["/box/leftovers", "look"], limits());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "pid 2\nclean\n", "{o:?}");
    assert!(o.cpu < Duration::from_millis(200), "{o:?}");
    assert_eq!(f.sandbox.idle_holder_count(), 1);
    // Without the pool every run is set up afresh, and still works.
    f.sandbox.set_pool_size(0);
    assert_eq!(f.sandbox.idle_holder_count(), 0);
    let o = sh(&f, "echo $$");
    assert_eq!(o.stdout, b"2\n", "{o:?}");
}

#[test]
fn a_holder_that_died_is_replaced() {
    let f = fixture();
    f.sandbox.set_pool_size(1);
    assert_eq!(sh(&f, "echo $$").stdout, b"2\n");
    let pids = f.sandbox.idle_holder_pids();
    assert_eq!(pids.len(), 1);
    // SAFETY: kill(2) on the pid of our own child, which is not reaped yet.
    assert_eq!(unsafe { libc::kill(pids[0], libc::SIGKILL) }, 0);
    // Dead (a zombie until the pool reaps it) before the next run takes a holder.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{}/stat", pids[0])).unwrap().contains(") Z ") {
        assert!(std::time::Instant::now() < deadline, "the holder did not die");
        std::thread::yield_now();
    }
    let o = sh(&f, "echo $$");
    assert_eq!((o.exit, o.stdout.as_slice()), (Exit::Code(0), b"2\n".as_slice()), "{o:?}");
    let now = f.sandbox.idle_holder_pids();
    assert_eq!(now.len(), 1);
    assert_ne!(now, pids, "the dead holder was replaced");
    // The dead one was reaped: no zombie of it is left.
    assert!(!std::path::Path::new(&format!("/proc/{}", pids[0])).exists());
}
