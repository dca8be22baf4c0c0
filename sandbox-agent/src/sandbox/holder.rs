//! Pooled sandboxes: a **holder** is the long-lived init (pid 1) of its own pid
//! namespace, in its own copy of the template's mount namespace, its own empty network
//! namespace, uts and ipc namespaces. Creating and tearing down those namespaces was
//! most of a run's cost (each teardown waits an RCU grace period); a holder pays it once
//! and then serves run after run, reset to a clean state in between.
//!
//! Per run the agent sends the holder one message (`Command`) over a `SOCK_SEQPACKET`
//! pair with the run's descriptors attached: stdin, stdout, stderr, the error pipe, the
//! work dir as a detached mount, the step channel, the run cgroup's v1 `tasks` files or
//! v2 directory. The holder attaches /box, forks the program — which joins the run
//! cgroup, unshares a cgroup namespace and then does exactly what a fresh run's program
//! does (`child::exec_user`) — and sends its pidfd back (`FORKED`). When the program
//! ends, the holder SIGKILLs everything else in its pid namespace, reaps until no child
//! is left, and reports (`DONE`). Then it **resets**: detaches /box, replaces /tmp and
//! /dev/shm with fresh tmpfs, unshares a fresh ipc namespace, sets the namespace's last
//! pid back to 1 (the next program is pid 2 again), checks that no process and no unix
//! socket is left in its namespaces, and only then says `READY`. The agent takes
//! another holder meanwhile, so the reset's unmounts (RCU grace periods) are off the
//! next run's path.
//!
//! A holder is a fork of the multi-threaded agent, so like a fresh run's init it never
//! allocates: a command is parsed into buffers allocated before the clone. A holder that
//! fails any step, answers garbage or late, or is in doubt in any way, is killed (its
//! pid namespace with it) and never reused.

use std::collections::VecDeque;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::child::{self, Exec, Step};
use super::{SandboxError, netns, plan, seccomp, sys};


/// The stack a program's process runs on between its start and its exec.
const PROGRAM_STACK: usize = 256 << 10;

/// Largest command (header, argv and environment strings): one `SOCK_SEQPACKET`
/// message must fit the socket's send buffer (~208 KiB by default). Larger runs take
/// the fresh path.
pub(super) const MAX_COMMAND: usize = 128 << 10;
/// Most argv plus environment entries of a pooled run.
const MAX_STRINGS: usize = 4096;

/// The holder's own descriptors, above those of a run (3..=15) and below the
/// temporaries a command's descriptors are moved through (`TEMP_FDS`).
const FD_SOCK: RawFd = 20;
const FD_LAST_PID: RawFd = 21;
const FD_NET_UNIX: RawFd = 22;
const TEMP_FDS: RawFd = 32;
/// Where a run's descriptors sit in the holder between the command and the fork (the
/// stdio, error and step slots are init's, see `child`).
const FD_BOX: RawFd = 15;
const FD_TASKS: RawFd = 10;
const FD_CGROUP_DIR: RawFd = 14;

const MAGIC: u64 = 0x6a75_6467_6531_0001;
const FLAG_TOOL: u64 = 1;
const FLAG_STEPS: u64 = 2;
const FLAG_CGROUP_DIR: u64 = 4;

/// The fixed part of a command; argv then environment follow as NUL-terminated strings.
/// All u64, so `repr(C)` has no padding and any bytes are a valid value.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct Command {
    magic: u64,
    flags: u64,
    uid: u64,
    gid: u64,
    tmp_bytes: u64,
    rlimits: [u64; child::RLIMITS.len()],
    argc: u64,
    envc: u64,
    /// How many v1 `tasks` descriptors are attached.
    tasks: u64,
}

const HEADER: usize = size_of::<Command>();

/// Messages from a holder.
const READY: u32 = 1;
const FORKED: u32 = 2;
const DONE: u32 = 3;
const FAULT: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Report {
    kind: u32,
    /// DONE: 1 when `status` holds the program's wait status. FAULT: the step.
    a: u32,
    /// DONE: the wait status. FAULT: the errno.
    b: i32,
    _pad: u32,
    voluntary: u64,
    involuntary: u64,
}

/// Steps of a holder's own that a FAULT names (set-up steps are numbered from 0).
pub(super) const STEP_RECEIVE: u32 = u32::MAX - 20;
pub(super) const STEP_COMMAND: u32 = u32::MAX - 21;
pub(super) const STEP_TMP: u32 = u32::MAX - 22;
pub(super) const STEP_RESET: u32 = u32::MAX - 23;
pub(super) const STEP_LEFTOVER: u32 = u32::MAX - 24;
pub(super) const STEP_START: u32 = u32::MAX - 25;

