//! The consumer loop every worker stage runs: at-least-once, in order per key.
//!
//! Records are spread over `lanes` by their key (`{environment}/{user}`): one lane handles its
//! records one at a time, in partition order, and lanes run concurrently. So one user's events
//! in one environment are handled in the order received, while different users' events overlap
//! their round trips to Kafka and the store (a stage that awaited each record in turn would be
//! bound by one round trip per record).
//!
//! Offsets: a record's offset counts as done once its handler returned `Ok` (its effects are
//! durable: produced with acks=all, or written to the store). Per partition, the offset stored
//! for commit is the first one not yet done, so a crash replays at most the records still in
//! flight, and never skips one. Stored offsets are auto-committed every second and committed
//! synchronously at shutdown, after the lanes drained. Handlers make replays harmless
//! (deterministic ids, upserts, a `success` check before firing an action).
//!
//! Failures: a transient error (store or Kafka unreachable) is retried with backoff for as long
//! as it lasts — the lane stalls and the stage reports not-ready, rather than park good
//! records. A permanent error (a record this code cannot handle) is retried `max_attempts`
//! times, then the record goes to the dead-letter topic with the error, and the lane moves on.

use crate::producer::Producer;
use futures::future::BoxFuture;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

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
    pub partition: i32,
    pub offset: i64,
    pub attempt: u32,
}

pub trait Handler: Send + Sync {
    /// Process one record; return only once its effects are durable.
    fn handle<'a>(&'a self, record: &'a Record<'a>) -> BoxFuture<'a, Result<(), StageError>>;

    /// Called when a record is parked on the dead-letter topic (e.g. to log the event).
    fn dead_lettered<'a>(&'a self, _record: &'a Record<'a>, _error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
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
    /// Records taken from Kafka but not yet done, at most (back-pressure).
    pub max_in_flight: usize,
}

pub fn consumer(opts: &StageOptions) -> Result<StreamConsumer, String> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group)
        .set("client.id", &opts.client_id)
        .set("enable.auto.commit", "true")
        // Only offsets we store (after a record is done) are committed.
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        // Cooperative rebalancing: adding a process moves only the partitions it takes.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .map_err(|e| format!("kafka consumer: {e}"))?;
    c.subscribe(&[&opts.topic]).map_err(|e| format!("subscribe {}: {e}", opts.topic))?;
    Ok(c)
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
pub async fn run_stage<H: Handler + 'static>(
    opts: StageOptions,
    handler: Arc<H>,
    dlq: &Producer,
    mut shutdown: watch::Receiver<bool>,
    on_ready: impl Fn(bool) + Send + Sync + 'static,
) -> Result<(), String> {
    let consumer = consumer(&opts)?;
    let opts = Arc::new(opts);
    let on_ready: Arc<dyn Fn(bool) + Send + Sync> = Arc::new(on_ready);
    on_ready(true);
    let lanes = opts.lanes.max(1);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(i32, i64)>();
    let mut lane_tx = Vec::with_capacity(lanes);
    let mut workers = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (tx, mut rx) = mpsc::unbounded_channel::<OwnedMessage>();
        lane_tx.push(tx);
        let (handler, dlq, opts, done, on_ready, mut stop) =
            (handler.clone(), dlq.clone(), opts.clone(), done_tx.clone(), on_ready.clone(), shutdown.clone());
        workers.push(tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if !process(&opts, handler.as_ref(), &dlq, &msg, &mut stop, on_ready.as_ref()).await {
                    return; // shutting down mid-record: leave it (and what follows) uncommitted
                }
                let _ = done.send((msg.partition(), msg.offset()));
            }
        }));
    }
    drop(done_tx);

    let topic = opts.topic.clone();
    let mut progress: HashMap<i32, Progress> = HashMap::new();
    let mut in_flight = 0usize;
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some((partition, offset)) = done_rx.recv() => {
                in_flight -= 1;
                if let Some(p) = progress.get_mut(&partition) {
                    p.pending.remove(&offset);
                    store(&consumer, &topic, partition, p.committable());
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
                let lane = lane_of(msg.key().unwrap_or_default(), lanes);
                let _ = lane_tx[lane].send(msg);
            }
        }
    }
    // Drain: lanes finish what they hold (a record interrupted by shutdown stays pending).
    drop(lane_tx);
    for w in workers {
        let _ = w.await;
    }
    while let Ok((partition, offset)) = done_rx.try_recv() {
        if let Some(p) = progress.get_mut(&partition) {
            p.pending.remove(&offset);
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

fn lane_of(key: &[u8], lanes: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// Returns false if shutdown interrupted the record before it was done.
async fn process<H: Handler + ?Sized>(
    opts: &StageOptions,
    handler: &H,
    dlq: &Producer,
    msg: &OwnedMessage,
    shutdown: &mut watch::Receiver<bool>,
    on_ready: &(dyn Fn(bool) + Send + Sync),
) -> bool {
    let payload = msg.payload().unwrap_or_default();
    let mut attempt = 1u32;
    let mut backoff = Duration::from_millis(100);
    loop {
        let record = Record { key: msg.key(), payload, partition: msg.partition(), offset: msg.offset(), attempt };
        match handler.handle(&record).await {
            Ok(()) => {
                on_ready(true);
                return true;
            }
            Err(StageError::Transient(e)) => {
                on_ready(false);
                tracing::warn!(stage = %opts.group, partition = msg.partition(), offset = msg.offset(), attempt, error = %e, "transient failure; retrying");
            }
            Err(StageError::Permanent(e)) if attempt >= opts.max_attempts => {
                tracing::error!(stage = %opts.group, partition = msg.partition(), offset = msg.offset(), attempt, error = %e, "giving up; record goes to the dead-letter topic");
                let key = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
                let origin = format!("{}:{}:{}", msg.topic(), msg.partition(), msg.offset());
                let mut headers: Vec<(String, String)> = vec![
                    ("x-error".into(), e.clone()),
                    ("x-origin".into(), origin),
                    ("x-stage".into(), opts.group.clone()),
                ];
                if let Some(h) = msg.headers() {
                    for hd in h.iter() {
                        if let Some(v) = hd.value {
                            headers.push((hd.key.to_string(), String::from_utf8_lossy(v).into_owned()));
                        }
                    }
                }
                let hdr_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                // The dead-letter write itself must succeed before we move past the record.
                loop {
                    match dlq.send(&opts.dead_letter_topic, &key, payload, &hdr_refs).await {
                        Ok(()) => break,
                        Err(err) => {
                            tracing::warn!(error = %err, "dead-letter produce failed; retrying");
                            if sleep_or_shutdown(Duration::from_secs(1), shutdown).await {
                                return false;
                            }
                        }
                    }
                }
                handler.dead_lettered(&record, &e).await;
                return true;
            }
            Err(StageError::Permanent(e)) => {
                tracing::warn!(stage = %opts.group, partition = msg.partition(), offset = msg.offset(), attempt, error = %e, "record failed; retrying");
            }
        }
        attempt += 1;
        if sleep_or_shutdown(backoff, shutdown).await {
            return false;
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Resolves once shutdown is requested (without holding the watch's guard across awaits).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|v| *v).await;
}

/// Sleep; true if shutdown was requested meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|v| *v) => true,
    };
    stopped || *shutdown.borrow()
}
