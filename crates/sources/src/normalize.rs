//! One item → the common format, following the normalization contract
//! (`shared/reference/normalization.md`). Decisions where the contract leaves room:
//!
//! - An item that is not an object is refused `not_an_object`; an object with neither a string
//!   `type` nor a non-empty string `event` is refused `missing_type` (open point 1).
//! - A present but non-string `type` counts as missing. A whitespace-only track `event` is kept
//!   verbatim (only the empty string is missing).
//! - `groupId` / `previousId` follow the id rules; a bad one is refused `invalid_group_id` /
//!   `invalid_previous_id`, so the code names the field.
//! - Booleans, objects and arrays as ids are `invalid_user_id`.
//! - Non-object `properties` / `traits` become `{}` (open point 3): `data` is always an object.
//! - Idempotency key: `messageId` (1-255 characters) first, then the `webhook-id` header
//!   (open point 2).
//! - Duplicate keys in an object: the last wins (open point 5), like `JSON.parse`.
//! - For a batch item, batch-level `context`/`integrations` are merged one level down (the
//!   item's own keys win) and `event` is the item after that merge, which is what the event
//!   means; the log keeps the item's exact bytes besides.
//! - Templated sources (hightouch, census, http) do not use the CDP identity rules: their type,
//!   user id, timestamp, key and data come from the configured paths, and an item without a
//!   user id is accepted (open point 4).

use crate::error::ItemErrorCode;
use crate::format::{self, SPEC_TYPES};
use crate::timestamp;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tributary_model::path::resolve;
use tributary_model::{EnvironmentSettings, ItemError, NormalizedEvent, Template, VerificationScheme};

/// Everything normalization depends on. No clock: `received_at` stands in for "now".
pub struct NormalizeInput<'a> {
    pub template: Template,
    pub settings: &'a EnvironmentSettings,
    pub item: &'a RawValue,
    pub batch_context: Option<&'a RawValue>,
    pub batch_integrations: Option<&'a RawValue>,
    /// Request headers, lower-cased, credentials removed.
    pub headers: &'a Map<String, Value>,
    /// The type a tracking-API path implies (`/v1/track` → `track`), if the item has none.
    pub implied_type: Option<&'a str>,
    /// When the gateway received the request (ms); the event time when none parses.
    pub received_at: i64,
    /// The item is a JSON-RPC row envelope ([`crate::rpc::row`]).
    pub rpc: bool,
}

/// Longest idempotency key kept (Knock's limit).
pub const MAX_KEY_CHARS: usize = 255;

