//! Event-action mappings, as pure functions: validate a mapping when it is saved, and turn an
//! event plus the mappings of its environment into the ordered list of actions to run.

pub mod filter;
pub mod params;
pub mod plan;

pub use plan::{matches, plan_actions};
pub use params::{validate_mapping, MappingError};
