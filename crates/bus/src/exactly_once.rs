//! Exactly-once delivery: a stage's outputs and its consumed offsets commit in one Kafka
//! transaction (consume → process → produce, KIP-447 style).
//!
//! The loop works in batches:
//! 1. Collect: take records until the batch is full (`max_in_flight`), has waited `max_wait`
//!    since its first record, or no record came for `linger`. No transaction is open while
//!    collecting, so this is where rebalances happen: if a partition is revoked, the records
//!    taken from it before the revocation leave the batch (its next owner reads them from the
//!    committed offset).
//! 2. Process: begin a transaction, hand the batch to the lanes, wait for every record. The
//!    handlers' produced records belong to the transaction. Meanwhile the offsets after the
//!    batch go into the transaction too (with the consumer group's metadata, which lets the
//!    coordinator fence a zombie from an older generation). The consumer is not polled
//!    meanwhile, so no rebalance can take a partition from under an open transaction.
//! 3. Commit: wait for the acknowledgement of every record produced, and commit. If the commit
//!    must be aborted, abort, seek every partition back to the batch's first offset and go on:
//!    the aborted outputs are invisible to `read_committed` readers and the batch is done again.
//!    A commit that failed fatally may still have completed (a fresh client's
//!    `init_transactions` finishes a commit the coordinator had begun): then the loop reads
//!    from the group's committed offsets instead, so a batch that did commit is not done twice.
//!
//! A process killed mid-batch leaves an open transaction; the next process with the same
//! transactional id aborts it in `init_transactions`, and readers never see its outputs. Effects
//! outside Kafka (store writes, HTTP calls) are not in the transaction: handlers keep those
//! idempotent (upserts, a `success` check, idempotency keys), as in at-least-once mode.

use crate::lanes::{record_of, stopped, Lanes, ReadyFn};
use crate::metrics::{BATCH_RECORDS, COMMIT_SECONDS, PHASE_SECONDS, TRANSACTIONS};
use crate::producer::{Producer, TxnError};
use crate::stage::{consumer_config, subscribe, Handler, Record, StageOptions};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Remembers revoked partitions until the loop has looked at them. The loop asks after every
/// record; the flag keeps that to one atomic load while nothing was revoked.
#[derive(Default)]
pub(crate) struct RevocationLog {
    any: AtomicBool,
    revoked: Mutex<Vec<i32>>,
}

impl RevocationLog {
    fn push(&self, partitions: impl IntoIterator<Item = i32>) {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).extend(partitions);
        self.any.store(true, Ordering::Release);
    }

    fn take(&self) -> Vec<i32> {
        if !self.any.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub(crate) struct StageContext {
    log: Arc<RevocationLog>,
}

impl ClientContext for StageContext {}

impl ConsumerContext for StageContext {
    // Runs inside `recv()`, on the stage's task, before librdkafka drops the partitions.
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(partitions = ?parts, "partitions revoked");
            self.log.push(parts);
        }
    }
}

/// First and next offset of a batch, per partition.
#[derive(Clone, Copy)]
struct Span {
    first: i64,
    next: i64,
}

