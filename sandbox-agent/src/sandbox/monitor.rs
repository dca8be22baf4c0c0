//! The parent's side of a running sandbox: one poll loop over the run's pidfd, its
//! stdout/stderr, the error pipe (set-up failures, and the exec's moment) and the step
//! channel, enforcing the CPU, wall and output limits as it goes.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use protocol::LimitHit;

use super::cgroup::RunCgroup;
use super::holder::Session;
use super::{RunLimits, SandboxError, StepEvent, StepLimits};

/// How a watched run ended, as far as the monitor knows.
pub(super) enum Ended {
    /// Init exited on its own.
    Exited,
    /// We killed it for this limit.
    Limit(LimitHit),
}

/// What a run's end is watched on.
pub(super) enum Target {
    /// A fresh run's init: the run is over when it exits.
    Init(OwnedFd),
    /// A pooled run: over when its holder reports so (see `holder`).
    Holder(Session),
    /// Nothing left to watch (the run is over).
    Over,
}

impl Target {
    fn fd(&self) -> i32 {
        match self {
            Target::Init(pidfd) => pidfd.as_raw_fd(),
            Target::Holder(s) => s.holder.socket(),
            Target::Over => -1,
        }
    }

    fn kill(&mut self) {
        match self {
            Target::Init(pidfd) => kill(pidfd),
            Target::Holder(s) => s.kill(),
            Target::Over => {}
        }
    }
}

pub(super) struct Monitor<'a> {
    pub target: Target,
    pub out: [&'a OwnedFd; 2],
    pub err_pipe: &'a OwnedFd,
    pub step_pipe: Option<&'a OwnedFd>,
    pub capture: Capture,
    pub setup: SetupWatch,
    pub steps: Option<StepReader<'a>>,
    pub cancel: Option<&'a AtomicBool>,
    pub aborted: &'a AtomicBool,
    pub cpus: u32,
    /// The run's mount namespace, taken once the program has started (see `keep_mounts`).
    pub mounts: Option<OwnedFd>,
}

