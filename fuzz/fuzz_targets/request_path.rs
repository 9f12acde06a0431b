//! The whole request path of the source layer: headers + body → decode → verify → split →
//! normalize every item. Any input must give a typed answer; a panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_model::{Template, VerificationScheme};
use tributary_sources::templates::default_settings;
use tributary_sources::{process, Incoming};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let template = Template::ALL[(ctl & 7) as usize % 5];
    let mut settings = default_settings(template, "s", "development", "t".into());
    // bit 3: paths for templated sources; bits 4-5: a verification scheme
    if ctl & 8 != 0 {
        settings.paths.array = Some("body.rows".into());
        settings.paths.user_id = Some("body.user.id".into());
        settings.paths.idempotency_key = Some("headers.x-id".into());
    }
    settings.verification.scheme = match (ctl >> 4) & 3 {
        0 => VerificationScheme::None,
        1 => VerificationScheme::SegmentSignature,
        2 => VerificationScheme::StandardWebhooks,
        _ => VerificationScheme::SharedSecretHeader,
    };
    settings.verification.secrets = vec!["whsec_c2VjcmV0LXNlY3JldA==".into()];
    // the first line of the rest (up to a newline) is a header block "k:v;k:v", the remainder the body
    let split = rest.iter().position(|b| *b == b'\n').unwrap_or(0);
    let (hdr, body) = rest.split_at(split);
    let headers: Vec<(String, String)> = String::from_utf8_lossy(hdr)
        .split(';')
        .filter_map(|kv| kv.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut headers = headers;
    if ctl & 64 != 0 {
        headers.push(("content-encoding".into(), "gzip".into()));
    }
    let implied_type = if ctl & 128 != 0 { Some("track") } else { None };
    if let Ok(p) = process(&Incoming { template, settings: &settings, headers: &headers, body, max_body: 1 << 20, now_ms: 1_719_826_300_000, implied_type }) {
        let _ = p.status();
    }
});
