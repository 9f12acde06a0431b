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

/// One event, raw and normalized, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLog {
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
    /// The item as received (JSON text).
    pub raw: Value,
    /// The normalized form, when there is one.
    pub normalized: Option<Value>,
    pub duplicate_of: Option<String>,
    pub received_at: i64,
    pub inserted_at: i64,
    /// Seconds left before the row expires (retention), as the store reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i32>,
}

/// An event log on its way to the store (executor → action-logs topic → log writer → CQL):
/// [`EventLog`] with the item as received and its normalized form kept as JSON text. Passing
/// it along then builds no JSON trees: the executor writes the text once, the log writer reads
/// it back as text and hands it to the store as is. (As trees, the payload was parsed and
/// serialized twice more per event; `perf` on the executor under load showed allocation and
/// `serde_json` trees as its largest CPU share.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventLogRecord {
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
    pub raw: Box<RawValue>,
    pub normalized: Option<Box<RawValue>>,
    pub duplicate_of: Option<String>,
    pub received_at: i64,
    pub inserted_at: i64,
}

impl From<&EventLog> for EventLogRecord {
    fn from(l: &EventLog) -> Self {
        let text = |v: &Value| serde_json::value::to_raw_value(v).unwrap_or_else(|_| null());
        EventLogRecord {
            event_id: l.event_id.clone(),
            request_id: l.request_id.clone(),
            source: l.source.clone(),
            environment: l.environment.clone(),
            event_type: l.event_type.clone(),
            name: l.name.clone(),
            user_id: l.user_id.clone(),
            status: l.status.clone(),
            error_code: l.error_code.clone(),
            error_message: l.error_message.clone(),
            verification: l.verification.clone(),
            raw: text(&l.raw),
            normalized: l.normalized.as_ref().map(text),
            duplicate_of: l.duplicate_of.clone(),
            received_at: l.received_at,
            inserted_at: l.inserted_at,
        }
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
