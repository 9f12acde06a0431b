//! The consumer loop every worker stage runs: at-least-once, in partition order.
//!
//! For each record, in order: call the handler; once it returns `Ok` (its effects are
//! durable: produced with acks=all, or written to the store), store the offset. Offsets are
//! committed from the stored ones (auto-commit of *stored* offsets only, and a synchronous
//! commit at shutdown and on partition revocation), so a crash replays at most the records
//! whose effects were not yet durable, and never skips one. Handlers make replays harmless
//! (deterministic ids, upserts, a `success` check before firing an action).
//!
//! Failures: a transient error (store or Kafka unreachable) is retried with backoff for as long
//! as it lasts — the stage stalls and reports not-ready, rather than park good records. A
//! permanent error (a record this code cannot handle) is retried `max_attempts` times, then
//! the record goes to the dead-letter topic with the error, and the stage moves on.

use crate::producer::Producer;
use futures::future::BoxFuture;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
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

/// Run until `shutdown` flips; then commit what is done and return.
pub async fn run_stage<H: Handler>(
    opts: StageOptions,
    handler: &H,
    dlq: &Producer,
    mut shutdown: watch::Receiver<bool>,
    on_ready: impl Fn(bool),
) -> Result<(), String> {
    let consumer = consumer(&opts)?;
    on_ready(true);
    loop {
        let msg = tokio::select! {
            _ = shutdown.wait_for(|v| *v) => break,
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(stage = %opts.group, error = %e, "consume error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if !process(&opts, handler, dlq, &msg, &mut shutdown, &on_ready).await {
            break; // shutting down mid-record: leave it uncommitted, it will be redelivered
        }
        if let Err(e) = consumer.store_offset_from_message(&msg) {
            tracing::warn!(error = %e, "store offset");
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // NoOffset just means nothing new was processed.
        tracing::debug!(error = %e, "final commit");
    }
    tracing::info!(stage = %opts.group, "stage stopped; offsets committed");
    Ok(())
}

/// Returns false if shutdown interrupted the record before it was done.
async fn process<H: Handler>(
    opts: &StageOptions,
    handler: &H,
    dlq: &Producer,
    msg: &BorrowedMessage<'_>,
    shutdown: &mut watch::Receiver<bool>,
    on_ready: &impl Fn(bool),
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

/// Sleep; true if shutdown was requested meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|v| *v) => true,
    };
    stopped || *shutdown.borrow()
}
