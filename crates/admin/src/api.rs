//! The admin API's routes and handlers.

use crate::error::ApiError;
use crate::secret_eq::same_secret;
use crate::shared::{body_of, load_settings, now_ms, ok, settings_view, AdminState, ApiResult, JsonBody, MaybeJson, St};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tributary_mapping::validate_mapping;
use tributary_model::ids::{new_token, random_id};
use tributary_model::{EnvironmentSettings, Mapping, Source, Template};
use tributary_runtime::health::health_routes;
use tributary_runtime::Readiness;
use tributary_sources::identify::split_fields;
use tributary_sources::templates::default_settings;

pub fn router(state: Arc<AdminState>, readiness: Readiness) -> Router {
    let console = crate::console::routes(state.clone());
    let api = Router::new()
        .route("/v1/environments", get(list_environments).post(create_environment))
        .route("/v1/environments/{env}", axum::routing::delete(delete_environment))
        .route("/v1/sources", get(list_sources).post(create_source))
        .route("/v1/sources/{key}", get(get_source).patch(update_source).delete(delete_source))
        .route("/v1/sources/{key}/environments/{env}", get(get_settings).patch(update_settings))
        .route("/v1/sources/{key}/environments/{env}/secrets", axum::routing::post(add_secret))
        .route("/v1/sources/{key}/environments/{env}/secrets/{index}", axum::routing::delete(remove_secret))
        .route("/v1/sources/{key}/environments/{env}/rotate-token", axum::routing::post(rotate_token))
        .route("/v1/sources/{key}/environments/{env}/known-events", get(crate::logs::known_events))
        .route("/v1/sources/{key}/environments/{env}/status", get(crate::logs::status))
        .route("/v1/sources/{key}/environments/{env}/rehearse", axum::routing::post(crate::rehearse::rehearse))
        .route("/v1/environments/{env}/replay", axum::routing::post(crate::rehearse::replay))
        .route("/v1/environments/{env}/actions", get(crate::logs::list_actions))
        .route("/v1/audit", get(crate::logs::audit_log))
        .route("/v1/sources/{key}/environments/{env}/mappings", get(list_mappings).post(create_mapping))
        .route(
            "/v1/sources/{key}/environments/{env}/mappings/{id}",
            get(get_mapping).put(update_mapping).delete(delete_mapping),
        )
        .route("/v1/environments/{env}/events", get(crate::logs::list_events))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/environments/{env}/users/{id}", get(get_user))
        .layer(middleware::from_fn_with_state(state.clone(), crate::audit::record))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    let app = api
        .merge(health_routes(readiness))
        .merge(console)
        .route("/openapi.json", get(|| async { Json(crate::openapi::document()) }));
    // Outermost: whatever axum answers on its own (no route, wrong method, a path that does not
    // parse, a query with an unknown field) leaves in the documented error shape.
    tributary_runtime::http_errors::fallbacks(app).layer(middleware::from_fn(tributary_runtime::http_errors::uniform))
}

async fn require_token(State(st): St, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if st.token.is_empty() || !same_secret(given.as_bytes(), st.token.as_bytes()) {
        // A console session (cookie; a change also needs the session's CSRF header) stands in
        // for the token.
        match crate::console::authorize(&st, req.headers(), req.method(), chrono::Utc::now().timestamp()) {
            Ok(true) => return next.run(req).await,
            Ok(false) => {}
            Err(e) => return e.into_response(),
        }
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send `Authorization: Bearer <admin token>`")
            .into_response();
    }
    next.run(req).await
}

fn slug_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

// ---------------------------------------------------------------- environments

async fn list_environments(State(st): St) -> ApiResult {
    ok(StatusCode::OK, json!({"environments": st.store.list_environments().await?}))
}

async fn create_environment(State(st): St, JsonBody(body): JsonBody) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        name: String,
    }
    let b: Body = body_of(body)?;
    if !slug_ok(&b.name) {
        return Err(ApiError::invalid("name", "use 1-64 letters, digits, `-` or `_`"));
    }
    if st.store.list_environments().await?.contains(&b.name) {
        return Err(ApiError::conflict(format!("environment `{}` exists", b.name)));
    }
    st.store.put_environment(&b.name).await?;
    // Every source gets its own settings and URL in the new environment.
    for s in st.store.list_sources().await? {
        st.store.put_settings(&default_settings(s.template, &s.key, &b.name, new_token())).await?;
    }
    ok(StatusCode::CREATED, json!({"name": b.name}))
}

