//! The connection every store query goes through. It counts each statement and each
//! failed one (`judge_db_queries_total`, `judge_db_query_errors_total`) in one place, so
//! no query can forget to, and no call site carries metrics code.
//!
//! Labels stay few: `area` is the store module that took the connection (`catalog`,
//! `auth`, `projection`, ...; from the caller's source file, see `Store::client`) and
//! `class` the SQLSTATE class of the error (`integrity_constraint_violation`,
//! `operator_intervention`, ...) or `connection_closed` / `client` when PostgreSQL sent
//! none. A unique violation the store turns into a 409 counts too: it is a statement
//! PostgreSQL refused, and its class tells it apart from an outage.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row, ToStatement};

use super::PoolObserver;

/// Where a connection's statements are counted: the store's observer (once metrics are
/// attached) under the area that took the connection.
#[derive(Clone)]
pub(crate) struct QueryCounter {
    observer: Arc<OnceLock<PoolObserver>>,
    area: &'static str,
}

impl QueryCounter {
    pub(super) fn new(observer: Arc<OnceLock<PoolObserver>>, area: &'static str) -> QueryCounter {
        QueryCounter { observer, area }
    }

    fn count<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if let Some(o) = self.observer.get() {
            o.queries.with_label_values(&[self.area]).inc();
            if let Err(e) = &result {
                o.query_errors.with_label_values(&[self.area, error_class(e)]).inc();
            }
        }
        result
    }
}

/// The `area` label of a connection taken at `file` (`coordinator/src/store/auth.rs` →
/// `auth`); the set is bounded by the crate's source files.
pub(super) fn area_of(file: &'static str) -> &'static str {
    let name = file.rsplit(['/', '\\']).next().unwrap_or(file);
    match name.strip_suffix(".rs") {
        Some("mod") | None => "store",
        Some(stem) => stem,
    }
}

/// The class of a failed statement, for the `class` label: SQLSTATE's class name
/// (PostgreSQL manual, appendix A), `connection_closed` when the connection was gone
/// before an answer came, `client` for failures on our side (encoding a parameter, I/O).
pub(crate) fn error_class(e: &Error) -> &'static str {
    let Some(db) = e.as_db_error() else {
        return if e.is_closed() { "connection_closed" } else { "client" };
    };
    match db.code().code().get(..2) {
        Some("08") => "connection_exception",
        Some("0A") => "feature_not_supported",
        Some("22") => "data_exception",
        Some("23") => "integrity_constraint_violation",
        Some("25") => "invalid_transaction_state",
        Some("28") => "invalid_authorization",
        Some("3D") => "invalid_catalog_name",
        Some("40") => "transaction_rollback",
        Some("42") => "syntax_error_or_access_rule_violation",
        Some("53") => "insufficient_resources",
        Some("54") => "program_limit_exceeded",
        Some("55") => "object_not_in_prerequisite_state",
        Some("57") => "operator_intervention",
        Some("58") => "system_error",
        Some("P0") => "plpgsql_error",
        Some("XX") => "internal_error",
        _ => "other",
    }
}

/// The statements of a connection or a transaction, counted. Helpers that run inside
/// either take `&impl Queries`.
pub(crate) trait Queries: Sync {
    fn query<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> impl Future<Output = Result<Vec<Row>, Error>> + Send
    where
        T: ?Sized + ToStatement + Sync + Send;
    fn query_one<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> impl Future<Output = Result<Row, Error>> + Send
    where
        T: ?Sized + ToStatement + Sync + Send;
    fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send
    where
        T: ?Sized + ToStatement + Sync + Send;
    fn execute<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> impl Future<Output = Result<u64, Error>> + Send
    where
        T: ?Sized + ToStatement + Sync + Send;
}

/// The same four methods for a connection and a transaction, each counting its result.
macro_rules! counted_queries {
    ($ty:ty, $raw:ident) => {
        impl Queries for $ty {
            async fn query<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error>
            where
                T: ?Sized + ToStatement + Sync + Send,
            {
                self.counter.count(self.$raw.query(statement, params).await)
            }
            async fn query_one<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error>
            where
                T: ?Sized + ToStatement + Sync + Send,
            {
                self.counter.count(self.$raw.query_one(statement, params).await)
            }
            async fn query_opt<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, Error>
            where
                T: ?Sized + ToStatement + Sync + Send,
            {
                self.counter.count(self.$raw.query_opt(statement, params).await)
            }
            async fn execute<T>(&self, statement: &T, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error>
            where
                T: ?Sized + ToStatement + Sync + Send,
            {
                self.counter.count(self.$raw.execute(statement, params).await)
            }
        }
    };
}

/// A pooled connection whose statements are counted (`Store::client`). It hands out
/// no raw client: a statement that bypassed it would go uncounted.
pub(crate) struct Conn {
    client: deadpool_postgres::Object,
    counter: QueryCounter,
}

/// A transaction of a [`Conn`]; dropped without `commit`, it rolls back.
pub(crate) struct Tx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    counter: QueryCounter,
}

counted_queries!(Conn, client);
counted_queries!(Tx<'_>, tx);

impl Conn {
    pub(super) fn new(client: deadpool_postgres::Object, counter: QueryCounter) -> Conn {
        Conn { client, counter }
    }

    /// `BEGIN`, counted like any statement.
    pub(crate) async fn transaction(&mut self) -> Result<Tx<'_>, Error> {
        let counter = self.counter.clone();
        let tx = counter.count(self.client.transaction().await)?;
        Ok(Tx { tx, counter })
    }
}

impl Tx<'_> {
    /// `COMMIT`, counted: a serialization failure surfaces here.
    pub(crate) async fn commit(self) -> Result<(), Error> {
        let Tx { tx, counter } = self;
        counter.count(tx.commit().await)
    }
}

#[cfg(test)]
mod tests {
    use super::area_of;

    #[test]
    fn areas_are_module_names() {
        assert_eq!(area_of("coordinator/src/store/auth.rs"), "auth");
        assert_eq!(area_of("coordinator/src/store/mod.rs"), "store");
        assert_eq!(area_of("src\\store\\catalog.rs"), "catalog");
    }
}
