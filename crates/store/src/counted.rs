//! The driver's session, counting every statement it sends.
//!
//! `tributary_store_statements_total` is how many CQL statements a process has sent (a paged
//! read counts once; a read of several partitions in one request, as that many): the bench
//! divides it by events to show what one event costs the database, a figure that has to come
//! from what ran, not from reading the code.
//! `tributary_store_requests_total` counts requests (an unlogged batch of many statements is
//! one): what the database parses, coordinates and answers.

use scylla::client::pager::QueryPager;
use scylla::client::session::Session;
use scylla::errors::{ExecutionError, PagerExecutionError};
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Statement;
use std::sync::LazyLock;

pub static STATEMENTS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    let c = prometheus::IntCounter::new("tributary_store_statements_total", "CQL statements sent to the database").unwrap();
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    LazyLock::force(&ERRORS); // exported (at 0) from the first statement on
    LazyLock::force(&REQUESTS);
    c
});

pub static REQUESTS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    let c = prometheus::IntCounter::new("tributary_store_requests_total", "CQL requests sent to the database (a batch counts once)").unwrap();
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
});

/// Requests that failed (unreachable, timed out, refused): the alert TributaryCassandraErrors
/// divides it by `tributary_store_requests_total` (a failed batch is one failed request).
pub static ERRORS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    let c = prometheus::IntCounter::new("tributary_store_errors_total", "CQL requests that failed (a batch counts once)").unwrap();
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
});

fn counted<T, E>(r: Result<T, E>) -> Result<T, E> {
    if r.is_err() {
        ERRORS.inc();
    }
    r
}

pub struct CountedSession(pub(crate) Session);

impl CountedSession {
    pub async fn execute_unpaged(&self, st: &PreparedStatement, values: impl SerializeRow) -> Result<QueryResult, ExecutionError> {
        STATEMENTS.inc();
        REQUESTS.inc();
        counted(self.0.execute_unpaged(st, values).await)
    }

    /// A read of `partitions` partitions in one request (an `IN` on the partition key): counted
    /// as that many statements, as the reads it stands for would be, and one request.
    pub async fn execute_reading(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
        partitions: usize,
    ) -> Result<QueryResult, ExecutionError> {
        STATEMENTS.inc_by(partitions as u64);
        REQUESTS.inc();
        counted(self.0.execute_unpaged(st, values).await)
    }

    pub async fn query_unpaged(&self, st: impl Into<Statement>, values: impl SerializeRow) -> Result<QueryResult, ExecutionError> {
        STATEMENTS.inc();
        REQUESTS.inc();
        counted(self.0.query_unpaged(st, values).await)
    }

    pub async fn query_iter(&self, st: impl Into<Statement>, values: impl SerializeRow) -> Result<QueryPager, PagerExecutionError> {
        STATEMENTS.inc();
        REQUESTS.inc();
        counted(self.0.query_iter(st, values).await)
    }

    pub async fn batch(
        &self,
        batch: &scylla::statement::batch::Batch,
        values: impl scylla::serialize::batch::BatchValues,
    ) -> Result<QueryResult, ExecutionError> {
        STATEMENTS.inc_by(batch.statements.len() as u64);
        REQUESTS.inc();
        counted(self.0.batch(batch, values).await)
    }
}
