//! The producer every stage uses.
//!
//! Settings, and why:
//! - `acks=all` + `enable.idempotence=true`: a record counts as written only once every
//!   in-sync replica has it, and a retried send never duplicates or reorders within a
//!   partition. The gateway answers 2xx only after this acknowledgement.
//! - `linger.ms` (5 for transactional worker stages, whose sends do not wait for an
//!   acknowledgement, 2 for the others, `gateway.linger_ms` = 1 for the gateway): wait that
//!   long to fill a batch. Under load this multiplies throughput (fewer, larger produce
//!   requests, less broker CPU); idle, it adds at most that much to a request that waits for
//!   its acknowledgement. 5 ms measured no better throughput in `make bench-gateway` and a p50
//!   above 6 ms; 0 ms gave smaller batches and more broker CPU for ~1 ms of p50.
//! - `statistics.interval.ms`: librdkafka's latency windows become Prometheus gauges
//!   ([`StatsContext`]).
//! - `compression.type=lz4`: the cheapest codec in CPU per byte saved; JSON events compress
//!   several-fold, which is what lets batching pay off on the network and on disk.
//! - `queue.buffering.max.messages` / `max.kbytes`: a bounded queue. When it is full, `send`
//!   fails at once with `QueueFull` and the gateway answers 503 + Retry-After, instead of
//!   growing memory without limit.
//! - `message.timeout.ms`: how long librdkafka keeps retrying a record before reporting it
//!   failed; the caller's own timeout is shorter, so a request never hangs on a dead cluster.
//! - `retry.backoff.ms=2`, `retry.backoff.max.ms=20` (transactional producers only): a stage's
//!   next transaction starts while the broker still writes the last one's commit markers, and
//!   the broker answers `CONCURRENT_TRANSACTIONS` until they are written (a few ms). At the
//!   default backoff (100 ms) every transaction waited that out once. Measured with
//!   `cargo run -p tributary-bus --example txn_latency` (10 records, offsets, commit; mean of
//!   25 rounds, linger 5 ms): 102 ms per transaction before, 9.2 ms with this backoff and the
//!   drain below (either alone: ~60 ms, the other 100 ms remains). Retries back off exponentially per
//!   request, so a broker that stays down is not hammered faster than every 20 ms.
//! - Before a commit, the stage waits for its records' acknowledgements itself
//!   ([`Producer::commit_transaction`]): rust-rdkafka's commit flushes first, and its flush
//!   polls in whole 100 ms steps, which put 100 ms into every commit that had anything in flight.
//! - `transactional.id` (worker stages only, see [`crate::stage`]): a stage's outputs and its
//!   consumed offsets commit in one Kafka transaction, so a crash can neither lose nor repeat
//!   an output. Two clients per producer take turns, with ids `{group}.{instance}` and
//!   `{group}.{instance}#b` ([`TRANSACTIONAL_CLIENTS`]). The ids are stable per process, so a
//!   restarted process fences its previous incarnation and aborts the transaction that
//!   incarnation left open at once, instead of readers waiting for `transaction.timeout.ms`.

use crate::metrics::{PRODUCER_BATCH_RECORDS, PRODUCER_LATENCY};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::statistics::{Broker, Statistics, Window};
use rdkafka::TopicPartitionList;
use rdkafka::util::Timeout;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProduceError {
    /// The local queue is full: back-pressure, retry later.
    #[error("producer queue is full")]
    QueueFull,
    /// Kafka did not acknowledge in time (unreachable, no leader, ...).
    #[error("kafka did not acknowledge: {0}")]
    NotAcknowledged(String),
    #[error("kafka client error: {0}")]
    Client(String),
    /// The record is over the producer's or the broker's `message.max.bytes`: it will never
    /// be accepted, so retrying is pointless.
    #[error("the record is larger than Kafka accepts (message.max.bytes)")]
    TooLarge,
}

/// How a failed transaction call leaves the producer.
#[derive(Debug, Error)]
pub enum TxnError {
    /// Try the same call again.
    #[error("retriable transaction error: {0}")]
    Retriable(String),
    /// Abort the transaction, rewind the inputs, carry on.
    #[error("transaction must be aborted: {0}")]
    Abortable(String),
    /// A newer producer with the same transactional id took over: this process must stop using
    /// it (rebuilding would fence the other one in turn, and the two would take turns).
    #[error("fenced by a newer producer with the same transactional id: {0}")]
    Fenced(String),
    /// The producer is unusable (its transaction state is lost or inconsistent); a new one
    /// with the same transactional id can take over ([`Producer::rebuild`]).
    #[error("fatal transaction error: {0}")]
    Fatal(String),
}

