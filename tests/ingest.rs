//! Kafka ingress end to end: a producer the project did not write (kcat, Debian's package)
//! sends to `{prefix}.ingest`; the ingest, translator, mapper and executor roles run as their
//! own processes. Checked: event logs, action logs and the trigger topic for a single event, a
//! `{"batch": [...]}` and an array; a record that is not JSON and one over the size limit
//! (rejected event logs with their codes); records naming no known source (dead-letter topic
//! with the reason); the token header; and that the stream goes on after each of them.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tributary_model::EventLog;
use tributary_tests::{eventually, kafka, read_topic, unique, Cluster};

/// `kcat`, installed from Debian's packages when missing (as root; CI runs as root).
fn kcat() -> &'static str {
    let found = || Command::new("kcat").arg("-V").output().is_ok_and(|o| o.status.success());
    if !found() {
        let st = Command::new("sh")
            .args(["-c", "DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq --no-install-recommends kcat"])
            .status();
        assert!(st.is_ok_and(|s| s.success()) && found(), "this test needs kcat: `apt-get install -y kcat` (as root) failed");
    }
    "kcat"
}

/// Produce `key<TAB>value` lines with kcat, every record with `headers`; waits for kcat to
/// deliver and exit.
fn produce(topic: &str, headers: &[(&str, &str)], records: &[(&str, String)]) {
    let mut cmd = Command::new(kcat());
    cmd.args(["-b", &kafka(), "-P", "-t", topic, "-K", "\t", "-X", "acks=all"]);
    for (k, v) in headers {
        cmd.args(["-H", &format!("{k}={v}")]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run kcat");
    {
        let stdin = child.stdin.as_mut().unwrap();
        for (key, value) in records {
            assert!(!value.contains('\n') && !value.contains('\t'), "one record per line");
            writeln!(stdin, "{key}\t{value}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kcat failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every record of `topic` with its headers (read_committed), once at least `n` arrived.
fn read_with_headers(topic: &str, n: usize, wait: Duration) -> Vec<(HashMap<String, String>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline && out.len() < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect())
                .unwrap_or_default();
            out.push((headers, m.payload().unwrap_or_default().to_vec()));
        }
    }
    out
}

async fn event_logs(c: &Cluster, n: usize) -> Vec<EventLog> {
    let store = c.store().await;
    let ids: Vec<String> = eventually(Duration::from_secs(60), &format!("{n} event logs of source shop"), || {
        let v = c.admin_ok("GET", "/v1/environments/development/events?source=shop&limit=100", None);
        let ids: Vec<String> = v["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
        async move { Some(ids).filter(|ids| ids.len() >= n) }
    })
    .await;
    let mut logs = Vec::new();
    for id in ids {
        logs.push(store.get_event_log(&id).await.unwrap().expect("listed event has a log"));
    }
    logs
}

fn find<'a>(logs: &'a [EventLog], what: &str, pred: impl Fn(&EventLog) -> bool) -> &'a EventLog {
    let hits: Vec<&EventLog> = logs.iter().filter(|l| pred(l)).collect();
    assert_eq!(hits.len(), 1, "exactly one event log for {what}: {logs:#?}");
    hits[0]
}

/// `{topic}:{partition}:{offset}[:{timestamp}]` → (partition, offset).
fn position(origin: &str, topic: &str) -> (i32, i64) {
    let rest = origin.strip_prefix(&format!("{topic}:")).unwrap_or_else(|| panic!("{origin} names {topic}"));
    let mut parts = rest.split(':');
    (parts.next().unwrap().parse().unwrap(), parts.next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn kcat_records_become_events_actions_and_triggers_and_bad_ones_do_not_stop_the_stream() {
    let mut c = Cluster::new();
    c.set_env("TRIBUTARY_INGEST_MAX_RECORD_BYTES", "2048");
    c.migrate();
    // migrate created the ingest topic, with the configured partitions (metadata may take a
    // moment to reach every broker's answer)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(kcat()).args(["-b", &kafka(), "-L", "-t", &c.topic("ingest")]).output().unwrap();
        let meta = String::from_utf8_lossy(&out.stdout).into_owned();
        if meta.contains("with 4 partitions") {
            break;
        }
        assert!(Instant::now() < deadline, "no ingest topic with 4 partitions after migrate: {meta}");
        std::thread::sleep(Duration::from_millis(300));
    }
    c.start("admin");
    let ingest_port = c.start("ingest");
    for role in ["translator", "mapper", "executor"] {
        c.start(role);
    }
    let (_, token) = c.create_source("shop", "segment");
    let base = "/v1/sources/shop/environments/development";
    let trigger = c.admin_ok("POST", &format!("{base}/mappings"), Some(&json!({"event_type": "track", "event_name": "Order Completed",
        "action_type": "trigger_workflow", "parameters": {"workflow": "order-completed", "data": "data"}})));
    c.admin_ok("POST", &format!("{base}/mappings"), Some(&json!({"event_type": "identify", "action_type": "identify_user"})));

    let topic = c.topic("ingest");
    let named = [("tributary-source", "shop"), ("tributary-environment", "development")];
    let order = |user: &str, id: &str| json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": id, "properties": {"total": 42}});
    // keyed by user, as the README recommends
    produce(&topic, &named, &[
        ("u1", order("u1", "m-1").to_string()),
        ("u1", json!({"batch": [
            {"type": "identify", "userId": "u1", "messageId": "m-2", "traits": {"plan": "pro"}},
            order("u2", "m-3"),
            {"type": "track", "userId": "u3", "messageId": "m-x"},
        ]}).to_string()),
        ("u4", json!([order("u4", "m-4")]).to_string()),
    ]);
    // Bad records, then a good one, all on one key (one partition, in this order): the good
    // one is handled after them, so the stream went on.
    let too_large = json!({"type": "track", "event": "Order Completed", "userId": "u9", "properties": {"pad": "x".repeat(3000)}}).to_string();
    produce(&topic, &named, &[("k", r#"{"type":"track","event":"Order Completed""#.to_string()), ("k", too_large)]);
    produce(&topic, &[("tributary-source", "nope"), ("tributary-environment", "development")], &[("k", order("u7", "m-7").to_string())]);
    produce(&topic, &[], &[("k", order("u8", "m-8").to_string())]);
    produce(&topic, &[("tributary-token", &token)], &[("k", order("u5", "m-5").to_string())]);

    // event logs: 1 + 3 + 1 from the readable records, 2 rejected whole records, 1 via token
    let logs = event_logs(&c, 8).await;
    assert_eq!(logs.len(), 8, "{logs:#?}");
    assert!(logs.iter().all(|l| l.source == "shop" && l.environment == "development" && l.verification == "kafka"), "{logs:#?}");
    for (user, name) in [("u1", "Order Completed"), ("u2", "Order Completed"), ("u4", "Order Completed"), ("u5", "Order Completed")] {
        let l = find(&logs, user, |l| l.user_id.as_deref() == Some(user) && l.name.as_deref() == Some(name));
        assert_eq!(l.status, "processed", "{l:?}");
        assert!(l.request_id.starts_with(&format!("{topic}:")), "the request id names the Kafka record: {}", l.request_id);
    }
    let ident = find(&logs, "identify", |l| l.event_type.as_deref() == Some("identify"));
    assert_eq!((ident.status.as_str(), ident.user_id.as_deref()), ("processed", Some("u1")));
    // the batch's three items share its request id, indexed in order
    let batch_request = &ident.request_id;
    assert_eq!(logs.iter().filter(|l| &l.request_id == batch_request).count(), 3);
    let missing = find(&logs, "the item without an event name", |l| l.error_code.as_deref() == Some("missing_event"));
    assert_eq!((missing.status.as_str(), &missing.request_id), ("rejected", batch_request));
    let not_json = find(&logs, "the record that is not JSON", |l| l.error_code.as_deref() == Some("invalid_json"));
    assert_eq!(not_json.status, "rejected");
    assert_eq!(not_json.raw, json!(r#"{"type":"track","event":"Order Completed""#), "the event log shows what was produced");
    let large = find(&logs, "the record over the limit", |l| l.error_code.as_deref() == Some("payload_too_large"));
    assert_eq!(large.status, "rejected");
    assert!(large.error_message.as_deref().unwrap().contains("2048"), "{large:?}");
    assert!(large.raw.as_str().unwrap().ends_with("bytes in all)"), "a shortened copy: {:?}", large.raw);

    // action logs: a trigger for each order, the identify ran
    let store = c.store().await;
    for user in ["u1", "u2", "u4", "u5"] {
        let l = find(&logs, user, |l| l.user_id.as_deref() == Some(user) && l.event_type.as_deref() == Some("track"));
        let actions = eventually(Duration::from_secs(30), &format!("action log of {user}'s order"), || {
            let (s, id) = (store.clone(), l.event_id.clone());
            async move { Some(s.action_logs_for_event(&id).await.unwrap()).filter(|a| !a.is_empty()) }
        })
        .await;
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!((actions[0].status.as_str(), actions[0].mapping_id.as_str()), ("success", trigger["id"].as_str().unwrap()));
    }
    let identified = eventually(Duration::from_secs(30), "u1 identified", || {
        let s = store.clone();
        async move { s.get_user("development", "u1").await.unwrap() }
    })
    .await;
    assert_eq!(identified.get("plan"), Some(&json!("pro")));
    for l in [missing, not_json, large] {
        assert!(store.action_logs_for_event(&l.event_id).await.unwrap().is_empty(), "no action for a rejected event");
    }

    // the trigger topic: one per order, exactly once
    let triggers = read_topic(&c.topic("triggers"), Duration::from_secs(20), 4);
    let mut recipients: Vec<String> = triggers.iter().map(|(_, t)| t["recipients"][0].as_str().unwrap().to_string()).collect();
    recipients.sort();
    assert_eq!(recipients, ["u1", "u2", "u4", "u5"], "{triggers:#?}");
    assert!(triggers.iter().all(|(_, t)| t["workflow"] == "order-completed" && t["data"]["total"] == 42));

    // raw records are keyed as the gateway keys them: environment / user
    let raw_keys: Vec<String> = read_topic(&c.topic("raw"), Duration::from_secs(10), 8).into_iter().map(|(k, _)| k).collect();
    for user in ["u1", "u2", "u4", "u5"] {
        assert!(raw_keys.contains(&format!("development/{user}")), "{raw_keys:?}");
    }

    // no known source: parked on the dead-letter topic with the reason (and no token leaks)
    let dead = read_with_headers(&c.topic("dead-letter"), 2, Duration::from_secs(20));
    assert_eq!(dead.len(), 2, "{dead:?}");
    let by_code: HashMap<&str, &(HashMap<String, String>, Vec<u8>)> = dead.iter().map(|d| (d.0["x-code"].as_str(), d)).collect();
    let unknown = by_code["unknown_source"];
    assert!(unknown.0["x-error"].contains("nope"), "{unknown:?}");
    assert_eq!(serde_json::from_slice::<Value>(&unknown.1).unwrap()["messageId"], "m-7", "the record as produced");
    let unnamed = by_code["missing_source"];
    assert!(unnamed.0["x-error"].contains("tributary-source"), "{unnamed:?}");
    assert!(dead.iter().all(|d| d.0["x-stage"].ends_with("-ingest") && !d.0.contains_key("tributary-token")));

    // ... and the record after them (same partition, later offset) was handled
    let after = find(&logs, "u5", |l| l.user_id.as_deref() == Some("u5"));
    let (p5, o5) = position(&after.request_id, &topic);
    for d in &dead {
        let (p, o) = position(&d.0["x-origin"], &topic);
        assert!(p == p5 && o < o5, "the token record came after the dead letters on partition {p}: {o} < {o5}");
    }
    let (pj, oj) = position(&not_json.request_id, &topic);
    assert!(pj == p5 && oj < o5);

    // metrics: every outcome counted
    let text = metrics_text(ingest_port);
    for (outcome, code, n) in [("accepted", "", 4), ("rejected", "invalid_json", 1), ("rejected", "payload_too_large", 1), ("dead_lettered", "unknown_source", 1), ("dead_lettered", "missing_source", 1)] {
        let line = format!("tributary_ingest_records_total{{code=\"{code}\",outcome=\"{outcome}\"}} {n}");
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{}", text.lines().filter(|l| l.contains("ingest")).collect::<Vec<_>>().join("\n"));
    }
}

fn metrics_text(port: u16) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw
}