async fn delete_environment(State(st): St, Path(env): Path<String>) -> ApiResult {
    if !st.store.list_environments().await?.contains(&env) {
        return Err(ApiError::not_found(format!("environment `{env}`")));
    }
    st.store.delete_environment(&env).await?;
    st.removal_settled().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------- sources

async fn source_view(st: &AdminState, s: &Source) -> Result<Value, ApiError> {
    let mut envs = Map::new();
    for settings in st.store.list_settings(&s.key).await? {
        envs.insert(settings.environment.clone(), settings_view(st, &settings));
    }
    Ok(json!({"key": s.key, "name": s.name, "template": s.template, "created_at": s.created_at, "environments": envs}))
}

async fn list_sources(State(st): St) -> ApiResult {
    let mut out = Vec::new();
    for s in st.store.list_sources().await? {
        out.push(source_view(&st, &s).await?);
    }
    ok(StatusCode::OK, json!({"sources": out}))
}

async fn create_source(State(st): St, JsonBody(body): JsonBody) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        key: String,
        name: Option<String>,
        template: String,
    }
    let b: Body = body_of(body)?;
    if !slug_ok(&b.key) {
        return Err(ApiError::invalid("key", "use 1-64 letters, digits, `-` or `_`"));
    }
    let template: Template = b.template.parse().map_err(|e: String| ApiError::invalid("template", e))?;
    if st.store.get_source(&b.key).await?.is_some() {
        return Err(ApiError::conflict(format!("source `{}` exists", b.key)));
    }
    let source = Source { key: b.key.clone(), name: b.name.unwrap_or_else(|| b.key.clone()), template, created_at: now_ms() };
    st.store.ensure_default_environments().await?;
    // The source first: a snapshot loaded between these writes must never hold a token whose
    // source it does not know.
    st.store.put_source(&source).await?;
    for env in st.store.list_environments().await? {
        st.store.put_settings(&default_settings(template, &source.key, &env, new_token())).await?;
    }
    ok(StatusCode::CREATED, source_view(&st, &source).await?)
}

async fn get_source(State(st): St, Path(key): Path<String>) -> ApiResult {
    let s = st.store.get_source(&key).await?.ok_or_else(|| ApiError::not_found(format!("source `{key}`")))?;
    ok(StatusCode::OK, source_view(&st, &s).await?)
}

async fn delete_source(State(st): St, Path(key): Path<String>) -> ApiResult {
    st.store.get_source(&key).await?.ok_or_else(|| ApiError::not_found(format!("source `{key}`")))?;
    st.store.delete_source(&key).await?;
    st.removal_settled().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_settings(State(st): St, Path((key, env)): Path<(String, String)>) -> ApiResult {
    let s = load_settings(&st, &key, &env).await?;
    ok(StatusCode::OK, settings_view(&st, &s))
}

/// Partial update: any top-level settings field; objects merge one level down.
async fn update_settings(State(st): St, Path((key, env)): Path<(String, String)>, JsonBody(body): JsonBody) -> ApiResult {
    let current = load_settings(&st, &key, &env).await?;
    let Value::Object(patch) = body else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", "expected a JSON object"));
    };
    let mut merged = serde_json::to_value(&current).unwrap_or(Value::Null);
    let mut patch = patch;
    // A type path and a fixed type are alternatives: setting one clears the other.
    if let Some(Value::Object(paths)) = patch.get_mut("paths") {
        for (set, clear) in [("event_type", "fixed_type"), ("fixed_type", "event_type")] {
            if paths.get(set).is_some_and(|v| !v.is_null()) && !paths.contains_key(clear) {
                paths.insert(clear.to_string(), Value::Null);
            }
        }
    }
    for (k, v) in patch {
        if ["source", "environment", "token", "previous_token", "previous_token_expires_at"].contains(&k.as_str()) {
            return Err(ApiError::invalid(&k, "cannot be changed here"));
        }
        match (merged.get_mut(&k), v) {
            (Some(Value::Object(old)), Value::Object(new)) if k != "sink" => {
                for (ik, iv) in new {
                    old.insert(ik, iv);
                }
            }
            (_, v) => {
                merged[k.as_str()] = v;
            }
        }
    }
    let updated: EnvironmentSettings = serde_json::from_value(merged).map_err(|e| ApiError::invalid("settings", e.to_string()))?;
    if updated.verification.secrets.len() > 2 {
        return Err(ApiError::invalid("verification.secrets", "at most two secrets can be active (rotate: add the new one, then remove the old)"));
    }
    for (name, p) in [("paths.array", &updated.paths.array), ("paths.user_id", &updated.paths.user_id)] {
        if let Some(p) = p {
            if !(p.starts_with("body.") || p.starts_with("headers.")) {
                return Err(ApiError::invalid(name, "must start with `body.` or `headers.`"));
            }
        }
    }
    st.store.put_settings(&updated).await?;
    // A change of settings can withdraw something the gateway enforces (a secret, a scheme).
    st.removal_settled().await;
    ok(StatusCode::OK, settings_view(&st, &updated))
}

