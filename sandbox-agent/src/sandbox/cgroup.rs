//! Per-run cgroups on cgroup v1 (hybrid hosts) and v2, behind one type.
//!
//! Groups are created only below the agent's own cgroup in each hierarchy, under a parent
//! named after the project, so the agent never writes outside what it was delegated. The
//! filesystem root is injectable: the v2 code is unit-tested against fixture directories.
//! We write the control files ourselves rather than through cgroups-rs: its builder
//! touches every v1 hierarchy at the top level, which is exactly what we must not do.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::path::{Path, PathBuf};

/// Name of the parent group of all runs, in every hierarchy.
pub const PROJECT: &str = "judge-cluster";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("no usable cgroup hierarchy: {0}")]
    Unsupported(String),
    #[error("unexpected content in {path}: {content:?}")]
    Parse { path: PathBuf, content: String },
}

/// Limits a run's cgroup enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory_bytes: u64,
    pub max_processes: u32,
    /// Pins the run to this CPU when the cpuset controller is available.
    pub cpu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// One directory per controller (hybrid hosts such as ours); cpuset when mounted.
    V1 { memory: PathBuf, pids: PathBuf, cpuacct: PathBuf, cpuset: Option<PathBuf> },
    /// The unified hierarchy; `cpuset` tells whether that controller could be delegated.
    V2 { parent: PathBuf, cpuset: bool },
}

/// Creates per-run cgroups below the agent's own cgroup.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    layout: Layout,
}

impl CgroupManager {
    /// Finds this process's cgroups on the live system and prepares the project parent.
    pub fn detect() -> Result<CgroupManager, CgroupError> {
        let read = |p: &str| fs::read_to_string(p).map_err(|source| CgroupError::Read { path: p.into(), source });
        let mut mgr = CgroupManager::from_proc(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?, Path::new("/"))?;
        mgr.prepare()?;
        Ok(mgr)
    }

