//! One run of an untrusted program, isolated and measured.
//!
//! Per run: pid, mount, net, ipc and uts namespaces of its own — a pooled sandbox
//! (`holder`) reset to a clean state since its previous run, or made for this run
//! alone — and a cgroup namespace once inside its cgroup; a root assembled from the
//! `rootfs` spec; an unprivileged uid/gid with every capability dropped and
//! no_new_privs; a seccomp filter; rlimits as a backstop; a cgroup for memory, pids and
//! CPU accounting. The parent watches the run on its pipes and the holder's socket (or
//! init's pidfd), enforces the CPU and wall limits from the cgroup's readings, and stops
//! a run by SIGKILLing the program, after which its holder kills everything else in its
//! pid namespace (a fresh run: SIGKILLing init, whose namespace the kernel then kills).

pub mod cgroup;
mod child;
mod holder;
mod privilege;
mod monitor;
mod netns;
mod plan;
pub mod seccomp;
mod sys;

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cgroup::{CgroupError, CgroupLimits, CgroupManager, RunCgroup};
use child::{ChildFds, Plan};
use monitor::{Capture, Ended, Monitor, SetupWatch, StepReader, Target};
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
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("the agent is shutting down")]
    Aborted,
    #[error("the run was cancelled")]
    Cancelled,
    #[error("{0}")]
    Unprivileged(String),
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
    /// Which seccomp filter applies: the judged program's, or a trusted tool's
    /// (compilers may take file locks).
    pub profile: Profile,
    /// The CPU this run is confined to (see `Sandbox::pinnable_cpus`), so concurrent
    /// runs do not disturb each other's timing.
    pub pin_cpu: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Program,
    Tool,
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
    /// Step lines handed to the observer, and those dropped by the step caps.
    pub steps: u64,
    pub steps_dropped: u64,
    /// Bytes the program wrote to stdout and stderr, including any beyond the cap.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// Context switches of the program's processes (from init's `RUSAGE_CHILDREN`;
    /// zero when the run was killed before reporting).
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// Caps of the step channel of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    pub max_steps: u64,
    pub max_line_bytes: usize,
    pub max_total_bytes: u64,
}

/// One line the program wrote to its step channel (descriptor 3), with the run's CPU
/// time and memory read from its cgroup the moment the line arrived.
#[derive(Debug)]
pub struct StepEvent<'a> {
    pub index: u64,
    pub line: &'a [u8],
    pub cpu: Duration,
    pub memory_bytes: u64,
    pub elapsed: Duration,
}

/// Receives the steps of a run as they arrive.
pub type StepSink<'a> = &'a mut dyn FnMut(StepEvent<'_>);

/// Optional extras of a run: a step channel and a cancel flag.
#[derive(Default)]
pub struct Observer<'a> {
    /// When set, the program gets the write end of a pipe as descriptor 3.
    pub steps: Option<(StepLimits, StepSink<'a>)>,
    /// Setting it stops the run within 100 ms (`SandboxError::Cancelled`).
    pub cancel: Option<&'a AtomicBool>,
}

/// Runs programs in sandboxes. Shared by all slots of the agent.
pub struct Sandbox {
    cgroups: CgroupManager,
    /// Where the template root is mounted (see `plan`).
    root_mountpoint: PathBuf,
    /// A mount namespace whose root is the template; each run starts from a copy.
    template_ns: OwnedFd,
    cap_last: u32,
    cpus: u32,
    aborted: AtomicBool,
    filters: Arc<seccomp::Filters>,
    /// Pre-created sandboxes that serve run after run (see `holder`).
    holders: holder::Pool,
    netns: netns::Pool,
    /// Empty, reset cgroups of finished runs, for the next ones (see `take_cgroup`).
    idle_cgroups: Mutex<Vec<RunCgroup>>,
    /// The runs' identity when the agent is not root (see `privilege`).
    mapped: Option<Mapped>,
    /// Mount namespaces of finished runs, dropped on a thread of their own (see
    /// `keep_mounts`).
    dropped_mounts: std::sync::mpsc::Sender<OwnedFd>,
}

pub use privilege::{Mapped, enter_agent_namespaces, mapped};

/// The uid a run given `uid` really has: in the agent's user namespace the runs' one
/// mapped uid is the only one there is (see `privilege`).
pub fn run_uid(uid: u32) -> u32 {
    mapped().map_or(uid, |m| m.uid)
}

/// Mounts a fresh tmpfs of at most `bytes` and `inodes` at `dir`, its root owned by `uid`
/// (a job's /box: see `judge`). Undo with `unmount`.
pub fn mount_tmpfs(dir: &Path, bytes: u64, inodes: u64, uid: u32) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let uid = run_uid(uid);
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let data = std::ffi::CString::new(format!("size={bytes},nr_inodes={inodes},mode=0755,uid={uid},gid={uid}"))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    sys::mount(Some(c"tmpfs"), &path, Some(c"tmpfs"), libc::MS_NOSUID | libc::MS_NODEV, Some(&data))
        .map_err(io::Error::from_raw_os_error)
}

