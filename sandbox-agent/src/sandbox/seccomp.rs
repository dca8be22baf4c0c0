//! Compiles the seccomp policy of `rootfs/seccomp.toml` into BPF programs, once, before
//! any run: the child only installs them.
//!
//! One filter per action, plus a hand-written guard that kills foreign syscall ABIs:
//! seccompiler matches syscall numbers exactly, so the x32 range (numbers with bit 30
//! set) needs a comparison of its own. They are chained into one program (see `chain`),
//! so each syscall of a program runs one filter rather than three. (Installing it costs
//! the same ~0.3 ms as the three did: the kernel's preparation is per instruction.)

use std::collections::BTreeMap;

use rootfs::{SeccompAction, SeccompPolicy, SeccompScope};
use seccompiler::{
    BpfProgram, SeccompAction as Act, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch, sock_filter,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp policy names an unknown syscall {0:?}")]
    UnknownSyscall(String),
    #[error("seccomp policy: {0}")]
    Compile(String),
}

/// The compiled filters for the two kinds of processes.
#[derive(Debug, Clone)]
pub struct Filters {
    /// The judged program.
    pub program: Vec<BpfProgram>,
    /// Compilers, checkers and other trusted tools run on untrusted input.
    pub tool: Vec<BpfProgram>,
}

impl Filters {
    pub fn compile(policy: &SeccompPolicy) -> Result<Filters, SeccompError> {
        Ok(Filters { program: compile_for(policy, true)?, tool: compile_for(policy, false)? })
    }
}

fn compile_for(policy: &SeccompPolicy, program: bool) -> Result<Vec<BpfProgram>, SeccompError> {
    let mut programs = separate_filters(policy, program)?;
    // The kernel runs every filter and takes the strictest verdict, the newest filter's
    // among equals: the guard and the kill filter first, then the errno filters newest
    // first.
    let guard = programs.remove(0);
    let guard_len = guard.len();
    programs.reverse();
    programs.insert(0, guard);
    let mut chained = chain(&programs)?;
    // Right after the guard (whose "allow" now jumps there, the syscall number loaded):
    // a syscall that no rule names is allowed at once.
    let tree = allow_unnamed(&named_syscalls(policy, program)?)?;
    chained.splice(guard_len..guard_len, tree);
    if chained.len() > 4096 {
        return Err(SeccompError::Compile(format!("the filter has {} instructions, over 4096", chained.len())));
    }
    Ok(vec![chained])
}

/// The syscall numbers some rule of this scope names.
fn named_syscalls(policy: &SeccompPolicy, program: bool) -> Result<Vec<u32>, SeccompError> {
    let mut nrs = std::collections::BTreeSet::new();
    for deny in policy.deny.iter().filter(|d| program || d.runs != SeccompScope::Program) {
        for name in &deny.syscall {
            let nr = syscall_number(name).ok_or_else(|| SeccompError::UnknownSyscall(name.clone()))?;
            nrs.insert(u32::try_from(nr).map_err(err)?);
        }
    }
    Ok(nrs.into_iter().collect())
}

/// A binary search of the syscall number (in the accumulator) among `named` (sorted):
/// not among them, the program returns "allow"; among them, it goes on past the search.
///
/// Why: the kernel works out, when a filter is installed, which syscalls it allows
/// whatever their arguments, by emulating it once per syscall number, and then skips it
/// for those. Through the rules' linear chain of comparisons that emulation took about
/// half of the ~0.25 ms an install cost (measured); through a search it is a dozen
/// instructions per number. Running programs gain the same on every syscall the cache
/// does not cover.
fn allow_unnamed(named: &[u32]) -> Result<BpfProgram, SeccompError> {
    const LD_NR: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    // Emitted with "go on" jumps to be aimed at the end once its length is known.
    fn search(named: &[u32], out: &mut Vec<(sock_filter, bool)>) -> Result<(), SeccompError> {
        let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
        if named.len() <= 3 {
            // Each match jumps over the rest and the return, to the "go on" jump.
            for (i, &nr) in named.iter().enumerate() {
                out.push((insn(JEQ_K, (named.len() - i) as u8, 0, nr), false));
            }
            out.push((insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW), false));
            out.push((insn(JA, 0, 0, 0), true));
            return Ok(());
        }
        let (low, high) = named.split_at(named.len() / 2);
        let at = out.len();
        out.push((insn(JGE_K, 0, 0, high[0]), false));
        search(low, out)?;
        let skip = u8::try_from(out.len() - at - 1)
            .map_err(|_| SeccompError::Compile("the syscall search does not fit a jump".into()))?;
        out[at].0.jt = skip;
        search(high, out)
    }
    if named.is_empty() {
        return Ok(vec![insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW)]);
    }
    let mut out = vec![(insn(LD_NR, 0, 0, 0), false)];
    search(named, &mut out)?;
    let len = out.len();
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(i, (mut f, go_on))| {
            if go_on {
                f.k = (len - i - 1) as u32;
            }
            f
        })
        .collect())
}