pub(crate) async fn run<H: Handler + 'static>(
    opts: StageOptions,
    handler: Arc<H>,
    producer: &Producer,
    mut shutdown: watch::Receiver<bool>,
    on_ready: ReadyFn,
    max_wait: Duration,
    linger: Duration,
) -> Result<(), String> {
    let log = Arc::new(RevocationLog::default());
    let consumer: StreamConsumer<StageContext> = consumer_config(&opts)
        // Offsets are committed by the transaction, never by the consumer.
        .set("enable.auto.commit", "false")
        .create_with_context(StageContext { log: log.clone() })
        .map_err(|e| format!("kafka consumer: {e}"))?;
    subscribe(&consumer, &opts.topic)?;
    retry_txn("init transactions", &mut shutdown, || producer.init_transactions()).await.map_err(|e| e.message)?;
    let opts = Arc::new(opts);
    on_ready(true);
    let mut lanes = Lanes::spawn(&opts, &handler, producer, &shutdown, &on_ready);
    let max_batch = opts.max_in_flight.max(1);

    'batches: loop {
        // 1. Collect.
        let mut batch: Vec<OwnedMessage> = Vec::new();
        let mut closes_at: Option<Instant> = None;
        while batch.len() < max_batch {
            let wait = match closes_at {
                None => Duration::from_secs(3600),
                Some(at) => linger.min(at.saturating_duration_since(Instant::now())),
            };
            let m = tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => break 'batches,
                m = tokio::time::timeout(wait, consumer.recv()) => m,
            };
            // A revocation is delivered inside `recv()`: drop what we took from those partitions.
            let revoked = log.take();
            if !revoked.is_empty() {
                batch.retain(|b| !revoked.contains(&b.partition()));
            }
            match m {
                Err(_) => break, // linger or max_wait elapsed
                Ok(Err(e)) => {
                    tracing::warn!(stage = %opts.group, error = %e, "consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Ok(m)) => {
                    batch.push(m.detach());
                    closes_at.get_or_insert_with(|| Instant::now() + max_wait);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        if let Some(at) = closes_at {
            // From the first record to the batch's close.
            let first = (at - max_wait).into_std();
            phase(&opts.group, "collect", first);
        }
        let mut spans: HashMap<i32, Span> = HashMap::new();
        for m in &batch {
            spans
                .entry(m.partition())
                .and_modify(|s| s.next = s.next.max(m.offset() + 1))
                .or_insert(Span { first: m.offset(), next: m.offset() + 1 });
        }

        // 2. Process.
        BATCH_RECORDS.with_label_values(&[&opts.group]).observe(batch.len() as f64);
        let began = std::time::Instant::now();
        if let Err(e) = retry_txn("begin transaction", &mut shutdown, || producer.begin_transaction()).await {
            // Nothing of this batch is sent yet: after a fresh producer, the batch goes ahead.
            if *shutdown.borrow() || !e.recoverable {
                return Err(e.message);
            }
            replace_producer(producer, &opts.group, &e.message, &mut shutdown).await?;
            retry_txn("begin transaction", &mut shutdown, || producer.begin_transaction()).await.map_err(|e| e.message)?;
        }
        phase(&opts.group, "begin", began);
        let processing = std::time::Instant::now();
        let n = batch.len();
        // The batch is prepared, handed to the lanes, and every dispatched record reported,
        // finished or not (see `Lanes`). The offsets go into the transaction meanwhile.
        let lanes_ref = &mut lanes;
        let handler_ref = handler.as_ref();
        let all_done = async move {
            let records: Vec<Record<'_>> = batch.iter().map(|m| record_of(m, 1)).collect();
            handler_ref.prepare(&records).await;
            drop(records);
            for m in batch {
                lanes_ref.dispatch(m);
            }
            let mut unfinished = 0usize;
            for _ in 0..n {
                if !lanes_ref.done.recv().await.is_some_and(|d| d.finished) {
                    unfinished += 1;
                }
            }
            unfinished
        };
        let (offsets_sent, unfinished) = tokio::join!(
            send_offsets(&opts.group, &consumer, &opts.topic, producer, &spans, &mut shutdown, on_ready.as_ref()),
            all_done
        );
        if unfinished > 0 {
            // Only shutdown interrupts a record: leave the whole batch to the next owner.
            tracing::info!(stage = %opts.group, unfinished, "shutdown mid-batch; aborting its transaction");
            let _ = producer.abort_transaction().await;
            TRANSACTIONS.with_label_values(&[&opts.group, "abandoned"]).inc();
            break 'batches;
        }

        phase(&opts.group, "process", processing);

        // 3. Commit.
        let started = std::time::Instant::now();
        let committed = match (producer.take_txn_failure(), offsets_sent) {
            (Some(why), _) => Err(TxnError::Abortable(why)),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => match handler.before_commit().await {
                Err(e) => {
                    // The store is failing: pause before the batch is redone, as a lane would
                    // before retrying a record, instead of hammering it in a loop.
                    tracing::warn!(stage = %opts.group, error = %e, "before the commit; the batch will be redone");
                    on_ready(false);
                    crate::lanes::sleep_or_shutdown(Duration::from_secs(1), &mut shutdown).await;
                    Err(TxnError::Abortable(format!("before the commit: {e}")))
                }
                Ok(()) => commit(&opts.group, producer, &mut shutdown, on_ready.as_ref()).await,
            },
        };
        COMMIT_SECONDS.observe(started.elapsed().as_secs_f64());
        phase(&opts.group, "commit", started);
        match committed {
            Ok(()) => {
                TRANSACTIONS.with_label_values(&[&opts.group, "committed"]).inc();
                producer.alternate();
            }
            Err(TxnError::Fenced(e)) => {
                return Err(format!(
                    "{e} (another process may be using this stage's transactional id: give each process its own workers.instance_id)"
                ))
            }
            Err(e) if *shutdown.borrow() => {
                // Shut down while Kafka could not settle the commit: an abortable transaction is
                // aborted here, once (its offsets, sent early, would otherwise hold up the next
                // owner's offset fetch until the transaction times out); anything else is left
                // to the next owner of these partitions, whose transactional id fences this one
                // and aborts it if it never completed.
                if matches!(e, TxnError::Abortable(_)) {
                    let _ = producer.abort_transaction().await;
                }
                tracing::info!(stage = %opts.group, error = %e, "shut down with the batch's commit unresolved");
                TRANSACTIONS.with_label_values(&[&opts.group, "abandoned"]).inc();
                break 'batches;
            }
            Err(e) => {
                tracing::warn!(stage = %opts.group, error = %e, records = n, "transaction aborted; the batch will be redone");
                TRANSACTIONS.with_label_values(&[&opts.group, "aborted"]).inc();
                // An abortable failure is aborted; retriable failures of the abort (a broker
                // restarting, a commit still settling in the background) are waited out. A
                // fatal one, of the commit or of the abort, is not a reason to stop the stage:
                // a fresh producer's `init_transactions` aborts the open transaction for us.
                // Unless the commit had reached the coordinator: then it completes it (KIP-98),
                // and the outcome of a commit that failed fatally is not known here.
                let outcome_unknown = matches!(e, TxnError::Fatal(_));
                let aborted = match e {
                    TxnError::Fatal(e) => Err(TxnFailure { message: e, recoverable: true }),
                    _ => retry_txn("abort transaction", &mut shutdown, || producer.abort_transaction()).await,
                };
                if let Err(e) = aborted {
                    if *shutdown.borrow() {
                        break 'batches;
                    }
                    if !e.recoverable {
                        return Err(e.message);
                    }
                    replace_producer(producer, &opts.group, &e.message, &mut shutdown).await?;
                }
                let committed = if outcome_unknown { committed_offsets(&consumer, &opts.topic, &spans) } else { HashMap::new() };
                for (partition, span) in &spans {
                    let to = committed.get(partition).copied().unwrap_or(span.first);
                    if let Err(e) = consumer.seek(&opts.topic, *partition, Offset::Offset(to), Duration::from_secs(10)) {
                        // Not ours any more: its next owner starts at the committed offset anyway.
                        tracing::info!(partition, error = %e, "rewind after abort");
                    }
                }
            }
        }
    }
    let _ = lanes.close().await;
    tracing::info!(stage = %opts.group, "stage stopped; last transaction committed");
    Ok(())
}

/// Where to read a batch's partitions again after a commit whose outcome is unknown: the group's
/// committed offsets, once the new client's `init_transactions` has settled the transaction
/// (a `read_committed` consumer's offset fetch waits for pending transactional offsets,
/// KIP-447). If the commit went through, that is past the batch, which is not done again; if it
/// was aborted, the batch's first offset or earlier. Partitions whose offset cannot be fetched
/// are read again from the batch's first offset (a redo may then repeat outputs: logged).
fn committed_offsets(consumer: &StreamConsumer<StageContext>, topic: &str, spans: &HashMap<i32, Span>) -> HashMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for partition in spans.keys() {
        tpl.add_partition(topic, *partition);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(tpl) => tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "committed offsets unknown after a failed commit; the batch is done again and may repeat outputs");
            HashMap::new()
        }
    }
}

