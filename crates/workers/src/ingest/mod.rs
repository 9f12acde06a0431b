//! Kafka ingest: records your services produce to `{prefix}.ingest` → the same raw events the
//! gateway makes from an HTTP request (`tributary_sources::raw`), so normalization, dedup,
//! mappings, logs and metrics are those of HTTP.
//!
//! A record's value is what an HTTP endpoint takes (one Segment-spec event, `{"batch": [...]}`
//! or an array; for templated sources, their configured shape); its headers name the source
//! environment ([`route`]). Kafka's ACLs decide who may produce, so no signature is checked and
//! the events' verification reads `kafka`. Outcomes, none of which stops the stream:
//! - readable: every item goes to the raw topic (refused items too: the event log shows them);
//! - a known source, but a value that cannot be read (not JSON, too large, not an object or
//!   array): one rejected event is logged with the code (`invalid_json`, `payload_too_large`,
//!   ...) and the record's text;
//! - no known source (headers missing, unknown source or token): the record is parked on the
//!   dead-letter topic with the reason in `x-error` and `x-code`.
//!
//! Everything is produced through the stage's producer, so in exactly-once mode the raw
//! events, dead letters and the consumed offsets commit in one transaction. The request id of
//! a record's events names it (`{topic}:{partition}:{offset}:{timestamp}`), so a replay (in
//! at-least-once mode) yields the same event ids and the store's writes stay idempotent.

pub mod route;

pub use crate::metrics::init_ingest_metrics as init_metrics;

use crate::metrics::{INGEST_BYTES, INGEST_EVENTS, INGEST_RECORDS};
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use std::borrow::Cow;
use tributary_bus::{Handler, Producer, Record, StageError};
use tributary_model::{EnvironmentSettings, ItemError, Template};
use tributary_sources::request::keepable_headers;
use tributary_sources::{raw_records, refused_record, screen_vouched, Incoming, RawRecord, Receipt};
use tributary_store::ConfigCache;

/// What the events' `verification` reads: the broker vouched for the producer.
pub const VERIFICATION: &str = "kafka";

/// How much of a refused record's value the event log keeps when the value is over the limit.
const SHOWN_WHEN_TOO_LARGE: usize = 1024;

pub struct Ingest {
    pub cache: ConfigCache,
    pub producer: Producer,
    /// Consumed (for request ids and dead letters' `x-origin`).
    pub ingest_topic: String,
    pub raw_topic: String,
    pub dead_letter_topic: String,
    /// This stage's consumer group (a dead letter's `x-stage`).
    pub group: String,
    pub max_record_bytes: usize,
}

impl Ingest {
    async fn ingest(&self, rec: &Record<'_>) -> Result<(), StageError> {
        INGEST_BYTES.inc_by(rec.payload.len() as u64);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let headers = rec.header_pairs();
        let named = match route::named(&headers) {
            Ok(n) => n,
            Err(why) => return self.dead_letter(rec, &headers, &why).await,
        };
        let snapshot = self.cache.get();
        let routed = match route::resolve(&snapshot, &named, now_ms) {
            // A source created a moment ago may not be in the snapshot yet: ask for a current
            // one (as the gateway does for tokens) and look once more.
            Err(why) if why.may_be_stale_config() => {
                let current = self.cache.as_of(now_ms).await;
                route::resolve(&current, &named, now_ms).map(|(s, t)| (s.clone(), t))
            }
            other => other.map(|(s, t)| (s.clone(), t)),
        };
        match routed {
            Ok((settings, template)) => self.ingest_for(rec, &headers, &settings, template, now_ms).await,
            Err(why) => self.dead_letter(rec, &headers, &why).await,
        }
    }

