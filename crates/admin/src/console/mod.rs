//! The web console, served by the admin role under `/console/`: a page, a script and a style
//! sheet compiled into the binary, which call the admin API's own `/v1/*` endpoints with a
//! session cookie. The console holds no rule of its own: validation, defaults and errors are the
//! API's, and what the forms offer (templates, action types and their parameters, path roots,
//! verification schemes) comes from the crates that define them, through `/console/meta.json`.

pub mod session;

use crate::shared::AdminState;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use tributary_model::{ActionStatus, ActionType, EventStatus, PathSettings, Template, VerificationScheme};

pub use session::authorize;

const INDEX: &str = include_str!("../../assets/console/index.html");
const APP_JS: &str = include_str!("../../assets/console/app.js");
const APP_CSS: &str = include_str!("../../assets/console/app.css");
const ICON: &str = include_str!("../../assets/console/icon.svg");

/// The console's routes (public: the page itself holds nothing; the data needs a session).
pub fn routes(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(|h: HeaderMap| async move { asset(&h, INDEX, "text/html; charset=utf-8") }))
        .route("/console/app.js", get(|h: HeaderMap| async move { asset(&h, APP_JS, "text/javascript; charset=utf-8") }))
        .route("/console/app.css", get(|h: HeaderMap| async move { asset(&h, APP_CSS, "text/css; charset=utf-8") }))
        .route("/console/icon.svg", get(|h: HeaderMap| async move { asset(&h, ICON, "image/svg+xml") }))
        .route("/console/meta.json", get(|| async { Json(meta()) }))
        .route("/console/session", get(session::current).post(session::sign_in).delete(session::sign_out))
        .with_state(state)
}

/// An embedded file, revalidated on every load (`no-cache` with an ETag: a new binary's
/// console is picked up at once, an unchanged one costs a 304).
fn asset(req: &HeaderMap, body: &'static str, content_type: &'static str) -> Response {
    let etag = format!("\"{:016x}\"", fnv1a(body.as_bytes()));
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(ETAG, HeaderValue::from_str(&etag).expect("hex"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // The ingest URLs on these pages hold their token: no referrer leaves the console.
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    if req.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, body).into_response()
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

/// What the console's forms offer, from the definitions themselves.
pub fn meta() -> Value {
    let actions: Vec<Value> = ActionType::ALL
        .iter()
        .map(|a| {
            let params: Vec<Value> = tributary_mapping::params::spec(*a)
                .iter()
                .map(|(name, required, default)| json!({"name": name, "required": required, "default": default}))
                .collect();
            json!({"type": a.as_str(), "parameters": params})
        })
        .collect();
    json!({
        "templates": Template::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "actions": actions,
        "roots": tributary_mapping::params::ROOTS,
        "verification_schemes": schemes().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "path_settings": path_settings(),
        "event_statuses": event_statuses().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "action_statuses": action_statuses().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "session_seconds": session::SESSION_SECS,
    })
}

// The model has no list of these; the `match`es make a new variant a compile error here
// until it is listed.

fn schemes() -> [VerificationScheme; 5] {
    use VerificationScheme::*;
    let all = [None, SegmentSignature, StandardWebhooks, SharedSecretHeader, Bearer];
    for s in all {
        match s {
            None | SegmentSignature | StandardWebhooks | SharedSecretHeader | Bearer => {}
        }
    }
    all
}

fn event_statuses() -> [EventStatus; 4] {
    use EventStatus::*;
    let all = [Processed, Rejected, Duplicate, DeadLettered];
    for s in all {
        match s {
            Processed | Rejected | Duplicate | DeadLettered => {}
        }
    }
    all
}

fn action_statuses() -> [ActionStatus; 3] {
    use ActionStatus::*;
    let all = [Success, Failed, Skipped];
    for s in all {
        match s {
            Success | Failed | Skipped => {}
        }
    }
    all
}

/// The settings' path names, in their declared order.
fn path_settings() -> Vec<String> {
    let s = |x: &str| Some(x.to_string());
    // A struct literal: a new field is a compile error here.
    let all = PathSettings {
        event_type: s("x"),
        fixed_type: s("x"),
        event_name: s("x"),
        user_id: s("x"),
        timestamp: s("x"),
        idempotency_key: s("x"),
        data: s("x"),
        array: s("x"),
    };
    match serde_json::to_value(all) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_lists_what_the_api_accepts() {
        let m = meta();
        for t in m["templates"].as_array().unwrap() {
            assert!(t.as_str().unwrap().parse::<Template>().is_ok());
        }
        for s in m["event_statuses"].as_array().unwrap() {
            assert!(EventStatus::parse(s.as_str().unwrap()).is_some());
        }
        for s in m["action_statuses"].as_array().unwrap() {
            assert!(ActionStatus::parse(s.as_str().unwrap()).is_some());
        }
        for s in m["verification_schemes"].as_array().unwrap() {
            assert!(serde_json::from_value::<VerificationScheme>(s.clone()).is_ok());
        }
        assert_eq!(m["path_settings"].as_array().unwrap().len(), 8);
        assert_eq!(m["path_settings"][0], "event_type");
        let trigger = m["actions"].as_array().unwrap().iter().find(|a| a["type"] == "trigger_workflow").unwrap();
        assert_eq!(trigger["parameters"][0], json!({"name": "workflow", "required": true, "default": null}));
    }

    #[test]
    fn assets_are_served_with_their_type_and_revalidated() {
        let r = asset(&HeaderMap::new(), APP_JS, "text/javascript; charset=utf-8");
        assert_eq!(r.status(), StatusCode::OK);
        let etag = r.headers().get(ETAG).unwrap().clone();
        assert!(r.headers().get("content-security-policy").unwrap().to_str().unwrap().contains("script-src 'self'"));
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, etag);
        assert_eq!(asset(&h, APP_JS, "text/javascript").status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        // The CSP allows nothing inline: no <script> body, no style attribute.
        assert!(INDEX.contains(r#"<script src="/console/app.js""#));
        assert!(!INDEX.contains("style=") && !APP_JS.contains("innerHTML"));
    }
}