/// The consumed offsets of a batch (the next offset to read, per partition), sent into its
/// transaction. Runs beside the batch's processing: the offsets are known once the batch
/// closes, and neither call waits on the other (`make bench-pipeline`, half load: 6–10 ms of
/// coordinator round trips taken off every stage's cycle).
async fn send_offsets(
    group: &str,
    consumer: &StreamConsumer<StageContext>,
    topic: &str,
    producer: &Producer,
    spans: &HashMap<i32, Span>,
    shutdown: &mut watch::Receiver<bool>,
    on_ready: &(dyn Fn(bool) + Send + Sync),
) -> Result<(), TxnError> {
    let mut offsets = TopicPartitionList::new();
    for (partition, span) in spans {
        offsets
            .add_partition_offset(topic, *partition, Offset::Offset(span.next))
            .map_err(|e| TxnError::Fatal(e.to_string()))?;
    }
    let t = std::time::Instant::now();
    let r = retry_while_down("send offsets", shutdown, on_ready, || async {
        let group = consumer.group_metadata().ok_or_else(|| TxnError::Fatal("consumer has no group metadata".into()))?;
        producer.send_offsets(offsets.clone(), group).await
    })
    .await;
    phase(group, "offsets", t);
    r
}

/// Commit the transaction: wait for the batch's last records to be acknowledged, then end it.
async fn commit(
    group: &str,
    producer: &Producer,
    shutdown: &mut watch::Receiver<bool>,
    on_ready: &(dyn Fn(bool) + Send + Sync),
) -> Result<(), TxnError> {
    let t = std::time::Instant::now();
    producer.wait_delivered(Duration::from_secs(30)).await;
    phase(group, "drain", t);
    let t = std::time::Instant::now();
    let r = retry_while_down("commit", shutdown, on_ready, || producer.commit_transaction()).await;
    phase(group, "end", t);
    r
}