pub fn normalize_item(input: &NormalizeInput<'_>) -> Result<NormalizedEvent, ItemError> {
    let item: Value = serde_json::from_str(input.item.get())
        .map_err(|e| ItemErrorCode::NotAnObject.with(format!("the item is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = item else {
        return Err(ItemErrorCode::NotAnObject.with(format!("each item must be a JSON object, found {}", kind(&item))));
    };
    if input.rpc {
        return crate::rpc::row::normalize_row(&Value::Object(obj), input.received_at);
    }
    merge_batch_level(&mut obj, "context", input.batch_context);
    merge_batch_level(&mut obj, "integrations", input.batch_integrations);
    if format::item_is_cdp(format::reading(input.template, input.settings), obj.get("type"), input.implied_type) {
        normalize_cdp(input, obj)
    } else {
        normalize_templated(input, obj)
    }
}

/// What decides whether a CDP item is refused, and who it is about. Shared by
/// [`normalize_item`] and [`screen_item`], so the gateway and the translator can never
/// disagree on a refusal. `get` reads a top-level field of the item.
struct CdpIdentity {
    event_type: String,
    name: Option<String>,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    group_id: Option<String>,
    previous_id: Option<String>,
}

fn cdp_identity<'v>(get: impl Fn(&str) -> Option<&'v Value>, implied_type: Option<&str>) -> Result<CdpIdentity, ItemError> {
    let event_str = get("event").and_then(Value::as_str).filter(|s| !s.is_empty());
    let event_type = match get("type").and_then(Value::as_str) {
        Some(t) => t.to_lowercase(),
        None => match (implied_type, event_str) {
            (Some(t), _) => t.to_string(),
            (None, Some(_)) => "track".to_string(),
            (None, None) => {
                return Err(ItemErrorCode::MissingType.with("the item has neither a string `type` nor an `event` name"))
            }
        },
    };

    let name = match event_type.as_str() {
        "track" => match event_str {
            Some(e) => Some(e.to_string()),
            None => return Err(ItemErrorCode::MissingEvent.with("a track call needs a non-empty string `event`")),
        },
        "page" | "screen" => non_empty_str(get("name"))
            .or_else(|| non_empty_str(get("properties").and_then(|p| p.get("name"))))
            .map(str::to_string),
        _ => None,
    };

    let id_field = |key: &str, code: ItemErrorCode| -> Result<Option<String>, ItemError> {
        match get(key) {
            None => Ok(None),
            Some(v) => id_value(v).map_err(|why| code.with(format!("`{key}` {why}"))),
        }
    };
    let user_id = id_field("userId", ItemErrorCode::InvalidUserId)?;
    let anonymous_id = id_field("anonymousId", ItemErrorCode::InvalidUserId)?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(ItemErrorCode::MissingIdentity.with("the item has neither `userId` nor `anonymousId`"));
    }
    let group_id = match event_type.as_str() {
        "group" => id_field("groupId", ItemErrorCode::InvalidGroupId)?,
        _ => None,
    };
    let previous_id = match event_type.as_str() {
        "alias" => id_field("previousId", ItemErrorCode::InvalidPreviousId)?,
        _ => None,
    };
    Ok(CdpIdentity { event_type, name, user_id, anonymous_id, group_id, previous_id })
}

/// What the gateway needs of an item: refused (with the code [`normalize_item`] would give),
/// or accepted with the identity to key it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screened {
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
}

/// The fields of a CDP item that decide a refusal, read borrowed; the rest of the item is
/// skipped without being built (what makes [`screen_item`] cheap).
#[derive(serde::Deserialize)]
struct CdpFields<'a> {
    #[serde(rename = "type", borrow, default)]
    event_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(rename = "userId", borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(rename = "anonymousId", borrow, default)]
    anonymous_id: Option<&'a RawValue>,
    #[serde(rename = "groupId", borrow, default)]
    group_id: Option<&'a RawValue>,
    #[serde(rename = "previousId", borrow, default)]
    previous_id: Option<&'a RawValue>,
}

/// [`normalize_item`]'s verdict without the normalized event: the same refusals (a property
/// test holds them equal), at a fraction of the cost for CDP items, whose decisive fields are
/// a handful of top-level scalars. Anything unusual (not an object, duplicate keys, templated
/// sources) takes the full path.
pub fn screen_item(input: &NormalizeInput<'_>) -> Result<Screened, ItemError> {
    let full = || normalize_item(input).map(|n| Screened { user_id: n.user_id, anonymous_id: n.anonymous_id });
    // Only an object takes the fast path (serde would also read an array into the struct,
    // by position).
    let is_object = input.item.get().trim_start().starts_with('{');
    if input.rpc || format::reading(input.template, input.settings) != format::Reading::Cdp || !is_object {
        return full();
    }
    let Ok(f) = serde_json::from_str::<CdpFields<'_>>(input.item.get()) else {
        return full(); // duplicate keys (the last wins there), invalid JSON
    };
    let parse = |r: Option<&RawValue>| -> Option<Value> { r.and_then(|r| serde_json::from_str(r.get()).ok()) };
    // `name` / `properties` only name a page or screen, which screening does not need.
    let fields: [(&str, Option<Value>); 6] = [
        ("type", parse(f.event_type)),
        ("event", parse(f.event)),
        ("userId", parse(f.user_id)),
        ("anonymousId", parse(f.anonymous_id)),
        ("groupId", parse(f.group_id)),
        ("previousId", parse(f.previous_id)),
    ];
    let get = |k: &str| fields.iter().find(|(name, _)| *name == k).and_then(|(_, v)| v.as_ref());
    let id = cdp_identity(get, input.implied_type)?;
    Ok(Screened { user_id: id.user_id, anonymous_id: id.anonymous_id })
}

