//! The OpenAPI 3.1 description of the admin API, generated from [`ROUTES`]. The checked-in
//! copy (`crates/admin/openapi.json`) must equal it: a test fails otherwise
//! (regenerate with `tributary openapi > crates/admin/openapi.json`), and another test calls
//! every route listed here on a live server, so the table cannot drift from the router.

use serde_json::{json, Map, Value};

/// (method, path, operation id, summary, request schema, response schema, success status)
pub const ROUTES: &[(&str, &str, &str, &str, Option<&str>, &str, u16)] = &[
    ("get", "/v1/environments", "listEnvironments", "List environments", None, "EnvironmentList", 200),
    ("post", "/v1/environments", "createEnvironment", "Create an environment (every source gets settings and an ingest URL in it)", Some("EnvironmentCreate"), "Environment", 201),
    ("delete", "/v1/environments/{env}", "deleteEnvironment", "Delete an environment", None, "Empty", 204),
    ("get", "/v1/sources", "listSources", "List sources with their environments", None, "SourceList", 200),
    ("post", "/v1/sources", "createSource", "Create a source from a template; every environment gets its own ingest URL", Some("SourceCreate"), "Source", 201),
    ("get", "/v1/sources/{key}", "getSource", "Get a source", None, "Source", 200),
    ("patch", "/v1/sources/{key}", "updateSource", "Rename a source", Some("SourceUpdate"), "Source", 200),
    ("delete", "/v1/sources/{key}", "deleteSource", "Delete a source with its settings and mappings", None, "Empty", 204),
    ("get", "/v1/sources/{key}/environments/{env}", "getSettings", "Get a source's settings in an environment (secrets as hints)", None, "Settings", 200),
    ("patch", "/v1/sources/{key}/environments/{env}", "updateSettings", "Change settings: identify, dedup, paths, verification, retention, sink", Some("SettingsUpdate"), "Settings", 200),
    ("post", "/v1/sources/{key}/environments/{env}/secrets", "addSecret", "Add a verification secret (generated unless given); shown in full only here; at most two active", Some("SecretCreate"), "SecretCreated", 201),
    ("delete", "/v1/sources/{key}/environments/{env}/secrets/{index}", "removeSecret", "Remove a verification secret", None, "Settings", 200),
    ("post", "/v1/sources/{key}/environments/{env}/rotate-token", "rotateToken", "Issue a new ingest URL; the old one works for grace_seconds", Some("RotateToken"), "Settings", 200),
    ("get", "/v1/sources/{key}/environments/{env}/mappings", "listMappings", "List mappings", None, "MappingList", 200),
    ("post", "/v1/sources/{key}/environments/{env}/mappings", "createMapping", "Create a mapping (validated: 422 names the field)", Some("MappingCreate"), "Mapping", 201),
    ("get", "/v1/sources/{key}/environments/{env}/mappings/{id}", "getMapping", "Get a mapping", None, "Mapping", 200),
    ("put", "/v1/sources/{key}/environments/{env}/mappings/{id}", "updateMapping", "Replace a mapping (including active)", Some("MappingCreate"), "Mapping", 200),
    ("delete", "/v1/sources/{key}/environments/{env}/mappings/{id}", "deleteMapping", "Delete a mapping", None, "Empty", 204),
    ("get", "/v1/sources/{key}/environments/{env}/known-events", "knownEvents", "Event types seen, with count and last seen", None, "KnownEvents", 200),
    ("get", "/v1/sources/{key}/environments/{env}/status", "sourceStatus", "Events in the last 30 days, last event, mappings count", None, "SourceStatus", 200),
    ("post", "/v1/sources/{key}/environments/{env}/rehearse", "rehearse", "Run a body and headers through verification, normalization and mappings; nothing is written or sent", Some("Rehearse"), "RehearseResult", 200),
    ("get", "/v1/environments/{env}/events", "listEvents", "Event logs, newest first; filters source, event_type, name, user_id, status, since, until; cursor paging", None, "EventPage", 200),
    ("get", "/v1/events/{id}", "getEvent", "An event log with its raw and normalized forms and its action logs", None, "EventLog", 200),
    ("get", "/v1/environments/{env}/actions", "listActions", "Action logs, newest first; filters status, action_type, workflow, source, since, until; cursor paging", None, "ActionPage", 200),
    ("post", "/v1/environments/{env}/replay", "replay", "Re-run one event, or a time range, through the current mappings", Some("Replay"), "ReplayResult", 202),
    ("get", "/v1/environments/{env}/users/{id}", "getUser", "An identified user with its properties", None, "User", 200),
    ("get", "/v1/audit", "auditLog", "Who changed what, when (newest first)", None, "AuditLog", 200),
];

