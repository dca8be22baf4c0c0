//! The hostile-program suite (issue 3): C, C++ and Python programs that attack the
//! sandbox, submitted through the real HTTP API of one `coordinator up` with two slots,
//! each with an exact expected outcome; then checks that the host is untouched.
//!
//! Most programs verify the denial themselves and print a precise token ("socket
//! AF_PACKET EPERM"); the expected output is the safe answer, so a hole shows up as WA
//! with the actual output in the report. The seccomp errnos are those of
//! rootfs/seccomp.toml (EPERM; ENOSYS for clone3 and io_uring; foreign ABIs kill).
//!
//! case                  expected                 why
//! --------------------  -----------------------  ---------------------------------------
//! fork_bomb             TLE cpu                  `for(;;) fork();` meets the pids limit (64), the
//!                                                survivors spin until the cgroup's CPU limit
//! python_fork_capped    AC "capped EAGAIN True"  fork until it fails: EAGAIN before 64 processes
//! thread_bomb           AC "... EAGAIN yes"      pthread_create fails with EAGAIN before 64 threads
//! zombie_flood          AC "... EAGAIN yes"      unreaped zombies count against the pids limit
//! malloc_bomb           MLE memory               malloc+touch 1 MiB at a time past 64 MiB: OOM kill
//! mmap_bomb             MLE memory               the same with anonymous mmap
//! sbrk_bomb             MLE memory               the same with sbrk
//! stack_bomb            MLE memory               unbounded recursion: the stack rlimit is the memory
//!                                                limit, so the cgroup's OOM comes first
//! huge_mmap_untouched   AC, peak < 32 MiB        64 GiB MAP_NORESERVE mapping, one page per GiB
//!                                                touched: address space is not memory
//! python_memory_bomb    MLE memory               growing list of bytearrays
//! tmp_fill              AC "tmp full ENOSPC ..."  /tmp is a 64 MiB tmpfs of the run's own
//! shm_fill              AC "shm full ENOSPC ..."  so is /dev/shm
//! inode_exhaustion      AC "inodes ENOSPC ..."   /tmp has 4096 inodes
//! stdout_flood          OLE output               16 MiB output limit on stdout
//! stderr_flood          OLE output               and on stderr
//! python_stderr_flood   OLE output               the same from Python
//! busy_loop             TLE cpu                  CPU limit from the cgroup
//! busy_threads          TLE cpu                  8 spinning threads: CPU summed over threads
//! ignore_signals_busy   TLE cpu                  every signal ignored and blocked: SIGKILL of init
//! sleep_past_wall       TLE wall                 sleep(30) with a 1 s wall limit
//! ignore_sigterm_sleep  TLE wall                 ignores SIGTERM/SIGINT/SIGHUP and pauses
//! block_on_pipe         TLE wall                 reads a pipe nobody writes: blocked, no CPU
//! stdin_eof             AC "stdin 4 0 file"      stdin is a file: reading past it is EOF, no hang
//! double_fork_daemon    AC "parent done"         a setsid'd grandchild spinning forever dies with
//!                                                the run (host check: no process survives)
//! setsid_escape         AC                       setsid in a child succeeds, but the session is
//!                                                still inside the pid namespace
//! kill_minus_one        AC "kill(-1) ok child SIGKILL"  kill(-1) reaches only the run's processes
//! signal_parent         AC EPERM x4              the parent is the root-owned init
//! ptrace_parent         AC EPERM x4              ptrace/process_vm_readv denied by seccomp
//! etc_shadow            AC ENOENT                no /etc/shadow in the root, /proc/1 hidden (hidepid)
//! host_proc             AC                       /proc is the run's own: 2 processes, init closed
//! write_sys_cgroupfs    AC                       no /sys, mounts denied, /proc/sys not writable
//! write_host_toolchain  AC EACCES/EROFS          /usr and /box are read-only (and not ours)
//! connect_outside       AC EPERM                 only AF_UNIX sockets (also with high bits set)
//! af_vsock              AC EPERM
//! af_packet_raw         AC EPERM                 AF_PACKET, SOCK_RAW, AF_NETLINK
//! python_socket         AC "connect EPERM"
//! keyctl                AC EPERM x3              keyrings are not namespaced
//! sysv_writer/reader    AC / AC "ENOENT x3, 0"   SysV IPC objects are per run (IPC namespace);
//!                                                readers run beside and after the writer
//! shm_writer/reader     AC / AC                  /dev/shm is per run
//! abstract_writer/reader AC / AC ECONNREFUSED    abstract unix sockets are per network namespace
//! fifo_writer/reader    AC / AC                  no FIFO or symlink can be left in /box (read-only
//!                                                in runs); /tmp is fresh in every run
//! workdir_symlink       AC                       symlinks to host paths lead nowhere; the test's
//!                                                host sentinels are not reachable
//! flock                 AC EPERM x4              locks on shared files denied to programs
//! io_uring              AC ENOSYS x3
//! bpf                   AC EPERM x2
//! perf_event_open       AC EPERM
//! unshare_user_mount    AC EPERM.., clone3 ENOSYS  no new namespaces, no mount/chroot/pivot_root
//! python_unshare        AC                       the same through ctypes; plain fork still works
//! setuid_binary         AC "not elevated"        a real setuid-root binary runs without root
//!                                                (nosuid mounts, no_new_privs)
//! file_caps             AC EPERM x3              no setting file capabilities, capset, ambient
//! x32_syscall           RE SIGSYS                a foreign ABI kills the process
//! int80_syscall         RE SIGSYS                likewise for i386 `int 0x80`
//! tiocsti               AC EPERM x4, no tty      also with garbage in the command's upper half
//! fd_exhaustion         AC "fds EMFILE capped yes"  RLIMIT_NOFILE
//! inherited_fds         AC "open fds: 0 1 2"     nothing of the agent leaks into the program
//! core_dump             RE SIGABRT               RLIMIT_CORE 0 and cannot be raised
//! sched                 AC EPERM/EACCES          no real-time class, no raising priority, no
//!                                                touching init's affinity
//! clock_hostname        AC EPERM x5              the clock and the names are the host's/sandbox's
//! stdin_tamper          AC EACCES/EPERM/EBADF    the input is the agent's file: no reopening it for
//!                                                writing through /proc/self/fd, no chmod/chown
//! tmp_fill_over_memory  MLE memory               /tmp's pages count as the run's memory (16 MiB)
//! between_tests         AC, AC                   test 1 leaves SysV, /dev/shm, /tmp and a sleeping
//!                                                process; test 2 of the same submission sees none
//! stop_self             TLE wall                 SIGSTOP to its own group: the wall limit still ends it
//! setuid_syscalls       AC EPERM x6              no uid/gid 0, no chown to root, no device nodes
//! oom_unkillable        AC EACCES/EPERM          no lowering oom_score_adj (an OOM-proof bomb would
//!                                                stall its cgroup), no mlock
//! kernel_attack_surface AC EPERM ..              file handles (shocker), userfaultfd, personality,
//!                                                kexec, modules, reboot, syslog, iopl, acct, swap
//! compile_dev_random    CE "...memory limit"     `#include </dev/random>`: gcc reads forever
//!                                                until the compile cgroup's 1 GiB OOM
//! compile_dev_zero      CE "...memory limit"     the same, faster
//! template_depth_bomb   CE                       endless template recursion: g++ stops at depth 900
//! include_shadow        CE                       `#include "/etc/shadow"`: not in the sandbox
//! probe                 AC all PASS              tests/hostile/probe.c: isolation from inside
//! sanity_after          AC                       the agent still judges after all of the above
//! compile_plants_links  Accepted (Judge0)        `-wrapper` runs a script in the compile sandbox
//!                                                that leaves a symlink to a host dir and a FIFO
//!                                                in /box: the run finds them leading nowhere,
//!                                                the clean-up does not follow them
//!
//! Holes this suite found, fixed, and kept as separate tests (each needs its own judge):
//! host_paths_are_hidden_from_runs   the agent's data dir showed in /proc/self/mountinfo
//!                                   (the /box bind's root), /proc/1/cmdline (init is a
//!                                   clone of the agent) and stdin's /proc link; now /box
//!                                   is a tmpfs, /proc has hidepid, stdin is a memfd
//! compile_writes_to_box_are_bounded the compile's /box was host disk without a size
//!                                   bound; now a 256 MiB tmpfs
//! runs_cannot_watch_shared_files    inotify on /usr saw other runs' and the host's
//!                                   opens; now denied by seccomp
//!
//! After the suite: `/health` still shows the agent; the judge stops cleanly; no process
//! with a slot uid survives; no run cgroup is left; sentinel files in a host tempdir, in
//! the host's /tmp and /dev/shm and /etc/shadow are unchanged; no `judge-hostile-*` file
//! appeared in the host's /tmp or /dev/shm; no SysV IPC object with the suite's key
//! exists on the host; the host's hostname is unchanged.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use judge_tests::{Judge, leftover_run_cgroups, processes_with_uid, uid_base};
use serde_json::{Value, json};

/// The SysV IPC key the writer uses ("JUDG").
const IPC_KEY: u32 = 0x4a55_4447;
const SENTINEL: &str = "judge-hostile sentinel: must stay exactly like this\n";

/// Helpers every C case includes.
const C_PRELUDE: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/sysmacros.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#define IPC_KEY 0x4a554447

static const char *en(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    case EAGAIN: return "EAGAIN";
    case ENOSPC: return "ENOSPC";
    case EMFILE: return "EMFILE";
    case EINVAL: return "EINVAL";
    case ENOTTY: return "ENOTTY";
    case ESRCH: return "ESRCH";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case EFBIG: return "EFBIG";
    case EBADF: return "EBADF";
    case ENOMEM: return "ENOMEM";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENXIO: return "ENXIO";
    default: { static char b[32]; snprintf(b, sizeof b, "errno%d", e); return b; }
    }
}

/* Prints "label ok" or "label ERRNO" for a call returning < 0 on failure. */
#define CALL(label, expr) do { errno = 0; long r_ = (long)(expr); \
    printf("%s %s\n", label, r_ < 0 ? en(errno) : "ok"); fflush(stdout); } while (0)

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}
"#;