    /// Works out the layout from `/proc/self/mountinfo` and `/proc/self/cgroup` contents;
    /// `fs_root` prefixes every path (a fixture directory in tests, `/` for real).
    pub fn from_proc(mountinfo: &str, proc_cgroup: &str, fs_root: &Path) -> Result<CgroupManager, CgroupError> {
        let mounts = parse_mountinfo(mountinfo);
        let own = |controller: &str| -> Option<String> {
            proc_cgroup.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                let hit = if controller.is_empty() { ctrls.is_empty() } else { ctrls.split(',').any(|c| c == controller) };
                hit.then(|| path.to_string())
            })
        };
        let place = |m: &Mount, path: &str| -> PathBuf {
            let rel = path.strip_prefix(m.root.as_str()).unwrap_or(path);
            let dir = m.point.join(rel.trim_start_matches('/')).join(PROJECT);
            fs_root.join(dir.strip_prefix("/").unwrap_or(&dir))
        };
        let v1 = |controller: &str| -> Option<PathBuf> {
            let m = mounts.iter().find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == controller))?;
            Some(place(m, &own(controller)?))
        };
        if let Some(memory) = v1("memory") {
            let missing = |c: &str| CgroupError::Unsupported(format!("memory is on cgroup v1 but {c} is not"));
            let pids = v1("pids").ok_or_else(|| missing("pids"))?;
            let cpuacct = v1("cpuacct").ok_or_else(|| missing("cpuacct"))?;
            let cpuset = v1("cpuset");
            return Ok(CgroupManager { layout: Layout::V1 { memory, pids, cpuacct, cpuset } });
        }
        let m = mounts
            .iter()
            .find(|m| m.fstype == "cgroup2")
            .ok_or_else(|| CgroupError::Unsupported("no cgroup v1 memory controller and no cgroup2 mount".into()))?;
        let path = own("").ok_or_else(|| CgroupError::Unsupported("no cgroup v2 entry in /proc/self/cgroup".into()))?;
        Ok(CgroupManager { layout: Layout::V2 { parent: place(m, &path), cpuset: false } })
    }

    /// Creates the project parents and, on v2, delegates the controllers runs need.
    fn prepare(&mut self) -> Result<(), CgroupError> {
        match &mut self.layout {
            Layout::V1 { memory, pids, cpuacct, cpuset } => {
                for dir in [&*memory, &*pids, &*cpuacct] {
                    mkdir(dir)?;
                }
                // Hierarchical accounting, so a run's children are charged to the run.
                let _ = write(&memory.join("memory.use_hierarchy"), "1");
                if let Some(dir) = cpuset.clone() {
                    // A v1 cpuset group takes no process until it has CPUs and memory
                    // nodes: the project parent gets its parent's.
                    let ready = mkdir(&dir).and_then(|_| inherit_cpuset(&dir));
                    if let Err(e) = ready {
                        tracing::warn!(error = %e, "cpuset unavailable; runs are not pinned to CPUs");
                        *cpuset = None;
                    }
                }
                Ok(())
            }
            Layout::V2 { parent, cpuset } => {
                let own = parent.parent().ok_or_else(|| CgroupError::Unsupported("v2 parent has no parent".into()))?;
                let controllers = read(&own.join("cgroup.controllers"))?;
                for needed in ["memory", "pids"] {
                    if !controllers.split_whitespace().any(|c| c == needed) {
                        return Err(CgroupError::Unsupported(format!(
                            "cgroup v2 controller {needed} is not delegated to {}",
                            own.display()
                        )));
                    }
                }
                let enable = "+memory +pids";
                if write(&own.join("cgroup.subtree_control"), enable).is_err() {
                    // "No internal processes": a cgroup that hands controllers to its
                    // children may hold no process itself, so the agent moves into a leaf.
                    let leaf = own.join(format!("{PROJECT}-agent"));
                    mkdir(&leaf)?;
                    for pid in read(&own.join("cgroup.procs"))?.split_whitespace() {
                        // A process may exit meanwhile; the retry below tells if it mattered.
                        let _ = write(&leaf.join("cgroup.procs"), pid);
                    }
                    write(&own.join("cgroup.subtree_control"), enable)?;
                }
                mkdir(parent)?;
                write(&parent.join("cgroup.subtree_control"), enable)?;
                // Pinning is a bonus: without a delegated cpuset, runs just float.
                *cpuset = controllers.split_whitespace().any(|c| c == "cpuset")
                    && write(&own.join("cgroup.subtree_control"), "+cpuset").is_ok()
                    && write(&parent.join("cgroup.subtree_control"), "+cpuset").is_ok();
                Ok(())
            }
        }
    }

    /// CPUs runs may be pinned to (empty when the cpuset controller is unavailable).
    pub fn pinnable_cpus(&self) -> Vec<u32> {
        let list = match &self.layout {
            Layout::V1 { cpuset: Some(dir), .. } => read(&dir.join("cpuset.effective_cpus")).or_else(|_| read(&dir.join("cpuset.cpus"))),
            Layout::V2 { parent, cpuset: true } => read(&parent.join("cpuset.cpus.effective")),
            _ => return Vec::new(),
        };
        list.map(|l| parse_cpu_list(&l)).unwrap_or_default()
    }

    /// Kills and removes run groups left by an agent that died mid-run. Groups are named
    /// `run-<agent pid>-<n>`; those of a live process (another agent, a test) are kept.
    pub fn remove_stale(&self) {
        let parents: Vec<&PathBuf> = match &self.layout {
            Layout::V1 { memory, pids, cpuacct, cpuset } => {
                [Some(memory), Some(pids), Some(cpuacct), cpuset.as_ref()].into_iter().flatten().collect()
            }
            Layout::V2 { parent, .. } => vec![parent],
        };
        for parent in parents {
            let Ok(entries) = fs::read_dir(parent) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("run-").and_then(|r| r.split('-').next()) else { continue };
                if Path::new("/proc").join(pid).exists() {
                    continue;
                }
                if e.path().is_dir() {
                    // One directory of one hierarchy: the V2 shape describes exactly that.
                    let groups = Groups::V2 { dir: e.path(), cpuset: false };
                    let stale = RunCgroup::new(groups);
                    stale.kill_all_listed();
                    stale.remove();
                }
            }
        }
    }

    /// The directories the agent must be able to write (the project parents, or their
    /// parents while they do not exist yet) that the calling user cannot: empty when
    /// the hierarchy is delegated to it. Checked with access(2), by the real uid.
    pub fn undelegated_dirs(&self) -> Vec<PathBuf> {
        let dirs: Vec<&PathBuf> = match &self.layout {
            Layout::V1 { memory, pids, cpuacct, .. } => vec![memory, pids, cpuacct],
            Layout::V2 { parent, .. } => vec![parent],
        };
        dirs.into_iter()
            .filter_map(|d| {
                let existing = d.ancestors().find(|a| a.exists())?;
                let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
                // SAFETY: a NUL-terminated path that outlives the call.
                let ok = unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0;
                (!ok).then(|| existing.to_path_buf())
            })
            .collect()
    }

    /// Whether runs are accounted on cgroup v2 (for logs and metrics).
    pub fn is_v2(&self) -> bool {
        matches!(self.layout, Layout::V2 { .. })
    }

    /// Creates the cgroup of one run with its limits set, ready for a process.
    pub fn create(&self, name: &str, limits: CgroupLimits) -> Result<RunCgroup, CgroupError> {
        let groups = match &self.layout {
            Layout::V1 { memory, pids, cpuacct, cpuset } => Groups::V1 {
                memory: memory.join(name),
                pids: pids.join(name),
                cpuacct: cpuacct.join(name),
                cpuset: cpuset.as_ref().map(|c| c.join(name)),
            },
            Layout::V2 { parent, cpuset } => Groups::V2 { dir: parent.join(name), cpuset: *cpuset },
        };
        let mut run = RunCgroup::new(groups);
        for dir in run.dirs() {
            // A stale group of the same name (an agent killed mid-run) is removed first.
            if dir.exists() {
                let _ = fs::remove_dir(dir);
            }
            mkdir(dir)?;
        }
        if let Err(e) = run.set_limits(limits) {
            run.remove();
            return Err(e);
        }
        Ok(run)
    }
}

