//! The sandbox's root filesystem spec and the language table.
//!
//! Both are data in this folder (`languages.toml`, `mounts.toml`), compiled into the
//! binaries as defaults and loadable from a directory to override them, so adding a
//! language is an edit of a TOML file, not of Rust code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod harness;
pub use harness::{Harness, harness};

const LANGUAGES_TOML: &str = include_str!("../languages.toml");
const MOUNTS_TOML: &str = include_str!("../mounts.toml");
const SECCOMP_TOML: &str = include_str!("../seccomp.toml");

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{file}: {source}")]
    Parse { file: String, source: toml::de::Error },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Language {
    pub id: String,
    pub name: String,
    /// The toolchain's version as `/languages` reports it; `version_command` checks it.
    pub version: String,
    /// A command whose output contains `version` (paths inside the sandbox, as `run`).
    #[serde(default)]
    pub version_command: Option<Vec<String>>,
    /// The id Judge0 CE gives this language, so Judge0 clients' hard-coded ids work.
    #[serde(default)]
    pub judge0_id: Option<u32>,
    pub source: String,
    #[serde(default)]
    pub compile: Option<Vec<String>>,
    pub run: Vec<String>,
    #[serde(default = "one")]
    pub time_multiplier: f64,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Processes and threads a compile or run gets at least, whatever the job asks:
    /// a JVM or `go build` needs dozens before the program does anything.
    #[serde(default)]
    pub min_processes: u32,
    /// Open files a compile or run gets at least.
    #[serde(default)]
    pub min_open_files: u64,
    /// Memory of the runtime itself, subtracted from the limit for `{heap_mb}`.
    #[serde(default)]
    pub reserve_mb: u64,
    /// Paths inside the sandbox that must exist for this language to be offered; an
    /// agent without them leaves the language out rather than fail every submission.
    #[serde(default)]
    pub requires: Vec<PathBuf>,
}

/// Values substituted into a language's commands.
#[derive(Debug, Clone, Copy)]
pub struct Expansion<'a> {
    /// The run's memory limit.
    pub memory_mb: u64,
    /// The run's stack limit.
    pub stack_kb: u64,
    /// What `{compiler_options}` splices in (zero or more arguments).
    pub compiler_options: &'a [String],
}

/// Placeholders a command may use inside an argument.
const PLACEHOLDERS: [&str; 3] = ["{memory_mb}", "{heap_mb}", "{stack_kb}"];
/// A whole argument that becomes zero or more arguments (compile commands only).
pub const COMPILER_OPTIONS: &str = "{compiler_options}";

impl Language {
    /// `{memory_mb}` less the runtime's reserve, never below 16: the heap a managed
    /// runtime is given, so its GC works before the cgroup's limit is reached.
    pub fn heap_mb(&self, memory_mb: u64) -> u64 {
        memory_mb.saturating_sub(self.reserve_mb).max(16)
    }

    /// `argv` with the placeholders replaced. Plain string work: no shell sees any of it.
    pub fn expand(&self, argv: &[String], x: &Expansion) -> Vec<String> {
        let mut out = Vec::with_capacity(argv.len() + x.compiler_options.len());
        for arg in argv {
            if arg == COMPILER_OPTIONS {
                out.extend(x.compiler_options.iter().cloned());
                continue;
            }
            if !arg.contains('{') {
                out.push(arg.clone());
                continue;
            }
            out.push(
                arg.replace("{memory_mb}", &x.memory_mb.to_string())
                    .replace("{heap_mb}", &self.heap_mb(x.memory_mb).to_string())
                    .replace("{stack_kb}", &x.stack_kb.to_string()),
            );
        }
        out
    }

