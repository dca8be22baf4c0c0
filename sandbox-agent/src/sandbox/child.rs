//! What runs after the clone: the run's init (pid 1 of the new pid namespace) and the
//! user program it forks. Everything is prepared beforehand in `Plan`, so this code only
//! makes syscalls: no allocation, no locks, no formatting.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use super::sys;

/// One step of assembling the sandbox's filesystem, executed in order by init.
pub enum Step {
    /// Makes every mount below / private, so nothing propagates back to the host.
    PrivateRoot,
    Mkdir(CString, libc::mode_t),
    Touch(CString),
    Symlink { target: CString, path: CString },
    Mount { src: Option<CString>, dst: CString, fstype: Option<CString>, flags: libc::c_ulong, data: Option<CString> },
    /// Remounts an existing (bind) mount with new flags, e.g. read-only.
    Remount { dst: CString, flags: libc::c_ulong },
    CharDevice { path: CString, major: u32, minor: u32 },
    /// Detaches whatever is mounted at the path.
    Unmount(CString),
    /// chdir into the new root, pivot_root, drop the old root.
    PivotRoot(CString),
    Hostname(CString),
}

/// Everything the child side needs, built before the clone.
pub struct Plan {
    pub steps: Vec<Step>,
    /// Human-readable description of each step, for the parent's error messages.
    pub step_names: Vec<String>,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: CString,
    pub rlimits: [(libc::__rlimit_resource_t, u64); RLIMITS.len()],
    pub uid: u32,
    pub gid: u32,
    pub cap_last: u32,
    /// Whether the supplementary groups can be cleared (not in the agent's own user
    /// namespace, where setgroups is denied; it has none, see `privilege`).
    pub clear_groups: bool,
    /// The program gets the step channel as descriptor 3.
    pub with_steps: bool,
    /// Seccomp filters installed last before the exec; they point into the
    /// `Sandbox`'s compiled programs, which outlive the run.
    pub seccomp: Vec<libc::sock_fprog>,
}

/// The rlimits every program gets, in the order a holder's command carries their values.
pub const RLIMITS: [libc::__rlimit_resource_t; 7] = [
    libc::RLIMIT_CPU,
    libc::RLIMIT_FSIZE,
    libc::RLIMIT_NOFILE,
    libc::RLIMIT_STACK,
    libc::RLIMIT_CORE,
    libc::RLIMIT_MEMLOCK,
    libc::RLIMIT_MSGQUEUE,
];

/// What the program's own process needs up to its exec, borrowed: from a `Plan` in a
/// run's init, or from a holder's fixed buffers (see `holder`).
pub struct Exec<'a> {
    pub argv: &'a [*const libc::c_char],
    pub envp: &'a [*const libc::c_char],
    pub cwd: &'a CStr,
    pub rlimits: &'a [(libc::__rlimit_resource_t, u64)],
    pub uid: u32,
    pub gid: u32,
    pub cap_last: u32,
    pub clear_groups: bool,
    /// The bounding set is empty already (a holder empties its own once).
    pub bounding_dropped: bool,
    pub with_steps: bool,
    pub seccomp: &'a [libc::sock_fprog],
}

/// Descriptors handed to the child, all close-on-exec in the parent.
#[derive(Clone, Copy)]
pub struct ChildFds {
    /// Init blocks on this until the parent has started watching it.
    pub sync_read: RawFd,
    /// Setup or exec failures: (step index, errno) as two native-endian u32.
    pub error_write: RawFd,
    /// Init writes the user program's wait status here.
    pub status_write: RawFd,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Write end of the step channel, or -1.
    pub steps: RawFd,
    /// An empty network namespace to join (see `netns`).
    pub netns: RawFd,
    /// cgroup v1 `tasks` files of the run's groups (-1 when unused): init moves itself
    /// in by writing "0" to each (see `RunCgroup::join`).
    pub cgroup_tasks: [RawFd; 4],
    /// The template's mount namespace (see `plan`), of which init makes its own copy.
    pub template_ns: RawFd,
    /// A detached bind mount of the work dir, attached as /box.
    pub box_tree: RawFd,
}

/// Step index reported when a failure is not a filesystem step.
pub const STEP_SYNC: u32 = u32::MAX - 1;
pub const STEP_FORK: u32 = u32::MAX - 2;
pub const STEP_FDS: u32 = u32::MAX - 3;
pub const STEP_RLIMIT: u32 = u32::MAX - 4;
pub const STEP_PRIVILEGES: u32 = u32::MAX - 5;
pub const STEP_CHDIR: u32 = u32::MAX - 6;
pub const STEP_EXEC: u32 = u32::MAX - 7;
pub const STEP_CGROUP_NS: u32 = u32::MAX - 8;
pub const STEP_SECCOMP: u32 = u32::MAX - 9;
pub const STEP_NETNS: u32 = u32::MAX - 10;
pub const STEP_CGROUP: u32 = u32::MAX - 11;
pub const STEP_MOUNT_NS: u32 = u32::MAX - 12;
pub const STEP_BOX: u32 = u32::MAX - 13;