/// Expected output of tests/hostile/probe.c: every property PASS.
const PROBE_EXPECTED: &str = "\
PASS uid-not-root
PASS gid-not-root
PASS no-supplementary-groups
PASS CapInh-zero
PASS CapPrm-zero
PASS CapEff-zero
PASS CapBnd-zero
PASS CapAmb-zero
PASS no-new-privs
PASS seccomp-filter
PASS no-new-privs-prctl
PASS parent-is-init
PASS few-processes-visible
PASS only-loopback
PASS hostname-judge
PASS cgroup-namespace
PASS root-read-only
PASS usr-read-only
PASS box-read-only
PASS box-not-writable
PASS tmp-writable
PASS tmp-nosuid-nodev
PASS dev-shm-writable
PASS dev-shm-noexec
PASS dev-read-only
PASS proc-nosuid-noexec
PASS absent /etc/shadow
PASS absent /etc/passwd
PASS absent /root
PASS absent /home
PASS absent /var
PASS absent /sys
PASS absent /run
PASS absent /mnt
PASS absent /dev/tty
PASS absent /dev/mem
PASS absent /dev/kmsg
PASS absent /dev/sda
PASS absent /dev/vda
PASS absent /proc/1/root/etc/shadow
PASS mountinfo-no-host-paths
PASS dev-minimal
PASS only-fds-0-1-2
PASS stdin-regular-file
PASS environment-minimal
PASS rlimit-core-zero
PASS rlimit-nofile
PASS rlimit-fsize
PASS rlimit-cpu
PASS rlimit-stack
PASS rlimit-memlock-zero
PASS rlimit-msgqueue-zero
";

#[derive(Clone)]
struct Case {
    name: &'static str,
    language: &'static str,
    source: String,
    input: &'static str,
    expected_output: String,
    cpu_ms: u64,
    wall_ms: u64,
    memory_mb: u64,
    verdict: &'static str,
    /// The test's `limit`, checked exactly (not for CE, which has no tests).
    limit: Option<&'static str>,
    signal: Option<i64>,
    /// For runs whose output the judge does not compare (RE): stdout, trimmed.
    stdout: Option<&'static str>,
    compile_output_has: Option<&'static str>,
    message_has: Option<&'static str>,
    max_peak_mb: Option<u64>,
    /// More tests of the same submission, as (input, expected output); every test must
    /// get the case's verdict.
    more_tests: Vec<(&'static str, &'static str)>,
}

impl Case {
    fn new(name: &'static str, language: &'static str, source: String, expected: &str) -> Case {
        Case {
            name,
            language,
            source,
            input: "",
            expected_output: expected.to_string(),
            cpu_ms: 1000,
            wall_ms: 4000,
            memory_mb: 128,
            verdict: "AC",
            limit: None,
            signal: None,
            stdout: None,
            compile_output_has: None,
            message_has: None,
            max_peak_mb: None,
            more_tests: Vec::new(),
        }
    }

    fn limits(mut self, cpu_ms: u64, wall_ms: u64, memory_mb: u64) -> Case {
        (self.cpu_ms, self.wall_ms, self.memory_mb) = (cpu_ms, wall_ms, memory_mb);
        self
    }

    fn expect(mut self, verdict: &'static str, limit: Option<&'static str>) -> Case {
        (self.verdict, self.limit) = (verdict, limit);
        self
    }

    fn body(&self) -> Value {
        let mut tests = vec![json!({"input": self.input, "expectedOutput": self.expected_output})];
        tests.extend(self.more_tests.iter().map(|(i, o)| json!({"input": i, "expectedOutput": o})));
        json!({
            "language": self.language,
            "source": self.source,
            "tests": tests,
            "limits": {"cpuMs": self.cpu_ms, "wallMs": self.wall_ms, "memoryMb": self.memory_mb},
        })
    }
}

fn c(name: &'static str, body: &str, expected: &str) -> Case {
    Case::new(name, "c", format!("{C_PRELUDE}\n{body}"), expected)
}

fn py(name: &'static str, source: &str, expected: &str) -> Case {
    Case::new(name, "python", source.to_string(), expected)
}

/// A TLE case: CPU-bound ones get a generous wall limit so that, even on a loaded
/// machine, the CPU limit is the one they meet; blocked ones a short wall limit.
fn tle(case: Case, limit: &'static str) -> Case {
    let case = if limit == "cpu" { case.limits(500, 10_000, 128) } else { case.limits(1000, 1000, 128) };
    case.expect("TLE", Some(limit))
}

fn mle(case: Case) -> Case {
    case.limits(2000, 10_000, 64).expect("MLE", Some("memory"))
}

fn ce(case: Case, message_has: Option<&'static str>, compile_output_has: Option<&'static str>) -> Case {
    Case { message_has, compile_output_has, ..case.limits(1000, 3000, 64).expect("CE", None) }
}

fn lines(l: &[&str]) -> String {
    l.iter().map(|s| format!("{s}\n")).collect()
}

const SYSV_READER: &str = r#"
static int sysv_objects(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) return -1;
    char line[512];
    int n = -1; /* the header */
    while (fgets(line, sizeof line, f)) n++;
    fclose(f);
    return n;
}
int main(void) {
    CALL("shmget", shmget(IPC_KEY, 0, 0));
    CALL("msgget", msgget(IPC_KEY, 0));
    CALL("semget", semget(IPC_KEY, 0, 0));
    printf("sysvipc objects %d %d %d\n", sysv_objects("/proc/sysvipc/shm"),
           sysv_objects("/proc/sysvipc/msg"), sysv_objects("/proc/sysvipc/sem"));
    return 0;
}"#;
const SYSV_READER_OUT: &[&str] = &["shmget ENOENT", "msgget ENOENT", "semget ENOENT", "sysvipc objects 0 0 0"];

const SHM_READER: &str = r#"
int main(void) {
    CALL("shm_open", shm_open("/judge-hostile-posix", O_RDONLY, 0));
    CALL("open /dev/shm/judge-hostile-file", open("/dev/shm/judge-hostile-file", O_RDONLY));
    printf("/dev/shm entries %d\n", count_entries("/dev/shm"));
    return 0;
}"#;
const SHM_READER_OUT: &[&str] = &["shm_open ENOENT", "open /dev/shm/judge-hostile-file ENOENT", "/dev/shm entries 0"];

const ABSTRACT_READER: &str = r#"
int main(void) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    memcpy(a.sun_path, "\0judge-hostile-abstract", 23);
    CALL("connect abstract", connect(s, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + 23));
    int t = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un p = { .sun_family = AF_UNIX, .sun_path = "/tmp/judge-hostile-sock" };
    CALL("connect /tmp socket", connect(t, (struct sockaddr *)&p, sizeof p));
    return 0;
}"#;
const ABSTRACT_READER_OUT: &[&str] = &["connect abstract ECONNREFUSED", "connect /tmp socket ENOENT"];

const LEFTOVER_READER: &str = r#"#include <mqueue.h>
int main(void) {
    CALL("mq_open existing", mq_open("/judge-hostile-mq", O_RDONLY));
    int others = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (atoi(e->d_name) > 0 && atoi(e->d_name) != getpid()) others++;
    printf("other processes %d\npid %d\n", others, getpid());
    return 0;
}"#;
const LEFTOVER_READER_OUT: &[&str] = &["mq_open existing ENOENT", "other processes 0", "pid 2"];

const FIFO_READER: &str = r#"
int main(void) {
    /* The run's own /box holds exactly its source and binary; /tmp starts empty. */
    struct dirent **list;
    int n = scandir("/box", &list, NULL, alphasort);
    printf("box:");
    for (int i = 0; i < n; i++)
        if (list[i]->d_name[0] != '.') printf(" %s", list[i]->d_name);
    printf("\n/tmp entries %d\n", count_entries("/tmp"));
    CALL("open fifo", open("/tmp/judge-hostile-fifo", O_RDONLY | O_NONBLOCK));
    CALL("open link", open("/tmp/judge-hostile-link", O_RDONLY));
    return 0;
}"#;
const FIFO_READER_OUT: &[&str] = &["box: main main.c", "/tmp entries 0", "open fifo ENOENT", "open link ENOENT"];

