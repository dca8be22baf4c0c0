//! Checker programs of problem setters: compiled once per job in a /box of their own,
//! then run once per test in a fresh sandbox with their own limits. They are code from
//! outside like any submission, so they get the same isolation; only their verdicts are
//! trusted, and only through the exit codes of their convention. Anything else a checker
//! does (crash, limit, unknown exit code) is the judge's internal error, never AC.

use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{CheckerConvention, CheckerProgram, Verdict};
use rootfs::{Expansion, Language};

use crate::judge::{Judge, Judged, describe_exit, prepare_box};
use crate::sandbox::{Exit, Profile, RunLimits, RunOutcome, RunSpec, pipe};

/// The checker's part of a job directory.
pub const CHECKER_DIR: &str = "checker";

/// Bytes of `judgemessage.txt`, `score.txt` and checker output read back.
const FEEDBACK_BYTES: u64 = 4096;

/// Kattis output validators accept with 42 and reject with 43.
const KATTIS_AC: i32 = 42;
const KATTIS_WA: i32 = 43;

/// A compiled checker, ready to run for each test.
pub(crate) struct PreparedChecker<'a> {
    program: &'a CheckerProgram,
    lang: &'a Language,
    box_dir: PathBuf,
    stdin: PathBuf,
    limits: RunLimits,
    argv: Vec<String>,
}

impl Judge {
    /// Compiles the job's checker. `Err` is the job's IE message.
    pub(crate) fn prepare_checker<'a>(
        &'a self,
        program: &'a CheckerProgram,
        job_dir: &Path,
        id: u32,
    ) -> Result<PreparedChecker<'a>, String> {
        let lang = self
            .spec
            .language(&program.language)
            .ok_or_else(|| format!("this agent has no language {:?} for the checker", program.language))?;
        let dir = job_dir.join(CHECKER_DIR);
        let box_dir = dir.join("box");
        prepare_box(&box_dir, &lang.source, &program.source, id)
            .map_err(|e| format!("cannot prepare the checker's work dir: {e}"))?;
        let stdin = dir.join("stdin");
        self.compile(lang, &[], &box_dir, &stdin, id, None).map_err(|(_, output, message)| {
            format!("the checker does not compile: {message}\n{}", output.chars().take(2000).collect::<String>())
        })?;
        let limits = RunLimits {
            cpu: Duration::from_millis(program.limits.cpu_ms),
            wall: Duration::from_millis(program.limits.wall_ms),
            memory_bytes: program.limits.memory_bytes,
            max_processes: program.limits.max_processes.max(lang.min_processes),
            output_bytes: program.limits.output_bytes,
            file_bytes: 64 << 20,
            open_files: 256u64.max(lang.min_open_files),
            stack_bytes: program.limits.memory_bytes,
        };
        let x = Expansion { memory_mb: limits.memory_bytes >> 20, stack_kb: limits.stack_bytes >> 10, compiler_options: &[] };
        let mut argv = lang.expand(&lang.run, &x);
        match program.convention {
            CheckerConvention::Kattis => {
                argv.extend(["/box/in", "/box/ans", "/box/feedback/"].map(String::from));
                argv.extend(program.args.iter().cloned());
            }
            CheckerConvention::Testlib => argv.extend(["/box/in", "/box/out", "/box/ans"].map(String::from)),
        }
        Ok(PreparedChecker { program, lang, box_dir, stdin, limits, argv })
    }

    /// Judges one output with the checker.
    pub(crate) fn run_checker(
        &self,
        c: &PreparedChecker<'_>,
        input: &[u8],
        answer: &[u8],
        output: &[u8],
        id: u32,
    ) -> Judged {
        match self.try_run_checker(c, input, answer, output, id) {
            Ok(j) => j,
            Err(message) => Judged { verdict: Verdict::IE, message, score: None },
        }
    }

    fn try_run_checker(
        &self,
        c: &PreparedChecker<'_>,
        input: &[u8],
        answer: &[u8],
        output: &[u8],
        id: u32,
    ) -> Result<Judged, String> {
        let io = |what: &str, e: std::io::Error| format!("cannot prepare the checker's {what}: {e}");
        let feedback = self.fresh_feedback(c, input, answer, id)?;
        write_fresh(&c.box_dir, "out", output).map_err(|e| io("output", e))?;
        let stdin = match c.program.convention {
            CheckerConvention::Kattis => c.box_dir.join("out"),
            CheckerConvention::Testlib => {
                std::fs::write(&c.stdin, b"").map_err(|e| io("stdin", e))?;
                c.stdin.clone()
            }
        };
        let spec = RunSpec {
            argv: &c.argv,
            env: &c.lang.env,
            box_dir: &c.box_dir,
            // The feedback directory is written by the checker.
            box_writable: true,
            stdin: &stdin,
            limits: c.limits,
            uid: id,
            gid: id,
            profile: Profile::Program,
            pin_cpu: self.cpu_for(id),
        };
        let o = self.sandbox.run(&spec).map_err(|e| format!("checker sandbox failed: {e}"))?;
        match c.program.convention {
            CheckerConvention::Kattis => self.kattis_verdict(&o, &feedback, "validator"),
            CheckerConvention::Testlib => {
                if let Some(limit) = o.limit {
                    return Err(format!("the checker exceeded its {limit:?} limit"));
                }
                let code = match o.exit {
                    Exit::Code(c) => c,
                    e @ Exit::Signal(_) => return Err(format!("the checker {}", describe_exit(e))),
                };
                let text = String::from_utf8_lossy(if o.stderr.is_empty() { &o.stdout } else { &o.stderr });
                let message = trunc(text.trim()).to_string();
                match code {
                    0 => Ok(Judged { verdict: Verdict::AC, message, score: None }),
                    1 => Ok(Judged { verdict: Verdict::WA, message, score: None }),
                    2 => Ok(Judged { verdict: Verdict::WA, message: format!("presentation error: {message}"), score: None }),
                    3 => Err(format!("the checker failed: {message}")),
                    7 => {
                        let points = testlib_points(&message)
                            .ok_or_else(|| format!("the checker gave points but no number: {message:?}"))?;
                        let verdict = if points > 0.0 { Verdict::AC } else { Verdict::WA };
                        Ok(Judged { verdict, message, score: Some(points) })
                    }
                    other => Err(format!("the checker exited with {other}: {message}")),
                }
            }
        }
    }
}