/// Detaches whatever is mounted at `dir` (nothing happens when nothing is).
pub fn unmount(dir: &Path) {
    plan::remove_template(dir);
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.holders.clear();
        plan::remove_template(&self.root_mountpoint);
        if let Ok(idle) = self.idle_cgroups.get_mut() {
            for cg in idle.drain(..) {
                cg.remove();
            }
        }
    }
}

/// Holders a sandbox keeps at most: two per concurrent run, so that one resets while the
/// other serves, with room for interactive runs (two sandboxes per slot).
fn default_holders(cpus: u32) -> usize {
    (4 * cpus as usize).max(4)
}

/// A run's descriptors that its sandbox gets (the agent keeps the other ends).
struct RunFds {
    stdin: OwnedFd,
    out_w: OwnedFd,
    errout_w: OwnedFd,
    err_w: OwnedFd,
    steps_w: Option<OwnedFd>,
    box_tree: OwnedFd,
}

/// Names run cgroups uniquely across every `Sandbox` of the process.
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The network namespace is not among them: init joins a pooled empty one (`netns`);
/// nor the mount namespace: init copies the template's (`plan`), not the agent's.
const NS_FLAGS: u64 = (libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_PIDFD) as u64;

impl Sandbox {
    /// `work_dir` is the agent's private directory (mode 0700 is set on it).
    pub fn new(work_dir: &Path, spec: &rootfs::Spec) -> Result<Sandbox, SandboxError> {
        privilege::require_isolation()?;
        let mapped = mapped();
        let filters = Arc::new(seccomp::Filters::compile(&spec.seccomp)?);
        let cgroups = CgroupManager::detect()?;
        cgroups.remove_stale();
        let root_mountpoint = work_dir.join("sandbox-root");
        std::fs::create_dir_all(&root_mountpoint).map_err(io_err("create the sandbox root mountpoint"))?;
        plan::remove_template(&root_mountpoint);
        let empty_dir = work_dir.join("sandbox-empty");
        std::fs::create_dir_all(&empty_dir).map_err(io_err("create the overlays' empty layer"))?;
        plan::build_template(&root_mountpoint, &empty_dir, &spec.mounts, mapped.is_some())?;
        let template_ns = plan::template_namespace(&root_mountpoint)?;
        let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        tracing::info!(cgroup_v2 = cgroups.is_v2(), cpus, user_namespace = mapped.is_some(), "sandbox ready");
        let dropped_mounts = keep_mounts()?;
        let holders = holder::Pool::new(&template_ns, filters.clone(), mapped.is_some(), cap_last, default_holders(cpus))?;
        Ok(Sandbox {
            cgroups,
            root_mountpoint,
            template_ns,
            cap_last,
            cpus,
            aborted: AtomicBool::new(false),
            filters,
            holders,
            netns: netns::Pool::default(),
            idle_cgroups: Mutex::default(),
            mapped,
            dropped_mounts,
        })
    }

    /// CPUs runs can be pinned to; empty without a usable cpuset controller.
    pub fn pinnable_cpus(&self) -> Vec<u32> {
        self.cgroups.pinnable_cpus()
    }

    /// At most `n` pooled sandboxes (see `holder`); 0 sets every run up afresh, in
    /// namespaces made for it alone. The default is four per CPU.
    pub fn set_pool_size(&self, n: usize) {
        self.holders.set_max(n);
    }

    /// How many pooled sandboxes wait for a run (for tests of the pool).
    pub fn idle_holder_count(&self) -> usize {
        self.holders.idle_count()
    }

