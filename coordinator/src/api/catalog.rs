//! `/api/algorithms`: the catalog. Anyone may read; admins and setters write.
//!
//! What a reader sees depends on the role: hints one by one (`?hints=N` gives the first
//! N), sample tests to everyone and all tests to setters and admins, the solution (the
//! approach in words and the reference code) to admins and to users who solved it (passed
//! its whole test suite through `/api/testing/run`).

use std::collections::BTreeMap;

use rootfs::Spec;
use salvo::Request;
use salvo::http::{ParseError, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{self, Caller};
use super::error::ApiError;
use super::submit::decode_json;
use crate::store::auth::Role;
use crate::store::catalog::{Algorithm, AlgorithmInput, CATEGORIES, DIFFICULTIES, Filter, Generator, TestCase, json_bytes};
use crate::store::{Store, StoreError};

/// Caps on catalog writes.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogLimits {
    pub max_body_bytes: usize,
    pub max_text_bytes: usize,
    pub max_hints: usize,
    pub max_tags: usize,
    pub max_tests: usize,
    /// One test's arguments or expected value, as compact JSON.
    pub max_test_bytes: usize,
    pub max_per_page: i64,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        CatalogLimits {
            max_body_bytes: 16 << 20,
            max_text_bytes: 64 * 1024,
            max_hints: 20,
            max_tags: 20,
            max_tests: 200,
            max_test_bytes: 1 << 20,
            max_per_page: 100,
        }
    }
}

const DEFAULT_PER_PAGE: i64 = 20;

pub(super) async fn list(store: &Store, req: &Request, limits: &CatalogLimits) -> Result<(StatusCode, Value), ApiError> {
    let category = one_of(req, "category", CATEGORIES)?;
    let difficulty = one_of(req, "difficulty", DIFFICULTIES)?;
    let tag = text_param(req, "tag", 64)?;
    let search = text_param(req, "search", 200)?;
    let page = int_param(req, "page", 1, 1, 1_000_000)?;
    let per_page = int_param(req, "perPage", DEFAULT_PER_PAGE, 1, limits.max_per_page)?;
    let filter = Filter { category, difficulty, tag, search, offset: (page - 1) * per_page, limit: per_page };
    let (algorithms, total) = store.list_algorithms(&filter).await.map_err(store_error)?;
    Ok((
        StatusCode::OK,
        json!({
            "algorithms": algorithms.iter().map(summary).collect::<Vec<_>>(),
            "total": total,
            "page": page,
            "perPage": per_page,
        }),
    ))
}

pub(super) async fn get(store: &Store, req: &Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let slug = slug_param(req);
    let hints = int_param(req, "hints", 0, 0, 1000)?;
    let algorithm = store.get_algorithm(&slug).await.map_err(store_error)?.ok_or(ApiError::AlgorithmNotFound(slug))?;
    // The solution: admins always; others once they have passed the whole test suite.
    let solution = match caller {
        Caller::User(p) if p.role == Role::Admin => true,
        Caller::User(p) => store.has_solved(p.user_id, algorithm.id).await.map_err(store_error)?,
        Caller::Anonymous => false,
    };
    Ok((StatusCode::OK, detail(&algorithm, caller.role(), hints as usize, solution)))
}

pub(super) async fn create(
    store: &Store,
    spec: &Spec,
    req: &mut Request,
    caller: &Caller,
    limits: &CatalogLimits,
) -> Result<(StatusCode, Value), ApiError> {
    let principal = auth::require(caller, Role::Setter)?;
    let body: AlgorithmBody = decode_json(read_body(req, limits).await?)?;
    let slug = body.slug.clone().ok_or_else(|| ApiError::MissingField("missing field `slug`".into()))?;
    let input = validate(body, slug, spec, limits)?;
    store.create_algorithm(&input, Some(principal.user_id)).await.map_err(store_error)?;
    tracing::info!(slug = %input.slug, user = principal.user_id, "algorithm created");
    let created = store.get_algorithm(&input.slug).await.map_err(store_error)?.ok_or_else(|| {
        ApiError::Internal(format!("algorithm {} vanished right after its creation", input.slug))
    })?;
    Ok((StatusCode::CREATED, detail(&created, Some(principal.role), usize::MAX, principal.role == Role::Admin)))
}

pub(super) async fn update(
    store: &Store,
    spec: &Spec,
    req: &mut Request,
    caller: &Caller,
    limits: &CatalogLimits,
) -> Result<(StatusCode, Value), ApiError> {
    let principal = auth::require(caller, Role::Setter)?;
    let slug = slug_param(req);
    let body: AlgorithmBody = decode_json(read_body(req, limits).await?)?;
    if let Some(given) = &body.slug
        && *given != slug
    {
        return Err(ApiError::InvalidField(format!("slug: {given:?} differs from the path's {slug:?}; slugs cannot be renamed")));
    }
    let input = validate(body, slug.clone(), spec, limits)?;
    if !store.update_algorithm(&slug, &input).await.map_err(store_error)? {
        return Err(ApiError::AlgorithmNotFound(slug));
    }
    tracing::info!(slug = %slug, user = principal.user_id, "algorithm updated");
    let updated = store.get_algorithm(&slug).await.map_err(store_error)?.ok_or(ApiError::AlgorithmNotFound(slug))?;
    Ok((StatusCode::OK, detail(&updated, Some(principal.role), usize::MAX, principal.role == Role::Admin)))
}

