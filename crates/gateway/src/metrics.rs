//! Gateway metrics, registered in the default Prometheus registry.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts};
use std::sync::LazyLock;

use tributary_runtime::health::register as reg;

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new("tributary_gateway_requests_total", "Requests by source template, environment and status"),
        &["template", "environment", "status"],
    )
    .unwrap())
});

pub static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new("tributary_gateway_events_total", "Items accepted or refused, by outcome and code"),
        &["outcome", "code"],
    )
    .unwrap())
});

pub static BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    reg(IntCounter::new("tributary_gateway_request_bytes_total", "Request body bytes received (as sent)").unwrap())
});

/// Fine around 1–20 ms, where a single-event request's latency lives (a 10 ms objective
/// needs buckets on both sides of it).
const LATENCY_BUCKETS: [f64; 18] =
    [0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

pub static PRODUCE_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    reg(Histogram::with_opts(
        HistogramOpts::new("tributary_gateway_produce_seconds", "Time from produce to Kafka acknowledgement of a request's items")
            .buckets(LATENCY_BUCKETS.to_vec()),
    )
    .unwrap())
});

pub static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    reg(HistogramVec::new(
        HistogramOpts::new("tributary_gateway_request_seconds", "Request latency by status")
            .buckets(LATENCY_BUCKETS.to_vec()),
        &["status"],
    )
    .unwrap())
});

pub static QUEUE_DEPTH: LazyLock<IntGauge> = LazyLock::new(|| {
    reg(IntGauge::new("tributary_gateway_producer_queue_depth", "Records in the producer queue not yet acknowledged").unwrap())
});

/// The `accepted` series of [`EVENTS`], looked up once (it is hit for every item).
pub static ACCEPTED: LazyLock<IntCounter> = LazyLock::new(|| EVENTS.with_label_values(&["accepted", ""]));

/// JSON-RPC calls answered with an error object, by template and JSON-RPC error code.
pub static RPC_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new("tributary_gateway_rpc_errors_total", "JSON-RPC calls answered with an error, by template and JSON-RPC error code"),
        &["template", "code"],
    )
    .expect("valid metric"))
});
