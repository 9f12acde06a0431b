//! Normalized events → action plans, from the environment's current mappings.

use crate::metrics;
use futures::future::BoxFuture;
use tributary_bus::{Handler, Producer, Record, StageError};
use tributary_mapping::plan_actions;
use tributary_model::{ActionPlan, EventRecord};
use tributary_store::ConfigCache;

pub struct Mapper {
    pub cache: ConfigCache,
    pub producer: Producer,
    pub out_topic: String,
}

impl Mapper {
    pub async fn plan(&self, record: EventRecord) -> ActionPlan {
        // Mappings saved before the event was received apply to it.
        let snapshot = metrics::config_as_of(&self.cache, "mapper", record.received_at).await;
        let actions = match snapshot.settings_for(&record.source, &record.environment) {
            Some(settings) => plan_actions(settings, snapshot.mappings_for(&record.source, &record.environment), &record),
            None => Vec::new(),
        };
        ActionPlan { event: record, actions, replay_of: None }
    }
}

impl Handler for Mapper {
    fn handle<'a>(&'a self, rec: &'a Record<'a>) -> BoxFuture<'a, Result<(), StageError>> {
        Box::pin(async move {
            let record: EventRecord = serde_json::from_slice(rec.payload)
                .map_err(|e| StageError::Permanent(format!("normalized record is not an EventRecord: {e}")))?;
            let plan = self.plan(record).await;
            let bytes = serde_json::to_vec(&plan).map_err(|e| StageError::Permanent(e.to_string()))?;
            self.producer
                .send(&self.out_topic, &plan.event.partition_key(), &bytes, &[("event_id", &plan.event.event_id)])
                .await
                .map_err(|e| StageError::Transient(e.to_string()))?;
            metrics::EVENTS.with_label_values(&["mapper", plan.event.status.as_str()]).inc();
            metrics::observe_delay("mapper", plan.event.received_at);
            Ok(())
        })
    }
}
