//! Property tests over the whole request path of the source layer.

use proptest::prelude::*;
use serde_json::Value;
use tributary_model::{Template, VerificationScheme};
use tributary_sources::request::{decode_body, parse_request, Request};
use tributary_sources::{process, screen_with, Incoming};
use tributary_sources::templates::default_settings;

const TEMPLATES: [Template; 5] = Template::ALL;

/// Everything the gateway and translator do with a request; returns the lines `normalize` would
/// print (so "deterministic" compares all of it).
fn pipeline(template: Template, headers: &[(String, String)], body: &[u8], now: i64) -> Vec<String> {
    let mut settings = default_settings(template, "s", "development", "t".into());
    if template == Template::Http {
        settings.paths.user_id = Some("body.user.id".into());
    }
    let processed = process(&Incoming { template, settings: &settings, headers, body, max_body: 1 << 20, now_ms: now * 1000, implied_type: None });
    let p = match processed {
        Ok(p) => p,
        Err(e) => {
            assert!((400..500).contains(&e.status()), "request errors are 4xx: {e:?}");
            return vec![format!("error {}", e.code())];
        }
    };
    p.items
        .iter()
        .map(|item| match &item.outcome {
            Ok(n) => serde_json::to_string(n).unwrap(),
            Err(e) => format!("rejected {} {}", item.index, e.code),
        })
        .collect()
}

