//! The raw syscalls of the sandbox, each wrapped once.
//!
//! Everything here may run in a freshly cloned child of a multi-threaded process, so the
//! wrappers only call the kernel: no allocation, no locks, no formatting.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

/// The kernel's `struct clone_args` (linux/sched.h), version 2 (with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Forks with `flags` (namespaces, `CLONE_PIDFD`); returns 0 in the child and the child's
/// pid in the parent, plus a pidfd when `CLONE_PIDFD` is set. With `cgroup` (a cgroup v2
/// directory) the child is born in that cgroup (`CLONE_INTO_CGROUP`).
///
/// # Safety
/// Like `fork` without glibc's atfork handlers: in the child of a multi-threaded parent
/// only async-signal-safe work may follow (no allocation: another thread may have held
/// the allocator's lock at the moment of the clone).
pub unsafe fn clone3(flags: u64, cgroup: Option<RawFd>) -> io::Result<(i32, RawFd)> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs { flags, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    if flags & libc::CLONE_PIDFD as u64 != 0 {
        args.pidfd = &mut pidfd as *mut RawFd as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size passed; no stack is given, so the
    // child runs on a copy of this stack, as with fork. The caller upholds the
    // async-signal-safety of the child.
    let r = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, size_of::<CloneArgs>()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok((r as i32, pidfd)) }
}

/// Starts `entry(arg)` in a new process that shares our memory and runs on `stack`;
/// we are suspended until it execs or exits (vfork). Unlike a fork, nothing of our
/// address space is copied, nor torn down again at its exec: for a fork of the agent,
/// that was most of the cost of starting a program. Returns (pid, pidfd).
///
/// # Safety
/// `entry` runs in our memory while we wait: it may only make syscalls on data that
/// outlives it and must end in execve or _exit. `stack` must be used by nobody else
/// meanwhile, and `arg` must be what `entry` expects.
pub unsafe fn vfork_on(entry: extern "C" fn(*mut libc::c_void) -> libc::c_int, stack: &mut [u8], arg: *mut libc::c_void) -> Result<(i32, RawFd), i32> {
    let mut pidfd: libc::c_int = -1;
    // The stack grows down from its end, 16-byte aligned as the ABI wants.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    // SAFETY: glibc's clone switches to `top`, which is within `stack`, and calls
    // `entry(arg)` there; with CLONE_PIDFD the kernel writes the pidfd to the
    // parent_tid argument, a valid int. The caller upholds the rest.
    let pid = unsafe { libc::clone(entry, top as *mut libc::c_void, flags, arg, &mut pidfd as *mut libc::c_int) };
    if pid < 0 { Err(errno()) } else { Ok((pid, pidfd)) }
}

/// linux/sched.h; not in the libc crate.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// linux/mount.h, for the new mount API; not in the libc crate.
const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// The kernel's `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// The calling thread's errno, without allocating.
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Turns a -1 return into the errno.
pub fn check(r: libc::c_int) -> Result<(), i32> {
    if r < 0 { Err(errno()) } else { Ok(()) }
}

pub fn mount(src: Option<&CStr>, dst: &CStr, fstype: Option<&CStr>, flags: libc::c_ulong, data: Option<&CStr>) -> Result<(), i32> {
    let p = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call;
    // `data` is a string for every filesystem we mount.
    check(unsafe { libc::mount(p(src), dst.as_ptr(), p(fstype), flags, p(data).cast()) })
}

/// A detached copy of the mount at `path` (not of the mounts below it), as a
/// close-on-exec descriptor that `move_mount_to` can attach in another namespace.
pub fn open_tree_clone(path: &CStr) -> Result<RawFd, i32> {
    // SAFETY: `path` is NUL-terminated and outlives the call; the flags are valid.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as u32) };
    if r < 0 { Err(errno()) } else { Ok(r as RawFd) }
}

/// Sets `attr` (MOUNT_ATTR_*) on a detached mount and makes it private.
pub fn mount_setattr(fd: RawFd, attr: u64) -> Result<(), i32> {
    let a = MountAttr { attr_set: attr, attr_clr: 0, propagation: libc::MS_PRIVATE, userns_fd: 0 };
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `fd` itself; `a`
    // is a valid mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(libc::SYS_mount_setattr, fd, c"".as_ptr(), libc::AT_EMPTY_PATH, &a as *const MountAttr, size_of::<MountAttr>())
    };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