fn cases(host_sentinel: &str) -> Vec<Case> {
    let mut v = vec![
        // --- processes and threads ---
        tle(c("fork_bomb", "int main(void) { for (;;) fork(); }", ""), "cpu"),
        py(
            "python_fork_capped",
            "import errno, os, time\nn, err = 0, None\nwhile n < 1000:\n    try:\n        pid = os.fork()\n    except OSError as e:\n        err = e.errno\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\nprint('capped', errno.errorcode.get(err), n < 64)\n",
            "capped EAGAIN True\n",
        )
        .limits(2000, 6000, 256),
        c(
            "thread_bomb",
            r#"static void *idle(void *a) { (void)a; for (;;) pause(); return 0; }
int main(void) {
    pthread_attr_t at; pthread_attr_init(&at); pthread_attr_setstacksize(&at, 65536);
    int n = 0, r = 0;
    for (; n < 100000; n++) { pthread_t t; r = pthread_create(&t, &at, idle, 0); if (r) break; }
    printf("threads capped %s %s\n", en(r), n < 64 ? "yes" : "no");
    fflush(stdout);
    _exit(0);
}"#,
            "threads capped EAGAIN yes\n",
        ),
        c(
            "zombie_flood",
            r#"int main(void) {
    int n = 0, err = 0;
    for (; n < 100000; n++) { pid_t p = fork(); if (p == 0) _exit(0); if (p < 0) { err = errno; break; } }
    printf("zombies capped %s %s\n", en(err), n < 64 ? "yes" : "no");
    return 0;
}"#,
            "zombies capped EAGAIN yes\n",
        ),
        // --- memory ---
        mle(c("malloc_bomb", "int main(void) { for (;;) { char *p = malloc(1 << 20); if (!p) return 3; memset(p, 1, 1 << 20); } }", "")),
        mle(c(
            "mmap_bomb",
            "int main(void) { for (;;) { char *p = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); if (p == MAP_FAILED) return 3; memset(p, 1, 1 << 20); } }",
            "",
        )),
        mle(c("sbrk_bomb", "int main(void) { for (;;) { char *p = sbrk(1 << 20); if (p == (void *)-1) return 3; memset(p, 1, 1 << 20); } }", "")),
        mle(c(
            "stack_bomb",
            "static int deep(int d) { volatile char frame[4096]; frame[0] = (char)d; return deep(d + 1) + frame[0]; }\nint main(void) { return deep(0); }",
            "",
        )),
        Case {
            max_peak_mb: Some(32),
            ..c(
                "huge_mmap_untouched",
                r#"int main(void) {
    size_t n = (size_t)64 << 30;
    char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { printf("mmap %s\n", en(errno)); return 0; }
    for (size_t i = 0; i < n; i += (size_t)1 << 30) p[i] = 1;
    printf("mapped ok\n");
    return 0;
}"#,
                "mapped ok\n",
            )
            .limits(1000, 4000, 64)
        },
        mle(py("python_memory_bomb", "l = []\nwhile True:\n    l.append(bytearray(1 << 20))\n", "")),
        // --- filesystems ---
        c(
            "tmp_fill",
            &fill_program("/tmp", "tmpfill", "tmp"),
            "tmp full ENOSPC bounded\n",
        )
        .limits(2000, 6000, 256),
        c(
            "shm_fill",
            &fill_program("/dev/shm", "shmfill", "shm"),
            "shm full ENOSPC bounded\n",
        )
        .limits(2000, 6000, 256),
        c(
            "inode_exhaustion",
            r#"int main(void) {
    int n = 0, err = 0;
    for (; n < 1000000; n++) {
        char p[64]; snprintf(p, sizeof p, "/tmp/judge-hostile-inode-%d", n);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) { err = errno; break; }
        close(fd);
    }
    printf("inodes %s %s\n", en(err), n <= 4096 ? "bounded" : "unbounded");
    return 0;
}"#,
            "inodes ENOSPC bounded\n",
        )
        .limits(2000, 6000, 256),
        // --- output ---
        c("stdout_flood", "int main(void) { static char b[65536]; memset(b, 'y', sizeof b); for (;;) write(1, b, sizeof b); }", "")
            .limits(2000, 10_000, 64)
            .expect("OLE", Some("output")),
        c("stderr_flood", "int main(void) { static char b[65536]; memset(b, 'e', sizeof b); for (;;) write(2, b, sizeof b); }", "")
            .limits(2000, 10_000, 64)
            .expect("OLE", Some("output")),
        py("python_stderr_flood", "import sys\ns = 'e' * 65536\nwhile True:\n    sys.stderr.write(s)\n", "")
            .limits(2000, 10_000, 64)
            .expect("OLE", Some("output")),
        // --- time ---
        tle(c("busy_loop", "int main(void) { volatile unsigned long x = 0; for (;;) x++; }", ""), "cpu"),
        tle(
            c(
                "busy_threads",
                r#"static void *spin(void *a) { (void)a; volatile unsigned long x = 0; for (;;) x++; return 0; }
int main(void) { pthread_t t; for (int i = 0; i < 7; i++) pthread_create(&t, 0, spin, 0); spin(0); }"#,
                "",
            ),
            "cpu",
        ),
        tle(
            c(
                "ignore_signals_busy",
                r#"int main(void) {
    for (int s = 1; s < 65; s++) signal(s, SIG_IGN);
    sigset_t all; sigfillset(&all); sigprocmask(SIG_BLOCK, &all, 0);
    volatile unsigned long x = 0; for (;;) x++;
}"#,
                "",
            ),
            "cpu",
        ),
        tle(c("sleep_past_wall", "int main(void) { sleep(30); return 0; }", ""), "wall"),
        tle(
            c(
                "ignore_sigterm_sleep",
                "int main(void) { signal(SIGTERM, SIG_IGN); signal(SIGINT, SIG_IGN); signal(SIGHUP, SIG_IGN); for (;;) pause(); }",
                "",
            ),
            "wall",
        ),
        tle(c("block_on_pipe", "int main(void) { int p[2]; pipe(p); char c; read(p[0], &c, 1); return 0; }", ""), "wall"),
        Case {
            input: "abc\n",
            ..c(
                "stdin_eof",
                r#"int main(void) {
    char b[100];
    ssize_t n = read(0, b, sizeof b), m = read(0, b, sizeof b);
    struct stat st; fstat(0, &st);
    printf("stdin %zd %zd %s\n", n, m, S_ISREG(st.st_mode) ? "file" : "other");
    return 0;
}"#,
                "stdin 4 0 file\n",
            )
        },
        // --- escaping the run's process tree ---
        c(
            "double_fork_daemon",
            r#"int main(void) {
    pid_t p = fork();
    if (p == 0) {
        setsid();
        if (fork() == 0) {
            for (int s = 1; s < 65; s++) signal(s, SIG_IGN);
            volatile unsigned long x = 0; for (;;) x++;
        }
        _exit(0);
    }
    waitpid(p, 0, 0);
    printf("parent done\n");
    return 0;
}"#,
            "parent done\n",
        ),
        c(
            "setsid_escape",
            r#"int main(void) {
    CALL("setsid main", setsid());
    int pfd[2]; pipe(pfd);
    pid_t p = fork();
    if (p == 0) {
        pid_t s = setsid();
        if (fork() == 0) { for (int i = 1; i < 65; i++) signal(i, SIG_IGN); for (;;) pause(); }
        char c = s > 0 ? 'y' : 'n';
        write(pfd[1], &c, 1);
        _exit(0);
    }
    char c = '?'; read(pfd[0], &c, 1); waitpid(p, 0, 0);
    printf("setsid child %s\n", c == 'y' ? "ok" : "failed");
    return 0;
}"#,
            "setsid main EPERM\nsetsid child ok\n",
        ),
        c(
            "kill_minus_one",
            r#"int main(void) {
    pid_t c = fork();
    if (c == 0) for (;;) pause();
    int r = kill(-1, SIGKILL);
    int e = errno, st = 0;
    waitpid(c, &st, 0);
    printf("kill(-1) %s child %s\n", r == 0 ? "ok" : en(e), WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? "SIGKILL" : "alive");
    return 0;
}"#,
            "kill(-1) ok child SIGKILL\n",
        ),
        c(
            "signal_parent",
            r#"int main(void) {
    printf("ppid %d\n", getppid());
    CALL("kill(ppid, SIGKILL)", kill(getppid(), SIGKILL));
    CALL("kill(ppid, SIGTERM)", kill(getppid(), SIGTERM));
    CALL("kill(ppid, 0)", kill(getppid(), 0));
    long fd;
    CALL("pidfd_send_signal", (fd = syscall(SYS_pidfd_open, getppid(), 0)) < 0 ? fd : syscall(SYS_pidfd_send_signal, (int)fd, SIGKILL, NULL, 0));
    return 0;
}"#,
            &lines(&["ppid 1", "kill(ppid, SIGKILL) EPERM", "kill(ppid, SIGTERM) EPERM", "kill(ppid, 0) EPERM", "pidfd_send_signal EPERM"]),
        ),
        c(
            "ptrace_parent",
            r#"int main(void) {
    CALL("ptrace attach parent", ptrace(PTRACE_ATTACH, getppid(), 0, 0));
    CALL("ptrace traceme", ptrace(PTRACE_TRACEME, 0, 0, 0));
    pid_t c = fork();
    if (c == 0) for (;;) pause();
    CALL("ptrace attach child", ptrace(PTRACE_ATTACH, c, 0, 0));
    char buf[16];
    struct iovec l = { buf, sizeof buf }, r = { (void *)0x400000, sizeof buf };
    CALL("process_vm_readv parent", process_vm_readv(getppid(), &l, 1, &r, 1, 0));
    kill(c, SIGKILL);
    return 0;
}"#,
            &lines(&["ptrace attach parent EPERM", "ptrace traceme EPERM", "ptrace attach child EPERM", "process_vm_readv parent EPERM"]),
        ),
        // --- host files ---
        c(
            "etc_shadow",
            &r#"int main(void) {
    CALL("open /etc/shadow", open("/etc/shadow", O_RDONLY));
    CALL("open /etc/passwd", open("/etc/passwd", O_RDONLY));
    CALL("open /proc/1/root/etc/shadow", open("/proc/1/root/etc/shadow", O_RDONLY));
    CALL("open host sentinel", open("@HOST_SENTINEL@", O_RDONLY));
    return 0;
}"#
            .replace("@HOST_SENTINEL@", host_sentinel),
            &lines(&["open /etc/shadow ENOENT", "open /etc/passwd ENOENT", "open /proc/1/root/etc/shadow ENOENT", "open host sentinel ENOENT"]),
        ),
        c(
            "host_proc",
            r#"int main(void) {
    int n = 0; DIR *d = opendir("/proc"); struct dirent *e;
    while ((e = readdir(d))) if (e->d_name[0] >= '0' && e->d_name[0] <= '9') n++;
    printf("processes visible %s\n", n <= 3 ? "few" : "many");
    CALL("open /proc/1/environ", open("/proc/1/environ", O_RDONLY));
    CALL("open /proc/1/mem", open("/proc/1/mem", O_RDONLY));
    char l[256];
    CALL("readlink /proc/1/exe", readlink("/proc/1/exe", l, sizeof l));
    /* (No /proc/sysrq-trigger or /proc/kcore on this kernel; these are root-only.) */
    CALL("open /proc/sys/vm/drop_caches", open("/proc/sys/vm/drop_caches", O_WRONLY));
    CALL("open /proc/sys/kernel/hostname for writing", open("/proc/sys/kernel/hostname", O_WRONLY));
    char h[64] = {0}; int fd = open("/proc/sys/kernel/hostname", O_RDONLY); read(fd, h, sizeof h - 1);
    printf("hostname %s", h);
    return 0;
}"#,
            &lines(&[
                "processes visible few",
                "open /proc/1/environ ENOENT",
                "open /proc/1/mem ENOENT",
                "readlink /proc/1/exe ENOENT",
                "open /proc/sys/vm/drop_caches EACCES",
                "open /proc/sys/kernel/hostname for writing EACCES",
                "hostname judge",
            ]),
        ),
        c(
            "write_sys_cgroupfs",
            r#"int main(void) {
    CALL("open /sys/fs/cgroup/cgroup.procs", open("/sys/fs/cgroup/cgroup.procs", O_WRONLY));
    CALL("mkdir /sys", mkdir("/sys", 0755));
    CALL("mount sysfs", mount("sysfs", "/tmp", "sysfs", 0, 0));
    CALL("mount cgroup2", mount("cgroup2", "/tmp", "cgroup2", 0, 0));
    CALL("mount cgroup v1", mount("cgroup", "/tmp", "cgroup", 0, "memory"));
    CALL("open core_pattern", open("/proc/sys/kernel/core_pattern", O_WRONLY));
    return 0;
}"#,
            &lines(&[
                "open /sys/fs/cgroup/cgroup.procs ENOENT",
                "mkdir /sys EROFS",
                "mount sysfs EPERM",
                "mount cgroup2 EPERM",
                "mount cgroup v1 EPERM",
                "open core_pattern EACCES",
            ]),
        ),
        c(
            "write_host_toolchain",
            r#"int main(void) {
    CALL("open /usr/bin/gcc for writing", open("/usr/bin/gcc", O_WRONLY));
    CALL("unlink /usr/bin/gcc", unlink("/usr/bin/gcc"));
    CALL("create in /usr", open("/usr/judge-hostile-x", O_WRONLY | O_CREAT, 0644));
    CALL("chmod /box/main", chmod("/box/main", 04777));
    CALL("create in /box", open("/box/judge-hostile-x", O_WRONLY | O_CREAT, 0644));
    return 0;
}"#,
            &lines(&[
                // Not the owner: refused by permissions before the read-only mount.
                "open /usr/bin/gcc for writing EACCES",
                "unlink /usr/bin/gcc EROFS",
                "create in /usr EROFS",
                "chmod /box/main EROFS",
                "create in /box EROFS",
            ]),
        ),
        // --- network ---
        c(
            "connect_outside",
            r#"int main(void) {
    CALL("socket AF_INET", socket(AF_INET, SOCK_STREAM, 0));
    CALL("socket AF_INET6", socket(AF_INET6, SOCK_STREAM, 0));
    CALL("socket AF_INET dgram", socket(AF_INET, SOCK_DGRAM, 0));
    CALL("socket AF_INET high bits", syscall(SYS_socket, 0x100000000UL | AF_INET, SOCK_STREAM, 0));
    CALL("socketpair AF_INET", socketpair(AF_INET, SOCK_STREAM, 0, (int[2]){0}));
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX, .sun_path = "/run/dbus/system_bus_socket" };
    CALL("connect host dbus", connect(u, (struct sockaddr *)&a, sizeof a));
    return 0;
}"#,
            &lines(&[
                "socket AF_INET EPERM",
                "socket AF_INET6 EPERM",
                "socket AF_INET dgram EPERM",
                "socket AF_INET high bits EPERM",
                "socketpair AF_INET EPERM",
                "connect host dbus ENOENT",
            ]),
        ),
        c(
            "af_vsock",
            "int main(void) { CALL(\"socket AF_VSOCK\", socket(40, SOCK_STREAM, 0)); CALL(\"socket AF_VSOCK dgram\", socket(40, SOCK_DGRAM, 0)); return 0; }",
            "socket AF_VSOCK EPERM\nsocket AF_VSOCK dgram EPERM\n",
        ),
        c(
            "af_packet_raw",
            r#"int main(void) {
    CALL("socket AF_PACKET", socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
    CALL("socket SOCK_RAW", socket(AF_INET, SOCK_RAW, IPPROTO_RAW));
    CALL("socket ICMP", socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP));
    CALL("socket AF_NETLINK", socket(AF_NETLINK, SOCK_RAW, 0));
    return 0;
}"#,
            &lines(&["socket AF_PACKET EPERM", "socket SOCK_RAW EPERM", "socket ICMP EPERM", "socket AF_NETLINK EPERM"]),
        ),
        py(
            "python_socket",
            "import errno, socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    print('connected')\nexcept OSError as e:\n    print('connect', errno.errorcode.get(e.errno))\n",
            "connect EPERM\n",
        ),
        // --- kernel interfaces ---
        c(
            "keyctl",
            r#"int main(void) {
    CALL("keyctl", syscall(SYS_keyctl, 0, -3, 0));
    CALL("add_key", syscall(SYS_add_key, "user", "judge-hostile", "x", 1, -3));
    CALL("request_key", syscall(SYS_request_key, "user", "judge-hostile", 0, 0));
    return 0;
}"#,
            "keyctl EPERM\nadd_key EPERM\nrequest_key EPERM\n",
        ),
        c(
            "flock",
            r#"int main(void) {
    int fd = open("/box/main", O_RDONLY);
    CALL("flock", flock(fd, LOCK_EX));
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
    CALL("fcntl F_SETLK", fcntl(fd, F_SETLK, &fl));
    CALL("fcntl F_OFD_SETLK", fcntl(fd, F_OFD_SETLK, &fl));
    int lfd = open("/usr/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY);
    CALL("flock libc", flock(lfd, LOCK_SH));
    return 0;
}"#,
            "flock EPERM\nfcntl F_SETLK EPERM\nfcntl F_OFD_SETLK EPERM\nflock libc EPERM\n",
        ),
        c(
            "io_uring",
            r#"int main(void) {
    char params[120] = {0};
    CALL("io_uring_setup", syscall(SYS_io_uring_setup, 8, params));
    CALL("io_uring_enter", syscall(SYS_io_uring_enter, 0, 1, 0, 0, 0, 0));
    CALL("io_uring_register", syscall(SYS_io_uring_register, 0, 0, 0, 0));
    return 0;
}"#,
            "io_uring_setup ENOSYS\nio_uring_enter ENOSYS\nio_uring_register ENOSYS\n",
        ),
        c(
            "bpf",
            r#"int main(void) {
    char attr[128] = {0};
    CALL("bpf map create", syscall(SYS_bpf, 0, attr, sizeof attr));
    CALL("bpf prog load", syscall(SYS_bpf, 5, attr, sizeof attr));
    return 0;
}"#,
            "bpf map create EPERM\nbpf prog load EPERM\n",
        ),
        c(
            "perf_event_open",
            r#"int main(void) {
    uint32_t attr[32] = {0}; attr[1] = 128; /* type 0 (hardware), size */
    CALL("perf_event_open", syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
    return 0;
}"#,
            "perf_event_open EPERM\n",
        ),
        c(
            "unshare_user_mount",
            r#"struct clone_args_ { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; };
int main(void) {
    CALL("unshare CLONE_NEWUSER", unshare(CLONE_NEWUSER));
    CALL("unshare CLONE_NEWNS", unshare(CLONE_NEWNS));
    errno = 0;
    long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    int e = errno;
    if (r == 0) _exit(0);
    printf("clone CLONE_NEWUSER %s\n", r < 0 ? en(e) : "ok");
    struct clone_args_ ca = { .flags = CLONE_NEWUSER, .exit_signal = SIGCHLD };
    errno = 0;
    r = syscall(SYS_clone3, &ca, sizeof ca);
    e = errno;
    if (r == 0) _exit(0);
    printf("clone3 CLONE_NEWUSER %s\n", r < 0 ? en(e) : "ok");
    fflush(stdout);
    CALL("mount tmpfs", mount("none", "/tmp", "tmpfs", 0, 0));
    CALL("remount / rw", mount(0, "/", 0, MS_REMOUNT, 0));
    CALL("chroot", chroot("/tmp"));
    CALL("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
    CALL("setns", setns(0, 0));
    return 0;
}"#,
            &lines(&[
                "unshare CLONE_NEWUSER EPERM",
                "unshare CLONE_NEWNS EPERM",
                "clone CLONE_NEWUSER EPERM",
                "clone3 CLONE_NEWUSER ENOSYS",
                "mount tmpfs EPERM",
                "remount / rw EPERM",
                "chroot EPERM",
                "pivot_root EPERM",
                "setns EPERM",
            ]),
        ),
        py(
            "python_unshare",
            "import ctypes, errno, os\nlibc = ctypes.CDLL(None, use_errno=True)\ndef call(label, r):\n    print(label, 'ok' if r == 0 else errno.errorcode.get(ctypes.get_errno()))\ncall('unshare', libc.unshare(0x10000000))\ncall('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))\npid = os.fork()\nif pid == 0:\n    os._exit(7)\n_, st = os.waitpid(pid, 0)\nprint('fork', 'ok' if os.WEXITSTATUS(st) == 7 else 'bad')\n",
            "unshare EPERM\nmount EPERM\nfork ok\n",
        ),
        c(
            "setuid_binary",
            r#"int main(void) {
    struct statvfs s; statvfs("/usr", &s);
    printf("usr nosuid %s\n", (s.f_flag & ST_NOSUID) ? "yes" : "no");
    printf("no_new_privs %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    struct stat sb;
    const char *helper = "/usr/lib/polkit-1/polkit-agent-helper-1";
    printf("helper setuid root %s\n", stat(helper, &sb) == 0 && (sb.st_mode & S_ISUID) && sb.st_uid == 0 ? "yes" : "no");
    fflush(stdout);
    /* It refuses to work unless it runs with euid 0, and says so. */
    int p[2]; pipe(p);
    pid_t c = fork();
    if (c == 0) {
        dup2(p[1], 1); dup2(p[1], 2); close(p[0]);
        int n = open("/dev/null", O_RDONLY); dup2(n, 0);
        execl(helper, "polkit-agent-helper-1", "nobody", (char *)0);
        _exit(127);
    }
    close(p[1]);
    static char out[65536]; size_t len = 0; ssize_t r;
    while (len < sizeof out - 1 && (r = read(p[0], out + len, sizeof out - 1 - len)) > 0) len += r;
    waitpid(c, 0, 0);
    printf("setuid helper %s\n", strstr(out, "needs to be setuid root") ? "not elevated" : out);
    return 0;
}"#,
            "usr nosuid yes\nno_new_privs 1\nhelper setuid root yes\nsetuid helper not elevated\n",
        ),
        c(
            "file_caps",
            r#"int main(void) {
    int in = open("/proc/self/exe", O_RDONLY), out = open("/tmp/judge-hostile-capbin", O_WRONLY | O_CREAT | O_TRUNC, 0755);
    char b[65536]; ssize_t n;
    while ((n = read(in, b, sizeof b)) > 0) write(out, b, n);
    close(out);
    struct { uint32_t magic; struct { uint32_t permitted, inheritable; } data[2]; } cap =
        { 0x02000001, { { 1u << 21, 0 }, { 0, 0 } } };
    CALL("setxattr security.capability", setxattr("/tmp/judge-hostile-capbin", "security.capability", &cap, sizeof cap, 0));
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2] = { { ~0u, ~0u, 0 }, { ~0u, ~0u, 0 } };
    CALL("capset all", syscall(SYS_capset, &h, d));
    CALL("ambient raise", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 21, 0, 0));
    return 0;
}"#,
            "setxattr security.capability EPERM\ncapset all EPERM\nambient raise EPERM\n",
        ),
        Case {
            signal: Some(31),
            stdout: Some("before"),
            ..c(
                "x32_syscall",
                "int main(void) { printf(\"before\\n\"); fflush(stdout); long r = syscall(0x40000000L | 39); printf(\"after %ld\\n\", r); return 0; }",
                "",
            )
            .expect("RE", None)
        },
        Case {
            signal: Some(31),
            stdout: Some("before"),
            ..c(
                "int80_syscall",
                "int main(void) { printf(\"before\\n\"); fflush(stdout); long r; __asm__ volatile(\"int $0x80\" : \"=a\"(r) : \"a\"(20L) : \"memory\"); printf(\"after %ld\\n\", r); return 0; }",
                "",
            )
            .expect("RE", None)
        },
        c(
            "tiocsti",
            r#"int main(void) {
    char ch = 'x';
    CALL("TIOCSTI stdin", ioctl(0, TIOCSTI, &ch));
    CALL("TIOCSTI stdout", ioctl(1, TIOCSTI, &ch));
    CALL("TIOCSTI high bits", syscall(SYS_ioctl, 0, 0x100000000UL | TIOCSTI, &ch));
    CALL("TIOCLINUX", ioctl(0, TIOCLINUX, &ch));
    CALL("open /dev/tty", open("/dev/tty", O_RDWR));
    CALL("open /dev/console", open("/dev/console", O_RDWR));
    return 0;
}"#,
            &lines(&[
                "TIOCSTI stdin EPERM",
                "TIOCSTI stdout EPERM",
                "TIOCSTI high bits EPERM",
                "TIOCLINUX EPERM",
                "open /dev/tty ENOENT",
                "open /dev/console ENOENT",
            ]),
        ),
        c(
            "fd_exhaustion",
            r#"int main(void) {
    int n = 0, err = 0;
    for (; n < 1000000; n++) { int fd = open("/dev/null", O_RDONLY); if (fd < 0) { err = errno; break; } }
    printf("fds %s capped %s\n", en(err), n + 3 <= 4096 ? "yes" : "no");
    return 0;
}"#,
            "fds EMFILE capped yes\n",
        ),
        c(
            "inherited_fds",
            r#"int main(void) {
    printf("open fds:");
    for (int fd = 0; fd < 65536; fd++) if (fcntl(fd, F_GETFD) >= 0) printf(" %d", fd);
    printf("\n");
    return 0;
}"#,
            "open fds: 0 1 2\n",
        ),
        c(
            "workdir_symlink",
            &r#"int main(void) {
    CALL("symlink in /box", symlink("/etc/shadow", "/box/judge-hostile-link"));
    CALL("symlink in /tmp", symlink("@HOST_SENTINEL@", "/tmp/judge-hostile-link"));
    CALL("open through the link", open("/tmp/judge-hostile-link", O_WRONLY));
    CALL("open host sentinel", open("@HOST_SENTINEL@", O_WRONLY));
    CALL("hard link /usr/bin/passwd", link("/usr/bin/passwd", "/tmp/judge-hostile-hardlink"));
    int fd = open("/tmp/judge-hostile-sentinel", O_WRONLY | O_CREAT | O_EXCL, 0644);
    CALL("create /tmp/judge-hostile-sentinel", fd);
    write(fd, "pwned\n", 6);
    fd = open("/dev/shm/judge-hostile-sentinel", O_WRONLY | O_CREAT | O_EXCL, 0644);
    CALL("create /dev/shm/judge-hostile-sentinel", fd);
    write(fd, "pwned\n", 6);
    return 0;
}"#
            .replace("@HOST_SENTINEL@", host_sentinel),
            &lines(&[
                "symlink in /box EROFS",
                "symlink in /tmp ok",
                "open through the link ENOENT",
                "open host sentinel ENOENT",
                "hard link /usr/bin/passwd EXDEV",
                "create /tmp/judge-hostile-sentinel ok",
                "create /dev/shm/judge-hostile-sentinel ok",
            ]),
        ),
        Case {
            signal: Some(6),
            stdout: Some("core limit 0 0\nraise core limit EPERM\nset dumpable ok"),
            ..c(
                "core_dump",
                r#"int main(void) {
    struct rlimit r; getrlimit(RLIMIT_CORE, &r);
    printf("core limit %lu %lu\n", (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max);
    struct rlimit big = { 1 << 20, 1 << 20 };
    CALL("raise core limit", setrlimit(RLIMIT_CORE, &big));
    CALL("set dumpable", prctl(PR_SET_DUMPABLE, 1, 0, 0, 0));
    abort();
}"#,
                "",
            )
            .expect("RE", None)
        },
        c(
            "sched",
            r#"int main(void) {
    struct sched_param sp = { .sched_priority = 1 };
    CALL("SCHED_FIFO", sched_setscheduler(0, SCHED_FIFO, &sp));
    CALL("SCHED_RR", sched_setscheduler(0, SCHED_RR, &sp));
    CALL("nice -5", setpriority(PRIO_PROCESS, 0, -5));
    CALL("renice init", setpriority(PRIO_PROCESS, 1, 19));
    cpu_set_t set; CPU_ZERO(&set); CPU_SET(0, &set);
    CALL("affinity of init", sched_setaffinity(1, sizeof set, &set));
    /* A run is pinned to its slot's CPU (cpuset): it may re-set that, never leave it. */
    cpu_set_t mine; sched_getaffinity(0, sizeof mine, &mine);
    CALL("own affinity", sched_setaffinity(0, sizeof mine, &mine));
    cpu_set_t all; CPU_ZERO(&all);
    for (int i = 0; i < 64; i++) CPU_SET(i, &all);
    sched_setaffinity(0, sizeof all, &all);
    cpu_set_t after; sched_getaffinity(0, sizeof after, &after);
    printf("affinity stays in its cpuset %s\n", CPU_EQUAL(&after, &mine) ? "yes" : "no");
    return 0;
}"#,
            &lines(&[
                "SCHED_FIFO EPERM",
                "SCHED_RR EPERM",
                "nice -5 EACCES",
                "renice init EPERM",
                "affinity of init EPERM",
                "own affinity ok",
                "affinity stays in its cpuset yes",
            ]),
        ),
        c(
            "clock_hostname",
            r#"int main(void) {
    struct timespec ts = { 0, 0 };
    CALL("clock_settime", clock_settime(CLOCK_REALTIME, &ts));
    struct timeval tv = { 0, 0 };
    CALL("settimeofday", settimeofday(&tv, 0));
    struct timex tx = { .modes = ADJ_OFFSET, .offset = 1000 };
    CALL("adjtimex", adjtimex(&tx));
    CALL("sethostname", sethostname("evil", 4));
    CALL("setdomainname", setdomainname("evil", 4));
    struct utsname u; uname(&u);
    printf("hostname %s\n", u.nodename);
    return 0;
}"#,
            &lines(&["clock_settime EPERM", "settimeofday EPERM", "adjtimex EPERM", "sethostname EPERM", "setdomainname EPERM", "hostname judge"]),
        ),
        tle(c("stop_self", "int main(void) { kill(0, SIGSTOP); for (;;) pause(); }", ""), "wall"),
        c(
            "setuid_syscalls",
            r#"int main(void) {
    CALL("setuid 0", setuid(0));
    CALL("setgid 0", setgid(0));
    CALL("setresuid 0", setresuid(0, 0, 0));
    CALL("setgroups", setgroups(1, (gid_t[]){ 0 }));
    CALL("chown /tmp file to root", (close(open("/tmp/judge-hostile-own", O_CREAT | O_WRONLY, 0644)), chown("/tmp/judge-hostile-own", 0, 0)));
    CALL("mknod /tmp char device", mknod("/tmp/judge-hostile-mem", S_IFCHR | 0666, makedev(1, 1)));
    return 0;
}"#,
            &lines(&["setuid 0 EPERM", "setgid 0 EPERM", "setresuid 0 EPERM", "setgroups EPERM", "chown /tmp file to root EPERM", "mknod /tmp char device EPERM"]),
        ),
        c(
            "oom_unkillable",
            r#"int main(void) {
    int fd;
    CALL("oom_score_adj -1000", (fd = open("/proc/self/oom_score_adj", O_WRONLY)) < 0 ? fd : write(fd, "-1000", 5));
    CALL("init's oom_score_adj", (fd = open("/proc/1/oom_score_adj", O_WRONLY)) < 0 ? fd : write(fd, "1000", 4));
    CALL("mlockall", mlockall(MCL_CURRENT | MCL_FUTURE));
    static char page[4096];
    CALL("mlock", mlock(page, sizeof page));
    return 0;
}"#,
            &lines(&["oom_score_adj -1000 EACCES", "init's oom_score_adj ENOENT", "mlockall EPERM", "mlock EPERM"]),
        ),
        c(
            "kernel_attack_surface",
            r#"int main(void) {
    struct { unsigned int bytes; int type; unsigned char h[128]; } fh = { 128, 0, {0} };
    int mount_id;
    CALL("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/usr", &fh, &mount_id, 0));
    CALL("open_by_handle_at", syscall(SYS_open_by_handle_at, 0, &fh, O_RDONLY));
    CALL("userfaultfd", syscall(SYS_userfaultfd, 0));
    CALL("personality READ_IMPLIES_EXEC", syscall(SYS_personality, 0x0400000));
    CALL("personality query", syscall(SYS_personality, 0xffffffff));
    CALL("kexec_load", syscall(SYS_kexec_load, 0, 0, 0, 0));
    CALL("init_module", syscall(SYS_init_module, 0, 0, ""));
    CALL("reboot", syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc, 0));
    CALL("syslog", syscall(SYS_syslog, 3, (char[64]){0}, 64));
    CALL("iopl", syscall(SYS_iopl, 3));
    CALL("acct", syscall(SYS_acct, "/tmp/judge-hostile-acct"));
    CALL("swapoff", syscall(SYS_swapoff, "/tmp"));
    return 0;
}"#,
            &lines(&[
                "name_to_handle_at EPERM",
                "open_by_handle_at EPERM",
                "userfaultfd EPERM",
                "personality READ_IMPLIES_EXEC EPERM",
                "personality query ok",
                "kexec_load EPERM",
                "init_module EPERM",
                "reboot EPERM",
                "syslog EPERM",
                "iopl EPERM",
                "acct EPERM",
                "swapoff EPERM",
            ]),
        ),
        Case {
            input: "secret\n",
            ..c(
                "stdin_tamper",
                r#"int main(void) {
    CALL("reopen stdin for writing", open("/proc/self/fd/0", O_WRONLY));
    CALL("fchmod stdin", fchmod(0, 0666));
    CALL("fchown stdin", fchown(0, getuid(), getgid()));
    CALL("write stdin", write(0, "x", 1));
    return 0;
}"#,
                "reopen stdin for writing EACCES\nfchmod stdin EPERM\nfchown stdin EPERM\nwrite stdin EBADF\n",
            )
        },
        mle(c("tmp_fill_over_memory", &fill_program("/tmp", "tmpmem", "tmp"), "")).limits(2000, 10_000, 16),
        Case {
            input: "write",
            more_tests: vec![("read", "nothing of test 1\n")],
            ..c(
                "between_tests",
                r#"int main(void) {
    char mode[16] = {0};
    read(0, mode, sizeof mode - 1);
    if (strcmp(mode, "write") == 0) {
        CALL("shmget", shmget(IPC_KEY, 4096, IPC_CREAT | 0666));
        CALL("shm_open", shm_open("/judge-hostile-posix", O_CREAT | O_RDWR, 0666));
        CALL("tmp file", open("/tmp/judge-hostile-between", O_CREAT | O_WRONLY, 0666));
        CALL("fork a sleeper", fork() == 0 ? (setsid(), sleep(30), 0) : 0);
        return 0;
    }
    int n = count_entries("/tmp") + count_entries("/dev/shm");
    int others = 0; DIR *d = opendir("/proc"); struct dirent *e;
    while ((e = readdir(d))) if (atoi(e->d_name) > 0) others++;
    if (shmget(IPC_KEY, 0, 0) < 0 && errno == ENOENT && n == 0 && others <= 2) printf("nothing of test 1\n");
    else printf("left over: shm %d, files %d, processes %d\n", shmget(IPC_KEY, 0, 0) >= 0, n, others);
    return 0;
}"#,
                "shmget ok\nshm_open ok\ntmp file ok\nfork a sleeper ok\n",
            )
        },
        // --- compiler bombs ---
        ce(
            Case::new("compile_dev_random", "c", "#include </dev/random>\nint main(void) { return 0; }\n".into(), ""),
            Some("compilation exceeded its memory limit"),
            None,
        ),
        ce(
            Case::new("compile_dev_zero", "c", "#include </dev/zero>\nint main(void) { return 0; }\n".into(), ""),
            Some("compilation exceeded its memory limit"),
            None,
        ),
        ce(
            Case::new(
                "template_depth_bomb",
                "cpp",
                "template <int N> struct Bomb { static constexpr long v = Bomb<N + 1>::v + 1; };\nint main() { return (int)Bomb<0>::v; }\n".into(),
                "",
            ),
            Some("compiler exited with code 1"),
            Some("template instantiation depth exceeds"),
        ),
        ce(
            Case::new("include_shadow", "c", "#include \"/etc/shadow\"\nint main(void) { return 0; }\n".into(), ""),
            Some("compiler exited with code 1"),
            Some("/etc/shadow: No such file or directory"),
        ),
        // --- the probe ---
        Case::new("probe", "c", include_str!("../hostile/probe.c").into(), PROBE_EXPECTED),
    ];
    v.extend(between_runs(false));
    v
}

