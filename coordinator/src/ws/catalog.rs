//! Algorithm metadata and test cases, as the WebSocket API needs them: the catalog shipped
//! in coordinator/catalog/ plus a tiny built-in set (algorithms.json). With a database,
//! the store's catalog comes first (see `Live::algorithm_meta`).

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestCase {
    pub input: Value,
    pub expected: Value,
    /// A sample's data is shown to everybody; another test's only to setters and admins,
    /// as the catalog API and `/api/testing/run` do.
    #[serde(default = "shown")]
    pub sample: bool,
}

fn shown() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Algorithm {
    pub name: String,
    /// The function to call; else the seed's rule (snake_case, camelCase, the only one).
    #[serde(default)]
    pub entry_point: Option<String>,
    /// Results are compared as multisets (e.g. two_sum's pair of indices).
    #[serde(default)]
    pub order_insensitive: bool,
    #[serde(default)]
    pub tests: Vec<TestCase>,
    /// The catalog's category (SORTING, SEARCHING, ...): picks a benchmark's input shape.
    #[serde(default)]
    pub category: Option<String>,
    /// The benchmark's input generator, where the shipped catalog has one.
    #[serde(skip)]
    pub generator: Option<crate::analytics::benchmark::GeneratorSource>,
}

pub trait Catalog: Send + Sync + 'static {
    fn algorithm(&self, name: &str) -> Option<Algorithm>;
}

/// The built-in algorithms of `algorithms.json`.
pub struct BuiltinCatalog {
    algorithms: Vec<Algorithm>,
}

impl BuiltinCatalog {
    pub fn new() -> Result<BuiltinCatalog, serde_json::Error> {
        Ok(BuiltinCatalog { algorithms: serde_json::from_str(include_str!("algorithms.json"))? })
    }
}

impl Catalog for BuiltinCatalog {
    fn algorithm(&self, name: &str) -> Option<Algorithm> {
        self.algorithms.iter().find(|a| a.name == name).cloned()
    }
}

impl BuiltinCatalog {
    /// The catalog shipped with the store (coordinator/catalog/, by slug: the same
    /// algorithms and tests the catalog API lists) plus the built-in set, whose entries
    /// only add what the store's schema lacks (`orderInsensitive`) or algorithms it does
    /// not have. With a database, `/ws` asks the store first (see `Live::algorithm_meta`).
    pub fn with_shipped() -> Result<BuiltinCatalog, String> {
        let builtin = BuiltinCatalog::new().map_err(|e| format!("ws/algorithms.json: {e}"))?;
        let mut algorithms: Vec<Algorithm> = crate::store::catalog::shipped::all()?
            .into_iter()
            .map(|entry| {
                let order_insensitive = builtin.algorithm(&entry.slug).is_some_and(|b| b.order_insensitive);
                Algorithm::of_catalog(entry.slug, entry.entry_point, entry.category, entry.test_cases, entry.generator, order_insensitive)
            })
            .collect();
        for b in builtin.algorithms {
            if !algorithms.iter().any(|a| a.name == b.name) {
                algorithms.push(b);
            }
        }
        Ok(BuiltinCatalog { algorithms })
    }
}

impl Algorithm {
    /// An algorithm of the catalog API's (shipped or a setter's), as `/ws` needs it.
    pub fn of_catalog(
        slug: String,
        entry_point: String,
        category: String,
        tests: Vec<crate::store::catalog::TestCase>,
        generator: Option<crate::store::catalog::Generator>,
        order_insensitive: bool,
    ) -> Algorithm {
        Algorithm {
            // An entry point that is the algorithm's own name adds nothing to the seed's
            // rule, which also accepts its camelCase (`twoSum` in JavaScript).
            entry_point: (entry_point != slug).then_some(entry_point),
            order_insensitive,
            tests: tests.into_iter().map(|t| TestCase { input: t.input, expected: t.expected, sample: t.sample }).collect(),
            category: Some(category),
            generator: generator.map(|g| crate::analytics::benchmark::GeneratorSource { language: g.language, source: g.source }),
            name: slug,
        }
    }
}

/// The seed's `generateTestData`: arguments of a given input size for an algorithm.
/// Deterministic (a fixed LCG), so a benchmark is repeatable.
pub fn generate_test_data(algorithm: &str, size: usize) -> Value {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d ^ size as u64;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % 1000
    };
    match algorithm {
        "two_sum" | "twoSum" => {
            let nums: Vec<u64> = (0..size).map(|_| next()).collect();
            let target = nums.first().copied().unwrap_or(0) + nums.get(1).copied().unwrap_or(0);
            serde_json::json!({ "nums": nums, "target": target })
        }
        "binary_search" | "binarySearch" => {
            let nums: Vec<usize> = (0..size).map(|i| i * 2).collect();
            let target = nums.get(next() as usize % size.max(1)).copied().unwrap_or(0);
            serde_json::json!({ "nums": nums, "target": target })
        }
        _ => serde_json::json!({ "nums": (0..size).map(|_| next()).collect::<Vec<_>>() }),
    }
}

#[cfg(test)]
mod shipped_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_shipped_algorithm_has_tests_for_run_tests() {
        let catalog = BuiltinCatalog::with_shipped().unwrap();
        let shipped = crate::store::catalog::shipped::all().unwrap();
        assert!(shipped.len() >= 20);
        for entry in shipped {
            let a = catalog.algorithm(&entry.slug).unwrap_or_else(|| panic!("{} missing", entry.slug));
            assert!(!a.tests.is_empty(), "{} has no tests", entry.slug);
        }
        // two_sum keeps the built-in set's order-insensitive comparison.
        assert!(catalog.algorithm("two_sum").unwrap().order_insensitive);
        let shipped_bubble = crate::store::catalog::shipped::all().unwrap().into_iter().find(|e| e.slug == "bubble_sort").unwrap();
        assert_eq!(catalog.algorithm("bubble_sort").unwrap().tests.len(), shipped_bubble.test_cases.len());
        assert_eq!(catalog.algorithm("dijkstra").unwrap().entry_point, None);
        let generator = catalog.algorithm("dijkstra").unwrap().generator.unwrap();
        assert_eq!(generator.language, "python");
        assert!(catalog.algorithm("bubble_sort").unwrap().generator.is_none());
    }
}