/// How a run's first process enters its cgroup (see `RunCgroup::join`).
#[derive(Debug)]
pub enum Join {
    /// One `tasks` file per v1 hierarchy, opened for writing.
    V1Tasks(Vec<OwnedFd>),
    /// The v2 group's directory.
    V2Dir(OwnedFd),
}

/// The cgroup of one run, possibly reused from an earlier run (see `reset`): every
/// reading is relative to the baseline taken when it was last reset. Call `remove` once
/// its processes are gone and it is not to be reused.
#[derive(Debug)]
pub struct RunCgroup {
    groups: Groups,
    base: Baseline,
    /// The limits last written, so a reused group rewrites only what changed.
    limits: Option<CgroupLimits>,
    /// Control files read on every poll and reset, kept open and re-read from offset 0:
    /// no path lookup, open and close per reading.
    files: Mutex<Vec<(PathBuf, OwnedFd)>>,
    /// Control files written on every reset, kept open the same way.
    written: Vec<(PathBuf, OwnedFd)>,
    join: OnceLock<Join>,
}

#[derive(Debug)]
enum Groups {
    V1 { memory: PathBuf, pids: PathBuf, cpuacct: PathBuf, cpuset: Option<PathBuf> },
    V2 { dir: PathBuf, cpuset: bool },
}

/// Cumulative counters of a group at its last reset.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Baseline {
    cpu_ns: u64,
    oom_kills: u64,
    pids_hits: u64,
}

/// Memory an earlier run may leave charged to a group that is then reused (page cache
/// of files it read, kernel objects freed a grace period later): more, and the group is
/// replaced, since it would eat into the next run's limit. It is not subtracted from the
/// next run's peak: part of it is freed during that run, and a peak below what a run
/// really used is worse than one at most this much above.
const REUSE_RESIDUE_BYTES: u64 = 1 << 20;

