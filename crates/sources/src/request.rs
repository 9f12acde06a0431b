//! A whole request: decode, verify, split into items.
//!
//! Envelopes (normalization contract, section 3):
//! - CDP templates (segment, rudderstack): `{"batch": [...]}` (tracking API; batch-level
//!   `context` and `integrations` travel with each item), a bare array (Segment Webhooks
//!   (Actions) and RudderStack HTTP Webhook batching), or one object.
//! - Rows (http; hightouch and census unless `body_format` is `segment`): the configured array
//!   path (`body.records`), else a bare array, else one object. Hightouch and Census in `auto`
//!   read a `{"batch": [...]}` body as a CDP batch (see [`crate::format`]).
//!
//! Items are kept as the exact bytes the sender sent ([`RawValue`]); nothing is re-serialized.
//! Duplicate keys in an object: the last one wins, as in JavaScript's `JSON.parse`.

use crate::error::RequestError;
use crate::format::{self, Reading};
use crate::verify::{self, Headers};
use flate2::read::GzDecoder;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::io::Read;
use tributary_model::{EnvironmentSettings, Template};

/// A request as the gateway received it. Header names are lower-case.
pub struct Request<'a> {
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// How the items were packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One event: a refusal of it refuses the request (400).
    Single,
    /// `{"batch": [...]}`, a bare array, or rows under an array path.
    Batch,
}

/// One item of a request.
#[derive(Debug)]
pub struct Item {
    pub index: u32,
    pub raw: Box<RawValue>,
}

/// A verified request, split into items.
#[derive(Debug)]
pub struct Envelope {
    pub shape: Shape,
    pub items: Vec<Item>,
    pub batch_context: Option<Box<RawValue>>,
    pub batch_integrations: Option<Box<RawValue>>,
    /// `verified` or `unverified` (scheme `none`).
    pub verification: &'static str,
}

/// Undo `Content-Encoding`, refusing more than `limit` decoded bytes (a gzip bomb is cut off
/// at the limit, not inflated into memory).
pub fn decode_body<'a>(
    encoding: Option<&str>,
    body: &'a [u8],
    limit: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, RequestError> {
    if body.len() > limit {
        return Err(RequestError::PayloadTooLarge { limit });
    }
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(std::borrow::Cow::Borrowed(body)),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
            let mut reader = GzDecoder::new(body).take(limit as u64 + 1);
            reader.read_to_end(&mut out).map_err(|e| RequestError::InvalidGzip(e.to_string()))?;
            if out.len() > limit {
                return Err(RequestError::PayloadTooLarge { limit });
            }
            Ok(std::borrow::Cow::Owned(out))
        }
        Some(other) => Err(RequestError::UnsupportedEncoding(other.to_string())),
    }
}

/// Verify and split a decoded body.
pub fn parse_request(
    template: Template,
    settings: &EnvironmentSettings,
    req: &Request<'_>,
    now_secs: i64,
) -> Result<Envelope, RequestError> {
    let verification = verify::verify(&settings.verification, req.headers, req.body, now_secs)?;
    split_body(template, settings, req.body, verification)
}