impl Monitor<'_> {
    /// Waits for init to exit while reading everything and enforcing the limits.
    pub fn watch(&mut self, limits: &RunLimits, cg: &RunCgroup, start: Instant) -> Result<Ended, SandboxError> {
        loop {
            let elapsed = start.elapsed();
            let cpu = Duration::from_nanos(cg.cpu_usage_ns()?);
            if self.aborted.load(Ordering::SeqCst) {
                self.target.kill();
                return Err(SandboxError::Aborted);
            }
            if self.cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                self.target.kill();
                return Err(SandboxError::Cancelled);
            }
            let hit = if elapsed >= limits.wall {
                Some(LimitHit::Wall)
            } else if cpu > limits.cpu {
                Some(LimitHit::Cpu)
            } else if self.capture.overflowed(limits.output_bytes) {
                Some(LimitHit::Output)
            } else {
                None
            };
            if let Some(hit) = hit {
                self.target.kill();
                return Ok(Ended::Limit(hit));
            }
            // CPU time can grow at most `cpus` times faster than the wall clock, so this
            // is the earliest moment either limit can be reached: no busy polling. A
            // cancellable run wakes often enough to stop within 100 ms of the request.
            let cpu_left = limits.cpu.saturating_sub(cpu) / self.cpus;
            let ceiling = if self.cancel.is_some() { Duration::from_millis(50) } else { Duration::from_millis(500) };
            let wait = cpu_left.min(limits.wall - elapsed).clamp(Duration::from_millis(1), ceiling);

            let fd_if = |open: bool, fd: &OwnedFd| if open { fd.as_raw_fd() } else { -1 };
            let step_fd = match (&self.steps, self.step_pipe) {
                (Some(r), Some(p)) if r.open => p.as_raw_fd(),
                _ => -1,
            };
            let mut pfds = [
                pollfd(self.target.fd()),
                pollfd(fd_if(self.capture.open[0], self.out[0])),
                pollfd(fd_if(self.capture.open[1], self.out[1])),
                pollfd(fd_if(self.setup.exec_at.is_none(), self.err_pipe)),
                pollfd(step_fd),
            ];
            // SAFETY: `pfds` is a valid array of pollfds for the duration of the call.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, wait.as_millis() as libc::c_int) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SandboxError::Io { what: "poll the run", source: e });
            }
            for i in 0..2 {
                if pfds[i + 1].revents != 0 {
                    self.capture.read(i, self.out[i])?;
                }
            }
            if pfds[3].revents != 0 {
                self.setup.read(self.err_pipe);
                if let (Some(_), None, Target::Init(pidfd)) = (self.setup.exec_at, &self.mounts, &self.target) {
                    self.mounts = super::sys::pidfd_mount_namespace(pidfd.as_raw_fd());
                }
            }
            if pfds[4].revents != 0
                && let (Some(r), Some(p)) = (self.steps.as_mut(), self.step_pipe)
            {
                r.read(p, cg, start)?;
            }
            if pfds[0].revents != 0 {
                match &mut self.target {
                    Target::Init(_) | Target::Over => return Ok(Ended::Exited),
                    Target::Holder(s) => {
                        s.on_readable();
                        if s.finished() {
                            return Ok(Ended::Exited);
                        }
                    }
                }
            }
        }
    }

    /// Reads what is left once init is gone. Every writer died with the namespace, so
    /// end of file comes at once; the deadline only guards against a descriptor leaked
    /// into a process outside the run.
    pub fn drain(&mut self, cg: &RunCgroup, start: Instant) -> Result<(), SandboxError> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let readable = |fd: &OwnedFd| {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = pollfd(fd.as_raw_fd());
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) > 0 }
        };
        for i in 0..2 {
            while self.capture.open[i] {
                if !readable(self.out[i]) {
                    tracing::warn!("output pipe still open after the run ended; giving up on it");
                    break;
                }
                self.capture.read(i, self.out[i])?;
            }
        }
        if let (Some(r), Some(p)) = (self.steps.as_mut(), self.step_pipe) {
            while r.open && readable(p) {
                r.read(p, cg, start)?;
            }
            r.finish(cg, start)?;
        }
        self.setup.finish(self.err_pipe);
        Ok(())
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// Kills a run's init, and with it the whole pid namespace.
pub(super) fn kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal on our own un-reaped child's pidfd: it cannot hit a
    // recycled pid.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGKILL, 0, 0) };
}

/// Reads into `buf` what a readable descriptor holds; `Ok(0)` is end of file.
fn read_into(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, SandboxError> {
    loop {
        // SAFETY: reading into a buffer of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(SandboxError::Io { what: "read from the run", source: e });
        }
    }
}

/// The run's stdout and stderr, each kept up to `cap` bytes.
pub(super) struct Capture {
    pub bufs: [Vec<u8>; 2],
    pub open: [bool; 2],
    /// Everything read, kept or not.
    pub total: [u64; 2],
    /// One byte more than the output limit, so an overflow is visible.
    pub cap: usize,
}

impl Capture {
    pub fn new(output_bytes: u64) -> Capture {
        let cap = usize::try_from(output_bytes.saturating_add(1)).unwrap_or(usize::MAX);
        Capture { bufs: [Vec::new(), Vec::new()], open: [true, true], total: [0, 0], cap }
    }

    fn read(&mut self, i: usize, fd: &OwnedFd) -> Result<(), SandboxError> {
        let mut chunk = [0u8; 65536];
        let n = read_into(fd, &mut chunk)?;
        if n == 0 {
            self.open[i] = false;
            return Ok(());
        }
        self.total[i] += n as u64;
        let buf = &mut self.bufs[i];
        let room = self.cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..n.min(room)]);
        Ok(())
    }

    pub fn overflowed(&self, limit: u64) -> bool {
        self.bufs.iter().any(|b| b.len() as u64 > limit)
    }
}

