//! Sources, their per-environment settings, and event-action mappings.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// The platform a source receives from. It decides the envelope rules and the defaults of a
/// new source's environment settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    Segment,
    Rudderstack,
    Hightouch,
    Census,
    Http,
}

impl Template {
    pub const ALL: [Template; 5] = [
        Template::Segment,
        Template::Rudderstack,
        Template::Hightouch,
        Template::Census,
        Template::Http,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Template::Segment => "segment",
            Template::Rudderstack => "rudderstack",
            Template::Hightouch => "hightouch",
            Template::Census => "census",
            Template::Http => "http",
        }
    }

    /// CDP templates follow the Segment Spec; the others are shaped by configured paths.
    pub fn is_cdp(self) -> bool {
        matches!(self, Template::Segment | Template::Rudderstack)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown template `{s}` (expected one of segment, rudderstack, hightouch, census, http)"))
    }
}

/// A platform that sends events or user data in. Its behaviour lives in the settings of each
/// environment ([`EnvironmentSettings`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Unique, user-chosen slug (`segment-web`); the id used everywhere else.
    pub key: String,
    pub name: String,
    pub template: Template,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// How a request proves it comes from the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationScheme {
    /// Accept anything posted to the (secret) ingest URL.
    None,
    /// Segment `X-Signature`: hex HMAC-SHA1 of the body (of element 0 for a bare array).
    SegmentSignature,
    /// Standard Webhooks / Svix: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks,
    /// A header (default `x-webhook-secret`) whose value must equal a secret.
    SharedSecretHeader,
    /// `Authorization: Bearer <secret>`.
    Bearer,
}

impl VerificationScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationScheme::None => "none",
            VerificationScheme::SegmentSignature => "segment_signature",
            VerificationScheme::StandardWebhooks => "standard_webhooks",
            VerificationScheme::SharedSecretHeader => "shared_secret_header",
            VerificationScheme::Bearer => "bearer",
        }
    }
}

/// Verification settings. Two secrets may be active at once so that a secret rotates without
/// dropping events: add the new one, switch the sender, remove the old one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub scheme: VerificationScheme,
    /// Header name for [`VerificationScheme::SharedSecretHeader`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
}

impl Default for Verification {
    fn default() -> Self {
        Verification { scheme: VerificationScheme::None, header: None, secrets: Vec::new() }
    }
}

/// Deduplication on the idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DedupSettings {
    pub enabled: bool,
    /// How long a key is remembered, in seconds (default 24 h).
    pub window_secs: u64,
}

impl Default for DedupSettings {
    fn default() -> Self {
        DedupSettings { enabled: false, window_secs: 24 * 3600 }
    }
}

/// Where to find things in a templated body (Hightouch, Census, generic HTTP). Paths are dot
/// paths over `body.*` and `headers.*` (e.g. `body.row.user_id`, `headers.x-event-type`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PathSettings {
    /// Path to the event type; the generic default is `body.type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// A fixed type for every item (e.g. `identify` for a user-sync), instead of a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_type: Option<String>,
    /// Path to the event name (defaults to the type's own name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Path to the data object (default: the whole item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Path to an array of rows, when one request carries several (`body.records`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
}

/// How the items of a Hightouch or Census source are read. Both tools send two shapes: rows
/// (their HTTP Request destinations, read by the configured paths) and Segment-spec events
/// (Hightouch Events' SDKs and collection API, Census's Segment-style syncs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// An item whose `type` is a Segment Spec type (`identify`, `track`, ...) is read by the
    /// CDP rules, any other item as a row; a `{"batch": [...]}` body is a CDP batch.
    #[default]
    Auto,
    /// Every item is a Segment-spec event (a row column named `type` cannot mislead).
    Segment,
    /// Every item is a row, read by the paths.
    Rows,
}

impl BodyFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BodyFormat::Auto => "auto",
            BodyFormat::Segment => "segment",
            BodyFormat::Rows => "rows",
        }
    }
}

/// Where `trigger_workflow` / `cancel_workflow` actions go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkSettings {
    /// The workflow-trigger topic (default).
    Kafka,
    /// Knock's REST API (or anything that speaks it).
    Http {
        base_url: String,
        #[serde(default)]
        api_key: String,
    },
}

impl Default for SinkSettings {
    fn default() -> Self {
        SinkSettings::Kafka
    }
}

/// The configuration of one source in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentSettings {
    pub source: String,
    pub environment: String,
    /// The secret part of the ingest URL: `/integrations/receive/{token}`.
    pub token: String,
    /// After a rotation the old token keeps working until `previous_token_expires_at` (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_token_expires_at: Option<i64>,
    /// Whether identify calls update users.
    pub handle_identify: bool,
    pub dedup: DedupSettings,
    #[serde(default)]
    pub paths: PathSettings,
    /// Hightouch and Census only: Segment-spec events, rows, or either by item (see
    /// [`BodyFormat`]). Other templates ignore it.
    #[serde(default)]
    pub body_format: BodyFormat,
    #[serde(default)]
    pub verification: Verification,
    /// How long event and action logs are kept.
    pub retention_days: u32,
    #[serde(default)]
    pub sink: SinkSettings,
}

/// The longest TTL Cassandra and ScyllaDB accept (20 years); a longer one fails the write.
pub const MAX_TTL_SECS: i32 = 630_720_000;

impl EnvironmentSettings {
    /// The logs' TTL, within what the store accepts.
    pub fn retention_secs(&self) -> i32 {
        (self.retention_days.max(1) as i64 * 86_400).min(MAX_TTL_SECS as i64) as i32
    }
}

impl DedupSettings {
    /// The claims' TTL, within what the store accepts (a window set longer is kept 20 years).
    pub fn window_ttl_secs(&self) -> i32 {
        self.window_secs.clamp(1, MAX_TTL_SECS as u64) as i32
    }
}

/// An event-action mapping: for events of `event_type` (and optional `event_name`), run
/// `action_type` with `parameters`, when `filter` (if any) holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    pub id: String,
    pub source: String,
    pub environment: String,
    /// Normalized type: `track`, `identify`, `group`, ... or a templated source's own type.
    pub event_type: String,
    /// For `track`/`page`/`screen`: the event name (`Order Completed`); `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    pub action_type: String,
    /// Parameter name → a path into the event (`data.total`, `user_id`, `event.context.ip`) or a
    /// literal (`{"literal": ...}`), depending on the action type.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    pub active: bool,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
}