/// Fixed descriptor numbers in init (and in a holder during a run), above 0..2, so
/// inherited descriptors of other runs (cloned concurrently by other threads of the
/// agent) can all be closed.
const FD_SYNC: RawFd = 3;
pub const FD_ERROR: RawFd = 4;
const FD_STATUS: RawFd = 5;
pub const FD_STDIN: RawFd = 6;
pub const FD_STDOUT: RawFd = 7;
pub const FD_STDERR: RawFd = 8;
pub const FD_STEPS: RawFd = 9;

pub fn fail(err_fd: RawFd, step: u32, errno: i32) -> ! {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&step.to_ne_bytes());
    buf[4..].copy_from_slice(&(errno as u32).to_ne_bytes());
    sys::write_all(err_fd, &buf);
    sys::exit(127)
}

/// The run's init. Never returns.
pub fn init_main(plan: &Plan, argv: &[*const libc::c_char], envp: &[*const libc::c_char], fds: ChildFds) -> ! {
    // Into the run's cgroups before anything else, so nothing of the run is ever
    // unaccounted. A thread moving itself skips the kernel's global threadgroup lock,
    // whose RCU grace period makes a write of our pid to cgroup.procs cost ~10 ms.
    for fd in fds.cgroup_tasks.into_iter().filter(|&fd| fd >= 0) {
        if let Err(e) = sys::write_exact(fd, b"0") {
            fail(fds.error_write, STEP_CGROUP, e);
        }
        // It may have a low number that the moves below would not replace.
        sys::close(fd);
    }
    // If the agent's thread dies, the run dies with it (and with init, the namespace).
    // Should it already be gone, the sync read below sees end of file instead.
    if let Err(e) = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) {
        fail(fds.error_write, STEP_FDS, e);
    }
    if let Err(e) = sys::setns(fds.netns, libc::CLONE_NEWNET) {
        fail(fds.error_write, STEP_NETNS, e);
    }
    // A copy of the template's namespace, which holds nothing but the sandbox's root:
    // no pivot_root, and no detaching of the host's mounts, per run.
    if let Err(e) = sys::setns(fds.template_ns, libc::CLONE_NEWNS).and_then(|_| sys::unshare(libc::CLONE_NEWNS)) {
        fail(fds.error_write, STEP_MOUNT_NS, e);
    }
    if let Err(e) = sys::move_mount_to(fds.box_tree, c"/box") {
        fail(fds.error_write, STEP_BOX, e);
    }
    // The parent's descriptors are all >= 10, so these targets clobber nothing we need.
    let moves = [
        (fds.sync_read, FD_SYNC),
        (fds.error_write, FD_ERROR),
        (fds.status_write, FD_STATUS),
        (fds.stdin, FD_STDIN),
        (fds.stdout, FD_STDOUT),
        (fds.stderr, FD_STDERR),
    ];
    for (from, to) in moves {
        if let Err(e) = sys::dup3_cloexec(from, to) {
            fail(fds.error_write, STEP_FDS, e);
        }
    }
    if fds.steps >= 0
        && let Err(e) = sys::dup3_cloexec(fds.steps, FD_STEPS)
    {
        fail(FD_ERROR, STEP_FDS, e);
    }
    if let Err(e) = sys::close_from(FD_STEPS as u32 + 1) {
        fail(FD_ERROR, STEP_FDS, e);
    }
    if !sys::read_byte(FD_SYNC) {
        // The parent died: nobody would watch or stop the run.
        fail(FD_ERROR, STEP_SYNC, 0);
    }
    sys::close(FD_SYNC);
    // Now inside the run's cgroup: a cgroup namespace rooted here hides the host's tree.
    if let Err(e) = sys::unshare(libc::CLONE_NEWCGROUP) {
        fail(FD_ERROR, STEP_CGROUP_NS, e);
    }
    sys::umask(0);
    for (i, step) in plan.steps.iter().enumerate() {
        if let Err(e) = run_step(step) {
            fail(FD_ERROR, i as u32, e);
        }
    }
    sys::umask(0o022);

    // SAFETY: this process has a single thread (the clone copied only the caller), so
    // forking it again is fork-safe; the child only makes syscalls until execve.
    let pid = match unsafe { sys::clone3(0, None) } {
        Ok((pid, _)) => pid,
        Err(e) => fail(FD_ERROR, STEP_FORK, e.raw_os_error().unwrap_or(0)),
    };
    if pid == 0 {
        exec_user(&Exec {
            argv,
            envp,
            cwd: &plan.cwd,
            rlimits: &plan.rlimits,
            uid: plan.uid,
            gid: plan.gid,
            cap_last: plan.cap_last,
            clear_groups: plan.clear_groups,
            bounding_dropped: false,
            with_steps: plan.with_steps,
            seccomp: &plan.seccomp,
        });
    }
    // Closing our copy of the error pipe leaves the program's, which closes on exec:
    // the parent sees end of file at the moment the program starts (its set-up time).
    for fd in [FD_STDIN, FD_STDOUT, FD_STDERR, FD_ERROR, FD_STEPS] {
        sys::close(fd);
    }
    // Reap everything; orphans of the namespace are re-parented to us.
    let mut main_status: Option<i32> = None;
    while let Some((p, status)) = sys::wait_any() {
        if p == pid {
            main_status = Some(status);
            break;
        }
    }
    if let Some(status) = main_status {
        // The program's wait status, then context switches of everything reaped so far
        // (the program, and every descendant its processes waited for).
        let (voluntary, involuntary) = sys::children_context_switches();
        let mut report = [0u8; 20];
        report[..4].copy_from_slice(&status.to_ne_bytes());
        report[4..12].copy_from_slice(&voluntary.to_ne_bytes());
        report[12..].copy_from_slice(&involuntary.to_ne_bytes());
        sys::write_all(FD_STATUS, &report);
    }
    // Init's exit makes the kernel kill whatever is left in the namespace.
    sys::exit(0)
}

