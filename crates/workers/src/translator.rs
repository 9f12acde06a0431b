//! Raw items → normalized events.

use crate::metrics;
use futures::future::BoxFuture;
use tributary_bus::{Handler, Producer, Record, StageError};
use tributary_model::ids::event_id;
use tributary_model::{EventRecord, EventStatus, ItemError, RawEvent};
use tributary_sources::{normalize_item, NormalizeInput};
use tributary_store::{Claim, ConfigCache, Store};

pub struct Translator {
    pub cache: ConfigCache,
    pub store: Store,
    pub producer: Producer,
    pub out_topic: String,
}

impl Translator {
    /// The pure part plus dedup: what this raw item becomes.
    pub async fn translate(&self, raw: RawEvent) -> Result<EventRecord, StageError> {
        // A source created a moment before this event was received must be known here.
        let snapshot = self.cache.as_of(raw.received_at).await;
        let id = event_id(&raw.request_id, raw.index);
        let mut record = EventRecord {
            event_id: id.clone(),
            request_id: raw.request_id.clone(),
            index: raw.index,
            source: raw.source.clone(),
            environment: raw.environment.clone(),
            template: raw.template,
            received_at: raw.received_at,
            verification: raw.verification.clone(),
            status: EventStatus::Processed,
            error: None,
            raw: None,
            normalized: None,
            duplicate_of: None,
        };
        // Refused as a whole (a Kafka ingest record that is not JSON or too large; a request
        // the gateway answered 2xx because its sender would only retry a 4xx): logged as
        // rejected with the reason given where it was refused.
        if let Some(error) = raw.refused {
            record.status = EventStatus::Rejected;
            record.error = Some(error);
            record.raw = Some(raw.item);
            return Ok(record);
        }
        let Some(settings) = snapshot.settings_for(&raw.source, &raw.environment) else {
            record.status = EventStatus::Rejected;
            record.error = Some(ItemError {
                code: "source_removed".into(),
                message: format!("source `{}` has no `{}` environment any more", raw.source, raw.environment),
            });
            record.raw = Some(raw.item);
            return Ok(record);
        };
        let outcome = normalize_item(&NormalizeInput {
            template: raw.template,
            settings,
            item: &raw.item,
            batch_context: raw.batch_context.as_deref(),
            batch_integrations: raw.batch_integrations.as_deref(),
            headers: &raw.headers,
            implied_type: raw.implied_type.as_deref(),
            received_at: raw.received_at,
            rpc: raw.rpc,
        });
        match outcome {
            Err(e) => {
                record.status = EventStatus::Rejected;
                record.error = Some(e);
                record.raw = Some(raw.item);
            }
            Ok(n) => {
                // JSON-RPC rows are always deduplicated: both tools resend calls by design, and
                // their key is derived from the call (see tributary_sources::rpc::row).
                if let (true, Some(key)) = (settings.dedup.enabled || raw.rpc, n.idempotency_key.as_deref()) {
                    let window = settings.dedup.window_secs.min(i32::MAX as u64) as i32;
                    match self.store.claim_key(&raw.environment, &raw.source, key, &id, window).await {
                        Ok(Claim::New) | Ok(Claim::Same) => {}
                        Ok(Claim::DuplicateOf(first)) => {
                            record.status = EventStatus::Duplicate;
                            record.duplicate_of = Some(first);
                        }
                        Err(e) if e.is_transient() => return Err(StageError::Transient(e.to_string())),
                        Err(e) => return Err(StageError::Permanent(e.to_string())),
                    }
                }
                record.normalized = Some(n);
            }
        }
        Ok(record)
    }
}

impl Handler for Translator {
    fn handle<'a>(&'a self, rec: &'a Record<'a>) -> BoxFuture<'a, Result<(), StageError>> {
        Box::pin(async move {
            let raw: RawEvent = serde_json::from_slice(rec.payload)
                .map_err(|e| StageError::Permanent(format!("raw record is not a RawEvent: {e}")))?;
            let record = self.translate(raw).await?;
            let bytes = serde_json::to_vec(&record).map_err(|e| StageError::Permanent(e.to_string()))?;
            self.producer
                .send(&self.out_topic, &record.partition_key(), &bytes, &[("event_id", &record.event_id)])
                .await
                .map_err(|e| StageError::Transient(e.to_string()))?;
            metrics::EVENTS.with_label_values(&["translator", record.status.as_str()]).inc();
            metrics::observe_delay("translator", record.received_at);
            Ok(())
        })
    }
}