    /// Whether the compile command has a place for compiler options.
    pub fn takes_compiler_options(&self) -> bool {
        self.compile.as_ref().is_some_and(|c| c.iter().any(|a| a == COMPILER_OPTIONS))
    }
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    pub source: PathBuf,
    /// Where it appears inside the sandbox; the same path as on the host by default.
    #[serde(default)]
    pub target: Option<PathBuf>,
    /// A missing source is skipped instead of failing every run.
    #[serde(default)]
    pub optional: bool,
    /// A host command printing the source path, run once by the agent at start (e.g.
    /// `rustc --print sysroot`, since rustup's toolchain dir differs per machine). Its
    /// answer replaces `source`; if it fails, `source` stays.
    #[serde(default)]
    pub probe: Option<Vec<String>>,
}

impl Bind {
    pub fn target(&self) -> &Path {
        self.target.as_deref().unwrap_or(&self.source)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Symlink {
    pub path: PathBuf,
    pub target: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Mounts {
    /// A prepared root filesystem (a directory) used read-only as the base of the
    /// sandbox's root instead of an empty tmpfs. It must contain the directories /box,
    /// /tmp, /proc and /dev, every bind target and no symlink of `symlink`.
    #[serde(default)]
    pub image: Option<PathBuf>,
    #[serde(default)]
    pub bind: Vec<Bind>,
    #[serde(default)]
    pub symlink: Vec<Symlink>,
}

impl Mounts {
    /// Runs the binds' probes and puts their answers in as sources. Returns what went
    /// wrong with a probe, for the log; such a bind keeps its configured source.
    pub fn resolve_probes(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for b in &mut self.bind {
            let Some((program, args)) = b.probe.as_ref().and_then(|p| p.split_first()) else {
                continue;
            };
            match std::process::Command::new(program).args(args).stdin(std::process::Stdio::null()).output() {
                Ok(out) if out.status.success() => {
                    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                    if path.is_absolute() && path.exists() {
                        b.source = path;
                    } else {
                        problems.push(format!("probe {program:?} for {}: answered {path:?}, not an existing absolute path", b.target().display()));
                    }
                }
                Ok(out) => problems.push(format!("probe {program:?} for {}: {}", b.target().display(), out.status)),
                Err(e) => problems.push(format!("probe {program:?} for {}: {e}", b.target().display())),
            }
        }
        problems
    }

    /// Where a path inside the sandbox comes from on the host, through the bind with the
    /// longest matching target. `None` if no bind covers it.
    pub fn host_path(&self, inside: &Path) -> Option<PathBuf> {
        self.bind
            .iter()
            .filter_map(|b| inside.strip_prefix(b.target()).ok().map(|rest| (b, rest)))
            .max_by_key(|(b, _)| b.target().components().count())
            .map(|(b, rest)| if rest.as_os_str().is_empty() { b.source.clone() } else { b.source.join(rest) })
    }
}

/// What a seccomp rule does to a matching call.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SeccompAction {
    Eperm,
    Enosys,
    Kill,
}

/// Which processes a rule applies to.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SeccompScope {
    /// Every sandboxed process: compilers and checkers too.
    #[default]
    All,
    /// Only the judged program.
    Program,
}

/// One condition on a syscall argument.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ArgCondition {
    pub arg: u8,
    #[serde(default)]
    pub eq: Option<u64>,
    #[serde(default)]
    pub ne: Option<u64>,
    /// `(arg & flag) == flag`.
    #[serde(default)]
    pub flag: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeccompDeny {
    pub syscall: Vec<String>,
    pub action: SeccompAction,
    pub reason: String,
    /// Denied when any inner list holds entirely; always when absent.
    #[serde(default)]
    pub when: Vec<Vec<ArgCondition>>,
    #[serde(default)]
    pub runs: SeccompScope,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SeccompPolicy {
    pub deny: Vec<SeccompDeny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LanguageFile {
    language: Vec<Language>,
}

/// The whole spec: languages plus the root filesystem layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub languages: Vec<Language>,
    pub mounts: Mounts,
    pub seccomp: SeccompPolicy,
}

impl Spec {
    /// The spec compiled into the binary (this folder at build time).
    pub fn builtin() -> Result<Spec, SpecError> {
        Spec::parse(LANGUAGES_TOML, MOUNTS_TOML, SECCOMP_TOML)
    }

    /// Loads `languages.toml`, `mounts.toml` and `seccomp.toml` from `dir`.
    pub fn load(dir: &Path) -> Result<Spec, SpecError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| SpecError::Read { path, source })
        };
        Spec::parse(&read("languages.toml")?, &read("mounts.toml")?, &read("seccomp.toml")?)
    }

    pub fn parse(languages: &str, mounts: &str, seccomp: &str) -> Result<Spec, SpecError> {
        let langs: LanguageFile = toml::from_str(languages)
            .map_err(|source| SpecError::Parse { file: "languages.toml".into(), source })?;
        let mounts: Mounts =
            toml::from_str(mounts).map_err(|source| SpecError::Parse { file: "mounts.toml".into(), source })?;
        let seccomp: SeccompPolicy =
            toml::from_str(seccomp).map_err(|source| SpecError::Parse { file: "seccomp.toml".into(), source })?;
        let spec = Spec { languages: langs.language, mounts, seccomp };
        spec.validate()?;
        Ok(spec)
    }

    pub fn language(&self, id: &str) -> Option<&Language> {
        self.languages.iter().find(|l| l.id == id)
    }

    pub fn language_by_judge0_id(&self, id: u32) -> Option<&Language> {
        self.languages.iter().find(|l| l.judge0_id == Some(id))
    }

    /// Each language's missing `requires` on this host, resolved through the binds;
    /// languages with an empty list can be offered.
    pub fn missing_requirements(&self) -> Vec<(&Language, Vec<PathBuf>)> {
        self.languages
            .iter()
            .map(|l| {
                let missing = l
                    .requires
                    .iter()
                    .filter(|p| !self.mounts.host_path(p).is_some_and(|h| h.exists()))
                    .cloned()
                    .collect();
                (l, missing)
            })
            .collect()
    }

    fn validate(&self) -> Result<(), SpecError> {
        let bad = |file: &str, message: String| Err(SpecError::Invalid { file: file.into(), message });
        let mut seen = std::collections::BTreeSet::new();
        for l in &self.languages {
            if !seen.insert(l.id.as_str()) {
                return bad("languages.toml", format!("language id {:?} appears twice", l.id));
            }
            if l.id.is_empty() || !l.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return bad("languages.toml", format!("language id {:?} must be [A-Za-z0-9_-]+", l.id));
            }
            if l.source.is_empty() || l.source.contains('/') || l.source.starts_with('.') {
                return bad("languages.toml", format!("{}: source must be a plain file name", l.id));
            }
            if l.run.is_empty() || l.compile.as_ref().is_some_and(|c| c.is_empty()) {
                return bad("languages.toml", format!("{}: empty command", l.id));
            }
            if l.judge0_id.is_some() && self.languages.iter().filter(|o| o.judge0_id == l.judge0_id).count() > 1 {
                return bad("languages.toml", format!("{}: judge0_id {:?} appears twice", l.id, l.judge0_id));
            }
            let commands = l.compile.iter().flatten().map(|a| (a, true)).chain(l.run.iter().map(|a| (a, false)));
            for (arg, compiling) in commands {
                if arg == COMPILER_OPTIONS {
                    if !compiling {
                        return bad("languages.toml", format!("{}: {COMPILER_OPTIONS} belongs in compile", l.id));
                    }
                    continue;
                }
                let mut rest = arg.as_str();
                while let Some(start) = rest.find('{') {
                    let tail = &rest[start..];
                    let Some(p) = PLACEHOLDERS.iter().find(|p| tail.starts_with(**p)) else {
                        return bad("languages.toml", format!("{}: unknown placeholder in {arg:?}", l.id));
                    };
                    rest = &tail[p.len()..];
                }
            }
            if !(l.time_multiplier.is_finite() && l.time_multiplier > 0.0 && l.time_multiplier <= 100.0) {
                return bad("languages.toml", format!("{}: time_multiplier must be in (0, 100]", l.id));
            }
        }
        for b in &self.mounts.bind {
            if !b.source.is_absolute() || !b.target().is_absolute() {
                return bad("mounts.toml", format!("bind {:?}: paths must be absolute", b.source));
            }
            if b.target().components().any(|c| c == std::path::Component::ParentDir) {
                return bad("mounts.toml", format!("bind {:?}: target must not contain ..", b.source));
            }
        }
        for d in &self.seccomp.deny {
            if d.syscall.is_empty() || d.reason.trim().is_empty() {
                return bad("seccomp.toml", format!("{:?}: every rule names syscalls and a reason", d.syscall));
            }
            for c in d.when.iter().flatten() {
                let ops = [c.eq, c.ne, c.flag].iter().filter(|o| o.is_some()).count();
                if ops != 1 || c.arg > 5 {
                    return bad("seccomp.toml", format!("{:?}: a condition has an arg 0..=5 and exactly one of eq, ne, flag", d.syscall));
                }
            }
        }
        if let Some(image) = &self.mounts.image
            && !image.is_absolute()
        {
            return bad("mounts.toml", format!("image {image:?} must be an absolute path"));
        }
        for s in &self.mounts.symlink {
            if !s.path.is_absolute() || s.path.components().count() != 2 {
                return bad("mounts.toml", format!("symlink {:?}: must be a top-level absolute path", s.path));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn builtin_spec_has_the_eight_languages_with_judge0_ce_ids() {
        let spec = Spec::builtin().unwrap();
        let expected =
            [("c", 50), ("cpp", 54), ("cpp20", 1020), ("python", 71), ("javascript", 63), ("java", 62), ("rust", 73), ("go", 60)];
        for (id, judge0) in expected {
            let l = spec.language(id).unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!(l.judge0_id, Some(judge0), "{id}");
            assert_eq!(spec.language_by_judge0_id(judge0).map(|l| l.id.as_str()), Some(id));
            assert!(!l.version.is_empty(), "{id} has no version");
        }
        assert!(spec.mounts.bind.iter().any(|b| b.source == Path::new("/usr")));
    }

    /// The versions in the table are what this host's toolchains say (CI installs them),
    /// run through the same binds the sandbox uses, probes included.
    #[test]
    fn table_versions_match_the_installed_toolchains() {
        let mut spec = Spec::builtin().unwrap();
        let problems = spec.mounts.resolve_probes();
        assert!(problems.is_empty(), "{problems:?}");
        for l in &spec.languages {
            let cmd = l.version_command.as_ref().unwrap_or_else(|| panic!("{} has no version_command", l.id));
            let program = spec.mounts.host_path(Path::new(&cmd[0])).unwrap_or_else(|| panic!("{}: {} not bound", l.id, cmd[0]));
            let out = std::process::Command::new(&program)
                .args(&cmd[1..])
                .output()
                .unwrap_or_else(|e| panic!("{}: cannot run {} ({e}); is the toolchain installed?", l.id, program.display()));
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(text.contains(&l.version), "{}: table says {:?}, toolchain says {text:?}", l.id, l.version);
        }
        let missing: Vec<_> = spec.missing_requirements().into_iter().filter(|(_, m)| !m.is_empty()).collect();
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn placeholders_expand_without_a_shell() {
        let spec = Spec::builtin().unwrap();
        let java = spec.language("java").unwrap();
        let opts = vec!["-g".to_string(), "$(rm -rf /)".to_string()];
        let x = Expansion { memory_mb: 256, stack_kb: 65536, compiler_options: &opts };
        let run = java.expand(&java.run, &x);
        assert!(run.contains(&format!("-Xmx{}m", 256 - java.reserve_mb)), "{run:?}");
        assert!(run.contains(&"-Xss65536k".to_string()), "{run:?}");
        let compile = java.expand(java.compile.as_ref().unwrap(), &x);
        // Spliced as two plain arguments where the table says, before the source.
        let at = compile.iter().position(|a| a == "-g").unwrap();
        assert_eq!(compile[at + 1], "$(rm -rf /)");
        assert_eq!(compile.last().unwrap(), "Main.java");
        assert!(!compile.iter().any(|a| a.contains('{')));
        // Tiny limits still leave the JVM a heap.
        assert_eq!(java.heap_mb(32), 16);
        assert!(java.takes_compiler_options());
        assert!(!spec.language("python").unwrap().takes_compiler_options());
    }

    #[test]
    fn host_paths_follow_the_longest_bind() {
        let mounts: Mounts = toml::from_str(
            "[[bind]]\nsource = \"/usr\"\n[[bind]]\nsource = \"/srv/rust-1\"\ntarget = \"/usr/rust\"\n",
        )
        .unwrap();
        assert_eq!(mounts.host_path(Path::new("/usr/bin/gcc")), Some(PathBuf::from("/usr/bin/gcc")));
        assert_eq!(mounts.host_path(Path::new("/usr/rust/bin/rustc")), Some(PathBuf::from("/srv/rust-1/bin/rustc")));
        assert_eq!(mounts.host_path(Path::new("/usr/rust")), Some(PathBuf::from("/srv/rust-1")));
        assert_eq!(mounts.host_path(Path::new("/opt/x")), None);
    }

    #[test]
    fn loading_from_this_folder_matches_builtin() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(Spec::load(dir).unwrap(), Spec::builtin().unwrap());
    }

    #[test]
    fn bad_tables_are_refused_with_a_reason() {
        let lang = |extra: &str| format!("[[language]]\nid = \"x\"\nname = \"X\"\nversion = \"1\"\nsource = \"m.x\"\nrun = [\"r\"]\n{extra}");
        let sc = "deny = []";
        assert!(Spec::parse(&lang(""), "", sc).is_ok());
        let dup = format!("{}\n{}", lang(""), lang(""));
        assert!(matches!(Spec::parse(&dup, "", sc), Err(SpecError::Invalid { .. })));
        assert!(matches!(Spec::parse(&lang("time_multiplier = 0.0"), "", sc), Err(SpecError::Invalid { .. })));
        assert!(matches!(Spec::parse(&lang("bogus = 1"), "", sc), Err(SpecError::Parse { .. })));
        let placeholder = lang("").replace("[\"r\"]", "[\"r\", \"-m{memory_gb}\"]");
        assert!(matches!(Spec::parse(&placeholder, "", sc), Err(SpecError::Invalid { .. })));
        let opts_in_run = lang("").replace("[\"r\"]", "[\"r\", \"{compiler_options}\"]");
        assert!(matches!(Spec::parse(&opts_in_run, "", sc), Err(SpecError::Invalid { .. })));
        let two_ids = format!("{}\n{}", lang("judge0_id = 5"), lang("judge0_id = 5").replace("id = \"x\"", "id = \"y\""));
        assert!(matches!(Spec::parse(&two_ids, "", sc), Err(SpecError::Invalid { .. })));
        let bad_src = lang("").replace("m.x", "../m.x");
        assert!(matches!(Spec::parse(&bad_src, "", sc), Err(SpecError::Invalid { .. })));
        assert!(matches!(
            Spec::parse(&lang(""), "[[bind]]\nsource = \"usr\"", sc),
            Err(SpecError::Invalid { .. })
        ));
        let rule = |extra: &str| format!("[[deny]]\nsyscall = [\"bpf\"]\naction = \"eperm\"\nreason = \"r\"\n{extra}");
        assert!(Spec::parse(&lang(""), "", &rule("")).is_ok());
        assert!(matches!(Spec::parse(&lang(""), "", &rule("when = [[{ arg = 0 }]]")), Err(SpecError::Invalid { .. })));
        assert!(matches!(Spec::parse(&lang(""), "", &rule("when = [[{ arg = 9, eq = 1 }]]")), Err(SpecError::Invalid { .. })));
        assert!(matches!(Spec::parse(&lang(""), "", &rule("").replace("eperm", "maybe")), Err(SpecError::Parse { .. })));
    }
}
