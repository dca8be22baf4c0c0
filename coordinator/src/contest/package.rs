//! Kattis / ICPC problem packages (problemarchive.org's format, the subset judges use):
//!
//! ```text
//! problem.yaml            name, type, validation, validator_flags, limits
//! .timelimit              seconds (DOMjudge), or limits.time_limit in problem.yaml
//! data/sample/*.in|.ans   sample tests (score 0)
//! data/secret/*.in|.ans   secret tests, one group "secret" ...
//! data/secret/G/*.in|.ans ... or in groups, with data/secret/G/testdata.yaml {score}
//! data/testdata.yaml      on_reject: break|continue, grader_flags: sum|min
//! output_validators/X/    a custom output validator (one source file) or an interactor
//! output_validator/       the same (the 2023 layout)
//! ```
//!
//! A package arrives as a map of relative paths to contents (`zip::read_zip`,
//! `zip::read_dir`) and is parsed into a `Problem`; `export` writes one back. Every
//! refusal names the problem and the file.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::{
    BuiltinChecker, Convention, GroupMeta, Problem, ProblemMeta, ProblemTest, Scoring, Validator, ValidatorMeta,
};

/// A package's files by path relative to its root (`/`-separated, no `..`).
pub type Files = BTreeMap<String, Vec<u8>>;

/// Defaults for what a package does not say.
pub const DEFAULT_TIME_LIMIT_MS: u64 = 1000;
pub const DEFAULT_MEMORY_MB: u64 = 256;
pub const DEFAULT_OUTPUT_MB: u64 = 8;
pub const DEFAULT_VALIDATOR_TIME_MS: u64 = 10_000;
pub const DEFAULT_VALIDATOR_MEMORY_MB: u64 = 512;
/// Caps of a package's limits, so a package cannot ask the judge for an hour per test.
const MAX_TIME_LIMIT_MS: u64 = 60_000;
const MAX_MEMORY_MB: u64 = 4096;
pub const MAX_TESTS: usize = 1000;
/// All inputs and answers together: a job carries them inline in one frame
/// (`protocol::MAX_FRAME_BYTES`), with room for the source and the validator.
pub const MAX_TEST_DATA_BYTES: usize = 48 << 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PackageError {
    #[error("problem {problem:?}: {file}: {message}")]
    Invalid { problem: String, file: String, message: String },
    #[error("package refused: {0}")]
    Unsafe(String),
    #[error("package refused: {0}")]
    TooLarge(String),
}

