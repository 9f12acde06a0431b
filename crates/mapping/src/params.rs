//! Parameters of each action type, how they are written, and how they resolve.
//!
//! A parameter is a path into the event (`data.order.total`, `event.context.ip`, `user_id`) or
//! a literal written `{"literal": <value>}`. `workflow` is always a literal string.
//!
//! | action            | parameters (default when unmapped)                                     |
//! |-------------------|------------------------------------------------------------------------|
//! | trigger_workflow  | workflow*, recipients (`user_id`), actor, tenant, data (`data`), cancellation_key |
//! | cancel_workflow   | workflow*, cancellation_key*, recipients                                |
//! | identify_user     | user_id (`user_id`), properties (`data`)                                |
//! | set_tenant        | tenant_id (`group_id`), properties (`data`)                             |
//! | add_to_audience   | audience_key*, user_id (`user_id`), tenant                              |
//! | remove_from_audience | audience_key*, user_id (`user_id`), tenant                           |
//!
//! `*` required. Paths start at one of the event's fields: `data`, `event` (the original
//! payload), `user_id`, `anonymous_id`, `timestamp`, `type`, `name`, `group_id`,
//! `previous_id`, `idempotency_key`, `source`, `environment`.

use crate::filter::Filter;
use serde_json::{Map, Value};
use thiserror::Error;
use tributary_model::{ActionType, Mapping, NormalizedEvent, Path};

pub const ROOTS: [&str; 12] = [
    "data", "event", "user_id", "anonymous_id", "timestamp", "type", "name", "group_id",
    "previous_id", "idempotency_key", "source", "environment",
];

/// A mapping that cannot be saved, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct MappingError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> MappingError {
    MappingError { field: field.into(), message: message.into() }
}

/// Which parameters an action type takes: (name, required, default path).
pub fn spec(action: ActionType) -> &'static [(&'static str, bool, Option<&'static str>)] {
    match action {
        ActionType::TriggerWorkflow => &[
            ("workflow", true, None),
            ("recipients", false, Some("user_id")),
            ("actor", false, None),
            ("tenant", false, None),
            ("data", false, Some("data")),
            ("cancellation_key", false, None),
        ],
        ActionType::CancelWorkflow => {
            &[("workflow", true, None), ("cancellation_key", true, None), ("recipients", false, None)]
        }
        ActionType::IdentifyUser => &[("user_id", false, Some("user_id")), ("properties", false, Some("data"))],
        ActionType::SetTenant => &[("tenant_id", false, Some("group_id")), ("properties", false, Some("data"))],
        ActionType::AddToAudience | ActionType::RemoveFromAudience => {
            &[("audience_key", true, None), ("user_id", false, Some("user_id")), ("tenant", false, None)]
        }
    }
}

/// Check a mapping before it is saved: action type, parameter names and syntax, filter.
pub fn validate_mapping(m: &Mapping) -> Result<ActionType, MappingError> {
    if m.event_type.trim().is_empty() {
        return Err(err("event_type", "must not be empty"));
    }
    let action: ActionType = m.action_type.parse().map_err(|e: String| err("action_type", e))?;
    let spec = spec(action);
    for (name, value) in &m.parameters {
        let field = format!("parameters.{name}");
        if !spec.iter().any(|(n, _, _)| n == name) {
            let known: Vec<&str> = spec.iter().map(|(n, _, _)| *n).collect();
            return Err(err(field, format!("{action} takes no parameter `{name}` (it takes {})", known.join(", "))));
        }
        if name == "workflow" {
            match value {
                Value::String(s) if !s.trim().is_empty() => continue,
                _ => return Err(err(field, "must be a non-empty string (the workflow key)")),
            }
        }
        parse_param(value).map_err(|m| err(field, m))?;
    }
    for (name, required, default) in spec {
        if *required && default.is_none() && !m.parameters.contains_key(*name) {
            return Err(err(format!("parameters.{name}"), format!("{action} requires `{name}`")));
        }
    }
    if let Some(f) = &m.filter {
        Filter::parse(f).map_err(|e| err("filter", e.to_string()))?;
    }
    Ok(action)
}

/// A parameter as configured.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Path(Path),
    Literal(Value),
}

pub fn parse_param(v: &Value) -> Result<Param, String> {
    match v {
        Value::String(s) => {
            let p = Path::parse(s).map_err(|e| e.to_string())?;
            if !ROOTS.contains(&p.root()) {
                return Err(format!("`{s}` must start with one of {}", ROOTS.join(", ")));
            }
            Ok(Param::Path(p))
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("literal") => Ok(Param::Literal(o["literal"].clone())),
        _ => Err("must be a path string or {\"literal\": value}".to_string()),
    }
}

/// The event as the parameters see it: its fields by root name.
pub fn event_view(e: &NormalizedEvent, source: &str, environment: &str) -> Map<String, Value> {
    let s = |o: &Option<String>| o.clone().map(Value::String).unwrap_or(Value::Null);
    let mut m = Map::new();
    m.insert("data".into(), e.data.clone());
    m.insert("event".into(), e.event.clone());
    m.insert("user_id".into(), s(&e.user_id));
    m.insert("anonymous_id".into(), s(&e.anonymous_id));
    m.insert("timestamp".into(), Value::String(e.timestamp.clone()));
    m.insert("type".into(), Value::String(e.event_type.clone()));
    m.insert("name".into(), s(&e.name));
    m.insert("group_id".into(), s(&e.group_id));
    m.insert("previous_id".into(), s(&e.previous_id));
    m.insert("idempotency_key".into(), s(&e.idempotency_key));
    m.insert("source".into(), Value::String(source.to_string()));
    m.insert("environment".into(), Value::String(environment.to_string()));
    m
}

/// Resolve parameter `name` of a mapping (or its default) against the event view. `None`
/// when it is unmapped without default, or when its path leads nowhere / to null.
pub fn resolve_param(m: &Mapping, action: ActionType, name: &str, view: &Map<String, Value>) -> Option<Value> {
    let configured = m.parameters.get(name).cloned().or_else(|| {
        spec(action).iter().find(|(n, _, _)| *n == name).and_then(|(_, _, d)| d.map(|d| Value::String(d.to_string())))
    })?;
    if name == "workflow" {
        return Some(configured);
    }
    let v = match parse_param(&configured).ok()? {
        Param::Literal(v) => v,
        Param::Path(p) => {
            let root = view.get(p.root())?;
            p.resolve_rest(root).cloned()?
        }
    };
    (!v.is_null()).then_some(v)
}
