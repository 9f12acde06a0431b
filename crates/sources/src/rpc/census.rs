//! Census Custom Destination API, version 1: the six methods Census calls
//! (https://developers.getcensus.com/custom-destinations; `sutrolabs/census-custom-api-docs`).
//!
//! Two objects: `audience_member` (Knock's shape: User ID identifier, a required audience
//! key, an optional tenant; "Create Only" and "Mirror") and `event` (any rows as events, new
//! fields created on write). `sync_batch` turns each record into an event `census.insert`,
//! `census.update`, `census.upsert` or `census.delete`, and answers `record_results` for
//! every record. Census cannot see what is stored, so `insert` and `update` are applied like
//! `upsert` (an add of an existing member is a success).

use super::row::RowEnvelope;
use super::{raw, rows_of, Call, Dispatch, RowsAnswer, RpcError, METHOD_NOT_FOUND};
use serde_json::{json, Map, Value};

pub const OPERATIONS: [&str; 4] = ["insert", "update", "upsert", "delete"];

pub fn dispatch(call: &Call) -> Dispatch {
    let p = &call.params;
    let answer = |r: Result<Value, RpcError>| Dispatch::Answer(r);
    match call.method.as_str() {
        "test_connection" => answer(Ok(json!({"success": true}))),
        "list_objects" => answer(Ok(json!({"objects": [
            {"object_api_name": "audience_member", "label": "Audiences"},
            {"object_api_name": "event", "label": "Events", "can_create_fields": "on_write"},
        ]}))),
        "list_fields" => answer(object_of(p).map(|o| {
            let f = |name: &str, label: &str, identifier: bool, required: bool| {
                json!({"field_api_name": name, "label": label, "identifier": identifier, "required": required,
                       "createable": true, "updateable": !identifier, "type": "string", "array": false})
            };
            match o.as_str() {
                "audience_member" => json!({"fields": [
                    f("user_id", "User ID", true, true),
                    f("audience_key", "Audience key", false, true),
                    f("tenant", "Tenant", false, false),
                ]}),
                _ => json!({"fields": [f("user_id", "User ID", true, true)]}),
            }
        })),
        "supported_operations" => answer(object_of(p).map(|o| match o.as_str() {
            "audience_member" => json!({"operations": ["insert", "mirror"]}),
            _ => json!({"operations": ["insert", "update", "upsert", "mirror"]}),
        })),
        // Parameters are ignored: drafts before April 2021 sent a sync plan here.
        "get_sync_speed" => answer(Ok(json!({
            "maximum_batch_size": 500,
            "maximum_parallel_batches": 4,
            "maximum_records_per_second": 1000,
        }))),
        "sync_batch" => match sync_batch(call) {
            Ok(d) => d,
            Err(e) => answer(Err(e)),
        },
        other => answer(Err(RpcError::new(METHOD_NOT_FOUND, format!("unknown method `{other}`")))),
    }
}

/// `params.object.object_api_name`.
fn object_of(p: &Map<String, Value>) -> Result<String, RpcError> {
    p.get("object")
        .and_then(|o| o.get("object_api_name"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| RpcError::invalid_params("`params.object.object_api_name` must be a string"))
}

fn sync_batch(call: &Call) -> Result<Dispatch, RpcError> {
    let plan = call
        .params
        .get("sync_plan")
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid_params("`params.sync_plan` must be an object"))?;
    let operation = plan.get("operation").and_then(Value::as_str).unwrap_or("");
    if !OPERATIONS.contains(&operation) {
        return Err(RpcError::invalid_params(format!("`sync_plan.operation` must be one of {}", OPERATIONS.join(", "))));
    }
    // The sync key: the schema entry marked `active_identifier`.
    let id_column = plan
        .get("schema")
        .and_then(Value::as_object)
        .and_then(|s| s.iter().find(|(_, f)| f.get("active_identifier") == Some(&Value::Bool(true))))
        .map(|(name, _)| name.clone())
        .ok_or_else(|| RpcError::invalid_params("`sync_plan.schema` has no field with `active_identifier: true`"))?;
    let object = plan.get("object").and_then(|o| o.get("object_api_name")).cloned();
    let records = rows_of(&call.params, "records")?;
    let mut identifiers = Vec::with_capacity(records.len());
    let mut envelopes = Vec::with_capacity(records.len());
    for row in records {
        identifiers.push(row.get(&id_column).cloned().unwrap_or(Value::Null));
        let env = RowEnvelope {
            protocol: "census".into(),
            operation: operation.into(),
            call_id: call.id.clone(),
            id_column: id_column.clone(),
            configuration: None,
            sync_id: plan.get("sync_id").cloned(),
            sync_run_id: plan.get("sync_run_id").cloned(),
            object: object.clone(),
            row,
        };
        envelopes.push(raw(&serde_json::to_value(&env).expect("plain data")));
    }
    Ok(Dispatch::Rows { rows: envelopes, answer: RowsAnswer::Census { identifiers } })
}
