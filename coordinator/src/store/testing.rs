//! A private PostgreSQL for this test binary, and a fresh database per test.
//!
//! One cluster per process (≈ 0.5 s to start), started like the embedded one in a temp
//! dir; each test gets its own database so tests run in parallel without seeing each
//! other. The cluster is stopped and its directory removed at process exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use super::{EmbeddedConfig, EmbeddedPostgres, Store};

struct Cluster {
    pg: EmbeddedPostgres,
    _dir: tempfile::TempDir,
}

static CLUSTER: OnceLock<Mutex<Option<Cluster>>> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some(m) = CLUSTER.get()
        && let Ok(mut c) = m.lock()
    {
        // Drops the server (fast shutdown) and then the temp dir.
        drop(c.take());
    }
}

fn base_config() -> tokio_postgres::Config {
    let cell = CLUSTER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = EmbeddedConfig::new(dir.path());
        config.durable = false;
        let pg = EmbeddedPostgres::start(&config).expect("starting the test PostgreSQL");
        // SAFETY: registering a plain extern "C" function with no preconditions.
        unsafe { libc::atexit(stop_cluster) };
        Mutex::new(Some(Cluster { pg, _dir: dir }))
    });
    cell.lock().unwrap().as_ref().expect("test cluster already stopped").pg.pg_config()
}

/// A connection config for a new, empty database.
pub async fn fresh_database() -> tokio_postgres::Config {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut config = base_config();
    let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, conn) = admin.connect(tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    drop(client);
    let _ = task.await;
    config.dbname(&name);
    config
}

/// A migrated store on a new database.
pub async fn fresh_store() -> Store {
    Store::open(fresh_database().await).await.unwrap()
}
