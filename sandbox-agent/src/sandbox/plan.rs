//! Everything a run's child needs, built before the clone: mount steps, argv, env,
//! rlimits. The child side may not allocate, so nothing is computed after the clone.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::child::{Plan, Step};
use super::{RunSpec, Sandbox, SandboxError};

impl Sandbox {
    /// Builds every string and step the child needs, before the clone.
    pub(super) fn plan(&self, spec: &RunSpec<'_>, with_steps: bool) -> Result<Plan, SandboxError> {
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
            with_steps,
        })
    }
}
