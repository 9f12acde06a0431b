//! Event-action mappings: paths, filter expressions, and the plan of actions for an event. Pure.