    /// The host pids of the pooled sandboxes' holders that wait for a run (for tests).
    pub fn idle_holder_pids(&self) -> Vec<i32> {
        self.holders.idle_pids()
    }

    /// How many cgroups of finished runs wait for the next (for tests of their reuse).
    pub fn idle_cgroup_count(&self) -> usize {
        self.idle_cgroups.lock().map_or(0, |v| v.len())
    }

    /// Stops every run in progress (each ends with `SandboxError::Aborted`) and refuses
    /// new ones: the agent is shutting down.
    pub fn abort_all(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }

    /// Runs one program to completion. Blocking: call from a blocking thread.
    pub fn run(&self, spec: &RunSpec<'_>) -> Result<RunOutcome, SandboxError> {
        self.run_observed(spec, Observer::default())
    }

    /// Runs one program with a step channel and/or a cancel flag.
    pub fn run_observed(&self, spec: &RunSpec<'_>, observer: Observer<'_>) -> Result<RunOutcome, SandboxError> {
        self.run_with(spec, observer, None)
    }

    /// Runs one program whose stdin and stdout are the given descriptors (pipes to
    /// another run, for interactive problems) instead of `spec.stdin` and a captured
    /// stdout; `RunOutcome::stdout` is then empty. stderr is captured as usual.
    pub fn run_piped(&self, spec: &RunSpec<'_>, stdin: OwnedFd, stdout: OwnedFd) -> Result<RunOutcome, SandboxError> {
        self.run_with(spec, Observer::default(), Some((stdin, stdout)))
    }

    fn run_with(
        &self,
        spec: &RunSpec<'_>,
        observer: Observer<'_>,
        piped: Option<(OwnedFd, OwnedFd)>,
    ) -> Result<RunOutcome, SandboxError> {
        if self.aborted.load(Ordering::SeqCst) {
            return Err(SandboxError::Aborted);
        }
        let plan = self.plan(spec, observer.steps.is_some())?;

        let limits = CgroupLimits {
            memory_bytes: spec.limits.memory_bytes,
            max_processes: spec.limits.max_processes,
            cpu: spec.pin_cpu,
        };
        let cg = self.take_cgroup(limits)?;
        let result = self.run_in(spec, &plan, &cg, observer, piped);
        self.put_cgroup(cg);
        result
    }

