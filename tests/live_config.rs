//! A configuration change is in effect the moment the admin API has answered it, in every
//! role, with the roles' full reload at its default (30 s) so only the configuration epoch can
//! make it so: a new source's URL, a new environment, a mapping saved just before an event, a
//! rotated token, a secret added or removed. Every request here follows the admin's answer
//! with no wait.

use serde_json::{json, Value};
use std::time::Duration;
use tributary_tests::{eventually, read_topic, Cluster};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// A track call no mapping maps.
fn track(user: &str, message_id: &str) -> Vec<u8> {
    json!({"type": "track", "event": "Page Viewed", "userId": user, "messageId": message_id}).to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_are_live_the_moment_the_admin_api_answers() {
    let mut c = Cluster::new();
    c.start_all_roles();

    // New sources, each used at once: accepted at the gateway, and processed (not refused as
    // an unknown source) by the translator, whose snapshot predates them.
    let mut first_events = Vec::new();
    for i in 0..5 {
        let key = format!("fresh-{i}");
        let (_, token) = c.create_source(&key, "segment");
        let (s, v) = c.post_event(&token, &[], &track("u-new", &format!("new-{i}")));
        assert_eq!(s, 202, "source {key} used right after its creation: {v}");
        first_events.push(key);
    }

    // A mapping saved just before the event that it maps.
    let base = "/v1/sources/fresh-0/environments/development";
    let token0 = c.admin_ok("GET", base, None)["token"].as_str().unwrap().to_string();
    c.admin_ok("POST", &format!("{base}/mappings"), Some(&json!({"event_type": "track", "event_name": "Order Completed",
        "action_type": "trigger_workflow", "parameters": {"workflow": "live"}})));
    let mapped = json!({"type": "track", "event": "Order Completed", "userId": "u-map", "messageId": "mapped-1"});
    let (s, _) = c.post_event(&token0, &[], mapped.to_string().as_bytes());
    assert_eq!(s, 202);

    // A new environment: every source gets a URL in it, usable at once.
    c.admin_ok("POST", "/v1/environments", Some(&json!({"name": "staging"})));
    let staging = c.admin_ok("GET", "/v1/sources/fresh-1/environments/staging", None);
    let (s, v) = c.post_event(staging["token"].as_str().unwrap(), &[], &track("u-stg", "stg-1"));
    assert_eq!(s, 202, "new environment's token: {v}");

    // Token rotation with no grace: the new token works and the old one is refused, both at once.
    let rot = c.admin_ok("POST", &format!("{base}/rotate-token"), Some(&json!({"grace_seconds": 0})));
    let new_token = rot["token"].as_str().unwrap().to_string();
    let (s, v) = c.post_event(&new_token, &[], &track("u-rot", "rot-1"));
    assert_eq!(s, 202, "rotated token: {v}");
    let (s, v) = c.post_event(&token0, &[], &track("u-rot", "rot-2"));
    assert_eq!((s, code(&v)), (404, "unknown_token"), "the old token, rotated out with no grace: {v}");

    // Secrets: require one, add a second and use it at once, remove the first and see it refused.
    c.admin_ok("PATCH", base, Some(&json!({"verification": {"scheme": "shared_secret_header", "header": "x-secret", "secrets": ["first-secret-1"]}})));
    let (s, v) = c.post_event(&new_token, &[], &track("u-sec", "sec-0"));
    assert_eq!((s, code(&v)), (401, "missing_signature"), "a scheme just required: {v}");
    let added = c.admin_ok("POST", &format!("{base}/secrets"), Some(&json!({"secret": "second-secret-2"})));
    assert_eq!(added["index"], 1);
    let (s, v) = c.post_event(&new_token, &[("x-secret", "second-secret-2")], &track("u-sec", "sec-1"));
    assert_eq!(s, 202, "a secret added a moment ago: {v}");
    c.admin_ok("DELETE", &format!("{base}/secrets/0"), None);
    let (s, v) = c.post_event(&new_token, &[("x-secret", "first-secret-1")], &track("u-sec", "sec-2"));
    assert_eq!((s, code(&v)), (401, "signature_mismatch"), "a secret removed a moment ago: {v}");

    // Deleting a source: its URL is refused once the admin has answered.
    let (_, doomed) = c.create_source("doomed", "segment");
    assert_eq!(c.admin("DELETE", "/v1/sources/doomed", None).0, 204);
    let (s, v) = c.post_event(&doomed, &[], &track("u-del", "del-1"));
    assert_eq!((s, code(&v)), (404, "unknown_token"), "a deleted source's URL: {v}");

    // The mapped event fired its workflow, and every source's first event was processed.
    let triggers = read_topic(&c.topic("triggers"), Duration::from_secs(30), 1);
    assert_eq!(triggers.len(), 1, "exactly one trigger, for the event sent right after its mapping: {triggers:#?}");
    assert_eq!(triggers[0].0, "development/live");
    for key in first_events {
        let path = format!("/v1/environments/development/events?source={key}&user_id=u-new");
        let ev = eventually(Duration::from_secs(30), "the first event of a new source", || {
            let v = c.admin_ok("GET", &path, None);
            async move { v["events"].as_array().and_then(|a| a.first().cloned()) }
        })
        .await;
        assert_eq!(ev["status"], "processed", "{key}: {ev}");
    }
}

/// The gateway's statements so far (its only ones are configuration reads).
fn gateway_statements(c: &Cluster) -> f64 {
    let (_, m) = tributary_tests::http::request(c.gateway_port, "GET", "/metrics", &[], None);
    let text = m.as_str().unwrap_or_default().to_string();
    text.lines()
        .find(|l| l.starts_with("tributary_store_statements_total "))
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unknown_tokens_is_answered_promptly_and_reads_the_database_boundedly() {
    let mut c = Cluster::new();
    c.migrate();
    c.start("gateway");
    let before = gateway_statements(&c);
    let started = std::time::Instant::now();
    // 400 requests with made-up tokens, 40 connections at a time
    let port = c.gateway_port;
    let threads: Vec<_> = (0..40)
        .map(|t| {
            std::thread::spawn(move || {
                let mut worst = Duration::ZERO;
                for i in 0..10 {
                    let t0 = std::time::Instant::now();
                    let path = format!("/integrations/receive/tok_flood_{t}_{i}");
                    let (s, v) = tributary_tests::http::request(port, "POST", &path, &[], Some(&track("u", "m")));
                    assert_eq!((s, code(&v)), (404, "unknown_token"), "{v}");
                    worst = worst.max(t0.elapsed());
                }
                worst
            })
        })
        .collect();
    let worst = threads.into_iter().map(|t| t.join().unwrap()).max().unwrap();
    let elapsed = started.elapsed();
    let reads = gateway_statements(&c) - before;
    eprintln!("400 unknown tokens in {elapsed:?}: worst answer {worst:?}, {reads} configuration reads");
    // Each thread sends its 10 requests one after another, so the requests come in about 10
    // waves of 40: one epoch check answers a whole wave (every request that arrived before it
    // started), whatever the number waiting. Beside those, the 250 ms poll reads on its own.
    let polls = elapsed.as_secs_f64() / 0.25 + 2.0;
    assert!(reads - polls <= 20.0, "{reads} reads ({polls:.0} of them the poll's) for 10 waves of requests: one check each, not one per request");
    assert!(worst < Duration::from_secs(2), "a request waited {worst:?} behind the others' checks");
}
