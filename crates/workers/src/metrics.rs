//! Worker metrics, registered in the default Prometheus registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
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

pub fn observe_delay(stage: &str, received_at_ms: i64) {
    let now = chrono::Utc::now().timestamp_millis();
    DELAY.with_label_values(&[stage]).observe(((now - received_at_ms).max(0) as f64) / 1000.0);
}