impl Judge {
    /// Runs the program (`user`) against the interactor, each in its own sandbox, the
    /// program's stdout piped to the interactor's stdin and back. The program's outcome
    /// is its own (time, memory, exit), the verdict on its answers the interactor's.
    pub(crate) fn run_interactive(
        &self,
        c: &PreparedChecker<'_>,
        user: &RunSpec<'_>,
        input: &[u8],
        answer: &[u8],
        id: u32,
    ) -> Result<(RunOutcome, Judged), String> {
        let feedback = self.fresh_feedback(c, input, answer, id)?;
        let pipes = || -> Result<_, crate::sandbox::SandboxError> { Ok((pipe()?, pipe()?)) };
        let ((to_interactor_r, to_interactor_w), (to_user_r, to_user_w)) =
            pipes().map_err(|e| format!("cannot create the pipes: {e}"))?;
        let spec = RunSpec {
            argv: &c.argv,
            env: &c.lang.env,
            box_dir: &c.box_dir,
            box_writable: true,
            stdin: &c.stdin,
            limits: c.limits,
            uid: id,
            gid: id,
            profile: Profile::Program,
            pin_cpu: self.cpu_for(id),
        };
        let (user_run, interactor_run) = std::thread::scope(|scope| {
            let interactor = scope.spawn(|| self.sandbox.run_piped(&spec, to_interactor_r, to_user_w));
            let user_run = self.sandbox.run_piped(user, to_user_r, to_interactor_w);
            let interactor_run = interactor.join().unwrap_or_else(|_| {
                Err(crate::sandbox::SandboxError::Invalid("the interactor's thread panicked".into()))
            });
            (user_run, interactor_run)
        });
        let user_run = user_run.map_err(|e| format!("sandbox failed: {e}"))?;
        let judged = match interactor_run {
            Err(e) => Judged { verdict: Verdict::IE, message: format!("interactor sandbox failed: {e}"), score: None },
            Ok(o) => match self.kattis_verdict(&o, &feedback, "interactor") {
                Ok(j) => j,
                Err(message) => Judged { verdict: Verdict::IE, message, score: None },
            },
        };
        Ok((user_run, judged))
    }

