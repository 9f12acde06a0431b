//! Action plans → event log, action logs, users/tenants, workflow triggers.
//!
//! Order of effects for one plan: the event log (an upsert keyed by event id, so retries
//! write it once), then each action in plan order. Before an action runs, its action log is
//! read: a `success` there means an earlier delivery already did it, and it is not fired
//! again. Each action's log is written right after the action.

use crate::metrics;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tributary_bus::{Handler, Producer, Record, StageError};
use tributary_model::{
    ActionCommand, ActionLog, ActionPayload, ActionPlan, ActionStatus, EnvironmentSettings, EventLog, EventRecord,
};
use tributary_sources::identify::deep_merge;
use tributary_sources::templates::DEFAULT_RETENTION_DAYS;
use tributary_store::{ConfigCache, Store, StoreError};
use tributary_model::SinkSettings;
use crate::sink::{self, HttpSink, SinkResult};

pub struct Executor {
    pub cache: ConfigCache,
    pub store: Store,
    pub producer: Producer,
    pub triggers_topic: String,
    pub http: HttpSink,
}

/// How one action ended.
struct Outcome {
    status: ActionStatus,
    result: Option<Value>,
    error: Option<String>,
}

/// A store failure as the stage loop sees it: retry later, or give up on the record.
fn transient(e: StoreError) -> StageError {
    if e.is_transient() {
        StageError::Transient(e.to_string())
    } else {
        StageError::Permanent(e.to_string())
    }
}

pub fn event_log_of(e: &EventRecord) -> EventLog {
    let n = e.normalized.as_ref();
    EventLog {
        event_id: e.event_id.clone(),
        request_id: e.request_id.clone(),
        source: e.source.clone(),
        environment: e.environment.clone(),
        event_type: n.map(|n| n.event_type.clone()),
        name: n.and_then(|n| n.name.clone()),
        user_id: n.and_then(|n| n.user_id.clone()),
        status: e.status.as_str().to_string(),
        error_code: e.error.as_ref().map(|x| x.code.clone()),
        error_message: e.error.as_ref().map(|x| x.message.clone()),
        verification: e.verification.clone(),
        raw: serde_json::from_str(&e.raw_text()).unwrap_or(Value::Null),
        normalized: n.and_then(|n| serde_json::to_value(n).ok()),
        duplicate_of: e.duplicate_of.clone(),
        received_at: e.received_at,
        inserted_at: chrono::Utc::now().timestamp_millis(),
        ttl: None,
    }
}

impl Executor {
    pub async fn execute(&self, plan: &ActionPlan, replay_of: Option<&str>) -> Result<Vec<ActionLog>, StageError> {
        let snapshot = self.cache.get();
        let settings = snapshot.settings_for(&plan.event.source, &plan.event.environment);
        let ttl = settings.map(EnvironmentSettings::retention_secs).unwrap_or(DEFAULT_RETENTION_DAYS as i32 * 86_400);
        if replay_of.is_none() {
            self.store.write_event_log(&event_log_of(&plan.event), ttl).await.map_err(transient)?;
            if let Some(n) = &plan.event.normalized {
                let e = &plan.event;
                self.store.count_event(&e.source, &e.environment, &n.event_type, n.name.as_deref(), e.received_at).await.map_err(transient)?;
            }
        }
        let mut logs = Vec::with_capacity(plan.actions.len());
        for cmd in &plan.actions {
            let previous = self.store.action_status(&plan.event.event_id, &cmd.action_id).await.map_err(transient)?;
            if let Some((status, _, _)) = &previous {
                if status == ActionStatus::Success.as_str() {
                    tracing::debug!(event_id = %plan.event.event_id, action_id = %cmd.action_id, "action already succeeded; not firing again");
                    continue;
                }
            }
            let attempts = previous.as_ref().map(|p| p.1).unwrap_or(0) + 1;
            let inserted_at = previous.as_ref().map(|p| p.2).unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            let outcome = self.run_action(plan, cmd, settings).await?;
            metrics::ACTIONS.with_label_values(&[cmd.action_type.as_str(), outcome.status.as_str()]).inc();
            let log = ActionLog {
                action_id: cmd.action_id.clone(),
                event_id: plan.event.event_id.clone(),
                mapping_id: cmd.mapping_id.clone(),
                source: plan.event.source.clone(),
                environment: plan.event.environment.clone(),
                action_type: cmd.action_type.as_str().to_string(),
                status: outcome.status.as_str().to_string(),
                parameters: Value::Object(cmd.parameters.clone()),
                payload: cmd.payload.as_ref().and_then(|p| serde_json::to_value(p).ok()),
                result: outcome.result,
                error: outcome.error,
                attempts,
                replay_of: replay_of.map(str::to_string),
                inserted_at,
                updated_at: chrono::Utc::now().timestamp_millis(),
                ttl: None,
            };
            let workflow = match &cmd.payload {
                Some(ActionPayload::TriggerWorkflow(t)) => Some(t.workflow.as_str()),
                Some(ActionPayload::CancelWorkflow { workflow, .. }) => Some(workflow.as_str()),
                _ => None,
            };
            self.store.write_action_log(&log, workflow, ttl).await.map_err(transient)?;
            logs.push(log);
        }
        Ok(logs)
    }

