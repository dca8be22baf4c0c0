//! One run of an untrusted program, isolated and measured.
//!
//! Per run: a clone into fresh pid, mount, net, ipc and uts namespaces (and a cgroup
//! namespace once inside its cgroup); a pivot_root into a root assembled from the
//! `rootfs` spec; an unprivileged uid/gid with every capability dropped and
//! no_new_privs; rlimits as a backstop; a cgroup for memory, pids and CPU accounting.
//! The parent watches the run on a pidfd and its pipes, enforces the CPU and wall limits
//! from the cgroup's readings, and stops a run by SIGKILLing its init, which makes the
//! kernel kill everything else in the run's pid namespace.

pub mod cgroup;
mod child;
mod sys;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cgroup::{CgroupError, CgroupLimits, CgroupManager, RunCgroup};
use child::{ChildFds, Plan, Step};
use protocol::LimitHit;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{what}: {source}")]
    Io { what: &'static str, source: io::Error },
    #[error("sandbox set-up failed at {step}: {errno}")]
    Setup { step: String, errno: io::Error },
    #[error("invalid run: {0}")]
    Invalid(String),
    #[error("the agent is shutting down")]
    Aborted,
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Io { what, source }
}

/// Limits of one run, all enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    pub cpu: Duration,
    pub wall: Duration,
    pub memory_bytes: u64,
    pub max_processes: u32,
    /// Bytes allowed on stdout and on stderr each; more stops the run.
    pub output_bytes: u64,
    /// Largest file the program may write (RLIMIT_FSIZE) and the size of its /tmp.
    pub file_bytes: u64,
    pub open_files: u64,
    pub stack_bytes: u64,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    pub argv: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    /// Host directory that appears as /box, the working directory.
    pub box_dir: &'a Path,
    pub box_writable: bool,
    /// Host file the program reads as stdin.
    pub stdin: &'a Path,
    pub limits: RunLimits,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Measurements and outcome of one run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub exit: Exit,
    pub cpu: Duration,
    pub wall: Duration,
    pub peak_memory_bytes: u64,
    /// From the clone to the program's exec: the sandbox's own cost, included in `wall`.
    pub setup: Duration,
    /// The limit that stopped the run, if one did.
    pub limit: Option<LimitHit>,
    /// Forks refused by the pids limit.
    pub pids_limit_hits: u64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs programs in sandboxes. Shared by all slots of the agent.
pub struct Sandbox {
    cgroups: CgroupManager,
    mounts: rootfs::Mounts,
    /// An empty host directory each run mounts its root tmpfs on, in its own mount ns.
    root_mountpoint: PathBuf,
    cap_last: u32,
    cpus: u32,
    aborted: AtomicBool,
}

/// Names run cgroups uniquely across every `Sandbox` of the process.
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

const NS_FLAGS: u64 = (libc::CLONE_NEWPID
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_PIDFD) as u64;