/// Split a decoded body that needs no verification here (its transport vouched for the
/// sender), recording `verification` as its status.
pub fn split_body(
    template: Template,
    settings: &EnvironmentSettings,
    body: &[u8],
    verification: &'static str,
) -> Result<Envelope, RequestError> {
    let text = std::str::from_utf8(body).map_err(|e| RequestError::InvalidJson(format!("not UTF-8: {e}")))?;
    if nests_deeper_than(text, MAX_DEPTH) {
        return Err(RequestError::TooDeep(MAX_DEPTH));
    }
    let whole: Box<RawValue> = serde_json::from_str(text).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    let mut env = Envelope { shape: Shape::Single, items: Vec::new(), batch_context: None, batch_integrations: None, verification };
    let reading = format::reading(template, settings);
    // Auto (Hightouch, Census): a `{"batch": [...]}` body is a Segment batch (Hightouch
    // Events' collection API), whatever row path is configured.
    let cdp_envelope = match reading {
        Reading::Cdp => true,
        Reading::Rows => false,
        Reading::Auto => has_batch_array(&whole),
    };
    let array_path = if cdp_envelope { None } else { settings.paths.array.as_deref() };
    if let Some(path) = array_path {
        env.shape = Shape::Batch;
        env.items = number(rows_at(&whole, path)?);
        return Ok(env);
    }
    let reads_batch = reading != Reading::Rows;
    match first_byte(whole.get()) {
        b'[' => {
            env.shape = Shape::Batch;
            env.items = number(as_array(&whole).ok_or_else(|| RequestError::InvalidJson("bad array".into()))?);
        }
        b'{' => {
            // Only three keys matter at the top level: read them borrowed, skipping the rest
            // without building anything (the common single-event case allocates nothing
            // here). Duplicate keys make serde refuse; then the map path below decides, with
            // the last key winning.
            let top = if reads_batch { serde_json::from_str::<TopLevel<'_>>(whole.get()).ok() } else { None };
            let (batch, context, integrations) = match &top {
                Some(t) => (t.batch.map(own), t.context.map(own), t.integrations.map(own)),
                // rows have no batch envelope of their own
                None if !reads_batch => (None, None, None),
                None => {
                    let mut obj: HashMap<String, Box<RawValue>> =
                        serde_json::from_str(whole.get()).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
                    (obj.remove("batch"), obj.remove("context"), obj.remove("integrations"))
                }
            };
            match batch.as_deref().map(|b| (b, first_byte(b.get()))) {
                Some((b, b'[')) => {
                    env.shape = Shape::Batch;
                    env.items = number(as_array(b).ok_or_else(|| RequestError::InvalidJson("bad batch".into()))?);
                    env.batch_context = context.filter(|c| first_byte(c.get()) == b'{');
                    env.batch_integrations = integrations.filter(|c| first_byte(c.get()) == b'{');
                }
                // `batch` absent or not an array: the object is one event like any other.
                _ => env.items = vec![Item { index: 0, raw: whole }],
            }
        }
        _ => return Err(RequestError::InvalidEnvelope(kind_of(whole.get()))),
    }
    Ok(env)
}

/// Does the body have a top-level `batch` array? (Duplicate keys: no; the map path decides.)
fn has_batch_array(whole: &RawValue) -> bool {
    first_byte(whole.get()) == b'{'
        && serde_json::from_str::<TopLevel<'_>>(whole.get())
            .ok()
            .and_then(|t| t.batch)
            .is_some_and(|b| first_byte(b.get()) == b'[')
}

/// Deepest nesting of arrays and objects accepted. Items pass the gateway as raw text (serde_json
/// skips over them without a depth limit), but the stages parse each one, wrapped in its record,
/// with serde_json's limit of 128: an item deeper than that would be accepted here and fail
/// there. 100 leaves room for the wrapping and refuses it at the door instead.
pub const MAX_DEPTH: usize = 100;

/// Whether `text` nests arrays and objects more than `limit` deep (brackets in strings aside).
/// One pass over the bytes, no allocation.
fn nests_deeper_than(text: &str, limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[derive(serde::Deserialize)]
struct TopLevel<'a> {
    #[serde(borrow, default)]
    batch: Option<&'a RawValue>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    integrations: Option<&'a RawValue>,
}

fn own(r: &RawValue) -> Box<RawValue> {
    r.to_owned()
}

fn number(raws: Vec<Box<RawValue>>) -> Vec<Item> {
    raws.into_iter().enumerate().map(|(i, raw)| Item { index: i as u32, raw }).collect()
}

fn as_array(raw: &RawValue) -> Option<Vec<Box<RawValue>>> {
    serde_json::from_str(raw.get()).ok()
}

/// Follow `body.a.b` through nested objects to an array of rows.
fn rows_at(whole: &RawValue, path: &str) -> Result<Vec<Box<RawValue>>, RequestError> {
    let bad = || RequestError::InvalidArrayPath(path.to_string());
    let mut segs = path.split('.');
    if segs.next() != Some("body") {
        return Err(bad());
    }
    let mut cur: Box<RawValue> = RawValue::from_string(whole.get().to_string()).map_err(|_| bad())?;
    for seg in segs {
        let mut obj: HashMap<String, Box<RawValue>> = serde_json::from_str(cur.get()).map_err(|_| bad())?;
        cur = obj.remove(seg).ok_or_else(bad)?;
    }
    as_array(&cur).ok_or_else(bad)
}

fn first_byte(s: &str) -> u8 {
    s.bytes().find(|b| !b.is_ascii_whitespace()).unwrap_or(b' ')
}

fn kind_of(s: &str) -> &'static str {
    match first_byte(s) {
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

/// The headers worth keeping with an event (for `headers.*` paths and `webhook-id`): all of
/// them, lower-cased, except those that carry credentials under this source's scheme.
pub fn keepable_headers(settings: &EnvironmentSettings, headers: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    let secret = verify::credential_headers(&settings.verification);
    headers
        .iter()
        .filter(|(k, _)| !secret.iter().any(|s| s == k) && k != "cookie")
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect()
}

/// Look up a header in a request's header list (names lower-case).
pub fn header<'a>(headers: &'a [(String, String)], lower_name: &str) -> Option<&'a str> {
    Headers::get(headers, lower_name)
}

/// The status the gateway answers once every item is durably stored: 400 when the request was
/// one event and it was refused; 200 when some items of a batch were refused (the body counts
/// them); 202 when everything was accepted (also for an empty batch).
pub fn status_for(shape: Shape, rejected: usize) -> u16 {
    match (shape, rejected) {
        (Shape::Single, r) if r > 0 => 400,
        (_, 0) => 202,
        _ => 200,
    }
}

#[cfg(test)]
mod depth_tests {
    use super::nests_deeper_than;

    #[test]
    fn depth_counts_brackets_outside_strings() {
        let at = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!nests_deeper_than(&at(100), 100));
        assert!(nests_deeper_than(&at(101), 100));
        assert!(nests_deeper_than(&at(10_000), 100));
        // brackets inside strings, escaped quotes included, do not count
        let s = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(!nests_deeper_than(&s, 2));
        assert!(nests_deeper_than(r#"{"a":{"b":[1]}}"#, 2));
    }
}