    async fn run_action(
        &self,
        plan: &ActionPlan,
        cmd: &ActionCommand,
        settings: Option<&EnvironmentSettings>,
    ) -> Result<Outcome, StageError> {
        let sink_settings = settings.map(|s| s.sink.clone()).unwrap_or_default();
        let env = &plan.event.environment;
        let Some(payload) = &cmd.payload else {
            return Ok(Outcome { status: ActionStatus::Skipped, result: None, error: cmd.skip_reason.clone() });
        };
        match payload {
            ActionPayload::IdentifyUser { user_id, properties } => {
                let mut user = self.store.get_user(env, user_id).await.map_err(transient)?.unwrap_or_default();
                let created = user.is_empty();
                deep_merge(&mut user, properties);
                self.store.put_user(env, user_id, &user).await.map_err(transient)?;
                let stored = json!({"user_id": user_id, "created": created});
                match &sink_settings {
                    SinkSettings::Kafka => Ok(Outcome { status: ActionStatus::Success, result: Some(stored), error: None }),
                    // Knock merges an identify the same way, so the update is all it needs.
                    SinkSettings::Http { base_url, api_key } => {
                        let url = sink::url(base_url, &["users", user_id]);
                        let r = self.http.send(reqwest::Method::PUT, &url, api_key, &Value::Object(properties.clone()), None).await;
                        Ok(http_outcome(r, stored))
                    }
                }
            }
            ActionPayload::SetTenant { tenant_id, properties } => {
                let mut tenant = self.store.get_tenant(env, tenant_id).await.map_err(transient)?.unwrap_or_default();
                let created = tenant.is_empty();
                deep_merge(&mut tenant, properties);
                self.store.put_tenant(env, tenant_id, &tenant).await.map_err(transient)?;
                Ok(Outcome { status: ActionStatus::Success, result: Some(json!({"tenant_id": tenant_id, "created": created})), error: None })
            }
            ActionPayload::TriggerWorkflow(_) | ActionPayload::CancelWorkflow { .. } => {
                let (kind, workflow) = match payload {
                    ActionPayload::TriggerWorkflow(t) => ("trigger", t.workflow.clone()),
                    ActionPayload::CancelWorkflow { workflow, .. } => ("cancel", workflow.clone()),
                    _ => unreachable!(),
                };
                let mut body = serde_json::to_value(payload).map_err(|e| StageError::Permanent(e.to_string()))?;
                if let Value::Object(m) = &mut body {
                    m.remove("type");
                    m.insert("action".into(), json!(kind));
                    // Downstream deduplicates on this: a redelivered action carries the same key.
                    m.insert("idempotency_key".into(), json!(cmd.action_id));
                    m.insert("environment".into(), json!(env));
                    m.insert("source".into(), json!(plan.event.source));
                    m.insert("event_id".into(), json!(plan.event.event_id));
                }
                if let SinkSettings::Http { base_url, api_key } = &sink_settings {
                    let url = sink::url(base_url, &["workflows", &workflow, kind]);
                    let mut req = serde_json::to_value(payload).map_err(|e| StageError::Permanent(e.to_string()))?;
                    if let Value::Object(m) = &mut req {
                        m.remove("type");
                        m.remove("workflow");
                    }
                    let key = (kind == "trigger").then_some(cmd.action_id.as_str());
                    let r = self.http.send(reqwest::Method::POST, &url, api_key, &req, key).await;
                    return Ok(http_outcome(r, json!({"sink": "http", "url": url})));
                }
                let key = tributary_model::event::partition_key(env, &workflow);
                let bytes = serde_json::to_vec(&body).map_err(|e| StageError::Permanent(e.to_string()))?;
                self.producer
                    .send(&self.triggers_topic, &key, &bytes, &[("action", kind), ("idempotency_key", &cmd.action_id)])
                    .await
                    .map_err(|e| StageError::Transient(format!("trigger sink: {e}")))?;
                Ok(Outcome {
                    status: ActionStatus::Success,
                    result: Some(json!({"sink": "kafka", "topic": self.triggers_topic})),
                    error: None,
                })
            }
        }
    }
}

fn http_outcome(r: SinkResult, mut base: Value) -> Outcome {
    match r {
        SinkResult::Delivered { status, body, attempts } => {
            base["status"] = json!(status);
            base["response"] = body;
            base["http_attempts"] = json!(attempts);
            Outcome { status: ActionStatus::Success, result: Some(base), error: None }
        }
        SinkResult::Failed { error, attempts } => {
            base["http_attempts"] = json!(attempts);
            Outcome { status: ActionStatus::Failed, result: Some(base), error: Some(error) }
        }
    }
}

impl Handler for Executor {
    fn handle<'a>(&'a self, rec: &'a Record<'a>) -> BoxFuture<'a, Result<(), StageError>> {
        Box::pin(async move {
            let plan: ActionPlan = serde_json::from_slice(rec.payload)
                .map_err(|e| StageError::Permanent(format!("actions record is not an ActionPlan: {e}")))?;
            self.execute(&plan, plan.replay_of.as_deref()).await?;
            metrics::EVENTS.with_label_values(&["executor", plan.event.status.as_str()]).inc();
            metrics::observe_delay("executor", plan.event.received_at);
            Ok(())
        })
    }

    fn dead_lettered<'a>(&'a self, rec: &'a Record<'a>, error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // If the plan can be read, say in its event log that it was parked.
            if let Ok(mut plan) = serde_json::from_slice::<ActionPlan>(rec.payload) {
                plan.event.status = tributary_model::EventStatus::DeadLettered;
                plan.event.error = Some(tributary_model::ItemError { code: "dead_lettered".into(), message: error.to_string() });
                let mut log = event_log_of(&plan.event);
                // The full record may be what the store refused: keep a note of its size only.
                log.raw = json!({"dead_lettered_bytes": rec.payload.len()});
                log.normalized = None;
                if let Err(e) = self.store.write_event_log(&log, DEFAULT_RETENTION_DAYS as i32 * 86_400).await {
                    tracing::warn!(event_id = %log.event_id, error = %e, "could not log the dead-lettered event");
                }
            }
        })
    }
}
