//! The request handlers: thin, each step a call into the source layer or the producer.

use crate::error::GatewayError;
use crate::metrics;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tributary_bus::{ProduceError, Producer};
use tributary_model::event::{RawEventCommon, RawEventEncoder};
use tributary_model::{EnvironmentSettings, Template};
use tributary_runtime::body_deadline::{body_failure, BodyFailure};
use tributary_runtime::health::health_routes;
use tributary_runtime::Readiness;
use tributary_sources::answer::{unusable_answer, UnusableAnswer};
use tributary_sources::request::{decode_body, keepable_headers};
use tributary_sources::{raw_records, screen_with, Incoming, RawRecord, RawRecords, Receipt};
use tributary_store::ConfigCache;

pub struct GatewayState {
    pub(crate) cache: ConfigCache,
    producer: Producer,
    topic: String,
    pub(crate) max_body: usize,
    produce_timeout: Duration,
}

impl GatewayState {
    pub fn new(cache: ConfigCache, producer: Producer, topic: String, max_body: usize, produce_timeout: Duration) -> Self {
        GatewayState { cache, producer, topic, max_body, produce_timeout }
    }
}

pub fn router(state: Arc<GatewayState>, readiness: Readiness) -> Router {
    let app = Router::new()
        .route("/integrations/receive/{token}", post(receive))
        .route("/integrations/receive/{token}/rpc", post(crate::rpc::rpc))
        .route("/v1/{kind}", post(tracking_api))
        // The body limit is applied (with a JSON 413) while reading; axum's own is off.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
        .merge(health_routes(readiness));
    // No route, wrong method: in the error shape too (fallbacks cost nothing per request).
    tributary_runtime::http_errors::fallbacks(app)
}

/// Where the token comes from.
enum Ingress {
    /// `/integrations/receive/{token}`
    Url(String),
    /// Segment tracking API: Basic auth, or `writeKey` in the body.
    WriteKey(Option<String>),
}

async fn receive(State(st): State<Arc<GatewayState>>, Path(token): Path<String>, headers: HeaderMap, body: Body) -> Response {
    handle(&st, Ingress::Url(token), None, headers, body).await
}

async fn tracking_api(State(st): State<Arc<GatewayState>>, Path(kind): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let implied = match kind.as_str() {
        "batch" | "b" => None,
        "track" | "t" => Some("track"),
        "identify" | "i" => Some("identify"),
        "page" | "p" => Some("page"),
        "screen" | "s" => Some("screen"),
        "group" | "g" => Some("group"),
        "alias" | "a" => Some("alias"),
        _ => {
            let body = json!({"error": {"code": "not_found", "message": format!("no tracking API call `/v1/{kind}`")}});
            return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
        }
    };
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .map(|s| s.split_once(':').map(|(k, _)| k.to_string()).unwrap_or(s));
    handle(&st, Ingress::WriteKey(basic), implied, headers, body).await
}

/// Why a body could not be read, as the gateway answers it (receive URL and JSON-RPC alike).
pub(crate) fn body_error(e: &axum::Error, max_body: usize) -> GatewayError {
    match body_failure(e) {
        BodyFailure::TooLarge => GatewayError::Request(tributary_sources::RequestError::PayloadTooLarge { limit: max_body }),
        BodyFailure::TimedOut => GatewayError::BodyTimeout(e.to_string()),
        BodyFailure::Broken(why) => GatewayError::UnreadableBody(why),
    }
}

async fn handle(st: &GatewayState, ingress: Ingress, implied: Option<&str>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let tracking_api = matches!(ingress, Ingress::WriteKey(_));
    let (ingress, headers) = (&ingress, &headers);
    let result = read_and_accept(st, body, |snapshot, raw| async move {
        accept(st, &snapshot, ingress, implied, headers, &raw).await
    })
    .await;
    // Segment's tracking API answers 200 `{"success": true}`, and its classic SDKs
    // (analytics-python 1.x, rudder-sdk-python) take anything else as a failure and resend.
    let result = result.map(|(status, mut body, t, e)| {
        if tracking_api {
            body["success"] = Value::Bool(true);
            (StatusCode::OK, body, t, e)
        } else {
            (status, body, t, e)
        }
    });
    observe(&result, started);
    match result {
        Ok((status, body, _, _)) => (status, axum::Json(body)).into_response(),
        Err((e, _, _)) => {
            if e.status().is_server_error() {
                tracing::warn!(code = e.code(), error = %e, "request not accepted");
            }
            e.into_response()
        }
    }
}