fn txn_error(e: KafkaError) -> TxnError {
    let fenced = [RDKafkaErrorCode::Fenced, RDKafkaErrorCode::ProducerFenced, RDKafkaErrorCode::InvalidProducerEpoch];
    match &e {
        KafkaError::Transaction(r) if fenced.contains(&r.code()) => TxnError::Fenced(e.to_string()),
        KafkaError::Transaction(r) if r.is_retriable() => TxnError::Retriable(e.to_string()),
        // `txn_requires_abort`, and any other error that leaves the producer usable
        KafkaError::Transaction(r) if !r.is_fatal() => TxnError::Abortable(e.to_string()),
        _ => TxnError::Fatal(e.to_string()),
    }
}

#[derive(Clone)]
pub struct Producer {
    /// Shared by every clone (a stage's lanes send through clones), so a [`Producer::rebuild`]
    /// or an [`Producer::alternate`] reaches them all. The lock is held only to clone the
    /// handle out (an `Arc`).
    inner: Arc<RwLock<Clients>>,
    settings: Arc<ProducerSettings>,
    /// Why a send of the open transaction was refused, if one was (see [`Producer::send`]).
    txn_failure: Arc<Mutex<Option<String>>>,
    /// In a transaction, `send` returns once the record is queued (see [`Producer::send`]).
    transactional: bool,
}

/// A producer's Kafka clients: one, or for a transactional producer two with their own
/// transactional ids, used by turns ([`Producer::alternate`]).
struct Clients {
    list: Vec<FutureProducer<StatsContext>>,
    active: usize,
    /// Has `init_transactions` succeeded on this client? librdkafka refuses a second one on a
    /// client that is ready ("Operation not valid in state Ready"), so only a new client (the
    /// start, or a [`Producer::rebuild`]) is initialised.
    initialized: Vec<bool>,
}

/// Transactional clients per producer. After a commit returns, the broker still writes the
/// transaction's markers into every partition it touched, and until it has, the same
/// transactional id cannot add a partition to its next transaction (`CONCURRENT_TRANSACTIONS`,
/// retried after `retry.backoff.ms`): the next batch's records waited in librdkafka's queue.
/// With two ids used by turns, each has a whole batch's time to finish. Transactions still run
/// one at a time, in order, so this changes nothing in what a transaction means.
/// Measured in `make bench-pipeline --at-rate 2000 --at-rate 2500`, one run before and one
/// after on the same machine: delay receipt → action log p50 / p99 at 2,500 events/s 418 / 802
/// → 257 / 563 ms, at 2,000 events/s 210 / 479 → 137 / 525 ms; the wait for the last
/// acknowledgements before a commit of the mapper and executor, at 2,500 events/s, 33 / 29 →
/// 22 / 19 ms; the pipeline's maximum 6,673 → 7,788 events/s. (The two clients' statistics
/// share one `client_id`, so the latency gauges show whichever reported last.)
const TRANSACTIONAL_CLIENTS: usize = 2;

/// Publishes librdkafka's statistics (every [`STATS_INTERVAL_MS`]) as Prometheus gauges: the
/// split of acknowledgement latency into queueing, output buffer and broker round trip is
/// what tells a slow broker from a producer waiting to fill batches.
struct StatsContext {
    client_id: String,
}

const STATS_INTERVAL_MS: u32 = 5_000;

impl ClientContext for StatsContext {
    fn stats(&self, s: Statistics) {
        let brokers: Vec<&Broker> = s.brokers.values().filter(|b| b.nodeid >= 0).collect();
        let parts: [(&str, BrokerWindow); 3] =
            [("queue", |b| &b.int_latency), ("outbuf", |b| &b.outbuf_latency), ("rtt", |b| &b.rtt)];
        for (part, window) in parts {
            let ws: Vec<&Window> = brokers.iter().filter_map(|b| window(b).as_ref()).filter(|w| w.cnt > 0).collect();
            for (q, us) in worst(&ws) {
                PRODUCER_LATENCY.with_label_values(&[&self.client_id, part, q]).set(us as f64 / 1e6);
            }
        }
        let batches: Vec<&Window> = s.topics.values().map(|t| &t.batchcnt).filter(|w| w.cnt > 0).collect();
        for (q, n) in worst(&batches) {
            PRODUCER_BATCH_RECORDS.with_label_values(&[&self.client_id, q]).set(n as f64);
        }
    }
}

