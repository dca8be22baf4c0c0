//! The store: PostgreSQL holds the catalog (algorithms with their educational content
//! and tests, users, tokens) and the history (finished submissions, per-test results,
//! benchmarks, progress, achievements). The live judging state stays in the judge state
//! machine; finished submissions reach the store through `projection`.
//!
//! A `Store` is a connection pool plus the queries; it is cheap to clone. `Store::open`
//! applies the migrations before handing the pool out, so every query may assume the
//! newest schema this binary knows.

pub mod auth;
pub mod benchmarks;
pub mod catalog;
mod conn;
pub mod dashboard;
pub mod embedded;
pub mod migrate;
pub mod problems;
pub mod projection;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;

pub(crate) use conn::{Conn, Queries, Tx};
pub use embedded::{EmbeddedConfig, EmbeddedError, EmbeddedPostgres};

/// Every way the store can fail, as its callers need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database pool set-up: {0}")]
    PoolBuild(#[from] deadpool_postgres::BuildError),
    #[error("invalid DATABASE_URL: {0}")]
    BadUrl(String),
    #[error(
        "the database schema is newer than this coordinator: it has migration {database} ({name:?}), this binary \
         knows up to {binary}. Upgrade the coordinator, or use another database"
    )]
    SchemaTooNew { database: i32, name: String, binary: i32 },
    #[error("migration {version} ({name:?}) was applied with a different text; migrations must never be edited once shipped")]
    MigrationChanged { version: i32, name: String },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration { version: i32, name: &'static str, source: tokio_postgres::Error },
    #[error("embedded PostgreSQL: {0}")]
    Embedded(#[from] EmbeddedError),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("bad data in the store: {0}")]
    Corrupt(String),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: std::path::PathBuf, source: std::io::Error },
}

impl StoreError {
    /// True for a unique-constraint violation (a concurrent insert of the same key).
    fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Postgres(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
    }

    /// True when the same request may succeed later: the database was unreachable or
    /// busy, not refusing what it was given.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Postgres(e) => match e.code() {
                // No SQLSTATE: the connection broke, nothing was refused.
                None => true,
                // Connection exceptions, serialization failures and deadlocks,
                // insufficient resources, an operator's shutdown, system errors.
                Some(code) => ["08", "40", "53", "57", "58"].iter().any(|class| code.code().starts_with(class)),
            },
            _ => false,
        }
    }

    /// True when a row the write refers to is gone (deleted by a concurrent request).
    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(self, StoreError::Postgres(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION))
    }
}

/// How many connections the coordinator keeps at most.
const POOL_SIZE: usize = 16;

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// Set once metrics are attached; shared by all clones.
    observer: Arc<OnceLock<PoolObserver>>,
}

/// Where the store reports how long it waited for connections, failures to get one, and
/// its statements (`conn`): all of them and the failed ones.
pub struct PoolObserver {
    pub wait: prometheus::Histogram,
    pub errors: prometheus::IntCounter,
    /// By `area`.
    pub queries: prometheus::IntCounterVec,
    /// By `area` and `class`.
    pub query_errors: prometheus::IntCounterVec,
}

impl Store {
    /// Parses a `postgres://` URL (or a `key=value` string) as `DATABASE_URL` gives it.
    pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, StoreError> {
        url.parse::<tokio_postgres::Config>().map_err(|e| StoreError::BadUrl(e.to_string()))
    }

    /// Connects, applies missing migrations, and returns the store. Plain TCP or a unix
    /// socket (no TLS yet: use a socket or a trusted network).
    pub async fn open(config: tokio_postgres::Config) -> Result<Store, StoreError> {
        let store = Store::connect(config)?;
        store.migrate().await?;
        Ok(store)
    }

    /// The pool only, no migration (tests of the migration runner).
    pub fn connect(config: tokio_postgres::Config) -> Result<Store, StoreError> {
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        // Bounded waits: a database that is down must fail requests (and /health) quickly
        // rather than hang them.
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(5)))
            .wait_timeout(Some(Duration::from_secs(5)))
            .build()?;
        Ok(Store { pool, observer: Arc::new(OnceLock::new()) })
    }

    /// Applies the migrations this binary knows; returns the versions applied now.
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        let mut client = self.pool.get().await?;
        migrate::run(&mut client, migrate::MIGRATIONS).await
    }

    /// The schema version of the database (0 before any migration).
    pub async fn schema_version(&self) -> Result<i32, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT coalesce((SELECT max(version) FROM schema_version), 0)", &[])
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Closes every connection, for all clones; later queries fail. Called before the
    /// private server stops, so its shutdown does not look like a connection failure.
    pub fn close(&self) {
        self.pool.close();
    }

    /// A round trip, for /health.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    /// A connection whose statements are counted, under the `area` of the calling
    /// module's file (`catalog`, `auth`, ...): the caller's location is the label, so no
    /// call site names itself.
    #[track_caller]
    pub(crate) fn client(&self) -> impl Future<Output = Result<Conn, StoreError>> + Send + '_ {
        let area = conn::area_of(std::panic::Location::caller().file());
        async move {
            let start = std::time::Instant::now();
            let got = self.pool.get().await;
            if let Some(o) = self.observer.get() {
                o.wait.observe(start.elapsed().as_secs_f64());
                if got.is_err() {
                    o.errors.inc();
                }
            }
            Ok(Conn::new(got?, conn::QueryCounter::new(self.observer.clone(), area)))
        }
    }

    /// Reports connection waits to `observer` from now on (once; later calls are ignored).
    pub fn observe_pool(&self, observer: PoolObserver) {
        let _ = self.observer.set(observer);
    }

    /// The pool's connections (open, idle) and waiters now.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `value` as PostgreSQL can keep it: text and jsonb refuse NUL characters, which user
/// programs may well return or raise; they become U+FFFD.
pub fn storable_json(value: &serde_json::Value) -> std::borrow::Cow<'_, serde_json::Value> {
    use serde_json::Value;
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    fn clean(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(storable_text(s).into_owned()),
            Value::Array(items) => Value::Array(items.iter().map(clean).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (storable_text(k).into_owned(), clean(v))).collect()),
            other => other.clone(),
        }
    }
    if has_nul(value) { std::borrow::Cow::Owned(clean(value)) } else { std::borrow::Cow::Borrowed(value) }
}

/// `text` without NUL characters (U+FFFD instead), as PostgreSQL's text can keep it.
pub fn storable_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') { std::borrow::Cow::Owned(text.replace('\0', "\u{fffd}")) } else { std::borrow::Cow::Borrowed(text) }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Stores `content` once under its sha256 and returns the hash.
pub(crate) async fn put_blob(
    client: &impl Queries,
    content: &[u8],
) -> Result<[u8; 32], StoreError> {
    let hash = sha256(content);
    client
        .execute("INSERT INTO blobs (sha256, content) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING", &[&&hash[..], &content])
        .await?;
    Ok(hash)
}

/// `to_char` of a timestamptz column as `2025-01-01T00:00:00.000Z`.
macro_rules! ts {
    ($col:literal) => {
        concat!("to_char(", $col, " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
    };
}
pub(crate) use ts;