/// The guard and one filter per action, in the order they were once installed.
fn separate_filters(policy: &SeccompPolicy, program: bool) -> Result<Vec<BpfProgram>, SeccompError> {
    let mut programs = vec![abi_guard()];
    for action in [SeccompAction::Eperm, SeccompAction::Enosys, SeccompAction::Kill] {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for deny in policy.deny.iter().filter(|d| d.action == action) {
            if deny.runs == SeccompScope::Program && !program {
                continue;
            }
            for name in &deny.syscall {
                let nr = syscall_number(name).ok_or_else(|| SeccompError::UnknownSyscall(name.clone()))?;
                let entry = rules.entry(nr).or_default();
                if deny.when.is_empty() {
                    // An empty rule list means "always", which overrides any condition.
                    entry.clear();
                    entry.push(SeccompRule::new(vec![always()?]).map_err(err)?);
                    continue;
                }
                for all in &deny.when {
                    let conds = all.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
                    entry.push(SeccompRule::new(conds).map_err(err)?);
                }
            }
        }
        if rules.is_empty() {
            continue;
        }
        let on_match = match action {
            SeccompAction::Eperm => Act::Errno(libc::EPERM as u32),
            SeccompAction::Enosys => Act::Errno(libc::ENOSYS as u32),
            SeccompAction::Kill => Act::KillProcess,
        };
        let filter = SeccompFilter::new(rules, Act::Allow, on_match, TargetArch::x86_64).map_err(err)?;
        programs.push(BpfProgram::try_from(filter).map_err(err)?);
    }
    Ok(programs)
}

/// One program deciding as the kernel does over `programs` installed from last to first
/// when their verdicts are ordered by precedence (see above): each program's "allow"
/// becomes a jump to the start of the next, so the first verdict other than allow is
/// the result, and allow only when every program allows.
fn chain(programs: &[BpfProgram]) -> Result<BpfProgram, SeccompError> {
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;
    const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
    let mut out: BpfProgram = Vec::new();
    for (n, program) in programs.iter().enumerate() {
        let last = n + 1 == programs.len();
        for (i, insn) in program.iter().enumerate() {
            if insn.code == RET_A {
                return Err(SeccompError::Compile("a filter returns its accumulator: it cannot be chained".into()));
            }
            if !last && insn.code == RET_K && insn.k == libc::SECCOMP_RET_ALLOW {
                // Relative to the next instruction: the rest of this program is skipped.
                let skip = (program.len() - i - 1) as u32;
                out.push(sock_filter { code: JA, jt: 0, jf: 0, k: skip });
            } else {
                out.push(sock_filter { code: insn.code, jt: insn.jt, jf: insn.jf, k: insn.k });
            }
        }
    }
    // BPF_MAXINSNS: the kernel refuses longer classic programs.
    if out.len() > 4096 {
        return Err(SeccompError::Compile(format!("the chained filter has {} instructions, over 4096", out.len())));
    }
    Ok(out)
}

fn err(e: impl std::fmt::Display) -> SeccompError {
    SeccompError::Compile(e.to_string())
}

/// A condition that always holds: `(arg0 & 0) == 0`.
fn always() -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(0), 0).map_err(err)
}