/// Read the body and `accept` it against the configuration held. When the refusal may come
/// from a snapshot older than a change the admin API has already answered (a token or secret
/// created a moment ago), ask for a current one (an epoch read, bounded per process; a reload
/// only if the configuration changed) and try once more. The receive URL and the JSON-RPC
/// endpoint both answer this way.
pub(crate) async fn read_and_accept<F, Fut>(st: &GatewayState, body: Body, accept: F) -> Result<Accepted, Refused>
where
    F: Fn(Arc<tributary_store::Snapshot>, Bytes) -> Fut,
    Fut: Future<Output = Result<Accepted, Refused>>,
{
    let raw = axum::body::to_bytes(body, st.max_body).await.map_err(|e| unknown(body_error(&e, st.max_body)))?;
    metrics::BYTES.inc_by(raw.len() as u64);
    let snapshot = st.cache.get();
    match accept(snapshot.clone(), raw.clone()).await {
        Err(refused) if refused.0.may_be_stale_config() => {
            let current = st.cache.as_of(chrono::Utc::now().timestamp_millis()).await;
            if Arc::ptr_eq(&current, &snapshot) {
                Err(refused)
            } else {
                accept(current, raw).await
            }
        }
        other => other,
    }
}

/// Count an answered request by template, environment and status, and time it.
pub(crate) fn observe(result: &Result<Accepted, Refused>, started: Instant) {
    let (status, template, env) = match result {
        Ok((s, _, t, e)) => (*s, t.as_str(), e.as_str()),
        Err((e, t, env)) => (e.status(), t.as_str(), env.as_str()),
    };
    metrics::REQUESTS.with_label_values(&[template, env, status.as_str()]).inc();
    metrics::REQUEST_SECONDS.with_label_values(&[status.as_str()]).observe(started.elapsed().as_secs_f64());
}

pub(crate) fn unknown(e: GatewayError) -> Refused {
    (e, "unknown".to_string(), "unknown".to_string())
}

pub(crate) type Accepted = (StatusCode, Value, Template, String);
pub(crate) type Refused = (GatewayError, String, String);

async fn accept(
    st: &GatewayState,
    snapshot: &tributary_store::Snapshot,
    ingress: &Ingress,
    implied: Option<&str>,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Accepted, Refused> {
    let header_list: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_string())))
        .collect();

    let now_ms = chrono::Utc::now().timestamp_millis();
    let in_body;
    let token = match ingress {
        Ingress::Url(t) => t.as_str(),
        Ingress::WriteKey(Some(k)) => k.as_str(),
        Ingress::WriteKey(None) => {
            let encoding = headers.get("content-encoding").and_then(|v| v.to_str().ok());
            let decoded = decode_body(encoding, raw, st.max_body).map_err(|e| unknown(e.into()))?;
            in_body = write_key_in_body(&decoded).ok_or_else(|| unknown(GatewayError::MissingWriteKey))?;
            in_body.as_str()
        }
    };
    let (settings, template) = snapshot.by_token(token, now_ms).ok_or_else(|| unknown(GatewayError::UnknownToken))?;
    let labels = |e: GatewayError| (e, template.as_str().to_string(), settings.environment.clone());

    let incoming = Incoming {
        template,
        settings,
        headers: &header_list,
        body: raw,
        max_body: st.max_body,
        now_ms,
        implied_type: implied,
    };
    // A single tracking-API call may carry the write key (a secret) in the item itself.
    let processed = match screen_with(&incoming, |item| if implied.is_some() { strip_write_key(item) } else { item }) {
        Ok(p) => p,
        Err(e) if e.is_unusable_content() && unusable_answer(template) == UnusableAnswer::AcceptRefused => {
            return accept_refused(st, settings, template, &header_list, raw, now_ms, e).await.map_err(labels);
        }
        Err(e) => return Err(labels(e.into())),
    };
    let request_id = tributary_model::ids::random_id();
    let receipt = Receipt { request_id: &request_id, received_at: now_ms, implied_type: implied };
    let RawRecords { records, rejected } = raw_records(settings, template, &processed, &receipt);
    let (first_error, rejected) = count_refusals(records.len(), rejected);

    // Every item, refused ones too (the event log shows them), is durably in Kafka before we
    // answer: send all, then wait for every acknowledgement.
    produce_all(st, settings, &request_id, now_ms, &records).await.map_err(labels)?;

    let total = records.len();
    let mut status = processed.status();
    if status == 400 {
        // One event, refused: a 4xx where the sender drops it, else 200 with the refusal
        // (the event is logged as rejected either way).
        if unusable_answer(template) == UnusableAnswer::ClientError {
            let (code, message) = first_error.unwrap_or_default();
            return Err(labels(GatewayError::InvalidItem { code, message }));
        }
        status = 200;
    }
    let accepted = total - rejected.len();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
    let mut body = json!({"request_id": request_id, "accepted": accepted, "rejected": rejected.len()});
    if !rejected.is_empty() {
        body["errors"] = Value::Array(rejected);
    }
    Ok((status, body, template, settings.environment.clone()))
}

