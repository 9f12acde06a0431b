//! Identify: traits → user fields, and how an update merges into what is stored.
//!
//! `name`, `email`, `avatar`, `locale`, `timezone` keep their names; `phone` becomes
//! `phone_number`; every other trait is a custom property, copied as is. A user (and a tenant)
//! is stored as one JSON object of all its properties, and an update is deep-merged into it:
//! only the keys sent change, nested objects merge key by key, `null` sets a property to null
//! (it is never removed), arrays and scalars replace.

use serde_json::{Map, Value};

/// The user fields Knock knows by name; every other key is a custom property.
pub const USER_FIELDS: [&str; 6] = ["name", "email", "avatar", "phone_number", "locale", "timezone"];

/// Turn identify traits into a user update.
///
/// An explicit `phone_number` trait is kept as it is unless `phone` is also sent, in which case
/// `phone` (the documented mapping) wins.
pub fn user_update_from_traits(traits: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(traits.len());
    for (k, v) in traits {
        if k == "phone" {
            continue;
        }
        if k == "phone_number" && traits.contains_key("phone") {
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    if let Some(phone) = traits.get("phone") {
        out.insert("phone_number".to_string(), phone.clone());
    }
    out
}

/// Deep-merge `update` into `stored`.
pub fn deep_merge(stored: &mut Map<String, Value>, update: &Map<String, Value>) {
    for (k, v) in update {
        match (stored.get_mut(k), v) {
            (Some(Value::Object(old)), Value::Object(new)) => deep_merge(old, new),
            _ => {
                stored.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Split a stored user into its named fields and its custom properties (for display).
pub fn split_fields(user: &Map<String, Value>) -> (Map<String, Value>, Map<String, Value>) {
    user.iter().map(|(k, v)| (k.clone(), v.clone())).partition(|(k, _)| USER_FIELDS.contains(&k.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn maps_phone_and_keeps_custom_traits() {
        let u = user_update_from_traits(&obj(json!({
            "name": "Kim", "email": "kim@example.org", "avatar": "https://x/a.png",
            "phone": "+4915112345678", "locale": "de-DE", "timezone": "Europe/Berlin",
            "plan": "pro", "company": {"name": "Acme"}
        })));
        assert_eq!(u["phone_number"], json!("+4915112345678"));
        assert!(!u.contains_key("phone"));
        assert_eq!(u["plan"], json!("pro"));
        assert_eq!(u["company"], json!({"name": "Acme"}));
        let (fields, custom) = split_fields(&u);
        assert_eq!(fields.len(), 6);
        assert_eq!(custom.len(), 2);
        // phone wins over an explicit phone_number; phone_number alone is kept
        let both = user_update_from_traits(&obj(json!({"phone": "1", "phone_number": "2"})));
        assert_eq!(both, obj(json!({"phone_number": "1"})));
        let only = user_update_from_traits(&obj(json!({"phone_number": "2"})));
        assert_eq!(only, obj(json!({"phone_number": "2"})));
    }

    #[test]
    fn deep_merges_and_null_sets() {
        let mut stored = obj(json!({"name": "Kim", "prefs": {"a": 1, "b": {"c": 2}}, "tags": [1, 2], "x": 1}));
        deep_merge(&mut stored, &obj(json!({"prefs": {"b": {"d": 3}}, "tags": [3], "x": null, "email": "k@e.org"})));
        assert_eq!(
            Value::Object(stored),
            json!({"name": "Kim", "prefs": {"a": 1, "b": {"c": 2, "d": 3}}, "tags": [3], "x": null, "email": "k@e.org"})
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_obj() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map("[a-d]", arb_json(), 0..5).prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        /// Merging the same update twice is the same as once (identify is idempotent).
        #[test]
        fn merge_is_idempotent(a in arb_obj(), u in arb_obj()) {
            let mut once = a.clone();
            deep_merge(&mut once, &u);
            let mut twice = once.clone();
            deep_merge(&mut twice, &u);
            prop_assert_eq!(once, twice);
        }

        /// Every key sent is readable afterwards with what was sent (objects: at least its keys),
        /// and no stored key disappears.
        #[test]
        fn merge_keeps_and_updates(a in arb_obj(), u in arb_obj()) {
            let mut m = a.clone();
            deep_merge(&mut m, &u);
            for k in a.keys() { prop_assert!(m.contains_key(k)); }
            for (k, v) in &u {
                match v {
                    Value::Object(inner) => {
                        let got = m[k].as_object().unwrap();
                        for ik in inner.keys() { prop_assert!(got.contains_key(ik)); }
                    }
                    other => prop_assert_eq!(&m[k], other),
                }
            }
        }
    }
}