impl RunCgroup {
    fn new(groups: Groups) -> RunCgroup {
        RunCgroup { groups, base: Baseline::default(), limits: None, files: Mutex::default(), written: Vec::new(), join: OnceLock::new() }
    }

    /// Writes a control file through a descriptor kept open (see `written`).
    fn write_cached(&mut self, path: PathBuf, value: &str) -> Result<(), CgroupError> {
        let i = match self.written.iter().position(|(p, _)| *p == path) {
            Some(i) => i,
            None => {
                let fd = open_fd(&path, libc::O_WRONLY)?;
                self.written.push((path.clone(), fd));
                self.written.len() - 1
            }
        };
        let fd = self.written[i].1.as_raw_fd();
        // Control files ignore the offset and the truncation; a fixture's regular file
        // needs both to end up holding just `value`.
        // SAFETY: ftruncate and pwrite on a descriptor we own, from a live buffer.
        let n = unsafe {
            libc::ftruncate(fd, 0);
            libc::pwrite(fd, value.as_ptr().cast(), value.len(), 0)
        };
        if n != value.len() as isize {
            return Err(CgroupError::Write { path, source: io::Error::last_os_error() });
        }
        Ok(())
    }

    /// Reads a control file through a descriptor kept open (see `files`).
    fn read_cached(&self, path: &Path) -> Result<String, CgroupError> {
        let err = |source: io::Error| CgroupError::Read { path: path.into(), source };
        let Ok(mut files) = self.files.lock() else { return read(path) };
        let fd = match files.iter().position(|(p, _)| p == path) {
            Some(i) => files[i].1.as_raw_fd(),
            None => {
                let fd = open_fd(path, libc::O_RDONLY).map_err(|e| match e {
                    CgroupError::Write { source, .. } => err(source),
                    other => other,
                })?;
                let raw = fd.as_raw_fd();
                files.push((path.to_path_buf(), fd));
                raw
            }
        };
        let mut buf = [0u8; 4096];
        let mut len = 0;
        while len < buf.len() {
            // SAFETY: reading into the unused rest of a local buffer, at that offset.
            let n = unsafe { libc::pread(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len, len as libc::off_t) };
            match n {
                0 => break,
                n if n > 0 => len += n as usize,
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                _ => return Err(err(io::Error::last_os_error())),
            }
        }
        Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    fn read_u64(&self, path: &Path) -> Result<u64, CgroupError> {
        let s = self.read_cached(path)?;
        s.trim().parse().map_err(|_| CgroupError::Parse { path: path.into(), content: s })
    }

    /// Reads `key value` from a flat-keyed file (`memory.events`, `cpu.stat`, ...).
    fn read_keyed(&self, path: &Path, key: &str) -> Result<u64, CgroupError> {
        let s = self.read_cached(path)?;
        s.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
            .ok_or_else(|| CgroupError::Parse { path: path.into(), content: s.clone() })
    }

    fn dirs(&self) -> Vec<&Path> {
        match &self.groups {
            Groups::V1 { memory, pids, cpuacct, cpuset } => {
                [Some(memory), Some(pids), Some(cpuacct), cpuset.as_ref()].into_iter().flatten().map(|p| p.as_path()).collect()
            }
            Groups::V2 { dir, .. } => vec![dir],
        }
    }

    /// Writes the limits of the next run (only those that changed since the last).
    pub fn set_limits(&mut self, l: CgroupLimits) -> Result<(), CgroupError> {
        if self.limits == Some(l) {
            return Ok(());
        }
        // Unknown until written in full: a failure below leaves the group unusable.
        self.limits = None;
        let mem = l.memory_bytes.to_string();
        match &self.groups {
            Groups::V1 { memory, pids, cpuset, .. } => {
                if let Some(dir) = cpuset {
                    inherit_cpuset(dir)?;
                    if let Some(cpu) = l.cpu {
                        write(&dir.join("cpuset.cpus"), &cpu.to_string())?;
                    }
                }
                // memsw exists only with swap accounting; without it swappiness 0 is the
                // best v1 offers, and hosts without swap need neither. It may never be
                // below the memory limit, so a reused group's is lifted first.
                let memsw = memory.join("memory.memsw.limit_in_bytes");
                let has_memsw = memsw.exists();
                if has_memsw && self.limits.is_none() {
                    write(&memsw, "-1")?;
                }
                write(&memory.join("memory.limit_in_bytes"), &mem)?;
                if has_memsw {
                    write(&memsw, &mem)?;
                }
                let _ = write(&memory.join("memory.swappiness"), "0");
                write(&pids.join("pids.max"), &l.max_processes.to_string())?;
            }
            Groups::V2 { dir, cpuset } => {
                if let (true, Some(cpu)) = (*cpuset, l.cpu) {
                    write(&dir.join("cpuset.cpus"), &cpu.to_string())?;
                }
                write(&dir.join("memory.max"), &mem)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
                write(&dir.join("pids.max"), &l.max_processes.to_string())?;
            }
        }
        self.limits = Some(l);
        Ok(())
    }

    /// Makes a group whose processes are all gone ready for another run: its counters
    /// become the new baseline. False when it cannot be reused and should be removed:
    /// on v2 (memory.peak cannot be reset portably: kernels before 6.12 lack it, and
    /// after it is per open file), or when an earlier run left more than
    /// `REUSE_RESIDUE_BYTES` charged to it.
    pub fn reset(&mut self) -> Result<bool, CgroupError> {
        let Groups::V1 { memory, cpuacct, .. } = &self.groups else { return Ok(false) };
        if !self.is_empty()? {
            return Ok(false);
        }
        let usage = memory.join("memory.usage_in_bytes");
        let mut residue = self.read_u64(&usage)?;
        if residue > REUSE_RESIDUE_BYTES {
            // Reclaims what it can (page cache); tmpfs pages of files still alive stay.
            let _ = write(&memory.join("memory.force_empty"), "0");
            residue = self.read_u64(&usage)?;
            if residue > REUSE_RESIDUE_BYTES {
                return Ok(false);
            }
        }
        let (usage, peak) = (cpuacct.join("cpuacct.usage"), memory.join("memory.max_usage_in_bytes"));
        self.write_cached(usage, "0")?;
        // Resets the peak to the current use: the residue.
        self.write_cached(peak, "0")?;
        self.base = Baseline::default();
        self.base = Baseline {
            cpu_ns: self.cpu_usage_ns()?,
            oom_kills: self.oom_kills()?,
            pids_hits: self.pids_limit_hits()?,
        };
        Ok(true)
    }

    /// What a run's init needs to be born in, or to move itself into, this group: the
    /// v2 directory for `CLONE_INTO_CGROUP`, or each v1 hierarchy's `tasks` file, into
    /// which a thread writes "0" to move itself. Both avoid a migration by the parent,
    /// which takes the kernel's global threadgroup lock and waits an RCU grace period
    /// (~10 ms on an idle host) on every write to `cgroup.procs`.
    /// Opened once per group, so a reused group costs no opens.
    pub fn join(&self) -> Result<&Join, CgroupError> {
        if let Some(j) = self.join.get() {
            return Ok(j);
        }
        let join = match &self.groups {
            Groups::V1 { .. } => {
                let fds = self.dirs().into_iter().map(|d| open_fd(&d.join("tasks"), libc::O_WRONLY)).collect::<Result<_, _>>()?;
                Join::V1Tasks(fds)
            }
            Groups::V2 { dir, .. } => Join::V2Dir(open_fd(dir, libc::O_RDONLY | libc::O_DIRECTORY)?),
        };
        Ok(self.join.get_or_init(|| join))
    }

    /// CPU time (user + sys) of every process that ran in the group since its last
    /// reset, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Result<u64, CgroupError> {
        let total = match &self.groups {
            Groups::V1 { cpuacct, .. } => self.read_u64(&cpuacct.join("cpuacct.usage"))?,
            Groups::V2 { dir, .. } => self.read_keyed(&dir.join("cpu.stat"), "usage_usec")?.saturating_mul(1000),
        };
        Ok(total.saturating_sub(self.base.cpu_ns))
    }