/// What a holder's fault step means, for the agent's error messages.
pub(super) fn step_name(step: u32) -> Option<&'static str> {
    Some(match step {
        STEP_RECEIVE => "receiving the run",
        STEP_COMMAND => "reading the run's command",
        STEP_TMP => "sizing /tmp and /dev/shm",
        STEP_RESET => "resetting after a run",
        STEP_LEFTOVER => "finding something of a run left after it",
        STEP_START => "starting a sandbox holder",
        _ => return None,
    })
}

/// The agent's handle on one holder process.
pub(super) struct Holder {
    pid: i32,
    pidfd: OwnedFd,
    sock: OwnedFd,
    /// It said READY since its last run.
    ready: bool,
}

/// How a holder answered.
pub(super) enum Reply {
    Ready,
    Forked(OwnedFd),
    Done { status: Option<i32>, voluntary: u64, involuntary: u64 },
    Fault { step: u32, errno: i32 },
    /// End of file, an error or a malformed message: the holder is gone or broken.
    Broken,
}

impl Holder {
    fn recv(&self) -> Reply {
        let mut buf = [0u8; size_of::<Report>()];
        let mut fds = [-1; 1];
        let Ok((n, nfds)) = sys::recv_with_fds(self.sock.as_raw_fd(), &mut buf, &mut fds) else { return Reply::Broken };
        // SAFETY: a descriptor just received is ours alone.
        let fd = (nfds == 1).then(|| unsafe { OwnedFd::from_raw_fd(fds[0]) });
        if n != buf.len() {
            return Reply::Broken;
        }
        // SAFETY: `buf` holds exactly a Report's bytes; every bit pattern is a valid
        // Report (integers only), read unaligned.
        let r: Report = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
        match (r.kind, fd) {
            (READY, None) => Reply::Ready,
            (FORKED, Some(fd)) => Reply::Forked(fd),
            (DONE, None) => Reply::Done { status: (r.a == 1).then_some(r.b), voluntary: r.voluntary, involuntary: r.involuntary },
            (FAULT, None) => Reply::Fault { step: r.a, errno: r.b },
            _ => Reply::Broken,
        }
    }

    /// Waits up to `timeout` for the holder's next message.
    fn recv_within(&self, timeout: Duration) -> Option<Reply> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd { fd: self.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as libc::c_int) };
            if n > 0 {
                return Some(self.recv());
            }
            if n == 0 || (n < 0 && sys::errno() != libc::EINTR) || left.is_zero() {
                return if n < 0 { Some(Reply::Broken) } else { None };
            }
        }
    }

    /// Whether the holder is ready for a run, waiting up to `timeout` for it; `Err` when
    /// it is broken and must be killed.
    fn wait_ready(&mut self, timeout: Duration) -> Result<bool, ()> {
        if !self.ready {
            match self.recv_within(timeout) {
                None => return Ok(false),
                Some(Reply::Ready) => self.ready = true,
                Some(_) => return Err(()),
            }
        }
        // It may have died since it said so (killed from outside, or by the OOM killer).
        let mut pfd = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        let exited = unsafe { libc::poll(&mut pfd, 1, 0) } != 0;
        if exited { Err(()) } else { Ok(true) }
    }

    /// Sends a run's command and descriptors.
    pub fn start(&mut self, command: &[u8], fds: &[RawFd]) -> Result<(), SandboxError> {
        self.ready = false;
        sys::send_with_fds(self.sock.as_raw_fd(), command, fds).map_err(|e| SandboxError::Setup {
            step: "handing the run to its sandbox".into(),
            errno: std::io::Error::from_raw_os_error(e),
        })
    }

    /// The socket the holder's messages arrive on, for the monitor's poll.
    pub fn socket(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The next message, which the caller knows is there (the socket polled readable).
    fn next(&self) -> Reply {
        self.recv()
    }

    /// The next message within `timeout`.
    fn next_within(&self, timeout: Duration) -> Option<Reply> {
        self.recv_within(timeout)
    }

    /// Kills the holder and with it everything in its pid namespace, and reaps it.
    pub fn kill(self) {
        drop(self);
    }
}

/// A holder is never let go alive: whatever path drops it, it is killed and reaped.
impl Drop for Holder {
    fn drop(&mut self) {
        let _ = sys::pidfd_signal(self.pidfd.as_raw_fd(), libc::SIGKILL);
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid out-pointer; it is reaped only
        // here, so the pid cannot have been reused.
        while unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) } < 0 && sys::errno() == libc::EINTR {}
    }
}

/// A run in a holder, as the monitor sees it.
pub(super) struct Session {
    pub holder: Holder,
    /// The program's pidfd, once the holder forked it.
    pub program: Option<OwnedFd>,
    /// The program's wait status (when it was reaped) and context switches.
    pub done: Option<(Option<i32>, u64, u64)>,
    /// The holder failed at this step (with this errno) and is gone.
    pub fault: Option<(u32, i32)>,
    /// The holder said something it should not have, or nothing, and is not trusted.
    pub broken: bool,
}