fn condition(c: &rootfs::ArgCondition) -> Result<SeccompCondition, SeccompError> {
    // Flags and small values are compared on the full register: a 32-bit comparison
    // would let garbage in the upper half slip past an `ne`.
    let (op, value) = match (c.eq, c.ne, c.flag) {
        (Some(v), None, None) => (SeccompCmpOp::Eq, v),
        (None, Some(v), None) => (SeccompCmpOp::Ne, v),
        (None, None, Some(f)) => (SeccompCmpOp::MaskedEq(f), f),
        _ => return Err(SeccompError::Compile("a condition needs exactly one of eq, ne, flag".into())),
    };
    // 32-bit arguments (ints, like socket's domain) are compared as dwords, since the
    // kernel ignores their upper half too.
    let len = if value <= u64::from(u32::MAX) { SeccompCmpArgLen::Dword } else { SeccompCmpArgLen::Qword };
    SeccompCondition::new(c.arg, len, op, value).map_err(err)
}

/// Kills a process that is not using the native x86_64 ABI: i386 (`int 0x80`) has
/// another audit arch, x32 has bit 30 set in the syscall number.
fn abi_guard() -> BpfProgram {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        insn(LD_W_ABS, 0, 0, 4),                 // 0: A = seccomp_data.arch
        insn(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),    // 1: foreign arch -> 5
        insn(LD_W_ABS, 0, 0, 0),                 // 2: A = seccomp_data.nr
        insn(JGE_K, 1, 0, X32_SYSCALL_BIT),      // 3: x32 -> 5
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW), // 4
        insn(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS), // 5
    ]
}