    /// The group's peak memory use in bytes since its last reset (including at most
    /// `REUSE_RESIDUE_BYTES` earlier runs left charged).
    pub fn memory_peak_bytes(&self) -> Result<u64, CgroupError> {
        match &self.groups {
            Groups::V1 { memory, .. } => self.read_u64(&memory.join("memory.max_usage_in_bytes")),
            Groups::V2 { dir, .. } => self.read_u64(&dir.join("memory.peak")),
        }
    }

    /// Current memory use, for live step data.
    pub fn memory_current_bytes(&self) -> Result<u64, CgroupError> {
        match &self.groups {
            Groups::V1 { memory, .. } => self.read_u64(&memory.join("memory.usage_in_bytes")),
            Groups::V2 { dir, .. } => self.read_u64(&dir.join("memory.current")),
        }
    }

    /// How many times the OOM killer killed a process of this group since its reset.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let total = match &self.groups {
            Groups::V1 { memory, .. } => self.read_keyed(&memory.join("memory.oom_control"), "oom_kill")?,
            Groups::V2 { dir, .. } => self.read_keyed(&dir.join("memory.events"), "oom_kill")?,
        };
        Ok(total.saturating_sub(self.base.oom_kills))
    }

    /// How many forks the pids limit refused since the group's reset.
    pub fn pids_limit_hits(&self) -> Result<u64, CgroupError> {
        let dir = match &self.groups {
            Groups::V1 { pids, .. } => pids,
            Groups::V2 { dir, .. } => dir,
        };
        Ok(self.read_keyed(&dir.join("pids.events"), "max")?.saturating_sub(self.base.pids_hits))
    }

    /// Whether any process is still in the group. On v1 the pids hierarchy tells: init
    /// joins every hierarchy before anything else runs, and fails the run if it cannot,
    /// so each of the run's processes is in this group's pids cgroup too.
    pub fn is_empty(&self) -> Result<bool, CgroupError> {
        let dir = match &self.groups {
            Groups::V1 { pids, .. } => pids,
            Groups::V2 { dir, .. } => dir,
        };
        Ok(self.read_cached(&dir.join("cgroup.procs"))?.trim().is_empty())
    }

    /// SIGKILLs every process in the group: `cgroup.kill` on v2, each listed pid on v1.
    /// Only a fallback: a run is normally stopped by killing its pid namespace's init.
    pub fn kill_all(&self) {
        if let Groups::V2 { dir, .. } = &self.groups
            && write(&dir.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        self.kill_all_listed();
    }

    fn kill_all_listed(&self) {
        for dir in self.dirs() {
            let Ok(list) = read(&dir.join("cgroup.procs")) else { continue };
            for pid in list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill(2) has no memory preconditions. The pid was read from a
                // run's cgroup, which only that run's processes can be in.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    /// Removes the group's directories; a group that still holds processes stays (and
    /// is reported), since rmdir refuses it.
    pub fn remove(&self) {
        for dir in self.dirs() {
            if let Err(e) = fs::remove_dir(dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove run cgroup");
            }
        }
    }
}

struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    options: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fstype = post.next()?.to_string();
            let _source = post.next()?;
            let options = post.next().unwrap_or("").split(',').map(str::to_string).collect();
            Some(Mount { root: pre.get(3)?.to_string(), point: PathBuf::from(pre.get(4)?), fstype, options })
        })
        .collect()
}

