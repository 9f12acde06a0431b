//! One error shape for every failure: `{"error": {"code", "message", "details"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tributary_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Value::Null }
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", message);
        e.details = json!({"field": field});
        e
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", m),
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::Corrupt(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", m),
            StoreError::Rejected(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected_by_store", m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tributary_runtime::http_errors::error_response(self.status, self.code, self.message, self.details)
    }
}