/// Count the refused items and the accepted rest; the refusals as the answer lists them
/// (`{index, code, message}`), and the first one's code and message.
pub(crate) fn count_refusals(total: usize, rejected: Vec<(u32, tributary_model::ItemError)>) -> (Option<(String, String)>, Vec<Value>) {
    for (_, e) in &rejected {
        metrics::EVENTS.with_label_values(&["rejected", &e.code]).inc();
    }
    metrics::ACCEPTED.inc_by((total - rejected.len()) as u64);
    let first = rejected.first().map(|(_, e)| (e.code.clone(), e.message.clone()));
    let listed = rejected.into_iter().map(|(index, e)| json!({"index": index, "code": e.code, "message": e.message})).collect();
    (first, listed)
}

/// A verified request whose content cannot be used, from a sender that would only retry a
/// 4xx (see `tributary_sources::answer`): stored as one event the translator logs as rejected
/// with the error's code, and answered 200 with the refusal.
async fn accept_refused(
    st: &GatewayState,
    settings: &EnvironmentSettings,
    template: Template,
    headers: &[(String, String)],
    raw: &[u8],
    now_ms: i64,
    error: tributary_sources::RequestError,
) -> Result<Accepted, GatewayError> {
    let encoding = headers.iter().find(|(k, _)| k == "content-encoding").map(|(_, v)| v.as_str());
    let decoded = decode_body(encoding, raw, st.max_body)?;
    // The body as JSON when it is JSON (an envelope of the wrong shape), else as a string.
    let text = String::from_utf8_lossy(&decoded);
    let item = serde_json::from_str::<Box<RawValue>>(&text)
        .or_else(|_| serde_json::value::to_raw_value(&text))
        .map_err(|e| GatewayError::Unavailable(format!("could not encode the refused body: {e}")))?;
    let refusal = tributary_model::ItemError { code: error.code().to_string(), message: error.to_string() };
    let request_id = tributary_model::ids::random_id();
    let kept = keepable_headers(settings, headers);
    let encoder = RawEventEncoder::new(&RawEventCommon {
        request_id: &request_id,
        source: &settings.source,
        environment: &settings.environment,
        template,
        received_at: now_ms,
        // it passed verification to get here; scheme `none` verifies nothing
        verification: if settings.verification.scheme == tributary_model::VerificationScheme::None { "unverified" } else { "verified" },
        headers: &kept,
        batch_context: None,
        batch_integrations: None,
        implied_type: None,
        refused: Some(&refusal),
        rpc: false,
    });
    // Nobody to keep in order with: spread by the item's own id, as the gateway does.
    let key = tributary_model::event::partition_key(&settings.environment, &format!("{request_id}:0"));
    produce_all(st, settings, &request_id, now_ms, &[RawRecord { key, value: encoder.encode(0, &item) }]).await?;
    metrics::EVENTS.with_label_values(&["rejected", error.code()]).inc();
    let body = json!({"request_id": request_id, "accepted": 0, "rejected": 1,
                      "errors": [{"index": 0, "code": refusal.code, "message": refusal.message}]});
    Ok((StatusCode::OK, body, template, settings.environment.clone()))
}

pub(crate) async fn produce_all(
    st: &GatewayState,
    settings: &EnvironmentSettings,
    request_id: &str,
    now_ms: i64,
    records: &[RawRecord],
) -> Result<(), GatewayError> {
    if records.is_empty() {
        return Ok(());
    }
    let received = now_ms.to_string();
    let headers = tributary_sources::record_headers(settings, request_id, &received);
    let started = Instant::now();
    let sends = records.iter().map(|r| st.producer.send(&st.topic, &r.key, &r.value, &headers));
    let results = tokio::time::timeout(st.produce_timeout, futures::future::join_all(sends))
        .await
        .map_err(|_| GatewayError::Unavailable(format!("no acknowledgement from Kafka within {:?}", st.produce_timeout)))?;
    metrics::PRODUCE_SECONDS.observe(started.elapsed().as_secs_f64());
    for r in results {
        match r {
            Ok(()) => {}
            Err(ProduceError::QueueFull) => return Err(GatewayError::Overloaded),
            Err(ProduceError::TooLarge) => return Err(GatewayError::EventTooLarge),
            Err(e) => return Err(GatewayError::Unavailable(e.to_string())),
        }
    }
    Ok(())
}

/// `writeKey` of a tracking-API body (single call or batch).
fn write_key_in_body(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithKey {
        #[serde(rename = "writeKey")]
        write_key: Option<String>,
    }
    serde_json::from_slice::<WithKey>(body).ok()?.write_key.filter(|k| !k.is_empty())
}

/// A single tracking-API call may carry the write key (a secret) in the item itself: remove
/// it before the item is stored anywhere.
fn strip_write_key(raw: Box<RawValue>) -> Box<RawValue> {
    if !raw.get().contains("\"writeKey\"") {
        return raw;
    }
    match serde_json::from_str::<Map<String, Value>>(raw.get()) {
        Ok(mut m) => {
            m.shift_remove("writeKey");
            serde_json::value::to_raw_value(&m).unwrap_or(raw)
        }
        Err(_) => raw,
    }
}
