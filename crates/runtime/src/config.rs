//! Configuration: one TOML file, then `TRIBUTARY_<SECTION>_<KEY>` environment variables on
//! top (`TRIBUTARY_KAFKA_BROKERS=host:9092`, `TRIBUTARY_ADMIN_TOKEN=...`). Unknown keys and
//! bad values stop the process at start with a message naming the key, before anything
//! connects anywhere.

use serde::Deserialize;
use std::net::SocketAddr;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `TRIBUTARY_*` variables that name no configuration section (`TRIBUTARY_CONFIG`, a
    /// deployment's own variables): not configuration, so they are skipped; the binary logs them.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
    pub kafka: KafkaConfig,
    pub cassandra: CassandraConfig,
    pub gateway: GatewayConfig,
    pub admin: AdminConfig,
    pub http: HttpConfig,
    pub workers: WorkersConfig,
    pub ingest: IngestConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Topic names are `{prefix}.ingest`, `{prefix}.raw`, `{prefix}.normalized`,
    /// `{prefix}.actions`, `{prefix}.triggers`, `{prefix}.action-logs`, `{prefix}.dead-letter`.
    pub topic_prefix: String,
    /// Partitions of each topic `migrate` creates: the most consumers one stage can use.
    pub partitions: i32,
    pub replication_factor: i32,
    /// Consumer group prefix: groups are `{group_prefix}-{stage}`.
    pub group_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CassandraConfig {
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// CQL replication map, e.g. `{'class': 'NetworkTopologyStrategy', 'dc1': 3}` in production.
    pub replication: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Partitions each minute of an environment's log timelines is spread over. A timeline
    /// partition holds `60 × events/s ÷ timeline_buckets` rows: the default 8 keeps it under
    /// ScyllaDB's 100,000-row warning up to ~13,000 events/s per environment. Listing a minute
    /// reads every bucket, so more than needed costs reads. Changing it is safe at any time.
    pub timeline_buckets: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Largest body accepted, before and after decompression.
    pub max_body_bytes: usize,
    /// Most produce requests in flight in the producer before new requests get 503.
    pub max_queue_messages: usize,
    /// How long a request waits for Kafka before it answers 503.
    pub produce_timeout_ms: u64,
    /// How long the producer waits to fill a batch (librdkafka `linger.ms`; fractions allowed).
    /// Every single-event request waits this long for its acknowledgement; under load the
    /// batches fill anyway while requests are in flight. 1 ms: `make bench-gateway` measured the
    /// p50 at half load ~0.8 ms lower than with 2 ms and no throughput difference beyond noise.
    pub linger_ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token for every admin endpoint. Required when the admin role runs.
    pub token: String,
    /// Base URL shown in ingest URLs (what senders are told to post to).
    pub public_url: String,
}

/// Limits and timeouts of every HTTP server of the process (gateway, admin API, health
/// endpoints): what keeps a hostile or broken client from holding connections, memory or tasks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A connection must deliver a whole request head within this long of opening, or of its
    /// previous answer; otherwise it is closed. Cuts off slowloris headers and reaps idle
    /// HTTP/1 keep-alive connections (a load balancer in front must idle out sooner).
    pub header_timeout_ms: u64,
    /// A request body must arrive whole within this long of its head: otherwise 408
    /// `request_timeout` and the connection is closed (a trickled body).
    pub body_timeout_ms: u64,
    /// An HTTP/2 connection with no request in flight for this long is closed (GOAWAY).
    pub idle_timeout_ms: u64,
    /// Open connections per server; one more is answered 503 `too_many_connections` and closed.
    /// The process's file limit (`ulimit -n`) must be above the sum over its servers.
    pub max_connections: usize,
    /// Request target plus header names and values, in bytes: over it, 431
    /// `headers_too_large`. Beyond twice this the request is not read at all (431, no body).
    pub max_header_bytes: usize,
    /// Header fields per request: over it, 431 `headers_too_large` (beyond twice: 431, no body).
    pub max_headers: usize,
    /// HTTP/2 streams in flight per connection (more are refused by the protocol).
    pub max_concurrent_streams: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Health and metrics endpoint of the translator/mapper/executor roles.
    pub health_listen: SocketAddr,
    /// How often the whole configuration (sources, mappings) is reloaded: a safety net, since
    /// every change is also announced through the configuration epoch (`config_poll_ms`).
    pub config_refresh_ms: u64,
    /// How often a role checks the configuration epoch when idle. A request or event that may
    /// need a newer configuration checks at once, so additions are live immediately; this
    /// bounds how long a removal (a secret, a token, a source) may still be honoured.
    pub config_poll_ms: u64,
    /// How far the clocks of the hosts running the roles and the admin API may disagree. A
    /// stage makes sure no configuration change made before an event's receipt is missing
    /// from its snapshot by reading the epoch once its clock is this far past the receipt, so
    /// every event waits this long at least once on its way (`make bench-pipeline`: 100 ms put
    /// ~90 ms into the delay at light load). NTP/chrony keep hosts within a few ms; on one
    /// host, 0 is exact.
    pub clock_skew_ms: u64,
    /// Attempts at a record before it goes to the dead-letter topic.
    pub max_attempts: u32,
    /// Records a stage handles concurrently, spread by key (one user's events stay in order).
    pub lanes: usize,
    /// The same for the action-log writer: each report is one round trip of upserts, so its
    /// rate is about lanes ÷ round trip. With 32 it fell behind at half of the pipeline's
    /// maximum (`make bench-pipeline --soak-secs 600`: its lag grew ~250 records a minute).
    pub log_writer_lanes: usize,
    /// Records a stage has taken from Kafka but not finished, at most.
    pub max_in_flight: usize,
    /// Attempts of one HTTP sink request (5xx, 429, network errors) before the action fails.
    pub sink_max_attempts: u32,
    /// First retry delay of the HTTP sink; doubles each attempt (capped at 10 s).
    pub sink_backoff_ms: u64,
    /// Timeout of one HTTP sink request.
    pub sink_timeout_ms: u64,
    /// Translator, mapper and executor commit their outputs and consumed offsets in one Kafka
    /// transaction (no output lost or repeated by a crash). `false`: at-least-once with
    /// idempotent effects (each output may repeat after a crash; slightly lower latency).
    pub exactly_once: bool,
    /// This process's name within its stage, stable across restarts: the transactional id is
    /// `{group}.{instance_id}`, so a restarted process aborts what its predecessor left open.
    /// Every process of one stage needs its own (a Kubernetes StatefulSet pod name, say).
    /// Default: the host name.
    pub instance_id: String,
    /// Exactly-once: longest a batch collects records once it has one.
    pub batch_max_wait_ms: u64,
    /// Exactly-once: a batch closes when no record came for this long (0: it takes what has
    /// arrived and goes; under load, records queue while a batch runs, so batches grow).
    pub batch_linger_ms: u64,
}

