//! Reading what happened: event and action logs (paged, filtered), known events, source
//! status, the audit log.

use crate::shared::{load_settings, now_ms, ok, ApiResult, St};
use crate::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tributary_model::{ActionStatus, EventStatus};
use tributary_store::paging::Window;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    /// ms since the epoch
    since: Option<i64>,
    until: Option<i64>,
    source: Option<String>,
    event_type: Option<String>,
    name: Option<String>,
    user_id: Option<String>,
    status: Option<String>,
    action_type: Option<String>,
    workflow: Option<String>,
}

const DEFAULT_DAYS: i64 = 30;

fn window(q: &ListQuery) -> Result<Window, ApiError> {
    let until = q.until.unwrap_or_else(now_ms);
    let since = q.since.unwrap_or(until - DEFAULT_DAYS * 86_400_000);
    if since > until {
        return Err(ApiError::invalid("since", "must not be after `until`"));
    }
    if until - since > 400 * 86_400_000 {
        return Err(ApiError::invalid("since", "a window spans at most 400 days"));
    }
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(Window::parse_cursor(c).ok_or_else(|| ApiError::invalid("cursor", "not a cursor this API returned"))?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be from 1 to 500"));
    }
    Ok(Window { until, since, after, limit })
}

fn eq(filter: &Option<String>, v: &Option<String>) -> bool {
    filter.as_ref().is_none_or(|f| v.as_deref() == Some(f.as_str()))
}

pub async fn list_events(State(st): St, Path(env): Path<String>, Query(q): Query<ListQuery>) -> ApiResult {
    if let Some(s) = &q.status {
        EventStatus::parse(s).ok_or_else(|| ApiError::invalid("status", "expected processed, rejected, duplicate or dead_lettered"))?;
    }
    let w = window(&q)?;
    let page = st
        .store
        .page_events(&env, &w, |r| {
            eq(&q.source, &r.source) && eq(&q.event_type, &r.event_type) && eq(&q.name, &r.name) && eq(&q.user_id, &r.user_id) && eq(&q.status, &r.status)
        })
        .await?;
    ok(StatusCode::OK, json!({"events": page.items, "next_cursor": page.next_cursor}))
}

pub async fn list_actions(State(st): St, Path(env): Path<String>, Query(q): Query<ListQuery>) -> ApiResult {
    if let Some(s) = &q.status {
        ActionStatus::parse(s).ok_or_else(|| ApiError::invalid("status", "expected success, failed or skipped"))?;
    }
    if let Some(t) = &q.action_type {
        t.parse::<tributary_model::ActionType>().map_err(|e| ApiError::invalid("action_type", e))?;
    }
    let w = window(&q)?;
    let page = st
        .store
        .page_actions(&env, &w, |r| {
            eq(&q.source, &r.source) && eq(&q.action_type, &r.action_type) && eq(&q.status, &r.status) && eq(&q.workflow, &r.workflow)
        })
        .await?;
    ok(StatusCode::OK, json!({"actions": page.items, "next_cursor": page.next_cursor}))
}

pub async fn known_events(State(st): St, Path((key, env)): Path<(String, String)>) -> ApiResult {
    load_settings(&st, &key, &env).await?;
    let mut events = st.store.known_events(&key, &env).await?;
    events.sort_by(|a, b| b.last_seen.cmp(&a.last_seen));
    ok(StatusCode::OK, json!({"events": events}))
}

pub async fn status(State(st): St, Path((key, env)): Path<(String, String)>) -> ApiResult {
    load_settings(&st, &key, &env).await?;
    let known = st.store.known_events(&key, &env).await?;
    let last = known.iter().filter_map(|k| k.last_seen).max();
    let mappings = st.store.list_mappings(&key, &env).await?;
    ok(
        StatusCode::OK,
        json!({
            "events_count": st.store.events_in_last_days(&key, &env, 30).await?,
            "last_event_received": last,
            "mappings_count": mappings.len(),
            "active_mappings_count": mappings.iter().filter(|m| m.active).count(),
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<usize>,
    days: Option<i32>,
}

pub async fn audit_log(State(st): St, Query(q): Query<AuditQuery>) -> ApiResult {
    let entries = st.store.audit_entries(q.days.unwrap_or(30).clamp(1, 400), q.limit.unwrap_or(100).clamp(1, 1000)).await?;
    ok(StatusCode::OK, json!({"entries": entries}))
}