/// One of a broker's latency windows.
type BrokerWindow = fn(&Broker) -> &Option<Window>;

/// p50, p99 and max over several windows (brokers, topics), each the worst of them: what the
/// slowest records see.
fn worst(ws: &[&Window]) -> [(&'static str, i64); 3] {
    let m = |f: fn(&Window) -> i64| ws.iter().map(|w| f(w)).max().unwrap_or(0);
    [("0.5", m(|w| w.p50)), ("0.99", m(|w| w.p99)), ("max", m(|w| w.max))]
}

#[derive(Clone)]
pub struct ProducerSettings {
    pub brokers: String,
    pub max_queue_messages: usize,
    pub message_timeout_ms: u64,
    pub client_id: String,
    /// Set for a transactional producer (worker stages in exactly-once mode).
    pub transactional_id: Option<String>,
    /// `linger.ms` (see the module comment).
    pub linger_ms: f64,
}

/// Send errors that mean the open transaction cannot succeed (librdkafka's `_STATE` when it
/// is in an abortable or fatal state, `_FATAL`, `_FENCED`).
const TXN_STATE_ERRORS: [RDKafkaErrorCode; 3] = [RDKafkaErrorCode::State, RDKafkaErrorCode::Fatal, RDKafkaErrorCode::Fenced];

/// Transaction timeout: the broker aborts a transaction left open longer than this. A batch
/// whose records stall on a transient failure (store down) for longer is aborted and redone.
const TRANSACTION_TIMEOUT_MS: u64 = 60_000;

impl Producer {
    pub fn new(s: &ProducerSettings) -> Result<Self, ProduceError> {
        let n = if s.transactional_id.is_some() { TRANSACTIONAL_CLIENTS } else { 1 };
        let list = (0..n).map(|i| Self::build(s, i)).collect::<Result<Vec<_>, _>>()?;
        Ok(Producer {
            inner: Arc::new(RwLock::new(Clients { initialized: vec![false; list.len()], list, active: 0 })),
            settings: Arc::new(s.clone()),
            txn_failure: Arc::default(),
            transactional: s.transactional_id.is_some(),
        })
    }

    /// Client `index` of a producer: the first has the configured transactional id, the
    /// second that id with `#b` appended (`#` is in no host or pod name, so the second id of
    /// one process cannot be the first of another).
    fn build(s: &ProducerSettings, index: usize) -> Result<FutureProducer<StatsContext>, ProduceError> {
        let mut cfg = ClientConfig::new();
        if let Some(id) = &s.transactional_id {
            let id = if index == 0 { id.clone() } else { format!("{id}#{}", (b'a' + index as u8) as char) };
            cfg.set("transactional.id", id)
                .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS.to_string())
                .set("retry.backoff.ms", "2")
                .set("retry.backoff.max.ms", "20");
        }
        let inner: FutureProducer<StatsContext> = cfg
            .set("bootstrap.servers", &s.brokers)
            .set("client.id", &s.client_id)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", s.linger_ms.to_string())
            .set("compression.type", "lz4")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", s.max_queue_messages.to_string())
            .set("queue.buffering.max.kbytes", "262144")
            .set("message.timeout.ms", s.message_timeout_ms.to_string())
            .set("statistics.interval.ms", STATS_INTERVAL_MS.to_string())
            .create_with_context(StatsContext { client_id: s.client_id.clone() })
            .map_err(|e| ProduceError::Client(e.to_string()))?;
        Ok(inner)
    }

    fn current(&self) -> FutureProducer<StatsContext> {
        let c = self.inner.read().unwrap_or_else(|e| e.into_inner());
        c.list[c.active].clone()
    }

    /// Use the next client for the next transaction (between transactions only: nothing of
    /// this client's transaction may still be unsent). See [`TRANSACTIONAL_CLIENTS`].
    pub fn alternate(&self) {
        let mut c = self.inner.write().unwrap_or_else(|e| e.into_inner());
        c.active = (c.active + 1) % c.list.len();
    }

    /// Replace the client with a new one of the same settings (and transactional id), for a
    /// transactional producer left unusable by a fatal error. A broker SIGKILLed mid-commit
    /// left one in `INVALID_TXN_STATE` (`tests/kafka_crash.rs`). The caller then runs
    /// `init_transactions`, which bumps the id's epoch: whatever the old client left open is
    /// aborted, and the old client is fenced should it still be heard.
    pub fn rebuild(&self) -> Result<(), ProduceError> {
        let mut c = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let active = c.active;
        let fresh = Self::build(&self.settings, active)?;
        let old = std::mem::replace(&mut c.list[active], fresh);
        c.initialized[active] = false;
        drop(c);
        // Dropping purges its queue and waits up to 500 ms for the purge: off the async threads.
        std::thread::spawn(move || drop(old));
        Ok(())
    }

    /// Send one record and wait for its acknowledgement; in a transaction, until it is queued.
    ///
    /// A transactional producer's records count only when the transaction commits, and the
    /// commit waits for every one of them and fails (abortable) if one was not delivered: the
    /// stage then aborts and redoes the batch. Waiting for each record's own acknowledgement
    /// added nothing but a round trip per record to every lane, and kept produce batches small
    /// (`make bench-pipeline`: librdkafka's producer thread serving partitions was the largest
    /// CPU share of the worker processes in `perf`).
    pub async fn send(&self, topic: &str, key: &str, payload: &[u8], headers: &[(&str, &str)]) -> Result<(), ProduceError> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        let mut record = FutureRecord::to(topic).key(key).payload(payload).headers(h);
        let inner = self.current();
        if self.transactional {
            loop {
                match inner.send_result(record) {
                    // The delivery report is not needed: the commit checks every record.
                    Ok(_delivery) => return Ok(()),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // A full local queue empties as the broker acknowledges: wait, do not fail.
                        record = r;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    // The transaction itself is failed (abortable or fatal state): no retry of
                    // this send can succeed, and the batch must be aborted and redone. Waiting
                    // in the lane would stall the batch for ever, so the send is noted as
                    // failed and the stage aborts instead of committing ([`Self::take_txn_failure`]).
                    Err((KafkaError::MessageProduction(code), _)) if TXN_STATE_ERRORS.contains(&code) => {
                        *self.txn_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("send refused: {code:?}"));
                        return Ok(());
                    }
                    Err((e, _)) => return Err(ProduceError::NotAcknowledged(e.to_string())),
                }
            }
        }
        // Timeout::After(0): never block when the queue is full; fail with QueueFull instead.
        match inner.send(record, Timeout::After(Duration::ZERO)).await {
            Ok(_) => Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Err(ProduceError::QueueFull),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => Err(ProduceError::TooLarge),
            Err((e, _)) => Err(ProduceError::NotAcknowledged(e.to_string())),
        }
    }

    /// Why a send of the open transaction was refused since the last call, if one was: the
    /// transaction must not be committed (librdkafka would refuse it too).
    pub fn take_txn_failure(&self) -> Option<String> {
        self.txn_failure.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Records waiting in the local queue (for the queue-depth gauge).
    pub fn in_flight(&self) -> i32 {
        self.clients().iter().map(|p| p.in_flight_count()).sum()
    }

    /// Wait for everything queued to be acknowledged (shutdown), on every client.
    pub fn flush(&self, timeout: Duration) {
        let until = std::time::Instant::now() + timeout;
        for p in self.clients() {
            let _ = p.flush(Timeout::After(until.saturating_duration_since(std::time::Instant::now())));
        }
    }

    /// Every client (both of a transactional producer: the one not in use may still hold the
    /// last transaction's records).
    fn clients(&self) -> Vec<FutureProducer<StatsContext>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).list.clone()
    }

    /// Transactions: each call blocks on the broker, so it runs off the async threads.
    async fn txn<F>(&self, f: F) -> Result<(), TxnError>
    where
        F: FnOnce(&FutureProducer<StatsContext>) -> rdkafka::error::KafkaResult<()> + Send + 'static,
    {
        let p = self.current();
        match tokio::task::spawn_blocking(move || f(&p)).await {
            Ok(r) => r.map_err(txn_error),
            Err(e) => Err(TxnError::Fatal(format!("transaction call panicked: {e}"))),
        }
    }

    /// Register the transactional id of every client not registered yet (at the start, and
    /// the client a [`Self::rebuild`] replaced); fences an earlier process with the same id
    /// and aborts whatever transaction it left open. A retry after a partial failure goes on
    /// with the clients still to do.
    pub async fn init_transactions(&self) -> Result<(), TxnError> {
        let pending: Vec<(usize, FutureProducer<StatsContext>)> = {
            let c = self.inner.read().unwrap_or_else(|e| e.into_inner());
            c.list.iter().enumerate().filter(|(i, _)| !c.initialized[*i]).map(|(i, p)| (i, p.clone())).collect()
        };
        for (i, p) in pending {
            match tokio::task::spawn_blocking(move || p.init_transactions(Duration::from_secs(30))).await {
                Ok(Ok(())) => self.inner.write().unwrap_or_else(|e| e.into_inner()).initialized[i] = true,
                Ok(Err(e)) => return Err(txn_error(e)),
                Err(e) => return Err(TxnError::Fatal(format!("transaction call panicked: {e}"))),
            }
        }
        Ok(())
    }

    pub async fn begin_transaction(&self) -> Result<(), TxnError> {
        self.txn(|p| p.begin_transaction()).await
    }

    /// Commit the consumed `offsets` (next offset to read, per partition) with the transaction.
    pub async fn send_offsets(&self, offsets: TopicPartitionList, group: ConsumerGroupMetadata) -> Result<(), TxnError> {
        self.txn(move |p| p.send_offsets_to_transaction(&offsets, &group, Duration::from_secs(30))).await
    }

    /// Wait until every record sent is acknowledged (or `timeout` passes). The stage loop
    /// calls it before [`Self::commit_transaction`] to time the wait apart from the commit.
    pub async fn wait_delivered(&self, timeout: Duration) {
        let p = self.current();
        let _ = tokio::task::spawn_blocking(move || drain(&p, timeout)).await;
    }

    pub async fn commit_transaction(&self) -> Result<(), TxnError> {
        const TIMEOUT: Duration = Duration::from_secs(30);
        self.txn(|p| {
            // Nothing in flight (after `wait_delivered`, at once): the flush inside
            // rust-rdkafka's commit then returns at once instead of polling for a whole 100 ms.
            drain(p, TIMEOUT);
            p.commit_transaction(TIMEOUT)
        })
        .await
    }

    pub async fn abort_transaction(&self) -> Result<(), TxnError> {
        self.txn(|p| p.abort_transaction(Duration::from_secs(30))).await
    }

    /// Is a broker reachable? (metadata request with a short timeout)
    pub fn reachable(&self, timeout: Duration) -> bool {
        self.current().client().fetch_metadata(None, Timeout::After(timeout)).map(|m| !m.brokers().is_empty()).unwrap_or(false)
    }
}

