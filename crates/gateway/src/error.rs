//! Every way a request can fail, mapped to one status code and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use thiserror::Error;
use tributary_sources::RequestError;

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("no source environment has this ingest token")]
    UnknownToken,
    #[error("no write key: send `Authorization: Basic base64(<token>:)` or `writeKey` in the body")]
    MissingWriteKey,
    #[error("{0}")]
    Request(#[from] RequestError),
    /// The body did not arrive whole within `http.body_timeout_ms` (a trickled body).
    #[error("{0}")]
    BodyTimeout(String),
    /// The client broke off sending the body, or its framing is malformed.
    #[error("the request body could not be read: {0}")]
    UnreadableBody(String),
    #[error("{message}")]
    InvalidItem { code: String, message: String },
    #[error("a {0} source takes no JSON-RPC calls (only hightouch and census sources do)")]
    NotRpc(tributary_model::Template),
    /// Kafka did not acknowledge in time, or is unreachable.
    #[error("the event could not be stored durably yet: {0}")]
    Unavailable(String),
    /// An item is over Kafka's `message.max.bytes` (1 MB by default), though the body was
    /// within `gateway.max_body_bytes`: permanent, so a 4xx (a 503 would be retried forever).
    #[error("an event is larger than Kafka accepts (its message.max.bytes, 1 MB by default); send it smaller")]
    EventTooLarge,
    /// The producer queue is full.
    #[error("the gateway is overloaded; retry shortly")]
    Overloaded,
}

impl GatewayError {
    pub fn code(&self) -> &str {
        match self {
            GatewayError::UnknownToken => "unknown_token",
            GatewayError::MissingWriteKey => "missing_write_key",
            GatewayError::Request(e) => e.code(),
            GatewayError::BodyTimeout(_) => "request_timeout",
            GatewayError::UnreadableBody(_) => "unreadable_body",
            GatewayError::InvalidItem { code, .. } => code,
            GatewayError::NotRpc(_) => "not_rpc",
            GatewayError::EventTooLarge => "event_too_large",
            GatewayError::Unavailable(_) => "unavailable",
            GatewayError::Overloaded => "overloaded",
        }
    }

    /// Could a configuration change the snapshot does not hold yet (a new source, a rotated
    /// token, an added secret) turn this refusal into an acceptance?
    pub fn may_be_stale_config(&self) -> bool {
        use tributary_sources::RequestError::{MissingSignature, SignatureMismatch};
        matches!(self, GatewayError::UnknownToken | GatewayError::Request(MissingSignature(_) | SignatureMismatch(_)))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::UnknownToken | GatewayError::NotRpc(_) => StatusCode::NOT_FOUND,
            GatewayError::MissingWriteKey => StatusCode::UNAUTHORIZED,
            GatewayError::Request(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            GatewayError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::EventTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::InvalidItem { .. } | GatewayError::UnreadableBody(_) => StatusCode::BAD_REQUEST,
            GatewayError::Unavailable(_) | GatewayError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl GatewayError {
    /// Seconds to wait before retrying, for the transient refusals.
    pub fn retry_after(&self) -> Option<&'static str> {
        match self {
            GatewayError::Overloaded => Some("1"),
            GatewayError::Unavailable(_) => Some("5"),
            _ => None,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            resp.headers_mut().insert("retry-after", HeaderValue::from_static(secs));
        }
        resp
    }
}
