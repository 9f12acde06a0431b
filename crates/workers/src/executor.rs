//! Action plans → event log, action logs, users/tenants, workflow triggers.
//!
//! Order of effects for one plan: each action in plan order, then the logs. Before an action
//! runs, its action log is read: a `success` there means an earlier delivery already did it,
//! and it is not fired again.
//!
//! Where the logs go ([`LogPath`]):
//! - Exactly-once mode ([`LogPath::Report`]): the event log and the action logs travel as one
//!   [`ExecutionReport`] on the action-logs topic, produced in the same Kafka transaction as
//!   the triggers, and the [`LogWriter`] stores them. A crash before the commit leaves neither
//!   a trigger nor a log; after it, both. (Writing a `success` log to the store before the
//!   commit would, after a crash, mark an action done whose trigger was rolled back; writing it
//!   after the commit could lose it.) An action whose effect is outside Kafka (the HTTP sink)
//!   cannot be rolled back, so its log is written to the store at once, where the `success`
//!   check of a redo finds it.
//! - At-least-once mode ([`LogPath::Direct`]): the event log first (an upsert keyed by event
//!   id, so retries write it once), then each action's log right after the action.

use crate::{metrics, store_error};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tributary_bus::{Handler, Producer, Record, StageError};
use tributary_model::{
    ActionCommand, ActionLog, ActionPayload, ActionPlan, ActionStatus, EnvironmentSettings, EventLogRecord, EventRecord,
    ExecutionReport, ReportedAction,
};
use tributary_model::log::null;
use tributary_sources::identify::deep_merge;
use tributary_sources::templates::DEFAULT_RETENTION_DAYS;
use tributary_store::{ConfigCache, Store};
use tributary_model::SinkSettings;
use crate::sink::{self, HttpSink, SinkResult};

pub struct Executor {
    pub cache: ConfigCache,
    pub store: Store,
    pub producer: Producer,
    pub triggers_topic: String,
    pub http: HttpSink,
    pub logs: LogPath,
}

/// Where the executor's logs go (see the module documentation).
pub enum LogPath {
    /// Written to the store by the executor, as it goes.
    Direct,
    /// Produced as an [`ExecutionReport`] to this topic, for the [`LogWriter`].
    Report(String),
}

/// How one action ended.
struct Outcome {
    status: ActionStatus,
    result: Option<Value>,
    error: Option<String>,
    /// The effect left Kafka (HTTP sink): it cannot be rolled back with a transaction.
    external: bool,
}


/// The event's log, as it goes to the store: the item as received and its normalized form as
/// JSON text, each written once here and never parsed again on the way (see
/// [`EventLogRecord`]).
pub fn event_log_of(e: &EventRecord) -> EventLogRecord {
    let n = e.normalized.as_ref();
    let raw = match (&e.raw, n) {
        (Some(raw), _) => raw.clone(),
        (None, Some(n)) => serde_json::value::to_raw_value(&n.event).unwrap_or_else(|_| null()),
        (None, None) => null(),
    };
    EventLogRecord {
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
        raw,
        normalized: n.and_then(|n| serde_json::value::to_raw_value(n).ok()),
        duplicate_of: e.duplicate_of.clone(),
        received_at: e.received_at,
        inserted_at: chrono::Utc::now().timestamp_millis(),
        ttl: None,
    }
}