impl Sandbox {
    /// `work_dir` is the agent's private directory (mode 0700 is set on it).
    pub fn new(work_dir: &Path, mounts: rootfs::Mounts) -> Result<Sandbox, SandboxError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(SandboxError::Invalid("the agent must run as root (user namespaces come later)".into()));
        }
        let cgroups = CgroupManager::detect()?;
        cgroups.remove_stale();
        let root_mountpoint = work_dir.join("sandbox-root");
        std::fs::create_dir_all(&root_mountpoint).map_err(io_err("create the sandbox root mountpoint"))?;
        let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        tracing::info!(cgroup_v2 = cgroups.is_v2(), cpus, "sandbox ready");
        Ok(Sandbox { cgroups, mounts, root_mountpoint, cap_last, cpus, aborted: AtomicBool::new(false) })
    }

    /// Stops every run in progress (each ends with `SandboxError::Aborted`) and refuses
    /// new ones: the agent is shutting down.
    pub fn abort_all(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }

    /// Runs one program to completion. Blocking: call from a blocking thread.
    pub fn run(&self, spec: &RunSpec<'_>) -> Result<RunOutcome, SandboxError> {
        if self.aborted.load(Ordering::SeqCst) {
            return Err(SandboxError::Aborted);
        }
        let plan = self.plan(spec)?;
        let argv: Vec<*const libc::c_char> =
            plan.argv.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let envp: Vec<*const libc::c_char> =
            plan.env.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();

        let name = format!("run-{}-{}", std::process::id(), RUN_COUNTER.fetch_add(1, Ordering::Relaxed));
        let cg = self.cgroups.create(
            &name,
            CgroupLimits { memory_bytes: spec.limits.memory_bytes, max_processes: spec.limits.max_processes },
        )?;
        let result = self.run_in(spec, &plan, &argv, &envp, &cg);
        // A normal end leaves the group empty (the namespace dies with init); anything
        // else is killed before the group is removed.
        if !cg.is_empty().unwrap_or(true) {
            cg.kill_all();
            for _ in 0..1000 {
                if cg.is_empty().unwrap_or(true) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        cg.remove();
        result
    }

    fn run_in(
        &self,
        spec: &RunSpec<'_>,
        plan: &Plan,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
        cg: &RunCgroup,
    ) -> Result<RunOutcome, SandboxError> {
        let stdin = std::fs::File::open(spec.stdin).map_err(io_err("open the input"))?;
        let stdin = high_fd(stdin.into())?;
        let (sync_r, sync_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (errout_r, errout_w) = pipe()?;
        let fds = ChildFds {
            sync_read: sync_r.as_raw_fd(),
            error_write: err_w.as_raw_fd(),
            status_write: status_w.as_raw_fd(),
            stdin: stdin.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: errout_w.as_raw_fd(),
        };

        let start = Instant::now();
        // SAFETY: the child only runs `init_main`, which makes syscalls on data built
        // above (plan, argv, envp, fds) and never returns.
        let (pid, pidfd) = unsafe { sys::clone3(NS_FLAGS) }.map_err(io_err("clone the sandbox"))?;
        if pid == 0 {
            child::init_main(plan, argv, envp, fds);
        }
        // SAFETY: CLONE_PIDFD gave us this new descriptor; we own it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        drop((sync_r, err_w, status_w, stdin, out_w, errout_w));

        // Into the cgroup before init may go on: nothing of the run is ever unaccounted.
        if let Err(e) = cg.add_process(pid) {
            kill_and_reap(pid);
            return Err(e.into());
        }
        sys::write_all(sync_w.as_raw_fd(), b"g");
        drop(sync_w);

        let mut capture = Capture { bufs: [Vec::new(), Vec::new()], open: [true, true], cap: watched_cap(spec) };
        let pipes = [&out_r, &errout_r];
        let mut setup = SetupWatch { report: Vec::new(), exec_at: None };
        let watched = self.watch(spec, cg, &pidfd, pipes, &mut capture, (&err_r, &mut setup), start);
        let killed_for = match watched {
            Ok(k) => k,
            Err(e) => {
                kill_and_reap(pid);
                return Err(e);
            }
        };
        let wall = start.elapsed();
        reap(pid);
        capture.drain(pipes)?;
        let [mut stdout, mut stderr] = capture.bufs;
        let output_cap = usize::try_from(spec.limits.output_bytes).unwrap_or(usize::MAX);
        let overflow = stdout.len() > output_cap || stderr.len() > output_cap;
        stdout.truncate(output_cap);
        stderr.truncate(output_cap);

        setup.finish(&err_r);
        if let Some((step, errno)) = setup.failure() {
            let name = match step {
                child::STEP_SYNC => "joining the cgroup".to_string(),
                child::STEP_FORK => "forking the program".into(),
                child::STEP_FDS => "setting up descriptors".into(),
                child::STEP_RLIMIT => "setting rlimits".into(),
                child::STEP_PRIVILEGES => "dropping privileges".into(),
                child::STEP_CHDIR => "entering /box".into(),
                child::STEP_EXEC => format!("executing {}", spec.argv.first().map_or("", String::as_str)),
                child::STEP_CGROUP_NS => "creating the cgroup namespace".into(),
                i => plan.step_names.get(i as usize).cloned().unwrap_or_else(|| format!("step {i}")),
            };
            return Err(SandboxError::Setup { step: name, errno: io::Error::from_raw_os_error(errno) });
        }
        let status = read_status(&status_r);

        let cpu = Duration::from_nanos(cg.cpu_usage_ns()?);
        let peak = cg.memory_peak_bytes()?;
        let oom = cg.oom_kills()?;
        let pids_hits = cg.pids_limit_hits().unwrap_or(0);
        let exit = match status {
            Some(s) if libc::WIFEXITED(s) => Exit::Code(libc::WEXITSTATUS(s)),
            Some(s) if libc::WIFSIGNALED(s) => Exit::Signal(libc::WTERMSIG(s)),
            // Init was killed before it could report: the run was stopped by us.
            _ => Exit::Signal(libc::SIGKILL),
        };
        let limit = killed_for.or_else(|| {
            if overflow {
                Some(LimitHit::Output)
            } else if oom > 0 {
                Some(LimitHit::Memory)
            } else if cpu > spec.limits.cpu || exit == Exit::Signal(libc::SIGXCPU) {
                Some(LimitHit::Cpu)
            } else if exit == Exit::Signal(libc::SIGXFSZ) {
                Some(LimitHit::Output)
            } else if pids_hits > 0 && exit != Exit::Code(0) {
                Some(LimitHit::Processes)
            } else {
                None
            }
        });
        let setup = setup.exec_at.map_or(wall, |t| t.duration_since(start));
        Ok(RunOutcome { exit, cpu, wall, peak_memory_bytes: peak, setup, limit, pids_limit_hits: pids_hits, stdout, stderr })
    }

    /// Waits for init to exit while reading output and enforcing the CPU, wall and
    /// output limits. Returns the limit it stopped the run for, if any.
    fn watch(
        &self,
        spec: &RunSpec<'_>,
        cg: &RunCgroup,
        pidfd: &OwnedFd,
        pipes: [&OwnedFd; 2],
        capture: &mut Capture,
        (err_pipe, setup): (&OwnedFd, &mut SetupWatch),
        start: Instant,
    ) -> Result<Option<LimitHit>, SandboxError> {
        loop {
            let elapsed = start.elapsed();
            let cpu = Duration::from_nanos(cg.cpu_usage_ns()?);
            let hit = if self.aborted.load(Ordering::SeqCst) {
                kill_pidfd(pidfd);
                return Err(SandboxError::Aborted);
            } else if elapsed >= spec.limits.wall {
                Some(LimitHit::Wall)
            } else if cpu > spec.limits.cpu {
                Some(LimitHit::Cpu)
            } else if capture.bufs.iter().any(|b| b.len() as u64 > spec.limits.output_bytes) {
                Some(LimitHit::Output)
            } else {
                None
            };
            if let Some(hit) = hit {
                kill_pidfd(pidfd);
                return Ok(Some(hit));
            }
            // CPU time can grow at most `cpus` times faster than the wall clock, so this
            // is the earliest moment either limit can be reached: no busy polling.
            let cpu_left = spec.limits.cpu.saturating_sub(cpu) / self.cpus;
            let wait = cpu_left.min(spec.limits.wall - elapsed).clamp(Duration::from_millis(1), Duration::from_millis(500));
            let watch = |i: usize| if capture.open[i] { pipes[i].as_raw_fd() } else { -1 };
            let setup_fd = if setup.exec_at.is_none() { err_pipe.as_raw_fd() } else { -1 };
            let mut pfds = [
                libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: watch(0), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: watch(1), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: setup_fd, events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: `pfds` is a valid array of 4 pollfds for the duration of the call.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), 4, wait.as_millis() as libc::c_int) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SandboxError::Io { what: "poll the run", source: e });
            }
            for i in 0..2 {
                if pfds[i + 1].revents != 0 {
                    capture.read(i, pipes[i])?;
                }
            }
            if pfds[3].revents != 0 {
                setup.read(err_pipe);
            }
            if pfds[0].revents != 0 {
                return Ok(None);
            }
        }
    }

    /// Builds every string and step the child needs, before the clone.
    fn plan(&self, spec: &RunSpec<'_>) -> Result<Plan, SandboxError> {
        let cstr = |s: &[u8]| CString::new(s).map_err(|_| SandboxError::Invalid("NUL byte in a path or argument".into()));
        let root = self.root_mountpoint.as_os_str().as_bytes();
        let under = |p: &Path| cstr(&[root, p.as_os_str().as_bytes()].concat());
        let mut steps = Vec::new();
        let mut names = Vec::new();
        let mut add = |name: String, step: Step| {
            names.push(name);
            steps.push(step);
        };
        let ro = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        add("making mounts private".into(), Step::PrivateRoot);
        add(
            "mounting the root tmpfs".into(),
            Step::Mount {
                src: Some(cstr(b"tmpfs")?),
                dst: cstr(root)?,
                fstype: Some(cstr(b"tmpfs")?),
                flags: libc::MS_NOSUID | libc::MS_NODEV,
                data: Some(cstr(b"size=1m,nr_inodes=4096,mode=0755")?),
            },
        );
        for b in &self.mounts.bind {
            let Ok(meta) = std::fs::metadata(&b.source) else {
                if b.optional {
                    continue;
                }
                return Err(SandboxError::Invalid(format!("bind source {} is missing", b.source.display())));
            };
            let target = b.target();
            for dir in target.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev().skip(1) {
                add(format!("creating {}", dir.display()), Step::Mkdir(under(dir)?, 0o755));
            }
            let dst = under(target)?;
            if meta.is_dir() {
                add(format!("creating {}", target.display()), Step::Mkdir(dst.clone(), 0o755));
            } else {
                add(format!("creating {}", target.display()), Step::Touch(dst.clone()));
            }
            add(
                format!("bind-mounting {}", b.source.display()),
                Step::Mount {
                    src: Some(cstr(b.source.as_os_str().as_bytes())?),
                    dst: dst.clone(),
                    fstype: None,
                    flags: libc::MS_BIND | libc::MS_REC,
                    data: None,
                },
            );
            add(format!("making {} read-only", target.display()), Step::Remount { dst, flags: ro });
        }
        for s in &self.mounts.symlink {
            add(
                format!("linking {}", s.path.display()),
                Step::Symlink { target: cstr(s.target.as_os_str().as_bytes())?, path: under(&s.path)? },
            );
        }
        let boxd = under(Path::new("/box"))?;
        add("creating /box".into(), Step::Mkdir(boxd.clone(), 0o755));
        add(
            "bind-mounting the work dir".into(),
            Step::Mount {
                src: Some(cstr(spec.box_dir.as_os_str().as_bytes())?),
                dst: boxd.clone(),
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            },
        );
        let box_flags = if spec.box_writable { libc::MS_NOSUID | libc::MS_NODEV } else { ro };
        add("setting /box flags".into(), Step::Remount { dst: boxd, flags: box_flags });
        let tmp = under(Path::new("/tmp"))?;
        add("creating /tmp".into(), Step::Mkdir(tmp.clone(), 0o755));
        let tmp_opts = format!("size={},nr_inodes=4096,mode=1777", spec.limits.file_bytes.max(4096));
        add(
            "mounting /tmp".into(),
            Step::Mount {
                src: Some(cstr(b"tmpfs")?),
                dst: tmp,
                fstype: Some(cstr(b"tmpfs")?),
                flags: libc::MS_NOSUID | libc::MS_NODEV,
                data: Some(cstr(tmp_opts.as_bytes())?),
            },
        );
        let proc_dir = under(Path::new("/proc"))?;
        add("creating /proc".into(), Step::Mkdir(proc_dir.clone(), 0o755));
        add(
            "mounting /proc".into(),
            Step::Mount {
                src: Some(cstr(b"proc")?),
                dst: proc_dir,
                fstype: Some(cstr(b"proc")?),
                flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: None,
            },
        );
        let dev = under(Path::new("/dev"))?;
        add("creating /dev".into(), Step::Mkdir(dev.clone(), 0o755));
        add(
            "mounting /dev".into(),
            Step::Mount {
                src: Some(cstr(b"tmpfs")?),
                dst: dev.clone(),
                fstype: Some(cstr(b"tmpfs")?),
                flags: libc::MS_NOSUID | libc::MS_NOEXEC,
                data: Some(cstr(b"size=64k,nr_inodes=64,mode=0755")?),
            },
        );
        for (name, minor) in [("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)] {
            add(
                format!("creating /dev/{name}"),
                Step::CharDevice { path: under(&Path::new("/dev").join(name))?, major: 1, minor },
            );
        }
        for (name, target) in
            [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]
        {
            add(
                format!("linking /dev/{name}"),
                Step::Symlink { target: cstr(target.as_bytes())?, path: under(&Path::new("/dev").join(name))? },
            );
        }
        add("making /dev read-only".into(), Step::Remount { dst: dev, flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC });
        add("pivoting into the new root".into(), Step::PivotRoot(cstr(root)?));
        add(
            "making / read-only".into(),
            Step::Remount { dst: cstr(b"/")?, flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV },
        );
        add("setting the hostname".into(), Step::Hostname(cstr(b"judge")?));

        if spec.argv.is_empty() {
            return Err(SandboxError::Invalid("empty command".into()));
        }
        let argv = spec.argv.iter().map(|a| cstr(a.as_bytes())).collect::<Result<_, _>>()?;
        let env = spec.env.iter().map(|(k, v)| cstr(format!("{k}={v}").as_bytes())).collect::<Result<_, _>>()?;
        let l = spec.limits;
        // RLIMIT_CPU is a backstop one second past the limit; the watcher acts first.
        let cpu_secs = l.cpu.as_secs() + 2;
        let rlimits = vec![
            (libc::RLIMIT_CPU, cpu_secs),
            (libc::RLIMIT_FSIZE, l.file_bytes),
            (libc::RLIMIT_NOFILE, l.open_files),
            (libc::RLIMIT_STACK, l.stack_bytes),
            (libc::RLIMIT_CORE, 0),
            (libc::RLIMIT_MEMLOCK, 0),
            (libc::RLIMIT_MSGQUEUE, 0),
        ];
        Ok(Plan {
            steps,
            step_names: names,
            argv,
            env,
            cwd: cstr(b"/box")?,
            rlimits,
            uid: spec.uid,
            gid: spec.gid,
            cap_last: self.cap_last,
        })
    }
}