/// Time since `since`, as one batch's `phase` in `tributary_stage_phase_seconds`.
fn phase(group: &str, phase: &str, since: std::time::Instant) {
    PHASE_SECONDS.with_label_values(&[group, phase]).observe(since.elapsed().as_secs_f64());
}

/// Within a commit: retry a retriable failure for as long as it lasts (Kafka down or
/// restarting), with the stage not ready meanwhile. A commit that timed out goes on in
/// librdkafka's background and is resumed by calling it again; giving up instead, and
/// aborting, failed with "Conflicting commit_transaction API call is already in progress" and
/// ended the process. Returns the last error if shutdown is requested meanwhile.
async fn retry_while_down<F, Fut>(
    what: &str,
    shutdown: &mut watch::Receiver<bool>,
    on_ready: &(dyn Fn(bool) + Send + Sync),
    mut f: F,
) -> Result<(), TxnError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), TxnError>>,
{
    let mut attempts = 0u32;
    loop {
        match f().await {
            Err(TxnError::Retriable(e)) => {
                attempts += 1;
                if attempts > 3 {
                    on_ready(false);
                    tracing::warn!(error = %e, attempts, "{what}: Kafka cannot settle it yet; retrying");
                }
                let backoff = Duration::from_millis(100 * u64::from(attempts.min(20)));
                if crate::lanes::sleep_or_shutdown(backoff, shutdown).await {
                    return Err(TxnError::Retriable(e));
                }
            }
            other => {
                if attempts > 3 {
                    on_ready(true);
                }
                return other;
            }
        }
    }
}

/// Why a transaction call gave up, and whether a fresh producer can carry on.
struct TxnFailure {
    message: String,
    /// A fatal error other than fencing: the producer's state is lost, not taken over.
    recoverable: bool,
}

/// Retry a transaction call while it fails retriably (broker restarting, coordinator moving).
async fn retry_txn<F, Fut>(what: &str, shutdown: &mut watch::Receiver<bool>, mut f: F) -> Result<(), TxnFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), TxnError>>,
{
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(TxnError::Retriable(e)) => {
                tracing::warn!(error = %e, "{what}: retrying");
                if crate::lanes::sleep_or_shutdown(Duration::from_secs(1), shutdown).await {
                    return Err(TxnFailure { message: format!("{what}: shut down while retrying"), recoverable: false });
                }
            }
            Err(e) => {
                let recoverable = matches!(e, TxnError::Fatal(_));
                return Err(TxnFailure { message: format!("{what}: {e}"), recoverable });
            }
        }
    }
}

/// Replace a producer left unusable by a fatal transaction error with a fresh one (same
/// transactional id), whose `init_transactions` aborts whatever the old one left open.
async fn replace_producer(producer: &Producer, stage: &str, why: &str, shutdown: &mut watch::Receiver<bool>) -> Result<(), String> {
    tracing::warn!(stage, error = why, "transactional producer unusable; replacing it and redoing the batch");
    TRANSACTIONS.with_label_values(&[stage, "producer_replaced"]).inc();
    producer.rebuild().map_err(|e| format!("replace producer: {e}"))?;
    retry_txn("init transactions", shutdown, || producer.init_transactions()).await.map_err(|e| e.message)
}