async fn update_source(State(st): St, Path(key): Path<String>, JsonBody(body): JsonBody) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
    }
    let b: Body = body_of(body)?;
    let mut s = st.store.get_source(&key).await?.ok_or_else(|| ApiError::not_found(format!("source `{key}`")))?;
    if b.name.trim().is_empty() {
        return Err(ApiError::invalid("name", "must not be empty"));
    }
    s.name = b.name;
    st.store.put_source(&s).await?;
    ok(StatusCode::OK, source_view(&st, &s).await?)
}

/// Add a verification secret (generated unless given). Shown in full only in this answer.
async fn add_secret(State(st): St, Path((key, env)): Path<(String, String)>, MaybeJson(body): MaybeJson) -> ApiResult {
    let mut s = load_settings(&st, &key, &env).await?;
    if s.verification.secrets.len() >= 2 {
        return Err(ApiError::conflict("two secrets are active already: remove the old one first"));
    }
    let given = body.and_then(|v| v.get("secret").and_then(Value::as_str).map(str::to_string));
    let secret = match given {
        Some(x) if x.len() >= 8 => x,
        Some(_) => return Err(ApiError::invalid("secret", "must be at least 8 characters")),
        None => generate_secret(s.verification.scheme),
    };
    s.verification.secrets.push(secret.clone());
    st.store.put_settings(&s).await?;
    ok(StatusCode::CREATED, json!({"secret": secret, "index": s.verification.secrets.len() - 1, "settings": settings_view(&st, &s)}))
}

