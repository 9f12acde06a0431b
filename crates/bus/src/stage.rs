//! The consumer loop every worker stage runs, in one of two delivery modes.
//!
//! Both hand records to [`crate::lanes`] (in order per key, concurrent across keys).
//!
//! - [`Delivery::ExactlyOnce`] (the worker stages that produce: translator, mapper, executor):
//!   see [`crate::exactly_once`]. A stage's outputs and its consumed offsets commit in one Kafka
//!   transaction; a crash or a rebalance can neither lose nor repeat an output.
//! - [`Delivery::AtLeastOnce`] (stages whose only effects are idempotent store writes, such as
//!   the action-log writer), below: a record's offset counts as done once its handler returned
//!   `Ok` (its effects are durable). Per partition, the offset stored for commit is the first
//!   one not yet done, so a crash replays at most the records still in flight, and never skips
//!   one. Stored offsets are auto-committed every second and committed synchronously at
//!   shutdown, after the lanes drained.
//!
//! Failures: a transient error (store or Kafka unreachable) is retried with backoff for as long
//! as it lasts — the lane stalls and the stage reports not-ready, rather than park good
//! records. A permanent error (a record this code cannot handle) is retried `max_attempts`
//! times, then the record goes to the dead-letter topic with the error, and the lane moves on.

use crate::lanes::{stopped, Lanes, ReadyFn};
use crate::producer::Producer;
use futures::future::BoxFuture;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;

#[derive(Debug, Error)]
pub enum StageError {
    #[error("transient: {0}")]
    Transient(String),
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A record as handlers see it.
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// The record's headers (the ingest stage reads its source from them).
    pub headers: Option<&'a OwnedHeaders>,
    /// The record's timestamp (ms since the epoch), when it has one.
    pub timestamp: Option<i64>,
    pub partition: i32,
    pub offset: i64,
    pub attempt: u32,
}

impl Record<'_> {
    /// The headers that have a value, in order: `(name as sent, value)`.
    pub fn header_pairs(&self) -> Vec<(&str, &[u8])> {
        self.headers.map(|h| h.iter().filter_map(|hd| hd.value.map(|v| (hd.key, v))).collect()).unwrap_or_default()
    }
}

pub trait Handler: Send + Sync {
    /// Process one record; return only once its effects are durable (in exactly-once mode,
    /// records produced through the stage's producer are part of the open transaction).
    fn handle<'a>(&'a self, record: &'a Record<'a>) -> BoxFuture<'a, Result<(), StageError>>;

    /// Exactly-once mode: called with a batch's records, in partition order, once its
    /// transaction has begun and before the records go to the lanes. For work that is cheaper
    /// for the whole batch at once (one round of store reads for all its records instead of
    /// one per record, in each lane in turn). Best effort: `handle` must come to the same
    /// result for a record whether or not this ran.
    fn prepare<'a>(&'a self, _batch: &'a [Record<'a>]) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Exactly-once mode: called once every record of the batch is done, before the commit,
    /// so that store writes deferred to here are durable before the batch's outputs are
    /// visible. An error aborts the transaction, and the batch is done again.
    fn before_commit(&self) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async { Ok(()) })
    }

    /// Called when a record is parked on the dead-letter topic (e.g. to log the event).
    fn dead_lettered<'a>(&'a self, _record: &'a Record<'a>, _error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

#[derive(Debug, Clone)]
pub enum Delivery {
    AtLeastOnce,
    ExactlyOnce {
        /// Longest a batch keeps collecting records once it has one.
        max_wait: Duration,
        /// A batch closes early when no record arrived for this long (light load: small
        /// batches, low latency; heavy load: records queue up while a batch runs, so the
        /// next one is large and the commit cost is shared).
        linger: Duration,
    },
}

pub struct StageOptions {
    pub brokers: String,
    pub group: String,
    pub topic: String,
    pub dead_letter_topic: String,
    pub max_attempts: u32,
    pub client_id: String,
    /// Records handled concurrently (by key); 1 = strictly one at a time.
    pub lanes: usize,
    /// Records taken from Kafka but not yet done, at most (back-pressure; in exactly-once
    /// mode, the largest batch).
    pub max_in_flight: usize,
    pub delivery: Delivery,
}

/// The consumer settings both modes share.
pub(crate) fn consumer_config(opts: &StageOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group)
        .set("client.id", &opts.client_id)
        .set("auto.offset.reset", "earliest")
        // Only committed transactions are read (librdkafka's default, stated because the
        // Java client's default is the opposite): an aborted attempt's outputs never count.
        .set("isolation.level", "read_committed")
        // Cooperative rebalancing: adding a process moves only the partitions it takes.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // How long the broker may hold a fetch open while waiting for data. librdkafka's 500 ms
        // default showed up as stage latency behind transactional producers (measured in
        // `make bench-pipeline`: 223 → 142 ms p50 end to end at 20 ms; 5 ms gained little
        // more and triples idle fetches).
        .set("fetch.wait.max.ms", "20")
        // Records fetched ahead of the stage, at most (librdkafka's default: 64 MiB per
        // consumer). A stage that lags holds this much in memory: in a ten-minute soak the
        // executor process (executor and action-log writer, a consumer each) went 79 → 191 MiB
        // while its writer lagged 46,540 records. 16 MiB is still thousands of records ahead of
        // the largest batch.
        .set("queued.max.messages.kbytes", "16384");
    c
}