pub fn slug_ok(slug: &str) -> bool {
    let b = slug.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// Parses a package whose files are `files`, as problem `slug`.
pub fn parse(slug: &str, files: &Files) -> Result<Problem, PackageError> {
    let err = |file: &str, message: String| PackageError::Invalid {
        problem: slug.to_owned(),
        file: file.to_owned(),
        message,
    };
    if !slug_ok(slug) {
        return Err(err("(slug)", "a problem slug is 1-64 of a-z, 0-9, - and _, starting with a letter or digit".into()));
    }
    let yaml = files.get("problem.yaml").ok_or_else(|| err("problem.yaml", "missing".into()))?;
    let doc: Value = serde_yaml::from_slice(yaml).map_err(|e| err("problem.yaml", format!("not valid YAML: {e}")))?;
    let doc = match doc {
        Value::Null => Value::Mapping(Default::default()),
        Value::Mapping(_) => doc,
        _ => return Err(err("problem.yaml", "must be a mapping".into())),
    };
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let name = match doc.get("name") {
        None => slug.to_owned(),
        Some(Value::Mapping(m)) => m
            .get("en")
            .or_else(|| m.values().next())
            .and_then(text)
            .ok_or_else(|| err("problem.yaml", "name: no text".into()))?,
        Some(v) => text(v).ok_or_else(|| err("problem.yaml", "name: must be text".into()))?,
    };
    // `type` is a word (legacy) or a list of words (2023).
    let types: Vec<String> = match doc.get("type") {
        None => vec!["pass-fail".into()],
        Some(Value::Sequence(s)) => s.iter().filter_map(text).collect(),
        Some(v) => text(v).map(|t| t.split_whitespace().map(String::from).collect()).unwrap_or_default(),
    };
    for t in &types {
        if !["pass-fail", "scoring", "interactive"].contains(&t.as_str()) {
            return Err(err("problem.yaml", format!("type: {t:?} is not supported (pass-fail, scoring, interactive)")));
        }
    }
    let validation = doc.get("validation").and_then(text).unwrap_or_else(|| "default".into());
    let validation_words: Vec<&str> = validation.split_whitespace().collect();
    let custom = match validation_words.first() {
        Some(&"default") => false,
        Some(&"custom") => true,
        _ => return Err(err("problem.yaml", format!("validation: {validation:?} is neither default nor custom"))),
    };
    let interactive = types.iter().any(|t| t == "interactive") || validation_words.contains(&"interactive");
    let scored = types.iter().any(|t| t == "scoring") || validation_words.contains(&"score");
    if interactive && !custom {
        return Err(err("problem.yaml", "an interactive problem needs validation: custom interactive".into()));
    }
    let flags: Vec<String> = match doc.get("validator_flags") {
        None => Vec::new(),
        Some(Value::Sequence(s)) => s.iter().filter_map(text).collect(),
        Some(v) => text(v).map(|t| t.split_whitespace().map(String::from).collect()).unwrap_or_default(),
    };

    // Limits.
    let limits = doc.get("limits").cloned().unwrap_or(Value::Null);
    let number = |key: &str| -> Result<Option<f64>, PackageError> {
        match limits.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
                _ => Err(err("problem.yaml", format!("limits.{key}: must be a positive number"))),
            },
        }
    };
    let time_limit_ms = match files.get(".timelimit") {
        Some(t) => {
            let s = String::from_utf8_lossy(t);
            let secs: f64 = s.trim().parse().map_err(|_| err(".timelimit", format!("{:?} is not seconds", s.trim())))?;
            seconds_ms(secs).ok_or_else(|| err(".timelimit", format!("{secs} s is out of range")))?
        }
        None => match number("time_limit")? {
            Some(secs) => seconds_ms(secs).ok_or_else(|| err("problem.yaml", format!("limits.time_limit {secs} s is out of range")))?,
            None => DEFAULT_TIME_LIMIT_MS,
        },
    };
    if time_limit_ms > MAX_TIME_LIMIT_MS {
        return Err(err("problem.yaml", format!("time limit {time_limit_ms} ms is over the judge's {MAX_TIME_LIMIT_MS} ms")));
    }
    let mb = |key: &str, default: u64| -> Result<u64, PackageError> {
        let v = number(key)?.map_or(default, |x| x.ceil() as u64);
        if v > MAX_MEMORY_MB {
            return Err(err("problem.yaml", format!("limits.{key}: {v} MiB is over the judge's {MAX_MEMORY_MB} MiB")));
        }
        Ok(v)
    };
    let memory_mb = mb("memory", DEFAULT_MEMORY_MB)?.max(16);
    let output_mb = mb("output", DEFAULT_OUTPUT_MB)?;
    let validator_time_ms = match number("validation_time")? {
        Some(s) => seconds_ms(s).filter(|&ms| ms <= MAX_TIME_LIMIT_MS).ok_or_else(|| err("problem.yaml", "limits.validation_time: out of range".into()))?,
        None => DEFAULT_VALIDATOR_TIME_MS,
    };
    let validator_memory_mb = mb("validation_memory", DEFAULT_VALIDATOR_MEMORY_MB)?.max(16);

    // The built-in checker from the flags (also passed on to a custom validator).
    let checker = if custom { BuiltinChecker::Whitespace } else { builtin_checker(&flags).map_err(|m| err("problem.yaml", m))? };

    // Tests and groups.
    let testdata = |dir: &str| -> Result<Option<Value>, PackageError> {
        let path = format!("{dir}/testdata.yaml");
        match files.get(&path) {
            None => Ok(None),
            Some(b) => serde_yaml::from_slice(b).map(Some).map_err(|e| err(&path, format!("not valid YAML: {e}"))),
        }
    };
    let top = testdata("data")?;
    let secret_cfg = testdata("data/secret")?;
    let setting = |key: &str| -> Option<String> {
        secret_cfg.as_ref().and_then(|v| v.get(key)).or_else(|| top.as_ref().and_then(|v| v.get(key))).and_then(text)
    };
    let lazy = match setting("on_reject").as_deref() {
        None => !scored,
        Some("break") => true,
        Some("continue") => false,
        Some(other) => return Err(err("data/testdata.yaml", format!("on_reject: {other:?} is neither break nor continue"))),
    };
    let scoring = if !scored {
        Scoring::PassFail
    } else {
        match setting("grader_flags").as_deref().map(str::trim) {
            None | Some("") | Some("sum") => Scoring::Sum,
            Some("min") => Scoring::Min,
            Some(other) => return Err(err("data/testdata.yaml", format!("grader_flags: {other:?} is neither sum nor min"))),
        }
    };

    // Each .in under data/sample or data/secret; its group is its directory.
    let mut by_group: BTreeMap<String, Vec<(String, &Vec<u8>)>> = BTreeMap::new();
    for (path, content) in files.range("data/".to_owned()..) {
        if !path.starts_with("data/") {
            break;
        }
        let Some(stem) = path.strip_suffix(".in") else { continue };
        let rel = &stem["data/".len()..];
        let (dir, _) = rel.rsplit_once('/').unwrap_or(("", rel));
        if !(dir == "sample" || dir == "secret" || dir.starts_with("secret/")) {
            return Err(err(path, "tests belong under data/sample or data/secret".into()));
        }
        if dir.starts_with("sample/") {
            return Err(err(path, "data/sample has no groups".into()));
        }
        if !files.contains_key(&format!("{stem}.ans")) {
            return Err(err(path, format!("has no answer file {stem}.ans")));
        }
        by_group.entry(dir.to_owned()).or_default().push((rel.to_owned(), content));
    }
    for path in files.keys().filter(|p| p.starts_with("data/") && p.ends_with(".ans")) {
        let stem = &path[..path.len() - 4];
        if !files.contains_key(&format!("{stem}.in")) {
            return Err(err(path, format!("has no input file {stem}.in")));
        }
    }
    if !by_group.keys().any(|g| g.starts_with("secret")) {
        return Err(err("data/secret", "no tests: a problem needs at least one secret .in/.ans pair".into()));
    }
    let count: usize = by_group.values().map(Vec::len).sum();
    if count > MAX_TESTS {
        return Err(err("data", format!("{count} tests, at most {MAX_TESTS} allowed")));
    }
    let mut groups = Vec::new();
    let mut tests = Vec::new();
    // Samples first, as judges run them.
    let order = by_group.keys().filter(|g| *g == "sample").chain(by_group.keys().filter(|g| *g != "sample"));
    for group in order.cloned().collect::<Vec<_>>() {
        let members = &by_group[&group];
        let score = if group == "sample" {
            0.0
        } else {
            let cfg = testdata(&format!("data/{group}"))?;
            let given = cfg.as_ref().and_then(|c| c.get("score").or_else(|| c.get("accept_score")));
            match given {
                None => members.len() as f64,
                Some(v) => match v.as_f64() {
                    Some(x) if x.is_finite() && x >= 0.0 => x,
                    _ => return Err(err(&format!("data/{group}/testdata.yaml"), "score: must be a number >= 0".into())),
                },
            }
        };
        let index = u32::try_from(groups.len()).map_err(|_| err("data", "too many groups".into()))?;
        groups.push(GroupMeta { name: group.clone(), score });
        for (name, input) in members {
            let answer = files.get(&format!("data/{name}.ans")).cloned().unwrap_or_default();
            tests.push(ProblemTest { name: name.clone(), group: index, sample: group == "sample", input: (*input).clone(), answer });
        }
    }

    let data_bytes: usize = tests.iter().map(|t| t.input.len() + t.answer.len()).sum();
    if data_bytes > MAX_TEST_DATA_BYTES {
        return Err(err("data", format!("{data_bytes} bytes of test data, at most {MAX_TEST_DATA_BYTES} allowed")));
    }
    let validator = if custom {
        Some(find_validator(files, &doc, flags.clone()).map_err(|(file, m)| err(&file, m))?)
    } else {
        None
    };
    let meta = ProblemMeta {
        name,
        time_limit_ms,
        memory_mb,
        output_mb,
        scoring,
        lazy,
        checker,
        interactive,
        groups,
        validator_time_ms,
        validator_memory_mb,
    };
    Ok(Problem { slug: slug.to_owned(), meta, tests, validator })
}

