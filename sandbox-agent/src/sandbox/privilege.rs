//! Root, or a user namespace of the agent's own.
//!
//! As root the agent isolates runs with the host's privileges. Not as root, it judges
//! only where the kernel allows unprivileged user namespaces and an administrator
//! delegated cgroups to its uid (systemd `Delegate=yes` on v2, a group per v1 hierarchy
//! chowned to it, the agent started inside): it then moves, once at start, into a user
//! namespace in which the run's uid is mapped to its own (the only uid an unprivileged
//! process may map) and holds every capability, and into a mount namespace owned by it.
//! From there it builds the same template, mounts the same tmpfs work dirs, creates the
//! same namespaces and cgroups as root would; runs drop the same capabilities and apply
//! the same seccomp filter. What differs: every run of every slot is the agent's own uid
//! on the host (the pid namespaces and seccomp keep runs from signalling or tracing each
//! other or the agent), device nodes are binds of the host's, and /proc needs a host
//! /proc beside it to be mounted (see `plan`). Without user namespaces or delegated
//! cgroups it refuses, naming what is missing: memory, processes and CPU time across a
//! run's processes cannot be limited otherwise, and it never judges unlimited.

use std::path::Path;
use std::sync::OnceLock;

use super::SandboxError;
use super::cgroup::CgroupManager;
use super::sys;

/// The identity runs have inside the agent's user namespace, which maps it to the
/// agent's own uid and gid on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    pub uid: u32,
    pub gid: u32,
}

/// Set once the process is in its own user namespace.
static USER_NAMESPACE: OnceLock<Mapped> = OnceLock::new();

/// The run identity of this process's user namespace, when it entered one.
pub fn mapped() -> Option<Mapped> {
    USER_NAMESPACE.get().copied()
}

/// Puts the agent where it can build sandboxes: as root, a mount namespace of its own
/// (the template root and job dirs stay invisible to the host and vanish with it); not
/// as root, a user namespace mapping `run_id` (uid and gid) to its own ids, and a mount
/// namespace owned by that. Refuses, naming what this host lacks, when a non-root agent
/// could not enforce every limit. Call while the process has a single thread.
pub fn enter_agent_namespaces(run_id: u32) -> Result<(), SandboxError> {
    let errno = |step: &'static str| move |e: i32| SandboxError::Setup { step: step.into(), errno: std::io::Error::from_raw_os_error(e) };
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid != 0 {
        check_unprivileged(uid)?;
        sys::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS).map_err(errno("creating the agent's user namespace"))?;
        // An unprivileged process may map its own ids only, and its gid only once
        // setgroups is denied (else it could drop a group that denies it access).
        let write = |path: &str, text: String| {
            std::fs::write(path, text).map_err(|source| SandboxError::Io { what: "map the agent's ids", source })
        };
        write("/proc/self/setgroups", "deny".into())?;
        write("/proc/self/uid_map", format!("{run_id} {uid} 1\n"))?;
        write("/proc/self/gid_map", format!("{run_id} {gid} 1\n"))?;
        let _ = USER_NAMESPACE.set(Mapped { uid: run_id, gid: run_id });
    } else {
        sys::unshare(libc::CLONE_NEWNS).map_err(errno("entering the agent's own mount namespace"))?;
    }
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(errno("making the agent's mounts private"))
}

/// Ok for root and for a process in the user namespace of `enter_agent_namespaces`.
pub fn require_isolation() -> Result<(), SandboxError> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 || mapped().is_some_and(|m| m.uid == uid) {
        return Ok(());
    }
    check_unprivileged(uid)?;
    Err(SandboxError::Unprivileged(format!(
        "the agent runs as uid {uid}, not root, and has not entered its user namespace (enter_agent_namespaces)"
    )))
}

/// Whether a non-root agent could enforce everything here; the refusal otherwise.
fn check_unprivileged(uid: u32) -> Result<(), SandboxError> {
    let (userns, cgroups, groups) = (user_namespaces(), self::cgroups(), supplementary_groups());
    if userns.is_ok() && cgroups.is_ok() && groups.is_ok() {
        return Ok(());
    }
    Err(SandboxError::Unprivileged(refusal(uid, &userns, &cgroups, &groups)))
}

fn refusal(uid: u32, userns: &Result<(), String>, cgroups: &Result<(), String>, groups: &Result<(), String>) -> String {
    let mut missing = Vec::new();
    if let Err(why) = userns {
        missing.push(format!("unprivileged user namespaces are not allowed here ({why})"));
    }
    if let Err(why) = cgroups {
        missing.push(format!(
            "cgroups are not delegated to uid {uid} ({why}), so memory, process and CPU-time limits across a \
             run's processes could not be enforced"
        ));
    }
    if let Err(why) = groups {
        missing.push(why.clone());
    }
    let have = [
        userns.is_ok().then_some("unprivileged user namespaces are allowed here"),
        cgroups.is_ok().then_some("cgroups are delegated to it"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let have = if have.is_empty() { String::new() } else { format!(" ({})", have.join("; ")) };
    format!(
        "the agent runs as uid {uid}, not root, and cannot judge on this host{have}: {}. Without root it needs \
         unprivileged user namespaces and cgroups delegated to its uid (see docs/sandbox.md); it refuses rather \
         than judge with limits it cannot enforce",
        missing.join("; ")
    )
}

/// Whether this kernel lets an unprivileged process create a user namespace.
fn user_namespaces() -> Result<(), String> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err("user.max_user_namespaces is 0".into());
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err("kernel.unprivileged_userns_clone is 0".into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Err("AppArmor restricts them (kernel.apparmor_restrict_unprivileged_userns is 1)".into());
    }
    Ok(())
}

/// Whether the caller may create groups where the agent would.
fn cgroups() -> Result<(), String> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"));
    let mgr = CgroupManager::from_proc(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?, Path::new("/"))
        .map_err(|e| e.to_string())?;
    let denied = mgr.undelegated_dirs();
    if denied.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = denied.iter().map(|d| d.display().to_string()).collect();
    Err(format!("cannot write {}", names.join(", ")))
}

/// Supplementary groups cannot be dropped in a user namespace of one's own (setgroups
/// is denied there), so every run would keep them: their access to host files too.
fn supplementary_groups() -> Result<(), String> {
    // SAFETY: with size 0, getgroups only counts and writes nothing.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n > 0 {
        return Err(format!(
            "the agent has {n} supplementary group(s), which its runs would keep: start it without any"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_what_is_missing() {
        let msg = refusal(
            1000,
            &Err("user.max_user_namespaces is 0".into()),
            &Err("cannot write /sys/fs/cgroup/x".into()),
            &Ok(()),
        );
        assert!(msg.contains("uid 1000, not root, and cannot judge"), "{msg}");
        assert!(msg.contains("user.max_user_namespaces is 0"), "{msg}");
        assert!(msg.contains("cannot write /sys/fs/cgroup/x") && msg.contains("could not be enforced"), "{msg}");
        let msg = refusal(1000, &Ok(()), &Err("cannot write /sys/fs/cgroup/x".into()), &Ok(()));
        assert!(msg.contains("(unprivileged user namespaces are allowed here)"), "{msg}");
        assert!(!msg.contains("are not allowed"), "{msg}");
        let msg = refusal(1000, &Ok(()), &Ok(()), &Err("the agent has 2 supplementary group(s)".into()));
        assert!(msg.contains("2 supplementary group(s)") && msg.contains("cgroups are delegated to it"), "{msg}");
    }
}