impl Session {
    pub fn new(holder: Holder) -> Session {
        Session { holder, program: None, done: None, fault: None, broken: false }
    }

    /// The run is over as far as the holder goes: every process of it is gone, or the
    /// holder is.
    pub fn finished(&self) -> bool {
        self.done.is_some() || self.fault.is_some() || self.broken
    }

    /// Takes the holder's next message (its socket polled readable).
    pub fn on_readable(&mut self) {
        self.take(self.holder.next());
    }

    fn take(&mut self, reply: Reply) {
        match reply {
            Reply::Forked(fd) if self.program.is_none() => self.program = Some(fd),
            Reply::Done { status, voluntary, involuntary } => self.done = Some((status, voluntary, involuntary)),
            Reply::Fault { step, errno } => self.fault = Some((step, errno)),
            _ => self.broken = true,
        }
    }

    /// Stops the run: the program, after which the holder kills the rest of its
    /// namespace; before the program exists, the holder itself.
    pub fn kill(&mut self) {
        match &self.program {
            Some(p) => {
                let _ = sys::pidfd_signal(p.as_raw_fd(), libc::SIGKILL);
            }
            None => {
                let _ = sys::pidfd_signal(self.holder.pidfd.as_raw_fd(), libc::SIGKILL);
                self.broken = true;
            }
        }
    }

    /// Waits up to `PATIENCE` for the holder's report of the run's end.
    pub fn wait_finished(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.finished() {
            match self.holder.next_within(deadline.saturating_duration_since(Instant::now())) {
                Some(reply) => self.take(reply),
                None => self.broken = true,
            }
        }
    }

    /// The holder was lost before it started the program: the run never happened.
    pub fn lost_before_start(&self) -> bool {
        self.program.is_none() && self.done.is_none() && self.fault.is_none()
    }

    /// Whether the holder may serve another run.
    pub fn reusable(&self) -> bool {
        self.done.is_some() && self.fault.is_none() && !self.broken
    }
}

/// Pooled holders of one `Sandbox`.
pub(super) struct Pool {
    idle: Mutex<VecDeque<Holder>>,
    /// Holders alive, idle or serving a run.
    live: AtomicUsize,
    /// At most this many holders; 0 disables pooling (every run fresh).
    max: AtomicUsize,
    spawner: Mutex<mpsc::Sender<mpsc::Sender<Result<Holder, SandboxError>>>>,
}

/// How long a holder may take to start, to say READY after a run, or to report a
/// program's end once it was killed. Each takes well under a millisecond normally; a
/// holder that takes longer is not trusted again.
const PATIENCE: Duration = Duration::from_secs(2);