    /// A cgroup for one run: an idle one of an earlier run, reset (creating a group
    /// costs several mkdirs, limit writes and rmdirs per run), or a new one.
    fn take_cgroup(&self, limits: CgroupLimits) -> Result<RunCgroup, SandboxError> {
        let idle = self.idle_cgroups.lock().ok().and_then(|mut v| v.pop());
        if let Some(mut cg) = idle {
            match cg.set_limits(limits) {
                Ok(()) => return Ok(cg),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reuse a run cgroup; creating another");
                    cg.remove();
                }
            }
        }
        let name = format!("run-{}-{}", std::process::id(), RUN_COUNTER.fetch_add(1, Ordering::Relaxed));
        Ok(self.cgroups.create(&name, limits)?)
    }

    /// Takes a run's cgroup back once the run is over: whatever is left in it is killed,
    /// and it is kept for the next run only when empty and reset.
    fn put_cgroup(&self, mut cg: RunCgroup) {
        // A normal end leaves the group empty (the namespace dies with init); anything
        // else is killed first.
        if !cg.is_empty().unwrap_or(true) {
            cg.kill_all();
            let deadline = Instant::now() + Duration::from_secs(1);
            while !cg.is_empty().unwrap_or(true) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        match cg.reset() {
            Ok(true) => {
                if let Ok(mut idle) = self.idle_cgroups.lock() {
                    idle.push(cg);
                    return;
                }
                cg.remove();
            }
            Ok(false) => cg.remove(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reset a run cgroup; removing it");
                cg.remove();
            }
        }
    }

    fn run_in(
        &self,
        spec: &RunSpec<'_>,
        plan: &Plan,
        cg: &RunCgroup,
        observer: Observer<'_>,
        piped: Option<(OwnedFd, OwnedFd)>,
    ) -> Result<RunOutcome, SandboxError> {
        let (stdin, out_r, out_w) = match piped {
            None => {
                let (out_r, out_w) = pipe()?;
                (high_fd(sealed_copy(spec.stdin)?)?, out_r, out_w)
            }
            Some((stdin, stdout)) => {
                // The monitor still watches a stdout: one that is at its end already.
                let (out_r, unused) = pipe()?;
                drop(unused);
                (high_fd(stdin)?, out_r, high_fd(stdout)?)
            }
        };
        let (err_r, err_w) = pipe()?;
        let (errout_r, errout_w) = pipe()?;
        let (step_r, steps_w) = match observer.steps.is_some() {
            true => pipe().map(|(r, w)| (Some(r), Some(w)))?,
            false => (None, None),
        };
        let fds = RunFds { stdin, out_w, errout_w, err_w, steps_w, box_tree: box_tree(spec)? };
        let join = cg.join()?;
        let monitor = Monitor {
            target: Target::Over,
            out: [&out_r, &errout_r],
            err_pipe: &err_r,
            step_pipe: step_r.as_ref(),
            capture: Capture::new(spec.limits.output_bytes),
            setup: SetupWatch { report: Vec::new(), exec_at: None },
            steps: observer.steps.map(|(limits, sink)| StepReader::new(limits, sink)),
            cancel: observer.cancel,
            aborted: &self.aborted,
            cpus: self.cpus,
            mounts: None,
        };
        if let Some(holder) = self.holders.take() {
            match self.command(spec, plan, join) {
                Some(command) => return self.run_pooled(spec, plan, cg, holder, &command, join, fds, monitor),
                None => self.holders.put(holder),
            }
        }
        self.run_fresh(spec, plan, cg, join, fds, monitor)
    }

    /// The holder's command for a run, or None when the run does not fit one.
    fn command(&self, spec: &RunSpec<'_>, plan: &Plan, join: &cgroup::Join) -> Option<Vec<u8>> {
        let (tasks, cgroup_dir) = match join {
            cgroup::Join::V1Tasks(fds) => (fds.len(), false),
            cgroup::Join::V2Dir(_) => (0, true),
        };
        holder::command(&holder::CommandParts {
            argv: &plan.argv,
            env: &plan.env,
            rlimits: &plan.rlimits,
            uid: plan.uid,
            gid: plan.gid,
            tmp_bytes: plan::tmp_bytes(&spec.limits),
            tool: spec.profile == Profile::Tool,
            steps: plan.with_steps,
            tasks,
            cgroup_dir,
        })
    }

    /// A run in a pooled holder (see `holder`).
    #[allow(clippy::too_many_arguments)]
    fn run_pooled(
        &self,
        spec: &RunSpec<'_>,
        plan: &Plan,
        cg: &RunCgroup,
        mut holder: holder::Holder,
        command: &[u8],
        join: &cgroup::Join,
        fds: RunFds,
        mut monitor: Monitor<'_>,
    ) -> Result<RunOutcome, SandboxError> {
        let mut passed = vec![
            fds.stdin.as_raw_fd(),
            fds.out_w.as_raw_fd(),
            fds.errout_w.as_raw_fd(),
            fds.err_w.as_raw_fd(),
            fds.box_tree.as_raw_fd(),
        ];
        if let Some(w) = &fds.steps_w {
            passed.push(w.as_raw_fd());
        }
        match join {
            cgroup::Join::V1Tasks(t) => passed.extend(t.iter().map(AsRawFd::as_raw_fd)),
            cgroup::Join::V2Dir(d) => passed.push(d.as_raw_fd()),
        }
        let start = Instant::now();
        if let Err(e) = holder.start(command, &passed) {
            self.holders.discard(holder);
            return Err(e);
        }
        // The holder has its own copies now; ours would keep the pipes open.
        drop(fds);
        monitor.target = Target::Holder(holder::Session::new(holder));
        let watched = monitor.watch(&spec.limits, cg, start);
        let wall = start.elapsed();
        let Target::Holder(mut session) = std::mem::replace(&mut monitor.target, Target::Over) else {
            return Err(SandboxError::Invalid("the monitor lost its run".into()));
        };
        // A run stopped on a limit is over once the holder has killed and reaped the rest.
        session.wait_finished();
        // A process of the run still in its cgroup would mean the holder lost track of it.
        let reusable = session.reusable() && cg.is_empty().unwrap_or(false);
        let lost = session.lost_before_start();
        let holder::Session { holder, done, fault, .. } = session;
        if reusable {
            self.holders.put(holder);
        } else {
            // Its namespace dies with it; the cgroup's own kill is for anything else.
            self.holders.discard(holder);
            cg.kill_all();
        }
        let ended = watched?;
        if lost && matches!(ended, Ended::Exited) {
            return Err(SandboxError::Setup {
                step: "sandbox holder: it was lost before it started the program".into(),
                errno: io::Error::from_raw_os_error(libc::EPIPE),
            });
        }
        monitor.drain(cg, start)?;
        if monitor.setup.failure().is_none()
            && let Some((step, errno)) = fault
        {
            monitor.setup.report = [step.to_ne_bytes(), (errno as u32).to_ne_bytes()].concat();
        }
        let status = done.and_then(|(status, voluntary_switches, involuntary_switches)| {
            status.map(|status| StatusReport { status, voluntary_switches, involuntary_switches })
        });
        self.outcome(spec, plan, cg, monitor, ended, status, wall, start)
    }

    /// A run in namespaces of its own, made for it (the pool is disabled or full, or
    /// the run does not fit a holder's command).
    fn run_fresh(
        &self,
        spec: &RunSpec<'_>,
        plan: &Plan,
        cg: &RunCgroup,
        join: &cgroup::Join,
        fds: RunFds,
        mut monitor: Monitor<'_>,
    ) -> Result<RunOutcome, SandboxError> {
        let argv: Vec<*const libc::c_char> =
            plan.argv.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let envp: Vec<*const libc::c_char> =
            plan.env.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let (sync_r, sync_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let net = self.netns.take()?;
        let mut cgroup_tasks = [-1; 4];
        let cgroup_dir = match join {
            cgroup::Join::V1Tasks(fds) => {
                for (slot, fd) in cgroup_tasks.iter_mut().zip(fds) {
                    *slot = fd.as_raw_fd();
                }
                None
            }
            cgroup::Join::V2Dir(fd) => Some(fd.as_raw_fd()),
        };
        let child_fds = ChildFds {
            sync_read: sync_r.as_raw_fd(),
            error_write: fds.err_w.as_raw_fd(),
            status_write: status_w.as_raw_fd(),
            stdin: fds.stdin.as_raw_fd(),
            stdout: fds.out_w.as_raw_fd(),
            stderr: fds.errout_w.as_raw_fd(),
            steps: fds.steps_w.as_ref().map_or(-1, |w| w.as_raw_fd()),
            netns: net.as_raw_fd(),
            cgroup_tasks,
            template_ns: self.template_ns.as_raw_fd(),
            box_tree: fds.box_tree.as_raw_fd(),
        };

        let start = Instant::now();
        // SAFETY: the child only runs `init_main`, which makes syscalls on data built
        // above (plan, argv, envp, fds) and never returns.
        let (pid, pidfd) = unsafe { sys::clone3(NS_FLAGS, cgroup_dir) }.map_err(io_err("clone the sandbox"))?;
        if pid == 0 {
            child::init_main(plan, &argv, &envp, child_fds);
        }
        // SAFETY: CLONE_PIDFD gave us this new descriptor; we own it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        drop((sync_r, status_w, fds));

        // Init already is in its cgroups (born there on v2, moved itself on v1); the
        // byte only tells it that we are alive and watching.
        sys::write_all(sync_w.as_raw_fd(), b"g");
        drop(sync_w);

        monitor.target = Target::Init(pidfd);
        let ended = match monitor.watch(&spec.limits, cg, start) {
            Ok(e) => e,
            Err(e) => {
                kill_and_reap(pid);
                return Err(e);
            }
        };
        let wall = start.elapsed();
        reap(pid);
        monitor.target = Target::Over;
        if let Some(ns) = monitor.mounts.take() {
            // Nothing of the run is left in it; its teardown happens on the dropping thread.
            let _ = self.dropped_mounts.send(ns);
        }
        // Every process of the run died with its pid namespace: the network namespace
        // holds nothing of it anymore and can serve the next run.
        self.netns.put(net);
        monitor.drain(cg, start)?;
        let status = read_status(&status_r);
        self.outcome(spec, plan, cg, monitor, ended, status, wall, start)
    }

    /// The outcome of a run whose processes are all gone.
    #[allow(clippy::too_many_arguments)]
    fn outcome(
        &self,
        spec: &RunSpec<'_>,
        plan: &Plan,
        cg: &RunCgroup,
        mut monitor: Monitor<'_>,
        ended: Ended,
        status: Option<StatusReport>,
        wall: Duration,
        start: Instant,
    ) -> Result<RunOutcome, SandboxError> {
        if let Some((step, errno)) = monitor.setup.failure() {
            let name = match step {
                child::STEP_SYNC => "waiting for the agent".to_string(),
                child::STEP_CGROUP => "joining the cgroup".into(),
                child::STEP_FORK => "forking the program".into(),
                child::STEP_FDS => "setting up descriptors".into(),
                child::STEP_RLIMIT => "setting rlimits".into(),
                child::STEP_PRIVILEGES => "dropping privileges".into(),
                child::STEP_CHDIR => "entering /box".into(),
                child::STEP_EXEC => format!("executing {}", spec.argv.first().map_or("", String::as_str)),
                child::STEP_CGROUP_NS => "creating the cgroup namespace".into(),
                child::STEP_SECCOMP => "installing the seccomp filter".into(),
                child::STEP_NETNS => "joining the network namespace".into(),
                child::STEP_MOUNT_NS => "copying the template's mount namespace".into(),
                child::STEP_BOX => "mounting the work dir".into(),
                i => match holder::step_name(i) {
                    Some(name) => format!("sandbox holder: {name}"),
                    None => plan.step_names.get(i as usize).cloned().unwrap_or_else(|| format!("step {i}")),
                },
            };
            return Err(SandboxError::Setup { step: name, errno: io::Error::from_raw_os_error(errno) });
        }
        let [mut stdout, mut stderr] = std::mem::take(&mut monitor.capture.bufs);
        let overflow = monitor.capture.overflowed(spec.limits.output_bytes)
            || stdout.len() as u64 > spec.limits.output_bytes
            || stderr.len() as u64 > spec.limits.output_bytes;
        let output_cap = usize::try_from(spec.limits.output_bytes).unwrap_or(usize::MAX);
        stdout.truncate(output_cap);
        stderr.truncate(output_cap);

        let cpu = Duration::from_nanos(cg.cpu_usage_ns()?);
        let peak = cg.memory_peak_bytes()?;
        let oom = cg.oom_kills()?;
        let pids_hits = cg.pids_limit_hits().unwrap_or(0);
        let (voluntary_switches, involuntary_switches) =
            status.as_ref().map_or((0, 0), |r| (r.voluntary_switches, r.involuntary_switches));
        let exit = match status.map(|r| r.status) {
            Some(s) if libc::WIFEXITED(s) => Exit::Code(libc::WEXITSTATUS(s)),
            Some(s) if libc::WIFSIGNALED(s) => Exit::Signal(libc::WTERMSIG(s)),
            // Init was killed before it could report: the run was stopped by us.
            _ => Exit::Signal(libc::SIGKILL),
        };
        let limit = match ended {
            Ended::Limit(hit) => Some(hit),
            Ended::Exited if overflow => Some(LimitHit::Output),
            Ended::Exited if oom > 0 => Some(LimitHit::Memory),
            Ended::Exited if cpu > spec.limits.cpu || exit == Exit::Signal(libc::SIGXCPU) => Some(LimitHit::Cpu),
            Ended::Exited if exit == Exit::Signal(libc::SIGXFSZ) => Some(LimitHit::Output),
            Ended::Exited if pids_hits > 0 && exit != Exit::Code(0) => Some(LimitHit::Processes),
            Ended::Exited => None,
        };
        let setup = monitor.setup.exec_at.map_or(wall, |t| t.duration_since(start));
        let (steps, steps_dropped) = monitor.steps.as_ref().map_or((0, 0), |r| (r.delivered, r.dropped));
        Ok(RunOutcome {
            exit,
            cpu,
            wall,
            peak_memory_bytes: peak,
            setup,
            limit,
            pids_limit_hits: pids_hits,
            stdout,
            stderr,
            steps,
            steps_dropped,
            stdout_bytes: monitor.capture.total[0],
            stderr_bytes: monitor.capture.total[1],
            voluntary_switches,
            involuntary_switches,
        })
    }
}

/// The thread that drops the mount namespaces of finished runs. The last reference to a
/// mount namespace unmounts its tree and waits an expedited RCU grace period; held by
/// init, that was paid inside init's exit, before the monitor could see the run end
/// (kernel stacks sampled during back-to-back runs: `synchronize_rcu_expedited <
/// namespace_unlock < free_nsproxy < do_exit`). The monitor takes a reference once the
/// program runs, so init's exit skips the teardown, and hands it here.
fn keep_mounts() -> Result<std::sync::mpsc::Sender<OwnedFd>, SandboxError> {
    let (tx, rx) = std::sync::mpsc::channel::<OwnedFd>();
    std::thread::Builder::new()
        .name("sandbox-mounts".into())
        .spawn(move || rx.into_iter().for_each(drop))
        .map_err(io_err("start the mount namespace dropper"))?;
    Ok(tx)
}

/// A detached bind mount of the run's work dir with its flags set, for init to attach
/// as /box in its own mount namespace, where the host's path is not reachable.
fn box_tree(spec: &RunSpec<'_>) -> Result<OwnedFd, SandboxError> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(spec.box_dir.as_os_str().as_bytes())
        .map_err(|_| SandboxError::Invalid("NUL byte in the work dir's path".into()))?;
    let setup = |errno: i32| SandboxError::Setup { step: "cloning the work dir's mount".into(), errno: io::Error::from_raw_os_error(errno) };
    let fd = sys::open_tree_clone(&path).map_err(setup)?;
    // SAFETY: open_tree returned a new descriptor that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut attr = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
    if !spec.box_writable {
        attr |= sys::MOUNT_ATTR_RDONLY;
    }
    sys::mount_setattr(fd.as_raw_fd(), attr).map_err(setup)?;
    Ok(fd)
}

/// The input as a sealed memfd: the program can read it but neither change it nor learn
/// where on the host it came from (a file's link in /proc/self/fd shows its path).
fn sealed_copy(path: &Path) -> Result<OwnedFd, SandboxError> {
    use std::io::{Seek, SeekFrom};
    let mut src = std::fs::File::open(path).map_err(io_err("open the input"))?;
    // SAFETY: a NUL-terminated name and valid flags; the new descriptor is ours.
    let fd = unsafe { libc::memfd_create(c"input".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io_err("create the input memfd")(io::Error::last_os_error()));
    }
    // SAFETY: memfd_create returned a new descriptor that we now own.
    let mut memfd = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::copy(&mut src, &mut memfd).map_err(io_err("copy the input"))?;
    memfd.seek(SeekFrom::Start(0)).map_err(io_err("rewind the input"))?;
    // A memfd is created 0777: reopening /proc/self/fd/0 (or /dev/stdin) for reading
    // must work, for writing not even try.
    // SAFETY: fchmod on a descriptor we own.
    if unsafe { libc::fchmod(memfd.as_raw_fd(), 0o444) } < 0 {
        return Err(io_err("protect the input")(io::Error::last_os_error()));
    }
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own with integer arguments.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io_err("seal the input")(io::Error::last_os_error()));
    }
    // The program gets a read-only descriptor of it, like a file opened for reading.
    let reopened = std::fs::File::open(format!("/proc/self/fd/{}", memfd.as_raw_fd())).map_err(io_err("reopen the input"))?;
    Ok(reopened.into())
}

/// A pipe (read end, write end), close-on-exec, both ends at descriptor 10 or above.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io_err("create a pipe")(io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two new descriptors that we now own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((high_fd(r)?, high_fd(w)?))
}

/// Moves a descriptor to 10 or above, so the child's fixed descriptor numbers 3..=9
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

/// Init's report: the program's wait status and context switches (see `child`).
struct StatusReport {
    status: i32,
    voluntary_switches: u64,
    involuntary_switches: u64,
}

fn read_status(fd: &OwnedFd) -> Option<StatusReport> {
    let mut buf = [0u8; 20];
    // SAFETY: reading into a local buffer of the given length. Init wrote the 20 bytes
    // in one write before exiting, far below PIPE_BUF, so they arrive whole.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[i..i + 8]);
        u64::from_ne_bytes(b)
    };
    (n == 20).then(|| StatusReport {
        status: i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]),
        voluntary_switches: u64_at(4),
        involuntary_switches: u64_at(12),
    })
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