impl Executor {
    pub async fn execute(&self, plan: &ActionPlan, replay_of: Option<&str>) -> Result<(), StageError> {
        let snapshot = metrics::config_as_of(&self.cache, "executor", plan.event.received_at).await;
        let settings = snapshot.settings_for(&plan.event.source, &plan.event.environment);
        let ttl = settings.map(EnvironmentSettings::retention_secs).unwrap_or(DEFAULT_RETENTION_DAYS as i32 * 86_400);
        let direct = matches!(self.logs, LogPath::Direct);
        let event_log = replay_of.is_none().then(|| event_log_of(&plan.event));
        if let (true, Some(log)) = (direct, &event_log) {
            write_event_log(&self.store, log, ttl).await?;
        }
        let mut reported = Vec::with_capacity(plan.actions.len());
        let external_sink = settings.is_some_and(|s| matches!(s.sink, SinkSettings::Http { .. }));
        for cmd in &plan.actions {
            // Has an earlier delivery already done this action? Only worth a read where an
            // earlier delivery can have left a `success`: at-least-once, or an effect outside
            // Kafka (the HTTP sink). In exactly-once mode with the Kafka sink, a redelivery means
            // the earlier attempt's transaction aborted, and its trigger and logs with it.
            let previous = if direct || external_sink {
                self.store.action_status(&plan.event.event_id, &cmd.action_id).await.map_err(store_error)?
            } else {
                None
            };
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
                Some(ActionPayload::TriggerWorkflow(t)) => Some(t.workflow.clone()),
                Some(ActionPayload::CancelWorkflow { workflow, .. }) => Some(workflow.clone()),
                _ => None,
            };
            if direct || outcome.external {
                self.store.write_action_log(&log, workflow.as_deref(), ttl).await.map_err(store_error)?;
            } else {
                reported.push(ReportedAction { log, workflow });
            }
        }
        if let LogPath::Report(topic) = &self.logs {
            let report = ExecutionReport { event_log, actions: reported, ttl_secs: ttl };
            let bytes = serde_json::to_vec(&report).map_err(|e| StageError::Permanent(e.to_string()))?;
            self.producer
                .send(topic, &plan.event.partition_key(), &bytes, &[("event_id", &plan.event.event_id)])
                .await
                .map_err(|e| StageError::Transient(format!("action-log report: {e}")))?;
        }
        Ok(())
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
            return Ok(Outcome { status: ActionStatus::Skipped, result: None, error: cmd.skip_reason.clone(), external: false });
        };
        match payload {
            ActionPayload::IdentifyUser { user_id, properties } => {
                let mut user = self.store.get_user(env, user_id).await.map_err(store_error)?.unwrap_or_default();
                let created = user.is_empty();
                deep_merge(&mut user, properties);
                self.store.put_user(env, user_id, &user).await.map_err(store_error)?;
                let stored = json!({"user_id": user_id, "created": created});
                match &sink_settings {
                    SinkSettings::Kafka => Ok(Outcome { status: ActionStatus::Success, result: Some(stored), error: None, external: false }),
                    // Knock merges an identify the same way, so the update is all it needs.
                    SinkSettings::Http { base_url, api_key } => {
                        let url = sink::url(base_url, &["users", user_id]);
                        let r = self.http.send(reqwest::Method::PUT, &url, api_key, &Value::Object(properties.clone()), None).await;
                        Ok(http_outcome(r, stored))
                    }
                }
            }
            ActionPayload::SetTenant { tenant_id, properties } => {
                let mut tenant = self.store.get_tenant(env, tenant_id).await.map_err(store_error)?.unwrap_or_default();
                let created = tenant.is_empty();
                deep_merge(&mut tenant, properties);
                self.store.put_tenant(env, tenant_id, &tenant).await.map_err(store_error)?;
                Ok(Outcome {
                    status: ActionStatus::Success,
                    result: Some(json!({"tenant_id": tenant_id, "created": created})),
                    error: None,
                    external: false,
                })
            }
            ActionPayload::AddToAudience(m) | ActionPayload::RemoveFromAudience(m) => {
                let add = matches!(payload, ActionPayload::AddToAudience(_));
                let tenant = m.tenant.as_deref();
                if add {
                    self.store.add_audience_member(env, &m.audience_key, &m.user_id, tenant).await.map_err(store_error)?;
                } else {
                    self.store.remove_audience_member(env, &m.audience_key, &m.user_id, tenant).await.map_err(store_error)?;
                }
                let stored = json!({"audience_key": m.audience_key, "user_id": m.user_id, "tenant": m.tenant,
                                    "member": add});
                match &sink_settings {
                    SinkSettings::Kafka => Ok(Outcome { status: ActionStatus::Success, result: Some(stored), error: None, external: false }),
                    // Knock: POST (add) / DELETE (remove) /v1/audiences/{key}/members with
                    // `{"members": [{"user": {"id"}, "tenant"?}]}`; both are idempotent
                    // (https://docs.knock.app/api-reference/audiences). The action id goes as
                    // Idempotency-Key too: Knock ignores it on these endpoints (only workflow
                    // triggers honour it, docs.knock.app/api-reference/overview/idempotent-requests),
                    // but a compatible receiver can tell a redelivery from a new add/remove.
                    SinkSettings::Http { base_url, api_key } => {
                        let url = sink::url(base_url, &["audiences", &m.audience_key, "members"]);
                        let mut member = json!({"user": {"id": m.user_id}});
                        if let Some(t) = &m.tenant {
                            member["tenant"] = json!(t);
                        }
                        let method = if add { reqwest::Method::POST } else { reqwest::Method::DELETE };
                        let r = self.http.send(method, &url, api_key, &json!({"members": [member]}), Some(cmd.action_id.as_str())).await;
                        Ok(http_outcome(r, stored))
                    }
                }
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
                    external: false,
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
            Outcome { status: ActionStatus::Success, result: Some(base), error: None, external: true }
        }
        SinkResult::Failed { error, attempts } => {
            base["http_attempts"] = json!(attempts);
            Outcome { status: ActionStatus::Failed, result: Some(base), error: Some(error), external: true }
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
            if let Ok(plan) = serde_json::from_slice::<ActionPlan>(rec.payload) {
                log_dead_lettered(&self.store, event_log_of(&plan.event), rec.payload.len(), error).await;
            }
        })
    }
}

