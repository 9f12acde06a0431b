//! Events as they travel the pipeline.

use crate::source::Template;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;

/// One item of an accepted request, as the gateway produced it to the raw topic. It carries the
/// item's bytes exactly as received, so that translation can be re-run (replay, rehearse) and
/// the event log shows what the sender really sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawEvent {
    pub request_id: String,
    /// Position of the item in its request (0 for a single event).
    pub index: u32,
    pub source: String,
    pub environment: String,
    pub template: Template,
    /// Milliseconds since the Unix epoch, when the gateway received the request.
    pub received_at: i64,
    /// Result of signature verification at the gateway: `verified`, `unverified` (no scheme).
    pub verification: String,
    /// Request headers, lower-cased, with every credential header removed.
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// Batch-level `context` / `integrations` of a `{"batch": [...]}` body, merged into the
    /// item by the translator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_context: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_integrations: Option<Box<RawValue>>,
    /// For the tracking API's single-call paths (`/v1/track`, ...): the type the path implies
    /// when the item has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implied_type: Option<String>,
    /// Set when the input was refused as a whole but is still logged: a Kafka ingest record
    /// that is not JSON or too large, or a verified request whose sender would only retry a
    /// 4xx (see `tributary_sources::answer`), answered 2xx. The translator logs the item as
    /// rejected with this error; the item is then the input's text (a JSON string when it did
    /// not parse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<ItemError>,
    /// Set for a row of a JSON-RPC destination call (Hightouch Embedded Destination, Census
    /// Custom Destination): the item is the call's row envelope, read by
    /// `tributary_sources::rpc`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rpc: bool,
    /// The item itself, byte for byte.
    pub item: Box<RawValue>,
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Normalized and handed to the mappings.
    Processed,
    /// Refused by validation; see the error code.
    Rejected,
    /// Its idempotency key was seen within the dedup window: logged, no action.
    Duplicate,
    /// Kept failing; parked on the dead-letter topic.
    DeadLettered,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Processed => "processed",
            EventStatus::Rejected => "rejected",
            EventStatus::Duplicate => "duplicate",
            EventStatus::DeadLettered => "dead_lettered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Processed, Self::Rejected, Self::Duplicate, Self::DeadLettered]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an item was refused: a stable machine-readable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    pub code: String,
    pub message: String,
}

/// The common format every source is translated into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizedEvent {
    /// `track`, `identify`, `page`, `screen`, `group`, `alias`, or a source's own type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Track event name, page/screen name; `None` otherwise.
    pub name: Option<String>,
    /// Absent until the user is identified.
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// Track properties, identify/group traits.
    pub data: Value,
    /// The original payload as received.
    pub event: Value,
    /// UTC, `YYYY-MM-DDTHH:MM:SS.sssZ`.
    pub timestamp: String,
    /// Where the time came from: `timestamp`, `originalTimestamp`, `receivedAt` (CDP fields),
    /// the configured path (`body.updated_at`), or `ingestion` when no event time parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_source: Option<String>,
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    /// A type outside the Segment Spec: kept, but no action runs for it by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsupported: bool,
}

/// The translator's output for one item, and the unit the mapper and executor work on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    pub event_id: String,
    pub request_id: String,
    pub index: u32,
    pub source: String,
    pub environment: String,
    pub template: Template,
    pub received_at: i64,
    pub verification: String,
    pub status: EventStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
    /// The item as received, for items that could not be normalized (the normalized form
    /// carries it otherwise, as `event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<NormalizedEvent>,
    /// For duplicates: the event that first used the idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

impl EventRecord {
    /// The item as received, whichever form the record holds.
    pub fn raw_text(&self) -> String {
        match (&self.raw, &self.normalized) {
            (Some(raw), _) => raw.get().to_string(),
            (None, Some(n)) => n.event.to_string(),
            (None, None) => "null".to_string(),
        }
    }

    /// Kafka key: environment first so one environment spreads over partitions by user, while
    /// one user's events in one environment stay in one partition, in order.
    pub fn partition_key(&self) -> String {
        let who = self
            .normalized
            .as_ref()
            .and_then(|n| n.user_id.as_deref().or(n.anonymous_id.as_deref()))
            .unwrap_or(&self.event_id);
        partition_key(&self.environment, who)
    }
}

/// Key for every topic: `{environment}/{user or anonymous id}`.
pub fn partition_key(environment: &str, who: &str) -> String {
    let mut k = String::with_capacity(environment.len() + who.len() + 1);
    k.push_str(environment);
    k.push('/');
    k.push_str(who);
    k
}

/// Everything the items of one request share, encoded once: the gateway writes one
/// [`RawEvent`] per item, and re-serializing the headers and batch context for each of a
/// thousand items would cost more than the rest of the request.
#[derive(Serialize)]
pub struct RawEventCommon<'a> {
    pub request_id: &'a str,
    pub source: &'a str,
    pub environment: &'a str,
    pub template: Template,
    pub received_at: i64,
    pub verification: &'a str,
    pub headers: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_context: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_integrations: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implied_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<&'a ItemError>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rpc: bool,
}

/// Encodes [`RawEvent`]s that share a [`RawEventCommon`].
pub struct RawEventEncoder {
    /// The common fields, without the outer braces.
    middle: Vec<u8>,
}

impl RawEventEncoder {
    pub fn new(common: &RawEventCommon<'_>) -> Self {
        let mut full = serde_json::to_vec(common).expect("plain data serializes");
        full.pop(); // '}'
        full.remove(0); // '{'
        RawEventEncoder { middle: full }
    }

    /// The JSON of the [`RawEvent`] with this `index` and `item`.
    pub fn encode(&self, index: u32, item: &RawValue) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.middle.len() + item.get().len() + 32);
        out.extend_from_slice(b"{\"index\":");
        out.extend_from_slice(index.to_string().as_bytes());
        out.push(b',');
        out.extend_from_slice(&self.middle);
        out.extend_from_slice(b",\"item\":");
        out.extend_from_slice(item.get().as_bytes());
        out.push(b'}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_output_reads_back_as_raw_events() {
        let headers: Map<String, Value> = serde_json::from_str(r#"{"user-agent":"Segment (Actions)","x":"y\"z"}"#).unwrap();
        let ctx = RawValue::from_string(r#"{"locale":"de-DE"}"#.to_string()).unwrap();
        let common = RawEventCommon {
            request_id: "r-1",
            source: "seg",
            environment: "production",
            template: Template::Segment,
            received_at: 1_719_826_200_000,
            verification: "verified",
            headers: &headers,
            batch_context: Some(&ctx),
            batch_integrations: None,
            implied_type: Some("track"),
            refused: None,
            rpc: false,
        };
        let enc = RawEventEncoder::new(&common);
        let item = RawValue::from_string(r#"{"type":"track","n":1.50}"#.to_string()).unwrap();
        let back: RawEvent = serde_json::from_slice(&enc.encode(7, &item)).unwrap();
        assert_eq!(back.index, 7);
        assert_eq!(back.request_id, "r-1");
        assert_eq!(back.environment, "production");
        assert_eq!(back.headers, headers);
        assert_eq!(back.batch_context.unwrap().get(), r#"{"locale":"de-DE"}"#);
        assert!(back.batch_integrations.is_none());
        assert_eq!(back.implied_type.as_deref(), Some("track"));
        assert_eq!(back.item.get(), r#"{"type":"track","n":1.50}"#);
    }
}
