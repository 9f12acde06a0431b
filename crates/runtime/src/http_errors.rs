//! One JSON error shape for every HTTP failure of every role, the web framework's own
//! rejections included: `{"error": {"code", "message", "details"}}`.
//!
//! Handlers build their errors in this shape themselves. What they never see is what axum
//! answers before or instead of a handler: an unknown route (404, empty body), a wrong method
//! (405, empty body), a path or query that does not parse (400, plain text), a body over the
//! limit (413, plain text). [`fallbacks`] covers the first two for free (no per-request cost,
//! which the gateway's hot path needs); [`uniform`] is a middleware that rewrites any other
//! non-JSON error response, for routers whose handlers use axum's extractors (admin).

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// The stable code of a status that carries no code of its own.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "too_many_requests",
        431 => "headers_too_large",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

/// The error body, as every role answers it.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>, details: Value) -> Response {
    let body = json!({"error": {"code": code, "message": message.into(), "details": details}});
    (status, axum::Json(body)).into_response()
}

/// An unknown route and a known route with the wrong method, in the error shape.
pub fn fallbacks(router: Router) -> Router {
    router.fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", format!("no route {method} {}", uri.path()), Value::Null)
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let message = format!("{method} is not allowed on {}", uri.path());
    error_response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message, Value::Null)
}

/// Middleware: an error response whose body is not JSON (an axum rejection: plain text, or
/// nothing) is answered in the error shape instead, keeping its status and headers (`Allow`,
/// `Retry-After`). The rejection's own text becomes the message: it says what was wrong.
pub async fn uniform(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // Rejection texts are short; anything longer is not one of them and is cut.
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let message = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::NOT_FOUND) => format!("no route {method} {path}"),
        (true, StatusCode::METHOD_NOT_ALLOWED) => format!("{method} is not allowed on {path}"),
        (true, s) => s.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut out = error_response(status, code_for(status), message, Value::Null);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn call(app: Router, method: &str, uri: &str) -> (StatusCode, Value, Option<String>) {
        let resp = app.oneshot(Request::builder().method(method).uri(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let allow = resp.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), allow)
    }

    fn app() -> Router {
        let r = Router::new()
            .route("/items/{n}", get(|axum::extract::Path(n): axum::extract::Path<u32>| async move { n.to_string() }))
            .route("/plain", get(|| async { (StatusCode::CONFLICT, "plain text conflict") }));
        fallbacks(r).layer(axum::middleware::from_fn(uniform))
    }

    #[tokio::test]
    async fn framework_rejections_get_the_shape() {
        let (s, v, _) = call(app(), "GET", "/nowhere").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["message"], "no route GET /nowhere");

        let (s, v, allow) = call(app(), "DELETE", "/items/3").await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(v["error"]["code"], "method_not_allowed");
        assert!(allow.unwrap_or_default().contains("GET"), "Allow header kept");

        let (s, v, _) = call(app(), "GET", "/items/notanumber").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["code"], "bad_request");
        assert!(v["error"]["message"].as_str().unwrap().contains("Invalid URL"), "{v}");

        let (s, v, _) = call(app(), "GET", "/plain").await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(v["error"]["message"], "plain text conflict");
        assert!(v["error"].get("details").is_some());

        let (s, v, _) = call(app(), "GET", "/items/7").await;
        assert_eq!((s, v), (StatusCode::OK, json!(7)));
    }
}
