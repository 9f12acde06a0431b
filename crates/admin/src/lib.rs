//! The control plane: an admin HTTP API over the configuration store and the logs, and the web
//! console that uses it (`console`). Every endpoint but the health ones and the console's own
//! files and sign-in requires `Authorization: Bearer <admin.token>` or a console session.

mod api;
mod audit;
mod console;
mod logs;
pub mod openapi;
mod rehearse;
mod error;
mod secret_eq;
mod shared;

pub use api::router;
pub use shared::AdminState;
pub use error::ApiError;

use std::sync::Arc;
use tributary_runtime::config::Config;
use tributary_runtime::{Readiness, Shutdown};
use tributary_store::Store;

pub async fn run(cfg: &Config, store: Store, readiness: Readiness, shutdown: Shutdown) -> Result<(), String> {
    let producer = tributary_bus::worker_producer(&cfg.kafka.brokers, "tributary-admin", None).map_err(|e| e.to_string())?;
    let state = Arc::new(AdminState {
        store,
        token: cfg.admin.token.clone(),
        public_url: cfg.admin.public_url.clone(),
        producer: Some(producer),
        actions_topic: cfg.topic("actions"),
        removal_settles_in: std::time::Duration::from_millis(2 * cfg.workers.config_poll_ms + 100),
    });
    readiness.set("admin", true);
    let listener = tokio::net::TcpListener::bind(cfg.admin.listen).await.map_err(|e| format!("bind {}: {e}", cfg.admin.listen))?;
    tracing::info!(addr = %cfg.admin.listen, "admin API listening");
    tributary_runtime::serve(listener, router(state, readiness), "admin", &cfg.http, shutdown).await.map_err(|e| e.to_string())
}
