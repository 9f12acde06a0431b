//! Which rules read a body: the CDP rules (Segment Spec) or the configured row paths.
//!
//! Segment and RudderStack are always CDP; generic HTTP is always rows. Hightouch and Census
//! send both shapes (Hightouch Events' SDKs and collection API, Census's Segment-style syncs
//! send Segment-spec events; their HTTP Request destinations send rows), so by default each
//! item is read by what it is: a Segment Spec `type` makes it an event, anything else is a
//! row. The `body_format` setting fixes one reading where auto-detection is not wanted (a row
//! with a column named `type`).

use serde_json::Value;
use tributary_model::{BodyFormat, EnvironmentSettings, Template};

/// The Segment Spec call types.
pub const SPEC_TYPES: [&str; 6] = ["identify", "track", "page", "screen", "group", "alias"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Cdp,
    Rows,
    /// Per item (and per envelope: a `{"batch": [...]}` body is a CDP batch).
    Auto,
}

pub fn reading(template: Template, settings: &EnvironmentSettings) -> Reading {
    match template {
        Template::Segment | Template::Rudderstack => Reading::Cdp,
        Template::Http => Reading::Rows,
        Template::Hightouch | Template::Census => match settings.body_format {
            BodyFormat::Auto => Reading::Auto,
            BodyFormat::Segment => Reading::Cdp,
            BodyFormat::Rows => Reading::Rows,
        },
    }
}

/// Is this item (a JSON object's `type` field, and the type a tracking-API path implies) a
/// Segment-spec event under `reading`?
pub fn item_is_cdp(reading: Reading, type_field: Option<&Value>, implied_type: Option<&str>) -> bool {
    match reading {
        Reading::Cdp => true,
        Reading::Rows => false,
        // A tracking-API path (`/v1/track`) says it is an event whatever the body holds.
        Reading::Auto => {
            implied_type.is_some()
                || type_field
                    .and_then(Value::as_str)
                    .is_some_and(|t| SPEC_TYPES.iter().any(|s| s.eq_ignore_ascii_case(t)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::default_settings;
    use serde_json::json;

    #[test]
    fn reading_per_template_and_setting() {
        let mut s = default_settings(Template::Hightouch, "s", "e", "t".into());
        assert_eq!(reading(Template::Segment, &s), Reading::Cdp);
        assert_eq!(reading(Template::Http, &s), Reading::Rows);
        assert_eq!(reading(Template::Hightouch, &s), Reading::Auto);
        s.body_format = BodyFormat::Rows;
        assert_eq!(reading(Template::Census, &s), Reading::Rows);
        s.body_format = BodyFormat::Segment;
        assert_eq!(reading(Template::Census, &s), Reading::Cdp);
    }

    #[test]
    fn auto_reads_spec_types_only() {
        assert!(item_is_cdp(Reading::Auto, Some(&json!("track")), None));
        assert!(item_is_cdp(Reading::Auto, Some(&json!("Identify")), None));
        assert!(!item_is_cdp(Reading::Auto, Some(&json!("customer")), None));
        assert!(!item_is_cdp(Reading::Auto, Some(&json!(1)), None));
        assert!(!item_is_cdp(Reading::Auto, None, None));
        assert!(item_is_cdp(Reading::Auto, None, Some("track")));
        assert!(!item_is_cdp(Reading::Rows, Some(&json!("track")), None));
        assert!(item_is_cdp(Reading::Cdp, None, None));
    }
}
