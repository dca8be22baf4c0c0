//! The sandbox's filesystem, in two parts.
//!
//! The **template** is built once when the agent starts: an empty tmpfs with the
//! read-only binds and symlinks of `rootfs/mounts.toml`, a minimal /dev and the empty
//! mountpoints of every run, then remounted read-only. Each run's mount namespace is a
//! copy of the agent's, so it starts with the template; after the clone the run only
//! mounts what is its own — its /box, a fresh /tmp and /dev/shm, its /proc — and pivots
//! into the template. That keeps the per-run set-up to a handful of mounts.
//!
//! Everything the child needs is built here before the clone: the child may not
//! allocate.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::child::{self, Plan, Step};
use super::sys;
use super::{Profile, RunSpec, Sandbox, SandboxError};

fn cstr(s: &[u8]) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::Invalid("NUL byte in a path or argument".into()))
}

/// Steps with a description each, for error messages.
#[derive(Default)]
struct Steps {
    steps: Vec<Step>,
    names: Vec<String>,
}

impl Steps {
    fn add(&mut self, name: impl Into<String>, step: Step) {
        self.names.push(name.into());
        self.steps.push(step);
    }

    fn tmpfs(&mut self, name: &str, dst: CString, flags: libc::c_ulong, data: &str) -> Result<(), SandboxError> {
        let step = Step::Mount {
            src: Some(cstr(b"tmpfs")?),
            dst,
            fstype: Some(cstr(b"tmpfs")?),
            flags,
            data: Some(cstr(data.as_bytes())?),
        };
        self.add(format!("mounting {name}"), step);
        Ok(())
    }
}

/// Inodes of a run's /tmp and /dev/shm.
pub(super) const TMP_INODES: u32 = 4096;
pub(super) const SHM_INODES: u32 = 256;

/// Size of a run's /tmp and of its /dev/shm each.
pub(super) fn tmp_bytes(l: &super::RunLimits) -> u64 {
    l.file_bytes.max(4096)
}

const RO: libc::c_ulong = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;

