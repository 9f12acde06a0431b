//! The schema, and the prepared statements of the hot paths.

use crate::{db, unavailable, StoreError};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

/// Tables, in creation order. `{ks}` is replaced by the keyspace.
pub const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {ks}.environments (name text PRIMARY KEY, created_at bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.sources (key text PRIMARY KEY, name text, template text, created_at bigint)",
    // settings: JSON of tributary_model::EnvironmentSettings
    "CREATE TABLE IF NOT EXISTS {ks}.source_environments (source text, environment text, settings text, updated_at bigint, PRIMARY KEY (source, environment))",
    // body: JSON of tributary_model::Mapping
    "CREATE TABLE IF NOT EXISTS {ks}.mappings (source text, environment text, id text, body text, PRIMARY KEY ((source, environment), id))",
    "CREATE TABLE IF NOT EXISTS {ks}.event_logs (event_id text PRIMARY KEY, request_id text, environment text, source text, \
     event_type text, name text, user_id text, status text, error_code text, error_message text, verification text, \
     raw text, normalized text, duplicate_of text, received_at bigint, inserted_at bigint)",
    // the listing of event logs, newest first: one partition per environment, minute and bucket
    // (timeline.rs says why and what bounds it); time-window compaction, so expired minutes
    // leave whole files instead of tombstones
    "CREATE TABLE IF NOT EXISTS {ks}.event_timeline (environment text, slice bigint, bucket int, received_at bigint, \
     event_id text, source text, event_type text, name text, user_id text, status text, \
     PRIMARY KEY ((environment, slice, bucket), received_at, event_id)) WITH CLUSTERING ORDER BY (received_at DESC, event_id ASC) \
     AND compaction = {TWCS}",
    "CREATE TABLE IF NOT EXISTS {ks}.action_logs (event_id text, action_id text, mapping_id text, environment text, source text, \
     action_type text, status text, parameters text, payload text, result text, error text, attempts int, replay_of text, \
     inserted_at bigint, updated_at bigint, PRIMARY KEY (event_id, action_id))",
    "CREATE TABLE IF NOT EXISTS {ks}.action_timeline (environment text, slice bigint, bucket int, inserted_at bigint, \
     action_id text, event_id text, source text, action_type text, status text, workflow text, \
     PRIMARY KEY ((environment, slice, bucket), inserted_at, action_id)) WITH CLUSTERING ORDER BY (inserted_at DESC, action_id ASC) \
     AND compaction = {TWCS}",
    // which minutes of an environment hold timeline entries, with the bucket count they were
    // written with: at most 1,440 rows per environment, kind and day
    "CREATE TABLE IF NOT EXISTS {ks}.timeline_slices (environment text, kind text, day int, slice bigint, buckets int, \
     PRIMARY KEY ((environment, kind, day), slice, buckets)) WITH CLUSTERING ORDER BY (slice DESC, buckets ASC)",
    // one partition per user: identify is a read-merge-write of one row
    "CREATE TABLE IF NOT EXISTS {ks}.users (environment text, user_id text, properties text, updated_at bigint, PRIMARY KEY ((environment, user_id)))",
    "CREATE TABLE IF NOT EXISTS {ks}.tenants (environment text, tenant_id text, properties text, updated_at bigint, PRIMARY KEY ((environment, tenant_id)))",
    // audience membership: one partition per environment, audience and user (the rows are the
    // user's tenants in it, usually one). A partition is bounded by the tenants one user has in
    // one audience; neither event volume nor audience size grows it. Adding again overwrites.
    "CREATE TABLE IF NOT EXISTS {ks}.audience_members (environment text, audience_key text, user_id text, tenant text, \
     added_at bigint, PRIMARY KEY ((environment, audience_key, user_id), tenant))",
    // idempotency keys, expiring with the dedup window
    "CREATE TABLE IF NOT EXISTS {ks}.dedup_keys (environment text, source text, key text, event_id text, PRIMARY KEY ((environment, source, key)))",
    // known events: counters (a table of counters holds nothing else), and last seen
    "CREATE TABLE IF NOT EXISTS {ks}.known_event_counts (source text, environment text, event_type text, name text, seen counter, \
     PRIMARY KEY ((source, environment), event_type, name))",
    "CREATE TABLE IF NOT EXISTS {ks}.known_event_last_seen (source text, environment text, event_type text, name text, last_seen bigint, \
     PRIMARY KEY ((source, environment), event_type, name))",
    // events per source environment and day, for the 30-day status
    "CREATE TABLE IF NOT EXISTS {ks}.source_daily_counts (source text, environment text, day int, events counter, \
     PRIMARY KEY ((source, environment), day))",
    // when the configuration last changed (one row, id 0): every role reads it to know whether
    // its in-memory snapshot is behind, before it would act on a stale one (see cache.rs)
    "CREATE TABLE IF NOT EXISTS {ks}.config_epoch (id int PRIMARY KEY, changed_at bigint)",
    // who changed what, when; one partition per day, newest first
    "CREATE TABLE IF NOT EXISTS {ks}.audit_log (day int, at bigint, id text, actor text, action text, target text, details text, \
     PRIMARY KEY (day, at, id)) WITH CLUSTERING ORDER BY (at DESC, id ASC)",
];

