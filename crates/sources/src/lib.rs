//! The source layer: everything Tributary knows about what senders put on the wire, as pure
//! functions (no I/O, no clock: the caller passes "now").
//!
//! - [`request`]: a whole HTTP request → verified, decoded, split into items ([`Envelope`]).
//! - [`normalize`]: one item → the common format ([`NormalizedEvent`]) or a typed refusal.
//! - [`verify`]: signature schemes (Segment `X-Signature`, Standard Webhooks, shared secrets).
//! - [`identify`]: traits → user fields, and the deep merge of user properties.
//! - [`templates`]: the defaults a new source gets per template.
//! - [`raw`]: screened items → the raw topic's records (gateway and Kafka ingest alike).
//! - [`format`]: CDP rules or row paths (Hightouch and Census send both).
//! - [`answer`]: how each template's sender is answered when a verified request is unusable.
//!
//! The gateway uses `request` (and `normalize`, to key and count); the translator uses
//! `normalize`; `tributary normalize` runs both exactly as they do.
//!
//! [`NormalizedEvent`]: tributary_model::NormalizedEvent

pub mod answer;
pub mod error;
pub mod format;
pub mod identify;
pub mod normalize;

pub mod pipeline;
pub mod raw;
pub mod request;
pub mod rpc;
pub mod templates;
pub mod timestamp;
pub mod verify;

pub use error::{ItemErrorCode, RequestError};
pub use normalize::{normalize_item, screen_item, NormalizeInput, Screened};
pub use pipeline::{process, process_with, screen_vouched, screen_with, Incoming, Processed, ProcessedItem};
pub use raw::{raw_records, record_headers, records_of, refused_record, RawRecord, RawRecords, Receipt};
pub use request::{parse_request, Envelope, Item, Request, Shape};
