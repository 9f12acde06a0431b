//! The control plane against real Cassandra and Kafka: every resource's round trip, each
//! validation error, paging with filters, rehearse versus a real send, replay, token rotation
//! with a grace period, the audit log, and the OpenAPI contract.

use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use tributary_tests::{eventually, http, read_topic, Cluster, ADMIN_TOKEN};

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn field(v: &Value) -> &str {
    v["error"]["details"]["field"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_validation_and_the_contract() {
    let mut c = Cluster::new();
    c.migrate();
    c.start("admin");

    // auth
    assert_eq!(http::request(c.admin_port, "GET", "/v1/sources", &[], None).0, 401);
    let (s, v) = http::json(c.admin_port, "GET", "/v1/sources", &[("authorization", "Bearer nope")], None);
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")));

    // environments
    let envs = c.admin_ok("GET", "/v1/environments", None);
    assert_eq!(envs["environments"], json!(["development", "production"]));
    let (s, v) = c.admin("POST", "/v1/environments", Some(&json!({"name": "bad name!"})));
    assert_eq!((s, field(&v)), (422, "name"));
    assert_eq!(c.admin("POST", "/v1/environments", Some(&json!({"name": "staging"}))).0, 201);
    assert_eq!(c.admin("POST", "/v1/environments", Some(&json!({"name": "staging"}))).0, 409);

    // sources
    let (s, v) = c.admin("POST", "/v1/sources", Some(&json!({"key": "web", "template": "mixpanel"})));
    assert_eq!((s, field(&v)), (422, "template"));
    let (s, v) = c.admin("POST", "/v1/sources", Some(&json!({"key": "", "template": "segment"})));
    assert_eq!((s, field(&v)), (422, "key"));
    let (s, v) = c.admin("POST", "/v1/sources", Some(&json!({"template": "segment"})));
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_body")));
    let src = c.admin_ok("POST", "/v1/sources", Some(&json!({"key": "web", "name": "Web", "template": "segment"})));
    let envs = src["environments"].as_object().unwrap();
    assert_eq!(envs.len(), 3, "every environment gets settings: {src}");
    let urls: HashSet<&str> = envs.values().map(|e| e["ingest_url"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), 3, "each environment has its own URL");
    assert_eq!(c.admin("POST", "/v1/sources", Some(&json!({"key": "web", "template": "segment"}))).0, 409);
    assert_eq!(c.admin_ok("PATCH", "/v1/sources/web", Some(&json!({"name": "Website"})))["name"], "Website");
    assert_eq!(c.admin_ok("GET", "/v1/sources/web", None)["name"], "Website");
    assert_eq!(c.admin_ok("GET", "/v1/sources", None)["sources"].as_array().unwrap().len(), 1);
    assert_eq!(c.admin("GET", "/v1/sources/nope", None).0, 404);

    // settings
    let base = "/v1/sources/web/environments/development";
    let s1 = c.admin_ok("PATCH", base, Some(&json!({"retention_days": 90, "handle_identify": false, "dedup": {"window_secs": 3600}})));
    assert_eq!((s1["retention_days"].clone(), s1["handle_identify"].clone(), s1["dedup"].clone()), (json!(90), json!(false), json!({"enabled": true, "window_secs": 3600})));
    let (s, v) = c.admin("PATCH", base, Some(&json!({"token": "mine"})));
    assert_eq!((s, field(&v)), (422, "token"));
    let (s, v) = c.admin("PATCH", base, Some(&json!({"retention_days": "long"})));
    assert_eq!((s, field(&v)), (422, "settings"));
    let (s, v) = c.admin("PATCH", base, Some(&json!({"paths": {"array": "records"}})));
    assert_eq!((s, field(&v)), (422, "paths.array"));

    // secrets: shown once, two at most
    let sec = c.admin_ok("POST", &format!("{base}/secrets"), None);
    let full = sec["secret"].as_str().unwrap().to_string();
    assert!(full.len() >= 32);
    let shown = c.admin_ok("GET", base, None);
    assert!(!shown.to_string().contains(&full), "the secret is never shown again");
    assert_eq!(shown["verification"]["secrets"][0], format!("{}…", &full[..4]));
    c.admin_ok("POST", &format!("{base}/secrets"), Some(&json!({"secret": "segment-shared-2"})));
    assert_eq!(c.admin("POST", &format!("{base}/secrets"), None).0, 409);
    let after = c.admin_ok("DELETE", &format!("{base}/secrets/0"), None);
    assert_eq!(after["verification"]["secrets"], json!(["segm…"]));
    let (s, v) = c.admin("POST", &format!("{base}/secrets"), Some(&json!({"secret": "short"})));
    assert_eq!((s, field(&v)), (422, "secret"));

    // mappings
    let mb = format!("{base}/mappings");
    for (body, f) in [
        (json!({"event_type": "track", "action_type": "send_sms", "parameters": {}}), "action_type"),
        (json!({"event_type": "track", "action_type": "trigger_workflow", "parameters": {}}), "parameters.workflow"),
        (json!({"event_type": "track", "action_type": "trigger_workflow", "parameters": {"workflow": "w", "recipients": "data..to"}}), "parameters.recipients"),
        (json!({"event_type": "track", "action_type": "trigger_workflow", "parameters": {"workflow": "w"}, "filter": "data.total >"}), "filter"),
        (json!({"event_type": "", "action_type": "trigger_workflow", "parameters": {"workflow": "w"}}), "event_type"),
    ] {
        let (s, v) = c.admin("POST", &mb, Some(&body));
        assert_eq!((s, field(&v)), (422, f), "{body} -> {v}");
    }
    let m = c.admin_ok("POST", &mb, Some(&json!({"event_type": "track", "event_name": "Signed Up", "action_type": "trigger_workflow",
        "parameters": {"workflow": "welcome"}, "filter": "data.plan == \"pro\""})));
    let mid = m["id"].as_str().unwrap();
    assert_eq!(c.admin_ok("GET", &format!("{mb}/{mid}"), None)["filter"], "data.plan == \"pro\"");
    let mut upd = m.clone();
    upd["active"] = json!(false);
    assert_eq!(c.admin_ok("PUT", &format!("{mb}/{mid}"), Some(&upd))["active"], false);
    assert_eq!(c.admin_ok("GET", &mb, None)["mappings"].as_array().unwrap().len(), 1);
    assert_eq!(c.admin("DELETE", &format!("{mb}/{mid}"), None).0, 204);
    assert_eq!(c.admin("GET", &format!("{mb}/{mid}"), None).0, 404);

    // delete environment and source
    assert_eq!(c.admin("DELETE", "/v1/environments/staging", None).0, 204);
    assert_eq!(c.admin("DELETE", "/v1/sources/web", None).0, 204);
    assert_eq!(c.admin("GET", "/v1/sources/web", None).0, 404);

    // the audit log has the changes, without secrets
    let audit = c.admin_ok("GET", "/v1/audit?limit=200", None);
    let entries = audit["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "DELETE" && e["target"] == "/v1/sources/web"));
    assert!(entries.iter().any(|e| e["action"] == "POST" && e["target"] == "/v1/sources" && e["details"]["request"]["key"] == "web"));
    let with_secret = entries.iter().find(|e| e["target"] == format!("{base}/secrets") && !e["details"]["request"].is_null()).unwrap();
    assert_eq!(with_secret["details"]["request"]["secret"], "[redacted]");
    assert!(!audit.to_string().contains("segment-shared-2"));

    // the contract: served == checked in, and every documented route exists on the server
    let (s, served) = http::request(c.admin_port, "GET", "/openapi.json", &[], None);
    assert_eq!(s, 200);
    let checked_in: Value = serde_json::from_str(include_str!("../crates/admin/openapi.json")).unwrap();
    assert_eq!(served, checked_in, "served OpenAPI differs from crates/admin/openapi.json");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    for (path, item) in checked_in["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{env}", "development").replace("{key}", "nosuch").replace("{id}", "nosuch").replace("{index}", "0");
            let (s, v, _) = http::try_request(c.admin_port, &method.to_uppercase(), &concrete, &[("authorization", &auth)], Some(b"{}")).unwrap();
            let routed = !(s == 405 || (s == 404 && v.get("error").is_none()));
            assert!(routed, "{method} {path} is documented but not routed ({s} {v})");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_paging_rehearse_replay_and_token_rotation() {
    let mut c = Cluster::new();
    c.start_all_roles();
    let (_, token) = c.create_source("shop", "segment");
    let (_, token2) = c.create_source("app", "segment");
    let base = "/v1/sources/shop/environments/development";
    c.admin_ok("POST", &format!("{base}/mappings"), Some(&json!({"event_type": "track", "event_name": "Order Completed",
        "action_type": "trigger_workflow", "parameters": {"workflow": "order-completed", "data": "data"}})));
    c.admin_ok("POST", &format!("{base}/mappings"), Some(&json!({"event_type": "track", "event_name": "Order Completed",
        "action_type": "identify_user", "parameters": {"properties": "data.customer"}})));
    let store = c.store().await;

    // 130 events over two sources and users, 10 of them refused
    let items: Vec<Value> = (0..120)
        .map(|i| json!({"type": "track", "event": if i % 2 == 0 { "Order Completed" } else { "Viewed" },
                        "userId": format!("u{}", i % 3), "messageId": format!("p-{i}"), "properties": {"i": i, "customer": {"n": i}}}))
        .chain((0..10).map(|i| json!({"type": "track", "messageId": format!("bad-{i}"), "userId": "u0"})))
        .collect();
    let (s, v) = c.post_event(&token, &[], json!({"batch": items}).to_string().as_bytes());
    assert_eq!(s, 200, "{v}");
    let (s, _) = c.post_event(&token2, &[], br#"{"type":"track","event":"Other","userId":"u0"}"#);
    assert_eq!(s, 202);
    eventually(Duration::from_secs(60), "130 event logs of shop", || {
        let c = &c;
        async move {
            let mut n = 0;
            let mut cursor: Option<String> = None;
            loop {
                let q = match &cursor { Some(cur) => format!("&cursor={cur}"), None => String::new() };
                let v = c.admin_ok("GET", &format!("/v1/environments/development/events?source=shop&limit=500{q}"), None);
                n += v["events"].as_array().unwrap().len();
                match v["next_cursor"].as_str() { Some(x) => cursor = Some(x.to_string()), None => break }
            }
            (n >= 130).then_some(())
        }
    })
    .await;

    // paging: pages of 25, newest first, no repeats, filters applied
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor { Some(cur) => format!("&cursor={cur}"), None => String::new() };
        let v = c.admin_ok("GET", &format!("/v1/environments/development/events?source=shop&limit=25{q}"), None);
        let evs = v["events"].as_array().unwrap();
        pages += 1;
        for e in evs {
            assert_eq!(e["source"], "shop");
            seen.push((e["received_at"].as_i64().unwrap(), e["event_id"].as_str().unwrap().to_string()));
        }
        match v["next_cursor"].as_str() {
            Some(x) => cursor = Some(x.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 130);
    assert_eq!(pages, 6);
    assert_eq!(seen.iter().map(|(_, id)| id).collect::<HashSet<_>>().len(), 130, "no event twice");
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");
    let rejected = c.admin_ok("GET", "/v1/environments/development/events?status=rejected&limit=100", None);
    assert_eq!(rejected["events"].as_array().unwrap().len(), 10);
    let u1 = c.admin_ok("GET", "/v1/environments/development/events?user_id=u1&event_type=track&name=Viewed&limit=100", None);
    assert_eq!(u1["events"].as_array().unwrap().len(), 20);
    let (s, v) = c.admin("GET", "/v1/environments/development/events?status=weird", None);
    assert_eq!((s, field(&v)), (422, "status"));
    let (s, v) = c.admin("GET", "/v1/environments/development/events?cursor=zzz", None);
    assert_eq!((s, field(&v)), (422, "cursor"));

    // action logs with filters
    let acts = eventually(Duration::from_secs(40), "120 action logs", || {
        let c = &c;
        async move {
            let v = c.admin_ok("GET", "/v1/environments/development/actions?workflow=order-completed&status=success&limit=500", None);
            (v["actions"].as_array().unwrap().len() >= 60).then_some(v)
        }
    })
    .await;
    assert_eq!(acts["actions"].as_array().unwrap().len(), 60);
    let ids = c.admin_ok("GET", "/v1/environments/development/actions?action_type=identify_user&limit=500", None);
    assert_eq!(ids["actions"].as_array().unwrap().len(), 60);

    // known events and status: counts are added up in memory and flushed each second
    let oc = eventually(Duration::from_secs(10), "known-event counts flushed", || {
        let v = c.admin_ok("GET", &format!("{base}/known-events"), None);
        let oc = v["events"].as_array().unwrap().iter().find(|e| e["name"] == "Order Completed").cloned();
        async move { oc.filter(|e| e["count"] == 60) }
    })
    .await;
    assert!(oc["last_seen"].as_i64().unwrap() > 0);
    let status = eventually(Duration::from_secs(10), "daily counts flushed", || {
        let v = c.admin_ok("GET", &format!("{base}/status"), None);
        async move { (v["events_count"] == json!(120)).then_some(v) }
    })
    .await;
    assert_eq!(status["mappings_count"], json!(2));
    let user = c.admin_ok("GET", "/v1/environments/development/users/u0", None);
    assert!(user["properties"]["n"].is_number(), "{user}");

    // rehearse = a real send, with nothing written
    let body = json!({"type": "track", "event": "Order Completed", "userId": "r1", "messageId": "rh-1",
                      "properties": {"total": 5, "customer": {"vip": true}}});
    let r = c.admin_ok("POST", &format!("{base}/rehearse"), Some(&json!({"body": body, "headers": {"content-type": "application/json"}})));
    assert_eq!((r["status"].clone(), r["verification"].clone()), (json!(202), json!("unverified")));
    let planned = r["events"][0]["actions"].as_array().unwrap().clone();
    assert_eq!(planned.len(), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.admin("GET", "/v1/environments/development/users/r1", None).0, 404, "rehearse wrote nothing");
    let (s, v) = c.post_event(&token, &[], body.to_string().as_bytes());
    assert_eq!(s, 202);
    let eid = tributary_model::ids::event_id(v["request_id"].as_str().unwrap(), 0);
    let real = eventually(Duration::from_secs(30), "real actions", || {
        let (s, id) = (store.clone(), eid.clone());
        async move { Some(s.action_logs_for_event(&id).await.unwrap()).filter(|a| a.len() == 2) }
    })
    .await;
    for p in &planned {
        let a = real.iter().find(|a| a.mapping_id == p["mapping_id"].as_str().unwrap()).unwrap();
        assert_eq!(a.action_type, p["action_type"].as_str().unwrap());
        assert_eq!(a.payload.as_ref().unwrap(), &p["payload"], "rehearsal planned what the real send did");
    }
    let bad = c.admin_ok("POST", &format!("{base}/rehearse"), Some(&json!({"body": "{oops"})));
    assert_eq!((bad["status"].clone(), bad["error"]["code"].clone()), (json!(400), json!("invalid_json")));

    // replay one event: new action logs linked to it, a second trigger with a new key
    let rp = c.admin_ok("POST", "/v1/environments/development/replay", Some(&json!({"event_id": eid})));
    assert_eq!(rp["replayed"], 1);
    let all = eventually(Duration::from_secs(30), "replayed actions", || {
        let (s, id) = (store.clone(), eid.clone());
        async move { Some(s.action_logs_for_event(&id).await.unwrap()).filter(|a| a.len() == 4) }
    })
    .await;
    let replayed: Vec<_> = all.iter().filter(|a| a.replay_of.as_deref() == rp["replay_id"].as_str()).collect();
    assert_eq!(replayed.len(), 2);
    assert!(replayed.iter().all(|a| a.status == "success"));
    let triggers = read_topic(&c.topic("triggers"), Duration::from_secs(20), 62);
    let for_event: Vec<_> = triggers.iter().filter(|(_, t)| t["event_id"] == json!(eid)).collect();
    assert_eq!(for_event.len(), 2);
    assert_ne!(for_event[0].1["idempotency_key"], for_event[1].1["idempotency_key"]);
    let (s, v) = c.admin("POST", "/v1/environments/development/replay", Some(&json!({})));
    assert_eq!((s, field(&v)), (422, "event_id"));
    // a time range: every processed event of the source in it
    let processed = c.admin_ok("GET", "/v1/environments/development/events?source=app&status=processed&limit=500", None);
    let n = processed["events"].as_array().unwrap().len();
    let rr = c.admin_ok("POST", "/v1/environments/development/replay",
        Some(&json!({"since": chrono_now_ms() - 3_600_000, "until": chrono_now_ms(), "source": "app"})));
    assert!(n >= 1);
    assert_eq!(rr["replayed"], json!(n), "{rr}");
    let (s, v) = c.admin("POST", "/v1/environments/development/replay", Some(&json!({"since": 0, "until": chrono_now_ms()})));
    assert_eq!((s, field(&v)), (422, "since"));

    // token rotation: the old URL works during its grace period, not after
    let rot = c.admin_ok("POST", &format!("{base}/rotate-token"), Some(&json!({"grace_seconds": 4})));
    let new_token = rot["token"].as_str().unwrap().to_string();
    assert_eq!(rot["previous_token"], json!(token));
    let ev = br#"{"type":"track","event":"Viewed","userId":"u9"}"#;
    assert_eq!(c.post_event(&token, &[], ev).0, 202, "old token inside its grace period");
    assert_eq!(c.post_event(&new_token, &[], ev).0, 202);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (s, v) = c.post_event(&token, &[], ev);
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("unknown_token")), "old token after its grace period");
    assert_eq!(c.post_event(&new_token, &[], ev).0, 202);
}

/// `curl` as a newcomer types it: `-d` with no `Content-Type` (curl then sends
/// `application/x-www-form-urlencoded`), or with the header removed altogether.
fn curl(port: u16, method: &str, path: &str, extra: &[&str], body: Option<&str>) -> (u16, Value) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "-X", method, "-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")]);
    cmd.args(extra);
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    let out = cmd.arg(format!("http://127.0.0.1:{port}{path}")).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    let v = serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body:?}"));
    (status.parse().unwrap(), v)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_failure_has_the_error_shape_and_bodies_need_no_content_type() {
    let mut c = Cluster::new();
    c.migrate();
    c.start("admin");
    let p = c.admin_port;
    let shaped = |(s, v): (u16, Value), status: u16, code: &str| {
        assert_eq!(s, status, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(v["error"].as_object().unwrap().contains_key("details"), "{v}");
    };

    // bodies are JSON whatever the Content-Type says, or with none
    let (s, v) = curl(p, "POST", "/v1/sources", &[], Some(r#"{"key":"no-ct","template":"segment"}"#));
    assert_eq!(s, 201, "curl -d without a content type: {v}");
    let (s, v) = curl(p, "POST", "/v1/sources", &["-H", "Content-Type:"], Some(r#"{"key":"none-ct","template":"segment"}"#));
    assert_eq!(s, 201, "no Content-Type header at all: {v}");
    let (s, v) = curl(p, "POST", "/v1/sources/no-ct/environments/development/rotate-token", &[], None);
    assert_eq!(s, 200, "an optional body left out: {v}");

    // the framework's own rejections
    shaped(curl(p, "POST", "/v1/sources", &[], Some(r#"{"key": "x","#)), 400, "invalid_json");
    shaped(curl(p, "POST", "/v1/sources", &[], Some("")), 400, "invalid_json");
    shaped(curl(p, "GET", "/v1/nowhere", &[], None), 404, "not_found");
    shaped(curl(p, "GET", "/nowhere", &[], None), 404, "not_found");
    shaped(curl(p, "PUT", "/v1/sources", &[], Some("{}")), 405, "method_not_allowed");
    shaped(curl(p, "DELETE", "/v1/sources/no-ct/environments/development/secrets/first", &[], None), 400, "bad_request");
    shaped(curl(p, "GET", "/v1/environments/development/events?colour=red", &[], None), 400, "bad_request");
    shaped(curl(p, "GET", "/v1/environments/development/events?limit=many", &[], None), 400, "bad_request");
    // over the 10 MiB limit, through the audit layer and the handler alike
    let big = format!(r#"{{"key":"big","template":"segment","name":"{}"}}"#, "x".repeat(11 << 20));
    let file = std::env::temp_dir().join(format!("{}-big.json", c.name));
    std::fs::write(&file, big).unwrap();
    let at_file = format!("@{}", file.display());
    shaped(curl(p, "POST", "/v1/sources", &[], Some(&at_file)), 413, "payload_too_large");
    let _ = std::fs::remove_file(file);
    // and the handlers' own
    shaped(curl(p, "POST", "/v1/sources", &[], Some(r#"{"key":"no-ct","template":"segment"}"#)), 409, "conflict");
    shaped(curl(p, "POST", "/v1/sources", &[], Some(r#"{"key":"k","template":"mixpanel"}"#)), 422, "validation_failed");
    shaped(http::json(p, "GET", "/v1/sources", &[], None), 401, "unauthorized");
}

/// Rehearse reports the status the gateway really answers, per-template rule included
/// (tributary_sources::answer): a verified body that cannot be used is a 4xx for Segment and
/// RudderStack, 200 with the refusal for Census, Hightouch and webhook senders.
#[tokio::test(flavor = "multi_thread")]
async fn rehearse_answers_unusable_content_as_the_gateway_does_per_template() {
    let mut c = Cluster::new();
    c.migrate();
    c.start("admin");
    let rehearse = |key: &str, body: Value, headers: Value| {
        c.admin_ok("POST", &format!("/v1/sources/{key}/environments/development/rehearse"), Some(&json!({"body": body, "headers": headers})))
    };
    for template in ["segment", "rudderstack", "hightouch", "census", "http"] {
        let key = format!("{template}-src");
        c.create_source(&key, template);
        let cdp = matches!(template, "segment" | "rudderstack");
        for (body, code) in [(json!("{oops"), "invalid_json"), (json!("\"a string\""), "invalid_envelope")] {
            let r = rehearse(&key, body, json!({}));
            assert_eq!(r["error"]["code"], code, "{template}: {r}");
            assert_eq!(r["verification"], "unverified", "{template}: it passed (scheme none): {r}");
            if cdp {
                assert_eq!((r["status"].clone(), r["rejected"].clone()), (json!(400), json!([])), "{template}: {r}");
            } else {
                assert_eq!(r["status"], 200, "{template}: {r}");
                assert_eq!(r["rejected"], json!([{"index": 0, "code": code, "message": r["error"]["message"]}]), "{template}: {r}");
            }
        }
        let r = rehearse(&key, json!({"type": "track", "event": "E", "userId": {"an": "object"}}), json!({}));
        if cdp {
            assert_eq!(r["status"], 400, "{template}: a refused single event: {r}");
        } else {
            assert_ne!(r["status"], 400, "{template}: never a 400: {r}");
        }
    }

    // a verified Census request: "verified", 200 with the refusal; a failed check stays 401
    c.admin_ok("PATCH", "/v1/sources/census-src/environments/development",
        Some(&json!({"verification": {"scheme": "bearer", "secrets": ["census-rehearse-secret"]}})));
    let r = rehearse("census-src", json!("{oops"), json!({"authorization": "Bearer census-rehearse-secret"}));
    assert_eq!((r["status"].clone(), r["verification"].clone()), (json!(200), json!("verified")), "{r}");
    let r = rehearse("census-src", json!("{oops"), json!({"authorization": "Bearer wrong"}));
    assert_eq!((r["status"].clone(), r["verification"].clone(), r["rejected"].clone()), (json!(401), json!("failed"), json!([])), "{r}");
}