/// Copies a v1 cpuset group's parent's CPUs and memory nodes into it.
fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let parent = dir.parent().unwrap_or(dir);
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let value = read(&parent.join(file))?;
        write(&dir.join(file), value.trim())?;
    }
    Ok(())
}

/// Parses a kernel CPU list such as `0-3,6,8-9`.
fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    cpus.extend(a..=b.min(a.saturating_add(4096)));
                }
            }
            None => cpus.extend(part.parse::<u32>().ok()),
        }
    }
    cpus
}

fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(source) => Err(CgroupError::Create { path: dir.into(), source }),
    }
}

fn open_fd(path: &Path, flags: libc::c_int) -> Result<OwnedFd, CgroupError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| CgroupError::Parse { path: path.into(), content: "NUL in the path".into() })?;
    // SAFETY: a NUL-terminated path and valid flags; the new descriptor is ours.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(CgroupError::Write { path: path.into(), source: io::Error::last_os_error() });
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.into(), source })
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n0::/\n";

    #[test]
    fn hybrid_host_uses_v1_below_own_groups() {
        let m = CgroupManager::from_proc(HYBRID_MOUNTINFO, HYBRID_CGROUP, Path::new("/")).unwrap();
        assert_eq!(
            m.layout,
            Layout::V1 {
                memory: "/sys/fs/cgroup/memory/process_api/abc/judge-cluster".into(),
                pids: "/sys/fs/cgroup/pids/judge-cluster".into(),
                cpuacct: "/sys/fs/cgroup/cpuacct/judge-cluster".into(),
                cpuset: None,
            }
        );
    }

    #[test]
    fn v1_without_pids_is_refused() {
        let mi = HYBRID_MOUNTINFO.replace("rw,pids", "rw,freezer");
        assert!(matches!(
            CgroupManager::from_proc(&mi, HYBRID_CGROUP, Path::new("/")),
            Err(CgroupError::Unsupported(_))
        ));
    }

    /// A pure v2 host as seen from a container whose cgroup namespace root is mounted.
    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,6,8-9\n"), vec![0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("x,2"), vec![2]);
    }

    fn v2_fixture() -> (tempfile::TempDir, CgroupManager, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("sys/fs/cgroup/system.slice/judge.service");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        fs::write(own.join("cgroup.procs"), "").unwrap();
        fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let cg = "0::/system.slice/judge.service\n";
        let m = CgroupManager::from_proc(mountinfo, cg, root.path()).unwrap();
        (root, m, own)
    }

    #[test]
    fn v2_layout_limits_and_readings_on_a_fixture() {
        let (_root, mut m, own) = v2_fixture();
        assert!(m.is_v2());
        m.prepare().unwrap();
        // The fixture's files take any write: the last one enabled cpuset.
        assert_eq!(fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(), "+cpuset");
        let parent = own.join(PROJECT);
        assert_eq!(fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap(), "+cpuset");
        fs::write(parent.join("cpuset.cpus.effective"), "0-1\n").unwrap();
        assert_eq!(m.pinnable_cpus(), vec![0, 1]);

        let run = m.create("run-1", CgroupLimits { memory_bytes: 64 << 20, max_processes: 32, cpu: Some(1) }).unwrap();
        let dir = parent.join("run-1");
        assert_eq!(fs::read_to_string(dir.join("cpuset.cpus")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("memory.max")).unwrap(), (64u64 << 20).to_string());
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "32");
        assert!(matches!(run.join().unwrap(), Join::V2Dir(_)));
        fs::write(dir.join("cgroup.procs"), "4242\n").unwrap();

        fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n").unwrap();
        fs::write(dir.join("memory.peak"), "67108864\n").unwrap();
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        fs::write(dir.join("pids.events"), "max 7\n").unwrap();
        assert_eq!(run.cpu_usage_ns().unwrap(), 1_500_000);
        assert_eq!(run.memory_peak_bytes().unwrap(), 64 << 20);
        assert_eq!(run.oom_kills().unwrap(), 1);
        assert_eq!(run.pids_limit_hits().unwrap(), 7);
        assert!(!run.is_empty().unwrap());
        fs::write(dir.join("memory.peak"), "garbage").unwrap();
        assert!(matches!(run.memory_peak_bytes(), Err(CgroupError::Parse { .. })));
    }

    /// A reused v1 group: counters that cannot be reset become the baseline, the peak
    /// is reset and what earlier runs left charged is not the next run's.
    #[test]
    fn v1_reset_takes_a_baseline_on_a_fixture() {
        let root = tempfile::tempdir().unwrap();
        let m = CgroupManager::from_proc(HYBRID_MOUNTINFO, HYBRID_CGROUP, root.path()).unwrap();
        let mut run = m.create("run-1-0", CgroupLimits { memory_bytes: 64 << 20, max_processes: 16, cpu: None }).unwrap();
        let memory = root.path().join("sys/fs/cgroup/memory/process_api/abc/judge-cluster/run-1-0");
        let pids = root.path().join("sys/fs/cgroup/pids/judge-cluster/run-1-0");
        let cpuacct = root.path().join("sys/fs/cgroup/cpuacct/judge-cluster/run-1-0");
        assert_eq!(fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap(), (64u64 << 20).to_string());
        // What the first run left: an OOM kill, refused forks, CPU time, a peak.
        fs::write(pids.join("cgroup.procs"), "").unwrap();
        fs::write(pids.join("pids.events"), "max 5\n").unwrap();
        fs::write(memory.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        fs::write(memory.join("memory.usage_in_bytes"), "65536\n").unwrap();
        fs::write(memory.join("memory.max_usage_in_bytes"), "67108864\n").unwrap();
        fs::write(cpuacct.join("cpuacct.usage"), "900000000\n").unwrap();
        assert!(run.reset().unwrap());
        // The fixture's files keep what reset wrote: "0" for the resettable ones.
        assert_eq!(fs::read_to_string(cpuacct.join("cpuacct.usage")).unwrap(), "0");
        assert_eq!(run.cpu_usage_ns().unwrap(), 0);
        assert_eq!(run.oom_kills().unwrap(), 0);
        assert_eq!(run.pids_limit_hits().unwrap(), 0);
        assert_eq!(fs::read_to_string(memory.join("memory.max_usage_in_bytes")).unwrap(), "0");
        // The next run: one refused fork, a peak (the residue included).
        fs::write(pids.join("pids.events"), "max 6\n").unwrap();
        fs::write(memory.join("memory.max_usage_in_bytes"), (65536 + (1 << 20)).to_string()).unwrap();
        fs::write(cpuacct.join("cpuacct.usage"), "1000\n").unwrap();
        assert_eq!(run.pids_limit_hits().unwrap(), 1);
        assert_eq!(run.memory_peak_bytes().unwrap(), 65536 + (1 << 20));
        assert_eq!(run.cpu_usage_ns().unwrap(), 1000);
        // Limits are rewritten only when they change.
        fs::write(memory.join("memory.limit_in_bytes"), "untouched").unwrap();
        run.set_limits(CgroupLimits { memory_bytes: 64 << 20, max_processes: 16, cpu: None }).unwrap();
        assert_eq!(fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap(), "untouched");
        run.set_limits(CgroupLimits { memory_bytes: 32 << 20, max_processes: 16, cpu: None }).unwrap();
        assert_eq!(fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap(), (32u64 << 20).to_string());
        // A group still holding a process, or a large residue, is not reused.
        fs::write(pids.join("cgroup.procs"), "77\n").unwrap();
        assert!(!run.reset().unwrap());
        fs::write(pids.join("cgroup.procs"), "").unwrap();
        fs::write(memory.join("memory.usage_in_bytes"), (8u64 << 20).to_string()).unwrap();
        assert!(!run.reset().unwrap());
    }

    #[test]
    fn v2_groups_are_not_reused() {
        let (_root, mut m, _own) = v2_fixture();
        m.prepare().unwrap();
        let mut run = m.create("run-1", CgroupLimits { memory_bytes: 64 << 20, max_processes: 32, cpu: None }).unwrap();
        assert!(!run.reset().unwrap());
    }

    #[test]
    fn v2_without_memory_controller_is_refused() {
        let (_root, mut m, own) = v2_fixture();
        fs::write(own.join("cgroup.controllers"), "cpu pids\n").unwrap();
        assert!(matches!(m.prepare(), Err(CgroupError::Unsupported(_))));
    }
}