/// Writers leave something behind in their run and hold it for a while; readers assert
/// they see nothing of any other run. Phase 1 has writers and readers side by side (the
/// two slots run them concurrently or one after another); phase 2 repeats the readers
/// after every writer is done.
fn between_runs(after: bool) -> Vec<Case> {
    let reader = |name, body: &str, out: &[&str]| c(name, body, &lines(out));
    let mut v = Vec::new();
    if !after {
        v.push(c(
            "sysv_writer",
            r#"int main(void) {
    CALL("shmget create", shmget(IPC_KEY, 4096, IPC_CREAT | 0666));
    CALL("msgget create", msgget(IPC_KEY, IPC_CREAT | 0666));
    CALL("semget create", semget(IPC_KEY, 1, IPC_CREAT | 0666));
    usleep(800000);
    return 0;
}"#,
            "shmget create ok\nmsgget create ok\nsemget create ok\n",
        ));
        v.push(c(
            "shm_writer",
            r#"int main(void) {
    CALL("shm_open create", shm_open("/judge-hostile-posix", O_CREAT | O_RDWR, 0666));
    CALL("create /dev/shm/judge-hostile-file", open("/dev/shm/judge-hostile-file", O_CREAT | O_WRONLY, 0666));
    usleep(800000);
    return 0;
}"#,
            "shm_open create ok\ncreate /dev/shm/judge-hostile-file ok\n",
        ));
        v.push(c(
            "abstract_writer",
            r#"int main(void) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    memcpy(a.sun_path, "\0judge-hostile-abstract", 23);
    CALL("bind abstract", bind(s, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + 23));
    CALL("listen", listen(s, 8));
    int t = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un p = { .sun_family = AF_UNIX, .sun_path = "/tmp/judge-hostile-sock" };
    CALL("bind /tmp socket", bind(t, (struct sockaddr *)&p, sizeof p));
    CALL("listen /tmp socket", listen(t, 8));
    usleep(800000);
    return 0;
}"#,
            "bind abstract ok\nlisten ok\nbind /tmp socket ok\nlisten /tmp socket ok\n",
        ));
        v.push(c(
            "fifo_writer",
            r#"int main(void) {
    CALL("mkfifo in /box", mkfifo("/box/judge-hostile-fifo", 0666));
    CALL("symlink in /box", symlink("/etc/shadow", "/box/judge-hostile-link"));
    CALL("mkfifo in /tmp", mkfifo("/tmp/judge-hostile-fifo", 0666));
    CALL("symlink in /tmp", symlink("/etc/shadow", "/tmp/judge-hostile-link"));
    usleep(800000);
    return 0;
}"#,
            "mkfifo in /box EROFS\nsymlink in /box EROFS\nmkfifo in /tmp ok\nsymlink in /tmp ok\n",
        ));
    }
    if !after {
        // Runs share pooled sandboxes: a POSIX queue (refused anyway: RLIMIT_MSGQUEUE is
        // 0) and a daemon must not reach the next run, nor may the pids tell of it.
        v.push(c(
            "leftover_writer",
            r#"#include <mqueue.h>
int main(void) {
    CALL("mq_open create", mq_open("/judge-hostile-mq", O_CREAT | O_RDWR, 0666, NULL));
    if (fork() == 0) {
        setsid();
        if (fork() == 0) { for (int i = 0; i < 100; i++) { fork(); sleep(1); } }
        _exit(0);
    }
    usleep(100000);
    return 0;
}"#,
            "mq_open create EMFILE\n",
        ));
    }
    let suffix = |n: &'static str, m: &'static str| if after { m } else { n };
    v.push(reader(suffix("leftover_reader", "leftover_reader_after"), LEFTOVER_READER, LEFTOVER_READER_OUT));
    v.push(reader(suffix("sysv_reader", "sysv_reader_after"), SYSV_READER, SYSV_READER_OUT));
    v.push(reader(suffix("shm_reader", "shm_reader_after"), SHM_READER, SHM_READER_OUT));
    v.push(reader(suffix("abstract_reader", "abstract_reader_after"), ABSTRACT_READER, ABSTRACT_READER_OUT));
    v.push(reader(suffix("fifo_reader", "fifo_reader_after"), FIFO_READER, FIFO_READER_OUT));
    v
}