pub(crate) fn subscribe<C: ConsumerContext>(c: &StreamConsumer<C>, topic: &str) -> Result<(), String> {
    c.subscribe(&[topic]).map_err(|e| format!("subscribe {topic}: {e}"))
}

/// Per partition: offsets in flight, and the next offset after everything seen.
#[derive(Default)]
struct Progress {
    pending: BTreeSet<i64>,
    next: i64,
}

impl Progress {
    /// The offset to commit: the first one not done yet.
    fn committable(&self) -> i64 {
        self.pending.first().copied().unwrap_or(self.next)
    }
}

/// Store `next` (the first offset not done) for commit. rdkafka's `store_offset` goes through
/// librdkafka's `rd_kafka_offset_store`, which takes the *last processed* offset and stores it
/// plus one: hence `next - 1`. (Passing `next` skipped one record per commit: a test that
/// restarts the executor found it.)
fn store(consumer: &StreamConsumer, topic: &str, partition: i32, next: i64) {
    if next <= 0 {
        return; // nothing done on this partition yet
    }
    if let Err(e) = consumer.store_offset(topic, partition, next - 1) {
        tracing::debug!(error = %e, partition, "store offset (partition no longer ours?)");
    }
}

/// Run until `shutdown` flips; then drain the lanes, commit what is done and return.
/// In exactly-once mode, `producer` must be transactional and be the handler's producer.
pub async fn run_stage<H: Handler + 'static>(
    opts: StageOptions,
    handler: Arc<H>,
    producer: &Producer,
    shutdown: watch::Receiver<bool>,
    on_ready: impl Fn(bool) + Send + Sync + 'static,
) -> Result<(), String> {
    let on_ready: ReadyFn = Arc::new(on_ready);
    match opts.delivery.clone() {
        Delivery::AtLeastOnce => run_at_least_once(opts, handler, producer, shutdown, on_ready).await,
        Delivery::ExactlyOnce { max_wait, linger } => {
            crate::exactly_once::run(opts, handler, producer, shutdown, on_ready, max_wait, linger).await
        }
    }
}

async fn run_at_least_once<H: Handler + 'static>(
    opts: StageOptions,
    handler: Arc<H>,
    dlq: &Producer,
    mut shutdown: watch::Receiver<bool>,
    on_ready: ReadyFn,
) -> Result<(), String> {
    let consumer: StreamConsumer = consumer_config(&opts)
        .set("enable.auto.commit", "true")
        // Only offsets we store (after a record is done) are committed.
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .create()
        .map_err(|e| format!("kafka consumer: {e}"))?;
    subscribe(&consumer, &opts.topic)?;
    let opts = Arc::new(opts);
    on_ready(true);
    let mut lanes = Lanes::spawn(&opts, &handler, dlq, &shutdown, &on_ready);

    let topic = opts.topic.clone();
    let mut progress: HashMap<i32, Progress> = HashMap::new();
    let mut in_flight = 0usize;
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(done) = lanes.done.recv() => {
                in_flight -= 1;
                if !done.finished {
                    continue; // stays pending: not committed
                }
                if let Some(p) = progress.get_mut(&done.partition) {
                    p.pending.remove(&done.offset);
                    store(&consumer, &topic, done.partition, p.committable());
                }
            }
            m = consumer.recv(), if in_flight < opts.max_in_flight => {
                let msg = match m {
                    Ok(m) => m.detach(),
                    Err(e) => {
                        tracing::warn!(stage = %opts.group, error = %e, "consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let p = progress.entry(msg.partition()).or_default();
                p.pending.insert(msg.offset());
                p.next = p.next.max(msg.offset() + 1);
                in_flight += 1;
                lanes.dispatch(msg);
            }
        }
    }
    // Drain: lanes finish what they hold (a record interrupted by shutdown stays pending).
    for done in lanes.close().await {
        if let (true, Some(p)) = (done.finished, progress.get_mut(&done.partition)) {
            p.pending.remove(&done.offset);
        }
    }
    for (partition, p) in &progress {
        store(&consumer, &topic, *partition, p.committable());
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // NoOffset just means nothing new was processed.
        tracing::debug!(error = %e, "final commit");
    }
    tracing::info!(stage = %opts.group, "stage stopped; offsets committed");
    Ok(())
}
