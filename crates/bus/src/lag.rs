//! Consumer lag: how far each stage's consumer group is behind its input topic, per partition,
//! in records and in seconds, and the end offset of every topic of the installation.
//!
//! One thread per worker process ([`spawn_monitor`]) computes it every [`INTERVAL`], off the
//! stage loops' hot path, from what Kafka holds (not from a stage loop's own state):
//!
//! - **records behind** = end offset − the group's committed offset (the log start when the
//!   group has none yet). The end offset is the *last stable offset*: the monitor reads with
//!   `isolation.level=read_committed`, so records of a transaction still open do not count as
//!   waiting yet (the stage could not read them either).
//! - **seconds behind** = now − the timestamp of the *oldest unconsumed record*, the first
//!   record at or after the committed offset, read with one small fetch per lagging partition.
//!   Not a rate estimate: it is exact when a stage has stopped (where a rate estimate divides
//!   by zero), and "how old is the oldest thing still waiting" is what an operator is asking.
//!   Transactional topics (every stage's output) hold a commit marker after each transaction:
//!   an offset that is no record. When only markers lie between the committed offset and the
//!   end, the fetch reaches the end without a record, and both numbers are 0.
//!
//! Every worker process reports the lag of *every* stage's group, not only of the stages it
//! runs: lag belongs to the group, and a stage whose processes are all down — exactly when the
//! alert must fire — could not report its own. The series therefore repeat per process (their
//! `instance` label differs): aggregate with `max by (stage, group, topic, partition)`, as the
//! recording rules in `deploy/prometheus/` do.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the lag is measured (each measurement costs one offset fetch per group, one
/// watermark query per partition, and a small fetch per lagging partition).
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Longest any one Kafka request of a measurement may take.
const TIMEOUT: Duration = Duration::from_secs(3);

fn register<T: prometheus::core::Collector + Clone + 'static>(c: T) -> T {
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

pub static LAG_RECORDS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new("tributary_consumer_lag_records", "Records a stage's consumer group has not consumed yet, per partition of its input topic"),
            &["stage", "group", "topic", "partition"],
        )
        .unwrap(),
    )
});

pub static LAG_SECONDS: LazyLock<GaugeVec> = LazyLock::new(|| {
    register(
        GaugeVec::new(
            Opts::new("tributary_consumer_lag_seconds", "Age of the oldest record a stage's consumer group has not consumed yet (0 when caught up)"),
            &["stage", "group", "topic", "partition"],
        )
        .unwrap(),
    )
});

pub static COMMITTED_OFFSET: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new("tributary_consumer_committed_offset", "Offset a stage's consumer group has committed (the log start when none)"),
            &["stage", "group", "topic", "partition"],
        )
        .unwrap(),
    )
});

pub static END_OFFSET: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new("tributary_topic_end_offset", "Last stable offset of a topic partition (grows with every record and transaction marker)"),
            &["topic", "partition"],
        )
        .unwrap(),
    )
});

pub static MEASUREMENT_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new("tributary_consumer_lag_errors_total", "Lag measurements that failed (Kafka did not answer in time)"),
            &["stage"],
        )
        .unwrap(),
    )
});

/// A consumer group whose lag is measured: `stage` names it in the metrics.
#[derive(Debug, Clone)]
pub struct LagTarget {
    pub stage: String,
    pub group: String,
    pub topic: String,
}

