//! Event logs and action logs. Each is written with a TTL from the environment's retention,
//! once to its own table (keyed by id, so a retried write is an idempotent upsert) and once to
//! its timeline (timeline.rs: a partition per environment, minute and bucket) that lists
//! newest first.

use crate::coalesce::PartitionKey;
use crate::timeline::{bucket_of, slice_of, Kind};
use crate::{db, now_ms, unavailable, Store, StoreError};
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use serde_json::Value;
use serde_json::value::RawValue;
use tributary_model::{ActionLog, EventLog, EventLogRecord};

fn to_json(v: &Value) -> String {
    v.to_string()
}

fn from_json(s: Option<String>) -> Option<Value> {
    s.and_then(|t| serde_json::from_str(&t).ok())
}

#[derive(scylla::DeserializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct EventRow {
    event_id: String,
    request_id: Option<String>,
    environment: Option<String>,
    source: Option<String>,
    event_type: Option<String>,
    name: Option<String>,
    user_id: Option<String>,
    status: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    verification: Option<String>,
    raw: Option<String>,
    normalized: Option<String>,
    duplicate_of: Option<String>,
    received_at: Option<i64>,
    inserted_at: Option<i64>,
    ttl: Option<i32>,
}

#[derive(scylla::SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct EventInsert<'a> {
    event_id: &'a str,
    request_id: &'a str,
    environment: &'a str,
    source: &'a str,
    event_type: Option<&'a str>,
    name: Option<&'a str>,
    user_id: Option<&'a str>,
    status: &'a str,
    error_code: Option<&'a str>,
    error_message: Option<&'a str>,
    verification: &'a str,
    raw: &'a str,
    normalized: Option<&'a str>,
    duplicate_of: Option<&'a str>,
    received_at: i64,
    inserted_at: i64,
    ttl: i32,
}

type ActionRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i32>,
);

/// An event-timeline row (owned: it waits in the [`Coalescer`](crate::coalesce) for its batch);
/// its first three values are its partition.
pub(crate) type EventTimelineRow = (String, i64, i32, i64, String, String, Option<String>, Option<String>, Option<String>, String, i32);
/// An action-timeline row, partition first as well.
pub(crate) type ActionTimelineRow = (String, i64, i32, i64, String, String, String, String, String, Option<String>, i32);

pub(crate) fn event_timeline_partition(r: &EventTimelineRow) -> PartitionKey {
    (r.0.clone(), r.1, r.2)
}

pub(crate) fn action_timeline_partition(r: &ActionTimelineRow) -> PartitionKey {
    (r.0.clone(), r.1, r.2)
}

fn event_timeline_row(log: &EventLogRecord, buckets: i32, ttl_secs: i32) -> EventTimelineRow {
    (
        log.environment.clone(),
        slice_of(log.received_at),
        bucket_of(&log.event_id, buckets),
        log.received_at,
        log.event_id.clone(),
        log.source.clone(),
        log.event_type.clone(),
        log.name.clone(),
        log.user_id.clone(),
        log.status.clone(),
        ttl_secs,
    )
}

fn action_timeline_row(log: &ActionLog, workflow: Option<&str>, buckets: i32, ttl_secs: i32) -> ActionTimelineRow {
    (
        log.environment.clone(),
        slice_of(log.inserted_at),
        bucket_of(&log.action_id, buckets),
        log.inserted_at,
        log.action_id.clone(),
        log.event_id.clone(),
        log.source.clone(),
        log.action_type.clone(),
        log.status.clone(),
        workflow.map(str::to_string),
        ttl_secs,
    )
}

type Values<'a> = Box<dyn SerializeRow + Send + Sync + 'a>;

fn event_insert(log: &EventLogRecord, ttl_secs: i32) -> EventInsert<'_> {
    EventInsert {
        event_id: &log.event_id,
        request_id: &log.request_id,
        environment: &log.environment,
        source: &log.source,
        event_type: log.event_type.as_deref(),
        name: log.name.as_deref(),
        user_id: log.user_id.as_deref(),
        status: &log.status,
        error_code: log.error_code.as_deref(),
        error_message: log.error_message.as_deref(),
        verification: &log.verification,
        raw: log.raw.get(),
        normalized: log.normalized.as_deref().map(RawValue::get),
        duplicate_of: log.duplicate_of.as_deref(),
        received_at: log.received_at,
        inserted_at: log.inserted_at,
        ttl: ttl_secs,
    }
}

