//! `POST /integrations/receive/{token}/rpc`: the JSON-RPC endpoint of a Hightouch (Embedded
//! Destination) or Census (Custom Destination API) source environment. The protocol lives in
//! `tributary_sources::rpc`; this handler looks up the token, stores the rows of a data call
//! in Kafka like any received item (every row, refused ones too, acknowledged before the
//! answer), and answers.
//!
//! HTTP status: 200 for every JSON-RPC reply, errors included (the vendors' reference servers
//! do the same); 401 for a failed verification, 404 for an unknown token or a source of
//! another template, 413/415 for a body that cannot be read, 503 + `Retry-After` while Kafka
//! does not acknowledge, so the tool retries the call. Those bodies are JSON-RPC error
//! objects too, with the gateway's error code in `data.code`.

use crate::error::GatewayError;
use crate::handler::{count_refusals, observe, produce_all, read_and_accept, unknown, Accepted, GatewayState, Refused};
use crate::metrics;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use tributary_model::event::{RawEventCommon, RawEventEncoder};
use tributary_model::Template;
use tributary_sources::rpc::{process_call, reply, CallReply};
use tributary_sources::{records_of, RawRecords};

/// JSON-RPC server error code for refusals at the HTTP level (the range -32000..-32099 is the
/// implementation's own).
const REFUSED: i64 = -32000;

pub async fn rpc(State(st): State<Arc<GatewayState>>, Path(token): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let (st, token, headers) = (st.as_ref(), token.as_str(), &headers);
    let result = read_and_accept(st, body, |snapshot, raw| async move { accept_call(st, &snapshot, token, headers, &raw).await }).await;
    observe(&result, started);
    match result {
        Ok((status, body, _, _)) => (status, axum::Json(body)).into_response(),
        Err((e, _, _)) => refusal(e),
    }
}

async fn accept_call(
    st: &GatewayState,
    snapshot: &tributary_store::Snapshot,
    token: &str,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Accepted, Refused> {
    let header_list: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_string())))
        .collect();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let (settings, template) = snapshot.by_token(token, now_ms).ok_or_else(|| unknown(GatewayError::UnknownToken))?;
    let labels = |e: GatewayError| (e, template.as_str().to_string(), settings.environment.clone());
    if !matches!(template, Template::Hightouch | Template::Census) {
        return Err(labels(GatewayError::NotRpc(template)));
    }
    let call = process_call(template, settings, &header_list, raw, st.max_body, now_ms).map_err(|e| labels(e.into()))?;
    let answer = match call.reply {
        CallReply::Now(outcome) => {
            if let Err(e) = &outcome {
                metrics::RPC_ERRORS.with_label_values(&[template.as_str(), &e.code.to_string()]).inc();
            }
            reply(&call.id, outcome)
        }
        CallReply::Rows { items, answer } => {
            let request_id = tributary_model::ids::random_id();
            let encoder = RawEventEncoder::new(&RawEventCommon {
                request_id: &request_id,
                source: &settings.source,
                environment: &settings.environment,
                template,
                received_at: now_ms,
                verification: call.verification,
                headers: &call.headers,
                batch_context: None,
                batch_integrations: None,
                implied_type: None,
                refused: None,
                rpc: true,
            });
            let RawRecords { records, rejected } = records_of(&settings.environment, &request_id, &encoder, &items);
            count_refusals(records.len(), rejected);
            // Every row is durably in Kafka before the tool hears that it succeeded.
            produce_all(st, settings, &request_id, now_ms, &records).await.map_err(labels)?;
            let outcomes: Vec<Result<(), String>> = items
                .iter()
                .map(|i| i.outcome.as_ref().map(|_| ()).map_err(|e| format!("{}: {}", e.code, e.message)))
                .collect();
            let mut body = reply(&call.id, Ok(answer.result(&outcomes)));
            // Not part of either protocol (both ignore unknown keys): which request to look up.
            body["request_id"] = json!(request_id);
            body
        }
    };
    Ok((StatusCode::OK, answer, template, settings.environment.clone()))
}

/// An HTTP-level refusal, as a JSON-RPC error object (the call's id is unknown here).
fn refusal(e: GatewayError) -> Response {
    let status = e.status();
    if status.is_server_error() {
        tracing::warn!(code = e.code(), error = %e, "JSON-RPC call not accepted");
    }
    let body = json!({"jsonrpc": "2.0", "id": Value::Null,
                      "error": {"code": REFUSED, "message": e.to_string(), "data": {"code": e.code()}}});
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(secs) = e.retry_after() {
        resp.headers_mut().insert("retry-after", HeaderValue::from_static(secs));
    }
    resp
}
