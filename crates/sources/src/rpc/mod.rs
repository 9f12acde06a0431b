//! JSON-RPC 2.0 destination protocols, server side: Hightouch's Embedded Destination and
//! Census's Custom Destination API call one URL per source environment
//! (`/integrations/receive/{token}/rpc`). Pure: the gateway verifies nothing itself, it calls
//! [`process_call`], produces the rows it returns, and answers with [`RowsAnswer::result`].
//!
//! Each data row becomes one item, a row envelope ([`row`]) that the translator normalizes
//! into an event `hightouch.add`, `census.upsert`, ...: the row's id column is the user id, the
//! row (without it) the data. Configuration calls (`list_objects`, ...) are answered at once.
//!
//! Replies follow JSON-RPC 2.0: `{"jsonrpc":"2.0","id":...,"result":...}` or an `error`
//! object with the standard codes (-32700 parse error, -32600 invalid request, -32601 method
//! not found, -32602 invalid params). A row that cannot be used is not an error of the call:
//! it is reported per row (Hightouch `rejectedRows`, Census `record_results`) and logged as a
//! rejected event.

pub mod census;
pub mod hightouch;
pub mod row;

use crate::error::RequestError;
use crate::normalize::{screen_item, NormalizeInput, Screened};
use crate::pipeline::ProcessedItem;
use crate::request::{decode_body, keepable_headers};
use crate::verify;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tributary_model::{EnvironmentSettings, Template};

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into() }
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        RpcError::new(INVALID_PARAMS, message)
    }
}

/// A call's reply body.
pub fn reply(id: &Value, outcome: Result<Value, RpcError>) -> Value {
    match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}}),
    }
}

/// What a method call asks of the gateway.
pub enum Dispatch {
    /// Answer with this now (configuration methods).
    Answer(Result<Value, RpcError>),
    /// Store these row envelopes, then answer per row.
    Rows { rows: Vec<Box<RawValue>>, answer: RowsAnswer },
}

/// How a data call's per-row outcomes become its result.
pub enum RowsAnswer {
    /// `{"rejectedRows": [{"id": <primary key>, "reason": ...}]}`; one key per row.
    Hightouch { keys: Vec<Value> },
    /// `{"record_results": [{"identifier", "success", "error_message"?}]}`; one per record.
    Census { identifiers: Vec<Value> },
}

impl RowsAnswer {
    /// The result, given each row's outcome in order (`Err(message)` = rejected).
    pub fn result(&self, outcomes: &[Result<(), String>]) -> Value {
        match self {
            RowsAnswer::Hightouch { keys } => {
                let rejected: Vec<Value> = outcomes
                    .iter()
                    .zip(keys)
                    .filter_map(|(o, k)| o.as_ref().err().map(|why| json!({"id": k, "reason": why})))
                    .collect();
                json!({"rejectedRows": rejected})
            }
            RowsAnswer::Census { identifiers } => {
                let results: Vec<Value> = outcomes
                    .iter()
                    .zip(identifiers)
                    .map(|(o, id)| match o {
                        Ok(()) => json!({"identifier": id, "success": true}),
                        Err(why) => json!({"identifier": id, "success": false, "error_message": why}),
                    })
                    .collect();
                json!({"record_results": results})
            }
        }
    }
}

/// A verified call, parsed; for a data call, each row screened like any other item.
pub struct ProcessedCall {
    pub verification: &'static str,
    /// Headers worth keeping with each row (credentials removed).
    pub headers: Map<String, Value>,
    /// The call's `id` (null when it could not be read).
    pub id: Value,
    pub reply: CallReply,
}

pub enum CallReply {
    Now(Result<Value, RpcError>),
    Rows { items: Vec<ProcessedItem<Screened>>, answer: RowsAnswer },
}

/// Decode, verify (the environment's scheme: bearer token or shared-secret header, as both
/// tools send custom headers), parse and dispatch one call. A request error (credentials, size,
/// encoding) refuses the request at the HTTP level; everything after verification is a
/// JSON-RPC reply.
pub fn process_call(
    template: Template,
    settings: &EnvironmentSettings,
    headers: &[(String, String)],
    body: &[u8],
    max_body: usize,
    now_ms: i64,
) -> Result<ProcessedCall, RequestError> {
    let encoding = headers.iter().find(|(k, _)| k == "content-encoding").map(|(_, v)| v.as_str());
    let decoded = decode_body(encoding, body, max_body)?;
    let verification = verify::verify(&settings.verification, headers, &decoded, now_ms / 1000)?;
    let kept = keepable_headers(settings, headers);
    let (id, dispatch) = match parse_envelope(&decoded) {
        Err(e) => (Value::Null, Dispatch::Answer(Err(e))),
        Ok(call) => {
            let d = match template {
                Template::Hightouch => hightouch::dispatch(&call),
                Template::Census => census::dispatch(&call),
                other => Dispatch::Answer(Err(RpcError::new(
                    METHOD_NOT_FOUND,
                    format!("a {other} source does not take JSON-RPC calls (only hightouch and census do)"),
                ))),
            };
            (call.id, d)
        }
    };
    let reply = match dispatch {
        Dispatch::Answer(a) => CallReply::Now(a),
        Dispatch::Rows { rows, answer } => {
            let items = rows
                .into_iter()
                .enumerate()
                .map(|(i, raw)| {
                    let outcome = screen_item(&NormalizeInput {
                        template,
                        settings,
                        item: &raw,
                        batch_context: None,
                        batch_integrations: None,
                        headers: &kept,
                        implied_type: None,
                        received_at: now_ms,
                        rpc: true,
                    });
                    ProcessedItem { index: i as u32, raw, outcome }
                })
                .collect();
            CallReply::Rows { items, answer }
        }
    };
    Ok(ProcessedCall { verification, headers: kept, id, reply })
}

/// A JSON-RPC request, its params an object.
pub struct Call {
    pub id: Value,
    pub method: String,
    pub params: Map<String, Value>,
}

fn parse_envelope(body: &[u8]) -> Result<Call, RpcError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| RpcError::new(PARSE_ERROR, format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = v else {
        // Neither tool sends batch arrays (Census: "no batch arrays").
        return Err(RpcError::new(INVALID_REQUEST, "a request must be one JSON-RPC object (batches are not supported)"));
    };
    match obj.get("jsonrpc") {
        None => {}
        Some(Value::String(s)) if s == "2.0" => {}
        Some(other) => return Err(RpcError::new(INVALID_REQUEST, format!("`jsonrpc` must be \"2.0\", found {other}"))),
    }
    let id = obj.remove("id").unwrap_or(Value::Null);
    if !matches!(id, Value::String(_) | Value::Number(_) | Value::Null) {
        return Err(RpcError::new(INVALID_REQUEST, "`id` must be a string or a number"));
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => return Err(RpcError::new(INVALID_REQUEST, "`method` must be a string")),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err(RpcError::invalid_params("`params` must be an object (named parameters)")),
    };
    Ok(Call { id, method, params })
}

/// The raw bytes of each element of `params.<key>`, an array of objects (rows are kept byte
/// for byte, like every other item).
pub(crate) fn rows_of(params: &Map<String, Value>, key: &str) -> Result<Vec<Value>, RpcError> {
    match params.get(key) {
        Some(Value::Array(rows)) => Ok(rows.clone()),
        Some(_) => Err(RpcError::invalid_params(format!("`params.{key}` must be an array"))),
        None => Err(RpcError::invalid_params(format!("`params.{key}` is missing"))),
    }
}

pub(crate) fn raw(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).expect("a JSON value serializes")
}
