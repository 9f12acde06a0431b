//! Deterministic identifiers.
//!
//! Every stage is at-least-once, so the same input can be processed more than once. Ids that
//! are derived from their input (instead of random) make every write an idempotent upsert:
//! a redelivered raw record yields the same event id, the same action ids, the same rows.

use uuid::Uuid;

/// Namespace for Tributary's v5 UUIDs (a fixed random value; never change it).
const NAMESPACE: Uuid = Uuid::from_u128(0x6a0f_4c2e_9d1b_4e7a_8c35_2b9e_71d4_0f63);

/// The id of the `index`-th item of the request `request_id`.
pub fn event_id(request_id: &str, index: u32) -> String {
    Uuid::new_v5(&NAMESPACE, format!("event:{request_id}:{index}").as_bytes()).to_string()
}

/// The id of the action that `mapping_id` produces for `event_id`.
pub fn action_id(event_id: &str, mapping_id: &str) -> String {
    Uuid::new_v5(&NAMESPACE, format!("action:{event_id}:{mapping_id}").as_bytes()).to_string()
}

/// A fresh random id (requests, mappings).
pub fn random_id() -> String {
    Uuid::new_v4().to_string()
}

/// A fresh ingest token: 32 hex characters of randomness, prefixed so that it is recognisable
/// in a URL or a leaked log line.
pub fn new_token() -> String {
    format!("tok_{}", Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        assert_eq!(event_id("r1", 0), event_id("r1", 0));
        assert_ne!(event_id("r1", 0), event_id("r1", 1));
        assert_ne!(event_id("r1", 0), event_id("r2", 0));
        assert_eq!(action_id("e", "m"), action_id("e", "m"));
        assert_ne!(action_id("e", "m1"), action_id("e", "m2"));
        assert_ne!(new_token(), new_token());
        assert!(new_token().starts_with("tok_"));
    }
}
