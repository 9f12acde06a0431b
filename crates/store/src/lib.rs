//! Cassandra / ScyllaDB at the edges. Every statement here is plain CQL that both run
//! unchanged: no materialized views, no secondary or SAI indexes, no `ALLOW FILTERING`;
//! expiry by `USING TTL`; queries by partition key, newest first by clustering order.
//!
//! - [`schema`]: keyspace and tables, created idempotently by `tributary migrate`.
//! - [`config`]: sources, environments, per-environment settings, mappings.
//! - [`logs`]: event logs and action logs, with their timelines for listing.
//! - [`entities`]: users and tenants (identify / set_tenant), and dedup keys.

pub mod audiences;
pub mod cache;
pub mod claims;
mod coalesce;
pub mod config;
pub mod counted;
mod counters;
pub mod entities;
pub mod logs;
pub mod paging;
pub mod schema;
pub mod stats;
pub mod timeline;

pub use cache::ConfigCache;
pub use config::Snapshot;
pub use claims::{Claim, ClaimKey, NewClaim};

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The database could not be reached or did not answer: worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row holds something this code cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database refused this statement for what it holds (too large, invalid): retrying
    /// the same record cannot help.
    #[error("rejected by the database: {0}")]
    Rejected(String),
}

impl StoreError {
    /// Worth retrying later (as opposed to a record the database will never accept).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Errors of a statement's execution: a refusal of the statement itself is permanent,
/// everything else (no connection, timeouts, overload) is transient.
pub(crate) fn db(e: scylla::errors::ExecutionError) -> StoreError {
    use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
    match &e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid | DbError::SyntaxError | DbError::FunctionFailure { .. } | DbError::ConfigError | DbError::Unauthorized,
            msg,
        )) => StoreError::Rejected(msg.clone()),
        // The driver refused the statement before sending it (values too long for a key, ...).
        ExecutionError::BadQuery(_) => StoreError::Rejected(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub replication: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A connected store with its statements prepared.
#[derive(Clone)]
pub struct Store {
    pub(crate) session: Arc<counted::CountedSession>,
    pub(crate) ks: String,
    pub(crate) stmts: Arc<schema::Statements>,
    /// Buckets a timeline slice is spread over when written (timeline.rs).
    pub(crate) buckets: i32,
    pub(crate) slices: Arc<timeline::SliceIndex>,
    pub(crate) counters: Arc<counters::Counters>,
    /// Timeline entries, sent a partition's waiting entries at a time (coalesce.rs).
    pub(crate) event_timeline: Arc<coalesce::Coalescer<logs::EventTimelineRow>>,
    pub(crate) action_timeline: Arc<coalesce::Coalescer<logs::ActionTimelineRow>>,
}

impl Store {
    /// Connect, create the schema if missing (idempotent), prepare statements.
    pub async fn connect(s: &StoreSettings) -> Result<Store, StoreError> {
        let mut b = SessionBuilder::new().known_nodes(&s.nodes);
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            b = b.user(u, p);
        }
        let session = b.build().await.map_err(unavailable)?;
        schema::migrate(&session, &s.keyspace, &s.replication).await?;
        let stmts = schema::Statements::prepare(&session, &s.keyspace).await?;
        Ok(Store::with(session, &s.keyspace, stmts))
    }

    /// Connect without creating anything (statements are prepared only if the schema exists).
    pub async fn connect_existing(s: &StoreSettings) -> Result<Store, StoreError> {
        let session = SessionBuilder::new().known_nodes(&s.nodes).build().await.map_err(unavailable)?;
        let stmts = schema::Statements::prepare(&session, &s.keyspace).await?;
        Ok(Store::with(session, &s.keyspace, stmts))
    }

    fn with(session: Session, keyspace: &str, stmts: schema::Statements) -> Store {
        Store {
            event_timeline: coalesce::Coalescer::new(stmts.insert_event_timeline.clone(), logs::event_timeline_partition),
            action_timeline: coalesce::Coalescer::new(stmts.insert_action_timeline.clone(), logs::action_timeline_partition),
            session: Arc::new(counted::CountedSession(session)),
            ks: keyspace.to_string(),
            stmts: Arc::new(stmts),
            buckets: timeline::DEFAULT_BUCKETS,
            slices: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Spread timeline slices written from now on over `buckets` partitions
    /// (`cassandra.timeline_buckets`).
    pub fn with_timeline_buckets(mut self, buckets: i32) -> Store {
        self.buckets = buckets.max(1);
        self
    }

    pub fn keyspace(&self) -> &str {
        &self.ks
    }

    /// Does the database answer?
    pub async fn ping(&self) -> bool {
        self.session.query_unpaged("SELECT release_version FROM system.local", &[]).await.is_ok()
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn day_of(ms: i64) -> i32 {
    (ms.div_euclid(86_400_000)) as i32
}
