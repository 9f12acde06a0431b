//! Actions: what mappings turn events into.

use crate::event::EventRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// The kinds of action. Declaration order is execution order (Knock's fixed order: identify
/// first, trigger last), so "identify this user, then trigger for them" works in one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    IdentifyUser,
    SetTenant,
    /// Audience membership changes after identify (the member exists) and before triggers
    /// (a workflow may target the audience).
    AddToAudience,
    RemoveFromAudience,
    CancelWorkflow,
    TriggerWorkflow,
}

impl ActionType {
    pub const ALL: [ActionType; 6] = [
        ActionType::IdentifyUser,
        ActionType::SetTenant,
        ActionType::AddToAudience,
        ActionType::RemoveFromAudience,
        ActionType::CancelWorkflow,
        ActionType::TriggerWorkflow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::IdentifyUser => "identify_user",
            ActionType::SetTenant => "set_tenant",
            ActionType::AddToAudience => "add_to_audience",
            ActionType::RemoveFromAudience => "remove_from_audience",
            ActionType::CancelWorkflow => "cancel_workflow",
            ActionType::TriggerWorkflow => "trigger_workflow",
        }
    }
}

impl fmt::Display for ActionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActionType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = ActionType::ALL.iter().map(|t| t.as_str()).collect();
            format!("unknown action type `{s}` (expected one of {})", known.join(", "))
        })
    }
}

/// A trigger request, in the shape of Knock's `POST /v1/workflows/{key}/trigger`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowTrigger {
    pub workflow: String,
    pub recipients: Vec<Value>,
    #[serde(default)]
    pub actor: Option<Value>,
    #[serde(default)]
    pub tenant: Option<Value>,
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_key: Option<String>,
}

/// The resolved values an action runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionPayload {
    TriggerWorkflow(WorkflowTrigger),
    CancelWorkflow {
        workflow: String,
        cancellation_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recipients: Option<Vec<Value>>,
    },
    IdentifyUser {
        user_id: String,
        /// Traits to merge into the user (already renamed: `phone` → `phone_number`).
        properties: Map<String, Value>,
    },
    SetTenant {
        tenant_id: String,
        properties: Map<String, Value>,
    },
    /// Knock's `POST /v1/audiences/{key}/members` for one member.
    AddToAudience(AudienceMember),
    /// Knock's `DELETE /v1/audiences/{key}/members` for one member.
    RemoveFromAudience(AudienceMember),
}

/// One member of an audience: a user, optionally within a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceMember {
    pub audience_key: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// One action the mapper decided on for an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionCommand {
    /// Deterministic (event id + mapping id): the key of its action log, so a redelivered
    /// command finds its own `success` row and does not fire again.
    pub action_id: String,
    pub mapping_id: String,
    pub action_type: ActionType,
    /// The mapping's parameters as configured (paths), for the action log.
    pub parameters: Map<String, Value>,
    /// Resolved values; `None` when the action is skipped.
    pub payload: Option<ActionPayload>,
    /// Why the action will not run (a required parameter did not resolve, a filter failed to
    /// evaluate, identify is off, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
}

/// An event with the actions to run for it, in execution order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionPlan {
    pub event: EventRecord,
    pub actions: Vec<ActionCommand>,
    /// Set when this plan re-runs a logged event (replay): the id of the replay request. The
    /// event log is not rewritten; the new action logs point back at the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}
