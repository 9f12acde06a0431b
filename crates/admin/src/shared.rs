//! What the admin handlers share: the state, the result type, reading a JSON body, and the
//! views and look-ups more than one handler module needs. The router (`api`) and the handler
//! modules all import from here, and nothing here imports them.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use tributary_model::EnvironmentSettings;
use tributary_runtime::body_deadline::{body_failure, BodyFailure};
use tributary_store::Store;

/// Largest request body the admin API reads (a rehearsed batch can be large; configuration
/// bodies are small). Larger bodies get 413 `payload_too_large`.
pub const MAX_BODY_BYTES: usize = 10 << 20;

pub struct AdminState {
    pub store: Store,
    pub token: String,
    pub public_url: String,
    /// For replays: plans go to the actions topic, the executor runs them.
    pub producer: Option<tributary_bus::Producer>,
    pub actions_topic: String,
    /// How long a removal takes to reach every role (two of their configuration polls): the
    /// answer to a removal waits this long, so that once it arrives the removed secret, token
    /// or source is refused everywhere. Additions need no wait (roles look them up on a miss).
    pub removal_settles_in: std::time::Duration,
}

impl AdminState {
    pub(crate) async fn removal_settled(&self) {
        tokio::time::sleep(self.removal_settles_in).await;
    }
}

pub(crate) type St = State<Arc<AdminState>>;
pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn ok(status: StatusCode, v: Value) -> ApiResult {
    Ok((status, Json(v)).into_response())
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn body_of<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))
}

/// A request body read as JSON, whatever its `Content-Type` says: `curl -d` sends
/// `application/x-www-form-urlencoded` unless told otherwise, and an API whose every body is
/// JSON gains nothing by refusing it. Syntax errors are 400 `invalid_json` with the position.
pub struct JsonBody(pub Value);

/// The same for endpoints whose body is optional: an empty body is `None`.
pub struct MaybeJson(pub Option<Value>);

async fn read_json(req: Request) -> Result<Option<Value>, ApiError> {
    let bytes = read_body(req.into_body()).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not valid JSON: {e}")))
}

/// A request body, whole: 413 over the limit, 408 when it does not arrive within
/// `http.body_timeout_ms`, 400 when the client broke off.
pub(crate) async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| match body_failure(&e) {
        BodyFailure::TooLarge => too_large(),
        BodyFailure::TimedOut => ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", e.to_string()),
        BodyFailure::Broken(why) => ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", format!("the request body could not be read: {why}")),
    })
}

pub(crate) fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("the body is larger than {MAX_BODY_BYTES} bytes"))
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        read_json(req)
            .await?
            .map(JsonBody)
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "the body is empty; send a JSON object"))
    }
}

impl<S: Send + Sync> FromRequest<S> for MaybeJson {
    type Rejection = ApiError;
    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        Ok(MaybeJson(read_json(req).await?))
    }
}

pub(crate) fn settings_view(st: &AdminState, s: &EnvironmentSettings) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    // Secrets are shown once, when set; afterwards only a hint of each.
    if let Some(secrets) = v.pointer_mut("/verification/secrets") {
        let hints: Vec<Value> = s
            .verification
            .secrets
            .iter()
            .map(|x| json!(format!("{}…", x.chars().take(4).collect::<String>())))
            .collect();
        *secrets = Value::Array(hints);
    }
    if let Value::Object(m) = &mut v {
        m.insert("ingest_url".into(), json!(format!("{}/integrations/receive/{}", st.public_url.trim_end_matches('/'), s.token)));
        if let Value::Object(sink) = m.get_mut("sink").unwrap_or(&mut Value::Null) {
            if sink.contains_key("api_key") {
                sink.insert("api_key".into(), json!("…"));
            }
        }
    }
    v
}

pub(crate) async fn load_settings(st: &AdminState, key: &str, env: &str) -> Result<EnvironmentSettings, ApiError> {
    st.store
        .get_settings(key, env)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("source `{key}` has no environment `{env}`")))
}

