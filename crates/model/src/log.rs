//! The records users query: what happened to each event, and each action.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// Outcome of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Success,
    Failed,
    Skipped,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Success => "success",
            ActionStatus::Failed => "failed",
            ActionStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Success, Self::Failed, Self::Skipped].into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, raw and normalized, and what became of it. `P` is how its two JSON payloads are
/// held: as trees in [`EventLog`] (what users query), as text in [`EventLogRecord`] (on the
/// way to the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLogOf<P> {
    pub event_id: String,
    pub request_id: String,
    pub source: String,
    pub environment: String,
    pub event_type: Option<String>,
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub verification: String,
    /// The item as received.
    pub raw: P,
    /// The normalized form, when there is one.
    pub normalized: Option<P>,
    pub duplicate_of: Option<String>,
    pub received_at: i64,
    pub inserted_at: i64,
    /// Seconds left before the row expires (retention), as the store reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i32>,
}

/// An event log as users query it.
pub type EventLog = EventLogOf<Value>;

/// An event log on its way to the store (executor → action-logs topic → log writer → CQL), with
/// the item as received and its normalized form kept as JSON text. Passing it along then
/// builds no JSON trees: the executor writes the text once, the log writer reads it back as
/// text and hands it to the store as is. (As trees, the payload was parsed and serialized twice
/// more per event; `perf` on the executor under load showed allocation and `serde_json` trees
/// as its largest CPU share.)
pub type EventLogRecord = EventLogOf<Box<RawValue>>;

impl<P> EventLogOf<P> {
    /// The same log with its payloads converted by `f`.
    pub fn map_payloads<Q>(&self, f: impl Fn(&P) -> Q) -> EventLogOf<Q> {
        EventLogOf {
            event_id: self.event_id.clone(),
            request_id: self.request_id.clone(),
            source: self.source.clone(),
            environment: self.environment.clone(),
            event_type: self.event_type.clone(),
            name: self.name.clone(),
            user_id: self.user_id.clone(),
            status: self.status.clone(),
            error_code: self.error_code.clone(),
            error_message: self.error_message.clone(),
            verification: self.verification.clone(),
            raw: f(&self.raw),
            normalized: self.normalized.as_ref().map(&f),
            duplicate_of: self.duplicate_of.clone(),
            received_at: self.received_at,
            inserted_at: self.inserted_at,
            ttl: self.ttl,
        }
    }
}

impl From<&EventLog> for EventLogRecord {
    fn from(l: &EventLog) -> Self {
        l.map_payloads(|v| serde_json::value::to_raw_value(v).unwrap_or_else(|_| null()))
    }
}

/// JSON `null` as text.
pub fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// What was done for one event by one mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionLog {
    pub action_id: String,
    pub event_id: String,
    pub mapping_id: String,
    pub source: String,
    pub environment: String,
    pub action_type: String,
    pub status: String,
    /// The mapping's parameters as configured.
    pub parameters: Value,
    /// The resolved values the action ran with.
    pub payload: Option<Value>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub attempts: i32,
    /// Set when the action was re-run by a replay: the event log it came from.
    pub replay_of: Option<String>,
    pub inserted_at: i64,
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i32>,
}

/// What the executor did for one action plan, on its way to the store. In exactly-once mode
/// the executor produces it in the same Kafka transaction as the triggers it reports, and the
/// log writer stores it: so a trigger and its `success` log both exist, or neither.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionReport {
    /// Absent for a replay (the event was logged when it first ran).
    pub event_log: Option<EventLogRecord>,
    pub actions: Vec<ReportedAction>,
    /// Retention of the environment, for every row written.
    pub ttl_secs: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedAction {
    pub log: ActionLog,
    /// The workflow a trigger or cancel was for (indexes the action timeline).
    pub workflow: Option<String>,
}