pub(super) async fn delete(store: &Store, req: &Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let principal = auth::require(caller, Role::Setter)?;
    let slug = slug_param(req);
    if !store.delete_algorithm(&slug).await.map_err(store_error)? {
        return Err(ApiError::AlgorithmNotFound(slug));
    }
    tracing::info!(slug = %slug, user = principal.user_id, "algorithm deleted");
    Ok((StatusCode::OK, json!({ "deleted": slug })))
}

/// The body of POST and PUT. Everything but `slug` (taken from the path on PUT) is
/// required, so a PUT is a full replacement and never silently clears a field.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AlgorithmBody {
    #[serde(default)]
    slug: Option<String>,
    name: String,
    description: String,
    difficulty: String,
    category: String,
    time_complexity: String,
    space_complexity: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    hints: Vec<String>,
    #[serde(default)]
    solution: String,
    #[serde(default)]
    tutorial: String,
    entry_point: String,
    test_cases: Vec<TestCase>,
    /// language id (as in /api/languages) -> source code
    #[serde(default)]
    reference_solutions: BTreeMap<String, String>,
    /// The benchmark's input generator (see docs/websocket.md, "Input generators").
    #[serde(default)]
    generator: Option<GeneratorBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GeneratorBody {
    language: String,
    source: String,
}

fn validate(body: AlgorithmBody, slug: String, spec: &Spec, limits: &CatalogLimits) -> Result<AlgorithmInput, ApiError> {
    let invalid = |m: String| Err(ApiError::InvalidField(m));
    let slug_ok = slug.len() <= 64
        && slug.bytes().enumerate().all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'_' || b == b'-')))
        && !slug.is_empty();
    if !slug_ok {
        return invalid(format!("slug: {slug:?} must be 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit"));
    }
    text("name", &body.name, 1, 200)?;
    text("description", &body.description, 1, limits.max_text_bytes)?;
    if !DIFFICULTIES.contains(&body.difficulty.as_str()) {
        return invalid(format!("difficulty: {:?} is not one of {}", body.difficulty, DIFFICULTIES.join(", ")));
    }
    if !CATEGORIES.contains(&body.category.as_str()) {
        return invalid(format!("category: {:?} is not one of {}", body.category, CATEGORIES.join(", ")));
    }
    text("timeComplexity", &body.time_complexity, 1, 100)?;
    text("spaceComplexity", &body.space_complexity, 1, 100)?;
    count("tags", body.tags.len(), limits.max_tags)?;
    for (i, t) in body.tags.iter().enumerate() {
        text(&format!("tags[{i}]"), t, 1, 64)?;
    }
    count("hints", body.hints.len(), limits.max_hints)?;
    for (i, h) in body.hints.iter().enumerate() {
        text(&format!("hints[{i}]"), h, 1, 4096)?;
    }
    text("solution", &body.solution, 0, limits.max_text_bytes)?;
    text("tutorial", &body.tutorial, 0, limits.max_text_bytes)?;
    let ident = body.entry_point.len() <= 64
        && body.entry_point.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && body.entry_point.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ident {
        return invalid(format!("entryPoint: {:?} must be an identifier (letters, digits, '_')", body.entry_point));
    }
    if body.test_cases.is_empty() {
        return invalid("testCases: at least one test is needed".into());
    }
    count("testCases", body.test_cases.len(), limits.max_tests)?;
    for (i, t) in body.test_cases.iter().enumerate() {
        if !t.input.is_array() {
            return invalid(format!("testCases[{i}].input: must be an array of the entry point's arguments"));
        }
        for (field, v) in [("input", &t.input), ("expected", &t.expected)] {
            let size = json_bytes(v).len();
            if size > limits.max_test_bytes {
                return Err(ApiError::TooLarge { field: format!("testCases[{i}].{field}"), size, limit: limits.max_test_bytes });
            }
        }
    }
    for (language, source) in &body.reference_solutions {
        if spec.language(language).is_none() {
            let known = spec.languages.iter().map(|l| l.id.as_str()).collect::<Vec<_>>().join(", ");
            return Err(ApiError::UnknownLanguage { language: language.clone(), known });
        }
        text(&format!("referenceSolutions.{language}"), source, 1, limits.max_text_bytes)?;
    }
    if let Some(g) = &body.generator {
        if spec.language(&g.language).is_none() {
            let known = spec.languages.iter().map(|l| l.id.as_str()).collect::<Vec<_>>().join(", ");
            return Err(ApiError::UnknownLanguage { language: g.language.clone(), known });
        }
        text("generator.source", &g.source, 1, limits.max_text_bytes)?;
    }
    Ok(AlgorithmInput {
        slug,
        name: body.name,
        description: body.description,
        difficulty: body.difficulty,
        category: body.category,
        time_complexity: body.time_complexity,
        space_complexity: body.space_complexity,
        tags: body.tags,
        hints: body.hints,
        solution: body.solution,
        tutorial: body.tutorial,
        entry_point: body.entry_point,
        test_cases: body.test_cases,
        reference_solutions: body.reference_solutions,
        generator: body.generator.map(|g| Generator { language: g.language, source: g.source }),
    })
}

fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    if value.trim().len() < min {
        return Err(ApiError::InvalidField(format!("{field}: must not be empty")));
    }
    if value.len() > max {
        return Err(ApiError::TooLarge { field: field.to_owned(), size: value.len(), limit: max });
    }
    if value.contains('\0') {
        return Err(ApiError::InvalidField(format!("{field}: must not contain NUL characters")));
    }
    Ok(())
}

fn count(field: &str, n: usize, max: usize) -> Result<(), ApiError> {
    if n > max {
        return Err(ApiError::InvalidField(format!("{field}: {n} given, at most {max} allowed")));
    }
    Ok(())
}

async fn read_body<'a>(req: &'a mut Request, limits: &CatalogLimits) -> Result<&'a [u8], ApiError> {
    let limit = limits.max_body_bytes;
    req.payload_with_max_size(limit).await.map(|b| &b[..]).map_err(|e| match e {
        ParseError::PayloadTooLarge => ApiError::BodyTooLarge { limit },
        other => ApiError::BadBody(other.to_string()),
    })
}

fn slug_param(req: &Request) -> String {
    req.param::<String>("slug").unwrap_or_default()
}

fn raw_query(req: &Request, name: &str) -> Option<String> {
    req.queries().get(name).map(|v| v.to_owned())
}

fn one_of(req: &Request, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match raw_query(req, name) {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
        Some(v) => Err(ApiError::InvalidField(format!("{name}: {v:?} is not one of {}", allowed.join(", ")))),
    }
}

fn text_param(req: &Request, name: &str, max: usize) -> Result<Option<String>, ApiError> {
    match raw_query(req, name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() > max || v.contains('\0') => {
            Err(ApiError::InvalidField(format!("{name}: at most {max} bytes, no NUL characters")))
        }
        Some(v) => Ok(Some(v)),
    }
}

fn int_param(req: &Request, name: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    let Some(raw) = raw_query(req, name) else { return Ok(default) };
    let v: i64 = raw.parse().map_err(|_| ApiError::InvalidField(format!("{name}: {raw:?} is not an integer")))?;
    if !(min..=max).contains(&v) {
        return Err(ApiError::InvalidField(format!("{name}: {v} must be within {min}..={max}")));
    }
    Ok(v)
}

pub(super) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(what) => ApiError::Conflict(what),
        StoreError::Pool(_) => ApiError::DatabaseUnavailable(e.to_string()),
        // A row this write points at (an algorithm, a user, a code version) was deleted
        // by another request in the meantime: the caller's view is stale, not ours broken.
        _ if e.is_foreign_key_violation() => {
            ApiError::Conflict("something this request refers to was deleted meanwhile; reload and retry".into())
        }
        other => ApiError::Internal(other.to_string()),
    }
}

fn summary(a: &Algorithm) -> Value {
    json!({
        "id": a.id,
        "slug": a.slug,
        "name": a.name,
        "description": a.description,
        "difficulty": a.difficulty,
        "category": a.category,
        "timeComplexity": a.time_complexity,
        "spaceComplexity": a.space_complexity,
        "tags": a.tags,
        "hintCount": a.hints.len(),
        "createdAt": a.created_at,
        "updatedAt": a.updated_at,
    })
}

fn detail(a: &Algorithm, role: Option<Role>, hints: usize, solution: bool) -> Value {
    let mut v = summary(a);
    let all_tests = role >= Some(Role::Setter);
    let tests: Vec<&TestCase> = a.test_cases.iter().filter(|t| all_tests || t.sample).collect();
    if let Some(o) = v.as_object_mut() {
        o.insert("tutorial".into(), json!(a.tutorial));
        o.insert("entryPoint".into(), json!(a.entry_point));
        o.insert("hints".into(), json!(a.hints.iter().take(hints).collect::<Vec<_>>()));
        o.insert("testCases".into(), json!(tests));
        o.insert("testCount".into(), json!(a.test_cases.len()));
        if all_tests && let Some(g) = &a.generator {
            o.insert("generator".into(), json!({ "language": g.language, "source": g.source }));
        }
        if solution {
            o.insert("solution".into(), json!({ "explanation": a.solution, "referenceSolutions": a.reference_solutions }));
        }
    }
    v
}
