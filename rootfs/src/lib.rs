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
}

impl Spec {
    /// The spec compiled into the binary (this folder at build time).
    pub fn builtin() -> Result<Spec, SpecError> {
        Spec::parse(LANGUAGES_TOML, MOUNTS_TOML)
    }

    /// Loads `languages.toml` and `mounts.toml` from `dir`.
    pub fn load(dir: &Path) -> Result<Spec, SpecError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| SpecError::Read { path, source })
        };
        Spec::parse(&read("languages.toml")?, &read("mounts.toml")?)
    }

    pub fn parse(languages: &str, mounts: &str) -> Result<Spec, SpecError> {
        let langs: LanguageFile = toml::from_str(languages)
            .map_err(|source| SpecError::Parse { file: "languages.toml".into(), source })?;
        let mounts: Mounts =
            toml::from_str(mounts).map_err(|source| SpecError::Parse { file: "mounts.toml".into(), source })?;
        let spec = Spec { languages: langs.language, mounts };
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
        assert!(Spec::parse(&lang(""), "").is_ok());
        let dup = format!("{}\n{}", lang(""), lang(""));
        assert!(matches!(Spec::parse(&dup, ""), Err(SpecError::Invalid { .. })));
        assert!(matches!(Spec::parse(&lang("time_multiplier = 0.0"), ""), Err(SpecError::Invalid { .. })));
        assert!(matches!(Spec::parse(&lang("bogus = 1"), ""), Err(SpecError::Parse { .. })));
        let bad_src = lang("").replace("m.x", "../m.x");
        assert!(matches!(Spec::parse(&bad_src, ""), Err(SpecError::Invalid { .. })));
        assert!(matches!(
            Spec::parse(&lang(""), "[[bind]]\nsource = \"usr\""),
            Err(SpecError::Invalid { .. })
        ));
    }
}
