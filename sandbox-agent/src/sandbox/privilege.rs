//! Why the agent runs as root, said in full when it does not.
//!
//! A non-root agent could still isolate a run where the kernel allows unprivileged user
//! namespaces: a user namespace per run, mapping the agent's uid to the run's root,
//! gives it the mount, pid, ipc, uts and network namespaces, and seccomp, no_new_privs
//! and dropped capabilities work as for root. What it cannot do on its own is enforce
//! every limit: memory, processes and CPU time across all of a run's processes need
//! cgroups, which a non-root agent may only use where an administrator delegated a
//! subtree to its uid (systemd `Delegate=yes` on v2, a chowned group per v1 hierarchy);
//! without them a fork bomb counts against the agent's own RLIMIT_NPROC and memory
//! only per process (RLIMIT_AS). A job's work dir is a size-limited tmpfs that only root
//! can mount on the host, and every run of every slot would share one host uid, the
//! agent's own. Judging with limits it cannot keep would be wrong answers, so until that
//! mode exists (see docs/sandbox.md) a non-root agent refuses to start, naming what this
//! host lacks.

use std::path::Path;

use super::SandboxError;
use super::cgroup::CgroupManager;

/// Ok for root; otherwise the refusal with what this host would and would not allow.
pub fn require_root() -> Result<(), SandboxError> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return Ok(());
    }
    Err(SandboxError::Unprivileged(refusal(uid, &user_namespaces(), &cgroups())))
}

fn refusal(uid: u32, userns: &Result<(), String>, cgroups: &Result<(), String>) -> String {
    let userns = match userns {
        Ok(()) => "unprivileged user namespaces are allowed here".to_string(),
        Err(why) => format!("unprivileged user namespaces are not allowed here ({why})"),
    };
    let cgroups = match cgroups {
        Ok(()) => format!("cgroups are delegated to uid {uid}"),
        Err(why) => format!("cgroups are not delegated to uid {uid} ({why}), so memory, process and CPU-time limits across a run's processes could not be enforced"),
    };
    format!(
        "the agent runs as uid {uid} but must run as root: {userns}; {cgroups}; and only root can mount a job's \
         size-limited work dir. A non-root agent is not supported yet: it refuses rather than judge with limits it \
         cannot enforce"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_what_is_missing() {
        let msg = refusal(1000, &Err("user.max_user_namespaces is 0".into()), &Err("cannot write /sys/fs/cgroup/x".into()));
        assert!(msg.contains("uid 1000") && msg.contains("must run as root"), "{msg}");
        assert!(msg.contains("user.max_user_namespaces is 0"), "{msg}");
        assert!(msg.contains("cannot write /sys/fs/cgroup/x") && msg.contains("could not be enforced"), "{msg}");
        let msg = refusal(1000, &Ok(()), &Ok(()));
        assert!(msg.contains("are allowed here") && msg.contains("are delegated to uid 1000"), "{msg}");
        assert!(msg.contains("not supported yet"), "{msg}");
    }
}
