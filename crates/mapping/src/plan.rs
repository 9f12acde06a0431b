//! From an event and its environment's mappings to the actions to run, in order.

use crate::filter::Filter;
use crate::params::{event_view, resolve_param};
use serde_json::{Map, Value};
use tributary_model::ids::action_id;
use tributary_model::{
    ActionCommand, ActionPayload, ActionType, EnvironmentSettings, EventRecord, Mapping, NormalizedEvent,
    WorkflowTrigger,
};
use tributary_sources::identify::user_update_from_traits;

/// Knock's cap on recipients of one triggered event.
pub const MAX_RECIPIENTS: usize = 1000;

/// Does `m` apply to `e` (type, name, active)? The filter is evaluated separately, so that a
/// filter that rejects the event is visible in the plan.
pub fn matches(m: &Mapping, e: &NormalizedEvent) -> bool {
    m.active
        && m.event_type == e.event_type
        && m.event_name.as_deref().is_none_or(|n| e.name.as_deref() == Some(n))
}

/// The actions for `record`, in execution order (identify first, trigger last; mappings of the
/// same action type in creation order). Events that were not processed get none, and so do
/// unsupported types. A filter that does not hold drops the action (it is not an action of
/// this event); a parameter that does not resolve makes it `skipped` with the reason.
pub fn plan_actions(settings: &EnvironmentSettings, mappings: &[Mapping], record: &EventRecord) -> Vec<ActionCommand> {
    let Some(event) = record.normalized.as_ref() else { return Vec::new() };
    if record.status != tributary_model::EventStatus::Processed {
        return Vec::new();
    }
    let view = event_view(event, &record.source, &record.environment);
    let mut planned: Vec<(ActionType, i64, ActionCommand)> = Vec::new();
    for m in mappings.iter().filter(|m| matches(m, event)) {
        let Ok(action) = m.action_type.parse::<ActionType>() else { continue };
        if let Some(src) = &m.filter {
            match Filter::parse(src) {
                Ok(f) if !f.eval(&view) => continue,
                Ok(_) => {}
                Err(e) => {
                    planned.push((action, m.created_at, skipped(record, m, action, format!("filter does not parse: {e}"))));
                    continue;
                }
            }
        }
        let cmd = match build(settings, m, action, &view) {
            Ok(payload) => ActionCommand {
                action_id: action_id(&record.event_id, &m.id),
                mapping_id: m.id.clone(),
                action_type: action,
                parameters: m.parameters.clone(),
                payload: Some(payload),
                skip_reason: None,
            },
            Err(reason) => skipped(record, m, action, reason),
        };
        planned.push((action, m.created_at, cmd));
    }
    planned.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    planned.into_iter().map(|(_, _, c)| c).collect()
}

fn skipped(record: &EventRecord, m: &Mapping, action: ActionType, reason: String) -> ActionCommand {
    ActionCommand {
        action_id: action_id(&record.event_id, &m.id),
        mapping_id: m.id.clone(),
        action_type: action,
        parameters: m.parameters.clone(),
        payload: None,
        skip_reason: Some(reason),
    }
}

fn build(
    settings: &EnvironmentSettings,
    m: &Mapping,
    action: ActionType,
    view: &Map<String, Value>,
) -> Result<ActionPayload, String> {
    let get = |name: &str| resolve_param(m, action, name, view);
    let required_str = |name: &str| -> Result<String, String> {
        match get(name) {
            Some(v) => id_string(&v).ok_or_else(|| format!("`{name}` must resolve to a string or an integer, found {v}")),
            None => Err(format!("required parameter `{name}` did not resolve{}", describe(m, action, name))),
        }
    };
    match action {
        ActionType::TriggerWorkflow => {
            let workflow = required_str("workflow")?;
            let recipients = recipients(get("recipients"))?;
            if recipients.is_empty() {
                return Err(format!("no recipients: `recipients`{} resolved to nothing", describe(m, action, "recipients")));
            }
            Ok(ActionPayload::TriggerWorkflow(WorkflowTrigger {
                workflow,
                recipients,
                actor: get("actor").map(recipient).transpose()?,
                tenant: get("tenant").map(recipient).transpose()?,
                data: match get("data") {
                    Some(Value::Object(o)) => Value::Object(o),
                    Some(other) => return Err(format!("`data` must resolve to an object, found {other}")),
                    None => Value::Object(Map::new()),
                },
                cancellation_key: get("cancellation_key").as_ref().and_then(id_string),
            }))
        }
        ActionType::CancelWorkflow => Ok(ActionPayload::CancelWorkflow {
            workflow: required_str("workflow")?,
            cancellation_key: required_str("cancellation_key")?,
            recipients: match get("recipients") {
                None => None,
                some => Some(recipients(some)?),
            },
        }),
        ActionType::IdentifyUser => {
            if !settings.handle_identify {
                return Err("identify is turned off for this source environment".into());
            }
            let user_id = required_str("user_id")?;
            Ok(ActionPayload::IdentifyUser { user_id, properties: user_update_from_traits(&properties(get("properties"))?) })
        }
        ActionType::SetTenant => {
            let tenant_id = required_str("tenant_id")?;
            Ok(ActionPayload::SetTenant { tenant_id, properties: properties(get("properties"))? })
        }
    }
}

fn describe(m: &Mapping, action: ActionType, name: &str) -> String {
    match m.parameters.get(name) {
        Some(Value::String(p)) => format!(" (path `{p}`)"),
        Some(_) => String::new(),
        None => crate::params::spec(action)
            .iter()
            .find(|(n, _, _)| *n == name)
            .and_then(|(_, _, d)| *d)
            .map(|d| format!(" (default path `{d}`)"))
            .unwrap_or_default(),
    }
}

fn properties(v: Option<Value>) -> Result<Map<String, Value>, String> {
    match v {
        None => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o),
        Some(other) => Err(format!("`properties` must resolve to an object, found {other}")),
    }
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A recipient, actor or tenant: an id (string or integer), or an object with an `id`
/// (inline identify, or an object recipient with a `collection`).
fn recipient(v: Value) -> Result<Value, String> {
    match &v {
        Value::Object(o) if o.get("id").and_then(id_string).is_some() => Ok(v),
        _ => id_string(&v).map(Value::String).ok_or_else(|| format!("{v} is not a recipient (an id or an object with an `id`)")),
    }
}

fn recipients(v: Option<Value>) -> Result<Vec<Value>, String> {
    let list = match v {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(one) => vec![one],
    };
    if list.len() > MAX_RECIPIENTS {
        return Err(format!("{} recipients: more than the limit of {MAX_RECIPIENTS} per event", list.len()));
    }
    list.into_iter().map(recipient).collect()
}