/// Attaches the detached mount `fd` at `dst` in the caller's mount namespace.
pub fn move_mount_to(fd: RawFd, dst: &CStr) -> Result<(), i32> {
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let r = unsafe {
        libc::syscall(libc::SYS_move_mount, fd, c"".as_ptr(), libc::AT_FDCWD, dst.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH)
    };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

pub fn mkdir(path: &CStr, mode: libc::mode_t) -> Result<(), i32> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Err(libc::EEXIST) => Ok(()),
        r => r,
    }
}

/// Creates an empty file to bind-mount a file onto.
pub fn touch(path: &CStr) -> Result<(), i32> {
    // SAFETY: `path` is NUL-terminated; the fd returned is closed right away.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(errno());
    }
    close(fd);
    Ok(())
}

pub fn symlink(target: &CStr, path: &CStr) -> Result<(), i32> {
    // SAFETY: both are NUL-terminated and outlive the call.
    check(unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) })
}

pub fn mknod_char(path: &CStr, major: u32, minor: u32) -> Result<(), i32> {
    // SAFETY: `path` is NUL-terminated; makedev has no preconditions.
    check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(major, minor)) })
}

pub fn chdir(path: &CStr) -> Result<(), i32> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check(unsafe { libc::chdir(path.as_ptr()) })
}

/// `pivot_root(".", ".")` then detaching the old root stacked beneath: the new root
/// needs no directory to hold the old one.
pub fn pivot_root_here() -> Result<(), i32> {
    let dot = c".";
    // SAFETY: both arguments are NUL-terminated static strings.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
    if r < 0 {
        return Err(errno());
    }
    // SAFETY: as above.
    check(unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) })
}

pub fn sethostname(name: &CStr) -> Result<(), i32> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    check(unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) })
}

pub fn unshare(flags: libc::c_int) -> Result<(), i32> {
    // SAFETY: unshare has no memory preconditions.
    check(unsafe { libc::unshare(flags) })
}

pub fn setns(fd: RawFd, nstype: libc::c_int) -> Result<(), i32> {
    // SAFETY: setns has no memory preconditions; a bad descriptor is an error.
    check(unsafe { libc::setns(fd, nstype) })
}

pub fn dup2(from: RawFd, to: RawFd) -> Result<(), i32> {
    // SAFETY: dup2 has no memory preconditions; invalid fds are reported as errors.
    check(unsafe { libc::dup2(from, to) })
}

/// Duplicates `from` onto `to` with close-on-exec set.
pub fn dup3_cloexec(from: RawFd, to: RawFd) -> Result<(), i32> {
    // SAFETY: as dup2.
    check(unsafe { libc::dup3(from, to, libc::O_CLOEXEC) })
}

/// Closes every descriptor from `first` up.
pub fn close_from(first: u32) -> Result<(), i32> {
    // SAFETY: close_range has no memory preconditions.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

pub fn close(fd: RawFd) {
    // SAFETY: closing a descriptor this process owns; errors are irrelevant here.
    unsafe { libc::close(fd) };
}

pub fn setrlimit(resource: libc::__rlimit_resource_t, value: u64) -> Result<(), i32> {
    let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: `lim` is a valid rlimit that outlives the call.
    check(unsafe { libc::setrlimit(resource, &lim) })
}

pub fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> Result<(), i32> {
    // SAFETY: the options used here take integer arguments only.
    check(unsafe { libc::prctl(option, arg2, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) })
}

/// Drops every capability from the bounding set, the ambient set, and then all
/// privileges by switching to `uid`/`gid` (with no supplementary groups when
/// `clear_groups`) and clearing the remaining capability sets.
/// Leaves `bounding_dropped` to a caller whose bounding set is already empty (see
/// `drop_bounding_set`).
pub fn become_unprivileged(uid: u32, gid: u32, cap_last: u32, clear_groups: bool, bounding_dropped: bool) -> Result<(), i32> {
    if !bounding_dropped {
        drop_bounding_set(cap_last)?;
    }
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong)?;
    // Raw syscalls, not glibc's wrappers: those broadcast the change to every thread
    // glibc believes the process has, and in a cloned child of a multi-threaded parent
    // they wait forever for threads that are not there.
    if clear_groups {
        // SAFETY: a null list with length 0 clears the supplementary groups.
        sys_ret(unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) })?;
    }
    // SAFETY: plain integer arguments.
    sys_ret(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })?;
    // SAFETY: plain integer arguments. Leaving uid 0 clears the permitted and effective
    // sets; in the agent's user namespace the uid does not change, so the capset below
    // is what drops them there.
    sys_ret(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })?;
    let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let none = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: a valid header and the two data words version 3 takes, both outliving the call.
    sys_ret(unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, none.as_ptr()) })
}

