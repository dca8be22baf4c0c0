//! The algorithm catalog: queries, and the entries shipped in `coordinator/catalog/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Row;

use super::{Queries, Store, StoreError, Tx, put_blob, ts};

pub const DIFFICULTIES: &[&str] = &["EASY", "MEDIUM", "HARD", "EXPERT"];
pub const CATEGORIES: &[&str] = &[
    "ARRAYS",
    "STRINGS",
    "LINKED_LISTS",
    "TREES",
    "GRAPHS",
    "DYNAMIC_PROGRAMMING",
    "GREEDY",
    "BACKTRACKING",
    "SORTING",
    "SEARCHING",
    "MATH",
    "BIT_MANIPULATION",
];

/// One function-style test: the JSON arguments of the entry point and the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestCase {
    /// A JSON array: the positional arguments.
    pub input: Value,
    pub expected: Value,
    #[serde(default)]
    pub sample: bool,
}

/// A program that prints a benchmark's input for a size (see `analytics::benchmark`).
#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    /// A language id of /api/languages.
    pub language: String,
    pub source: String,
}

/// An algorithm as written by a setter (and as shipped in the seed catalog), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AlgorithmInput {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub difficulty: String,
    pub category: String,
    pub time_complexity: String,
    pub space_complexity: String,
    pub tags: Vec<String>,
    pub hints: Vec<String>,
    pub solution: String,
    pub tutorial: String,
    pub entry_point: String,
    pub test_cases: Vec<TestCase>,
    /// language -> source
    pub reference_solutions: BTreeMap<String, String>,
    pub generator: Option<Generator>,
}

/// An algorithm as stored. The API decides which parts a caller sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Algorithm {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub difficulty: String,
    pub category: String,
    pub time_complexity: String,
    pub space_complexity: String,
    pub tags: Vec<String>,
    pub hints: Vec<String>,
    pub solution: String,
    pub tutorial: String,
    pub entry_point: String,
    pub created_at: String,
    pub updated_at: String,
    /// Filled by `get_algorithm` only.
    pub test_cases: Vec<TestCase>,
    pub reference_solutions: BTreeMap<String, String>,
    pub generator: Option<Generator>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub category: Option<String>,
    pub difficulty: Option<String>,
    pub tag: Option<String>,
    /// Matched case-insensitively against slug, name and description.
    pub search: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

const COLUMNS: &str = concat!(
    "id, slug, name, description, difficulty, category, time_complexity, space_complexity, tags, hints, solution, tutorial, entry_point, ",
    ts!("created_at"),
    ", ",
    ts!("updated_at")
);

fn algorithm(row: &Row) -> Result<Algorithm, StoreError> {
    Ok(Algorithm {
        id: row.try_get(0)?,
        slug: row.try_get(1)?,
        name: row.try_get(2)?,
        description: row.try_get(3)?,
        difficulty: row.try_get(4)?,
        category: row.try_get(5)?,
        time_complexity: row.try_get(6)?,
        space_complexity: row.try_get(7)?,
        tags: row.try_get(8)?,
        hints: row.try_get(9)?,
        solution: row.try_get(10)?,
        tutorial: row.try_get(11)?,
        entry_point: row.try_get(12)?,
        created_at: row.try_get(13)?,
        updated_at: row.try_get(14)?,
        test_cases: Vec::new(),
        reference_solutions: BTreeMap::new(),
        generator: None,
    })
}