/// Fills a tmpfs with 8 MiB files (each under RLIMIT_FSIZE) until a write fails.
fn fill_program(dir: &str, tag: &str, label: &str) -> String {
    format!(
        r#"int main(void) {{
    signal(SIGXFSZ, SIG_IGN);
    static char buf[1 << 20]; memset(buf, 'x', sizeof buf);
    long total = 0; int err = 0;
    for (int i = 0; i < 1000 && !err; i++) {{
        char p[128]; snprintf(p, sizeof p, "{dir}/judge-hostile-{tag}-%d", i);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {{ err = errno; break; }}
        for (int j = 0; j < 8; j++) {{ ssize_t w = write(fd, buf, sizeof buf); if (w < 0) {{ err = errno; break; }} total += w; }}
        close(fd);
    }}
    printf("{label} full %s %s\n", en(err), total <= (65L << 20) ? "bounded" : "unbounded");
    return 0;
}}"#
    )
}

/// A C source that is also a shell script: with the Judge0 option
/// `compiler_options: "-wrapper /bin/sh,main.c"`, gcc runs every subcommand (cc1, as,
/// collect2) as `/bin/sh main.c <subcommand...>`, so `script` runs inside the compile
/// sandbox (where /box is writable) once, before the real compiler. The C compiler
/// never sees the script (`#if 0`), the shell never reaches the C (`exec`).
fn wrapper_polyglot(script: &str, program: &str) -> String {
    format!(
        "#if 0\nif mkdir /box/judge-hostile-lock 2>/dev/null; then\n{script}\nfi\nexec \"$@\"\n#endif\n{C_PRELUDE}\n{program}"
    )
}