fn seconds_ms(secs: f64) -> Option<u64> {
    (secs.is_finite() && secs > 0.0 && secs <= 3600.0).then(|| (secs * 1000.0).ceil() as u64)
}

/// Kattis's default validator flags as a built-in checker.
fn builtin_checker(flags: &[String]) -> Result<BuiltinChecker, String> {
    let (mut case_sensitive, mut space_sensitive) = (false, false);
    let (mut absolute, mut relative) = (None::<f64>, None::<f64>);
    let mut it = flags.iter();
    while let Some(flag) = it.next() {
        let mut value = || -> Result<f64, String> {
            let v = it.next().ok_or_else(|| format!("validator_flags: {flag} needs a value"))?;
            v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).ok_or_else(|| format!("validator_flags: {flag} {v:?} is not a tolerance"))
        };
        match flag.as_str() {
            "case_sensitive" => case_sensitive = true,
            "space_change_sensitive" => space_sensitive = true,
            "float_tolerance" => {
                let e = value()?;
                (absolute, relative) = (Some(e), Some(e));
            }
            "float_absolute_tolerance" => absolute = Some(value()?),
            "float_relative_tolerance" => relative = Some(value()?),
            other => return Err(format!("validator_flags: unknown flag {other:?}")),
        }
    }
    Ok(match (absolute, relative) {
        // Our line checker ignores trailing spaces only: the closest to Kattis's
        // space-change sensitivity.
        (None, None) if space_sensitive && case_sensitive => BuiltinChecker::Whitespace,
        (None, None) if space_sensitive => BuiltinChecker::CaseInsensitive,
        (None, None) => BuiltinChecker::Tokens { case_sensitive },
        (a, r) => BuiltinChecker::Float { absolute: a.unwrap_or(0.0), relative: r.unwrap_or(0.0), case_sensitive },
    })
}