impl Pool {
    /// Starts the thread that creates holders: it must live as long as the pool, since
    /// a holder dies with the thread that created it (PDEATHSIG), so that no holder,
    /// and no run in it, outlives the agent.
    pub fn new(template_ns: &OwnedFd, filters: Arc<seccomp::Filters>, mapped: bool, cap_last: u32, max: usize) -> Result<Pool, SandboxError> {
        let template_ns = template_ns.try_clone().map_err(|source| SandboxError::Io { what: "keep the template namespace", source })?;
        let (steps, names) = plan::holder_steps(mapped)?;
        let spawner = Spawner { template_ns, filters, steps, names, cap_last, clear_groups: !mapped };
        let (tx, rx) = mpsc::channel::<mpsc::Sender<Result<Holder, SandboxError>>>();
        std::thread::Builder::new()
            .name("sandbox-holders".into())
            .spawn(move || {
                for reply in rx {
                    let _ = reply.send(spawner.spawn());
                }
            })
            .map_err(|source| SandboxError::Io { what: "start the sandbox holder thread", source })?;
        Ok(Pool { idle: Mutex::default(), live: AtomicUsize::new(0), max: AtomicUsize::new(max), spawner: Mutex::new(tx) })
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::SeqCst);
        if max == 0 {
            self.clear();
        }
    }

    /// Kills every idle holder.
    pub fn clear(&self) {
        let drained: Vec<Holder> = self.idle.lock().map(|mut q| q.drain(..).collect()).unwrap_or_default();
        for h in drained {
            self.discard(h);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |q| q.len())
    }

    /// The process ids of the idle holders.
    pub fn idle_pids(&self) -> Vec<i32> {
        self.idle.lock().map_or(Vec::new(), |q| q.iter().map(|h| h.pid).collect())
    }

    /// A holder ready for a run, or None when the pool is disabled or full (the run then
    /// takes the fresh path). Prefers a holder whose reset is over; makes a new one
    /// rather than wait while the pool may grow.
    pub fn take(&self) -> Option<Holder> {
        let max = self.max.load(Ordering::SeqCst);
        if max == 0 {
            return None;
        }
        let candidates: Vec<Holder> = self.idle.lock().map(|mut q| q.drain(..).collect()).unwrap_or_default();
        let mut waiting = Vec::new();
        let mut found = None;
        for mut h in candidates {
            if found.is_some() {
                waiting.push(h);
                continue;
            }
            match h.wait_ready(Duration::ZERO) {
                Ok(true) => found = Some(h),
                Ok(false) => waiting.push(h),
                Err(()) => self.discard(h),
            }
        }
        if found.is_none() && self.live.load(Ordering::SeqCst) >= max {
            // Every holder is busy or resetting: wait for the one that finished first.
            if !waiting.is_empty() {
                let mut h = waiting.remove(0);
                match h.wait_ready(PATIENCE) {
                    Ok(true) => found = Some(h),
                    Ok(false) | Err(()) => self.discard(h),
                }
            }
        }
        if let Ok(mut q) = self.idle.lock() {
            // Those still resetting go first next time: they finished their runs earliest.
            for h in waiting.into_iter().rev() {
                q.push_front(h);
            }
        }
        if found.is_some() {
            return found;
        }
        if self.live.fetch_add(1, Ordering::SeqCst) >= max {
            self.live.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        match self.spawn() {
            Ok(h) => Some(h),
            Err(e) => {
                self.live.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(error = %e, "cannot start a sandbox holder; this run is set up afresh");
                None
            }
        }
    }

    fn spawn(&self) -> Result<Holder, SandboxError> {
        let (tx, rx) = mpsc::channel();
        let sent = self.spawner.lock().map_err(|_| SandboxError::Aborted)?.send(tx);
        sent.map_err(|_| SandboxError::Aborted)?;
        rx.recv().map_err(|_| SandboxError::Aborted)?
    }

    /// Takes a holder back after a run that ended cleanly (it is resetting now).
    pub fn put(&self, h: Holder) {
        if self.max.load(Ordering::SeqCst) == 0 {
            return self.discard(h);
        }
        match self.idle.lock() {
            Ok(mut q) => q.push_back(h),
            Err(_) => self.discard(h),
        }
    }

    /// Kills a holder that is not to be used again.
    pub fn discard(&self, h: Holder) {
        h.kill();
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.clear();
    }
}

/// What the holder thread needs to create holders; moved into it.
struct Spawner {
    template_ns: OwnedFd,
    filters: Arc<seccomp::Filters>,
    steps: Vec<Step>,
    names: Vec<String>,
    cap_last: u32,
    clear_groups: bool,
}

/// Everything a holder uses, built before its clone (it may not allocate).
struct Config<'a> {
    sock: RawFd,
    netns: RawFd,
    template_ns: RawFd,
    steps: &'a [Step],
    /// The program and the tool profile's filters, by `FLAG_TOOL`.
    filters: [&'a [libc::sock_fprog]; 2],
    cap_last: u32,
    clear_groups: bool,
    buf: &'a mut [u8],
    ptrs: &'a mut [*const libc::c_char],
    /// The program's stack until its exec (see `sys::vfork_on`).
    stack: &'a mut [u8],
}

impl Spawner {
    fn spawn(&self) -> Result<Holder, SandboxError> {
        let net = netns::create()?;
        let (mine, theirs) = sys::seqpacket_pair().map_err(|source| SandboxError::Io { what: "create a holder's socket", source })?;
        // SAFETY: socketpair returned two new descriptors that we now own.
        let (mine, theirs) = unsafe { (OwnedFd::from_raw_fd(mine), OwnedFd::from_raw_fd(theirs)) };
        let fprogs = |progs: &[seccompiler::BpfProgram]| -> Vec<libc::sock_fprog> {
            progs
                .iter()
                .map(|p| libc::sock_fprog {
                    len: p.len() as libc::c_ushort,
                    // The holder's copy of `filters` is never freed: it never returns.
                    filter: p.as_ptr() as *mut libc::sock_filter,
                })
                .collect()
        };
        let program = fprogs(&self.filters.program);
        let tool = fprogs(&self.filters.tool);
        let mut buf = vec![0u8; MAX_COMMAND];
        let mut ptrs = vec![std::ptr::null::<libc::c_char>(); MAX_STRINGS + 2];
        let mut stack = vec![0u8; PROGRAM_STACK];
        let config = Config {
            sock: theirs.as_raw_fd(),
            netns: net.as_raw_fd(),
            template_ns: self.template_ns.as_raw_fd(),
            steps: &self.steps,
            filters: [&program, &tool],
            cap_last: self.cap_last,
            clear_groups: self.clear_groups,
            buf: &mut buf,
            ptrs: &mut ptrs,
            stack: &mut stack,
        };
        let flags = (libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_PIDFD) as u64;
        // SAFETY: the child only runs `holder_main`, which makes syscalls on data built
        // above and never returns.
        let (pid, pidfd) = unsafe { sys::clone3(flags, None) }.map_err(|source| SandboxError::Io { what: "clone a sandbox holder", source })?;
        if pid == 0 {
            holder_main(config);
        }
        // SAFETY: CLONE_PIDFD gave us this new descriptor; we own it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let mut h = Holder { pid, pidfd, sock: mine, ready: false };
        match h.recv_within(PATIENCE) {
            Some(Reply::Ready) => {
                h.ready = true;
                Ok(h)
            }
            Some(Reply::Fault { step, errno }) => {
                h.kill();
                let name = match (self.names.get(step as usize), step_name(step)) {
                    (Some(name), _) => name.clone(),
                    (None, Some(name)) => name.to_string(),
                    (None, None) => format!("step {step}"),
                };
                Err(SandboxError::Setup { step: format!("sandbox holder: {name}"), errno: std::io::Error::from_raw_os_error(errno) })
            }
            _ => {
                h.kill();
                Err(SandboxError::Invalid("a new sandbox holder did not say it was ready".into()))
            }
        }
    }
}

