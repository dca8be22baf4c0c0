//! Contest problems: metadata as JSON, tests and validators as content-addressed blobs.

use tokio_postgres::types::Json;

use super::{Queries, Store, StoreError, put_blob};
use crate::contest::{Problem, ProblemMeta, ProblemTest, Validator, ValidatorMeta};

/// A problem in a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ProblemSummary {
    pub slug: String,
    pub name: String,
    pub tests: i64,
}

impl Store {
    /// Stores a problem. An existing slug is a conflict unless `replace`, which swaps
    /// all of the old problem for the new one in one transaction.
    pub async fn put_problem(&self, problem: &Problem, replace: bool, by: Option<i64>) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let validator_sha = match &problem.validator {
            Some(v) => Some(put_blob(&tx, &v.source).await?.to_vec()),
            None => None,
        };
        let validator_meta = problem.validator.as_ref().map(|v| Json(&v.meta));
        let meta = Json(&problem.meta);
        let row = if replace {
            tx.query_one(
                "INSERT INTO problems (slug, name, meta, validator, validator_sha256, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (slug) DO UPDATE SET name = excluded.name, meta = excluded.meta,
                     validator = excluded.validator, validator_sha256 = excluded.validator_sha256, updated_at = now()
                 RETURNING id",
                &[&problem.slug, &problem.meta.name, &meta, &validator_meta, &validator_sha, &by],
            )
            .await?
        } else {
            let row = tx
                .query_opt(
                    "INSERT INTO problems (slug, name, meta, validator, validator_sha256, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (slug) DO NOTHING RETURNING id",
                    &[&problem.slug, &problem.meta.name, &meta, &validator_meta, &validator_sha, &by],
                )
                .await?;
            row.ok_or_else(|| StoreError::Conflict(format!("problem {:?}", problem.slug)))?
        };
        let id: i64 = row.try_get(0)?;
        tx.execute("DELETE FROM problem_tests WHERE problem_id = $1", &[&id]).await?;
        for (ordinal, t) in problem.tests.iter().enumerate() {
            let input = put_blob(&tx, &t.input).await?;
            let answer = put_blob(&tx, &t.answer).await?;
            let ordinal = i32::try_from(ordinal).map_err(|_| StoreError::Corrupt("too many tests".into()))?;
            let group = i32::try_from(t.group).map_err(|_| StoreError::Corrupt("group index".into()))?;
            tx.execute(
                "INSERT INTO problem_tests (problem_id, ordinal, name, group_index, sample, input_sha256, answer_sha256)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&id, &ordinal, &t.name, &group, &t.sample, &&input[..], &&answer[..]],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_problem(&self, slug: &str) -> Result<Option<Problem>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "SELECT p.id, p.meta, p.validator, b.content FROM problems p
                 LEFT JOIN blobs b ON b.sha256 = p.validator_sha256 WHERE p.slug = $1",
                &[&slug],
            )
            .await?
        else {
            return Ok(None);
        };
        let id: i64 = row.try_get(0)?;
        let Json(meta): Json<ProblemMeta> = row.try_get(1)?;
        let validator_meta: Option<Json<ValidatorMeta>> = row.try_get(2)?;
        let validator_source: Option<Vec<u8>> = row.try_get(3)?;
        let validator = match (validator_meta, validator_source) {
            (Some(Json(meta)), Some(source)) => Some(Validator { meta, source }),
            (None, None) => None,
            _ => return Err(StoreError::Corrupt(format!("problem {slug:?}: validator without its source"))),
        };
        let rows = client
            .query(
                "SELECT t.name, t.group_index, t.sample, i.content, a.content FROM problem_tests t
                 JOIN blobs i ON i.sha256 = t.input_sha256 JOIN blobs a ON a.sha256 = t.answer_sha256
                 WHERE t.problem_id = $1 ORDER BY t.ordinal",
                &[&id],
            )
            .await?;
        let mut tests = Vec::with_capacity(rows.len());
        for r in rows {
            let group: i32 = r.try_get(1)?;
            tests.push(ProblemTest {
                name: r.try_get(0)?,
                group: u32::try_from(group).map_err(|_| StoreError::Corrupt(format!("problem {slug:?}: group {group}")))?,
                sample: r.try_get(2)?,
                input: r.try_get(3)?,
                answer: r.try_get(4)?,
            });
        }
        Ok(Some(Problem { slug: slug.to_owned(), meta, tests, validator }))
    }

    pub async fn list_problems(&self) -> Result<Vec<ProblemSummary>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT p.slug, p.name, (SELECT count(*) FROM problem_tests t WHERE t.problem_id = p.id)
                 FROM problems p ORDER BY p.slug",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(ProblemSummary { slug: r.try_get(0)?, name: r.try_get(1)?, tests: r.try_get(2)? }))
            .collect()
    }
}