/// Time-window compaction by day: every row of these tables expires by TTL, so a day's
/// SSTable is dropped whole once all of it has expired (ScyllaDB and Cassandra alike).
const TWCS: &str = "{'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}";

/// Tables written only with a TTL that were created before their compaction was set here:
/// `migrate` sets it (idempotent).
const TTL_TABLES: [&str; 3] = ["event_logs", "action_logs", "dedup_keys"];

/// Create the keyspace and tables if they are missing. Safe to run from every process.
///
/// From an install made before the bucketed timelines: `event_log_timeline` and
/// `action_log_timeline` are neither written nor read any more (listings show what was logged
/// since the upgrade; older events stay readable by id until their TTL); drop them once the
/// longest retention has passed.
pub async fn migrate(session: &Session, ks: &str, replication: &str) -> Result<(), StoreError> {
    session
        .query_unpaged(format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"), &[])
        .await
        .map_err(db)?;
    for t in TABLES {
        session.query_unpaged(t.replace("{ks}", ks).replace("{TWCS}", TWCS), &[]).await.map_err(db)?;
    }
    for t in TTL_TABLES {
        session.query_unpaged(format!("ALTER TABLE {ks}.{t} WITH compaction = {TWCS}"), &[]).await.map_err(db)?;
    }
    session.await_schema_agreement().await.map_err(unavailable)?;
    Ok(())
}

pub struct Statements {
    pub insert_event_log: PreparedStatement,
    pub insert_event_timeline: PreparedStatement,
    pub insert_action_log: PreparedStatement,
    pub insert_action_timeline: PreparedStatement,
    pub select_action_status: PreparedStatement,
    pub select_user: PreparedStatement,
    pub upsert_user: PreparedStatement,
    pub select_tenant: PreparedStatement,
    pub upsert_tenant: PreparedStatement,
    pub select_dedup: PreparedStatement,
    pub select_dedup_many: PreparedStatement,
    pub insert_member: PreparedStatement,
    pub delete_member: PreparedStatement,
    pub select_member: PreparedStatement,
    pub insert_dedup: PreparedStatement,
    pub count_known: PreparedStatement,
    pub seen_known: PreparedStatement,
    pub count_daily: PreparedStatement,
    pub insert_slice: PreparedStatement,
    pub select_slices: PreparedStatement,
}

impl Statements {
    pub async fn prepare(s: &Session, ks: &str) -> Result<Self, StoreError> {
        let p = |q: String| async move { s.prepare(q).await.map_err(unavailable) };
        Ok(Statements {
            insert_event_log: p(format!(
                "INSERT INTO {ks}.event_logs (event_id, request_id, environment, source, event_type, name, user_id, status, \
                 error_code, error_message, verification, raw, normalized, duplicate_of, received_at, inserted_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            insert_event_timeline: p(format!(
                "INSERT INTO {ks}.event_timeline (environment, slice, bucket, received_at, event_id, source, event_type, name, user_id, status) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            insert_action_log: p(format!(
                "INSERT INTO {ks}.action_logs (event_id, action_id, mapping_id, environment, source, action_type, status, \
                 parameters, payload, result, error, attempts, replay_of, inserted_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            insert_action_timeline: p(format!(
                "INSERT INTO {ks}.action_timeline (environment, slice, bucket, inserted_at, action_id, event_id, source, action_type, status, workflow) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            select_action_status: p(format!(
                "SELECT status, attempts, inserted_at FROM {ks}.action_logs WHERE event_id = ? AND action_id = ?"
            ))
            .await?,
            select_user: p(format!("SELECT properties FROM {ks}.users WHERE environment = ? AND user_id = ?")).await?,
            upsert_user: p(format!(
                "INSERT INTO {ks}.users (environment, user_id, properties, updated_at) VALUES (?, ?, ?, ?)"
            ))
            .await?,
            select_tenant: p(format!("SELECT properties FROM {ks}.tenants WHERE environment = ? AND tenant_id = ?")).await?,
            upsert_tenant: p(format!(
                "INSERT INTO {ks}.tenants (environment, tenant_id, properties, updated_at) VALUES (?, ?, ?, ?)"
            ))
            .await?,
            select_dedup: p(format!(
                "SELECT event_id FROM {ks}.dedup_keys WHERE environment = ? AND source = ? AND key = ?"
            ))
            .await?,
            select_dedup_many: p(format!(
                "SELECT key, event_id FROM {ks}.dedup_keys WHERE environment = ? AND source = ? AND key IN ?"
            ))
            .await?,
            insert_member: p(format!(
                "INSERT INTO {ks}.audience_members (environment, audience_key, user_id, tenant, added_at) VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            delete_member: p(format!(
                "DELETE FROM {ks}.audience_members WHERE environment = ? AND audience_key = ? AND user_id = ? AND tenant = ?"
            ))
            .await?,
            select_member: p(format!(
                "SELECT tenant, added_at FROM {ks}.audience_members WHERE environment = ? AND audience_key = ? AND user_id = ?"
            ))
            .await?,
            insert_dedup: p(format!(
                "INSERT INTO {ks}.dedup_keys (environment, source, key, event_id) VALUES (?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            count_known: p(format!(
                "UPDATE {ks}.known_event_counts SET seen = seen + ? WHERE source = ? AND environment = ? AND event_type = ? AND name = ?"
            ))
            .await?,
            seen_known: p(format!(
                "INSERT INTO {ks}.known_event_last_seen (source, environment, event_type, name, last_seen) VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            count_daily: p(format!(
                "UPDATE {ks}.source_daily_counts SET events = events + ? WHERE source = ? AND environment = ? AND day = ?"
            ))
            .await?,
            insert_slice: p(format!(
                "INSERT INTO {ks}.timeline_slices (environment, kind, day, slice, buckets) VALUES (?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?,
            select_slices: p(format!(
                "SELECT slice, buckets FROM {ks}.timeline_slices WHERE environment = ? AND kind = ? AND day = ? AND slice <= ? AND slice >= ?"
            ))
            .await?,
        })
    }
}

impl crate::Store {
    /// Background work the node is doing or has queued: compactions and memtable flushes
    /// (active + pending tasks of their pools). Benchmarks wait for 0 before measuring, so one
    /// measurement does not pay for the writes of the one before. Cassandra 4+ only
    /// (`system_views.thread_pools`); elsewhere an error.
    pub async fn background_tasks(&self) -> Result<i64, StoreError> {
        let rows = self
            .session
            .query_unpaged("SELECT name, active_tasks, pending_tasks FROM system_views.thread_pools", ())
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        let mut busy = 0i64;
        for row in rows.rows::<(String, Option<i32>, Option<i32>)>().map_err(unavailable)? {
            let (name, active, pending) = row.map_err(unavailable)?;
            if name.starts_with("Compaction") || name.contains("MemtableFlush") || name == "MemtablePostFlush" {
                busy += i64::from(active.unwrap_or(0)) + i64::from(pending.unwrap_or(0));
            }
        }
        Ok(busy)
    }

    /// Drop this store's keyspace and everything in it (tests and benchmarks clean up with it).
    pub async fn drop_keyspace(&self) -> Result<(), StoreError> {
        self.session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", self.ks), &[]).await.map_err(db)?;
        Ok(())
    }
}