/// The language of a validator source file, by its extension.
fn language_of(file: &str) -> Option<&'static str> {
    let ext = file.rsplit_once('.')?.1;
    Some(match ext {
        "py" => "python",
        "c" => "c",
        "cpp" | "cc" | "cxx" => "cpp",
        "js" => "javascript",
        "rs" => "rust",
        "go" => "go",
        _ => return None,
    })
}

/// The one source file of `output_validators/<name>/` or `output_validator/`.
fn find_validator(files: &Files, doc: &Value, flags: Vec<String>) -> Result<Validator, (String, String)> {
    let candidates: Vec<&String> = files
        .keys()
        .filter(|p| p.starts_with("output_validators/") || p.starts_with("output_validator/"))
        .filter(|p| language_of(p).is_some())
        .collect();
    let file = match candidates.as_slice() {
        [] => {
            return Err((
                "output_validators/".into(),
                "validation is custom but there is no validator source (.py, .c, .cpp, .js, .rs, .go)".into(),
            ));
        }
        [one] => *one,
        many => {
            return Err((
                many[0].clone(),
                format!("{} validator sources; the judge takes exactly one file", many.len()),
            ));
        }
    };
    let convention = match doc.get("validator_convention").and_then(Value::as_str) {
        None | Some("kattis") => Convention::Kattis,
        Some("testlib") => Convention::Testlib,
        Some(other) => return Err(("problem.yaml".into(), format!("validator_convention: {other:?} is neither kattis nor testlib"))),
    };
    let language = language_of(file).unwrap_or_default().to_owned();
    let file_name = file.rsplit('/').next().unwrap_or(file).to_owned();
    Ok(Validator { meta: ValidatorMeta { convention, language, file_name, flags }, source: files[file].clone() })
}