/// A Judge0 submission with compiler options (the native API has none), answered with
/// the result (`wait=true`).
fn judge0_with_compiler_options(judge: &Judge, source: &str, options: &str, expected: &str) -> Value {
    let body = json!({
        "source_code": source,
        "language_id": 50,
        "compiler_options": options,
        "expected_output": expected,
        "cpu_time_limit": 1,
        "wall_time_limit": 5,
        "memory_limit": 131072,
    });
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .post(judge.url("/submissions?wait=true&fields=status_id,stdout,stderr,compile_output,message"))
        .json(&body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().unwrap()
}

/// The compile step plants a symlink to a host directory (the test's sentinel dir) and
/// a FIFO in /box; the run finds them leading nowhere, and the agent's clean-up must not
/// follow the link (the sentinel is checked afterwards).
fn planted_links_case(judge: &Judge, sentinel_dir: &str, failures: &mut Vec<String>) {
    let script = format!("ln -s {sentinel_dir} /box/judge-hostile-link\nmkfifo /box/judge-hostile-fifo");
    let program = r#"int main(void) {
    struct stat st;
    printf("link planted %s\n", lstat("/box/judge-hostile-link", &st) == 0 && S_ISLNK(st.st_mode) ? "yes" : "no");
    CALL("open through link", open("/box/judge-hostile-link/judge-hostile-sentinel", O_RDONLY));
    printf("fifo planted %s\n", lstat("/box/judge-hostile-fifo", &st) == 0 && S_ISFIFO(st.st_mode) ? "yes" : "no");
    CALL("open fifo for writing", open("/box/judge-hostile-fifo", O_WRONLY | O_NONBLOCK));
    return 0;
}"#;
    // A FIFO is not a write to the filesystem: with no reader, opening it is ENXIO.
    let expected = "link planted yes\nopen through link ENOENT\nfifo planted yes\nopen fifo for writing ENXIO\n";
    let r = judge0_with_compiler_options(judge, &wrapper_polyglot(&script, program), "-wrapper /bin/sh,main.c", expected);
    eprintln!("compile_plants_links   {r}");
    if r["status_id"] != 3 {
        failures.push(format!("compile_plants_links: expected Accepted (3), got {r}"));
    }
}

