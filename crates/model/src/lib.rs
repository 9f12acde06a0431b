//! Domain types shared by every stage of Tributary. Pure data: no I/O here.
//!
//! The pipeline is HTTP gateway → raw topic ([`RawEvent`]) → translator → normalized topic
//! ([`EventRecord`]) → mapper → actions topic ([`ActionPlan`]) → executor → [`EventLog`],
//! [`ActionLog`], users, and the workflow-trigger sink ([`WorkflowTrigger`]).

pub mod action;
pub mod event;
pub mod ids;
pub mod log;
pub mod path;
pub mod source;

pub use action::{ActionCommand, AudienceMember, ActionPayload, ActionPlan, ActionType, WorkflowTrigger};
pub use event::{EventRecord, EventStatus, ItemError, NormalizedEvent, RawEvent};
pub use path::{Path, PathError};
pub use log::{ActionLog, ActionStatus, EventLog, EventLogOf, EventLogRecord, ExecutionReport, ReportedAction};
pub use source::{
    BodyFormat,
    DedupSettings, EnvironmentSettings, Mapping, PathSettings, SinkSettings, Source, Template,
    Verification, VerificationScheme,
};
