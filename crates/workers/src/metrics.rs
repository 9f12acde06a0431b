//! Worker metrics, registered in the default Prometheus registry.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};
use std::sync::LazyLock;

use tributary_runtime::health::register as reg;

pub static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new("tributary_events_total", "Events handled by stage and status"),
        &["stage", "status"],
    )
    .unwrap())
});

pub static ACTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new("tributary_actions_total", "Actions executed by type and status"),
        &["action_type", "status"],
    )
    .unwrap())
});

pub static DELAY: LazyLock<HistogramVec> = LazyLock::new(|| {
    reg(HistogramVec::new(
        HistogramOpts::new("tributary_pipeline_delay_seconds", "Time from gateway receipt to the end of a stage")
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        &["stage"],
    )
    .unwrap())
});

/// Dedup claims the store refused for good (not a timeout): their events went on without one.
pub static DEDUP_CLAIMS_REFUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    reg(IntCounter::new("tributary_dedup_claims_refused_total", "Dedup claims the store refused; their events went on undeduplicated").unwrap())
});

/// Time a record waited for the configuration as of its receipt (see `ConfigCache::as_of`):
/// an epoch check that starts `workers.clock_skew_ms` after the receipt, at most one per
/// `CHECK_SPACING`, shared by every record waiting for it.
pub static CONFIG_WAIT: LazyLock<HistogramVec> = LazyLock::new(|| {
    reg(HistogramVec::new(
        HistogramOpts::new("tributary_stage_config_wait_seconds", "Time a record waited for the configuration as of its receipt")
            .buckets(vec![0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]),
        &["stage"],
    )
    .unwrap())
});

/// The configuration as of `received_at_ms`, the wait timed.
pub async fn config_as_of(cache: &tributary_store::ConfigCache, stage: &str, received_at_ms: i64) -> std::sync::Arc<tributary_store::Snapshot> {
    let t = std::time::Instant::now();
    let s = cache.as_of(received_at_ms).await;
    CONFIG_WAIT.with_label_values(&[stage]).observe(t.elapsed().as_secs_f64());
    s
}

pub fn observe_delay(stage: &str, received_at_ms: i64) {
    let now = chrono::Utc::now().timestamp_millis();
    DELAY.with_label_values(&[stage]).observe(((now - received_at_ms).max(0) as f64) / 1000.0);
}

/// Every HTTP sink request (each attempt), by outcome: `success`, `client_error` (4xx but
/// 429), `throttled` (429), `server_error` (5xx), `network_error` (no answer).
pub static SINK_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(Opts::new("tributary_sink_requests_total", "HTTP sink requests (each attempt) by outcome"), &["outcome"]).unwrap())
});

pub static SINK_RETRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    reg(IntCounter::new("tributary_sink_retries_total", "HTTP sink attempts after the first").unwrap())
});

pub static SINK_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    reg(Histogram::with_opts(
        HistogramOpts::new("tributary_sink_request_seconds", "Time of one HTTP sink request (each attempt)")
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
    )
    .unwrap())
});

/// Export the sink's series (at 0) before its first request.
pub fn init_sink_metrics() {
    for outcome in ["success", "client_error", "throttled", "server_error", "network_error"] {
        SINK_REQUESTS.with_label_values(&[outcome]);
    }
    LazyLock::force(&SINK_RETRIES);
    LazyLock::force(&SINK_SECONDS);
}

/// Kafka ingest records by outcome: `accepted` (split into items, code empty), `rejected`
/// (a known source, but the value could not be read: logged as one rejected event with the
/// code) and `dead_lettered` (no known source: parked with the reason's code).
pub static INGEST_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new("tributary_ingest_records_total", "Kafka ingest records by outcome and code"),
        &["outcome", "code"],
    )
    .unwrap())
});

/// Items of ingest records, as the gateway's `tributary_gateway_events_total` counts them.
pub static INGEST_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new("tributary_ingest_events_total", "Items of Kafka ingest records accepted or refused, by outcome and code"),
        &["outcome", "code"],
    )
    .unwrap())
});

pub static INGEST_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    reg(IntCounter::new("tributary_ingest_record_bytes_total", "Kafka ingest record values read (as produced)").unwrap())
});

/// Export the ingest stage's main series (at 0) before its first record, so alerts and
/// dashboards see them from the start.
pub fn init_ingest_metrics() {
    INGEST_RECORDS.with_label_values(&["accepted", ""]);
    INGEST_EVENTS.with_label_values(&["accepted", ""]);
    LazyLock::force(&INGEST_BYTES);
}