/// Names starting with `judge-hostile-` in a host directory.
fn hostile_names(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("judge-hostile-"))
                .map(|n| format!("{dir}/{n}"))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the host has a SysV IPC object with the suite's key.
fn host_ipc_objects() -> Vec<String> {
    let mut found = Vec::new();
    for kind in ["shm", "msg", "sem"] {
        let text = std::fs::read_to_string(format!("/proc/sysvipc/{kind}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            if line.split_whitespace().next().and_then(|k| k.parse::<i64>().ok()) == Some(i64::from(IPC_KEY)) {
                found.push(format!("{kind}: {line}"));
            }
        }
    }
    found
}

/// Checks one finished submission against its case; returns the problems.
fn check(case: &Case, r: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let test = &r["tests"][0];
    let verdict = r["verdict"].as_str().unwrap_or("?");
    let stdout = test["stdout"].as_str().unwrap_or("");
    let shown: String = stdout.chars().take(600).collect();
    if verdict != case.verdict {
        problems.push(format!(
            "verdict {verdict}, expected {} (message {:?}; stdout {shown:?}; compile output {:?})",
            case.verdict,
            r["message"].as_str().unwrap_or(""),
            r["compileOutput"].as_str().unwrap_or("").chars().take(300).collect::<String>()
        ));
    }
    for (i, t) in r["tests"].as_array().into_iter().flatten().enumerate().skip(1) {
        if t["verdict"] != case.verdict {
            problems.push(format!("test {}: verdict {}, stdout {:?}: {}", i + 1, t["verdict"], t["stdout"], t["message"]));
        }
    }
    if case.verdict != "CE" && test["limit"].as_str() != case.limit {
        problems.push(format!("limit {}, expected {:?}", test["limit"], case.limit));
    }
    if let Some(sig) = case.signal
        && test["signal"].as_i64() != Some(sig)
    {
        problems.push(format!("signal {}, expected {sig}", test["signal"]));
    }
    if let Some(out) = case.stdout
        && stdout.trim_end() != out
    {
        problems.push(format!("stdout {shown:?}, expected {out:?}"));
    }
    if let Some(m) = case.message_has
        && !r["message"].as_str().unwrap_or("").contains(m)
    {
        problems.push(format!("message {:?} lacks {m:?}", r["message"]));
    }
    if let Some(m) = case.compile_output_has
        && !r["compileOutput"].as_str().unwrap_or("").contains(m)
    {
        let out: String = r["compileOutput"].as_str().unwrap_or("").chars().take(600).collect();
        problems.push(format!("compile output lacks {m:?}: {out:?}"));
    }
    if let Some(mb) = case.max_peak_mb {
        let peak = test["peakMemoryBytes"].as_u64().unwrap_or(u64::MAX);
        if peak > mb << 20 {
            problems.push(format!("peak memory {peak} bytes, expected at most {mb} MiB"));
        }
    }
    problems
}

fn report(case: &Case, r: &Value) {
    let test = &r["tests"][0];
    eprintln!(
        "{:<22} {:<3} limit={:<6} cpu={:>7}us wall={:>8}us mem={:>10}B exit={} signal={} {}",
        case.name,
        r["verdict"].as_str().unwrap_or("?"),
        test["limit"].as_str().unwrap_or("-"),
        test["cpuTimeUs"],
        test["wallTimeUs"],
        test["peakMemoryBytes"],
        test["exitCode"],
        test["signal"],
        r["message"].as_str().unwrap_or("")
    );
}

/// Submits every case at once, then waits for each and checks it.
fn run_phase(judge: &Judge, cases: &[Case], failures: &mut Vec<String>) {
    let ids: Vec<u64> = cases.iter().map(|c| judge.submit(&c.body())).collect();
    for (case, id) in cases.iter().zip(ids) {
        let r = judge.result(id, Duration::from_secs(300));
        report(case, &r);
        for p in check(case, &r) {
            failures.push(format!("{}: {p}", case.name));
        }
    }
}

