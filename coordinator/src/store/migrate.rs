//! Versioned migrations kept in `coordinator/migrations/`, applied at start-up.
//!
//! A tiny runner rather than a framework: a `schema_version` table with one row per
//! applied migration (version, name, sha256 of its text). Start-up takes a session
//! advisory lock, so coordinators starting together apply each migration once; each
//! migration and its row commit in one transaction. A database with a version this
//! binary does not know (a newer coordinator migrated it) is refused: running old code
//! against a newer schema could write rows the new code misreads. A known migration
//! whose text changed since it was applied is refused too.

use sha2::{Digest, Sha256};

use super::StoreError;

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Append only; never edit one that has shipped.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../migrations/0001_init.sql") },
    Migration { version: 2, name: "dashboard", sql: include_str!("../../migrations/0002_dashboard.sql") },
    Migration { version: 3, name: "problems", sql: include_str!("../../migrations/0003_problems.sql") },
    Migration {
        version: 4,
        name: "benchmark_runs",
        sql: include_str!("../../migrations/0004_benchmark_runs.sql"),
    },
    Migration { version: 5, name: "passwords", sql: include_str!("../../migrations/0005_passwords.sql") },
    Migration {
        version: 8,
        name: "cluster_streams",
        sql: include_str!("../../migrations/0008_cluster_streams.sql"),
    },
    Migration {
        version: 9,
        name: "algorithm_generators",
        sql: include_str!("../../migrations/0009_algorithm_generators.sql"),
    },
    Migration { version: 10, name: "session_epochs", sql: include_str!("../../migrations/0010_session_epochs.sql") },
];

/// An arbitrary constant naming our advisory lock.
const LOCK_KEY: i64 = 0x6a75_6467_655f_6462; // "judge_db"

/// The newest version this binary knows.
pub fn latest() -> i32 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Applies what is missing; returns the versions applied now (empty when up to date).
pub async fn run(client: &mut tokio_postgres::Client, migrations: &[Migration]) -> Result<Vec<i32>, StoreError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await?;
    let result = apply(client, migrations).await;
    // Unlock even after a failure: the session may go back to a pool.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn apply(client: &mut tokio_postgres::Client, migrations: &[Migration]) -> Result<Vec<i32>, StoreError> {
    // Without this, every start logs the server's "already exists, skipping" notice.
    client.batch_execute("SET client_min_messages = warning").await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                sha256      bytea NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    client.batch_execute("RESET client_min_messages").await?;
    let rows = client.query("SELECT version, name, sha256 FROM schema_version ORDER BY version", &[]).await?;
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    for row in &rows {
        let version: i32 = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        let hash: Vec<u8> = row.try_get(2)?;
        match migrations.iter().find(|m| m.version == version) {
            None => return Err(StoreError::SchemaTooNew { database: version, name, binary: known }),
            Some(m) if digest(m.sql) != hash => return Err(StoreError::MigrationChanged { version, name }),
            Some(_) => {}
        }
    }
    let mut applied = Vec::new();
    for m in migrations {
        if rows.iter().any(|r| r.try_get::<_, i32>(0).ok() == Some(m.version)) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await.map_err(|e| StoreError::Migration { version: m.version, name: m.name, source: e })?;
        tx.execute(
            "INSERT INTO schema_version (version, name, sha256) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &digest(m.sql)],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        applied.push(m.version);
    }
    Ok(applied)
}

fn digest(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}