/// What a run's command carries.
pub(super) struct CommandParts<'a> {
    pub argv: &'a [std::ffi::CString],
    pub env: &'a [std::ffi::CString],
    pub rlimits: &'a [(libc::__rlimit_resource_t, u64); child::RLIMITS.len()],
    pub uid: u32,
    pub gid: u32,
    pub tmp_bytes: u64,
    pub tool: bool,
    pub steps: bool,
    pub tasks: usize,
    pub cgroup_dir: bool,
}

/// Serializes a run's command: header, then argv and environment strings. None when
/// the run does not fit a command.
pub(super) fn command(p: &CommandParts<'_>) -> Option<Vec<u8>> {
    let CommandParts { argv, env, rlimits, uid, gid, tmp_bytes, tool, steps, tasks, cgroup_dir } = *p;
    let strings: usize = argv.iter().chain(env).map(|s| s.as_bytes_with_nul().len()).sum();
    if HEADER + strings > MAX_COMMAND || argv.len() + env.len() > MAX_STRINGS || argv.is_empty() {
        return None;
    }
    let mut flags = 0;
    if tool {
        flags |= FLAG_TOOL;
    }
    if steps {
        flags |= FLAG_STEPS;
    }
    if cgroup_dir {
        flags |= FLAG_CGROUP_DIR;
    }
    let header = Command {
        magic: MAGIC,
        flags,
        uid: uid.into(),
        gid: gid.into(),
        tmp_bytes,
        rlimits: rlimits.map(|(_, v)| v),
        argc: argv.len() as u64,
        envc: env.len() as u64,
        tasks: tasks as u64,
    };
    let mut out = Vec::with_capacity(HEADER + strings);
    // SAFETY: Command is repr(C) with u64 fields only (no padding): its bytes are
    // initialized, and it lives for the duration of the borrow.
    out.extend_from_slice(unsafe { std::slice::from_raw_parts((&header as *const Command).cast::<u8>(), HEADER) });
    for s in argv.iter().chain(env) {
        out.extend_from_slice(s.as_bytes_with_nul());
    }
    Some(out)
}

// ---- The holder process. Nothing below allocates, locks or panics. ----

fn report(kind: u32, a: u32, b: i32, switches: (u64, u64), fd: Option<RawFd>) {
    let r = Report { kind, a, b, _pad: 0, voluntary: switches.0, involuntary: switches.1 };
    // SAFETY: Report is repr(C) with integer fields and explicit padding, all set.
    let bytes = unsafe { std::slice::from_raw_parts((&r as *const Report).cast::<u8>(), size_of::<Report>()) };
    let one = [fd.unwrap_or(-1)];
    let _ = sys::send_with_fds(FD_SOCK, bytes, if fd.is_some() { &one } else { &[] });
}

fn fault(step: u32, errno: i32) -> ! {
    report(FAULT, step, errno, (0, 0), None);
    sys::exit(127)
}

/// The tmpfs options of a run's /tmp or /dev/shm, built in `buf` without allocating.
fn tmpfs_data(buf: &mut [u8; 96], bytes: u64, inodes: u32, remount: bool) -> Option<&CStr> {
    let mut w = Writer { buf, len: 0 };
    w.str(b"size=");
    w.num(bytes);
    if !remount {
        w.str(b",nr_inodes=");
        w.num(inodes.into());
        w.str(b",mode=1777");
    }
    w.str(b"\0");
    let len = w.len;
    CStr::from_bytes_with_nul(buf.get(..len)?).ok()
}

struct Writer<'a> {
    buf: &'a mut [u8; 96],
    len: usize,
}

