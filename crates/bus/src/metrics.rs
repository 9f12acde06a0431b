//! Stage-loop metrics (default Prometheus registry, served by each process's `/metrics`).

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts};
use std::sync::LazyLock;

fn register<T: prometheus::core::Collector + Clone + 'static>(c: T) -> T {
    // A second registration (tests building several stages in one process) is harmless.
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

/// Exactly-once batches by outcome: `committed`, `aborted` (redone), `abandoned` (shutdown),
/// `producer_replaced` (a fatal transaction error; the batch is redone by a fresh producer).
pub static TRANSACTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(Opts::new("tributary_stage_transactions_total", "Stage transactions by outcome"), &["stage", "outcome"])
            .unwrap(),
    )
});

pub static BATCH_RECORDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new("tributary_stage_batch_records", "Records per exactly-once batch")
                .buckets(vec![1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0]),
            &["stage"],
        )
        .unwrap(),
    )
});

/// Time to send the offsets and commit one transaction.
pub static COMMIT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new("tributary_stage_commit_seconds", "Time to commit one stage transaction")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
        )
        .unwrap(),
    )
});

/// Where a stage's batch cycle goes, per phase: `collect` (from the batch's first record to
/// its close), `begin` (begin the transaction), `process` (the handlers, until every record of
/// the batch is done; `offsets`, the consumed offsets sent into the transaction, runs beside
/// it), `commit` (from the end of processing to the end of the commit: `drain`, the wait for
/// the last acknowledgements, then `end`, the commit call). A record waits for the rest of its
/// batch's cycle, so these make up a stage's share of the end-to-end delay.
pub static PHASE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new("tributary_stage_phase_seconds", "Time per exactly-once batch in each phase of the stage loop")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            &["stage", "phase"],
        )
        .unwrap(),
    )
});

/// librdkafka's own view of a producer, from its statistics callback: where a record's wait
/// for an acknowledgement goes. `queue` = waiting in the partition queue (linger, batching),
/// `outbuf` = request built and waiting to be written, `rtt` = broker round trip.
pub static PRODUCER_LATENCY: LazyLock<prometheus::GaugeVec> = LazyLock::new(|| {
    register(
        prometheus::GaugeVec::new(
            Opts::new("tributary_kafka_producer_latency_seconds", "Producer latency windows reported by librdkafka (last statistics interval)"),
            &["client_id", "part", "window_quantile"],
        )
        .unwrap(),
    )
});

/// Records per produce batch (per partition), from the same statistics.
pub static PRODUCER_BATCH_RECORDS: LazyLock<prometheus::GaugeVec> = LazyLock::new(|| {
    register(
        prometheus::GaugeVec::new(
            Opts::new("tributary_kafka_producer_batch_records", "Records per produce batch reported by librdkafka (last statistics interval)"),
            &["client_id", "window_quantile"],
        )
        .unwrap(),
    )
});