fn arb_json(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        "-?[0-9]{1,25}(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,2})?",
        "\"[a-zA-Z0-9 :\\-_.+é]{0,12}\"",
        Just("\"2024-07-01T09:30:00.123+02:00\"".to_string()),
        Just("\"track\"".to_string()),
        Just("\"identify\"".to_string()),
        Just("\"page\"".to_string()),
        Just("\"Screen\"".to_string()),
        Just("\"group\"".to_string()),
        Just("\"alias\"".to_string()),
        Just("\"\"".to_string()),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let keys = prop_oneof![
        Just("type"), Just("event"), Just("userId"), Just("anonymousId"), Just("properties"), Just("traits"),
        Just("context"), Just("timestamp"), Just("messageId"), Just("batch"), Just("name"), Just("groupId"),
        Just("previousId"), Just("originalTimestamp"), Just("data"), Just("user"), Just("id"), Just("x"),
    ];
    prop_oneof![
        3 => leaf,
        1 => prop::collection::vec(arb_json(depth - 1), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
        2 => prop::collection::vec((keys, arb_json(depth - 1)), 0..6).prop_map(|kv| {
            let parts: Vec<String> = kv.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", parts.join(","))
        }),
    ]
    .boxed()
}

/// CDP-shaped items (one, or a batch): the fields that decide a refusal, with values of every
/// kind, valid and not, and now and then a duplicate key.
fn arb_cdp_item() -> BoxedStrategy<String> {
    const KEYS: [&str; 9] = ["type", "event", "userId", "anonymousId", "groupId", "previousId", "name", "properties", "context"];
    let value = prop_oneof![
        Just("\"track\""), Just("\"Track\""), Just("\"page\""), Just("\"group\""), Just("\"alias\""),
        Just("\"identify\""), Just("\"screen\""), Just("\"Order Completed\""), Just("\"\""), Just("\"  \""),
        Just("\"u-1\""), Just("\"\\u0075-2\""), Just("123"), Just("-4"), Just("1.5"), Just("1e3"), Just("true"),
        Just("null"), Just("{}"), Just("[]"), Just("{\"name\":\"Home\"}"),
        Just("12345678901234567890123456789"),
    ];
    let values = prop::collection::vec(value, KEYS.len());
    // each key at most once (the fast path), and 1 time in 8 a repeated key (the fallback)
    (prop::sample::subsequence(KEYS.to_vec(), 0..=KEYS.len()), values, 0usize..8, 0usize..KEYS.len())
        .prop_map(|(keys, values, dup, d)| {
            let mut parts: Vec<String> = keys.iter().zip(&values).map(|(k, v)| format!("\"{k}\":{v}")).collect();
            if dup == 0 {
                parts.push(format!("\"{}\":{}", KEYS[d], values[(d + 1) % KEYS.len()]));
            }
            format!("{{{}}}", parts.join(","))
        })
        .boxed()
}

fn arb_cdp_body() -> BoxedStrategy<String> {
    prop_oneof![
        arb_cdp_item(),
        prop::collection::vec(arb_cdp_item(), 0..5).prop_map(|v| format!("{{\"batch\":[{}]}}", v.join(","))),
        prop::collection::vec(arb_cdp_item(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The gateway's screening refuses exactly what normalization refuses (same code and
    /// message) and keys accepted items by the same identity.
    #[test]
    fn screening_agrees_with_normalization(body in prop_oneof![arb_json(4), arb_cdp_body()], t in 0usize..5, implied in 0usize..8) {
        let template = TEMPLATES[t];
        let implied = [None, Some("track"), Some("page"), Some("screen"), Some("identify"), Some("group"), Some("alias"), Some("x")][implied];
        let settings = default_settings(template, "s", "development", "t".into());
        let inc = Incoming { template, settings: &settings, headers: &[], body: body.as_bytes(), max_body: 1 << 20, now_ms: 1_700_000_000_000, implied_type: implied };
        match (process(&inc), screen_with(&inc, |r| r)) {
            (Ok(full), Ok(screened)) => {
                prop_assert_eq!(full.items.len(), screened.items.len());
                for (f, s) in full.items.iter().zip(&screened.items) {
                    match (&f.outcome, &s.outcome) {
                        (Ok(n), Ok(id)) => {
                            prop_assert_eq!(&n.user_id, &id.user_id);
                            prop_assert_eq!(&n.anonymous_id, &id.anonymous_id);
                        }
                        (Err(a), Err(b)) => prop_assert_eq!(a, b),
                        (a, b) => prop_assert!(false, "item {}: normalize {:?} vs screen {:?}", f.index, a.as_ref().err(), b.as_ref().err()),
                    }
                }
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.code(), b.code()),
            (a, b) => prop_assert!(false, "request: {:?} vs {:?}", a.err().map(|e| e.code()), b.err().map(|e| e.code())),
        }
    }

    /// Arbitrary bytes: a typed answer, never a panic.
    #[test]
    fn any_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..400), t in 0usize..5, gz in any::<bool>()) {
        let headers = if gz { vec![("content-encoding".to_string(), "gzip".to_string())] } else { vec![] };
        let _ = pipeline(TEMPLATES[t], &headers, &body, 1_719_826_300);
    }

    /// JSON-shaped input of every envelope: typed answers, the same every time.
    #[test]
    fn json_inputs_are_deterministic(body in arb_json(4), t in 0usize..5) {
        let a = pipeline(TEMPLATES[t], &[], body.as_bytes(), 1_719_826_300);
        let b = pipeline(TEMPLATES[t], &[], body.as_bytes(), 1_719_826_300);
        prop_assert_eq!(a, b);
    }

    /// Integer user ids of any length keep every digit; data numbers keep their lexeme.
    #[test]
    fn numbers_survive_exactly(id in "[1-9][0-9]{0,40}", n in "-?(0|[1-9][0-9]{0,29})\\.[0-9]{1,20}") {
        let body = format!(r#"{{"type":"track","event":"E","userId":{id},"properties":{{"v":{n},"w":[{n}]}}}}"#);
        let lines = pipeline(Template::Segment, &[], body.as_bytes(), 1_719_826_300);
        prop_assert_eq!(lines.len(), 1);
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        prop_assert_eq!(v["user_id"].as_str().unwrap(), id.as_str());
        prop_assert_eq!(v["data"]["v"].to_string(), n.clone());
        prop_assert_eq!(v["data"]["w"][0].to_string(), n);
    }

    /// A batch splits into exactly its elements, in order, each accepted or refused.
    #[test]
    fn batches_keep_every_item_in_order(ids in prop::collection::vec(prop::option::of("[a-z]{1,6}"), 0..20)) {
        let items: Vec<String> = ids.iter().map(|id| match id {
            Some(id) => format!(r#"{{"type":"track","event":"E","userId":"{id}"}}"#),
            None => r#"{"type":"track","event":"E"}"#.to_string(),
        }).collect();
        let body = format!(r#"{{"batch":[{}]}}"#, items.join(","));
        let lines = pipeline(Template::Segment, &[], body.as_bytes(), 1_719_826_300);
        prop_assert_eq!(lines.len(), ids.len());
        for (i, (line, id)) in lines.iter().zip(&ids).enumerate() {
            match id {
                Some(id) => {
                    let v: Value = serde_json::from_str(line).unwrap();
                    prop_assert_eq!(v["user_id"].as_str(), Some(id.as_str()));
                }
                None => prop_assert_eq!(line, &format!("rejected {i} missing_identity")),
            }
        }
    }

    /// Signatures: only the right secret over the right bytes verifies.
    #[test]
    fn segment_signature_binds_body(body in "[a-z]{0,40}", secret in "[a-z]{1,10}", other in "[a-z]{1,10}") {
        let body = format!(r#"{{"type":"track","event":"{body}x","userId":"u"}}"#);
        let mut settings = default_settings(Template::Segment, "s", "d", "t".into());
        settings.verification.scheme = VerificationScheme::SegmentSignature;
        settings.verification.secrets = vec![secret.clone()];
        let sig = tributary_sources::verify::sign_segment(&secret, body.as_bytes());
        let h = vec![("x-signature".to_string(), sig.clone())];
        let req = Request { headers: &h, body: body.as_bytes() };
        let ok = parse_request(Template::Segment, &settings, &req, 0).is_ok();
        prop_assert!(ok);
        if other != secret {
            settings.verification.secrets = vec![other];
            let refused = parse_request(Template::Segment, &settings, &req, 0).is_err();
            prop_assert!(refused);
        }
    }
}

#[test]
fn gzip_bodies_decode_and_bombs_are_cut_off() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let body = br#"{"type":"track","event":"E","userId":"u"}"#;
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body).unwrap();
    let gz = enc.finish().unwrap();
    assert_eq!(decode_body(Some("gzip"), &gz, 1024).unwrap().as_ref(), body);
    // 10 MB of zeros compress to ~10 KB: refused at the limit, not inflated
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![b'0'; 10 << 20]).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 64 * 1024);
    let e = decode_body(Some("gzip"), &bomb, 1 << 20).unwrap_err();
    assert_eq!(e.code(), "payload_too_large");
    assert_eq!(decode_body(Some("br"), body, 1024).unwrap_err().status(), 415);
    assert_eq!(decode_body(Some("gzip"), b"not gzip", 1024).unwrap_err().code(), "invalid_gzip");
    assert_eq!(decode_body(None, &[b'x'; 2000], 1024).unwrap_err().status(), 413);
}

#[test]
fn duplicate_top_level_keys_last_one_wins() {
    let lines = pipeline(Template::Segment, &[], br#"{"batch":"x","batch":[{"type":"track","event":"A","userId":"u"}]}"#, 1_719_826_300);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("\"user_id\":\"u\""), "{lines:?}");
    let lines = pipeline(Template::Segment, &[], br#"{"batch":[{"type":"track","event":"A","userId":"u"}],"batch":null,"type":"track","event":"B","userId":"v"}"#, 1_719_826_300);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("\"user_id\":\"v\""), "{lines:?}");
}


fn hightouch_row_settings() -> tributary_model::EnvironmentSettings {
    default_settings(Template::Hightouch, "ht", "development", "tok".into())
}

proptest! {
    /// A Hightouch/Census row: the user id column is the id, never repeated in `data`, and every
    /// other column is kept; any Segment-spec item in the same source is read by the CDP rules
    /// exactly as a Segment source reads it.
    #[test]
    fn rows_drop_only_the_id_column_and_spec_items_read_as_cdp(
        cols in prop::collection::btree_map("[a-z]{1,6}", "[a-z0-9]{0,5}", 0..6),
        id in "[a-z0-9]{1,8}",
        item in arb_cdp_item(),
    ) {
        let s = hightouch_row_settings();
        let mut row: serde_json::Map<String, Value> = cols.into_iter().filter(|(k, _)| k != "type").map(|(k, v)| (k, Value::String(v))).collect();
        row.insert("user_id".into(), Value::String(id.clone()));
        let body = Value::Object(row.clone()).to_string();
        let inc = Incoming { template: Template::Hightouch, settings: &s, headers: &[], body: body.as_bytes(), max_body: 1 << 20, now_ms: 0, implied_type: None };
        let p = process(&inc).unwrap();
        let n = p.items[0].outcome.as_ref().unwrap();
        prop_assert_eq!(n.user_id.as_deref(), Some(id.as_str()));
        row.shift_remove("user_id");
        prop_assert_eq!(&n.data, &Value::Object(row));

        // a spec item: hightouch (auto) and segment agree on everything the CDP rules decide
        let seg = default_settings(Template::Segment, "seg", "development", "tok".into());
        let run = |t: Template, s: &tributary_model::EnvironmentSettings| {
            let inc = Incoming { template: t, settings: s, headers: &[], body: item.as_bytes(), max_body: 1 << 20, now_ms: 0, implied_type: None };
            process(&inc).map(|p| p.items.into_iter().map(|i| i.outcome.map(|n| (n.event_type, n.user_id, n.data, n.timestamp_source))).collect::<Vec<_>>())
        };
        let is_spec = serde_json::from_str::<Value>(&item).ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_lowercase))
            .is_some_and(|t| ["identify", "track", "page", "screen", "group", "alias"].contains(&t.as_str()));
        if is_spec {
            prop_assert_eq!(run(Template::Hightouch, &s), run(Template::Segment, &seg));
        }
    }
}
