//! One row of a JSON-RPC data call, as stored and as normalized.
//!
//! The envelope keeps the row exactly and what the call said about it:
//! `{"protocol":"census","operation":"upsert","call_id":"5da3…","id_column":"user_id",
//!   "sync_id":309,"sync_run_id":602,"object":"audience_member","row":{...}}`
//! (Hightouch: `configuration` instead of the sync fields). Normalized, it is an event of type
//! `<protocol>.<operation>` whose user id is the row's id column, whose data is the rest of
//! the row, and whose `event` is the envelope (so a mapping reaches
//! `event.configuration.audience_key`).
//!
//! Idempotency key: a resent call must not fire twice, a later add after a remove must.
//! - Census: `census:<sync_id>:<sync_run_id>:<operation>:<user id>`: Census retries records
//!   and batches within a run with the same `sync_run_id` (and sends a record again in a later
//!   run only when it failed or its source changed, which must fire).
//! - Hightouch: `hightouch:<call id>:<operation>:<user id>`: the call carries no run id; a
//!   resent call is recognised by its JSON-RPC `id` (that Hightouch keeps the id on a resend
//!   is not documented).

use crate::error::ItemErrorCode;
use crate::normalize::{id_value, INGESTION, MAX_KEY_CHARS};
use crate::timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tributary_model::{ItemError, NormalizedEvent};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowEnvelope {
    pub protocol: String,
    pub operation: String,
    pub call_id: Value,
    /// The row field that holds the user id.
    pub id_column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_run_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    pub row: Value,
}

pub fn normalize_row(envelope: &Value, received_at: i64) -> Result<NormalizedEvent, ItemError> {
    let env: RowEnvelope = serde_json::from_value(envelope.clone())
        .map_err(|e| ItemErrorCode::NotAnObject.with(format!("not a JSON-RPC row envelope: {e}")))?;
    let Value::Object(row) = &env.row else {
        return Err(ItemErrorCode::NotAnObject.with("each row must be a JSON object"));
    };
    let col = &env.id_column;
    let user_id = match row.get(col) {
        None => None,
        Some(v) => id_value(v).map_err(|why| ItemErrorCode::InvalidUserId.with(format!("`{col}` {why}")))?,
    }
    .ok_or_else(|| ItemErrorCode::MissingIdentity.with(format!("the row has no `{col}` (its user id)")))?;
    let mut data: Map<String, Value> = row.clone();
    data.shift_remove(col);
    let key = match env.protocol.as_str() {
        "census" => format!(
            "census:{}:{}:{}:{user_id}",
            scalar(env.sync_id.as_ref()),
            scalar(env.sync_run_id.as_ref()),
            env.operation
        ),
        _ => format!("{}:{}:{}:{user_id}", env.protocol, scalar(Some(&env.call_id)), env.operation),
    };
    Ok(NormalizedEvent {
        event_type: format!("{}.{}", env.protocol, env.operation),
        name: None,
        user_id: Some(user_id),
        anonymous_id: None,
        data: Value::Object(data),
        event: envelope.clone(),
        timestamp: timestamp::format_ms(received_at),
        timestamp_source: Some(INGESTION.to_string()),
        // Over-long keys (ids near the limit) are dropped rather than cut: a cut key could
        // collide with another row's.
        idempotency_key: (key.chars().count() <= MAX_KEY_CHARS).then_some(key),
        group_id: None,
        previous_id: None,
        unsupported: false,
    })
}

fn scalar(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_row_becomes_an_event_without_its_id_column() {
        let env = json!({"protocol": "census", "operation": "upsert", "call_id": "c1", "id_column": "user_id",
                         "sync_id": 309, "sync_run_id": 602, "object": "audience_member",
                         "row": {"user_id": "user_123", "audience_key": "new-signups"}});
        let n = normalize_row(&env, 0).unwrap();
        assert_eq!(n.event_type, "census.upsert");
        assert_eq!(n.user_id.as_deref(), Some("user_123"));
        assert_eq!(n.data, json!({"audience_key": "new-signups"}));
        assert_eq!(n.idempotency_key.as_deref(), Some("census:309:602:upsert:user_123"));
        assert_eq!(n.event, env);
    }

    #[test]
    fn rows_without_a_usable_id_are_refused_with_a_code() {
        let base = |row: Value| json!({"protocol": "hightouch", "operation": "add", "call_id": 7, "id_column": "user_id", "row": row});
        assert_eq!(normalize_row(&base(json!({"tenant": "acme"})), 0).unwrap_err().code, "missing_identity");
        assert_eq!(normalize_row(&base(json!({"user_id": 1.5})), 0).unwrap_err().code, "invalid_user_id");
        assert_eq!(normalize_row(&base(json!("x")), 0).unwrap_err().code, "not_an_object");
        let n = normalize_row(&base(json!({"user_id": 42, "tenant": null})), 0).unwrap();
        assert_eq!(n.idempotency_key.as_deref(), Some("hightouch:7:add:42"));
        assert_eq!(n.event_type, "hightouch.add");
    }
}