/// Start the measuring thread; it stops at shutdown.
pub fn spawn_monitor(brokers: &str, targets: Vec<LagTarget>, topics: Vec<String>, shutdown: watch::Receiver<bool>) -> Result<(), String> {
    let monitor = Monitor::new(brokers, targets, topics)?;
    std::thread::Builder::new()
        .name("consumer-lag".into())
        .spawn(move || {
            let stopped = || *shutdown.borrow();
            while !stopped() {
                let started = Instant::now();
                monitor.measure();
                // Sleep in short steps so that shutdown is not held up.
                while started.elapsed() < INTERVAL && !stopped() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
        .map_err(|e| format!("lag monitor thread: {e}"))?;
    Ok(())
}

struct Group {
    target: LagTarget,
    /// Carries the group id, to read its committed offsets; never subscribes (never joins).
    consumer: BaseConsumer,
}

struct Monitor {
    groups: Vec<Group>,
    /// No group: metadata, watermarks, and the fetch of the oldest unconsumed records.
    probe: BaseConsumer<QuietEof>,
    topics: Vec<String>,
}

/// What a partition's measurement found before the oldest record was looked at.
struct Behind {
    partition: i32,
    from: i64,
    records: i64,
}

/// The probe reads up to each partition's end on purpose: librdkafka reports every end of
/// partition through the client's error callback, which rdkafka's default context logs at
/// ERROR. Here it is the expected outcome, so it goes to debug; other errors stay errors.
struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(&error, KafkaError::PartitionEOF(_)) || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            tracing::debug!(%error, reason, "lag probe reached a partition's end");
        } else {
            tracing::error!(%error, reason, "lag probe: librdkafka error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

impl Monitor {
    fn new(brokers: &str, targets: Vec<LagTarget>, mut topics: Vec<String>) -> Result<Self, String> {
        let probe: BaseConsumer<QuietEof> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "tributary-lag-probe") // required by librdkafka; never joined
            .set("client.id", "tributary-lag")
            .set("enable.auto.commit", "false")
            // End offsets are then last stable offsets, and aborted records are skipped.
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            // One record per partition is all a measurement reads: keep fetches small.
            .set("queued.min.messages", "1")
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "65536")
            .set("fetch.wait.max.ms", "10")
            .create_with_context(QuietEof)
            .map_err(|e| format!("lag probe consumer: {e}"))?;
        let mut groups = Vec::new();
        for target in targets {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("group.id", &target.group)
                .set("client.id", "tributary-lag")
                .set("enable.auto.commit", "false")
                // read_committed would ask the broker for *stable* offsets only, and wait while
                // a stage's transaction holds its offsets pending: the last committed ones are
                // what a measurement wants.
                .set("isolation.level", "read_uncommitted")
                .create()
                .map_err(|e| format!("lag consumer for {}: {e}", target.group))?;
            if !topics.contains(&target.topic) {
                topics.push(target.topic.clone());
            }
            groups.push(Group { target, consumer });
        }
        Ok(Monitor { groups, probe, topics })
    }

    /// One measurement of every topic and group. Failures are counted and logged at debug
    /// level; the gauges keep their last values until the next success.
    fn measure(&self) {
        // Start and end offsets of every partition of every topic.
        let mut marks: HashMap<&str, BTreeMap<i32, (i64, i64)>> = HashMap::new();
        for topic in &self.topics {
            match self.watermarks(topic) {
                Ok(m) => {
                    for (p, (_, high)) in &m {
                        END_OFFSET.with_label_values(&[topic.as_str(), &p.to_string()]).set(*high);
                    }
                    marks.insert(topic.as_str(), m);
                }
                Err(e) => tracing::debug!(topic, error = %e, "lag: watermarks"),
            }
        }
        for g in &self.groups {
            let t = &g.target;
            let Some(parts) = marks.get(t.topic.as_str()) else {
                MEASUREMENT_ERRORS.with_label_values(&[&t.stage]).inc();
                continue;
            };
            if let Err(e) = self.measure_group(g, parts) {
                MEASUREMENT_ERRORS.with_label_values(&[&t.stage]).inc();
                tracing::debug!(stage = %t.stage, error = %e, "lag measurement failed");
            }
        }
    }

    fn watermarks(&self, topic: &str) -> Result<BTreeMap<i32, (i64, i64)>, String> {
        let md = self.probe.fetch_metadata(Some(topic), TIMEOUT).map_err(|e| e.to_string())?;
        let t = md.topics().first().ok_or("no metadata")?;
        if let Some(e) = t.error() {
            return Err(format!("{e:?}"));
        }
        let mut out = BTreeMap::new();
        for p in t.partitions() {
            let w = self.probe.fetch_watermarks(topic, p.id(), TIMEOUT).map_err(|e| e.to_string())?;
            out.insert(p.id(), w);
        }
        Ok(out)
    }

    fn measure_group(&self, g: &Group, parts: &BTreeMap<i32, (i64, i64)>) -> Result<(), String> {
        let t = &g.target;
        let mut tpl = TopicPartitionList::new();
        for p in parts.keys() {
            tpl.add_partition(&t.topic, *p);
        }
        let committed = g.consumer.committed_offsets(tpl, TIMEOUT).map_err(|e| e.to_string())?;
        let mut behind = Vec::new();
        for (p, (low, high)) in parts {
            let c = match committed.find_partition(&t.topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => *low, // nothing committed yet: the stage starts at the log start (earliest)
            };
            // Records below the log start were deleted by retention: they wait no more.
            let from = c.max(*low);
            let labels = [t.stage.as_str(), t.group.as_str(), t.topic.as_str(), &p.to_string()];
            COMMITTED_OFFSET.with_label_values(&labels).set(from);
            let records = (high - from).max(0);
            if records == 0 {
                LAG_RECORDS.with_label_values(&labels).set(0);
                LAG_SECONDS.with_label_values(&labels).set(0.0);
            } else {
                behind.push(Behind { partition: *p, from, records });
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        let oldest = self.oldest_records(&t.topic, &behind)?;
        let now_ms = chrono_now_ms();
        for b in &behind {
            let labels = [t.stage.as_str(), t.group.as_str(), t.topic.as_str(), &b.partition.to_string()];
            match oldest.get(&b.partition) {
                // Only transaction markers (or aborted records) are left: nothing waits.
                Some(None) => {
                    LAG_RECORDS.with_label_values(&labels).set(0);
                    LAG_SECONDS.with_label_values(&labels).set(0.0);
                }
                Some(Some(ts)) => {
                    LAG_RECORDS.with_label_values(&labels).set(b.records);
                    LAG_SECONDS.with_label_values(&labels).set(((now_ms - ts).max(0) as f64) / 1000.0);
                }
                // Not read in time: the count is known, the age keeps its last value.
                None => LAG_RECORDS.with_label_values(&labels).set(b.records),
            }
        }
        Ok(())
    }

    /// Timestamp (ms) of the first committed record at or after `from`, per partition; `None`
    /// when the partition ends first. Partitions not answered within the timeout are missing.
    fn oldest_records(&self, topic: &str, behind: &[Behind]) -> Result<HashMap<i32, Option<i64>>, String> {
        let mut tpl = TopicPartitionList::new();
        for b in behind {
            tpl.add_partition_offset(topic, b.partition, Offset::Offset(b.from)).map_err(|e| e.to_string())?;
        }
        self.probe.assign(&tpl).map_err(|e| e.to_string())?;
        let mut found: HashMap<i32, Option<i64>> = HashMap::new();
        let deadline = Instant::now() + TIMEOUT;
        while found.len() < behind.len() && Instant::now() < deadline {
            match self.probe.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.topic() == topic => {
                    let ts = m.timestamp().to_millis().unwrap_or_else(chrono_now_ms);
                    found.entry(m.partition()).or_insert(Some(ts));
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    found.entry(p).or_insert(None);
                }
                Some(Err(e)) => tracing::debug!(topic, error = %e, "lag: fetch of the oldest records"),
                _ => {}
            }
        }
        let _ = self.probe.unassign();
        Ok(found)
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
