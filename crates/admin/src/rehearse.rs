//! Rehearse (a request as a sender would send it, run through verification, normalization and
//! the current mappings, with nothing written or sent) and replay (logged events re-run
//! through the current mappings, for real).

use crate::shared::{body_of, load_settings, now_ms, ok, ApiResult, JsonBody, St};
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tributary_mapping::plan_actions;
use tributary_model::{ActionPlan, EventRecord, EventStatus, NormalizedEvent, Template, VerificationScheme};
use tributary_sources::answer::answered_status;
use tributary_sources::{process, Incoming};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RehearseBody {
    /// The request body: a JSON value, or a string holding the exact bytes (for signatures).
    body: Value,
    #[serde(default)]
    headers: Map<String, Value>,
}

pub async fn rehearse(State(st): St, Path((key, env)): Path<(String, String)>, JsonBody(v): JsonBody) -> ApiResult {
    let b: RehearseBody = body_of(v)?;
    let settings = load_settings(&st, &key, &env).await?;
    let template = st.store.get_source(&key).await?.map(|s| s.template).unwrap_or(Template::Http);
    let mappings = st.store.list_mappings(&key, &env).await?;
    let raw = match &b.body {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    let headers: Vec<(String, String)> = b
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .collect();
    let now = now_ms();
    let incoming = Incoming { template, settings: &settings, headers: &headers, body: &raw, max_body: 8 << 20, now_ms: now, implied_type: None };
    let result = process(&incoming);
    // The status the gateway would answer, its per-template rule included (a verified body a
    // Census, Hightouch or webhook sender cannot fix is answered 200 with the refusal).
    let status = answered_status(template, &result);
    let processed = match result {
        Ok(p) => p,
        Err(e) => {
            let error = json!({"code": e.code(), "message": e.to_string()});
            let (verification, rejected) = if e.is_unusable_content() {
                // it passed verification to get here; scheme `none` verifies nothing
                let passed = if settings.verification.scheme == VerificationScheme::None { "unverified" } else { "verified" };
                // accepted as one refused event, as the gateway's answer lists it
                (passed, if status == 200 { vec![json!({"index": 0, "code": e.code(), "message": e.to_string()})] } else { vec![] })
            } else {
                (if e.status() == 401 { "failed" } else { "not_reached" }, vec![])
            };
            return ok(StatusCode::OK, json!({"status": status, "verification": verification, "error": error, "events": [], "rejected": rejected}));
        }
    };
    let (mut events, mut rejected) = (Vec::new(), Vec::new());
    for item in processed.items {
        match item.outcome {
            Ok(n) => {
                let record = record_of("rehearsal", item.index, &key, &env, template, now, processed.verification, n);
                let actions = plan_actions(&settings, &mappings, &record);
                events.push(json!({"index": item.index, "normalized": record.normalized, "actions": actions}));
            }
            Err(e) => rejected.push(json!({"index": item.index, "code": e.code, "message": e.message})),
        }
    }
    ok(
        StatusCode::OK,
        json!({"status": status, "verification": processed.verification,
               "events": events, "rejected": rejected}),
    )
}

#[allow(clippy::too_many_arguments)]
fn record_of(request: &str, index: u32, source: &str, env: &str, template: Template, at: i64, verification: &str, n: NormalizedEvent) -> EventRecord {
    EventRecord {
        event_id: tributary_model::ids::event_id(request, index),
        request_id: request.to_string(),
        index,
        source: source.to_string(),
        environment: env.to_string(),
        template,
        received_at: at,
        verification: verification.to_string(),
        status: EventStatus::Processed,
        error: None,
        raw: None,
        normalized: Some(n),
        duplicate_of: None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    event_id: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    source: Option<String>,
}

/// Replay one event (`event_id`) or every processed event of a time range (`since`..`until`,
/// optionally one `source`) through the current mappings. The plans go to the actions topic
/// with a replay id; the executor writes new action logs under the original events.
pub async fn replay(State(st): St, Path(env): Path<String>, JsonBody(v): JsonBody) -> ApiResult {
    let b: ReplayBody = body_of(v)?;
    let producer = st.producer.as_ref().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "replay needs Kafka"))?;
    let ids: Vec<String> = match (&b.event_id, b.since, b.until) {
        (Some(id), None, None) => vec![id.clone()],
        (None, Some(since), Some(until)) => {
            if until < since || until - since > 31 * 86_400_000 {
                return Err(ApiError::invalid("since", "`since`..`until` must be ordered and span at most 31 days"));
            }
            let mut ids = Vec::new();
            let mut w = tributary_store::paging::Window { until, since, after: None, limit: 500 };
            loop {
                let page = st
                    .store
                    .page_events(&env, &w, |r| r.status.as_deref() == Some("processed") && b.source.as_ref().is_none_or(|s| r.source.as_ref() == Some(s)))
                    .await?;
                ids.extend(page.items.iter().map(|r| r.event_id.clone()));
                match page.next_cursor {
                    Some(c) if ids.len() < 10_000 => w.after = tributary_store::paging::Window::parse_cursor(&c),
                    _ => break,
                }
            }
            ids
        }
        _ => return Err(ApiError::invalid("event_id", "give either `event_id`, or `since` and `until`")),
    };
    let replay_id = tributary_model::ids::random_id();
    let mut replayed = Vec::new();
    for id in ids {
        let log = st.store.get_event_log(&id).await?.ok_or_else(|| ApiError::not_found(format!("event `{id}`")))?;
        if log.environment != env {
            return Err(ApiError::not_found(format!("event `{id}` in `{env}`")));
        }
        let Some(normalized) = log.normalized.clone().and_then(|n| serde_json::from_value::<NormalizedEvent>(n).ok()) else {
            return Err(ApiError::invalid("event_id", format!("event `{id}` was not normalized ({}); nothing to replay", log.status)));
        };
        let settings = load_settings(&st, &log.source, &env).await?;
        let mappings = st.store.list_mappings(&log.source, &env).await?;
        let template = st.store.get_source(&log.source).await?.map(|s| s.template).unwrap_or(Template::Http);
        let mut record = record_of(&log.request_id, 0, &log.source, &env, template, log.received_at, &log.verification, normalized);
        record.event_id = log.event_id.clone();
        let mut actions = plan_actions(&settings, &mappings, &record);
        for a in &mut actions {
            // new ids: the originals' `success` rows must not stop a replay
            a.action_id = tributary_model::ids::action_id(&format!("{}:replay:{replay_id}", record.event_id), &a.mapping_id);
        }
        let n = actions.len();
        let plan = ActionPlan { event: record, actions, replay_of: Some(replay_id.clone()) };
        let bytes = serde_json::to_vec(&plan).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        producer
            .send(&st.actions_topic, &plan.event.partition_key(), &bytes, &[("replay_of", &replay_id)])
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))?;
        replayed.push(json!({"event_id": plan.event.event_id, "actions": n}));
    }
    ok(StatusCode::ACCEPTED, json!({"replay_id": replay_id, "replayed": replayed.len(), "events": replayed}))
}