    /// A fresh feedback directory, and the test's input and answer, in the checker's box.
    fn fresh_feedback(&self, c: &PreparedChecker<'_>, input: &[u8], answer: &[u8], id: u32) -> Result<PathBuf, String> {
        let io = |what: &str, e: std::io::Error| format!("cannot prepare the checker's {what}: {e}");
        let feedback = c.box_dir.join("feedback");
        // Each test's feedback starts empty: a stale judgemessage.txt must not leak over.
        if let Err(e) = std::fs::remove_dir_all(&feedback)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(io("feedback directory", e));
        }
        std::fs::create_dir(&feedback).map_err(|e| io("feedback directory", e))?;
        std::os::unix::fs::chown(&feedback, Some(crate::sandbox::run_uid(id)), Some(crate::sandbox::run_uid(id))).map_err(|e| io("feedback directory", e))?;
        write_fresh(&c.box_dir, "in", input).map_err(|e| io("input", e))?;
        write_fresh(&c.box_dir, "ans", answer).map_err(|e| io("answer", e))?;
        Ok(feedback)
    }

    /// The Kattis reading of a validator's or interactor's run.
    fn kattis_verdict(&self, o: &RunOutcome, feedback: &Path, what: &str) -> Result<Judged, String> {
        if let Some(limit) = o.limit {
            return Err(format!("the {what} exceeded its {limit:?} limit"));
        }
        let code = match o.exit {
            Exit::Code(c) => c,
            e @ Exit::Signal(_) => return Err(format!("the {what} {}", describe_exit(e))),
        };
        let message = read_feedback(feedback, "judgemessage.txt");
        let score = read_feedback(feedback, "score.txt");
        let score = match score.trim() {
            "" => None,
            s => Some(
                s.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("the {what} wrote {:?} to score.txt, not a number", trunc(s)))?,
            ),
        };
        match code {
            KATTIS_AC => Ok(Judged { verdict: Verdict::AC, message, score }),
            KATTIS_WA => Ok(Judged { verdict: Verdict::WA, message, score }),
            other => Err(format!("the {what} exited with {other} (42 accepts, 43 rejects): {message}")),
        }
    }
}

/// testlib's `quitp` writes `points <value> <message>`; the value may also come first.
fn testlib_points(message: &str) -> Option<f64> {
    let rest = message.strip_prefix("points").unwrap_or(message);
    rest.split_ascii_whitespace().next()?.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Writes `name` in the checker's box as a new regular file. The box belongs to the
/// checker, whose earlier run may have left a symlink (or a directory) there pointing at a
/// host path; the agent, as root, must never write through it. No checker process is
/// alive between runs (they die with their pid namespace), so nothing races the unlink.
fn write_fresh(box_dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let path = box_dir.join(name);
    match std::fs::symlink_metadata(&path) {
        // `remove_dir_all` does not follow symlinks, and this is a real directory.
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path)?,
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // O_CREAT|O_EXCL never follows a symlink: should one reappear, this fails instead.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    file.write_all(data)
}

/// A file the checker wrote in its feedback directory, at most `FEEDBACK_BYTES`, lossily
/// decoded; absent or unreadable is empty. The directory and the file are the checker's:
/// a symlink at either must not make the agent read a file of the host, so the directory
/// is opened without following links and the file relative to it, again without.
fn read_feedback(feedback: &Path, name: &str) -> String {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    let Ok(dir) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(feedback)
    else {
        return String::new();
    };
    let Ok(name) = std::ffi::CString::new(name) else {
        return String::new();
    };
    // SAFETY: `dir` is an open directory descriptor for the duration of the call and
    // `name` a NUL-terminated string; openat does not keep either.
    let fd = unsafe {
        libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
    };
    if fd < 0 {
        return String::new();
    }
    // SAFETY: `fd` was just returned by openat and is owned by nothing else.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    // Only regular files: a FIFO or device there would block or feed us forever.
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = file.take(FEEDBACK_BYTES).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_string()
}

use std::os::unix::fs::OpenOptionsExt;


fn trunc(s: &str) -> &str {
    match s.char_indices().nth(FEEDBACK_BYTES as usize) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::testlib_points;

    #[test]
    fn testlib_points_are_read_from_the_message() {
        assert_eq!(testlib_points("points 0.5 partially right"), Some(0.5));
        assert_eq!(testlib_points("30 of 60"), Some(30.0));
        assert_eq!(testlib_points("points nan"), None);
        assert_eq!(testlib_points("ok"), None);
    }
}