/// `%`, `_` and `\` taken literally in an ILIKE pattern.
fn like_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Store {
    /// A page of algorithms (by id) matching `filter`, and how many match in all.
    pub async fn list_algorithms(&self, filter: &Filter) -> Result<(Vec<Algorithm>, i64), StoreError> {
        let client = self.client().await?;
        let search = filter.search.as_deref().map(like_pattern);
        let condition = "($1::text IS NULL OR category = $1) AND ($2::text IS NULL OR difficulty = $2)
             AND ($3::text IS NULL OR $3 = ANY (tags))
             AND ($4::text IS NULL OR slug ILIKE $4 OR name ILIKE $4 OR description ILIKE $4)";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&filter.category, &filter.difficulty, &filter.tag, &search];
        let total: i64 =
            client.query_one(&format!("SELECT count(*) FROM algorithms WHERE {condition}"), &params).await?.try_get(0)?;
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM algorithms WHERE {condition} ORDER BY id LIMIT $5 OFFSET $6"),
                &[&filter.category, &filter.difficulty, &filter.tag, &search, &filter.limit, &filter.offset],
            )
            .await?;
        let list = rows.iter().map(algorithm).collect::<Result<Vec<_>, _>>()?;
        Ok((list, total))
    }

    /// One algorithm with its tests and reference solutions.
    pub async fn get_algorithm(&self, slug: &str) -> Result<Option<Algorithm>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client.query_opt(&format!("SELECT {COLUMNS} FROM algorithms WHERE slug = $1"), &[&slug]).await? else {
            return Ok(None);
        };
        let mut a = algorithm(&row)?;
        let tests = client
            .query(
                "SELECT i.content, e.content, t.sample FROM test_cases t
                 JOIN blobs i ON i.sha256 = t.input_sha256 JOIN blobs e ON e.sha256 = t.expected_sha256
                 WHERE t.algorithm_id = $1 ORDER BY t.ordinal",
                &[&a.id],
            )
            .await?;
        for t in &tests {
            let parse = |i: usize| -> Result<Value, StoreError> {
                let bytes: Vec<u8> = t.try_get(i)?;
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("test data of {slug}: {e}")))
            };
            a.test_cases.push(TestCase { input: parse(0)?, expected: parse(1)?, sample: t.try_get(2)? });
        }
        // Reference solutions and the benchmark generator: a language and a blob each.
        let sources = client
            .query(
                "SELECT 'solution', r.language, b.content FROM reference_solutions r JOIN blobs b ON b.sha256 = r.source_sha256
                 WHERE r.algorithm_id = $1
                 UNION ALL
                 SELECT 'generator', g.language, b.content FROM algorithm_generators g JOIN blobs b ON b.sha256 = g.source_sha256
                 WHERE g.algorithm_id = $1",
                &[&a.id],
            )
            .await?;
        for row in &sources {
            let (kind, language): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let bytes: Vec<u8> = row.try_get(2)?;
            let source = String::from_utf8_lossy(&bytes).into_owned();
            if kind == "generator" {
                a.generator = Some(Generator { language, source });
            } else {
                a.reference_solutions.insert(language, source);
            }
        }
        Ok(Some(a))
    }

    /// Creates an algorithm; `Conflict` if the slug is taken.
    pub async fn create_algorithm(&self, input: &AlgorithmInput, by: Option<i64>) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if insert_algorithm(&tx, input, by).await?.is_none() {
            return Err(StoreError::Conflict(format!("algorithm {:?}", input.slug)));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces everything of the algorithm `slug` (its slug stays). False if unknown.
    pub async fn update_algorithm(&self, slug: &str, input: &AlgorithmInput) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "UPDATE algorithms SET name = $2, description = $3, difficulty = $4, category = $5,
                     time_complexity = $6, space_complexity = $7, tags = $8, hints = $9, solution = $10,
                     tutorial = $11, entry_point = $12, updated_at = now()
                 WHERE slug = $1 RETURNING id",
                &[
                    &slug,
                    &input.name,
                    &input.description,
                    &input.difficulty,
                    &input.category,
                    &input.time_complexity,
                    &input.space_complexity,
                    &input.tags,
                    &input.hints,
                    &input.solution,
                    &input.tutorial,
                    &input.entry_point,
                ],
            )
            .await?;
        let Some(row) = row else { return Ok(false) };
        let id: i64 = row.try_get(0)?;
        tx.execute("DELETE FROM test_cases WHERE algorithm_id = $1", &[&id]).await?;
        tx.execute("DELETE FROM reference_solutions WHERE algorithm_id = $1", &[&id]).await?;
        tx.execute("DELETE FROM algorithm_generators WHERE algorithm_id = $1", &[&id]).await?;
        write_children(&tx, id, input).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// False if there was no such algorithm. History keeps its rows (algorithm set null).
    pub async fn delete_algorithm(&self, slug: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client.execute("DELETE FROM algorithms WHERE slug = $1", &[&slug]).await? > 0)
    }

    /// Inserts the shipped catalog entries this database has never seen; returns how many.
    /// An entry once seeded is not brought back after an admin deleted it.
    pub async fn seed_catalog(&self, entries: &[AlgorithmInput]) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // One seeder at a time when several coordinators start together.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&0x6a75_6467_655f_7365_i64]).await?;
        let mut added = 0;
        for input in entries {
            let fresh = tx
                .execute("INSERT INTO catalog_seeded (slug) VALUES ($1) ON CONFLICT (slug) DO NOTHING", &[&input.slug])
                .await?
                > 0;
            if !fresh {
                continue;
            }
            // A setter's algorithm of the same slug wins over the shipped one.
            if insert_algorithm(&tx, input, None).await?.is_some() {
                added += 1;
            }
        }
        tx.commit().await?;
        Ok(added)
    }
}

