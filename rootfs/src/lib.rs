//! The sandbox's root filesystem spec and the language table.
//!
//! Both are data in this folder (`languages.toml`, `mounts.toml`), compiled into the
//! binaries as defaults and loadable from a directory to override them, so adding a
//! language is an edit of a TOML file, not of Rust code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    pub source: String,
    #[serde(default)]
    pub compile: Option<Vec<String>>,
    pub run: Vec<String>,
    #[serde(default = "one")]
    pub time_multiplier: f64,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
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
    #[serde(default)]
    pub bind: Vec<Bind>,
    #[serde(default)]
    pub symlink: Vec<Symlink>,
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
    fn builtin_spec_has_the_four_first_languages() {
        let spec = Spec::builtin().unwrap();
        for id in ["c", "cpp", "python", "javascript"] {
            assert!(spec.language(id).is_some(), "{id} missing");
        }
        assert!(spec.mounts.bind.iter().any(|b| b.source == Path::new("/usr")));
    }

    #[test]
    fn loading_from_this_folder_matches_builtin() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(Spec::load(dir).unwrap(), Spec::builtin().unwrap());
    }

    #[test]
    fn bad_tables_are_refused_with_a_reason() {
        let lang = |extra: &str| format!("[[language]]\nid = \"x\"\nname = \"X\"\nsource = \"m.x\"\nrun = [\"r\"]\n{extra}");
        let sc = "deny = []";
        assert!(Spec::parse(&lang(""), "", sc).is_ok());
        let dup = format!("{}\n{}", lang(""), lang(""));
        assert!(matches!(Spec::parse(&dup, "", sc), Err(SpecError::Invalid { .. })));
        assert!(matches!(Spec::parse(&lang("time_multiplier = 0.0"), "", sc), Err(SpecError::Invalid { .. })));
        assert!(matches!(Spec::parse(&lang("bogus = 1"), "", sc), Err(SpecError::Parse { .. })));
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