fn normalize_cdp(input: &NormalizeInput<'_>, obj: Map<String, Value>) -> Result<NormalizedEvent, ItemError> {
    let CdpIdentity { event_type, name, user_id, anonymous_id, group_id, previous_id } =
        cdp_identity(|k| obj.get(k), input.implied_type)?;

    let supported = SPEC_TYPES.contains(&event_type.as_str());
    let data = match event_type.as_str() {
        "track" | "page" | "screen" => object_or_empty(obj.get("properties")),
        "identify" | "group" => traits(&obj, user_id.as_deref()),
        "alias" => Map::new(),
        _ => match present(obj.get("properties")).or_else(|| present(obj.get("traits"))) {
            Some(v) => object_or_empty(Some(v)),
            None => Map::new(),
        },
    };

    let (timestamp, timestamp_source) = event_time(
        ["timestamp", "originalTimestamp", "receivedAt"].iter().filter_map(|k| obj.get(*k).map(|v| (*k, v))),
        input.received_at,
    );
    let idempotency_key = message_id(&obj).or_else(|| webhook_id(input));

    Ok(NormalizedEvent {
        event_type,
        name,
        user_id,
        anonymous_id,
        data: Value::Object(data),
        event: Value::Object(obj),
        timestamp,
        timestamp_source,
        idempotency_key,
        group_id,
        previous_id,
        unsupported: !supported,
    })
}

fn normalize_templated(input: &NormalizeInput<'_>, obj: Map<String, Value>) -> Result<NormalizedEvent, ItemError> {
    let paths = &input.settings.paths;
    let body = Value::Object(obj);
    let at = |path: Option<&str>| -> Option<&Value> { path.and_then(|p| lookup(p, &body, input.headers)) };

    let event_type = match (&paths.fixed_type, paths.event_type.as_deref()) {
        (Some(fixed), _) => fixed.clone(),
        (None, Some(p)) => match at(Some(p)).and_then(scalar_string) {
            Some(t) if !t.is_empty() => t,
            _ => return Err(ItemErrorCode::MissingType.with(format!("no event type at `{p}`"))),
        },
        (None, None) => return Err(ItemErrorCode::MissingType.with("the source has neither a fixed type nor a type path")),
    };
    let name = at(paths.event_name.as_deref()).and_then(scalar_string).filter(|s| !s.is_empty());
    let user_id = match at(paths.user_id.as_deref()) {
        None => None,
        Some(v) => id_value(v).map_err(|why| {
            ItemErrorCode::InvalidUserId.with(format!("`{}` {why}", paths.user_id.as_deref().unwrap_or("")))
        })?,
    };
    let data_path = paths.data.as_deref().unwrap_or("body");
    let mut data = object_or_empty(at(Some(data_path)));
    // A row's user id column is the id, not a property: it is not repeated in `data`.
    // (Webhook payloads keep their shape: `data.customer.id` stays where the sender put it.)
    if let (Some(_), Some(id_path), true) =
        (&user_id, paths.user_id.as_deref(), matches!(input.template, Template::Hightouch | Template::Census))
    {
        remove_column(&mut data, data_path, id_path);
    }
    let (timestamp, timestamp_source) =
        event_time(paths.timestamp.as_deref().and_then(|p| at(Some(p)).map(|v| (p, v))), input.received_at);
    let idempotency_key = at(paths.idempotency_key.as_deref())
        .and_then(scalar_string)
        .and_then(key_if_valid)
        .or_else(|| webhook_id(input));

    Ok(NormalizedEvent {
        event_type,
        name,
        user_id,
        anonymous_id: None,
        data: Value::Object(data),
        event: body,
        timestamp,
        timestamp_source,
        idempotency_key,
        group_id: None,
        previous_id: None,
        unsupported: false,
    })
}

/// `body.x.y` or `headers.name` (header names are lower-cased, as stored).
fn lookup<'a>(path: &str, body: &'a Value, headers: &'a Map<String, Value>) -> Option<&'a Value> {
    let mut segs = path.split('.');
    match segs.next()? {
        "body" => resolve(body, segs),
        "headers" => {
            let name: Vec<&str> = segs.collect();
            headers.get(&name.join(".").to_ascii_lowercase())
        }
        _ => None,
    }
}