impl Writer<'_> {
    fn str(&mut self, s: &[u8]) {
        for &b in s {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    fn num(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        let mut tmp = [0u8; 20];
        let count = digits.len() - i;
        tmp[..count].copy_from_slice(&digits[i..]);
        self.str(&tmp[..count]);
    }
}

/// Mounts fresh (or, with `remount`, resizes) /tmp and /dev/shm.
fn mount_tmp(bytes: u64, remount: bool) -> Result<(), i32> {
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    let extra = if remount { libc::MS_REMOUNT } else { 0 };
    for (dst, inodes, flags) in [(c"/tmp", plan::TMP_INODES, nosuid_nodev), (c"/dev/shm", plan::SHM_INODES, nosuid_nodev | libc::MS_NOEXEC)] {
        let mut buf = [0u8; 96];
        let data = tmpfs_data(&mut buf, bytes, inodes, remount).ok_or(libc::EINVAL)?;
        sys::mount(Some(c"tmpfs"), dst, Some(c"tmpfs"), flags | extra, Some(data))?;
    }
    Ok(())
}

/// The holder: set up once, then serve runs until the agent closes the socket.
fn holder_main(mut c: Config<'_>) -> ! {
    // The agent's thread that made us is the pool's, which lives as long as the agent's
    // sandbox: if the agent dies, so do we, and with us every run in our namespace.
    if sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong).is_err() {
        sys::exit(127);
    }
    // The namespaces first: the socket's move to its fixed number may replace either
    // descriptor (the agent's descriptors have any number).
    let netns = sys::setns(c.netns, libc::CLONE_NEWNET);
    let mount_ns = sys::setns(c.template_ns, libc::CLONE_NEWNS).and_then(|_| sys::unshare(libc::CLONE_NEWNS));
    if c.sock != FD_SOCK && sys::dup3_cloexec(c.sock, FD_SOCK).is_err() {
        sys::exit(127);
    }
    if let Err(e) = netns {
        fault(child::STEP_NETNS, e);
    }
    if let Err(e) = mount_ns {
        fault(child::STEP_MOUNT_NS, e);
    }
    // Nothing of the agent's stays open here: descriptors of other runs, cloned at the
    // same moment by other threads, included.
    sys::close_range(3, FD_SOCK as u32 - 1);
    sys::close_range(FD_SOCK as u32 + 1, u32::MAX);
    let null = match sys::open(c"/dev/null", libc::O_RDWR) {
        Ok(fd) => fd,
        Err(e) => fault(child::STEP_FDS, e),
    };
    for target in 0..3 {
        if let Err(e) = sys::dup2(null, target) {
            fault(child::STEP_FDS, e);
        }
    }
    sys::close(null);
    sys::umask(0);
    for (i, step) in c.steps.iter().enumerate() {
        if let Err(e) = child::run_step(step) {
            fault(i as u32, e);
        }
    }
    // Once for every program to come: none of them can gain a capability by exec. We
    // keep ours (mounts, namespaces), and never exec.
    if let Err(e) = sys::drop_bounding_set(c.cap_last) {
        fault(child::STEP_PRIVILEGES, e);
    }
    let mut tmp_bytes: u64 = 16 << 20;
    if let Err(e) = mount_tmp(tmp_bytes, false) {
        fault(STEP_TMP, e);
    }
    sys::umask(0o022);
    for (path, flags, target) in [
        (c"/proc/sys/kernel/ns_last_pid", libc::O_WRONLY, FD_LAST_PID),
        (c"/proc/self/net/unix", libc::O_RDONLY, FD_NET_UNIX),
    ] {
        match sys::open(path, flags).and_then(|fd| {
            let moved = sys::dup3_cloexec(fd, target);
            sys::close(fd);
            moved
        }) {
            Ok(()) => {}
            Err(e) => fault(STEP_START, e),
        }
    }
    report(READY, 0, 0, (0, 0), None);
    loop {
        let mut fds = [-1; sys::MAX_PASSED_FDS];
        let (n, nfds) = match sys::recv_with_fds(FD_SOCK, c.buf, &mut fds) {
            Ok((0, _)) => sys::exit(0),
            Ok(got) => got,
            Err(e) => fault(STEP_RECEIVE, e),
        };
        let Some(received) = fds.get(..nfds) else { fault(STEP_RECEIVE, libc::EINVAL) };
        if let Err((step, e)) = serve(&mut c, n, received, &mut tmp_bytes) {
            fault(step, e);
        }
        if let Err((step, e)) = reset(tmp_bytes) {
            fault(step, e);
        }
        report(READY, 0, 0, (0, 0), None);
    }
}

