//! Typed refusals, each with a stable code and an HTTP status.

use thiserror::Error;
use tributary_model::ItemError;

/// Why a whole request is refused. Each maps to one HTTP status; none is a 5xx, because
/// senders retry 5xx for hours and bad input never becomes good.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the body is not valid gzip: {0}")]
    InvalidGzip(String),
    #[error("content encoding `{0}` is not supported (use identity or gzip)")]
    UnsupportedEncoding(String),
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request carries no {0}")]
    MissingSignature(&'static str),
    #[error("the {0} does not match any active secret")]
    SignatureMismatch(&'static str),
    #[error("webhook-timestamp is {0} seconds away from now (tolerance 300)")]
    StaleTimestamp(i64),
    #[error("the body nests arrays and objects more than {0} levels deep")]
    TooDeep(usize),
    #[error("the body must be a JSON object or array, found {0}")]
    InvalidEnvelope(&'static str),
    #[error("`{0}` does not lead to an array")]
    InvalidArrayPath(String),
}

impl RequestError {
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::InvalidJson(_) => "invalid_json",
            RequestError::InvalidGzip(_) => "invalid_gzip",
            RequestError::UnsupportedEncoding(_) => "unsupported_encoding",
            RequestError::PayloadTooLarge { .. } => "payload_too_large",
            RequestError::MissingSignature(_) => "missing_signature",
            RequestError::SignatureMismatch(_) => "signature_mismatch",
            RequestError::StaleTimestamp(_) => "stale_timestamp",
            RequestError::TooDeep(_) => "too_deep",
            RequestError::InvalidEnvelope(_) => "invalid_envelope",
            RequestError::InvalidArrayPath(_) => "invalid_array_path",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            RequestError::InvalidJson(_)
            | RequestError::InvalidGzip(_)
            | RequestError::TooDeep(_)
            | RequestError::InvalidEnvelope(_)
            | RequestError::InvalidArrayPath(_) => 400,
            RequestError::UnsupportedEncoding(_) => 415,
            RequestError::PayloadTooLarge { .. } => 413,
            RequestError::MissingSignature(_)
            | RequestError::SignatureMismatch(_)
            | RequestError::StaleTimestamp(_) => 401,
        }
    }
}

/// Why one item is refused. The rest of its batch goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemErrorCode {
    /// The item is not a JSON object.
    NotAnObject,
    /// Neither a string `type` nor a usable `event` (CDP), or no type at the configured path.
    MissingType,
    /// A `track` without a non-empty `event`.
    MissingEvent,
    /// `userId` / `anonymousId` is neither a string nor a plain integer.
    InvalidUserId,
    /// Neither `userId` nor `anonymousId`.
    MissingIdentity,
    InvalidGroupId,
    InvalidPreviousId,
}

impl ItemErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemErrorCode::NotAnObject => "not_an_object",
            ItemErrorCode::MissingType => "missing_type",
            ItemErrorCode::MissingEvent => "missing_event",
            ItemErrorCode::InvalidUserId => "invalid_user_id",
            ItemErrorCode::MissingIdentity => "missing_identity",
            ItemErrorCode::InvalidGroupId => "invalid_group_id",
            ItemErrorCode::InvalidPreviousId => "invalid_previous_id",
        }
    }

    pub fn with(self, message: impl Into<String>) -> ItemError {
        ItemError { code: self.as_str().to_string(), message: message.into() }
    }
}