/// Wait for every record's acknowledgement, in millisecond steps, up to `timeout`; blocking.
/// rust-rdkafka's own flush polls in whole 100 ms steps whenever anything is in flight (see the
/// module comment). Each step is librdkafka's flush for 1 ms: while a flush is in progress
/// librdkafka treats `linger.ms` as elapsed, so the batch's last records go out at once instead
/// of waiting out the linger (which only pays while records are still coming). rust-rdkafka
/// takes delivery reports as events, served by the producer's own thread; librdkafka's flush
/// then only waits for its count of unfinished records to reach zero, which is what ends this.
fn drain(p: &FutureProducer<StatsContext>, timeout: Duration) {
    use rdkafka::bindings::{rd_kafka_flush, rd_kafka_resp_err_t};
    let until = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < until {
        // SAFETY: `p` keeps the client alive for the call; rd_kafka_flush may be called from any
        // thread, beside the producer's polling thread.
        if unsafe { rd_kafka_flush(p.client().native_ptr(), 1) } == rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return;
        }
    }
}

/// The producer of a worker stage (and the admin API): the defaults above, and a
/// `transactional_id` for a stage in exactly-once mode (stable per process).
pub fn worker_producer(brokers: &str, client_id: &str, transactional_id: Option<&str>) -> Result<Producer, ProduceError> {
    Producer::new(&ProducerSettings {
        brokers: brokers.to_string(),
        max_queue_messages: 100_000,
        message_timeout_ms: 30_000,
        client_id: client_id.to_string(),
        transactional_id: transactional_id.map(str::to_string),
        // Transactional: sends do not wait for their acknowledgement, but the commit does, so
        // the linger is paid once per transaction: 5 ms. Otherwise (the admin's replays,
        // at-least-once stages) every send waits for its acknowledgement: 2 ms.
        linger_ms: if transactional_id.is_some() { 5.0 } else { 2.0 },
    })
}
