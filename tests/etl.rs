//! Hightouch and Census as they really connect, end to end (roles as processes, real Kafka and
//! Cassandra): Segment-shaped bodies, rows, both JSON-RPC destination protocols with per-row
//! results, audience membership, a resent sync firing once, and the per-template answer to a
//! verified request that cannot be used.

use serde_json::{json, Value};
use std::time::Duration;
use tributary_tests::recorder::Recorder;
use tributary_tests::{wait_actions, wait_event, Cluster};

const HT_SECRET: &str = "ht-destination-secret";
const CENSUS_SECRET: &str = "census-destination-secret";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).expect(path)
}

fn event_id(request_id: &Value, index: u32) -> String {
    tributary_model::ids::event_id(request_id.as_str().expect("request_id"), index)
}

fn rpc(c: &Cluster, token: &str, secret: &str, body: &[u8]) -> (u16, Value) {
    let auth = format!("Bearer {secret}");
    let (s, v, _) = c.gateway(
        "POST",
        &format!("/integrations/receive/{token}/rpc"),
        &[("authorization", &auth), ("content-type", "application/json")],
        body,
    );
    (s, v)
}

#[tokio::test(flavor = "multi_thread")]
async fn hightouch_and_census_bodies_rows_json_rpc_audiences_and_answers() {
    let mut c = Cluster::new();
    c.start_all_roles();
    let (_, ht) = c.create_source("ht", "hightouch");
    let (_, census) = c.create_source("census", "census");
    let (_, svix) = c.create_source("svix", "http");
    let (_, seg) = c.create_source("seg", "segment");
    let env = |k: &str| format!("/v1/sources/{k}/environments/development");
    c.admin_ok("PATCH", &env("ht"), Some(&json!({"verification": {"scheme": "bearer", "secrets": [HT_SECRET]}})));
    c.admin_ok("PATCH", &env("census"), Some(&json!({"verification": {"scheme": "bearer", "secrets": [CENSUS_SECRET]}})));
    let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    c.admin_ok("PATCH", &env("svix"), Some(&json!({"verification": {"scheme": "standard_webhooks", "secrets": [whsec]}})));
    let m = |k: &str, body: Value| c.admin_ok("POST", &format!("{}/mappings", env(k)), Some(&body));
    m("ht", json!({"event_type": "hightouch.add", "action_type": "add_to_audience",
                   "parameters": {"audience_key": "event.configuration.audience_key", "tenant": "data.tenant"}}));
    m("ht", json!({"event_type": "hightouch.remove", "action_type": "remove_from_audience",
                   "parameters": {"audience_key": "event.configuration.audience_key", "tenant": "data.tenant"}}));
    m("census", json!({"event_type": "census.upsert", "action_type": "add_to_audience",
                       "parameters": {"audience_key": "data.audience_key"}}));
    // an unknown action type is refused with the accepted ones named
    let (s, v) = c.admin("POST", &format!("{}/mappings", env("census")),
        Some(&json!({"event_type": "census.upsert", "action_type": "add_to_list", "parameters": {}})));
    assert_eq!(s, 422, "{v}");
    assert!(v.to_string().contains("add_to_audience"), "{v}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let store = c.store().await;
    let ht_auth = format!("Bearer {HT_SECRET}");
    let census_auth = format!("Bearer {CENSUS_SECRET}");

    // 1. Hightouch Events (its HTTP API's documented track) is a track of user 123, not an
    //    identify of nobody.
    let (s, v) = c.post_event(&ht, &[("authorization", &ht_auth)], &fixture("hightouch/events-http-api-track.json"));
    assert_eq!(s, 202, "{v}");
    let log = wait_event(&store, &event_id(&v["request_id"], 0)).await;
    assert_eq!(log.status, "processed");
    assert_eq!(log.event_type.as_deref(), Some("track"));
    assert_eq!(log.name.as_deref(), Some("Purchase completed"));
    assert_eq!(log.user_id.as_deref(), Some("123"));
    let n = log.normalized.unwrap();
    assert_eq!(n["data"], json!({"cart_total": 24.99}));
    assert_eq!(n["timestamp_source"], "originalTimestamp");
    assert_eq!(n["idempotency_key"], "7b1e2872-4ebb-4779-b9ad-e7aa1a8eab82");

    // 2. A Census Segment-style identify: traits as data.
    let body = br#"{"type":"identify","userId":"c-9","traits":{"email":"c9@example.org"},"messageId":"cen-1","timestamp":"2024-07-01T09:30:00Z"}"#;
    let (s, v) = c.post_event(&census, &[("authorization", &census_auth)], body);
    assert_eq!(s, 202, "{v}");
    let log = wait_event(&store, &event_id(&v["request_id"], 0)).await;
    assert_eq!((log.event_type.as_deref(), log.user_id.as_deref()), (Some("identify"), Some("c-9")));
    assert_eq!(log.normalized.unwrap()["data"], json!({"email": "c9@example.org"}));
    assert_eq!(store.get_user("development", "c-9").await.unwrap(), None, "no identify mapping: no user");

    // 3. A row (Census HTTP Request destination): the user id column is the id, not data.
    let (s, v) = c.post_event(&census, &[("authorization", &census_auth)],
        br#"[{"user_id":"row-1","email":"r1@example.org","updated_at":"2024-07-01T09:30:00Z"}]"#);
    assert_eq!(s, 202, "{v}");
    let log = wait_event(&store, &event_id(&v["request_id"], 0)).await;
    assert_eq!((log.event_type.as_deref(), log.user_id.as_deref()), (Some("identify"), Some("row-1")));
    let n = log.normalized.unwrap();
    assert_eq!(n["data"], json!({"email": "r1@example.org", "updated_at": "2024-07-01T09:30:00Z"}));
    assert_eq!(n["timestamp_source"], "ingestion", "no timestamp path configured");

    // 4. Hightouch Embedded Destination `add`: two rows in, one rejected by its primary key.
    let add = fixture("hightouch/embedded-destination/add.json");
    let (s, v) = rpc(&c, &ht, HT_SECRET, &add);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], "a2d7b6c9-0f1a-4b2c-9d4e-5f6071829304");
    let rejected = v["result"]["rejectedRows"].as_array().expect("rejectedRows").clone();
    assert_eq!(rejected.len(), 1, "{v}");
    assert_eq!(rejected[0]["id"], "r3");
    assert!(rejected[0]["reason"].as_str().unwrap().starts_with("missing_identity"), "{v}");
    let first_add = v["request_id"].clone();
    let log = wait_event(&store, &event_id(&first_add, 0)).await;
    assert_eq!((log.event_type.as_deref(), log.user_id.as_deref()), (Some("hightouch.add"), Some("user_123")));
    assert_eq!(log.normalized.as_ref().unwrap()["data"], json!({"id": "r1", "tenant": "acme"}));
    let refused = wait_event(&store, &event_id(&first_add, 2)).await;
    assert_eq!((refused.status.as_str(), refused.error_code.as_deref()), ("rejected", Some("missing_identity")));
    let actions = wait_actions(&store, &event_id(&first_add, 0), 1).await;
    assert_eq!((actions[0].action_type.as_str(), actions[0].status.as_str()), ("add_to_audience", "success"), "{actions:?}");
    assert_eq!(
        store.audience_memberships("development", "new-signups", "user_123").await.unwrap().into_iter().map(|m| m.0).collect::<Vec<_>>(),
        vec![Some("acme".to_string())]
    );
    wait_actions(&store, &event_id(&first_add, 1), 1).await;
    let m456 = store.audience_memberships("development", "new-signups", "user_456").await.unwrap();
    assert_eq!(m456.len(), 1);
    assert_eq!(m456[0].0, None, "no tenant");

    // 5. The same call again (a resend): answered the same, its rows logged as duplicates,
    //    no second action.
    let (s, v) = rpc(&c, &ht, HT_SECRET, &add);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["rejectedRows"].as_array().unwrap().len(), 1);
    let again = wait_event(&store, &event_id(&v["request_id"], 0)).await;
    assert_eq!(again.status, "duplicate", "{again:?}");
    assert_eq!(again.duplicate_of.as_deref(), Some(event_id(&first_add, 0).as_str()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(store.action_logs_for_event(&event_id(&v["request_id"], 0)).await.unwrap().is_empty(), "fired once");

    // 6. `remove` (a mirror sync's row that left the model) takes the member out.
    let (s, v) = rpc(&c, &ht, HT_SECRET, &fixture("hightouch/embedded-destination/remove.json"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"], json!({"rejectedRows": []}));
    let actions = wait_actions(&store, &event_id(&v["request_id"], 0), 1).await;
    assert_eq!((actions[0].action_type.as_str(), actions[0].status.as_str()), ("remove_from_audience", "success"));
    assert!(store.audience_memberships("development", "new-signups", "user_123").await.unwrap().is_empty());

    // 7. Configuration methods and protocol errors.
    let (_, v) = rpc(&c, &ht, HT_SECRET, br#"{"jsonrpc":"2.0","method":"behavior","id":1,"params":{"configuration":{"object":"audiences","mode":"insert","audience_key":"a"}}}"#);
    assert_eq!(v["result"]["operations"], json!({"add": true, "change": false, "remove": false}), "{v}");
    let (_, v) = rpc(&c, &ht, HT_SECRET, br#"{"jsonrpc":"2.0","method":"validate","id":2,"params":{"configuration":{"object":"audiences","audience_key":""}}}"#);
    assert_eq!(v["result"]["errors"], json!(["Audience Key is required"]));
    let (s, v) = rpc(&c, &ht, HT_SECRET, br#"{"jsonrpc":"2.0","method":"sync","id":3,"params":{}}"#);
    assert_eq!((s, v["error"]["code"].as_i64()), (200, Some(-32601)), "{v}");
    let (s, v) = rpc(&c, &ht, HT_SECRET, b"{not json");
    assert_eq!((s, v["error"]["code"].as_i64(), v["id"].clone()), (200, Some(-32700), Value::Null), "{v}");
    let (s, v) = rpc(&c, &ht, "wrong", &add);
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["data"]["code"], "signature_mismatch");
    assert!(!v.to_string().contains("wrong"), "the secret is not echoed");
    let (s, v) = rpc(&c, &svix, HT_SECRET, &add);
    assert_eq!((s, v["error"]["data"]["code"].as_str()), (404, Some("not_rpc")), "{v}");

    // 8. Census Custom Destination: configuration calls, then a sync_batch with one bad record.
    let (s, v) = rpc(&c, &census, CENSUS_SECRET, &fixture("census/custom-destination/test_connection.json"));
    assert_eq!((s, v["result"].clone()), (200, json!({"success": true})), "{v}");
    assert_eq!(v["id"], "d33ded2672b7877ff833c317892d748c");
    let (_, v) = rpc(&c, &census, CENSUS_SECRET, &fixture("census/custom-destination/list_objects.json"));
    assert_eq!(v["result"]["objects"][0]["object_api_name"], "audience_member", "{v}");
    let batch = fixture("census/custom-destination/sync_batch.json");
    let (s, v) = rpc(&c, &census, CENSUS_SECRET, &batch);
    assert_eq!(s, 200, "{v}");
    let results = v["result"]["record_results"].as_array().expect("record_results").clone();
    assert_eq!(results.len(), 3, "every record answered: {v}");
    assert_eq!(results[0], json!({"identifier": "user_123", "success": true}));
    assert_eq!(results[1], json!({"identifier": "user_456", "success": true}));
    assert_eq!((results[2]["identifier"].clone(), results[2]["success"].clone()), (json!(true), json!(false)));
    assert!(results[2]["error_message"].as_str().unwrap().starts_with("invalid_user_id"), "{v}");
    let census_req = v["request_id"].clone();
    let log = wait_event(&store, &event_id(&census_req, 0)).await;
    assert_eq!((log.event_type.as_deref(), log.user_id.as_deref()), (Some("census.upsert"), Some("user_123")));
    assert_eq!(log.normalized.as_ref().unwrap()["idempotency_key"], "census:309:602:upsert:user_123");
    let bad = wait_event(&store, &event_id(&census_req, 2)).await;
    assert_eq!((bad.status.as_str(), bad.error_code.as_deref()), ("rejected", Some("invalid_user_id")));
    wait_actions(&store, &event_id(&census_req, 0), 1).await;
    assert_eq!(store.audience_memberships("development", "new-signups", "user_123").await.unwrap().len(), 1);
    // Census retries the batch within the run: it fires once.
    let (_, v) = rpc(&c, &census, CENSUS_SECRET, &batch);
    assert_eq!(wait_event(&store, &event_id(&v["request_id"], 1)).await.status, "duplicate");

    // 9. Part 3: a verified Standard Webhooks request whose body is not JSON is answered 2xx
    //    (Svix would retry a 4xx for days, then disable the endpoint) and logged rejected.
    let body = br#"{"type":"invoice.paid","data":"#;
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let sig = tributary_sources::verify::sign_standard_webhooks(whsec, "msg_etl_1", &ts, body).unwrap();
    let (s, v) = c.post_event(&svix, &[("webhook-id", "msg_etl_1"), ("webhook-timestamp", &ts), ("webhook-signature", &sig)], body);
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["accepted"].clone(), v["rejected"].clone()), (json!(0), json!(1)));
    assert_eq!(v["errors"][0]["code"], "invalid_json");
    let log = wait_event(&store, &event_id(&v["request_id"], 0)).await;
    assert_eq!((log.status.as_str(), log.error_code.as_deref()), ("rejected", Some("invalid_json")));
    assert_eq!(log.raw, json!(r#"{"type":"invoice.paid","data":"#), "the body as received, as a string");
    // ... a bad signature is still a 401 (not verified: nothing to accept)
    let (s, _) = c.post_event(&svix, &[("webhook-id", "msg_etl_1"), ("webhook-timestamp", &ts), ("webhook-signature", "v1,AAAA")], body);
    assert_eq!(s, 401);
    // ... and a Segment source keeps the 4xx, which Segment drops instead of retrying.
    let (s, v) = c.post_event(&seg, &[], br#"{"type":"track","userId":"u1"}"#);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("missing_event")), "{v}");
}

/// Audience rows of a source whose sink is HTTP reach a Knock-compatible API as its Audiences
/// API documents them (https://docs.knock.app/api-reference/audiences: `POST` / `DELETE
/// /v1/audiences/{key}/members`, body `{"members": [{"user": {"id"}, "tenant"?}]}`), each with
/// the action id as Idempotency-Key (kept across retries), and membership is also stored.
#[tokio::test(flavor = "multi_thread")]
async fn audience_rows_reach_an_http_sink_as_knock_member_calls_with_an_idempotency_key() {
    // the first call meets a 503: retried with the same key
    let knock = Recorder::start(vec![(503, vec![])]);
    let mut c = Cluster::new();
    c.set_env("TRIBUTARY_WORKERS_SINK_BACKOFF_MS", "50");
    c.start_all_roles();
    let (_, ht) = c.create_source("ht", "hightouch");
    let env = "/v1/sources/ht/environments/development";
    c.admin_ok("PATCH", env, Some(&json!({"verification": {"scheme": "bearer", "secrets": [HT_SECRET]},
        "sink": {"kind": "http", "base_url": knock.url(), "api_key": "sk_test_aud"}})));
    for (event_type, action_type) in [("hightouch.add", "add_to_audience"), ("hightouch.remove", "remove_from_audience")] {
        c.admin_ok("POST", &format!("{env}/mappings"), Some(&json!({"event_type": event_type, "action_type": action_type,
            "parameters": {"audience_key": "event.configuration.audience_key", "tenant": "data.tenant"}})));
    }
    let store = c.store().await;

    // add: user_123 (tenant acme) and user_456 (no tenant); the third row has no user and is
    // refused before any action
    let (s, v) = rpc(&c, &ht, HT_SECRET, &fixture("hightouch/embedded-destination/add.json"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["rejectedRows"].as_array().unwrap().len(), 1, "{v}");
    let added = v["request_id"].clone();
    let a123 = wait_actions(&store, &event_id(&added, 0), 1).await;
    let a456 = wait_actions(&store, &event_id(&added, 1), 1).await;
    for a in [&a123[0], &a456[0]] {
        assert_eq!((a.action_type.as_str(), a.status.as_str()), ("add_to_audience", "success"), "{a:?}");
    }
    assert_eq!(store.audience_memberships("development", "new-signups", "user_123").await.unwrap().into_iter().map(|m| m.0).collect::<Vec<_>>(),
        vec![Some("acme".to_string())]);
    assert_eq!(store.audience_memberships("development", "new-signups", "user_456").await.unwrap().into_iter().map(|m| m.0).collect::<Vec<_>>(),
        vec![None]);

    let reqs = knock.requests();
    let posts: Vec<_> = reqs.iter().filter(|q| q.method == "POST").collect();
    assert_eq!(posts.len(), 3, "two adds, one of them retried after the 503: {reqs:?}");
    for q in &posts {
        assert_eq!(q.path, "/v1/audiences/new-signups/members");
        assert_eq!(q.header("authorization"), Some("Bearer sk_test_aud"));
        assert_eq!(q.header("content-type"), Some("application/json"));
    }
    let by_key = |id: &str| posts.iter().filter(|q| q.header("idempotency-key") == Some(id)).collect::<Vec<_>>();
    let (p123, p456) = (by_key(&a123[0].action_id), by_key(&a456[0].action_id));
    assert_eq!(p123.len() + p456.len(), 3, "every call carries its action's id as the key");
    assert_ne!(a123[0].action_id, a456[0].action_id);
    let retried = if p123.len() == 2 { &p123 } else { &p456 };
    assert_eq!(retried.len(), 2, "the 503 was retried with the same key: {reqs:?}");
    assert_eq!(retried[0].body, retried[1].body);
    assert_eq!(p123[0].body, json!({"members": [{"user": {"id": "user_123"}, "tenant": "acme"}]}));
    assert_eq!(p456[0].body, json!({"members": [{"user": {"id": "user_456"}}]}), "no tenant: no tenant field");
    assert_eq!(a123[0].result.as_ref().unwrap()["http_attempts"], json!(p123.len()));

    // remove: user_123 leaves the audience (a mirror sync's row that left the model)
    let (s, v) = rpc(&c, &ht, HT_SECRET, &fixture("hightouch/embedded-destination/remove.json"));
    assert_eq!((s, v["result"].clone()), (200, json!({"rejectedRows": []})), "{v}");
    let r = wait_actions(&store, &event_id(&v["request_id"], 0), 1).await;
    assert_eq!((r[0].action_type.as_str(), r[0].status.as_str()), ("remove_from_audience", "success"), "{r:?}");
    assert!(store.audience_memberships("development", "new-signups", "user_123").await.unwrap().is_empty());
    assert_eq!(store.audience_memberships("development", "new-signups", "user_456").await.unwrap().len(), 1, "the other member stays");
    let deletes: Vec<_> = knock.requests().into_iter().filter(|q| q.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].path, "/v1/audiences/new-signups/members");
    assert_eq!(deletes[0].body, json!({"members": [{"user": {"id": "user_123"}, "tenant": "acme"}]}));
    assert_eq!(deletes[0].header("idempotency-key"), Some(r[0].action_id.as_str()));
    assert_eq!(deletes[0].header("authorization"), Some("Bearer sk_test_aud"));
}