/// The error pipe: a failure report from the child, or end of file at the exec.
pub(super) struct SetupWatch {
    pub report: Vec<u8>,
    pub exec_at: Option<Instant>,
}

impl SetupWatch {
    fn read(&mut self, fd: &OwnedFd) {
        let mut buf = [0u8; 8];
        match read_into(fd, &mut buf) {
            Ok(0) => self.exec_at = Some(Instant::now()),
            Ok(n) => self.report.extend_from_slice(&buf[..n]),
            Err(_) => self.exec_at = Some(Instant::now()),
        }
    }

    fn finish(&mut self, fd: &OwnedFd) {
        while self.exec_at.is_none() && self.report.len() < 8 {
            self.read(fd);
        }
    }

    /// The (step, errno) the child reported, if it failed before or at exec.
    pub fn failure(&self) -> Option<(u32, i32)> {
        let b = self.report.get(..8)?;
        let step = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let errno = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]) as i32;
        Some((step, errno))
    }
}

/// Splits the step channel into lines and hands each to the observer with the run's
/// CPU time and memory read at that instant, within the step caps.
pub(super) struct StepReader<'a> {
    pub limits: StepLimits,
    pub sink: &'a mut dyn FnMut(StepEvent<'_>),
    pub open: bool,
    pending: Vec<u8>,
    /// The current line is over `max_line_bytes` and is being skipped.
    skipping: bool,
    pub delivered: u64,
    pub dropped: u64,
    bytes: u64,
}

impl<'a> StepReader<'a> {
    pub fn new(limits: StepLimits, sink: &'a mut dyn FnMut(StepEvent<'_>)) -> StepReader<'a> {
        StepReader { limits, sink, open: true, pending: Vec::new(), skipping: false, delivered: 0, dropped: 0, bytes: 0 }
    }

    fn read(&mut self, fd: &OwnedFd, cg: &RunCgroup, start: Instant) -> Result<(), SandboxError> {
        let mut chunk = [0u8; 65536];
        let n = read_into(fd, &mut chunk)?;
        if n == 0 {
            self.open = false;
            return Ok(());
        }
        // Past the caps the channel is still drained, so the program never blocks on it.
        let mut rest = &chunk[..n];
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.push(&rest[..nl]);
            if !self.skipping {
                let line = std::mem::take(&mut self.pending);
                self.deliver(&line, cg, start)?;
            }
            self.skipping = false;
            rest = &rest[nl + 1..];
        }
        self.push(rest);
        Ok(())
    }

    fn push(&mut self, part: &[u8]) {
        if self.skipping {
            return;
        }
        if self.pending.len() + part.len() > self.limits.max_line_bytes {
            self.pending.clear();
            self.skipping = true;
            self.dropped += 1;
            return;
        }
        self.pending.extend_from_slice(part);
    }

    fn deliver(&mut self, line: &[u8], cg: &RunCgroup, start: Instant) -> Result<(), SandboxError> {
        if line.is_empty() {
            return Ok(());
        }
        self.bytes += line.len() as u64;
        if self.delivered >= self.limits.max_steps || self.bytes > self.limits.max_total_bytes {
            self.dropped += 1;
            return Ok(());
        }
        let cpu = Duration::from_nanos(cg.cpu_usage_ns()?);
        let memory_bytes = cg.memory_current_bytes().unwrap_or(0);
        (self.sink)(StepEvent { index: self.delivered, line, cpu, memory_bytes, elapsed: start.elapsed() });
        self.delivered += 1;
        Ok(())
    }

    /// A last line without its newline still counts.
    fn finish(&mut self, cg: &RunCgroup, start: Instant) -> Result<(), SandboxError> {
        if !self.skipping && !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.deliver(&line, cg, start)?;
        }
        Ok(())
    }
}
