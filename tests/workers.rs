//! The worker fleet end to end (roles as separate processes, real Kafka and Cassandra): every
//! action type, order, filters, identify merge, dedup, skipped actions, retention TTLs, the
//! HTTP sink's retries, and an executor killed mid-stream.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tributary_model::ActionLog;
use tributary_store::Store;
use tributary_tests::recorder::Recorder;
use tributary_tests::{read_topic, wait_actions, wait_event, Cluster};

fn event_id(resp: &Value, index: u32) -> String {
    tributary_model::ids::event_id(resp["request_id"].as_str().expect("request_id"), index)
}

fn send(c: &Cluster, token: &str, body: Value) -> Value {
    let (s, v) = c.post_event(token, &[], body.to_string().as_bytes());
    assert!(s == 202, "{s} {v}");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_in_order_with_filters_identify_merge_tenants_dedup_and_ttl() {
    let mut c = Cluster::new();
    c.start_all_roles();
    let (_, token) = c.create_source("shop", "segment");
    let base = "/v1/sources/shop/environments/development";
    c.admin_ok("PATCH", base, Some(&json!({"retention_days": 7})));
    let m = |body: Value| c.admin_ok("POST", &format!("{base}/mappings"), Some(&body));
    // created in the "wrong" order on purpose: trigger before identify
    let trigger = m(json!({"event_type": "track", "event_name": "Order Completed", "action_type": "trigger_workflow",
        "parameters": {"workflow": "order-completed", "actor": "user_id", "tenant": "data.store", "data": "data"},
        "filter": "data.total > 100"}));
    let notify = m(json!({"event_type": "track", "event_name": "Order Completed", "action_type": "trigger_workflow",
        "parameters": {"workflow": "notify-team", "recipients": "data.notify"}}));
    let ident = m(json!({"event_type": "track", "event_name": "Order Completed", "action_type": "identify_user",
        "parameters": {"properties": "data.customer"}}));
    m(json!({"event_type": "identify", "action_type": "identify_user"}));
    m(json!({"event_type": "group", "action_type": "set_tenant"}));
    m(json!({"event_type": "track", "event_name": "Order Cancelled", "action_type": "cancel_workflow",
        "parameters": {"workflow": "order-completed", "cancellation_key": "data.order_id"}}));
    let store = c.store().await;

    // identify merge across two events
    let r1 = send(&c, &token, json!({"type": "identify", "userId": "u1", "messageId": "i-1",
        "traits": {"name": "Kim", "email": "kim@example.org", "prefs": {"email": true}, "tier": "gold"}}));
    wait_actions(&store, &event_id(&r1, 0), 1).await;
    let r2 = send(&c, &token, json!({"type": "identify", "userId": "u1", "messageId": "i-2",
        "traits": {"phone": "+4915112345678", "prefs": {"sms": false}, "tier": null}}));
    let a2 = wait_actions(&store, &event_id(&r2, 0), 1).await;
    assert_eq!(a2[0].status, "success");
    let user = store.get_user("development", "u1").await.unwrap().unwrap();
    assert_eq!(
        Value::Object(user),
        json!({"name": "Kim", "email": "kim@example.org", "prefs": {"email": true, "sms": false}, "tier": null,
               "phone_number": "+4915112345678"})
    );

    // one event, three mappings: identify runs first, the filtered trigger fires, the trigger
    // whose recipients path does not resolve is skipped with the reason
    let big = json!({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "o-big",
        "properties": {"order_id": "o-1", "total": 150, "store": "acme", "customer": {"plan": "pro"}}});
    let r3 = send(&c, &token, big.clone());
    let e3 = event_id(&r3, 0);
    let a3 = wait_actions(&store, &e3, 3).await;
    let by_mapping: HashMap<&str, &ActionLog> = a3.iter().map(|a| (a.mapping_id.as_str(), a)).collect();
    assert_eq!(by_mapping[ident["id"].as_str().unwrap()].status, "success");
    assert_eq!(by_mapping[trigger["id"].as_str().unwrap()].status, "success");
    let skipped = by_mapping[notify["id"].as_str().unwrap()];
    assert_eq!(skipped.status, "skipped");
    assert!(skipped.error.as_deref().unwrap().contains("data.notify"), "{skipped:?}");
    let order: Vec<&str> = {
        let mut v: Vec<&ActionLog> = a3.iter().collect();
        v.sort_by_key(|a| a.inserted_at);
        v.iter().map(|a| a.action_type.as_str()).collect()
    };
    assert_eq!(order.first(), Some(&"identify_user"), "identify first: {order:?}");
    assert!(store.get_user("development", "u1").await.unwrap().unwrap().get("plan") == Some(&json!("pro")));

    // the filter keeps the trigger from firing for a small order
    let r4 = send(&c, &token, json!({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "o-small",
        "properties": {"order_id": "o-2", "total": 50, "customer": {}}}));
    let a4 = wait_actions(&store, &event_id(&r4, 0), 2).await;
    assert!(a4.iter().all(|a| a.mapping_id != trigger["id"].as_str().unwrap()), "{a4:?}");

    // group → tenant; cancel
    let r5 = send(&c, &token, json!({"type": "group", "userId": "u1", "groupId": "acme", "messageId": "g-1",
        "traits": {"name": "Acme", "plan": "enterprise"}}));
    wait_actions(&store, &event_id(&r5, 0), 1).await;
    assert_eq!(Value::Object(store.get_tenant("development", "acme").await.unwrap().unwrap()), json!({"name": "Acme", "plan": "enterprise"}));
    let r6 = send(&c, &token, json!({"type": "track", "event": "Order Cancelled", "userId": "u1", "messageId": "c-1",
        "properties": {"order_id": "o-1"}}));
    let a6 = wait_actions(&store, &event_id(&r6, 0), 1).await;
    assert_eq!((a6[0].action_type.as_str(), a6[0].status.as_str()), ("cancel_workflow", "success"));

    // the same message id again (a CDP retry): logged as a duplicate, no action
    let r7 = send(&c, &token, big);
    let e7 = event_id(&r7, 0);
    let log7 = wait_event(&store, &e7).await;
    assert_eq!(log7.status, "duplicate");
    assert_eq!(log7.duplicate_of.as_deref(), Some(e3.as_str()));

    // the sink saw exactly one trigger (the big order) and one cancel
    let sink = read_topic(&c.topic("triggers"), Duration::from_secs(20), 2);
    assert_eq!(sink.len(), 2, "{sink:#?}");
    let t = sink.iter().find(|(_, v)| v["action"] == "trigger").unwrap();
    assert_eq!(t.1["workflow"], "order-completed");
    assert_eq!(t.1["recipients"], json!(["u1"]));
    assert_eq!(t.1["actor"], "u1");
    assert_eq!(t.1["tenant"], "acme");
    assert_eq!(t.1["data"]["total"], 150);
    let x = sink.iter().find(|(_, v)| v["action"] == "cancel").unwrap();
    assert_eq!(x.1["cancellation_key"], "o-1");
    assert!(store.action_logs_for_event(&e7).await.unwrap().is_empty());

    // rows carry the environment's retention (7 days)
    let week = 7 * 86_400;
    let log3 = wait_event(&store, &e3).await;
    assert!((week - 600..=week).contains(&log3.ttl.unwrap()), "{:?}", log3.ttl);
    assert!(a3.iter().all(|a| (week - 600..=week).contains(&a.ttl.unwrap())));

    // the same message id twice in one request (one translator batch, whose claims are read
    // and written for the batch at once): the first is the event, the second its duplicate
    let twice = json!({"type": "track", "event": "Order Cancelled", "userId": "u2", "messageId": "twice",
        "properties": {"order_id": "o-2"}});
    let r8 = send(&c, &token, json!({"batch": [twice, twice]}));
    let (first, second) = (event_id(&r8, 0), event_id(&r8, 1));
    assert_eq!(wait_event(&store, &first).await.status, "processed");
    let dup = wait_event(&store, &second).await;
    assert_eq!(dup.status, "duplicate");
    assert_eq!(dup.duplicate_of.as_deref(), Some(first.as_str()));
    assert_eq!(wait_actions(&store, &first, 1).await.len(), 1);
    assert!(store.action_logs_for_event(&second).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn http_sink_retries_500_and_429_then_delivers_once_with_an_idempotency_key() {
    let knock = Recorder::start(vec![(500, vec![]), (429, vec![("retry-after".into(), "1".into())])]);
    let refusing = Recorder::start(vec![(422, vec![])]);
    let mut c = Cluster::new();
    c.set_env("TRIBUTARY_WORKERS_SINK_BACKOFF_MS", "100");
    c.start_all_roles();
    let (_, token) = c.create_source("app", "segment");
    let (_, token2) = c.create_source("app2", "segment");
    for (src, url) in [("app", knock.url()), ("app2", refusing.url())] {
        let base = format!("/v1/sources/{src}/environments/development");
        c.admin_ok("PATCH", &base, Some(&json!({"sink": {"kind": "http", "base_url": url, "api_key": "sk_test_123"}})));
        c.admin_ok("POST", &format!("{base}/mappings"), Some(&json!({"event_type": "track", "event_name": "Signed Up",
            "action_type": "trigger_workflow", "parameters": {"workflow": "welcome", "tenant": {"literal": "acme"}}})));
        c.admin_ok("POST", &format!("{base}/mappings"), Some(&json!({"event_type": "identify", "action_type": "identify_user"})));
    }
    let store = c.store().await;

    let r = send(&c, &token, json!({"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "s-1", "properties": {"plan": "pro"}}));
    let a = wait_actions(&store, &event_id(&r, 0), 1).await;
    assert_eq!(a[0].status, "success", "{a:?}");
    assert_eq!(a[0].result.as_ref().unwrap()["http_attempts"], 3);
    assert_eq!(a[0].result.as_ref().unwrap()["response"]["workflow_run_id"], "run-3");
    let reqs = knock.requests();
    assert_eq!(reqs.len(), 3);
    for q in &reqs {
        assert_eq!((q.method.as_str(), q.path.as_str()), ("POST", "/v1/workflows/welcome/trigger"));
        assert_eq!(q.header("authorization"), Some("Bearer sk_test_123"));
        assert_eq!(q.header("idempotency-key"), Some(a[0].action_id.as_str()), "the same key on every retry");
        assert_eq!(q.body, json!({"recipients": ["u1"], "actor": null, "tenant": "acme", "data": {"plan": "pro"}}));
    }
    assert!(reqs[2].at.duration_since(reqs[1].at) >= Duration::from_millis(900), "Retry-After: 1 was respected");

    let r = send(&c, &token, json!({"type": "identify", "userId": "u 1", "messageId": "s-2", "traits": {"phone": "+1"}}));
    wait_actions(&store, &event_id(&r, 0), 1).await;
    let put = knock.requests().into_iter().find(|q| q.method == "PUT").expect("identify went to the sink");
    assert_eq!(put.path, "/v1/users/u%201");
    assert_eq!(put.body, json!({"phone_number": "+1"}));

    // a 4xx other than 429 is not retried: the action fails with the answer
    let r = send(&c, &token2, json!({"type": "track", "event": "Signed Up", "userId": "u2", "messageId": "s-3"}));
    let a = wait_actions(&store, &event_id(&r, 0), 1).await;
    assert_eq!(a[0].status, "failed");
    assert!(a[0].error.as_deref().unwrap().starts_with("422"), "{a:?}");
    assert_eq!(refusing.requests().len(), 1);
}

/// Send `n` events in batches of 50, with message ids `{tag}-{i}`. `midway` runs once a
/// quarter of them is sent and the first tenth executed: while the workers are busy with the
/// stream. Returns the event ids.
async fn send_stream(c: &mut Cluster, store: &Store, token: &str, tag: &str, n: usize, midway: impl FnOnce(&mut Cluster)) -> Vec<String> {
    let mut ids = Vec::new();
    let mut midway = Some(midway);
    for chunk in 0..(n / 50) {
        let items: Vec<Value> = (0..50)
            .map(|i| json!({"type": "track", "event": "E", "userId": format!("u{}", (chunk * 50 + i) % 17),
                            "messageId": format!("{tag}-{}", chunk * 50 + i)}))
            .collect();
        let v = send(c, token, json!({"batch": items}));
        ids.extend((0..50).map(|i| event_id(&v, i)));
        if chunk == n / 200 {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while store.action_logs_for_event(&ids[n / 10]).await.unwrap().is_empty() {
                assert!(std::time::Instant::now() < deadline, "the stream is not being executed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (midway.take().unwrap())(c);
        }
    }
    ids
}

/// Wait until every event has exactly one `success` action log; name the ones that do not.
async fn all_succeeded(store: &Store, ids: &[String], phase: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut missing = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let a = store.action_logs_for_event(id).await.unwrap();
            if a.len() != 1 || a[0].status != "success" {
                let log = store.get_event_log(id).await.unwrap().map(|l| l.status);
                missing.push(format!("#{i} {id} event_log={log:?} actions={}", a.len()));
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{phase}: {} events without a success action: {:?}", missing.len(), &missing[..missing.len().min(10)]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Triggers on the sink per idempotency key, for events of `ids`.
fn triggers_per_key(c: &Cluster, ids: &[String], at_least: usize) -> HashMap<String, usize> {
    let wanted: std::collections::HashSet<&String> = ids.iter().collect();
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for (_, v) in read_topic(&c.topic("triggers"), Duration::from_secs(30), at_least) {
        if wanted.contains(&v["event_id"].as_str().unwrap_or("").to_string()) {
            *per_key.entry(v["idempotency_key"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    per_key
}

/// Every event has exactly one trigger on the sink (read_committed): nothing lost, nothing twice.
fn exactly_one_trigger_each(c: &Cluster, ids: &[String], at_least: usize, phase: &str) {
    let per_key = triggers_per_key(c, ids, at_least);
    assert_eq!(per_key.len(), ids.len(), "{phase}: every event triggered (nothing lost)");
    let repeated: Vec<_> = per_key.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "{phase}: {} actions fired more than once: {:?}", repeated.len(), &repeated[..repeated.len().min(5)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_killed_mid_stream_lose_nothing_and_fire_nothing_twice() {
    let mut c = Cluster::new();
    if let Ok(l) = std::env::var("TEST_LANES") { c.set_env("TRIBUTARY_WORKERS_LANES", &l); }
    c.start_all_roles();
    eprintln!("cluster {}", c.name);
    let (_, token) = c.create_source("bulk", "segment");
    c.admin_ok("POST", "/v1/sources/bulk/environments/development/mappings", Some(&json!({"event_type": "track",
        "action_type": "trigger_workflow", "parameters": {"workflow": "bulk"}})));
    let store = c.store().await;
    const N: usize = 1000;

    // SIGKILL the executor: no drain, no commit; its open transaction (triggers and their
    // logs) is aborted by the next executor, which does the batch again.
    let killed = send_stream(&mut c, &store, &token, "k", N, |c| c.kill("executor")).await;
    c.start("executor");
    all_succeeded(&store, &killed, "after SIGKILL of the executor").await;
    exactly_one_trigger_each(&c, &killed, N, "after SIGKILL of the executor");

    // SIGKILL the translator and the mapper together: their outputs are transactional too, so
    // no event reaches the executor twice.
    let upstream = send_stream(&mut c, &store, &token, "u", N, |c| {
        c.kill("translator");
        c.kill("mapper");
    })
    .await;
    c.start("translator");
    c.start("mapper");
    all_succeeded(&store, &upstream, "after SIGKILL of translator and mapper").await;
    exactly_one_trigger_each(&c, &upstream, 2 * N, "after SIGKILL of translator and mapper");

    // SIGTERM: the executor drains, commits, and the next one repeats nothing
    let graceful = send_stream(&mut c, &store, &token, "g", N, |c| c.stop("executor")).await;
    c.start("executor");
    all_succeeded(&store, &graceful, "after SIGTERM").await;
    exactly_one_trigger_each(&c, &graceful, 3 * N, "after SIGTERM");

    // Rebalance: a second executor joins mid-stream and takes partitions from the busy first.
    let scaled = send_stream(&mut c, &store, &token, "s", N, |c| {
        c.start_with("executor", &[("TRIBUTARY_WORKERS_INSTANCE_ID", "second".into())]);
    })
    .await;
    all_succeeded(&store, &scaled, "after a second executor joined").await;
    exactly_one_trigger_each(&c, &scaled, 4 * N, "after a second executor joined");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_that_keep_failing_go_to_the_dead_letter_topic_and_the_stage_goes_on() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;
    let mut c = Cluster::new();
    c.set_env("TRIBUTARY_WORKERS_MAX_ATTEMPTS", "2");
    c.start_all_roles();
    let (_, token) = c.create_source("dl", "segment");
    c.admin_ok("POST", "/v1/sources/dl/environments/development/mappings", Some(&json!({"event_type": "track",
        "action_type": "trigger_workflow", "parameters": {"workflow": "w"}})));
    let store = c.store().await;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", tributary_tests::kafka()).create().unwrap();

    // 1. not a plan at all
    producer
        .send(FutureRecord::to(&c.topic("actions")).key("development/x").payload("{not a plan"), Duration::from_secs(5))
        .await
        .unwrap();
    // 2. a plan the database refuses (a partition key over Cassandra's 64 KiB limit)
    let r = send(&c, &token, json!({"type": "track", "event": "E", "userId": "u1", "messageId": "ok-0"}));
    let good = wait_actions(&store, &event_id(&r, 0), 1).await;
    let log = store.get_event_log(&event_id(&r, 0)).await.unwrap().unwrap();
    let mut plan = json!({
        "event": {"event_id": "poison-1", "request_id": "poison", "index": 0, "source": "dl",
                  "environment": "e".repeat(70_000), "template": "segment", "received_at": log.received_at,
                  "verification": "unverified", "status": "processed", "normalized": log.normalized},
        "actions": []
    });
    plan["event"]["normalized"]["event"] = json!({});
    producer
        .send(FutureRecord::to(&c.topic("actions")).key("development/poison").payload(&plan.to_string()), Duration::from_secs(5))
        .await
        .unwrap();
    // 3. the stage goes on: a good event after both is executed
    let r = send(&c, &token, json!({"type": "track", "event": "E", "userId": "u1", "messageId": "ok-1"}));
    let after = wait_actions(&store, &event_id(&r, 0), 1).await;
    assert_eq!((good[0].status.as_str(), after[0].status.as_str()), ("success", "success"));

    let dlq = read_topic(&c.topic("dead-letter"), Duration::from_secs(20), 2);
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let poison_log = wait_event(&store, "poison-1").await;
    assert_eq!(poison_log.status, "dead_lettered");
    assert_eq!(poison_log.error_code.as_deref(), Some("dead_lettered"));
    assert!(poison_log.error_message.as_deref().unwrap().contains("rejected by the database"), "{poison_log:?}");
}