/// The Kafka ingest stage (`{prefix}.ingest` → raw topic). Its consumer settings (lanes,
/// batches, exactly-once) are the workers'.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest record value taken (after a `content-encoding: gzip` header is undone); a larger
    /// one is logged as rejected (`payload_too_large`). The broker's own limit
    /// (`message.max.bytes`, 1 MiB by default) applies first, at produce time.
    pub max_record_bytes: usize,
}

/// The host name (`/proc/sys/kernel/hostname`, then `$HOSTNAME`), for the default instance id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".into())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter directive (overridden by RUST_LOG).
    pub level: String,
    /// `json` or `text`.
    pub format: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ignored_env: Vec::new(),
            kafka: KafkaConfig::default(),
            cassandra: CassandraConfig::default(),
            gateway: GatewayConfig::default(),
            admin: AdminConfig::default(),
            http: HttpConfig::default(),
            workers: WorkersConfig::default(),
            ingest: IngestConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "tributary".into(),
            partitions: 12,
            replication_factor: 1,
            group_prefix: "tributary".into(),
        }
    }
}

impl Default for CassandraConfig {
    fn default() -> Self {
        CassandraConfig {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "tributary".into(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            username: None,
            password: None,
            timeline_buckets: 8,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:8080".parse().unwrap(),
            max_body_bytes: 8 * 1024 * 1024,
            max_queue_messages: 100_000,
            produce_timeout_ms: 5_000,
            linger_ms: 1.0,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:8081".parse().unwrap(),
            token: String::new(),
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_concurrent_streams: 100,
        }
    }
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            health_listen: "127.0.0.1:9100".parse().unwrap(),
            config_refresh_ms: 30_000,
            config_poll_ms: 250,
            clock_skew_ms: 25,
            max_attempts: 5,
            lanes: 32,
            log_writer_lanes: 128,
            max_in_flight: 2_000,
            sink_max_attempts: 6,
            sink_backoff_ms: 200,
            sink_timeout_ms: 10_000,
            exactly_once: true,
            instance_id: host_name(),
            batch_max_wait_ms: 100,
            batch_linger_ms: 0,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { max_record_bytes: 1024 * 1024 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: "json".into() }
    }
}

const SECTIONS: [&str; 8] = ["kafka", "cassandra", "gateway", "admin", "http", "workers", "ingest", "log"];

