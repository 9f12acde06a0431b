//! The gateway against a real Kafka: every status code, the tracking API, gzip, HTTP/2,
//! metrics, and a Kafka outage (503 + Retry-After, then recovery, nothing accepted lost), for
//! the receive URL and the JSON-RPC endpoint.

use serde_json::{json, Value};
use std::io::Write;
use std::process::Command;
use std::time::Duration;
use tributary_tests::{read_topic, read_topic_from, Cluster, PrivateKafka};

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_status_code_with_a_real_kafka() {
    let mut c = Cluster::new();
    c.set_env("TRIBUTARY_GATEWAY_MAX_BODY_BYTES", "4096");
    c.migrate();
    c.start("admin");
    c.start("gateway");
    let (_, token) = c.create_source("seg", "segment");
    let path = format!("/integrations/receive/{token}");
    let one = br#"{"type":"track","event":"A","userId":"u1","messageId":"m1"}"#;

    // 202: durably in Kafka
    let (s, v, _) = c.gateway("POST", &path, &[], one);
    assert_eq!((s, v["accepted"].clone(), v["rejected"].clone()), (202, json!(1), json!(0)), "{v}");
    // text/plain (analytics.js) and a charset
    let (s, _, _) = c.gateway("POST", &path, &[("content-type", "text/plain;charset=UTF-8")], one);
    assert_eq!(s, 202);
    // gzip
    let (s, v, _) = c.gateway("POST", &path, &[("content-encoding", "gzip")], &gzip(one));
    assert_eq!(s, 202, "{v}");
    // 200 with counts: a batch with a refused item
    let batch = br#"{"batch":[{"type":"track","event":"A","userId":"u1"},{"type":"track","userId":"u2"}]}"#;
    let (s, v, _) = c.gateway("POST", &path, &[], batch);
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["accepted"].clone(), v["rejected"].clone()), (json!(1), json!(1)));
    assert_eq!(v["errors"][0]["code"], "missing_event");
    assert_eq!(v["errors"][0]["index"], 1);
    // 202 for an empty batch
    assert_eq!(c.gateway("POST", &path, &[], br#"{"batch":[]}"#).0, 202);

    // 404 unknown token
    let (s, v, _) = c.gateway("POST", "/integrations/receive/tok_nope", &[], one);
    assert_eq!((s, code(&v)), (404, "unknown_token"));
    // 400 unparseable, 400 a single invalid event
    let (s, v, _) = c.gateway("POST", &path, &[], b"{not json");
    assert_eq!((s, code(&v)), (400, "invalid_json"));
    let (s, v, _) = c.gateway("POST", &path, &[], br#"{"type":"track","userId":"u"}"#);
    assert_eq!((s, code(&v)), (400, "missing_event"));
    assert!(v["error"]["message"].as_str().unwrap().contains("event"));
    // 413 over the limit, raw and after decompression (a gzip bomb)
    let big = format!(r#"{{"type":"track","event":"A","userId":"u","properties":{{"p":"{}"}}}}"#, "x".repeat(5000));
    let (s, v, _) = c.gateway("POST", &path, &[], big.as_bytes());
    assert_eq!((s, code(&v)), (413, "payload_too_large"));
    let (s, v, _) = c.gateway("POST", &path, &[("content-encoding", "gzip")], &gzip(big.as_bytes()));
    assert_eq!((s, code(&v)), (413, "payload_too_large"));
    // 415 unsupported encoding
    let (s, v, _) = c.gateway("POST", &path, &[("content-encoding", "br")], one);
    assert_eq!((s, code(&v)), (415, "unsupported_encoding"));

    // 401: the environment now requires a shared secret header
    c.admin_ok(
        "PATCH",
        "/v1/sources/seg/environments/development",
        Some(&json!({"verification": {"scheme": "shared_secret_header", "header": "x-seg-secret", "secrets": ["s3cret-1"]}})),
    );
    let (s, v, _) = c.gateway("POST", &path, &[], one);
    assert_eq!((s, code(&v)), (401, "missing_signature"));
    let (s, v, _) = c.gateway("POST", &path, &[("x-seg-secret", "wrong")], one);
    assert_eq!((s, code(&v)), (401, "signature_mismatch"));
    let (s, _, _) = c.gateway("POST", &path, &[("x-seg-secret", "s3cret-1")], one);
    assert_eq!(s, 202);
    c.admin_ok("PATCH", "/v1/sources/seg/environments/development", Some(&json!({"verification": {"scheme": "none", "secrets": []}})));

    // Segment tracking API: Basic auth with the token as write key, or writeKey in the body.
    // It answers as Segment's API does, 200 `{"success": true}` (classic SDKs resend on 202).
    let basic = format!("Basic {}", base64_encode(&format!("{token}:")));
    let (s, v, _) = c.gateway("POST", "/v1/t", &[("authorization", &basic)], br#"{"event":"Tracked","userId":"u9"}"#);
    assert_eq!((s, v["success"].clone(), v["accepted"].clone()), (200, json!(true), json!(1)), "{v}");
    let body = format!(r#"{{"writeKey":"{token}","batch":[{{"type":"identify","userId":"u9","traits":{{"a":1}}}}]}}"#);
    let (s, v, _) = c.gateway("POST", "/v1/batch", &[], body.as_bytes());
    assert_eq!((s, v["success"].clone()), (200, json!(true)), "{v}");
    let body = format!(r#"{{"writeKey":"{token}","userId":"u9","traits":{{"b":2}}}}"#);
    assert_eq!(c.gateway("POST", "/v1/identify", &[], body.as_bytes()).0, 200);
    // a refused single call stays a 4xx: Segment's SDKs drop it rather than resend it forever
    let (s, v, _) = c.gateway("POST", "/v1/track", &[("authorization", &basic)], br#"{"userId":"u9"}"#);
    assert_eq!((s, code(&v)), (400, "missing_event"), "{v}");
    let (s, v, _) = c.gateway("POST", "/v1/track", &[], br#"{"event":"E","userId":"u"}"#);
    assert_eq!((s, code(&v)), (401, "missing_write_key"));
    let (s, v, _) = c.gateway("POST", "/v1/nope", &[("authorization", &basic)], one);
    assert_eq!((s, code(&v)), (404, "not_found"));
    // the framework's own answers are in the error shape too
    let (s, v, _) = c.gateway("GET", &path, &[], b"");
    assert_eq!((s, code(&v)), (405, "method_not_allowed"), "{v}");
    let (s, v, _) = c.gateway("POST", "/nowhere", &[], one);
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");

    // HTTP/2 (prior knowledge), through curl
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "--http2-prior-knowledge", "-XPOST"])
        .arg(format!("http://127.0.0.1:{}{path}", c.gateway_port))
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(std::str::from_utf8(one).unwrap())
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 202");

    // What reached Kafka: every item of every 2xx request (refused ones too, for the event
    // log), with credentials stripped and the write key removed from single calls.
    // 6 single events, a batch of 2, the refused single event, 3 tracking-API items and the
    // refused tracking-API call
    let raw = read_topic(&c.topic("raw"), Duration::from_secs(20), 12);
    assert_eq!(raw.len(), 12, "{raw:#?}");
    assert!(raw.iter().all(|(k, _)| k.starts_with("development/")));
    let identify = raw.iter().find(|(_, r)| r["implied_type"] == "identify").expect("the /v1/identify item");
    assert!(!identify.1["item"].as_object().unwrap().contains_key("writeKey"), "{identify:?}");
    assert!(raw.iter().all(|(_, r)| r["headers"].get("x-seg-secret").is_none() && r["headers"].get("authorization").is_none()));

    // metrics
    let (s, m) = tributary_tests::http::request(c.gateway_port, "GET", "/metrics", &[], None);
    assert_eq!(s, 200);
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains(r#"tributary_gateway_requests_total{environment="development",status="202",template="segment"}"#), "{m}");
    assert!(m.contains(r#"tributary_gateway_events_total{code="missing_event",outcome="rejected"}"#));
    assert!(m.contains("tributary_gateway_produce_seconds_bucket"));
    assert!(m.contains("tributary_gateway_producer_queue_depth"));
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The JSON-RPC endpoint during a Kafka outage: a Census `sync_batch` is answered 503 +
/// Retry-After with a JSON-RPC error object (Census retries the batch), not a 200 whose
/// record_results would claim rows that were never stored. Once Kafka is back the same call
/// succeeds, and each row is acted on once even if a refused attempt's records reached Kafka
/// late (they are the same rows: the idempotency key of the sync run deduplicates them).
#[tokio::test(flavor = "multi_thread")]
async fn rpc_sync_batch_while_kafka_is_down_answers_503_then_succeeds_and_acts_once() {
    const SECRET: &str = "census-outage-secret";
    let kafka = PrivateKafka::new();
    kafka.script("start");
    let mut c = Cluster::new();
    c.migrate();
    c.start("admin");
    let (_, token) = c.create_source("census", "census");
    let env = "/v1/sources/census/environments/development";
    c.admin_ok("PATCH", env, Some(&json!({"verification": {"scheme": "bearer", "secrets": [SECRET]}})));
    c.admin_ok("POST", &format!("{env}/mappings"), Some(&json!({"event_type": "census.upsert", "action_type": "add_to_audience",
        "parameters": {"audience_key": "data.audience_key"}})));
    let private = [("TRIBUTARY_KAFKA_BROKERS", kafka.brokers()), ("TRIBUTARY_GATEWAY_PRODUCE_TIMEOUT_MS", "2000".to_string())];
    c.start_with("gateway", &private);
    for role in ["translator", "mapper", "executor"] {
        c.start_with(role, &private[..1]);
    }
    let batch = std::fs::read(format!("{}/tests/fixtures/census/custom-destination/sync_batch.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let path = format!("/integrations/receive/{token}/rpc");
    let auth = format!("Bearer {SECRET}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];

    kafka.script("stop");
    let (s, v, h) = c.gateway("POST", &path, &headers, &batch);
    assert_eq!(s, 503, "{v}");
    assert_eq!(header(&h, "retry-after"), Some("5"));
    assert_eq!((v["jsonrpc"].as_str(), v["id"].clone()), (Some("2.0"), Value::Null), "{v}");
    assert_eq!((v["error"]["code"].as_i64(), v["error"]["data"]["code"].as_str()), (Some(-32000), Some("unavailable")), "{v}");
    assert!(v.get("result").is_none() && v.get("request_id").is_none(), "no rows claimed: {v}");

    kafka.script("start");
    // Census retries the batch until it is answered
    let mut answer = None;
    for _ in 0..60 {
        let (s, v, _) = c.gateway("POST", &path, &headers, &batch);
        if s == 200 {
            answer = Some(v);
            break;
        }
        assert_eq!((s, v["error"]["data"]["code"].as_str()), (503, Some("unavailable")), "{v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let v = answer.expect("the JSON-RPC endpoint did not recover after Kafka came back");
    assert_eq!(v["id"], "5da3749ace39c7d47791dcf3b10f9842");
    let results = v["result"]["record_results"].as_array().expect("record_results").clone();
    assert_eq!(results[..2], [json!({"identifier": "user_123", "success": true}), json!({"identifier": "user_456", "success": true})], "{v}");
    assert_eq!(results[2]["success"], false);
    let request_id = v["request_id"].as_str().unwrap().to_string();

    // Every request whose rows reached Kafka (the answered one; a refused attempt's too, if
    // the broker took them after the gateway gave up): one `processed` event and one action
    // per row in all, the rest duplicates.
    let store = c.store().await;
    let id = |req: &str, i: u32| tributary_model::ids::event_id(req, i);
    for i in 0..2 {
        let logs = tributary_tests::eventually(Duration::from_secs(60), "the rows acted on", || {
            let (s, e) = (store.clone(), id(&request_id, i));
            async move { Some(s.action_logs_for_event(&e).await.unwrap()).filter(|a| !a.is_empty()) }
        })
        .await;
        assert_eq!((logs.len(), logs[0].action_type.as_str(), logs[0].status.as_str()), (1, "add_to_audience", "success"), "{logs:?}");
    }
    for user in ["user_123", "user_456"] {
        assert_eq!(store.audience_memberships("development", "new-signups", user).await.unwrap().len(), 1, "{user}");
    }
    let raw = read_topic_from(&kafka.brokers(), &c.topic("raw"), Duration::from_secs(10), 3);
    let mut requests: Vec<String> = raw.iter().map(|(_, r)| r["request_id"].as_str().unwrap().to_string()).collect();
    requests.sort();
    requests.dedup();
    assert!(requests.contains(&request_id), "{requests:?}");
    for req in requests.iter().filter(|r| **r != request_id) {
        for i in 0..2 {
            let log = tributary_tests::eventually(Duration::from_secs(30), "a late record's event log", || {
                let (s, e) = (store.clone(), id(req, i));
                async move { s.get_event_log(&e).await.unwrap() }
            })
            .await;
            assert_eq!(log.status, "duplicate", "a row of a refused attempt acted on again: {log:?}");
            assert!(store.action_logs_for_event(&id(req, i)).await.unwrap().is_empty());
        }
    }
    println!("{} request(s) reached Kafka: {requests:?}", requests.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_outage_answers_503_then_recovers_without_losing_accepted_events() {
    let kafka = PrivateKafka::new();
    kafka.script("start");
    let mut c = Cluster::new();
    c.migrate();
    c.start("admin");
    let gw_env = [
        ("TRIBUTARY_KAFKA_BROKERS", kafka.brokers()),
        ("TRIBUTARY_GATEWAY_PRODUCE_TIMEOUT_MS", "2000".to_string()),
    ];
    let (_, token) = c.create_source("seg", "segment");
    c.start_with("gateway", &gw_env);
    let path = format!("/integrations/receive/{token}");
    let ev = |i: u32| format!(r#"{{"type":"track","event":"E","userId":"u{i}","messageId":"m{i}"}}"#);

    let mut accepted = Vec::new();
    for i in 0..5 {
        let (s, v, _) = c.gateway("POST", &path, &[], ev(i).as_bytes());
        assert_eq!(s, 202, "{v}");
        accepted.push(format!("m{i}"));
    }

    kafka.script("stop");
    let (s, v, h) = c.gateway("POST", &path, &[], ev(100).as_bytes());
    assert_eq!((s, code(&v)), (503, "unavailable"), "{v}");
    assert_eq!(header(&h, "retry-after"), Some("5"));
    // not ready while Kafka is away
    let mut unready = false;
    for _ in 0..50 {
        if tributary_tests::http::request(c.gateway_port, "GET", "/readyz", &[], None).0 == 503 {
            unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(unready, "/readyz should report Kafka down");

    kafka.script("start");
    // the sender retries, as CDPs do on 503, until it is accepted again
    let mut recovered = false;
    for _ in 0..60 {
        let (s, _, _) = c.gateway("POST", &path, &[], ev(100).as_bytes());
        if s == 202 {
            recovered = true;
            break;
        }
        assert_eq!(s, 503);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(recovered, "the gateway did not recover after Kafka came back");
    accepted.push("m100".into());
    for i in 5..10 {
        assert_eq!(c.gateway("POST", &path, &[], ev(i).as_bytes()).0, 202);
        accepted.push(format!("m{i}"));
    }

    let raw = read_topic_from(&kafka.brokers(), &c.topic("raw"), Duration::from_secs(30), accepted.len());
    let got: Vec<String> = raw
        .iter()
        .map(|(_, r)| serde_json::from_str::<Value>(r["item"].to_string().as_str()).unwrap()["messageId"].as_str().unwrap().to_string())
        .collect();
    for m in &accepted {
        assert!(got.contains(m), "accepted event {m} is not in Kafka: {got:?}");
    }
}