/// Output beyond the limit is not kept; one byte more than the limit tells it was hit.
fn watched_cap(spec: &RunSpec<'_>) -> usize {
    usize::try_from(spec.limits.output_bytes.saturating_add(1)).unwrap_or(usize::MAX)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io_err("create a pipe")(io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two new descriptors that we now own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((high_fd(r)?, high_fd(w)?))
}

/// Moves a descriptor to 10 or above, so the child's fixed descriptor numbers 3..=8
/// never collide with one it still has to duplicate.
fn high_fd(fd: OwnedFd) -> Result<OwnedFd, SandboxError> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one we then own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(io_err("duplicate a descriptor")(io::Error::last_os_error()));
    }
    // SAFETY: `n` is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// The run's stdout and stderr, each kept up to `cap` bytes.
struct Capture {
    bufs: [Vec<u8>; 2],
    open: [bool; 2],
    /// One byte more than the output limit, so an overflow is visible.
    cap: usize,
}

impl Capture {
    /// Reads what a readable pipe holds; marks it closed at end of file.
    fn read(&mut self, i: usize, fd: &OwnedFd) -> Result<(), SandboxError> {
        let mut chunk = [0u8; 65536];
        // SAFETY: reading into a local buffer of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(io_err("read output")(e)) };
        }
        if n == 0 {
            self.open[i] = false;
            return Ok(());
        }
        let buf = &mut self.bufs[i];
        let room = self.cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..(n as usize).min(room)]);
        Ok(())
    }

    /// Reads the rest after the run ended. Every writer is dead by then (the namespace
    /// died with init), so end of file comes at once; the deadline only guards against
    /// a descriptor leaked into a process outside the run.
    fn drain(&mut self, pipes: [&OwnedFd; 2]) -> Result<(), SandboxError> {
        let deadline = Instant::now() + Duration::from_secs(2);
        for i in 0..2 {
            while self.open[i] {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut pfd = libc::pollfd { fd: pipes[i].as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd for the duration of the call.
                let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
                if n == 0 {
                    tracing::warn!("output pipe still open after the run ended; giving up on it");
                    break;
                }
                if n > 0 {
                    self.read(i, pipes[i])?;
                }
            }
        }
        Ok(())
    }
}

