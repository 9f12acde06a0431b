//! Every change through the admin API is written to the audit log: who (the token's hint),
//! what (method, path, the body with secrets removed), when, and how it ended.

use crate::shared::{read_body, AdminState, St};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;

/// Audit entries are kept like the other logs.
const AUDIT_TTL_SECS: i32 = 90 * 86_400;
const SECRET_KEYS: [&str; 5] = ["secret", "secrets", "api_key", "token", "password"];

pub async fn record(State(st): St, req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::GET {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    // The same limit as the handlers' own reading: a larger body is refused here, not passed on
    // empty.
    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let details = serde_json::from_slice::<Value>(&bytes).map(redact).unwrap_or(Value::Null);
    let method = parts.method.to_string();
    let target = parts.uri.path().to_string();
    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if resp.status().is_success() {
        write(st, method, target, json!({"request": details, "status": resp.status().as_u16()})).await;
    }
    resp
}

async fn write(st: Arc<AdminState>, action: String, target: String, details: Value) {
    // the actor is the admin token, named by its first characters only
    let actor = format!("token:{}…", st.token.chars().take(4).collect::<String>());
    if let Err(e) = st.store.audit(&actor, &action, &target, &details, AUDIT_TTL_SECS).await {
        tracing::warn!(error = %e, "audit log write failed");
    }
}

fn redact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| if SECRET_KEYS.contains(&k.as_str()) { (k, json!("[redacted]")) } else { (k, redact(v)) })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(redact).collect()),
        other => other,
    }
}
