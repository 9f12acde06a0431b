//! What a new source environment starts with, per template. Each default can be changed per
//! environment afterwards.
//!
//! - segment / rudderstack: identify on, dedup on `messageId` for 24 h, no verification until
//!   a secret is added (Segment: `segment_signature`; RudderStack has no signature, so
//!   `shared_secret_header` or `bearer`).
//! - hightouch / census: `body_format` auto: Segment-spec events (Hightouch Events, Census
//!   Segment-style syncs) by the CDP rules, rows (HTTP Request destinations) read as identify
//!   calls with the user id at `body.user_id` (switch to an event-type path for event syncs).
//!   Dedup on for 24 h: events carry `messageId`, JSON-RPC rows a key derived from the call;
//!   rows without a configured key path have none and are not deduplicated.
//! - http: Standard Webhooks-shaped `{type, timestamp, data}` by default.

use tributary_model::{
    DedupSettings, EnvironmentSettings, PathSettings, SinkSettings, Template, Verification,
};

pub const DEFAULT_RETENTION_DAYS: u32 = 30;

pub fn default_settings(template: Template, source: &str, environment: &str, token: String) -> EnvironmentSettings {
    let day = 24 * 3600;
    let (dedup, paths) = match template {
        Template::Segment | Template::Rudderstack => {
            (DedupSettings { enabled: true, window_secs: day }, PathSettings::default())
        }
        Template::Hightouch | Template::Census => (
            DedupSettings { enabled: true, window_secs: day },
            PathSettings {
                fixed_type: Some("identify".into()),
                user_id: Some("body.user_id".into()),
                ..PathSettings::default()
            },
        ),
        Template::Http => (
            DedupSettings { enabled: false, window_secs: day },
            PathSettings {
                event_type: Some("body.type".into()),
                timestamp: Some("body.timestamp".into()),
                data: Some("body.data".into()),
                ..PathSettings::default()
            },
        ),
    };
    EnvironmentSettings {
        source: source.to_string(),
        environment: environment.to_string(),
        token,
        previous_token: None,
        previous_token_expires_at: None,
        handle_identify: true,
        dedup,
        paths,
        body_format: Default::default(),
        verification: Verification::default(),
        retention_days: DEFAULT_RETENTION_DAYS,
        sink: SinkSettings::Kafka,
    }
}