/// Builds the template root at `root` in the agent's own mount namespace.
///
/// `empty_dir` is an empty directory: overlays (see below) need a second layer. In the
/// agent's own user namespace (`userns`) device nodes cannot be created, so /dev holds
/// binds of the host's, and the agent's /proc is bound at /proc: the kernel lets a user
/// namespace mount a proc only where one is fully visible already (each run detaches
/// this one once its own is mounted, see `Sandbox::plan`).
pub(super) fn build_template(root: &Path, empty_dir: &Path, mounts: &rootfs::Mounts, userns: bool) -> Result<(), SandboxError> {
    let rootb = root.as_os_str().as_bytes();
    // Descriptors the overlays' options name; they must stay open until mounted.
    let mut layers: Vec<OwnedFd> = Vec::new();
    let under = |p: &Path| cstr(&[rootb, p.as_os_str().as_bytes()].concat());
    let mut s = Steps::default();
    match &mounts.image {
        None => s.tmpfs("the template root", cstr(rootb)?, libc::MS_NOSUID | libc::MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")?,
        Some(image) => {
            // A read-only image has to bring every mountpoint itself.
            let needed = ["/box", "/tmp", "/proc", "/dev"].into_iter().map(Path::new);
            let targets = mounts.bind.iter().filter(|b| b.source.exists()).map(|b| b.target());
            for dir in needed.chain(targets) {
                let inside = image.join(dir.strip_prefix("/").unwrap_or(dir));
                if !inside.exists() {
                    return Err(SandboxError::Invalid(format!("image {} lacks {}", image.display(), dir.display())));
                }
            }
            if !mounts.symlink.is_empty() {
                return Err(SandboxError::Invalid("symlinks cannot be added to a read-only image".into()));
            }
            s.add(format!("bind-mounting the image {}", image.display()), Step::Mount {
                src: Some(cstr(image.as_os_str().as_bytes())?),
                dst: cstr(rootb)?,
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REC,
                data: None,
            });
        }
    }
    // Nothing mounted below the template may propagate anywhere else.
    s.add("making the template private", Step::Mount {
        src: None,
        dst: cstr(rootb)?,
        fstype: None,
        flags: libc::MS_REC | libc::MS_PRIVATE,
        data: None,
    });
    for b in &mounts.bind {
        let Ok(meta) = std::fs::metadata(&b.source) else {
            if b.optional {
                continue;
            }
            return Err(SandboxError::Invalid(format!("bind source {} is missing", b.source.display())));
        };
        let target = b.target();
        let dst = under(target)?;
        if mounts.image.is_none() {
            let parents: Vec<&Path> = target.ancestors().skip(1).collect();
            for dir in parents.into_iter().rev().skip(1) {
                s.add(format!("creating {}", dir.display()), Step::Mkdir(under(dir)?, 0o755));
            }
            if meta.is_dir() {
                s.add(format!("creating {}", target.display()), Step::Mkdir(dst.clone(), 0o755));
            } else {
                s.add(format!("creating {}", target.display()), Step::Touch(dst.clone()));
            }
        }
        if b.source.as_path() == target {
            s.add(format!("bind-mounting {}", b.source.display()), Step::Mount {
                src: Some(cstr(b.source.as_os_str().as_bytes())?),
                dst: dst.clone(),
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REC,
                data: None,
            });
        } else {
            // A bind's root field in /proc/self/mountinfo is its source's path within its
            // filesystem (say /root/.rustup/toolchains/...): the host's layout, its users.
            // A read-only overlay of the source has "/" as its root, and its options name
            // the layers by the descriptors they were given as, which say nothing.
            if !meta.is_dir() {
                return Err(SandboxError::Invalid(format!(
                    "bind of the file {} to another path ({}): the run would see the host's path; keep the path",
                    b.source.display(),
                    target.display()
                )));
            }
            let layer = open_path(&b.source)?;
            let empty = open_path(empty_dir)?;
            let data = format!("lowerdir=/proc/self/fd/{}:/proc/self/fd/{}", layer.as_raw_fd(), empty.as_raw_fd());
            s.add(format!("mounting {} as an overlay", b.source.display()), Step::Mount {
                src: Some(cstr(b"judge")?),
                dst: dst.clone(),
                fstype: Some(cstr(b"overlay")?),
                flags: RO,
                data: Some(cstr(data.as_bytes())?),
            });
            layers.push(layer);
            layers.push(empty);
        }
        s.add(format!("making {} read-only", target.display()), Step::Remount { dst, flags: RO });
    }
    for l in &mounts.symlink {
        s.add(format!("linking {}", l.path.display()), Step::Symlink {
            target: cstr(l.target.as_os_str().as_bytes())?,
            path: under(&l.path)?,
        });
    }
    if mounts.image.is_none() {
        for dir in ["/box", "/tmp", "/proc", "/dev"] {
            s.add(format!("creating {dir}"), Step::Mkdir(under(Path::new(dir))?, 0o755));
        }
    }
    // /dev: device nodes need a mount without nodev; it is read-only and noexec instead.
    s.tmpfs("/dev", under(Path::new("/dev"))?, libc::MS_NOSUID | libc::MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755")?;
    for (name, minor) in [("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)] {
        let path = under(&Path::new("/dev").join(name))?;
        if userns {
            s.add(format!("creating /dev/{name}"), Step::Touch(path.clone()));
            s.add(format!("bind-mounting /dev/{name}"), Step::Mount {
                src: Some(cstr(format!("/dev/{name}").as_bytes())?),
                dst: path.clone(),
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            });
            s.add(format!("making /dev/{name} read-only"), Step::Remount {
                dst: path,
                flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
            });
        } else {
            s.add(format!("creating /dev/{name}"), Step::CharDevice { path, major: 1, minor });
        }
    }
    for (name, target) in
        [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]
    {
        let path = under(&Path::new("/dev").join(name))?;
        s.add(format!("linking /dev/{name}"), Step::Symlink { target: cstr(target.as_bytes())?, path });
    }
    s.add("creating /dev/shm", Step::Mkdir(under(Path::new("/dev/shm"))?, 0o755));
    s.add("making /dev read-only", Step::Remount {
        dst: under(Path::new("/dev"))?,
        flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
    });
    if userns {
        s.add("bind-mounting the agent's /proc", Step::Mount {
            src: Some(cstr(b"/proc")?),
            dst: under(Path::new("/proc"))?,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
        });
    }
    // (A bind of an image takes the flags with a remount like any bind; a tmpfs too.)
    s.add("making the template read-only", Step::Remount { dst: cstr(rootb)?, flags: RO });

    // umask would strip the device nodes' and directories' modes.
    // SAFETY: umask has no preconditions; the previous mask is restored below.
    let old = unsafe { libc::umask(0) };
    let result = s.steps.iter().zip(&s.names).try_for_each(|(step, name)| {
        child::run_step(step).map_err(|errno| SandboxError::Setup {
            step: format!("template: {name}"),
            errno: std::io::Error::from_raw_os_error(errno),
        })
    });
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    drop(layers);
    result
}

/// An `O_PATH` descriptor of a directory, for an overlay's layer.
fn open_path(dir: &Path) -> Result<OwnedFd, SandboxError> {
    let c = cstr(dir.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path and valid flags; the new descriptor is ours.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(SandboxError::Io { what: "open a bind source", source: std::io::Error::last_os_error() });
    }
    // SAFETY: open returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A mount namespace whose root is the template at `root` and which holds nothing else:
/// made once on a short-lived thread (unshare affects only the calling thread), so a run
/// copies a handful of mounts instead of the host's, and needs no pivot_root nor the
/// detaching of an old root (an RCU grace period each) of its own.
pub(super) fn template_namespace(root: &Path) -> Result<OwnedFd, SandboxError> {
    let root = cstr(root.as_os_str().as_bytes())?;
    let made = std::thread::spawn(move || -> Result<OwnedFd, (&'static str, i32)> {
        sys::unshare(libc::CLONE_NEWNS).map_err(|e| ("creating the template's mount namespace", e))?;
        sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(|e| ("making its mounts private", e))?;
        // SAFETY: opening a NUL-terminated static path.
        let fd = unsafe { libc::open(c"/proc/thread-self/ns/mnt".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(("opening the template's mount namespace", sys::errno()));
        }
        // SAFETY: open returned a new descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        child::run_step(&Step::PivotRoot(root)).map_err(|e| ("pivoting into the template", e))?;
        Ok(fd)
    })
    .join();
    match made {
        Ok(Ok(fd)) => Ok(fd),
        Ok(Err((step, errno))) => Err(SandboxError::Setup { step: step.into(), errno: std::io::Error::from_raw_os_error(errno) }),
        Err(_) => Err(SandboxError::Invalid("the mount namespace thread panicked".into())),
    }
}

/// Unmounts a template (and whatever is below it) left by this or an earlier agent.
pub(super) fn remove_template(root: &Path) {
    let Ok(path) = cstr(root.as_os_str().as_bytes()) else { return };
    // Stacked mounts (an agent killed while building) come off one per call.
    for _ in 0..16 {
        // SAFETY: `path` is NUL-terminated and outlives the call.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            break;
        }
    }
}

/// The mounts of a holder's namespaces, made once when it starts (see `holder`):
/// private propagation, its pid namespace's /proc, the hostname. /tmp and /dev/shm
/// are the holder's own, made fresh after every run.
pub(super) fn holder_steps(mapped: bool) -> Result<(Vec<Step>, Vec<String>), SandboxError> {
    let mut s = Steps::default();
    s.add("making mounts private", Step::PrivateRoot);
    proc_steps(&mut s, mapped, true)?;
    proc_steps(&mut s, mapped, false)?;
    s.add("setting the hostname", Step::Hostname(cstr(b"judge")?));
    Ok((s.steps, s.names))
}

/// /proc of the pid namespace; in the agent's user namespace (`mapped`) that is
/// `userns_part`, otherwise the other part.
fn proc_steps(s: &mut Steps, mapped: bool, userns_part: bool) -> Result<(), SandboxError> {
    let proc_at = |dst: &[u8]| -> Result<Step, SandboxError> {
        Ok(Step::Mount {
            src: Some(cstr(b"proc")?),
            dst: cstr(dst)?,
            fstype: Some(cstr(b"proc")?),
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            // Init is a clone of the agent: its command line would show the agent's
            // paths. The program sees only processes it could ptrace: not init,
            // which runs as root or, in the agent's user namespace, keeps
            // capabilities the program has not.
            data: Some(cstr(b"hidepid=invisible")?),
        })
    };
    match (mapped, userns_part) {
        (true, true) => {
            // Mounted while the template's bind of the agent's /proc is in the
            // namespace (the kernel's condition for a proc in a user namespace), on
            // /tmp, not yet in use; then that bind is detached and the run's own
            // moved into its place.
            s.add("mounting /proc", proc_at(b"/tmp")?);
            s.add("detaching the agent's /proc", Step::Unmount(cstr(b"/proc")?));
            s.add("moving /proc into place", Step::Mount {
                src: Some(cstr(b"/tmp")?),
                dst: cstr(b"/proc")?,
                fstype: None,
                flags: libc::MS_MOVE,
                data: None,
            });
        }
        (false, false) => s.add("mounting /proc", proc_at(b"/proc")?),
        _ => {}
    }
    Ok(())
}

impl Sandbox {
    /// Builds the per-run steps, argv, env and limits, before the clone.
    pub(super) fn plan(&self, spec: &RunSpec<'_>, with_steps: bool) -> Result<Plan, SandboxError> {
        let l = spec.limits;
        let mut s = Steps::default();
        // Init is in its copy of the template's namespace, /box attached (see `child`).
        s.add("making mounts private", Step::PrivateRoot);
        proc_steps(&mut s, self.mapped.is_some(), true)?;
        let tmp_bytes = tmp_bytes(&l);
        let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
        s.tmpfs("/tmp", cstr(b"/tmp")?, nosuid_nodev, &format!("size={tmp_bytes},nr_inodes={TMP_INODES},mode=1777"))?;
        s.tmpfs("/dev/shm", cstr(b"/dev/shm")?, nosuid_nodev | libc::MS_NOEXEC, &format!("size={tmp_bytes},nr_inodes={SHM_INODES},mode=1777"))?;
        proc_steps(&mut s, self.mapped.is_some(), false)?;
        s.add("setting the hostname", Step::Hostname(cstr(b"judge")?));

        if spec.argv.is_empty() {
            return Err(SandboxError::Invalid("empty command".into()));
        }
        let argv = spec.argv.iter().map(|a| cstr(a.as_bytes())).collect::<Result<_, _>>()?;
        let env = spec.env.iter().map(|(k, v)| cstr(format!("{k}={v}").as_bytes())).collect::<Result<_, _>>()?;
        // RLIMIT_CPU is a backstop past the limit; the monitor acts first.
        let cpu_secs = l.cpu.as_secs() + 2;
        let values = [cpu_secs, l.file_bytes, l.open_files, l.stack_bytes, 0, 0, 0];
        let rlimits = std::array::from_fn(|i| (child::RLIMITS[i], values[i]));
        let programs = match spec.profile {
            Profile::Program => &self.filters.program,
            Profile::Tool => &self.filters.tool,
        };
        let seccomp = programs
            .iter()
            .map(|p| libc::sock_fprog {
                len: p.len() as libc::c_ushort,
                // The programs live in `self.filters`, which outlives every run.
                filter: p.as_ptr() as *mut libc::sock_filter,
            })
            .collect();
        Ok(Plan {
            seccomp,
            steps: s.steps,
            step_names: s.names,
            argv,
            env,
            cwd: cstr(b"/box")?,
            rlimits,
            uid: self.mapped.map_or(spec.uid, |m| m.uid),
            gid: self.mapped.map_or(spec.gid, |m| m.gid),
            cap_last: self.cap_last,
            clear_groups: self.mapped.is_none(),
            with_steps,
        })
    }
}