/// The package of a problem, in the layout `parse` reads.
pub fn export(problem: &Problem) -> Files {
    let m = &problem.meta;
    let mut files = Files::new();
    let mut yaml = serde_yaml::Mapping::new();
    let s = |x: &str| Value::String(x.to_owned());
    yaml.insert(s("name"), s(&m.name));
    let mut types = vec![s(if m.scoring == Scoring::PassFail { "pass-fail" } else { "scoring" })];
    if m.interactive {
        types.push(s("interactive"));
    }
    yaml.insert(s("type"), Value::Sequence(types));
    let validation = match (&problem.validator, m.interactive) {
        (None, _) => "default",
        (Some(_), true) => "custom interactive",
        (Some(_), false) => "custom",
    };
    yaml.insert(s("validation"), s(validation));
    let flags: Vec<String> = match &problem.validator {
        Some(v) => v.meta.flags.clone(),
        None => checker_flags(&m.checker),
    };
    if !flags.is_empty() {
        yaml.insert(s("validator_flags"), s(&flags.join(" ")));
    }
    if let Some(v) = &problem.validator
        && v.meta.convention == Convention::Testlib
    {
        yaml.insert(s("validator_convention"), s("testlib"));
    }
    let mut limits = serde_yaml::Mapping::new();
    limits.insert(s("memory"), Value::Number(m.memory_mb.into()));
    limits.insert(s("output"), Value::Number(m.output_mb.into()));
    limits.insert(s("validation_time"), Value::Number((m.validator_time_ms as f64 / 1000.0).into()));
    limits.insert(s("validation_memory"), Value::Number(m.validator_memory_mb.into()));
    yaml.insert(s("limits"), Value::Mapping(limits));
    files.insert("problem.yaml".into(), serde_yaml::to_string(&Value::Mapping(yaml)).unwrap_or_default().into_bytes());
    files.insert(".timelimit".into(), format!("{}\n", m.time_limit_ms as f64 / 1000.0).into_bytes());
    let mut top = serde_yaml::Mapping::new();
    top.insert(s("on_reject"), s(if m.lazy { "break" } else { "continue" }));
    if m.scoring != Scoring::PassFail {
        top.insert(s("grader_flags"), s(if m.scoring == Scoring::Min { "min" } else { "sum" }));
    }
    files.insert("data/testdata.yaml".into(), serde_yaml::to_string(&Value::Mapping(top)).unwrap_or_default().into_bytes());
    for g in &m.groups {
        if g.name != "sample" {
            files.insert(format!("data/{}/testdata.yaml", g.name), format!("score: {}\n", g.score).into_bytes());
        }
    }
    for t in &problem.tests {
        files.insert(format!("data/{}.in", t.name), t.input.clone());
        files.insert(format!("data/{}.ans", t.name), t.answer.clone());
    }
    if let Some(v) = &problem.validator {
        files.insert(format!("output_validator/{}", v.meta.file_name), v.source.clone());
    }
    files
}

fn checker_flags(c: &BuiltinChecker) -> Vec<String> {
    let mut flags: Vec<String> = Vec::new();
    let case = |flags: &mut Vec<String>, sensitive: bool| {
        if sensitive {
            flags.push("case_sensitive".into());
        }
    };
    match *c {
        // Kattis has no byte-exact mode: exported as the nearest, line-based one.
        BuiltinChecker::Exact | BuiltinChecker::Whitespace => {
            flags.extend(["case_sensitive", "space_change_sensitive"].map(String::from))
        }
        BuiltinChecker::CaseInsensitive => flags.push("space_change_sensitive".into()),
        BuiltinChecker::Tokens { case_sensitive } => case(&mut flags, case_sensitive),
        BuiltinChecker::Float { absolute, relative, case_sensitive } => {
            flags.extend(["float_absolute_tolerance".into(), absolute.to_string()]);
            flags.extend(["float_relative_tolerance".into(), relative.to_string()]);
            case(&mut flags, case_sensitive);
        }
    }
    flags
}
