//! The worker stages, each a Kafka consumer group that scales by adding processes:
//!
//! - [`ingest`]: records your services produce to the ingest topic → raw items, as the
//!   gateway makes them from HTTP requests.
//! - [`translator`]: raw items → normalized events (dedup on the idempotency key).
//! - [`mapper`]: events → the ordered actions their environment's mappings ask for.
//! - [`executor`]: writes event and action logs, runs identify / set_tenant against the store,
//!   and sends workflow triggers and cancels to the sink.
//!
//! - [`executor::LogWriter`] (runs in the executor role): stores the executor's reports.
//!
//! Each handler returns only once its effects are durable. Translator, mapper and executor run
//! exactly-once by default (`tributary_bus::exactly_once`: outputs and offsets in one Kafka
//! transaction); the log writer, whose effects are upserts, at-least-once. Handlers are also
//! idempotent, so a replay after a crash or a rebalance repeats no effect that already happened.

pub mod executor;
pub mod ingest;
pub mod mapper;
mod metrics;
pub mod sink;
pub mod translator;

use std::time::Duration;
use tributary_bus::{run_stage, Delivery, Handler, Producer, StageError, StageOptions, Topics};
use tributary_runtime::config::Config;
use tributary_runtime::{Readiness, Shutdown};

/// A store failure as the stage loop sees it: retry later, or give up on the record.
pub(crate) fn store_error(e: tributary_store::StoreError) -> StageError {
    if e.is_transient() {
        StageError::Transient(e.to_string())
    } else {
        StageError::Permanent(e.to_string())
    }
}

/// Which stage a process runs: its name (consumer group, client id, readiness check), the
/// topic it consumes, and how many records it handles at once.
pub struct StageSpec<'a> {
    pub name: &'a str,
    pub topic: String,
    pub lanes: usize,
}

pub async fn run<H: Handler + 'static>(
    cfg: &Config,
    spec: StageSpec<'_>,
    handler: std::sync::Arc<H>,
    producer: &Producer,
    delivery: Delivery,
    readiness: &Readiness,
    shutdown: &Shutdown,
) -> Result<(), String> {
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    let opts = StageOptions {
        brokers: cfg.kafka.brokers.clone(),
        group: cfg.group(spec.name),
        topic: spec.topic,
        dead_letter_topic: topics.dead_letter.clone(),
        max_attempts: cfg.workers.max_attempts,
        client_id: format!("tributary-{}", spec.name),
        lanes: spec.lanes,
        max_in_flight: cfg.workers.max_in_flight,
        delivery,
    };
    let r = readiness.clone();
    let name = spec.name.to_string();
    run_stage(opts, handler, producer, shutdown.receiver(), move |ok| r.set(&name, ok)).await?;
    producer.flush(Duration::from_secs(10));
    Ok(())
}

/// The delivery mode configured for the stages that produce (translator, mapper, executor).
pub fn producing_delivery(cfg: &Config) -> Delivery {
    if cfg.workers.exactly_once {
        Delivery::ExactlyOnce {
            max_wait: Duration::from_millis(cfg.workers.batch_max_wait_ms),
            linger: Duration::from_millis(cfg.workers.batch_linger_ms),
        }
    } else {
        Delivery::AtLeastOnce
    }
}