/// Say in an event log that its record was parked on the dead-letter topic.
async fn log_dead_lettered(store: &Store, mut log: EventLogRecord, bytes: usize, error: &str) {
    log.status = tributary_model::EventStatus::DeadLettered.as_str().to_string();
    log.error_code = Some("dead_lettered".into());
    log.error_message = Some(error.to_string());
    // The full record may be what the store refused: keep a note of its size only.
    log.raw = serde_json::value::to_raw_value(&json!({"dead_lettered_bytes": bytes})).unwrap_or_else(|_| null());
    log.normalized = None;
    if let Err(e) = store.write_logs(Some(&log), &[], DEFAULT_RETENTION_DAYS as i32 * 86_400).await {
        tracing::warn!(event_id = %log.event_id, error = %e, "could not log the dead-lettered event");
    }
}

/// The event log and the event's counts (known events, daily volume; added up in memory and
/// flushed once per key per second, see the store's counters).
async fn write_event_log(store: &Store, log: &EventLogRecord, ttl: i32) -> Result<(), StageError> {
    store.write_logs(Some(log), &[], ttl).await.map_err(store_error)?;
    count(store, log);
    Ok(())
}

fn count(store: &Store, log: &EventLogRecord) {
    if let Some(t) = &log.event_type {
        store.count_event(&log.source, &log.environment, t, log.name.as_deref(), log.received_at);
    }
}

/// Stores the executor's [`ExecutionReport`]s (exactly-once mode). Every write is an upsert
/// keyed by event and action id, so this stage runs at-least-once: a report written twice
/// leaves the same rows (the event counters aside, which may count a replayed report twice).
pub struct LogWriter {
    pub store: Store,
}

impl Handler for LogWriter {
    fn handle<'a>(&'a self, rec: &'a Record<'a>) -> BoxFuture<'a, Result<(), StageError>> {
        Box::pin(async move {
            let report: ExecutionReport = serde_json::from_slice(rec.payload)
                .map_err(|e| StageError::Permanent(format!("action-logs record is not an ExecutionReport: {e}")))?;
            // The event log and its action logs: one request for the rows (they share the
            // event's partition), the timeline entries gathered with other reports' (store's
            // write_logs).
            let actions: Vec<_> = report.actions.iter().map(|a| (&a.log, a.workflow.as_deref())).collect();
            self.store.write_logs(report.event_log.as_ref(), &actions, report.ttl_secs).await.map_err(store_error)?;
            if let Some(log) = &report.event_log {
                count(&self.store, log);
                crate::metrics::observe_delay("action-log-writer", log.received_at);
            }
            Ok(())
        })
    }

    fn dead_lettered<'a>(&'a self, rec: &'a Record<'a>, error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(ExecutionReport { event_log: Some(log), .. }) = serde_json::from_slice(rec.payload) {
                log_dead_lettered(&self.store, log, rec.payload.len(), error).await;
            }
        })
    }
}