/// The error pipe: a failure report from the child, or end of file at the exec.
struct SetupWatch {
    report: Vec<u8>,
    exec_at: Option<Instant>,
}

impl SetupWatch {
    fn read(&mut self, fd: &OwnedFd) {
        let mut buf = [0u8; 8];
        // SAFETY: reading into a local buffer of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => self.exec_at = Some(Instant::now()),
            n if n > 0 => self.report.extend_from_slice(&buf[..n as usize]),
            _ => {}
        }
    }

    /// Reads what is left once the run is over (every writer is gone by then).
    fn finish(&mut self, fd: &OwnedFd) {
        while self.exec_at.is_none() && self.report.len() < 8 {
            let before = self.report.len();
            self.read(fd);
            if self.exec_at.is_none() && self.report.len() == before {
                break;
            }
        }
    }

    /// The (step, errno) the child reported, if it failed before or at exec.
    fn failure(&self) -> Option<(u32, i32)> {
        let b = self.report.get(..8)?;
        let step = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let errno = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]) as i32;
        Some((step, errno))
    }
}

fn read_status(fd: &OwnedFd) -> Option<i32> {
    let mut buf = [0u8; 4];
    // SAFETY: reading into a local buffer of the given length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
    (n == 4).then(|| i32::from_ne_bytes(buf))
}

/// Kills a run's init, and with it the whole pid namespace.
fn kill_pidfd(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal on our own un-reaped child's pidfd: it cannot hit a
    // recycled pid.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGKILL, 0, 0) };
}

fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid out-pointer.
    while unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } < 0 && sys::errno() == libc::EINTR {}
}

fn kill_and_reap(pid: i32) {
    // SAFETY: `pid` is our own child, not yet reaped, so it cannot be a recycled pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    reap(pid);
}
