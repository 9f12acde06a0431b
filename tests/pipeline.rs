//! The walking skeleton, end to end: HTTP → gateway → Kafka → translator → mapper → executor
//! → Cassandra and the workflow-trigger topic, with every role in its own process.

use serde_json::json;
use std::time::Duration;
use tributary_tests::{eventually, read_topic, Cluster};

const THIRTY_DAYS: i32 = 30 * 86_400;

#[tokio::test(flavor = "multi_thread")]
async fn segment_track_with_a_mapping_triggers_the_workflow_and_is_logged() {
    let mut c = Cluster::new();
    c.start_all_roles();
    let (_, token) = c.create_source("segment-web", "segment");
    let mapping = c.admin_ok(
        "POST",
        "/v1/sources/segment-web/environments/development/mappings",
        Some(&json!({"event_type": "track", "event_name": "Order Completed", "action_type": "trigger_workflow",
                     "parameters": {"workflow": "order-completed"}})),
    );
    // the mapping is live in every worker within the refresh interval
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let body = br#"{"type":"track","event":"Order Completed","userId":9007199254740993,"messageId":"msg-e2e-1",
        "properties":{"order_id":"o-17","total":129.90,"items":[{"sku":"A1","qty":2}]},
        "timestamp":"2024-07-01T09:30:00.123456+02:00","context":{"library":{"name":"analytics.js","version":"next-1.70.0"}}}"#;
    let (status, resp) = c.post_event(&token, &[], body);
    assert_eq!(status, 202, "{resp}");
    assert_eq!(resp["accepted"], 1);

    let store = c.store().await;
    let request_id = resp["request_id"].as_str().unwrap().to_string();
    let event_id = tributary_model::ids::event_id(&request_id, 0);

    let log = eventually(Duration::from_secs(30), "event log", || {
        let (s, id) = (store.clone(), event_id.clone());
        async move { s.get_event_log(&id).await.unwrap() }
    })
    .await;
    assert_eq!(log.status, "processed");
    assert_eq!(log.source, "segment-web");
    assert_eq!(log.environment, "development");
    assert_eq!(log.user_id.as_deref(), Some("9007199254740993"), "integer ids keep every digit");
    assert_eq!(log.name.as_deref(), Some("Order Completed"));
    let n = log.normalized.as_ref().expect("normalized form");
    let want: serde_json::Value = serde_json::from_str(r#"{"order_id":"o-17","total":129.90,"items":[{"sku":"A1","qty":2}]}"#).unwrap();
    assert_eq!(n["data"], want);
    assert_eq!(n["data"]["total"].to_string(), "129.90", "numbers keep their lexeme");
    assert_eq!(n["timestamp"], "2024-07-01T07:30:00.123Z");
    assert_eq!(n["idempotency_key"], "msg-e2e-1");
    assert_eq!(log.raw["messageId"], "msg-e2e-1");
    let ttl = log.ttl.expect("event log has a TTL");
    assert!(ttl > THIRTY_DAYS - 600 && ttl <= THIRTY_DAYS, "event log TTL {ttl}");

    let actions = eventually(Duration::from_secs(30), "action log", || {
        let (s, id) = (store.clone(), event_id.clone());
        async move { Some(s.action_logs_for_event(&id).await.unwrap()).filter(|a| !a.is_empty()) }
    })
    .await;
    assert_eq!(actions.len(), 1);
    let a = &actions[0];
    assert_eq!(a.status, "success", "{a:?}");
    assert_eq!(a.action_type, "trigger_workflow");
    assert_eq!(a.mapping_id, mapping["id"].as_str().unwrap());
    assert_eq!(a.payload.as_ref().unwrap()["recipients"], json!(["9007199254740993"]));
    let ttl = a.ttl.expect("action log has a TTL");
    assert!(ttl > THIRTY_DAYS - 600 && ttl <= THIRTY_DAYS, "action log TTL {ttl}");

    let triggers = read_topic(&c.topic("triggers"), Duration::from_secs(20), 1);
    assert_eq!(triggers.len(), 1, "exactly one trigger: {triggers:?}");
    let (key, t) = &triggers[0];
    assert_eq!(key, "development/order-completed");
    assert_eq!(t["workflow"], "order-completed");
    assert_eq!(t["recipients"], json!(["9007199254740993"]));
    assert_eq!(t["data"]["order_id"], "o-17");
    assert_eq!(t["data"]["items"][0]["qty"], 2);
    assert_eq!(t["actor"], json!(null));
    assert_eq!(t["tenant"], json!(null));
    assert_eq!(t["idempotency_key"], json!(a.action_id));
    assert_eq!(t["event_id"], json!(event_id));

    // The admin API shows the same event with its action.
    let v = c.admin_ok("GET", &format!("/v1/events/{event_id}"), None);
    assert_eq!(v["actions"][0]["status"], "success");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_that_matches_no_mapping_is_logged_without_actions() {
    let mut c = Cluster::new();
    c.start_all_roles();
    let (_, token) = c.create_source("segment-app", "segment");
    c.admin_ok(
        "POST",
        "/v1/sources/segment-app/environments/development/mappings",
        Some(&json!({"event_type": "track", "event_name": "Order Completed", "action_type": "trigger_workflow",
                     "parameters": {"workflow": "order-completed"}})),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, resp) = c.post_event(
        &token,
        &[("content-type", "text/plain")],
        br#"{"type":"track","event":"Page Scrolled","anonymousId":"anon-9","properties":{"depth":80}}"#,
    );
    assert_eq!(status, 202, "{resp}");
    let store = c.store().await;
    let event_id = tributary_model::ids::event_id(resp["request_id"].as_str().unwrap(), 0);
    let log = eventually(Duration::from_secs(30), "event log", || {
        let (s, id) = (store.clone(), event_id.clone());
        async move { s.get_event_log(&id).await.unwrap() }
    })
    .await;
    assert_eq!(log.status, "processed");
    assert_eq!(log.user_id, None);
    assert_eq!(log.normalized.as_ref().unwrap()["anonymous_id"], "anon-9");
    assert_eq!(log.normalized.as_ref().unwrap()["timestamp_source"], "ingestion");
    // give the executor time to have written actions if it (wrongly) would
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(store.action_logs_for_event(&event_id).await.unwrap().is_empty());
    assert!(read_topic(&c.topic("triggers"), Duration::from_secs(4), 0).is_empty(), "no trigger");
}
