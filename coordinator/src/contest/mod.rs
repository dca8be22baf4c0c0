//! Contest problems: test suites with groups and scores, how a submission to a problem is
//! scored, and Kattis/ICPC problem packages (`package`).
//!
//! A submission to a problem carries a `ProblemRef` (plain data, part of the judge's
//! command log): the scoring mode and each test's group. The score is a pure function of
//! that and the per-test results (`score`), computed when read, so it never disagrees
//! with the verdicts it comes from.

pub mod package;
pub mod zip;
#[cfg(test)]
mod tests;

use protocol::{Checker, CheckerConvention, Verdict};
use serde::{Deserialize, Serialize};

use crate::judge::TestRecord;

/// How a problem's score comes from its tests.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scoring {
    /// All tests must pass; the score is 1 or 0.
    PassFail,
    /// Each group's score in proportion to the tests of it that pass.
    Sum,
    /// Each group's score only when every test of it passes (IOI subtasks).
    Min,
}

impl Scoring {
    pub fn as_str(self) -> &'static str {
        match self {
            Scoring::PassFail => "pass-fail",
            Scoring::Sum => "sum",
            Scoring::Min => "min",
        }
    }
}

/// What the judge state keeps about the problem of a submission, enough to score it.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ProblemRef {
    pub slug: String,
    pub scoring: Scoring,
    pub groups: Vec<GroupRef>,
    /// By test index.
    pub tests: Vec<TestRef>,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct GroupRef {
    pub name: String,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TestRef {
    pub name: String,
    /// Index into `ProblemRef::groups`.
    pub group: u32,
    pub sample: bool,
}

/// A problem as stored: metadata plus its tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub slug: String,
    pub meta: ProblemMeta,
    pub tests: Vec<ProblemTest>,
    /// The output validator or interactor, when the problem has one.
    pub validator: Option<Validator>,
}

/// Everything about a problem but its test data and validator source (stored as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemMeta {
    pub name: String,
    pub time_limit_ms: u64,
    pub memory_mb: u64,
    pub output_mb: u64,
    pub scoring: Scoring,
    /// Stop at the first failure (within each group, for scored problems).
    pub lazy: bool,
    pub checker: BuiltinChecker,
    pub interactive: bool,
    pub groups: Vec<GroupMeta>,
    /// Limits of each run of the validator.
    pub validator_time_ms: u64,
    pub validator_memory_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMeta {
    /// `sample`, `secret`, or the path of a group under `data/secret/`.
    pub name: String,
    pub score: f64,
}

/// The built-in checker, as the package's `validator_flags` chose it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BuiltinChecker {
    Whitespace,
    Exact,
    CaseInsensitive,
    Tokens { case_sensitive: bool },
    Float { absolute: f64, relative: f64, case_sensitive: bool },
}

