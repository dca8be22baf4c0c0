//! Benchmark runs (PERFORMANCE_BENCHMARK): one `benchmark_runs` row with every size's
//! measurements and the fits, plus one row per size in `benchmarks` (the seed's table).

use serde_json::{Value, json};
use tokio_postgres::Row;

use super::{Store, StoreError, ts};

/// A finished benchmark as the WebSocket reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBenchmark {
    pub algorithm_name: String,
    pub language: String,
    pub input_kind: String,
    pub seed: u64,
    pub source: Vec<u8>,
    /// BENCHMARK_COMPLETED's `results`: one object per size.
    pub results: Value,
    pub complexity: Value,
    pub memory: Value,
    pub seed_method: Value,
    pub stopped_early: Option<String>,
}

const COLUMNS: &str = concat!(
    "id, algorithm_name, language, input_kind, seed, encode(source_sha256, 'hex'), results, complexity, memory, \
     seed_method, stopped_early, ",
    ts!("created_at")
);

fn benchmark(row: &Row, full: bool) -> Result<Value, StoreError> {
    let complexity: Value = row.try_get(7)?;
    let memory: Value = row.try_get(8)?;
    let results: Value = row.try_get(6)?;
    let mut v = json!({
        "id": row.try_get::<_, i64>(0)?,
        "algorithmName": row.try_get::<_, String>(1)?,
        "language": row.try_get::<_, String>(2)?,
        "inputKind": row.try_get::<_, String>(3)?,
        "seed": row.try_get::<_, i64>(4)?,
        "sourceSha256": row.try_get::<_, String>(5)?,
        "createdAt": row.try_get::<_, String>(11)?,
        "stoppedEarly": row.try_get::<_, Option<String>>(10)?,
        "sizes": results.as_array().map_or(0, Vec::len),
        "bestFit": complexity["bestFit"],
        "confidence": complexity["confidence"],
        "memoryFit": memory["bestFit"],
    });
    if full && let Some(o) = v.as_object_mut() {
        o.insert("results".into(), results);
        o.insert("complexityAnalysis".into(), complexity);
        o.insert("memoryAnalysis".into(), memory);
        o.insert("seedMethod".into(), row.try_get(9)?);
    }
    Ok(v)
}

impl Store {
    /// Stores a run and its per-size rows in one transaction; returns the run's id.
    pub async fn insert_benchmark(&self, b: &NewBenchmark) -> Result<i64, StoreError> {
        use sha2::Digest;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let seed = i64::try_from(b.seed).map_err(|_| StoreError::Corrupt(format!("seed {} out of range", b.seed)))?;
        let hash = sha2::Sha256::digest(&b.source).to_vec();
        // A size's error is what the user's code raised: it may hold NUL characters.
        let results = super::storable_json(&b.results);
        let name = super::storable_text(&b.algorithm_name);
        let row = tx
            .query_one(
                "INSERT INTO benchmark_runs (algorithm_id, algorithm_name, language, input_kind, seed, source_sha256,
                     results, complexity, memory, seed_method, stopped_early)
                 VALUES ((SELECT id FROM algorithms WHERE slug = $1), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 RETURNING id",
                &[
                    &&*name,
                    &b.language,
                    &b.input_kind,
                    &seed,
                    &hash,
                    &*results,
                    &b.complexity,
                    &b.memory,
                    &b.seed_method,
                    &b.stopped_early,
                ],
            )
            .await?;
        let id: i64 = row.try_get(0)?;
        for r in b.results.as_array().map(Vec::as_slice).unwrap_or_default() {
            let (Some(n), Some(time)) = (r["inputSize"].as_i64(), r["executionTime"].as_f64()) else { continue };
            let n = i32::try_from(n).map_err(|_| StoreError::Corrupt(format!("input size {n} out of range")))?;
            let runs = i32::try_from(r["runs"].as_u64().unwrap_or(1).max(1)).unwrap_or(i32::MAX);
            let peak = r["callPeakBytes"].as_f64().or_else(|| r["runPeakBytes"].as_f64()).unwrap_or(0.0);
            tx.execute(
                "INSERT INTO benchmarks (algorithm_id, algorithm_name, language, input_size, cpu_us, peak_bytes,
                     complexity, confidence, samples, run_id)
                 VALUES ((SELECT id FROM algorithms WHERE slug = $1), $1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &&*name,
                    &b.language,
                    &n,
                    &(time * 1000.0),
                    &peak,
                    &b.complexity["bestFit"].as_str(),
                    &b.complexity["confidence"].as_f64(),
                    &runs,
                    &id,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Newest first, summaries only; `algorithm` filters by name.
    pub async fn list_benchmarks(
        &self,
        algorithm: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Value>, i64), StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM benchmark_runs WHERE ($1::text IS NULL OR algorithm_name = $1)
                     ORDER BY id DESC OFFSET $2 LIMIT $3"
                ),
                &[&algorithm, &offset, &limit],
            )
            .await?;
        let total: i64 = client
            .query_one("SELECT count(*) FROM benchmark_runs WHERE ($1::text IS NULL OR algorithm_name = $1)", &[&algorithm])
            .await?
            .try_get(0)?;
        Ok((rows.iter().map(|r| benchmark(r, false)).collect::<Result<_, _>>()?, total))
    }

