//! Hightouch Embedded Destination: the methods Hightouch calls (https://hightouch.com/docs/destinations/custom,
//! reference servers in `hightouchio/custom-destinations`).
//!
//! Two objects: `audiences` (Knock's shape: modes Insert only / Mirror, fields User ID and
//! Tenant, an Audience Key option) and `events` (any model's rows as events, for mappings).
//! Configuration methods are answered from that; `add`, `change` and `remove` turn each row
//! into an event `hightouch.add` / `hightouch.change` / `hightouch.remove`.

use super::row::RowEnvelope;
use super::{raw, rows_of, Call, Dispatch, RowsAnswer, RpcError, METHOD_NOT_FOUND};
use serde_json::{json, Map, Value};

/// Rows per data call that `behavior` asks for (the reference servers use 100).
pub const BATCH_SIZE: u64 = 100;

pub fn dispatch(call: &Call) -> Dispatch {
    let p = &call.params;
    let answer = |r: Result<Value, RpcError>| Dispatch::Answer(r);
    match call.method.as_str() {
        "list_objects" => answer(Ok(json!({"objects": [
            {"id": "audiences", "label": "Audiences"},
            {"id": "events", "label": "Events"},
        ]}))),
        "list_modes" => answer(object_of(p).map(|o| match o.as_str() {
            "audiences" => json!({"modes": [
                {"id": "insert", "label": "Insert only", "description": "Adds new rows to the audience."},
                {"id": "mirror", "label": "Mirror", "description": "Adds new rows and removes rows that leave the model."},
            ]}),
            _ => json!({"modes": [
                {"id": "insert", "label": "Insert", "description": "An event for each row added to the model."},
                {"id": "upsert", "label": "Upsert", "description": "An event for each row added or changed."},
                {"id": "mirror", "label": "Mirror", "description": "An event for each row added, changed or removed."},
            ]}),
        })),
        "list_fields" => answer(object_of(p).map(|o| match o.as_str() {
            "audiences" => json!({"fields": [
                {"id": "user_id", "label": "User ID", "type": "STRING", "identifier": true},
                {"id": "tenant", "label": "Tenant", "type": "STRING"},
            ]}),
            // events take the model's columns as they are
            _ => json!({"fields": null}),
        })),
        "list_options" => answer(object_of(p).map(|o| match o.as_str() {
            "audiences" => json!({"options": {
                "schema": {"type": "object", "required": ["audience_key"], "properties": {
                    "audience_key": {"type": "string", "title": "Audience Key", "description": "The key of the audience to sync."}}},
                "uiSchema": {},
            }}),
            _ => json!({"options": null}),
        })),
        "validate" => answer(Ok(json!({"errors": validate(configuration(p))}))),
        "behavior" => answer(Ok(behavior(configuration(p)))),
        op @ ("add" | "change" | "remove") => match rows(call, op) {
            Ok(d) => d,
            Err(e) => answer(Err(e)),
        },
        other => answer(Err(RpcError::new(METHOD_NOT_FOUND, format!("unknown method `{other}`")))),
    }
}

/// `params.object`: an id string, or an object with an `id` (the docs do not say which).
fn object_of(p: &Map<String, Value>) -> Result<String, RpcError> {
    match p.get("object") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| RpcError::invalid_params("`params.object` has no `id`")),
        _ => Err(RpcError::invalid_params("`params.object` must be an object id")),
    }
}

fn configuration(p: &Map<String, Value>) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    p.get("configuration").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn validate(c: &Map<String, Value>) -> Vec<String> {
    let mut errors = Vec::new();
    match c.get("object").and_then(Value::as_str) {
        Some("audiences") => {
            if c.get("audience_key").and_then(Value::as_str).is_none_or(|k| k.trim().is_empty()) {
                errors.push("Audience Key is required".to_string());
            }
        }
        Some("events") | None => {}
        Some(other) => errors.push(format!("unknown object `{other}` (audiences or events)")),
    }
    if let Some(m) = c.get("mode").and_then(Value::as_str) {
        if !["insert", "upsert", "mirror"].contains(&m) {
            errors.push(format!("unknown mode `{m}` (insert, upsert or mirror)"));
        }
    }
    errors
}

/// Which of add, change, remove Hightouch calls: audiences never change (membership has no
/// fields to update), and only mirror removes.
fn behavior(c: &Map<String, Value>) -> Value {
    let mode = c.get("mode").and_then(Value::as_str).unwrap_or("insert");
    let audiences = c.get("object").and_then(Value::as_str) == Some("audiences");
    json!({
        "batchSize": BATCH_SIZE,
        "operations": {
            "add": true,
            "change": !audiences && mode != "insert",
            "remove": mode == "mirror",
        },
        "skipInitialRun": false,
    })
}

fn rows(call: &Call, op: &str) -> Result<Dispatch, RpcError> {
    let p = &call.params;
    let config = configuration(p);
    let id_column = p.get("idColumn").and_then(Value::as_str);
    // The user id is the identifier mapping's column (Hightouch's "User ID" field), else the
    // model's primary key.
    let user_column = config
        .get("identifierMapping")
        .and_then(|m| m.get("from"))
        .and_then(Value::as_str)
        .or(id_column)
        .ok_or_else(|| RpcError::invalid_params("neither `params.idColumn` nor `configuration.identifierMapping.from` names the id column"))?
        .to_string();
    let key_column = id_column.unwrap_or(&user_column).to_string();
    let rows = rows_of(p, "rows")?;
    let mut keys = Vec::with_capacity(rows.len());
    let mut envelopes = Vec::with_capacity(rows.len());
    for row in rows {
        keys.push(row.get(&key_column).cloned().unwrap_or(Value::Null));
        let env = RowEnvelope {
            protocol: "hightouch".into(),
            operation: op.into(),
            call_id: call.id.clone(),
            id_column: user_column.clone(),
            configuration: Some(Value::Object(config.clone())),
            sync_id: None,
            sync_run_id: None,
            object: None,
            row,
        };
        envelopes.push(raw(&serde_json::to_value(&env).expect("plain data")));
    }
    Ok(Dispatch::Rows { rows: envelopes, answer: RowsAnswer::Hightouch { keys } })
}