#[test]
fn hostile_programs_are_contained_and_leave_the_host_untouched() {
    // The host's state before: sentinels with known contents where hostile programs aim.
    let sentinel_dir = tempfile::tempdir().unwrap();
    let host_sentinel = sentinel_dir.path().join("judge-hostile-sentinel");
    let tmp_sentinel = Path::new("/tmp/judge-hostile-sentinel");
    let shm_sentinel = Path::new("/dev/shm/judge-hostile-sentinel");
    for p in [host_sentinel.as_path(), tmp_sentinel, shm_sentinel] {
        std::fs::write(p, SENTINEL).unwrap();
    }
    let shadow = std::fs::read("/etc/shadow").ok();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let names_before: BTreeSet<String> = hostile_names("/tmp").into_iter().chain(hostile_names("/dev/shm")).collect();
    assert!(host_ipc_objects().is_empty(), "the host already has IPC objects with key {IPC_KEY:#x}");

    let judge = Judge::up(uid_base(6), &["--slots", "2"]);
    let started = Instant::now();
    let mut failures = Vec::new();
    let cases = cases(host_sentinel.to_str().unwrap());
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    run_phase(&judge, &cases, &mut failures);

    // Every writer is done: the readers again, and a plain submission that must still work.
    let mut after = between_runs(true);
    after.push(Case {
        input: "1 2\n",
        ..c("sanity_after", "int main(void) { long a, b; scanf(\"%ld %ld\", &a, &b); printf(\"%ld\\n\", a + b); return 0; }", "3\n")
    });
    run_phase(&judge, &after, &mut failures);
    planted_links_case(&judge, sentinel_dir.path().to_str().unwrap(), &mut failures);
    let suite_time = started.elapsed();

    let health = judge.health();
    if health["agents"]["connected"].as_u64() < Some(1) {
        failures.push(format!("the agent is not connected after the suite: {health}"));
    }
    let status = judge.stop();
    if !status.success() {
        failures.push(format!("coordinator exit status {status:?}"));
    }

    // The host is untouched.
    let left = processes_with_uid(uid_base(6)..(uid_base(6) + 4));
    if !left.is_empty() {
        failures.push(format!("processes of runs survived: {left:?}"));
    }
    let cgroups = leftover_run_cgroups();
    if !cgroups.is_empty() {
        failures.push(format!("run cgroups left behind: {cgroups:?}"));
    }
    for p in [host_sentinel.as_path(), tmp_sentinel, shm_sentinel] {
        let now = std::fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"));
        if now != SENTINEL {
            failures.push(format!("host file {} changed: {now:?}", p.display()));
        }
    }
    if std::fs::read("/etc/shadow").ok() != shadow {
        failures.push("/etc/shadow changed".into());
    }
    let names_after: BTreeSet<String> = hostile_names("/tmp").into_iter().chain(hostile_names("/dev/shm")).collect();
    let new: Vec<_> = names_after.difference(&names_before).collect();
    if !new.is_empty() {
        failures.push(format!("hostile programs created host files: {new:?}"));
    }
    let ipc = host_ipc_objects();
    if !ipc.is_empty() {
        failures.push(format!("SysV IPC objects leaked to the host: {ipc:?}"));
    }
    let hostname_now = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    if hostname_now != hostname {
        failures.push(format!("the host's hostname changed to {hostname_now:?}"));
    }
    for p in [tmp_sentinel, shm_sentinel] {
        let _ = std::fs::remove_file(p);
    }
    eprintln!("hostile suite: {} cases in {suite_time:?}", cases.len() + after.len());
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

/// The agent's data dir is a host path; a run should not learn it (nor, with it, where
/// the certificates and other jobs live): not through the /box mount's root in
/// /proc/self/mountinfo, init's command line (the agent's), nor stdin's link.
#[test]
fn host_paths_are_hidden_from_runs() {
    let judge = Judge::up(uid_base(6) + 8, &["--slots", "1"]);
    let data_dir = judge.data_dir.path().to_str().unwrap().to_string();
    let case = c(
        "host_paths_hidden",
        &r#"static const char *shows(const char *path, const char *needle) {
    static char b[1 << 16];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return en(errno);
    size_t len = 0; ssize_t r;
    while (len < sizeof b - 1 && (r = read(fd, b + len, sizeof b - 1 - len)) > 0) len += r;
    for (size_t i = 0; i < len; i++) if (!b[i]) b[i] = ' ';
    b[len] = 0;
    char *at = strstr(b, needle);
    if (!at) return "hidden";
    /* Show the line (or argument list) that gives it away. */
    char *start = at, *end = at;
    while (start > b && start[-1] != '\n') start--;
    while (*end && *end != '\n') end++;
    *end = 0;
    static char out[400];
    snprintf(out, sizeof out, "shows it: %.300s", start);
    return out;
}
int main(void) {
    printf("data dir in mountinfo %s\n", shows("/proc/self/mountinfo", "@DATA_DIR@"));
    printf("data dir in init's cmdline %s\n", shows("/proc/1/cmdline", "@DATA_DIR@"));
    char l[512] = {0};
    readlink("/proc/self/fd/0", l, sizeof l - 1);
    printf("data dir in stdin's link %s\n", strstr(l, "@DATA_DIR@") ? l : "hidden");
    return 0;
}"#
            .replace("@DATA_DIR@", &data_dir),
        "data dir in mountinfo hidden\ndata dir in init's cmdline ENOENT\ndata dir in stdin's link hidden\n",
    );
    let id = judge.submit(&case.body());
    let r = judge.result(id, Duration::from_secs(120));
    report(&case, &r);
    let problems = check(&case, &r);
    assert!(judge.stop().success());
    let left = processes_with_uid((uid_base(6) + 8)..(uid_base(6) + 12));
    assert!(left.is_empty(), "processes of runs survived: {left:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The compile step writes to /box; with `-wrapper` (or any compiler run long enough)
/// one submission could fill the host's disk if /box were host disk. It is a 256 MiB
/// tmpfs; the script tries 5 files of 64 MiB, then removes them so the link succeeds.
#[test]
fn compile_writes_to_box_are_bounded() {
    let judge = Judge::up(uid_base(6) + 12, &["--slots", "1"]);
    let script = "t=0\nfor i in 1 2 3 4 5; do\n  head -c 67108864 /dev/zero > /box/judge-hostile-fill-$i 2>/dev/null && t=$((t+64))\ndone\nrm -f /box/judge-hostile-fill-*\necho $t > /box/judge-hostile-report";
    let program = r#"int main(void) {
    FILE *f = fopen("/box/judge-hostile-report", "r");
    int mib = -1;
    if (!f || fscanf(f, "%d", &mib) != 1) { printf("no report\n"); return 0; }
    if (mib <= 256) printf("compile's writes to /box bounded\n");
    else printf("compile's writes to /box unbounded: %d MiB written\n", mib);
    return 0;
}"#;
    let r = judge0_with_compiler_options(
        &judge,
        &wrapper_polyglot(script, program),
        "-wrapper /bin/sh,main.c",
        "compile's writes to /box bounded\n",
    );
    eprintln!("compile_fills_box      {r}");
    assert!(judge.stop().success());
    let left = processes_with_uid((uid_base(6) + 12)..(uid_base(6) + 12) + 4);
    assert!(left.is_empty(), "processes of runs survived: {left:?}");
    assert_eq!(r["status_id"], 3, "{r}");
}

/// inotify on the shared read-only binds (/usr) shows a run when anyone else — other
/// runs, the host — opens a toolchain file: the same side channel between concurrent runs
/// for which rootfs/seccomp.toml denies flock. Here the host opens a file under /usr
/// while the run watches it.
#[test]
fn runs_cannot_watch_shared_files() {
    const WATCHED: &str = "/usr/share/common-licenses/GPL-3";
    assert!(Path::new(WATCHED).exists(), "{WATCHED} is missing on this host");
    let judge = Judge::up(uid_base(6) + 4, &["--slots", "1"]);
    let case = c(
        "inotify_shared_files",
        &r#"#include <poll.h>
#include <sys/inotify.h>
int main(void) {
    int fd = inotify_init1(0);
    if (fd < 0 || inotify_add_watch(fd, "@WATCHED@", IN_OPEN | IN_ACCESS) < 0) {
        printf("cannot observe other processes' file accesses\n");
        return 0;
    }
    struct pollfd p = { fd, POLLIN, 0 };
    if (poll(&p, 1, 3000) == 1) printf("observed another process opening @WATCHED@\n");
    else printf("cannot observe other processes' file accesses\n");
    return 0;
}"#
        .replace("@WATCHED@", WATCHED),
        "cannot observe other processes' file accesses\n",
    )
    .limits(1000, 5000, 64);
    let id = judge.submit(&case.body());
    // The host opens the file until the run is done (the run never opens it itself).
    let start = Instant::now();
    let r = loop {
        drop(std::fs::File::open(WATCHED).unwrap());
        let v: Value = reqwest::blocking::get(judge.url(&format!("/api/submissions/{id}"))).unwrap().json().unwrap();
        if v["status"] == "done" {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "not done: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    report(&case, &r);
    let problems = check(&case, &r);
    assert!(judge.stop().success());
    let left = processes_with_uid((uid_base(6) + 4)..(uid_base(6) + 8));
    assert!(left.is_empty(), "processes of runs survived: {left:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// v1 groups of each hierarchy the agent uses, made by root below this process's own and
/// handed to `uid`, as an administrator delegates them to a non-root agent. Removed (with
/// whatever the agent left below) on drop.
struct DelegatedCgroups {
    dirs: Vec<std::path::PathBuf>,
}

impl DelegatedCgroups {
    fn new(uid: u32) -> DelegatedCgroups {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let mut dirs = Vec::new();
        for controller in ["memory", "pids", "cpuacct", "cpuset"] {
            let point = mountinfo.lines().find_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                let mut post = post.split(' ');
                let fstype = post.next()?;
                let opts = post.nth(1)?;
                (fstype == "cgroup" && opts.split(',').any(|o| o == controller)).then(|| pre.split(' ').nth(4).map(str::to_string))?
            });
            let point = point.unwrap_or_else(|| panic!("this test needs a cgroup v1 {controller} hierarchy (hybrid host)"));
            let path = own
                .lines()
                .find_map(|l| {
                    let mut p = l.splitn(3, ':');
                    let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
                    ctrls.split(',').any(|c| c == controller).then(|| path.to_string())
                })
                .unwrap();
            let dir = Path::new(&point).join(path.trim_start_matches('/')).join(format!("judge-rootless-{}", std::process::id()));
            std::fs::create_dir(&dir).unwrap();
            if controller == "cpuset" {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(dir.parent().unwrap().join(file)).unwrap();
                    std::fs::write(dir.join(file), value.trim()).unwrap();
                }
            }
            std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                std::os::unix::fs::chown(e.path(), Some(uid), Some(uid)).unwrap();
            }
            dirs.push(dir);
        }
        DelegatedCgroups { dirs }
    }
}

impl Drop for DelegatedCgroups {
    fn drop(&mut self) {
        fn remove(dir: &Path) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    remove(&e.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        for dir in &self.dirs {
            remove(dir);
        }
    }
}

/// The non-root mode (issue 3): an agent started as an unprivileged uid, with v1 cgroups
/// delegated to it and no capabilities on the host, enters a user namespace of its own
/// and judges a subset of the suite (bombs of every kind, limits, escapes, denied
/// syscalls, the probe) with the same verdicts as root, plus plain AC/TLE/MLE runs; then
/// the host is untouched. Runs there are all the agent's uid on the host, and one
/// difference shows: signals to the run's init are allowed (same uid) and dropped by the
/// kernel (a pid namespace's init ignores what it has no handler for). `setuid_binary`
/// is left out: its precondition (the host's setuid helper shows as owned by root) does
/// not hold where host root is unmapped (it shows as 65534); nosuid and no_new_privs
/// are checked by the probe.
#[test]
fn an_unprivileged_agent_judges_in_a_user_namespace() {
    use std::os::unix::process::CommandExt;
    let uid = uid_base(7);
    let sentinel_dir = tempfile::tempdir().unwrap();
    let host_sentinel = sentinel_dir.path().join("judge-hostile-sentinel");
    std::fs::write(&host_sentinel, SENTINEL).unwrap();
    let cgroups = DelegatedCgroups::new(uid);
    let (judge, agent_addr) = Judge::serve_without_agent(uid);
    let home = tempfile::tempdir().unwrap();
    let tls = home.path().join("tls");
    let status = std::process::Command::new(judge_tests::bin_dir().join("coordinator"))
        .args(["issue-agent-cert", "--agent-id", "rootless", "--data-dir"])
        .arg(judge.data_dir.path())
        .arg("--out")
        .arg(&tls)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    for p in [home.path(), tls.as_path(), &tls.join("ca.pem"), &tls.join("agent.pem"), &tls.join("agent.key")] {
        std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
    }
    let tasks: Vec<std::ffi::CString> = cgroups
        .dirs
        .iter()
        .map(|d| std::ffi::CString::new(d.join("tasks").into_os_string().into_encoded_bytes()).unwrap())
        .collect();
    let mut cmd = std::process::Command::new(judge_tests::bin_dir().join("sandbox-agent"));
    cmd.args(["--coordinator", &agent_addr, "--agent-id", "rootless", "--slots", "2", "--metrics-listen", "127.0.0.1:0"])
        .arg("--tls-dir")
        .arg(&tls)
        .arg("--work-dir")
        .arg(home.path().join("work"))
        .args(["--uid-base", &uid.to_string()])
        .uid(uid)
        .gid(uid)
        .stdout(std::process::Stdio::null());
    // SAFETY: the closure runs in the forked child before exec, after it became `uid`,
    // and only makes open/write/close calls on strings built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // Into the delegated groups, as the agent's uid: its runs' groups go below.
            for t in &tasks {
                let fd = libc::open(t.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
            Ok(())
        });
    }
    let mut agent = cmd.spawn().unwrap();
    judge.wait_for(Duration::from_secs(60), |h| h["agents"]["connected"].as_u64() >= Some(1));

    let subset = [
        "fork_bomb", "python_fork_capped", "thread_bomb", "zombie_flood", "malloc_bomb", "mmap_bomb", "stack_bomb",
        "huge_mmap_untouched", "python_memory_bomb", "tmp_fill", "shm_fill", "stdout_flood", "busy_loop", "busy_threads",
        "sleep_past_wall", "double_fork_daemon", "setsid_escape", "kill_minus_one", "ptrace_parent", "etc_shadow",
        "host_proc", "write_sys_cgroupfs", "write_host_toolchain", "connect_outside", "af_packet_raw", "keyctl",
        "unshare_user_mount", "x32_syscall", "inherited_fds", "workdir_symlink", "io_uring", "bpf",
        "perf_event_open", "clock_hostname", "fd_exhaustion", "core_dump", "probe",
    ];
    let mut cases: Vec<Case> = cases(host_sentinel.to_str().unwrap()).into_iter().filter(|c| subset.contains(&c.name)).collect();
    let found: BTreeSet<&str> = cases.iter().map(|c| c.name).collect();
    let missing: Vec<&&str> = subset.iter().filter(|n| !found.contains(*n)).collect();
    assert!(missing.is_empty(), "no such cases: {missing:?}");
    cases.push(Case {
        input: "40 2\n",
        ..c("rootless_ac", "int main(void) { long a, b; scanf(\"%ld %ld\", &a, &b); printf(\"%ld\\n\", a + b); return 0; }", "42\n")
    });
    cases.push(tle(py("rootless_tle_cpu", "while True:\n    pass\n", ""), "cpu"));
    cases.push(tle(c("rootless_tle_wall", "int main(void) { sleep(30); return 0; }", ""), "wall"));
    cases.push(mle(py("rootless_mle", "b = []\nwhile True:\n    b.append(bytearray(1 << 20))\n", "")));
    cases.push(c(
        "rootless_signal_init",
        "int main(void) { CALL(\"kill init SIGKILL\", kill(1, SIGKILL)); CALL(\"kill init SIGSTOP\", kill(1, SIGSTOP));\n\
         CALL(\"kill init SIGTERM\", kill(1, SIGTERM)); usleep(100000); printf(\"alive\\n\"); return 0; }",
        "kill init SIGKILL ok\nkill init SIGSTOP ok\nkill init SIGTERM ok\nalive\n",
    ));
    let mut failures = Vec::new();
    run_phase(&judge, &cases, &mut failures);

    // SAFETY: signalling our own child, not yet reaped.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let agent_status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the agent did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    if !agent_status.success() {
        failures.push(format!("agent exit status {agent_status:?}"));
    }
    assert!(judge.stop().success());
    let left = processes_with_uid(uid..uid + 1);
    if !left.is_empty() {
        failures.push(format!("processes of the agent's uid survived: {left:?}"));
    }
    let leftover = leftover_run_cgroups();
    if !leftover.is_empty() {
        failures.push(format!("run cgroups left behind: {leftover:?}"));
    }
    if std::fs::read_to_string(&host_sentinel).unwrap_or_default() != SENTINEL {
        failures.push("the host sentinel changed".into());
    }
    drop(cgroups);
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}