/// Empties the capability bounding set: no exec can gain a capability again. The
/// caller keeps the capabilities it has.
pub fn drop_bounding_set(cap_last: u32) -> Result<(), i32> {
    for cap in 0..=cap_last {
        prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong)?;
    }
    Ok(())
}

/// linux/capability.h; not in the libc crate.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// linux/pidfd.h: PIDFD_GET_MNT_NAMESPACE, `_IO(0xFF, 3)` (Linux 6.11).
const PIDFD_GET_MNT_NAMESPACE: libc::c_ulong = 0xFF03;

/// The mount namespace of the process behind `pidfd`, if it still has one (it has
/// none once exiting; kernels before 6.11 lack the ioctl).
pub fn pidfd_mount_namespace(pidfd: RawFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: the ioctl takes no argument and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(pidfd, PIDFD_GET_MNT_NAMESPACE, 0) };
    // SAFETY: a non-negative return is a new descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Detaches the mount at `path`.
pub fn umount_detach(path: &CStr) -> Result<(), i32> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) })
}

fn sys_ret(r: libc::c_long) -> Result<(), i32> {
    if r < 0 { Err(errno()) } else { Ok(()) }
}

/// Installs a seccomp filter on the calling thread (no_new_privs must be set).
pub fn seccomp_filter(prog: &libc::sock_fprog) -> Result<(), i32> {
    // SAFETY: `prog` points to a valid BPF program of `prog.len` instructions that
    // outlives the call; the kernel copies it.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, prog as *const libc::sock_fprog) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

pub fn setsid() -> Result<(), i32> {
    // SAFETY: setsid has no preconditions.
    if unsafe { libc::setsid() } < 0 { Err(errno()) } else { Ok(()) }
}

pub fn umask(mask: libc::mode_t) {
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(mask) };
}

/// Blocks until one byte arrives; false on EOF or error.
pub fn read_byte(fd: RawFd) -> bool {
    let mut b = 0u8;
    loop {
        // SAFETY: reading one byte into a local.
        let r = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
        if r == 1 {
            return true;
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        return false;
    }
}

/// Writes `buf` in one write; an error or a short write is an error.
pub fn write_exact(fd: RawFd, buf: &[u8]) -> Result<(), i32> {
    loop {
        // SAFETY: the pointer and length describe `buf`.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r == buf.len() as isize {
            return Ok(());
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        return Err(if r < 0 { errno() } else { libc::EIO });
    }
}

/// Writes all of `buf`, best effort (used for reports to the parent).
pub fn write_all(fd: RawFd, buf: &[u8]) {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: the pointer and length describe the unwritten rest of `buf`.
        let r = unsafe { libc::write(fd, buf[off..].as_ptr().cast(), buf.len() - off) };
        if r > 0 {
            off += r as usize;
        } else if r < 0 && errno() == libc::EINTR {
            continue;
        } else {
            return;
        }
    }
}

/// Waits for any child; returns (pid, wait status) or None when none are left.
pub fn wait_any() -> Option<(i32, i32)> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if pid > 0 {
            return Some((pid, status));
        }
        if errno() != libc::EINTR {
            return None;
        }
    }
}

/// Voluntary and involuntary context switches of the caller's reaped children.
pub fn children_context_switches() -> (u64, u64) {
    // SAFETY: rusage is plain old data; all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return (0, 0);
    }
    (ru.ru_nvcsw.max(0) as u64, ru.ru_nivcsw.max(0) as u64)
}

pub fn execve(argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> i32 {
    // SAFETY: both arrays are NULL-terminated arrays of NUL-terminated strings that
    // outlive the call (the caller builds them before forking); argv[0] is the path.
    unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
    errno()
}

/// A connected pair of close-on-exec `SOCK_SEQPACKET` unix sockets: message boundaries
/// kept, descriptors passed with `SCM_RIGHTS`.
pub fn seqpacket_pair() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok((fds[0], fds[1])) }
}

/// Most descriptors one message carries (see `holder`).
pub const MAX_PASSED_FDS: usize = 16;