fn obj(props: &[(&str, Value)]) -> Value {
    let mut p = Map::new();
    for (k, v) in props {
        p.insert(k.to_string(), v.clone());
    }
    json!({"type": "object", "properties": p})
}

fn schemas() -> Map<String, Value> {
    let s = json!({"type": "string"});
    let i = json!({"type": "integer"});
    let b = json!({"type": "boolean"});
    let any = json!({});
    let r = |n: &str| json!({"$ref": format!("#/components/schemas/{n}")});
    let arr = |v: Value| json!({"type": "array", "items": v});
    let mut m = Map::new();
    let mut add = |n: &str, v: Value| {
        m.insert(n.to_string(), v);
    };
    add("Error", obj(&[("error", obj(&[("code", s.clone()), ("message", s.clone()), ("details", any.clone())]))]));
    add("Empty", json!({"type": "null"}));
    add("Environment", obj(&[("name", s.clone())]));
    add("EnvironmentCreate", obj(&[("name", s.clone())]));
    add("EnvironmentList", obj(&[("environments", arr(s.clone()))]));
    add("SourceCreate", obj(&[("key", s.clone()), ("name", s.clone()), ("template", json!({"enum": ["segment", "rudderstack", "hightouch", "census", "http"]}))]));
    add("SourceUpdate", obj(&[("name", s.clone())]));
    add("Source", obj(&[("key", s.clone()), ("name", s.clone()), ("template", s.clone()), ("created_at", i.clone()), ("environments", json!({"type": "object", "additionalProperties": r("Settings")}))]));
    add("SourceList", obj(&[("sources", arr(r("Source")))]));
    let paths = obj(&[("event_type", s.clone()), ("fixed_type", s.clone()), ("event_name", s.clone()), ("user_id", s.clone()), ("timestamp", s.clone()), ("idempotency_key", s.clone()), ("data", s.clone()), ("array", s.clone())]);
    let verification = obj(&[("scheme", json!({"enum": ["none", "segment_signature", "standard_webhooks", "shared_secret_header", "bearer"]})), ("header", s.clone()), ("secrets", arr(s.clone()))]);
    let sink = obj(&[("kind", json!({"enum": ["kafka", "http"]})), ("base_url", s.clone()), ("api_key", s.clone())]);
    let dedup = obj(&[("enabled", b.clone()), ("window_secs", i.clone())]);
    add("Settings", obj(&[("source", s.clone()), ("environment", s.clone()), ("token", s.clone()), ("ingest_url", s.clone()), ("previous_token", s.clone()), ("previous_token_expires_at", i.clone()), ("handle_identify", b.clone()), ("dedup", dedup.clone()), ("paths", paths.clone()), ("verification", verification.clone()), ("retention_days", i.clone()), ("sink", sink.clone())]));
    add("SettingsUpdate", obj(&[("handle_identify", b.clone()), ("dedup", dedup), ("paths", paths), ("verification", verification), ("retention_days", i.clone()), ("sink", sink)]));
    add("SecretCreate", obj(&[("secret", s.clone())]));
    add("SecretCreated", obj(&[("secret", s.clone()), ("index", i.clone()), ("settings", r("Settings"))]));
    add("RotateToken", obj(&[("grace_seconds", i.clone())]));
    add("MappingCreate", obj(&[("event_type", s.clone()), ("event_name", s.clone()), ("action_type", json!({"enum": tributary_model::ActionType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>()})), ("parameters", json!({"type": "object"})), ("filter", s.clone()), ("active", b.clone())]));
    add("Mapping", obj(&[("id", s.clone()), ("source", s.clone()), ("environment", s.clone()), ("event_type", s.clone()), ("event_name", s.clone()), ("action_type", s.clone()), ("parameters", json!({"type": "object"})), ("filter", s.clone()), ("active", b.clone()), ("created_at", i.clone()), ("updated_at", i.clone())]));
    add("MappingList", obj(&[("mappings", arr(r("Mapping")))]));
    add("KnownEvents", obj(&[("events", arr(obj(&[("event_type", s.clone()), ("name", s.clone()), ("count", i.clone()), ("last_seen", i.clone())])))]));
    add("SourceStatus", obj(&[("events_count", i.clone()), ("last_event_received", i.clone()), ("mappings_count", i.clone()), ("active_mappings_count", i.clone())]));
    add("Rehearse", obj(&[("body", any.clone()), ("headers", json!({"type": "object"}))]));
    add("RehearseResult", obj(&[("status", i.clone()), ("verification", s.clone()), ("events", arr(any.clone())), ("rejected", arr(any.clone())), ("error", any.clone())]));
    let event_row = obj(&[("event_id", s.clone()), ("received_at", i.clone()), ("source", s.clone()), ("event_type", s.clone()), ("name", s.clone()), ("user_id", s.clone()), ("status", s.clone())]);
    add("EventPage", obj(&[("events", arr(event_row)), ("next_cursor", s.clone())]));
    let action_row = obj(&[("action_id", s.clone()), ("event_id", s.clone()), ("inserted_at", i.clone()), ("source", s.clone()), ("action_type", s.clone()), ("status", s.clone()), ("workflow", s.clone())]);
    add("ActionPage", obj(&[("actions", arr(action_row)), ("next_cursor", s.clone())]));
    add("ActionLog", obj(&[("action_id", s.clone()), ("event_id", s.clone()), ("mapping_id", s.clone()), ("action_type", s.clone()), ("status", s.clone()), ("parameters", any.clone()), ("payload", any.clone()), ("result", any.clone()), ("error", s.clone()), ("attempts", i.clone()), ("replay_of", s.clone()), ("inserted_at", i.clone()), ("updated_at", i.clone()), ("ttl", i.clone())]));
    add("EventLog", obj(&[("event_id", s.clone()), ("request_id", s.clone()), ("source", s.clone()), ("environment", s.clone()), ("event_type", s.clone()), ("name", s.clone()), ("user_id", s.clone()), ("status", s.clone()), ("error_code", s.clone()), ("error_message", s.clone()), ("verification", s.clone()), ("raw", any.clone()), ("normalized", any.clone()), ("duplicate_of", s.clone()), ("received_at", i.clone()), ("inserted_at", i.clone()), ("ttl", i.clone()), ("actions", arr(r("ActionLog")))]));
    add("Replay", obj(&[("event_id", s.clone()), ("since", i.clone()), ("until", i.clone()), ("source", s.clone())]));
    add("ReplayResult", obj(&[("replay_id", s.clone()), ("replayed", i.clone()), ("events", arr(any.clone()))]));
    add("User", json!({"type": "object", "properties": {"id": s, "environment": {"type": "string"}, "properties": {"type": "object"}}, "additionalProperties": true}));
    add("AuditLog", obj(&[("entries", arr(obj(&[("id", json!({"type": "string"})), ("at", i.clone()), ("actor", json!({"type": "string"})), ("action", json!({"type": "string"})), ("target", json!({"type": "string"})), ("details", any)])))]));
    m
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, op, summary, req, resp, status) in ROUTES {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut o = Map::new();
        o.insert("operationId".into(), json!(op));
        o.insert("summary".into(), json!(summary));
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        if let Some(r) = req {
            o.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{r}")}}}}),
            );
        }
        let ok = if *status == 204 {
            json!({"description": "done"})
        } else {
            json!({"description": "ok", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{resp}")}}}})
        };
        let err = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        o.insert("responses".into(), json!({status.to_string(): ok, "default": err}));
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = Value::Object(o);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Tributary admin API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Sources, environments, mappings, logs, rehearse and replay. Every endpoint needs `Authorization: Bearer <admin token>`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas()
        },
        "security": [{"bearer": []}],
        "paths": paths
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_document_is_current() {
        let want = serde_json::to_string_pretty(&super::document()).unwrap();
        let have = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap_or_default();
        assert!(
            have.trim_end() == want.trim_end(),
            "crates/admin/openapi.json is out of date: run `tributary openapi > crates/admin/openapi.json`"
        );
    }
}
