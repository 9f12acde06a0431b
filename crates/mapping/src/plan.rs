//! From an event and its environment's mappings to the actions to run, in order.

use crate::filter::Filter;
use crate::params::{event_view, resolve_param};
use serde_json::{Map, Value};
use tributary_model::ids::action_id;
use tributary_model::{
    ActionCommand, ActionPayload, ActionType, AudienceMember, EnvironmentSettings, EventRecord, Mapping, NormalizedEvent,
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
        ActionType::AddToAudience | ActionType::RemoveFromAudience => {
            let member = AudienceMember {
                audience_key: required_str("audience_key")?,
                user_id: required_str("user_id")?,
                tenant: match get("tenant") {
                    None => None,
                    Some(v) => Some(id_string(&v).ok_or_else(|| format!("`tenant` must resolve to a string or an integer, found {v}"))?),
                },
            };
            Ok(if action == ActionType::AddToAudience {
                ActionPayload::AddToAudience(member)
            } else {
                ActionPayload::RemoveFromAudience(member)
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tributary_model::{EventStatus, Template};
    use tributary_sources::templates::default_settings;

    fn record(event_type: &str, name: Option<&str>, user: Option<&str>, data: Value) -> EventRecord {
        EventRecord {
            event_id: "ev-1".into(),
            request_id: "r".into(),
            index: 0,
            source: "src".into(),
            environment: "development".into(),
            template: Template::Segment,
            received_at: 0,
            verification: "unverified".into(),
            status: EventStatus::Processed,
            error: None,
            raw: None,
            normalized: Some(NormalizedEvent {
                event_type: event_type.into(),
                name: name.map(String::from),
                user_id: user.map(String::from),
                anonymous_id: None,
                data: data.clone(),
                event: json!({"context": {"groupId": "acme"}, "properties": data}),
                timestamp: "2024-07-01T09:30:00.000Z".into(),
                timestamp_source: None,
                idempotency_key: None,
                group_id: None,
                previous_id: None,
                unsupported: false,
            }),
            duplicate_of: None,
        }
    }

    fn mapping(id: &str, event_type: &str, name: Option<&str>, action: &str, params: Value, created_at: i64) -> Mapping {
        Mapping {
            id: id.into(),
            source: "src".into(),
            environment: "development".into(),
            event_type: event_type.into(),
            event_name: name.map(String::from),
            action_type: action.into(),
            parameters: params.as_object().cloned().unwrap_or_default(),
            filter: None,
            active: true,
            created_at,
            updated_at: created_at,
        }
    }

    fn settings() -> EnvironmentSettings {
        default_settings(Template::Segment, "src", "development", "t".into())
    }

    #[test]
    fn identify_runs_before_trigger_whatever_the_creation_order() {
        let ms = vec![
            mapping("m1", "track", Some("Order Completed"), "trigger_workflow", json!({"workflow": "wf"}), 1),
            mapping("m2", "track", Some("Order Completed"), "identify_user", json!({"properties": "data.customer"}), 2),
            mapping("m3", "track", Some("Other"), "trigger_workflow", json!({"workflow": "nope"}), 0),
        ];
        let r = record("track", Some("Order Completed"), Some("u1"), json!({"customer": {"email": "a@b.c", "phone": "+1"}}));
        let plan = plan_actions(&settings(), &ms, &r);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].action_type, ActionType::IdentifyUser);
        assert_eq!(
            plan[0].payload,
            Some(ActionPayload::IdentifyUser {
                user_id: "u1".into(),
                properties: json!({"email": "a@b.c", "phone_number": "+1"}).as_object().unwrap().clone()
            })
        );
        assert_eq!(plan[1].action_type, ActionType::TriggerWorkflow);
        assert_eq!(plan[1].action_id, action_id("ev-1", "m1"));
    }

    #[test]
    fn defaults_paths_literals_and_skips() {
        let ms = vec![mapping(
            "m1",
            "track",
            None,
            "trigger_workflow",
            json!({"workflow": "wf", "recipients": "data.to", "actor": "user_id",
                   "tenant": "event.context.groupId", "data": {"literal": {"fixed": true}}}),
            1,
        )];
        let r = record("track", Some("X"), Some("u1"), json!({"to": ["a", 7, {"id": "c", "email": "c@x"}]}));
        let plan = plan_actions(&settings(), &ms, &r);
        let Some(ActionPayload::TriggerWorkflow(t)) = &plan[0].payload else { panic!("{plan:?}") };
        assert_eq!(t.recipients, vec![json!("a"), json!("7"), json!({"id": "c", "email": "c@x"})]);
        assert_eq!(t.actor, Some(json!("u1")));
        assert_eq!(t.tenant, Some(json!("acme")));
        assert_eq!(t.data, json!({"fixed": true}));

        // default recipient is the user id; without one, the action is skipped with a reason
        let ms = vec![mapping("m1", "track", None, "trigger_workflow", json!({"workflow": "wf"}), 1)];
        let plan = plan_actions(&settings(), &ms, &record("track", Some("X"), None, json!({})));
        assert!(plan[0].payload.is_none());
        assert!(plan[0].skip_reason.as_deref().unwrap().contains("recipients"), "{plan:?}");

        // more than 1000 recipients is refused
        let many: Vec<Value> = (0..1001).map(|i| json!(format!("u{i}"))).collect();
        let ms = vec![mapping("m1", "track", None, "trigger_workflow", json!({"workflow": "wf", "recipients": "data.to"}), 1)];
        let plan = plan_actions(&settings(), &ms, &record("track", Some("X"), Some("u"), json!({"to": many})));
        assert!(plan[0].skip_reason.as_deref().unwrap().contains("1000"));
    }

    #[test]
    fn filters_inactive_and_identify_switch() {
        let mut m = mapping("m1", "track", None, "trigger_workflow", json!({"workflow": "wf"}), 1);
        m.filter = Some("data.total > 100".into());
        let big = record("track", Some("X"), Some("u"), json!({"total": 150}));
        let small = record("track", Some("X"), Some("u"), json!({"total": 50}));
        assert_eq!(plan_actions(&settings(), std::slice::from_ref(&m), &big).len(), 1);
        assert_eq!(plan_actions(&settings(), std::slice::from_ref(&m), &small).len(), 0);
        m.active = false;
        assert_eq!(plan_actions(&settings(), std::slice::from_ref(&m), &big).len(), 0);

        let id = mapping("m2", "identify", None, "identify_user", json!({}), 1);
        let mut s = settings();
        s.handle_identify = false;
        let plan = plan_actions(&s, &[id], &record("identify", None, Some("u"), json!({"name": "N"})));
        assert!(plan[0].skip_reason.as_deref().unwrap().contains("turned off"));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |params: Value, action: &str| {
            validate_mapping_err(&mapping("m", "track", None, action, params, 0))
        };
        assert_eq!(bad(json!({"workflow": "wf"}), "send_email"), "action_type");
        assert_eq!(bad(json!({}), "trigger_workflow"), "parameters.workflow");
        assert_eq!(bad(json!({"workflow": "wf", "recipients": "data..x"}), "trigger_workflow"), "parameters.recipients");
        assert_eq!(bad(json!({"workflow": "wf", "recipients": "body.x"}), "trigger_workflow"), "parameters.recipients");
        assert_eq!(bad(json!({"workflow": "wf", "colour": "data.x"}), "trigger_workflow"), "parameters.colour");
        let mut m = mapping("m", "track", None, "trigger_workflow", json!({"workflow": "wf"}), 0);
        m.filter = Some("data.total >".into());
        assert_eq!(validate_mapping_err(&m), "filter");
        m.filter = Some("data.total > 5".into());
        assert!(crate::validate_mapping(&m).is_ok());
    }

    #[test]
    fn audience_actions_resolve_key_user_and_tenant() {
        let add = mapping("m1", "hightouch.add", None, "add_to_audience",
            json!({"audience_key": "event.configuration.audience_key", "tenant": "data.tenant"}), 1);
        let remove = mapping("m2", "census.delete", None, "remove_from_audience", json!({"audience_key": {"literal": "vip"}}), 1);
        assert!(crate::validate_mapping(&add).is_ok());
        assert_eq!(validate_mapping_err(&mapping("m3", "x", None, "add_to_audience", json!({}), 1)), "parameters.audience_key");
        let mut r = record("hightouch.add", None, Some("u1"), json!({"tenant": "acme"}));
        r.normalized.as_mut().unwrap().event = json!({"configuration": {"audience_key": "new-signups"}});
        let plan = plan_actions(&settings(), &[add], &r);
        assert_eq!(plan[0].payload, Some(ActionPayload::AddToAudience(AudienceMember {
            audience_key: "new-signups".into(), user_id: "u1".into(), tenant: Some("acme".into()) })));
        let mut r = record("census.delete", None, Some("u2"), json!({}));
        r.normalized.as_mut().unwrap().event_type = "census.delete".into();
        let plan = plan_actions(&settings(), &[remove], &r);
        assert_eq!(plan[0].payload, Some(ActionPayload::RemoveFromAudience(AudienceMember {
            audience_key: "vip".into(), user_id: "u2".into(), tenant: None })));
        // no audience key: skipped with the reason
        let add = mapping("m1", "hightouch.add", None, "add_to_audience", json!({"audience_key": "data.nope"}), 1);
        let plan = plan_actions(&settings(), &[add], &record("hightouch.add", None, Some("u1"), json!({})));
        assert!(plan[0].skip_reason.as_deref().unwrap().contains("audience_key"), "{plan:?}");
    }

    fn validate_mapping_err(m: &Mapping) -> String {
        crate::validate_mapping(m).unwrap_err().field
    }
}