impl Config {
    /// Load `path` (if given), then apply `TRIBUTARY_*` variables from `env`.
    pub fn load(path: Option<&str>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.into(), source })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::Invalid(format!("{p}: {e}")))?
            }
            None => toml::Table::new(),
        };
        let mut ignored_env = Vec::new();
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("TRIBUTARY_") else { continue };
            let rest = rest.to_ascii_lowercase();
            // Only a variable that names a section is configuration: `TRIBUTARY_CONFIG` (the
            // file's path, read by the command line) and any other `TRIBUTARY_*` a deployment
            // happens to set are not, and must not stop the process. A wrong key inside a real
            // section still does (deny_unknown_fields names it).
            let Some((section, key)) = rest.split_once('_').filter(|(s, k)| SECTIONS.contains(s) && !k.is_empty()) else {
                ignored_env.push(name);
                continue;
            };
            let value = parse_env_value(&raw);
            let entry = table.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => {
                    t.insert(key.to_string(), value);
                }
                _ => return Err(ConfigError::Invalid(format!("`{section}` must be a table"))),
            }
        }
        let mut cfg: Config = Config::deserialize(table).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.ignored_env = ignored_env;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |k: &str, m: &str| Err(ConfigError::Invalid(format!("{k}: {m}")));
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers", "must name at least one broker");
        }
        if self.kafka.topic_prefix.is_empty() || !self.kafka.topic_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return bad("kafka.topic_prefix", "must be non-empty and use only letters, digits, `.`, `_`, `-`");
        }
        if self.kafka.partitions < 1 {
            return bad("kafka.partitions", "must be at least 1");
        }
        if self.cassandra.nodes.is_empty() {
            return bad("cassandra.nodes", "must name at least one node");
        }
        if self.cassandra.keyspace.is_empty() || !self.cassandra.keyspace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return bad("cassandra.keyspace", "must be non-empty and use only letters, digits and `_`");
        }
        if !(1..=256).contains(&self.cassandra.timeline_buckets) {
            return bad("cassandra.timeline_buckets", "must be from 1 to 256");
        }
        if !(0.0..=1000.0).contains(&self.gateway.linger_ms) {
            return bad("gateway.linger_ms", "must be from 0 to 1000");
        }
        if self.gateway.max_body_bytes < 1024 {
            return bad("gateway.max_body_bytes", "must be at least 1024");
        }
        if self.ingest.max_record_bytes < 1024 {
            return bad("ingest.max_record_bytes", "must be at least 1024");
        }
        let h = &self.http;
        if !(100..=600_000).contains(&h.header_timeout_ms) {
            return bad("http.header_timeout_ms", "must be from 100 to 600000");
        }
        if !(100..=3_600_000).contains(&h.body_timeout_ms) {
            return bad("http.body_timeout_ms", "must be from 100 to 3600000");
        }
        if !(100..=3_600_000).contains(&h.idle_timeout_ms) {
            return bad("http.idle_timeout_ms", "must be from 100 to 3600000");
        }
        if !(1..=1_000_000).contains(&h.max_connections) {
            return bad("http.max_connections", "must be from 1 to 1000000");
        }
        // hyper needs a read buffer of at least 8 KiB, which is twice the smallest limit.
        if !(4096..=1 << 20).contains(&h.max_header_bytes) {
            return bad("http.max_header_bytes", "must be from 4096 to 1048576");
        }
        if !(16..=1000).contains(&h.max_headers) {
            return bad("http.max_headers", "must be from 16 to 1000");
        }
        if !(1..=10_000).contains(&h.max_concurrent_streams) {
            return bad("http.max_concurrent_streams", "must be from 1 to 10000");
        }
        if !["json", "text"].contains(&self.log.format.as_str()) {
            return bad("log.format", "must be `json` or `text`");
        }
        if self.workers.config_poll_ms == 0 || self.workers.config_poll_ms > self.workers.config_refresh_ms {
            return bad("workers.config_poll_ms", "must be from 1 to workers.config_refresh_ms");
        }
        if self.workers.clock_skew_ms > 10_000 {
            return bad("workers.clock_skew_ms", "must be at most 10000");
        }
        if self.workers.max_attempts == 0 {
            return bad("workers.max_attempts", "must be at least 1");
        }
        if self.workers.lanes == 0 || self.workers.lanes > 4096 {
            return bad("workers.lanes", "must be from 1 to 4096");
        }
        if self.workers.log_writer_lanes == 0 || self.workers.log_writer_lanes > 4096 {
            return bad("workers.log_writer_lanes", "must be from 1 to 4096");
        }
        if self.workers.instance_id.is_empty()
            || !self.workers.instance_id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return bad("workers.instance_id", "must be letters, digits, `.`, `_` or `-`");
        }
        if self.workers.batch_linger_ms > self.workers.batch_max_wait_ms {
            return bad("workers.batch_linger_ms", "must be at most workers.batch_max_wait_ms");
        }
        if self.workers.max_in_flight < self.workers.lanes.max(self.workers.log_writer_lanes) {
            return bad("workers.max_in_flight", "must be at least workers.lanes and workers.log_writer_lanes");
        }
        Ok(())
    }

    /// The admin role refuses to start without a token worth the name.
    pub fn require_admin_token(&self) -> Result<(), ConfigError> {
        if self.admin.token.len() < 16 {
            return Err(ConfigError::Invalid("admin.token: must be set, at least 16 characters (TRIBUTARY_ADMIN_TOKEN)".into()));
        }
        Ok(())
    }

    pub fn topic(&self, stage: &str) -> String {
        format!("{}.{stage}", self.kafka.topic_prefix)
    }

    pub fn group(&self, stage: &str) -> String {
        format!("{}-{stage}", self.kafka.group_prefix)
    }
}