    /// One run with its measurements and fits.
    pub async fn get_benchmark(&self, id: i64) -> Result<Option<Value>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("SELECT {COLUMNS} FROM benchmark_runs WHERE id = $1"), &[&id]).await?;
        row.map(|r| benchmark(&r, true)).transpose()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::testing::fresh_store;

    fn new(name: &str) -> NewBenchmark {
        NewBenchmark {
            algorithm_name: name.into(),
            language: "python".into(),
            input_kind: "array".into(),
            seed: 1,
            source: b"def f(a): return a".to_vec(),
            results: json!([
                { "inputSize": 4, "executionTime": 0.001, "runs": 7, "cpuTimes": [0.001], "callPeakBytes": 100 },
                { "inputSize": 6, "executionTime": 0.0015, "runs": 7, "cpuTimes": [0.0015], "runPeakBytes": 9000 },
            ]),
            complexity: json!({ "bestFit": "O(n)", "confidence": 0.9 }),
            memory: json!({ "bestFit": "O(1)" }),
            seed_method: json!({ "bestFit": "O(n)", "confidence": 99.0 }),
            stopped_early: None,
        }
    }

    #[tokio::test]
    async fn a_run_is_stored_with_its_sizes_and_listed_newest_first() {
        let store = fresh_store().await;
        let first = store.insert_benchmark(&new("bubble_sort")).await.unwrap();
        let second = store.insert_benchmark(&new("other")).await.unwrap();
        let got = store.get_benchmark(first).await.unwrap().unwrap();
        assert_eq!(got["algorithmName"], "bubble_sort");
        assert_eq!(got["results"][1]["inputSize"], 6);
        assert_eq!(got["complexityAnalysis"]["bestFit"], "O(n)");
        assert_eq!(got["sourceSha256"].as_str().unwrap().len(), 64);
        let c = store.client().await.unwrap();
        let rows = c.query("SELECT input_size, cpu_us, samples FROM benchmarks WHERE run_id = $1 ORDER BY input_size", &[&first]).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].get::<_, f64>(1), 1.5);
        // The shipped catalog's bubble_sort is linked by its slug.
        let linked: Option<i64> = c.query_one("SELECT algorithm_id FROM benchmark_runs WHERE id = $1", &[&first]).await.unwrap().get(0);
        assert!(linked.is_some() || c.query_opt("SELECT 1 FROM algorithms WHERE slug = 'bubble_sort'", &[]).await.unwrap().is_none());
        let (list, total) = store.list_benchmarks(None, 0, 10).await.unwrap();
        assert_eq!(total, 2);
        assert_eq!(list[0]["id"], second);
        assert!(list[0].get("results").is_none());
        let (only, total) = store.list_benchmarks(Some("bubble_sort"), 0, 10).await.unwrap();
        assert_eq!((only.len(), total), (1, 1));
        assert!(store.get_benchmark(first + 100).await.unwrap().is_none());
    }
}