impl BuiltinChecker {
    pub fn to_protocol(&self) -> Checker {
        match *self {
            BuiltinChecker::Whitespace => Checker::Whitespace,
            BuiltinChecker::Exact => Checker::Exact,
            BuiltinChecker::CaseInsensitive => Checker::CaseInsensitive,
            BuiltinChecker::Tokens { case_sensitive } => Checker::Tokens { case_sensitive },
            BuiltinChecker::Float { absolute, relative, case_sensitive } => {
                Checker::Float { absolute, relative, case_sensitive }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProblemTest {
    pub name: String,
    pub group: u32,
    pub sample: bool,
    pub input: Vec<u8>,
    pub answer: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidatorMeta {
    pub convention: Convention,
    pub language: String,
    /// The file's name in the package, for export.
    pub file_name: String,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Convention {
    Kattis,
    Testlib,
}

impl Convention {
    pub fn to_protocol(self) -> CheckerConvention {
        match self {
            Convention::Kattis => CheckerConvention::Kattis,
            Convention::Testlib => CheckerConvention::Testlib,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Validator {
    pub meta: ValidatorMeta,
    pub source: Vec<u8>,
}

impl Problem {
    pub fn reference(&self) -> ProblemRef {
        ProblemRef {
            slug: self.slug.clone(),
            scoring: self.meta.scoring,
            groups: self.meta.groups.iter().map(|g| GroupRef { name: g.name.clone(), score: g.score }).collect(),
            tests: self
                .tests
                .iter()
                .map(|t| TestRef { name: t.name.clone(), group: t.group, sample: t.sample })
                .collect(),
        }
    }
}

/// A group's outcome in a scored submission.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupScore {
    pub name: String,
    pub score: f64,
    pub max_score: f64,
    /// AC when every test of the group passed; else the first failing test's verdict
    /// (`None` while tests of it are still missing).
    pub verdict: Option<&'static str>,
    pub tests: usize,
    pub passed: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreReport {
    pub score: f64,
    pub max_score: f64,
    pub groups: Vec<GroupScore>,
}

/// The score of a submission from its test results. A test counts with the value its
/// checker gave (`score`, clamped to 0..=1) or else 1 when AC and 0 otherwise; a test
/// without a result (skipped by lazy judging, or not yet judged) counts 0. `finished`
/// says whether missing results are final.
pub fn score(problem: &ProblemRef, results: &[TestRecord], finished: bool) -> ScoreReport {
    let value = |index: usize| -> Option<(f64, Verdict)> {
        let r = results.iter().find(|r| r.result.index as usize == index)?;
        let v = match r.result.score {
            // A score is the agent's report of a checker's file: never trusted to be a number.
            Some(s) if r.result.verdict == Verdict::AC && s.is_finite() => s.clamp(0.0, 1.0),
            _ if r.result.verdict == Verdict::AC => 1.0,
            _ => 0.0,
        };
        Some((v, r.result.verdict))
    };
    let mut groups = Vec::new();
    for (g, group) in problem.groups.iter().enumerate() {
        let members: Vec<usize> =
            problem.tests.iter().enumerate().filter(|(_, t)| t.group as usize == g).map(|(i, _)| i).collect();
        let values: Vec<Option<(f64, Verdict)>> = members.iter().map(|&i| value(i)).collect();
        let passed = values.iter().filter(|v| matches!(v, Some((_, Verdict::AC)))).count();
        let first_failure = values.iter().flatten().find(|(_, v)| *v != Verdict::AC).map(|(_, v)| v.as_str());
        let complete = finished || values.iter().all(Option::is_some);
        let verdict = match first_failure {
            Some(v) => Some(v),
            None if complete && values.iter().all(Option::is_some) => Some(Verdict::AC.as_str()),
            None => None,
        };
        let fraction = |v: &Option<(f64, Verdict)>| v.map_or(0.0, |(x, _)| x);
        let earned = match problem.scoring {
            _ if members.is_empty() => 0.0,
            Scoring::PassFail | Scoring::Min => values.iter().map(fraction).fold(1.0, f64::min),
            Scoring::Sum => values.iter().map(fraction).sum::<f64>() / members.len() as f64,
        };
        groups.push(GroupScore {
            name: group.name.clone(),
            score: round(earned * group.score),
            max_score: group.score,
            verdict,
            tests: members.len(),
            passed,
        });
    }
    if problem.scoring == Scoring::PassFail {
        let all = problem.tests.len();
        let passed = (0..all).filter(|&i| matches!(value(i), Some((_, Verdict::AC)))).count();
        let score = if all > 0 && passed == all { 1.0 } else { 0.0 };
        return ScoreReport { score, max_score: 1.0, groups };
    }
    let score = round(groups.iter().map(|g| g.score).sum());
    let max_score = round(groups.iter().map(|g| g.max_score).sum());
    ScoreReport { score, max_score, groups }
}

/// Scores are shown to people: keep them free of float noise like 33.333333333333336.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
