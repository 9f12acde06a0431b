//! The HTTP gateway: the front door that CDPs, reverse-ETL tools, webhooks and analytics SDKs
//! post to. It stays thin: look up the token, verify, split, key, produce with acks=all, and
//! answer. No database on the hot path (configuration is an in-memory snapshot), no business
//! logic beyond what the status code depends on.
//!
//! Answers: 2xx only once every item is acknowledged by Kafka; 4xx for input that will never
//! be valid; 503 + `Retry-After` for anything transient, so the sender retries.

mod error;
mod handler;
mod metrics;
mod rpc;

pub use error::GatewayError;
pub use handler::{router, GatewayState};

use std::sync::Arc;
use std::time::Duration;
use tributary_bus::{Producer, ProducerSettings};
use tributary_runtime::config::Config;
use tributary_runtime::{Readiness, Shutdown};
use tributary_store::ConfigCache;

/// Run the gateway until shutdown: stop accepting, finish in-flight requests, flush.
pub async fn run(cfg: &Config, cache: ConfigCache, readiness: Readiness, shutdown: Shutdown) -> anyhow_free::Result<()> {
    let producer = Producer::new(&ProducerSettings {
        brokers: cfg.kafka.brokers.clone(),
        max_queue_messages: cfg.gateway.max_queue_messages,
        // librdkafka gives up on a record when the request does: a 503 then means "not
        // stored" (as far as anyone can know), and no ghost copy arrives later.
        message_timeout_ms: cfg.gateway.produce_timeout_ms.max(100),
        client_id: "tributary-gateway".into(),
        transactional_id: None,
        linger_ms: cfg.gateway.linger_ms,
    })
    .map_err(|e| e.to_string())?;
    let state = Arc::new(GatewayState::new(
        cache.clone(),
        producer.clone(),
        cfg.topic("raw"),
        cfg.gateway.max_body_bytes,
        // a safety margin over librdkafka's own timeout, which normally fires first
        Duration::from_millis(cfg.gateway.produce_timeout_ms + 500),
    ));
    spawn_readiness(producer.clone(), cache, readiness.clone(), shutdown.clone());
    let app = router(state, readiness);
    let listener = tokio::net::TcpListener::bind(cfg.gateway.listen).await.map_err(|e| format!("bind {}: {e}", cfg.gateway.listen))?;
    tracing::info!(addr = %cfg.gateway.listen, "gateway listening");
    tributary_runtime::serve(listener, app, "gateway", &cfg.http, shutdown.clone()).await.map_err(|e| e.to_string())?;
    tracing::info!("gateway drained; flushing the producer");
    producer.flush(Duration::from_secs(10));
    Ok(())
}

/// Ready while Kafka answers metadata requests and the configuration is loaded.
fn spawn_readiness(producer: Producer, cache: ConfigCache, readiness: Readiness, shutdown: Shutdown) {
    readiness.set("kafka", false);
    readiness.set("config", cache.fresh());
    tokio::spawn(async move {
        loop {
            let p = producer.clone();
            let ok = tokio::task::spawn_blocking(move || p.reachable(Duration::from_secs(2))).await.unwrap_or(false);
            readiness.set("kafka", ok);
            readiness.set("config", cache.fresh());
            metrics::QUEUE_DEPTH.set(producer.in_flight() as i64);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.wait() => return,
            }
        }
    });
}

/// Errors of `run`: plain strings (this is a library; the binary adds context with anyhow).
pub mod anyhow_free {
    pub type Result<T> = std::result::Result<T, String>;
}