/// Sends one message with `fds` attached (at most `MAX_PASSED_FDS`).
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> Result<(), i32> {
    if fds.len() > MAX_PASSED_FDS {
        return Err(libc::EINVAL);
    }
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // Aligned like a cmsghdr; room for the largest descriptor list.
    let mut control = [0u64; 2 + MAX_PASSED_FDS / 2];
    // SAFETY: msghdr is plain old data; all-zero bytes are a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = size_of_val(fds) as u32;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is arithmetic.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(payload) } as usize;
        // SAFETY: msg_control points to `control`, which is at least CMSG_SPACE(payload)
        // bytes and aligned for a cmsghdr, so the first header and its data fit in it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), fds.len());
        }
    }
    loop {
        // SAFETY: `msg` describes the live buffers above.
        let r = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if r == data.len() as isize {
            return Ok(());
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        return Err(if r < 0 { errno() } else { libc::EIO });
    }
}

/// Receives one message into `data` and its descriptors (close-on-exec) into `fds`:
/// (bytes, descriptors). A message cut short or with descriptors beyond `fds` is
/// `EMSGSIZE` (any descriptors that did arrive are closed); end of file is `Ok((0, 0))`.
pub fn recv_with_fds(sock: RawFd, data: &mut [u8], fds: &mut [RawFd]) -> Result<(usize, usize), i32> {
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    let mut control = [0u64; 2 + MAX_PASSED_FDS / 2];
    // SAFETY: msghdr is plain old data; all-zero bytes are a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    let n = loop {
        // SAFETY: `msg` describes the live buffers above.
        let r = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r as usize;
        }
        if errno() != libc::EINTR {
            return Err(errno());
        }
    };
    let mut got = 0;
    let mut overflow = msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
    // SAFETY: the kernel filled `control` up to msg_controllen with well-formed headers;
    // CMSG_FIRSTHDR/CMSG_NXTHDR stay within it, and each SCM_RIGHTS payload holds
    // (cmsg_len - CMSG_LEN(0)) / 4 descriptors, read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                let base = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    let fd = base.add(i).read_unaligned();
                    match fds.get_mut(got) {
                        Some(slot) if !overflow => {
                            *slot = fd;
                            got += 1;
                        }
                        _ => {
                            overflow = true;
                            close(fd);
                        }
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if overflow {
        for &fd in fds.iter().take(got) {
            close(fd);
        }
        return Err(libc::EMSGSIZE);
    }
    Ok((n, got))
}

/// SIGKILLs every process the caller may signal except itself: from a pid namespace's
/// init, every other process of that namespace.
pub fn kill_all_others() {
    // SAFETY: kill(2) has no memory preconditions.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}

/// Whether the caller has no child left (reaped or not).
pub fn no_children() -> bool {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::WNOHANG) };
    r < 0 && errno() == libc::ECHILD
}

/// Writes `buf` at offset 0 (a sysctl file kept open).
pub fn pwrite0(fd: RawFd, buf: &[u8]) -> Result<(), i32> {
    // SAFETY: the pointer and length describe `buf`.
    let r = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), 0) };
    if r == buf.len() as isize { Ok(()) } else if r < 0 { Err(errno()) } else { Err(libc::EIO) }
}

/// Reads up to `buf.len()` bytes from offset 0.
pub fn pread0(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: the pointer and length describe `buf`.
    let r = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if r < 0 { Err(errno()) } else { Ok(r as usize) }
}

pub fn open(path: &CStr, flags: libc::c_int) -> Result<RawFd, i32> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 { Err(errno()) } else { Ok(fd) }
}

/// Duplicates `fd` to the lowest free descriptor at or above `min`, close-on-exec.
pub fn dup_above(fd: RawFd, min: RawFd) -> Result<RawFd, i32> {
    // SAFETY: fcntl with integer arguments.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if r < 0 { Err(errno()) } else { Ok(r) }
}

/// Closes the descriptors `first..=last`.
pub fn close_range(first: u32, last: u32) {
    // SAFETY: close_range has no memory preconditions.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
}

/// Sends `signal` to the process behind `pidfd`.
pub fn pidfd_signal(pidfd: RawFd, signal: i32) -> Result<(), i32> {
    // SAFETY: pidfd_send_signal with a null siginfo and no flags.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd, signal, 0, 0) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

pub fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the process without running atexit handlers or destructors,
    // which is what a forked child must do.
    unsafe { libc::_exit(code) }
}