/// Merge batch-level `context`/`integrations` into the item, one level down; the item wins.
fn merge_batch_level(obj: &mut Map<String, Value>, key: &str, batch: Option<&RawValue>) {
    let Some(batch) = batch else { return };
    let Ok(Value::Object(batch)) = serde_json::from_str::<Value>(batch.get()) else { return };
    match obj.get_mut(key) {
        Some(Value::Object(own)) => {
            for (k, v) in batch {
                own.entry(k).or_insert(v);
            }
        }
        None | Some(Value::Null) => {
            obj.insert(key.to_string(), Value::Object(batch));
        }
        Some(_) => {} // the item's own (odd) value wins
    }
}

/// `traits`, else `context.traits` without the identity echoes RudderStack puts there.
fn traits(obj: &Map<String, Value>, user_id: Option<&str>) -> Map<String, Value> {
    match obj.get("traits") {
        Some(Value::Null) | None => {}
        Some(v) => return object_or_empty(Some(v)),
    }
    let Some(Value::Object(ctx)) = obj.get("context").and_then(|c| c.get("traits")) else {
        return Map::new();
    };
    let mut t = ctx.clone();
    t.shift_remove("anonymousId");
    for k in ["id", "userId"] {
        let same = t.get(k).is_some_and(|v| id_value(v).ok().flatten().as_deref() == user_id && user_id.is_some());
        if same {
            t.shift_remove(k);
        }
    }
    t
}

/// A string (trimmed; empty = missing) or a JSON integer written with digits only, kept
/// digit for digit. Anything else is refused with the reason.
pub fn id_value(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_string()))
        }
        Value::Number(n) => {
            let lexeme = n.to_string();
            if !lexeme.is_empty() && lexeme.bytes().all(|b| b.is_ascii_digit()) {
                Ok(Some(lexeme))
            } else {
                Err(format!("must be a string or a whole non-negative number written with digits only, found {lexeme}"))
            }
        }
        other => Err(format!("must be a string or a number, found {}", kind(other))),
    }
}

/// The first candidate (field name or configured path, value) that parses, and where the time
/// came from: that name, or `ingestion` (the receiving clock) when none parses.
fn event_time<'a>(candidates: impl IntoIterator<Item = (&'a str, &'a Value)>, received_at: i64) -> (String, Option<String>) {
    match candidates.into_iter().find_map(|(from, v)| timestamp::parse(v).map(|ms| (from, ms))) {
        Some((from, ms)) => (timestamp::format_ms(ms), Some(from.to_string())),
        None => (timestamp::format_ms(received_at), Some(INGESTION.to_string())),
    }
}

/// `timestamp_source` when no event time parses.
pub const INGESTION: &str = "ingestion";

/// Remove the column `id_path` names from `data`, the row at `data_path`, when it is one of
/// the row's own columns (`body.user_id` of `body`, `body.row.id` of `body.row`).
fn remove_column(data: &mut Map<String, Value>, data_path: &str, id_path: &str) {
    match id_path.strip_prefix(data_path).and_then(|r| r.strip_prefix('.')) {
        Some(column) if !column.contains('.') => {
            data.shift_remove(column);
        }
        _ => {}
    }
}

fn message_id(obj: &Map<String, Value>) -> Option<String> {
    obj.get("messageId").and_then(Value::as_str).and_then(|s| key_if_valid(s.to_string()))
}

fn key_if_valid(s: String) -> Option<String> {
    let n = s.chars().count();
    (1..=MAX_KEY_CHARS).contains(&n).then_some(s)
}

fn webhook_id(input: &NormalizeInput<'_>) -> Option<String> {
    if input.settings.verification.scheme != VerificationScheme::StandardWebhooks {
        return None;
    }
    input
        .headers
        .get("webhook-id")
        .or_else(|| input.headers.get("svix-id"))
        .and_then(Value::as_str)
        .and_then(|s| key_if_valid(s.to_string()))
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn object_or_empty(v: Option<&Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