/// Executes one step; also used by the agent itself to build the template.
pub fn run_step(step: &Step) -> Result<(), i32> {
    match step {
        Step::PrivateRoot => sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None),
        Step::Mkdir(p, mode) => sys::mkdir(p, *mode),
        Step::Touch(p) => sys::touch(p),
        Step::Symlink { target, path } => sys::symlink(target, path),
        Step::Mount { src, dst, fstype, flags, data } => {
            sys::mount(src.as_deref(), dst, fstype.as_deref(), *flags, data.as_deref())
        }
        Step::Remount { dst, flags } => sys::mount(None, dst, None, libc::MS_REMOUNT | libc::MS_BIND | flags, None),
        Step::CharDevice { path, major, minor } => sys::mknod_char(path, *major, *minor),
        Step::Unmount(path) => sys::umount_detach(path),
        Step::PivotRoot(new_root) => {
            sys::chdir(new_root)?;
            sys::pivot_root_here()?;
            sys::chdir(c"/")
        }
        Step::Hostname(name) => sys::sethostname(name),
    }
}

/// The user program's side: descriptors, limits, privileges, exec.
pub fn exec_user(plan: &Exec<'_>) -> ! {
    if let Err(e) = sys::setsid() {
        fail(FD_ERROR, STEP_FDS, e);
    }
    for (from, to) in [(FD_STDIN, 0), (FD_STDOUT, 1), (FD_STDERR, 2)] {
        if let Err(e) = sys::dup2(from, to) {
            fail(FD_ERROR, STEP_FDS, e);
        }
    }
    // Only 0, 1, 2, the step channel (3, when asked for) and the close-on-exec error
    // pipe survive into the program.
    let err_fd = if plan.with_steps { 4 } else { 3 };
    let moved = if plan.with_steps { sys::dup2(FD_STEPS, 3) } else { sys::dup3_cloexec(FD_ERROR, 3) };
    // (With steps the error pipe already is descriptor 4, close-on-exec since init.)
    if let Err(e) = moved.and_then(|_| sys::close_from(err_fd as u32 + 1)) {
        fail(FD_ERROR, STEP_FDS, e);
    }
    for &(resource, value) in plan.rlimits {
        if let Err(e) = sys::setrlimit(resource, value) {
            fail(err_fd, STEP_RLIMIT, e);
        }
    }
    if let Err(e) = sys::become_unprivileged(plan.uid, plan.gid, plan.cap_last, plan.clear_groups, plan.bounding_dropped) {
        fail(err_fd, STEP_PRIVILEGES, e);
    }
    if let Err(e) = sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1) {
        fail(err_fd, STEP_PRIVILEGES, e);
    }
    if let Err(e) = sys::chdir(plan.cwd) {
        fail(err_fd, STEP_CHDIR, e);
    }
    for prog in plan.seccomp {
        if let Err(e) = sys::seccomp_filter(prog) {
            fail(err_fd, STEP_SECCOMP, e);
        }
    }
    let e = sys::execve(plan.argv, plan.envp);
    fail(err_fd, STEP_EXEC, e)
}
