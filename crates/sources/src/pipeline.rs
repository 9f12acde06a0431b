//! One request, all the way through the source layer: decode, verify, split, normalize each
//! item. The gateway, `tributary normalize`, rehearse, the property tests and the fuzz target
//! all call this, so they cannot drift apart.

use crate::error::RequestError;
use crate::normalize::{normalize_item, screen_item, NormalizeInput, Screened};
use crate::request::{decode_body, keepable_headers, parse_request, split_body, status_for, Request, Shape};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tributary_model::{EnvironmentSettings, ItemError, NormalizedEvent, Template};

/// What the request says beyond its body.
pub struct Incoming<'a> {
    pub template: Template,
    pub settings: &'a EnvironmentSettings,
    /// Lower-case names.
    pub headers: &'a [(String, String)],
    /// As received (possibly gzip).
    pub body: &'a [u8],
    pub max_body: usize,
    /// The receiving clock (ms): signature tolerance, ingestion time.
    pub now_ms: i64,
    /// Tracking-API single calls: the type the path implies.
    pub implied_type: Option<&'a str>,
}

/// One item, as sent, and what normalization (or screening, `T = Screened`) made of it.
pub struct ProcessedItem<T = NormalizedEvent> {
    pub index: u32,
    pub raw: Box<RawValue>,
    pub outcome: Result<T, ItemError>,
}

pub struct Processed<T = NormalizedEvent> {
    pub shape: Shape,
    pub verification: &'static str,
    pub batch_context: Option<Box<RawValue>>,
    pub batch_integrations: Option<Box<RawValue>>,
    /// Headers worth keeping with each item (credentials removed).
    pub headers: Map<String, Value>,
    pub items: Vec<ProcessedItem<T>>,
}

impl<T> Processed<T> {
    pub fn rejected(&self) -> usize {
        self.items.iter().filter(|i| i.outcome.is_err()).count()
    }

    /// The status the gateway answers once every item is stored.
    pub fn status(&self) -> u16 {
        status_for(self.shape, self.rejected())
    }
}

pub fn process(inc: &Incoming<'_>) -> Result<Processed, RequestError> {
    process_with(inc, |raw| raw)
}

/// The same, with a chance to rewrite each item's bytes before it is normalized and kept.
pub fn process_with(inc: &Incoming<'_>, rewrite: impl FnMut(Box<RawValue>) -> Box<RawValue>) -> Result<Processed, RequestError> {
    run(inc, Check::Signature, rewrite, normalize_item)
}

/// Who vouches for the sender of a body.
#[derive(Clone, Copy)]
enum Check {
    /// The environment's verification scheme, on the request's headers and body (HTTP).
    Signature,
    /// The transport did (the Kafka ingest topic: the broker's ACLs decide who may produce);
    /// the status to record.
    Vouched(&'static str),
}

/// What the gateway runs: the request checks, and each item screened ([`screen_item`]: the
/// refusals of normalization, without building the normalized event, which the translator
/// does). `rewrite` lets the gateway remove a write key from single tracking-API calls.
pub fn screen_with(
    inc: &Incoming<'_>,
    rewrite: impl FnMut(Box<RawValue>) -> Box<RawValue>,
) -> Result<Processed<Screened>, RequestError> {
    run(inc, Check::Signature, rewrite, screen_item)
}

/// [`screen_with`] for input whose transport vouched for its sender: no signature is checked
/// (a source's verification scheme is an HTTP matter), and `verification` is recorded as the
/// items' status. The Kafka ingest stage runs this.
pub fn screen_vouched(inc: &Incoming<'_>, verification: &'static str) -> Result<Processed<Screened>, RequestError> {
    run(inc, Check::Vouched(verification), |raw| raw, screen_item)
}

fn run<T>(
    inc: &Incoming<'_>,
    check: Check,
    mut rewrite: impl FnMut(Box<RawValue>) -> Box<RawValue>,
    per_item: impl Fn(&NormalizeInput<'_>) -> Result<T, ItemError>,
) -> Result<Processed<T>, RequestError> {
    let encoding = inc.headers.iter().find(|(k, _)| k == "content-encoding").map(|(_, v)| v.as_str());
    let decoded = decode_body(encoding, inc.body, inc.max_body)?;
    let env = match check {
        Check::Signature => {
            parse_request(inc.template, inc.settings, &Request { headers: inc.headers, body: &decoded }, inc.now_ms / 1000)?
        }
        Check::Vouched(status) => split_body(inc.template, inc.settings, &decoded, status)?,
    };
    let headers = keepable_headers(inc.settings, inc.headers);
    let mut items = Vec::with_capacity(env.items.len());
    for item in env.items {
        let raw = rewrite(item.raw);
        let outcome = per_item(&NormalizeInput {
            template: inc.template,
            settings: inc.settings,
            item: &raw,
            batch_context: env.batch_context.as_deref(),
            batch_integrations: env.batch_integrations.as_deref(),
            headers: &headers,
            implied_type: inc.implied_type,
            received_at: inc.now_ms,
            rpc: false,
        });
        items.push(ProcessedItem { index: item.index, raw, outcome });
    }
    Ok(Processed {
        shape: env.shape,
        verification: env.verification,
        batch_context: env.batch_context,
        batch_integrations: env.batch_integrations,
        headers,
        items,
    })
}