fn action_insert(log: &ActionLog, ttl_secs: i32) -> impl SerializeRow + Send + Sync + '_ {
    (
        &log.event_id,
        &log.action_id,
        &log.mapping_id,
        &log.environment,
        &log.source,
        &log.action_type,
        &log.status,
        to_json(&log.parameters),
        log.payload.as_ref().map(to_json),
        log.result.as_ref().map(to_json),
        &log.error,
        log.attempts,
        &log.replay_of,
        log.inserted_at,
        log.updated_at,
        ttl_secs,
    )
}

impl Store {
    /// An event log: its row and its timeline entry.
    pub async fn write_event_log(&self, log: &EventLog, ttl_secs: i32) -> Result<(), StoreError> {
        self.write_logs(Some(&EventLogRecord::from(log)), &[], ttl_secs).await
    }

    /// An action log (`workflow`: the workflow it triggered or cancelled, for the listing's
    /// filter): its row and its timeline entry.
    pub async fn write_action_log(&self, log: &ActionLog, workflow: Option<&str>, ttl_secs: i32) -> Result<(), StoreError> {
        self.write_logs(None, &[(log, workflow)], ttl_secs).await
    }

    /// An event's log and its actions' logs (all of one event: `actions` must carry the event
    /// log's event id), in as few requests as their partitions allow:
    /// - the rows, one request: `event_logs` and `action_logs` are both partitioned by event id,
    ///   so together they are one unlogged batch on one partition (one mutation, one replica set);
    /// - each timeline entry through the coalescer, which sends the entries waiting for one
    ///   timeline partition as one batch (coalesce.rs);
    /// - the slice index, once per minute and process (timeline.rs).
    ///
    /// Every write is an upsert keyed by id, so writing the same logs again leaves the same rows.
    /// Measured on this machine (20,000 events, 64 and 256 in flight, three rounds): 17,000–19,000
    /// events/s this way against 10,700–15,700 with each of the four rows its own request.
    pub async fn write_logs(&self, event: Option<&EventLogRecord>, actions: &[(&ActionLog, Option<&str>)], ttl_secs: i32) -> Result<(), StoreError> {
        let st = &self.stmts;
        let mut statements: Vec<&scylla::statement::prepared::PreparedStatement> = Vec::with_capacity(1 + actions.len());
        let mut values: Vec<Values<'_>> = Vec::with_capacity(1 + actions.len());
        if let Some(log) = event {
            statements.push(&st.insert_event_log);
            values.push(Box::new(event_insert(log, ttl_secs)));
        }
        for (log, _) in actions {
            debug_assert!(event.is_none_or(|e| e.event_id == log.event_id), "one event's logs per call");
            statements.push(&st.insert_action_log);
            values.push(Box::new(action_insert(log, ttl_secs)));
        }
        let rows = async {
            match statements.len() {
                0 => Ok(()),
                1 => self.session.execute_unpaged(statements[0], &values[0]).await.map(drop).map_err(db),
                _ => {
                    let mut batch = Batch::new(BatchType::Unlogged);
                    for s in &statements {
                        batch.append_statement((*s).clone());
                    }
                    self.session.batch(&batch, &values).await.map(drop).map_err(db)
                }
            }
        };
        let mut timelines: Vec<futures::future::BoxFuture<'_, Result<(), StoreError>>> = Vec::with_capacity(2 * (1 + actions.len()));
        if let Some(log) = event {
            timelines.push(Box::pin(self.event_timeline.write(&self.session, event_timeline_row(log, self.buckets, ttl_secs))));
            timelines.push(Box::pin(self.index_slice(&log.environment, Kind::Events, log.received_at, ttl_secs)));
        }
        for (log, workflow) in actions {
            timelines.push(Box::pin(self.action_timeline.write(&self.session, action_timeline_row(log, *workflow, self.buckets, ttl_secs))));
            timelines.push(Box::pin(self.index_slice(&log.environment, Kind::Actions, log.inserted_at, ttl_secs)));
        }
        let (rows, timelines) = futures::join!(rows, futures::future::join_all(timelines));
        rows?;
        timelines.into_iter().collect()
    }

