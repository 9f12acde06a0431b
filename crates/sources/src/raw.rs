//! Screened items → the records of the raw topic. The gateway (HTTP) and the ingest stage
//! (Kafka) both produce exactly these, so everything downstream (normalization, dedup,
//! mappings, logs) cannot tell the two ways in apart.

use crate::normalize::Screened;
use crate::pipeline::{Processed, ProcessedItem};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tributary_model::event::{partition_key, RawEventCommon, RawEventEncoder};
use tributary_model::{EnvironmentSettings, ItemError, RawEvent, Template};

/// When and as what the input was received.
pub struct Receipt<'a> {
    /// Names the input: the event ids are derived from it and each item's index.
    pub request_id: &'a str,
    /// Milliseconds since the Unix epoch.
    pub received_at: i64,
    /// Tracking-API single calls: the type the path implies.
    pub implied_type: Option<&'a str>,
}

/// One record for the raw topic: its key and its value (a [`RawEvent`] as JSON).
pub struct RawRecord {
    /// `{environment}/{user or anonymous id}`, so one user's events stay in order downstream.
    pub key: String,
    pub value: Vec<u8>,
}

pub struct RawRecords {
    /// Every item, refused ones too (the event log shows them), in input order.
    pub records: Vec<RawRecord>,
    /// The refused items: index and why.
    pub rejected: Vec<(u32, ItemError)>,
}

/// The raw-topic records of a screened input.
pub fn raw_records(
    settings: &EnvironmentSettings,
    template: Template,
    processed: &Processed<Screened>,
    receipt: &Receipt<'_>,
) -> RawRecords {
    let encoder = RawEventEncoder::new(&RawEventCommon {
        request_id: receipt.request_id,
        source: &settings.source,
        environment: &settings.environment,
        template,
        received_at: receipt.received_at,
        verification: processed.verification,
        headers: &processed.headers,
        batch_context: processed.batch_context.as_deref(),
        batch_integrations: processed.batch_integrations.as_deref(),
        implied_type: receipt.implied_type,
        refused: None,
        rpc: false,
    });
    records_of(&settings.environment, receipt.request_id, &encoder, &processed.items)
}

/// Items → records with a given encoder (the JSON-RPC destinations encode their rows with
/// `rpc` set): each keyed by who it is about, refused ones too.
pub fn records_of(environment: &str, request_id: &str, encoder: &RawEventEncoder, items: &[ProcessedItem<Screened>]) -> RawRecords {
    let mut out = RawRecords { records: Vec::with_capacity(items.len()), rejected: Vec::new() };
    for item in items {
        let who = match &item.outcome {
            Ok(n) => n.user_id.as_deref().or(n.anonymous_id.as_deref()),
            Err(e) => {
                out.rejected.push((item.index, e.clone()));
                None
            }
        };
        let key = match who {
            Some(who) => partition_key(environment, who),
            None => spread_key(environment, request_id, item.index),
        };
        out.records.push(RawRecord { key, value: encoder.encode(item.index, &item.raw) });
    }
    out
}

/// The raw-topic record of an input refused as a whole (not JSON, too large): one item, index
/// 0, whose text is `shown` as a JSON string and which the translator logs as rejected with
/// `error`. Only the ingest stage makes these: over HTTP the sender gets the 4xx instead.
pub fn refused_record(
    settings: &EnvironmentSettings,
    template: Template,
    headers: &Map<String, Value>,
    receipt: &Receipt<'_>,
    verification: &str,
    shown: &str,
    error: ItemError,
) -> RawRecord {
    let item = serde_json::value::to_raw_value(shown).unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"));
    let raw = RawEvent {
        request_id: receipt.request_id.to_string(),
        index: 0,
        source: settings.source.clone(),
        environment: settings.environment.clone(),
        template,
        received_at: receipt.received_at,
        verification: verification.to_string(),
        headers: headers.clone(),
        batch_context: None,
        batch_integrations: None,
        implied_type: receipt.implied_type.map(str::to_string),
        refused: Some(error),
        rpc: false,
        item,
    };
    // Plain data (strings, maps of strings, a valid RawValue): serializing cannot fail.
    let value = serde_json::to_vec(&raw).unwrap_or_default();
    RawRecord { key: spread_key(&settings.environment, receipt.request_id, 0), value }
}

/// The Kafka headers of an input's raw records, the same from the gateway and the ingest stage
/// so the raw topic reads alike whichever way events came in. `received_at` is the receipt
/// time as text (ms since the epoch), owned by the caller.
pub fn record_headers<'a>(settings: &'a EnvironmentSettings, request_id: &'a str, received_at: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("source", settings.source.as_str()),
        ("environment", settings.environment.as_str()),
        ("received_at", received_at),
        ("request_id", request_id),
    ]
}

/// Nobody to keep in order with: spread by the item's own id.
fn spread_key(environment: &str, request_id: &str, index: u32) -> String {
    partition_key(environment, &format!("{request_id}:{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{screen_vouched, Incoming};
    use crate::templates::default_settings;

    fn settings() -> EnvironmentSettings {
        default_settings(Template::Segment, "shop", "development", "tok_x".into())
    }

    #[test]
    fn items_are_keyed_by_user_and_refusals_kept() {
        let s = settings();
        let body = br#"{"batch":[{"type":"track","event":"A","userId":"u1"},{"type":"track","userId":"u2"},{"type":"identify","anonymousId":"a9"}]}"#;
        let inc = Incoming { template: Template::Segment, settings: &s, headers: &[], body, max_body: 1 << 20, now_ms: 5, implied_type: None };
        let p = screen_vouched(&inc, "kafka").unwrap();
        let r = raw_records(&s, Template::Segment, &p, &Receipt { request_id: "req", received_at: 5, implied_type: None });
        let keys: Vec<&str> = r.records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["development/u1", "development/req:1", "development/a9"]);
        assert_eq!(r.rejected.len(), 1);
        assert_eq!((r.rejected[0].0, r.rejected[0].1.code.as_str()), (1, "missing_event"));
        let back: RawEvent = serde_json::from_slice(&r.records[2].value).unwrap();
        assert_eq!((back.request_id.as_str(), back.index, back.verification.as_str()), ("req", 2, "kafka"));
        assert!(back.refused.is_none());
    }

    #[test]
    fn a_refused_input_reads_back_with_its_error_and_text() {
        let s = settings();
        let err = ItemError { code: "invalid_json".into(), message: "expected value".into() };
        let receipt = Receipt { request_id: "req", received_at: 7, implied_type: None };
        let r = refused_record(&s, Template::Segment, &Map::new(), &receipt, "kafka", "{not json\"", err.clone());
        assert_eq!(r.key, "development/req:0");
        let back: RawEvent = serde_json::from_slice(&r.value).unwrap();
        assert_eq!(back.refused, Some(err));
        assert_eq!(serde_json::from_str::<String>(back.item.get()).unwrap(), "{not json\"");
        assert_eq!((back.source.as_str(), back.received_at), ("shop", 7));
    }
}