/// Inserts a new algorithm with its children; None (and nothing written) if the slug is
/// taken. Shared by setters' creations and the shipped catalog's seeding (`by` None).
async fn insert_algorithm(
    tx: &Tx<'_>,
    input: &AlgorithmInput,
    by: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    let row = tx
        .query_opt(
            "INSERT INTO algorithms (slug, name, description, difficulty, category, time_complexity,
                 space_complexity, tags, hints, solution, tutorial, entry_point, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (slug) DO NOTHING RETURNING id",
            &[
                &input.slug,
                &input.name,
                &input.description,
                &input.difficulty,
                &input.category,
                &input.time_complexity,
                &input.space_complexity,
                &input.tags,
                &input.hints,
                &input.solution,
                &input.tutorial,
                &input.entry_point,
                &by,
            ],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let id: i64 = row.try_get(0)?;
    write_children(tx, id, input).await?;
    Ok(Some(id))
}

async fn write_children(tx: &Tx<'_>, id: i64, input: &AlgorithmInput) -> Result<(), StoreError> {
    for (ordinal, t) in input.test_cases.iter().enumerate() {
        let input_hash = put_blob(tx, &json_bytes(&t.input)).await?;
        let expected_hash = put_blob(tx, &json_bytes(&t.expected)).await?;
        let ordinal = i32::try_from(ordinal).map_err(|_| StoreError::Corrupt("too many tests".into()))?;
        tx.execute(
            "INSERT INTO test_cases (algorithm_id, ordinal, input_sha256, expected_sha256, sample)
             VALUES ($1, $2, $3, $4, $5)",
            &[&id, &ordinal, &&input_hash[..], &&expected_hash[..], &t.sample],
        )
        .await?;
    }
    for (language, source) in &input.reference_solutions {
        let hash = put_blob(tx, source.as_bytes()).await?;
        tx.execute(
            "INSERT INTO reference_solutions (algorithm_id, language, source_sha256) VALUES ($1, $2, $3)",
            &[&id, language, &&hash[..]],
        )
        .await?;
    }
    if let Some(g) = &input.generator {
        let hash = put_blob(tx, g.source.as_bytes()).await?;
        tx.execute(
            "INSERT INTO algorithm_generators (algorithm_id, language, source_sha256) VALUES ($1, $2, $3)",
            &[&id, &g.language, &&hash[..]],
        )
        .await?;
    }
    Ok(())
}

/// The bytes a JSON value is stored (and hashed) as: compact, keys sorted (serde_json's
/// map is ordered), so equal data gets one blob.
pub fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The catalog shipped with the coordinator: `coordinator/catalog/<slug>/`.
pub mod shipped {
    use super::*;

    /// One directory of the shipped catalog, as text.
    pub struct Entry {
        pub slug: &'static str,
        pub meta: &'static str,
        pub python: &'static str,
        pub javascript: &'static str,
        pub tests: &'static str,
        /// The benchmark's input generator (`generator.<ext>`, the extension naming its
        /// language) for algorithms whose input no built-in generator makes.
        pub generator: Option<(&'static str, &'static str)>,
    }

    /// The language of a generator file, by its extension.
    pub fn generator_language(file: &str) -> Option<&'static str> {
        Some(match file.rsplit_once('.')?.1 {
            "py" => "python",
            "js" => "javascript",
            "c" => "c",
            "cpp" => "cpp",
            _ => return None,
        })
    }

    macro_rules! entry {
        ($slug:literal) => {
            Entry {
                slug: $slug,
                meta: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/", $slug, "/meta.toml")),
                python: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/", $slug, "/solution.py")),
                javascript: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/", $slug, "/solution.js")),
                tests: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/", $slug, "/tests.json")),
                generator: None,
            }
        };
        ($slug:literal, generator: $file:literal) => {
            Entry {
                generator: Some(($file, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/", $slug, "/", $file)))),
                ..entry!($slug)
            }
        };
    }

    /// Every entry; a test checks this list against the directory.
    pub const ENTRIES: &[Entry] = &[
        entry!("two_sum"),
        entry!("binary_search"),
        entry!("bubble_sort"),
        entry!("merge_sort"),
        entry!("quick_sort"),
        entry!("bfs_shortest_path"),
        entry!("dfs_order"),
        entry!("dijkstra", generator: "generator.py"),
        entry!("union_find"),
        entry!("longest_increasing_subsequence"),
        entry!("knapsack"),
        entry!("edit_distance"),
        entry!("max_subarray"),
        entry!("valid_parentheses"),
        entry!("fibonacci"),
        entry!("gcd"),
        entry!("sieve_of_eratosthenes"),
        entry!("count_bits"),
        entry!("reverse_linked_list"),
        entry!("tree_height"),
        entry!("n_queens"),
        entry!("coin_change"),
        entry!("activity_selection"),
        entry!("longest_common_prefix"),
    ];

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Meta {
        name: String,
        difficulty: String,
        category: String,
        time_complexity: String,
        space_complexity: String,
        entry_point: String,
        #[serde(default)]
        tags: Vec<String>,
        description: String,
        #[serde(default)]
        hints: Vec<String>,
        #[serde(default)]
        solution: String,
        #[serde(default)]
        tutorial: String,
    }

    /// Parses one entry; an error names the file.
    pub fn parse(e: &Entry) -> Result<AlgorithmInput, String> {
        let meta: Meta = toml::from_str(e.meta).map_err(|err| format!("catalog/{}/meta.toml: {err}", e.slug))?;
        let test_cases: Vec<TestCase> =
            serde_json::from_str(e.tests).map_err(|err| format!("catalog/{}/tests.json: {err}", e.slug))?;
        let mut reference_solutions = BTreeMap::new();
        reference_solutions.insert("python".to_owned(), e.python.to_owned());
        reference_solutions.insert("javascript".to_owned(), e.javascript.to_owned());
        let generator = match e.generator {
            None => None,
            Some((file, source)) => Some(Generator {
                language: generator_language(file)
                    .ok_or_else(|| format!("catalog/{}/{file}: the extension names no language", e.slug))?
                    .to_owned(),
                source: source.to_owned(),
            }),
        };
        Ok(AlgorithmInput {
            slug: e.slug.to_owned(),
            name: meta.name,
            description: meta.description,
            difficulty: meta.difficulty,
            category: meta.category,
            time_complexity: meta.time_complexity,
            space_complexity: meta.space_complexity,
            tags: meta.tags,
            hints: meta.hints,
            solution: meta.solution,
            tutorial: meta.tutorial,
            entry_point: meta.entry_point,
            test_cases,
            reference_solutions,
            generator,
        })
    }

    /// All shipped entries, parsed.
    pub fn all() -> Result<Vec<AlgorithmInput>, String> {
        ENTRIES.iter().map(parse).collect()
    }
}
