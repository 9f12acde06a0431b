//! Lanes: the workers a stage hands its records to, one lane per key hash.
//!
//! A lane handles its records one at a time, in the order given, so one key's records (one
//! user in one environment) are handled in partition order; lanes run concurrently, so
//! different users' records overlap their round trips to Kafka and the store. Both delivery
//! loops ([`crate::stage`], [`crate::exactly_once`]) use them.

use crate::producer::Producer;
use crate::stage::{Handler, Record, StageError, StageOptions};
use rdkafka::message::{Headers, Message, OwnedMessage};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A lane's report on one record.
pub(crate) struct Done {
    pub partition: i32,
    pub offset: i64,
    /// False when shutdown interrupted the record before its effects were durable.
    pub finished: bool,
}

pub(crate) struct Lanes {
    senders: Vec<mpsc::UnboundedSender<OwnedMessage>>,
    /// For reporting a record a stopped lane could not take.
    report: mpsc::UnboundedSender<Done>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    pub done: mpsc::UnboundedReceiver<Done>,
}

pub(crate) type ReadyFn = Arc<dyn Fn(bool) + Send + Sync>;

impl Lanes {
    pub fn spawn<H: Handler + 'static>(
        opts: &Arc<StageOptions>,
        handler: &Arc<H>,
        dlq: &Producer,
        shutdown: &watch::Receiver<bool>,
        on_ready: &ReadyFn,
    ) -> Lanes {
        let n = opts.lanes.max(1);
        let (done_tx, done) = mpsc::unbounded_channel::<Done>();
        let mut senders = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, mut rx) = mpsc::unbounded_channel::<OwnedMessage>();
            senders.push(tx);
            let (handler, dlq, opts, done, on_ready, mut stop) =
                (handler.clone(), dlq.clone(), opts.clone(), done_tx.clone(), on_ready.clone(), shutdown.clone());
            workers.push(tokio::spawn(async move {
                while let Some(msg) = rx.recv().await {
                    let finished = process(&opts, handler.as_ref(), &dlq, &msg, &mut stop, on_ready.as_ref()).await;
                    let _ = done.send(Done { partition: msg.partition(), offset: msg.offset(), finished });
                    if !finished {
                        // Shutting down mid-record: leave it, and what follows, to the next owner.
                        // Every record is reported, so a loop waiting for its batch never hangs.
                        rx.close();
                        while let Some(m) = rx.recv().await {
                            let _ = done.send(Done { partition: m.partition(), offset: m.offset(), finished: false });
                        }
                        return;
                    }
                }
            }));
        }
        Lanes { senders, report: done_tx, workers, done }
    }

    /// Hand a record to its key's lane.
    pub fn dispatch(&self, msg: OwnedMessage) {
        let lane = lane_of(msg.key().unwrap_or_default(), self.senders.len());
        if let Err(e) = self.senders[lane].send(msg) {
            // The lane stopped (shutdown interrupted it): report the record unfinished.
            let m = e.0;
            tracing::debug!(partition = m.partition(), offset = m.offset(), "lane stopped; record left for the next owner");
            let _ = self.report.send(Done { partition: m.partition(), offset: m.offset(), finished: false });
        }
    }

    /// Stop taking records and wait for the lanes to finish what they hold; returns the
    /// reports still queued.
    pub async fn close(self) -> Vec<Done> {
        let Lanes { senders, report, workers, mut done } = self;
        drop(senders);
        drop(report);
        for w in workers {
            let _ = w.await;
        }
        let mut rest = Vec::new();
        while let Ok(d) = done.try_recv() {
            rest.push(d);
        }
        rest
    }
}

fn lane_of(key: &[u8], lanes: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// A Kafka message as handlers see it.
pub(crate) fn record_of(msg: &OwnedMessage, attempt: u32) -> Record<'_> {
    Record {
        key: msg.key(),
        payload: msg.payload().unwrap_or_default(),
        headers: msg.headers(),
        timestamp: msg.timestamp().to_millis(),
        partition: msg.partition(),
        offset: msg.offset(),
        attempt,
    }
}

/// Record headers never copied to the dead-letter topic: they carry credentials.
const CREDENTIAL_HEADERS: [&str; 2] = ["tributary-token", "authorization"];

/// Returns false if shutdown interrupted the record before it was done.
pub(crate) async fn process<H: Handler + ?Sized>(
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
        let record = record_of(msg, attempt);
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
                    // A credential in a header (an ingest producer's token) goes no further.
                    for hd in h.iter().filter(|hd| !CREDENTIAL_HEADERS.contains(&hd.key.to_ascii_lowercase().as_str())) {
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
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|v| *v).await;
}

/// Sleep; true if shutdown was requested meanwhile.
pub(crate) async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|v| *v) => true,
    };
    stopped || *shutdown.borrow()
}