/// One run: descriptors into place, /box attached, the program forked, everything reaped.
fn serve(c: &mut Config<'_>, n: usize, received: &[RawFd], tmp_bytes: &mut u64) -> Result<(), (u32, i32)> {
    let close_received = || {
        for &fd in received {
            sys::close(fd);
        }
    };
    let Some(head) = c.buf.get(..HEADER) else {
        close_received();
        return Err((STEP_COMMAND, libc::EINVAL));
    };
    // SAFETY: `head` holds HEADER bytes; every bit pattern is a valid Command (u64s),
    // read unaligned.
    let cmd: Command = unsafe { std::ptr::read_unaligned(head.as_ptr().cast()) };
    let steps = cmd.flags & FLAG_STEPS != 0;
    let cgroup_dir = cmd.flags & FLAG_CGROUP_DIR != 0;
    let expected = 5 + usize::from(steps) + if cgroup_dir { 1 } else { cmd.tasks.min(8) as usize };
    let strings = cmd.argc.saturating_add(cmd.envc);
    if cmd.magic != MAGIC || n < HEADER || received.len() != expected || cmd.tasks > 4 || cmd.argc == 0 || strings as usize + 2 > c.ptrs.len() {
        close_received();
        return Err((STEP_COMMAND, libc::EINVAL));
    }
    // Descriptors into their fixed places, through temporaries above them all (the
    // received numbers may be any of the targets).
    let mut temps = [-1; sys::MAX_PASSED_FDS];
    for (i, &fd) in received.iter().enumerate() {
        let moved = sys::dup_above(fd, TEMP_FDS);
        sys::close(fd);
        match (moved, temps.get_mut(i)) {
            (Ok(t), Some(slot)) => *slot = t,
            (Err(e), _) => return Err((child::STEP_FDS, e)),
            (Ok(_), None) => return Err((child::STEP_FDS, libc::EINVAL)),
        }
    }
    let mut targets = [child::FD_STDIN, child::FD_STDOUT, child::FD_STDERR, child::FD_ERROR, FD_BOX, -1, -1, -1, -1, -1, -1];
    let mut next = 5;
    if steps {
        targets[next] = child::FD_STEPS;
        next += 1;
    }
    let tasks = if cgroup_dir { 0 } else { cmd.tasks as usize };
    if cgroup_dir {
        targets[next] = FD_CGROUP_DIR;
    } else {
        for (k, slot) in targets.iter_mut().skip(next).take(tasks).enumerate() {
            *slot = FD_TASKS + k as RawFd;
        }
    }
    for (&t, &target) in temps.iter().zip(&targets).take(expected) {
        if let Err(e) = sys::dup3_cloexec(t, target) {
            return Err((child::STEP_FDS, e));
        }
    }
    sys::close_range(TEMP_FDS as u32, u32::MAX);

    // The strings: argv, then the environment, each NUL-terminated, filling the rest.
    let Some(data) = c.buf.get(HEADER..n) else { return Err((STEP_COMMAND, libc::EINVAL)) };
    let argc = cmd.argc as usize;
    let total = strings as usize;
    let mut count = 0;
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == 0 {
            let slot = if count < argc { count } else { count + 1 };
            match (c.ptrs.get_mut(slot), data.get(start)) {
                (Some(p), Some(first)) if count < total => *p = first as *const u8 as *const libc::c_char,
                _ => return Err((STEP_COMMAND, libc::EINVAL)),
            }
            count += 1;
            start = i + 1;
        }
    }
    if count != total || start != data.len() {
        return Err((STEP_COMMAND, libc::EINVAL));
    }
    for end in [argc, total + 1] {
        match c.ptrs.get_mut(end) {
            Some(p) => *p = std::ptr::null(),
            None => return Err((STEP_COMMAND, libc::EINVAL)),
        }
    }

    if cmd.tmp_bytes != *tmp_bytes {
        mount_tmp(cmd.tmp_bytes, true).map_err(|e| (STEP_TMP, e))?;
        *tmp_bytes = cmd.tmp_bytes;
    }
    if let Err(e) = sys::move_mount_to(FD_BOX, c"/box") {
        return Err((child::STEP_BOX, e));
    }
    sys::close(FD_BOX);

    let mut rlimits = [(0 as libc::__rlimit_resource_t, 0u64); child::RLIMITS.len()];
    for ((slot, &resource), &value) in rlimits.iter_mut().zip(&child::RLIMITS).zip(&cmd.rlimits) {
        *slot = (resource, value);
    }
    let (Some(argv), Some(envp)) = (c.ptrs.get(..argc + 1), c.ptrs.get(argc + 1..total + 2)) else {
        return Err((STEP_COMMAND, libc::EINVAL));
    };
    let exec = Exec {
        argv,
        envp,
        cwd: c"/box",
        rlimits: &rlimits,
        uid: cmd.uid as u32,
        gid: cmd.gid as u32,
        cap_last: c.cap_last,
        clear_groups: c.clear_groups,
        bounding_dropped: true,
        with_steps: steps,
        seccomp: c.filters[usize::from(cmd.flags & FLAG_TOOL != 0)],
    };
    let before = sys::children_context_switches();
    let forked = if cgroup_dir {
        // Born in its v2 cgroup, which only clone3 can do: a fork.
        // SAFETY: this process has a single thread, so forking it is fork-safe; the
        // child only makes syscalls until execve.
        match unsafe { sys::clone3(libc::CLONE_PIDFD as u64, Some(FD_CGROUP_DIR)) } {
            Ok((0, _)) => program_main(&exec, 0),
            Ok(r) => Ok(r),
            Err(e) => Err(e.raw_os_error().unwrap_or(0)),
        }
    } else {
        let args = ProgramArgs { exec: &exec, tasks };
        // SAFETY: `program_entry` only makes syscalls on `args` (alive on our stack,
        // and we are suspended until the program execs or exits) and ends in execve or
        // _exit; `c.stack` is used by nothing else.
        unsafe { sys::vfork_on(program_entry, c.stack, (&args as *const ProgramArgs<'_, '_>).cast_mut().cast()) }
    };
    let (pid, pidfd) = forked.map_err(|e| (child::STEP_FORK, e))?;
    // Our copies go, so the agent sees end of file once the program's are gone, and the
    // error pipe's end at the program's exec.
    sys::close_range(child::FD_ERROR as u32, FD_BOX as u32);
    report(FORKED, 0, 0, (0, 0), Some(pidfd));
    sys::close(pidfd);

    let mut status = None;
    while let Some((p, s)) = sys::wait_any() {
        if p == pid {
            status = Some(s);
        }
        if status.is_some() {
            // The program is gone: so is everything it left (daemons, stopped children).
            sys::kill_all_others();
        }
    }
    let after = sys::children_context_switches();
    let switches = (after.0.saturating_sub(before.0), after.1.saturating_sub(before.1));
    let (has, value) = match status {
        Some(s) => (1, s),
        None => (0, 0),
    };
    report(DONE, has, value, switches, None);
    // A program that was not pid 2 means a process of an earlier run was still there.
    if pid != 2 {
        return Err((STEP_LEFTOVER, libc::EEXIST));
    }
    Ok(())
}