/// The syscalls the policy may name (x86_64 numbers).
fn syscall_number(name: &str) -> Option<i64> {
    use libc::*;
    Some(match name {
        "keyctl" => SYS_keyctl,
        "add_key" => SYS_add_key,
        "request_key" => SYS_request_key,
        "bpf" => SYS_bpf,
        "perf_event_open" => SYS_perf_event_open,
        "io_uring_setup" => SYS_io_uring_setup,
        "io_uring_enter" => SYS_io_uring_enter,
        "io_uring_register" => SYS_io_uring_register,
        "ptrace" => SYS_ptrace,
        "process_vm_readv" => SYS_process_vm_readv,
        "process_vm_writev" => SYS_process_vm_writev,
        "kcmp" => SYS_kcmp,
        "pidfd_getfd" => SYS_pidfd_getfd,
        "mount" => SYS_mount,
        "umount2" => SYS_umount2,
        "pivot_root" => SYS_pivot_root,
        "chroot" => SYS_chroot,
        "move_mount" => SYS_move_mount,
        "open_tree" => SYS_open_tree,
        "fsopen" => SYS_fsopen,
        "fsmount" => SYS_fsmount,
        "fsconfig" => SYS_fsconfig,
        "fspick" => SYS_fspick,
        "mount_setattr" => SYS_mount_setattr,
        "unshare" => SYS_unshare,
        "setns" => SYS_setns,
        "clone" => SYS_clone,
        "clone3" => SYS_clone3,
        "kexec_load" => SYS_kexec_load,
        "kexec_file_load" => SYS_kexec_file_load,
        "reboot" => SYS_reboot,
        "init_module" => SYS_init_module,
        "finit_module" => SYS_finit_module,
        "delete_module" => SYS_delete_module,
        "swapon" => SYS_swapon,
        "swapoff" => SYS_swapoff,
        "acct" => SYS_acct,
        "quotactl" => SYS_quotactl,
        "syslog" => SYS_syslog,
        "iopl" => SYS_iopl,
        "ioperm" => SYS_ioperm,
        "vhangup" => SYS_vhangup,
        "lookup_dcookie" => SYS_lookup_dcookie,
        "fanotify_init" => SYS_fanotify_init,
        "nfsservctl" => SYS_nfsservctl,
        "open_by_handle_at" => SYS_open_by_handle_at,
        "name_to_handle_at" => SYS_name_to_handle_at,
        "userfaultfd" => SYS_userfaultfd,
        "personality" => SYS_personality,
        "socket" => SYS_socket,
        "socketpair" => SYS_socketpair,
        "clock_settime" => SYS_clock_settime,
        "clock_adjtime" => SYS_clock_adjtime,
        "settimeofday" => SYS_settimeofday,
        "adjtimex" => SYS_adjtimex,
        "sethostname" => SYS_sethostname,
        "setdomainname" => SYS_setdomainname,
        "ioctl" => SYS_ioctl,
        "flock" => SYS_flock,
        "inotify_init" => SYS_inotify_init,
        "inotify_init1" => SYS_inotify_init1,
        "inotify_add_watch" => SYS_inotify_add_watch,
        "fanotify_mark" => SYS_fanotify_mark,
        "fcntl" => SYS_fcntl,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn builtin_policy_compiles_for_both_scopes() {
        let spec = rootfs::Spec::builtin().unwrap();
        let f = Filters::compile(&spec.seccomp).unwrap();
        // Guard, EPERM and ENOSYS filters chained into one; the program's has the lock
        // rules too.
        assert_eq!(f.program.len(), 1);
        assert_eq!(f.tool.len(), 1);
        assert!(f.program[0].len() > f.tool[0].len());
    }

    /// Runs a classic BPF program of the kinds seccompiler and `abi_guard` emit on one
    /// (arch, nr, args) triple: loads of seccomp_data words, jumps, ALU AND, returns.
    fn verdict(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                16..=63 => {
                    let a = args[((off - 16) / 8) as usize];
                    if off.is_multiple_of(8) { a as u32 } else { (a >> 32) as u32 }
                }
                _ => panic!("load at {off}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &prog[pc];
            let class = u32::from(i.code) & 0x07;
            let op = u32::from(i.code) & 0xf0;
            match class {
                libc::BPF_LD => acc = word(i.k),
                libc::BPF_ALU if op == libc::BPF_AND => acc &= i.k,
                libc::BPF_RET => return i.k,
                libc::BPF_JMP if op == libc::BPF_JA => pc += i.k as usize,
                libc::BPF_JMP => {
                    let hit = match op {
                        libc::BPF_JEQ => acc == i.k,
                        libc::BPF_JGT => acc > i.k,
                        libc::BPF_JGE => acc >= i.k,
                        libc::BPF_JSET => acc & i.k != 0,
                        _ => panic!("jump op {op:#x}"),
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                _ => panic!("instruction {:#x}", i.code),
            }
            pc += 1;
        }
    }

    /// The chained program decides every case as the kernel decides over the separate
    /// filters: the strictest verdict, the newest filter's among equals.
    #[test]
    fn the_chained_filter_decides_as_the_separate_ones() {
        let spec = rootfs::Spec::builtin().unwrap();
        for program in [true, false] {
            let separate = separate_filters(&spec.seccomp, program).unwrap();
            let chained = compile_for(&spec.seccomp, program).unwrap().remove(0);
            let kernel = |arch, nr, args| {
                // Newest first; strictly stricter replaces (action values compared signed).
                let mut ret = libc::SECCOMP_RET_ALLOW;
                for f in separate.iter().rev() {
                    let cur = verdict(f, arch, nr, args);
                    if ((cur & 0xffff_0000) as i32) < ((ret & 0xffff_0000) as i32) {
                        ret = cur;
                    }
                }
                ret
            };
            let x86 = 0xc000_003e_u32;
            assert_eq!(verdict(&chained, x86, libc::SYS_getpid as u32, [0; 6]), libc::SECCOMP_RET_ALLOW);
            assert_eq!(verdict(&chained, x86, libc::SYS_bpf as u32, [0; 6]), libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
            assert_eq!(verdict(&chained, 0x4000_0003, libc::SYS_getpid as u32, [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
            let values = [0u64, 1, 2, 3, 0x10, 0x40, 0x5401, 0x5412, 0x8000_0000, 0x7e, 0x1_0000_0000, u64::MAX];
            for nr in (0..460u32).chain([0x4000_0000, 0x4000_0001]) {
                for arch in [0xc000_003e_u32, 0x4000_0003] {
                    for (k, &v) in values.iter().enumerate() {
                        let args = [v, values[(k + 3) % values.len()], v, v, v, v];
                        assert_eq!(verdict(&chained, arch, nr, args), kernel(arch, nr, args), "nr {nr} arch {arch:#x} args {args:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_syscalls_are_refused() {
        let policy: SeccompPolicy =
            toml::from_str("[[deny]]\nsyscall = [\"frobnicate\"]\naction = \"eperm\"\nreason = \"r\"").unwrap();
        assert!(matches!(Filters::compile(&policy), Err(SeccompError::UnknownSyscall(_))));
    }
}