/// An environment value as TOML when it reads as one (`5`, `true`, `["a", "b"]`), else as a
/// plain string (so `127.0.0.1:9092` needs no quotes).
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_overrides_file_and_types_parse() {
        let dir = std::env::temp_dir().join(format!("trib-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "[kafka]\nbrokers = \"a:1\"\npartitions = 3\n").unwrap();
        let c = Config::load(
            Some(f.to_str().unwrap()),
            env(&[("TRIBUTARY_KAFKA_BROKERS", "b:2"), ("TRIBUTARY_CASSANDRA_NODES", "[\"x:9042\"]"), ("PATH", "/bin")]),
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "b:2");
        assert_eq!(c.kafka.partitions, 3);
        assert_eq!(c.cassandra.nodes, vec!["x:9042".to_string()]);
    }

    #[test]
    fn bad_keys_are_named() {
        let e = Config::load(None, env(&[("TRIBUTARY_KAFKA_BROKRES", "x")])).unwrap_err().to_string();
        assert!(e.contains("brokres"), "{e}");
        let e = Config::load(None, env(&[("TRIBUTARY_WORKERS_LANSE", "4")])).unwrap_err().to_string();
        assert!(e.contains("lanse"), "{e}");
        let e = Config::load(None, env(&[("TRIBUTARY_INGEST_MAX_RECORD_BYTES", "10")])).unwrap_err().to_string();
        assert!(e.contains("ingest.max_record_bytes"), "{e}");
        assert_eq!(Config::load(None, env(&[("TRIBUTARY_INGEST_MAX_RECORD_BYTES", "4096")])).unwrap().ingest.max_record_bytes, 4096);
        let e = Config::load(None, env(&[("TRIBUTARY_KAFKA_PARTITIONS", "0")])).unwrap_err().to_string();
        assert!(e.contains("kafka.partitions"), "{e}");
        let e = Config::load(None, env(&[("TRIBUTARY_HTTP_HEADER_TIMEOUT_MS", "0")])).unwrap_err().to_string();
        assert!(e.contains("http.header_timeout_ms"), "{e}");
        let e = Config::load(None, env(&[("TRIBUTARY_HTTP_MAX_HEADER_BYTES", "100")])).unwrap_err().to_string();
        assert!(e.contains("http.max_header_bytes"), "{e}");
        assert_eq!(Config::load(None, env(&[("TRIBUTARY_HTTP_MAX_CONNECTIONS", "64")])).unwrap().http.max_connections, 64);
        let e = Config::load(None, env(&[("TRIBUTARY_GATEWAY_LISTEN", "nowhere")])).unwrap_err().to_string();
        assert!(e.contains("listen") || e.contains("address"), "{e}");
        assert!(Config::load(None, env(&[])).unwrap().require_admin_token().is_err());
    }

    #[test]
    fn variables_that_are_not_configuration_are_skipped() {
        let c = Config::load(
            None,
            env(&[
                ("TRIBUTARY_CONFIG", "/etc/tributary.toml"),
                ("TRIBUTARY_NOPE_X", "1"),
                ("TRIBUTARY_VERSION", "1.2"),
                ("TRIBUTARY_KAFKA_", "x"),
                ("TRIBUTARY_KAFKA_PARTITIONS", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka.partitions, 3);
        assert_eq!(c.ignored_env, ["TRIBUTARY_CONFIG", "TRIBUTARY_NOPE_X", "TRIBUTARY_VERSION", "TRIBUTARY_KAFKA_"]);
    }
}