fn generate_secret(scheme: tributary_model::VerificationScheme) -> String {
    use base64::Engine;
    let raw = [uuid::Uuid::new_v4().as_bytes().as_slice(), uuid::Uuid::new_v4().as_bytes().as_slice()].concat();
    match scheme {
        tributary_model::VerificationScheme::StandardWebhooks => {
            format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(&raw[..24]))
        }
        _ => raw.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

async fn remove_secret(State(st): St, Path((key, env, index)): Path<(String, String, usize)>) -> ApiResult {
    let mut s = load_settings(&st, &key, &env).await?;
    if index >= s.verification.secrets.len() {
        return Err(ApiError::not_found(format!("secret {index}")));
    }
    s.verification.secrets.remove(index);
    st.store.put_settings(&s).await?;
    st.removal_settled().await;
    ok(StatusCode::OK, settings_view(&st, &s))
}

/// A new ingest token; the old one keeps working for `grace_seconds` (default one day).
async fn rotate_token(State(st): St, Path((key, env)): Path<(String, String)>, MaybeJson(body): MaybeJson) -> ApiResult {
    let mut s = load_settings(&st, &key, &env).await?;
    let grace = match body.as_ref().and_then(|v| v.get("grace_seconds")) {
        None => 86_400,
        Some(v) => v.as_i64().filter(|g| (0..=30 * 86_400).contains(g)).ok_or_else(|| {
            ApiError::invalid("grace_seconds", "must be a whole number of seconds from 0 to 2592000")
        })?,
    };
    s.previous_token = Some(std::mem::replace(&mut s.token, new_token()));
    s.previous_token_expires_at = Some(now_ms() + grace * 1000);
    st.store.put_settings(&s).await?;
    if grace == 0 {
        st.removal_settled().await;
    }
    ok(StatusCode::OK, settings_view(&st, &s))
}

// ---------------------------------------------------------------- mappings

async fn list_mappings(State(st): St, Path((key, env)): Path<(String, String)>) -> ApiResult {
    load_settings(&st, &key, &env).await?;
    ok(StatusCode::OK, json!({"mappings": st.store.list_mappings(&key, &env).await?}))
}

fn mapping_from(body: Value, key: &str, env: &str, id: String, created_at: i64) -> Result<Mapping, ApiError> {
    let Value::Object(mut m) = body else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", "expected a JSON object"));
    };
    m.insert("id".into(), json!(id));
    m.insert("source".into(), json!(key));
    m.insert("environment".into(), json!(env));
    m.entry("active").or_insert(json!(true));
    m.insert("created_at".into(), json!(created_at));
    m.insert("updated_at".into(), json!(now_ms()));
    let mapping: Mapping = serde_json::from_value(Value::Object(m)).map_err(|e| ApiError::invalid("mapping", e.to_string()))?;
    validate_mapping(&mapping).map_err(|e| ApiError::invalid(&e.field, e.message))?;
    Ok(mapping)
}

async fn create_mapping(State(st): St, Path((key, env)): Path<(String, String)>, JsonBody(body): JsonBody) -> ApiResult {
    load_settings(&st, &key, &env).await?;
    let mapping = mapping_from(body, &key, &env, random_id(), now_ms())?;
    st.store.put_mapping(&mapping).await?;
    ok(StatusCode::CREATED, serde_json::to_value(&mapping).unwrap_or_default())
}

async fn find_mapping(st: &AdminState, key: &str, env: &str, id: &str) -> Result<Mapping, ApiError> {
    st.store
        .list_mappings(key, env)
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| ApiError::not_found(format!("mapping `{id}`")))
}

async fn get_mapping(State(st): St, Path((key, env, id)): Path<(String, String, String)>) -> ApiResult {
    ok(StatusCode::OK, serde_json::to_value(find_mapping(&st, &key, &env, &id).await?).unwrap_or_default())
}

async fn update_mapping(State(st): St, Path((key, env, id)): Path<(String, String, String)>, JsonBody(body): JsonBody) -> ApiResult {
    let old = find_mapping(&st, &key, &env, &id).await?;
    let mapping = mapping_from(body, &key, &env, id, old.created_at)?;
    st.store.put_mapping(&mapping).await?;
    ok(StatusCode::OK, serde_json::to_value(&mapping).unwrap_or_default())
}

async fn delete_mapping(State(st): St, Path((key, env, id)): Path<(String, String, String)>) -> ApiResult {
    find_mapping(&st, &key, &env, &id).await?;
    st.store.delete_mapping(&key, &env, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------- logs and users

async fn get_event(State(st): St, Path(id): Path<String>) -> ApiResult {
    let log = st.store.get_event_log(&id).await?.ok_or_else(|| ApiError::not_found(format!("event `{id}`")))?;
    let actions = st.store.action_logs_for_event(&id).await?;
    let mut v = serde_json::to_value(&log).unwrap_or_default();
    v["actions"] = serde_json::to_value(&actions).unwrap_or_default();
    ok(StatusCode::OK, v)
}

async fn get_user(State(st): St, Path((env, id)): Path<(String, String)>) -> ApiResult {
    let user = st.store.get_user(&env, &id).await?.ok_or_else(|| ApiError::not_found(format!("user `{id}` in `{env}`")))?;
    let (fields, custom) = split_fields(&user);
    let mut v = json!({"id": id, "environment": env, "properties": custom});
    for (k, f) in fields {
        v[k.as_str()] = f;
    }
    ok(StatusCode::OK, v)
}