    pub async fn get_event_log(&self, event_id: &str) -> Result<Option<EventLog>, StoreError> {
        let q = format!(
            "SELECT event_id, request_id, environment, source, event_type, name, user_id, status, error_code, error_message, \
             verification, raw, normalized, duplicate_of, received_at, inserted_at, TTL(status) FROM {}.event_logs WHERE event_id = ?",
            self.ks
        );
        let rows = self.session.query_unpaged(q, (event_id,)).await.map_err(db)?.into_rows_result().map_err(unavailable)?;
        let Some(r) = rows.maybe_first_row::<EventRow>().map_err(unavailable)? else { return Ok(None) };
        let s = |o: Option<String>| o.unwrap_or_default();
        Ok(Some(EventLog {
            event_id: r.event_id,
            request_id: s(r.request_id),
            environment: s(r.environment),
            source: s(r.source),
            event_type: r.event_type,
            name: r.name,
            user_id: r.user_id,
            status: s(r.status),
            error_code: r.error_code,
            error_message: r.error_message,
            verification: s(r.verification),
            raw: from_json(r.raw).unwrap_or(Value::Null),
            normalized: from_json(r.normalized),
            duplicate_of: r.duplicate_of,
            received_at: r.received_at.unwrap_or(0),
            inserted_at: r.inserted_at.unwrap_or(0),
            ttl: r.ttl,
        }))
    }

    /// (status, attempts, inserted_at) of an action, if it was logged before.
    pub async fn action_status(&self, event_id: &str, action_id: &str) -> Result<Option<(String, i32, i64)>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.stmts.select_action_status, (event_id, action_id))
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        let r = rows.maybe_first_row::<(Option<String>, Option<i32>, Option<i64>)>().map_err(unavailable)?;
        Ok(r.map(|(s, a, t)| (s.unwrap_or_default(), a.unwrap_or(0), t.unwrap_or_else(now_ms))))
    }

    pub async fn action_logs_for_event(&self, event_id: &str) -> Result<Vec<ActionLog>, StoreError> {
        let q = format!(
            "SELECT event_id, action_id, mapping_id, environment, source, action_type, status, parameters, payload, result, \
             error, attempts, replay_of, inserted_at, updated_at, TTL(status) FROM {}.action_logs WHERE event_id = ?",
            self.ks
        );
        let rows = self.session.query_unpaged(q, (event_id,)).await.map_err(db)?.into_rows_result().map_err(unavailable)?;
        let mut out = Vec::new();
        for r in rows.rows::<ActionRow>().map_err(unavailable)? {
            let r = r.map_err(unavailable)?;
            let s = |o: Option<String>| o.unwrap_or_default();
            out.push(ActionLog {
                event_id: r.0,
                action_id: r.1,
                mapping_id: s(r.2),
                environment: s(r.3),
                source: s(r.4),
                action_type: s(r.5),
                status: s(r.6),
                parameters: from_json(r.7).unwrap_or(Value::Null),
                payload: from_json(r.8),
                result: from_json(r.9),
                error: r.10,
                attempts: r.11.unwrap_or(0),
                replay_of: r.12,
                inserted_at: r.13.unwrap_or(0),
                updated_at: r.14.unwrap_or(0),
                ttl: r.15,
            });
        }
        out.sort_by_key(|a| (a.inserted_at, a.action_id.clone()));
        Ok(out)
    }
}

impl Store {
    /// (event_id, received_at) of every event of one environment received since `since_ms`
    /// (benchmarks, checks).
    pub async fn event_times(&self, environment: &str, since_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let q = format!(
            "SELECT received_at, event_id FROM {}.event_timeline WHERE environment = ? AND slice = ? AND bucket = ? AND received_at <= ? AND received_at >= ?",
            self.ks
        );
        self.times(Kind::Events, &q, environment, since_ms).await
    }

    /// (event_id, listed_at) of every action of one environment logged since `since_ms`, where
    /// `listed_at` (ms) is when its listing entry was written (the cell's write time, which the
    /// node assigns): from then on the action log can be found. Its `inserted_at` is earlier,
    /// when the executor ran the action; the log is written after that, by the log writer.
    pub async fn action_times(&self, environment: &str, since_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let q = format!(
            "SELECT inserted_at, event_id, WRITETIME(event_id) FROM {}.action_timeline WHERE environment = ? AND slice = ? AND bucket = ? AND inserted_at <= ? AND inserted_at >= ?",
            self.ks
        );
        let mut out = Vec::new();
        self.walk_timeline::<(i64, String, Option<i64>)>(Kind::Actions, &q, environment, since_ms..=now_ms() + 60_000, |r| (r.0, &r.1), |(t, id, written)| {
            out.push((id, written.map_or(t, |us| us / 1000)));
            true
        })
        .await?;
        Ok(out)
    }

    async fn times(&self, kind: Kind, q: &str, environment: &str, since_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        self.walk_timeline::<(i64, String)>(kind, q, environment, since_ms..=now_ms() + 60_000, |r| (r.0, &r.1), |(t, id)| {
            out.push((id, t));
            true
        })
        .await?;
        Ok(out)
    }
}