struct ProgramArgs<'a, 'b> {
    exec: &'a Exec<'b>,
    tasks: usize,
}

extern "C" fn program_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ProgramArgs` that `serve` passed to `vfork_on`, alive
    // until we exec or exit.
    let args = unsafe { &*(arg as *const ProgramArgs<'_, '_>) };
    program_main(args.exec, args.tasks)
}

/// The program's process up to its exec: into the run's cgroup, then as a fresh run's.
fn program_main(exec: &Exec<'_>, tasks: usize) -> ! {
    for k in 0..tasks {
        let fd = FD_TASKS + k as RawFd;
        if let Err(e) = sys::write_exact(fd, b"0") {
            child::fail(child::FD_ERROR, child::STEP_CGROUP, e);
        }
    }
    // Inside the run's cgroup: a cgroup namespace rooted here hides the host's tree.
    if let Err(e) = sys::unshare(libc::CLONE_NEWCGROUP) {
        child::fail(child::FD_ERROR, child::STEP_CGROUP_NS, e);
    }
    child::exec_user(exec)
}

/// Back to a clean state after a run: nothing of it may be visible to the next.
fn reset(tmp_bytes: u64) -> Result<(), (u32, i32)> {
    let step = |r: Result<(), i32>| r.map_err(|e| (STEP_RESET, e));
    step(sys::umount_detach(c"/box"))?;
    step(sys::umount_detach(c"/tmp"))?;
    step(sys::umount_detach(c"/dev/shm"))?;
    step(mount_tmp(tmp_bytes, false))?;
    // SysV objects and POSIX message queues live in the ipc namespace.
    step(sys::unshare(libc::CLONE_NEWIPC))?;
    // The next fork gets pid 2, as in a fresh namespace: pids tell nothing of earlier runs.
    step(sys::pwrite0(FD_LAST_PID, b"1"))?;
    if !sys::no_children() {
        return Err((STEP_LEFTOVER, libc::ECHILD));
    }
    // A unix socket of a run outlives it only while another holds it in flight (the
    // kernel's garbage collector frees such cycles later): its abstract name would still
    // be bound. The header line is all a clean namespace shows.
    let mut buf = [0u8; 512];
    let len = sys::pread0(FD_NET_UNIX, &mut buf).map_err(|e| (STEP_RESET, e))?;
    let lines = buf.iter().take(len).filter(|&&b| b == b'\n').count();
    if lines > 1 {
        return Err((STEP_LEFTOVER, libc::EADDRINUSE));
    }
    Ok(())
}
