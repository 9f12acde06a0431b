//! Topic names and creation.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// The topics of one installation, all under one prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Your services → ingest stage: Segment-spec JSON as the HTTP endpoints take it, the
    /// source named in record headers (the documented way in for producers; see the README).
    pub ingest: String,
    /// Gateway and ingest stage → translator: one record per received item ([`tributary_model::RawEvent`]).
    pub raw: String,
    /// Translator → mapper ([`tributary_model::EventRecord`]).
    pub normalized: String,
    /// Mapper → executor ([`tributary_model::ActionPlan`]).
    pub actions: String,
    /// Executor → whoever runs workflows ([`tributary_model::WorkflowTrigger`]).
    pub triggers: String,
    /// Executor → log writer: what was done for each plan ([`tributary_model::ExecutionReport`]),
    /// produced in the executor's transaction (exactly-once mode).
    pub action_logs: String,
    /// Records a stage could not handle after its attempts.
    pub dead_letter: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Topics {
            ingest: format!("{prefix}.ingest"),
            raw: format!("{prefix}.raw"),
            normalized: format!("{prefix}.normalized"),
            actions: format!("{prefix}.actions"),
            triggers: format!("{prefix}.triggers"),
            action_logs: format!("{prefix}.action-logs"),
            dead_letter: format!("{prefix}.dead-letter"),
        }
    }

    pub fn all(&self) -> [&str; 7] {
        [&self.ingest, &self.raw, &self.normalized, &self.actions, &self.triggers, &self.action_logs, &self.dead_letter]
    }
}

/// Create the topics that do not exist yet (idempotent).
pub async fn ensure_topics(brokers: &str, topics: &Topics, partitions: i32, replication: i32) -> Result<(), String> {
    let admin = admin_client(brokers)?;
    let new: Vec<NewTopic> = topics
        .all()
        .iter()
        .map(|name| {
            NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
                // Event bodies can be large; keep a week so a stalled stage can catch up.
                .set("retention.ms", "604800000")
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(new.iter(), &opts).await.map_err(|e| format!("create topics: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("create topic {name}: {code}")),
        }
    }
    Ok(())
}

/// Delete these topics (benchmarks and tests clean up after themselves: a broker holding
/// thousands of leftover partitions slows down). Missing topics are not an error.
pub async fn delete_topics(brokers: &str, topics: &Topics) -> Result<(), String> {
    let admin = admin_client(brokers)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.delete_topics(&topics.all(), &opts).await.map_err(|e| format!("delete topics: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => return Err(format!("delete topic {name}: {code}")),
        }
    }
    Ok(())
}

fn admin_client(brokers: &str) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new().set("bootstrap.servers", brokers).create().map_err(|e| format!("kafka admin client: {e}"))
}
