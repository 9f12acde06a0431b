//! `/healthz` (the process is alive), `/readyz` (every dependency it needs answers) and
//! `/metrics` (Prometheus text format, from the default registry).

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::config::HttpConfig;
use crate::Shutdown;

/// Named readiness checks, each set by the component that owns the dependency.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    pub fn set(&self, name: &str, ready: bool) {
        self.checks.lock().unwrap().insert(name.to_string(), ready);
    }

    pub fn is_ready(&self) -> bool {
        let c = self.checks.lock().unwrap();
        !c.is_empty() && c.values().all(|v| *v)
    }

    pub fn report(&self) -> serde_json::Value {
        let c = self.checks.lock().unwrap();
        serde_json::json!({"ready": !c.is_empty() && c.values().all(|v| *v), "checks": c.clone()})
    }
}

/// The three endpoints, to merge into a role's own router or serve alone.
pub fn health_routes(readiness: Readiness) -> Router {
    let r2 = readiness.clone();
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .route(
            "/readyz",
            get(move || {
                let r = r2.clone();
                async move {
                    let status = if r.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                    (status, axum::Json(r.report()))
                }
            }),
        )
        .route("/metrics", get(metrics))
}

async fn metrics() -> impl IntoResponse {
    let encoder = prometheus::TextEncoder::new();
    let body = encoder.encode_to_string(&prometheus::gather()).unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Serve the health endpoints on `addr` until shutdown, under the same limits as every server.
pub async fn serve_health(addr: SocketAddr, readiness: Readiness, http: &HttpConfig, shutdown: Shutdown) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "health endpoint listening");
    crate::serve(listener, crate::http_errors::fallbacks(health_routes(readiness)), "health", http, shutdown).await
}

/// Register a collector in the default Prometheus registry (which `/metrics` serves) and hand
/// it back; registering the same metric twice (tests, `all`) keeps the first.
pub fn register<T: prometheus::core::Collector + Clone + 'static>(c: T) -> T {
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}