    async fn ingest_for(
        &self,
        rec: &Record<'_>,
        headers: &[(&str, &[u8])],
        settings: &EnvironmentSettings,
        template: Template,
        now_ms: i64,
    ) -> Result<(), StageError> {
        // Header names lower-case, as over HTTP; the token is a credential and goes no further.
        let header_list: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), String::from_utf8_lossy(v).into_owned()))
            .filter(|(k, _)| k != route::TOKEN)
            .collect();
        let request_id = match rec.timestamp {
            Some(ts) => format!("{}:{}:{}:{ts}", self.ingest_topic, rec.partition, rec.offset),
            None => format!("{}:{}:{}", self.ingest_topic, rec.partition, rec.offset),
        };
        let receipt = Receipt { request_id: &request_id, received_at: now_ms, implied_type: None };
        let incoming = Incoming {
            template,
            settings,
            headers: &header_list,
            body: rec.payload,
            max_body: self.max_record_bytes,
            now_ms,
            implied_type: None,
        };
        let records = match screen_vouched(&incoming, VERIFICATION) {
            Ok(processed) => {
                let out = raw_records(settings, template, &processed, &receipt);
                for (_, e) in &out.rejected {
                    INGEST_EVENTS.with_label_values(&["rejected", &e.code]).inc();
                }
                INGEST_EVENTS.with_label_values(&["accepted", ""]).inc_by((out.records.len() - out.rejected.len()) as u64);
                INGEST_RECORDS.with_label_values(&["accepted", ""]).inc();
                out.records
            }
            Err(e) => {
                let error = ItemError { code: e.code().to_string(), message: e.to_string() };
                tracing::debug!(partition = rec.partition, offset = rec.offset, source = %settings.source,
                    environment = %settings.environment, code = %error.code, "ingest record refused; logged as rejected");
                INGEST_RECORDS.with_label_values(&["rejected", &error.code]).inc();
                INGEST_EVENTS.with_label_values(&["rejected", &error.code]).inc();
                let kept: Map<String, Value> = keepable_headers(settings, &header_list);
                let shown = self.shown(rec.payload);
                vec![refused_record(settings, template, &kept, &receipt, VERIFICATION, &shown, error)]
            }
        };
        self.produce(settings, &request_id, now_ms, &records).await
    }

    /// A refused value as the event log shows it: its text, cut short when over the limit.
    fn shown<'p>(&self, payload: &'p [u8]) -> Cow<'p, str> {
        if payload.len() <= self.max_record_bytes {
            return String::from_utf8_lossy(payload);
        }
        let head = String::from_utf8_lossy(&payload[..SHOWN_WHEN_TOO_LARGE]);
        Cow::Owned(format!("{head}… ({} bytes in all)", payload.len()))
    }

    /// Send every record and wait for each: part of the stage's transaction in exactly-once
    /// mode. A failed send is transient (Kafka unreachable): the stage retries the record.
    async fn produce(&self, settings: &EnvironmentSettings, request_id: &str, now_ms: i64, records: &[RawRecord]) -> Result<(), StageError> {
        let received = now_ms.to_string();
        let headers = tributary_sources::record_headers(settings, request_id, &received);
        let sends = records.iter().map(|r| self.producer.send(&self.raw_topic, &r.key, &r.value, &headers));
        for result in futures::future::join_all(sends).await {
            result.map_err(|e| StageError::Transient(format!("produce to {}: {e}", self.raw_topic)))?;
        }
        Ok(())
    }

    /// Park a record no source can be told for on the dead-letter topic, with the reason.
    async fn dead_letter(&self, rec: &Record<'_>, headers: &[(&str, &[u8])], why: &route::Unroutable) -> Result<(), StageError> {
        tracing::warn!(partition = rec.partition, offset = rec.offset, code = why.code, reason = %why.message,
            "ingest record names no known source; parked on the dead-letter topic");
        INGEST_RECORDS.with_label_values(&["dead_lettered", why.code]).inc();
        let origin = format!("{}:{}:{}", self.ingest_topic, rec.partition, rec.offset);
        let mut out: Vec<(String, String)> = vec![
            ("x-error".into(), why.message.clone()),
            ("x-code".into(), why.code.to_string()),
            ("x-origin".into(), origin),
            ("x-stage".into(), self.group.clone()),
        ];
        // The producer's own headers go along, but not the token: it is a credential.
        out.extend(
            headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case(route::TOKEN))
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned())),
        );
        let refs: Vec<(&str, &str)> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let key = String::from_utf8_lossy(rec.key.unwrap_or_default());
        self.producer
            .send(&self.dead_letter_topic, &key, rec.payload, &refs)
            .await
            .map_err(|e| StageError::Transient(format!("produce to {}: {e}", self.dead_letter_topic)))
    }
}

impl Handler for Ingest {
    fn handle<'a>(&'a self, rec: &'a Record<'a>) -> BoxFuture<'a, Result<(), StageError>> {
        Box::pin(self.ingest(rec))
    }
}
