//! A Kafka broker crash (SIGKILL), then a longer controlled stop, under the whole pipeline, each
//! followed by a restart: every stage waits
//! for Kafka instead of exiting, and once it is back every event the gateway acknowledged has
//! fired its workflow exactly once. The sender retries 503s with the same message id, as a CDP
//! does.

use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tributary_tests::{read_topic_from, Cluster, PrivateKafka};

/// In CI this test once found a stage exiting: after the SIGKILL, an abort failed with a fatal
/// transaction error (`INVALID_TXN_STATE`) and the role ended. A fatal error other than fencing
/// now replaces the stage's producer and redoes the batch (`exactly_once::replace_producer`).
#[tokio::test(flavor = "multi_thread")]
async fn broker_crash_and_stop_under_the_whole_pipeline_lose_nothing_and_fire_nothing_twice() {
    let kafka = PrivateKafka::new();
    kafka.script("start");
    let mut c = Cluster::new();
    c.set_env("TRIBUTARY_KAFKA_BROKERS", &kafka.brokers());
    c.set_env("TRIBUTARY_GATEWAY_PRODUCE_TIMEOUT_MS", "2000");
    c.start_all_roles();
    let (_, token) = c.create_source("crash", "segment");
    c.admin_ok("POST", "/v1/sources/crash/environments/development/mappings", Some(&json!({"event_type": "track",
        "event_name": "Order Completed", "action_type": "trigger_workflow", "parameters": {"workflow": "w"}})));

    // A sender in the background: event after event, each retried on 503 until acknowledged.
    let acked: Arc<Mutex<Vec<u32>>> = Arc::default();
    let (stop, next) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
    let sender = {
        let (acked, stop, next, port) = (acked.clone(), stop.clone(), next.clone(), c.gateway_port);
        let path = format!("/integrations/receive/{token}");
        std::thread::spawn(move || {
            let mut refused = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let body = json!({"type": "track", "event": "Order Completed", "userId": format!("u{}", n % 7),
                    "messageId": format!("m{n}"), "properties": {"n": n}})
                .to_string();
                loop {
                    match tributary_tests::http::try_request(port, "POST", &path, &[], Some(body.as_bytes())) {
                        Ok((202, _, _)) => {
                            acked.lock().unwrap().push(n);
                            break;
                        }
                        Ok((503, _, _)) | Err(_) => {
                            refused += 1;
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        Ok((s, v, _)) => panic!("m{n}: {s} {v}"),
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            refused
        })
    };
    let wait_acked = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while acked.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "only {} events acknowledged", acked.lock().unwrap().len());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // A crash, then (once traffic flows again) a controlled stop that lasts longer: librdkafka
    // fails a commit quickly in the one case and only after its timeout in the other.
    wait_acked(60);
    kafka.kill_9();
    std::thread::sleep(Duration::from_secs(5));
    kafka.script("start");
    let back = acked.lock().unwrap().len();
    wait_acked(back + 40);
    kafka.script("stop");
    std::thread::sleep(Duration::from_secs(15));
    kafka.script("start");
    let back = acked.lock().unwrap().len();
    wait_acked(back + 40);
    stop.store(true, Ordering::Relaxed);
    let refused = sender.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} events acknowledged, {refused} answers were 503s or no answer during the outage", acked.len());
    assert!(refused > 0, "the outage was seen by the sender");

    // Every acknowledged event fired exactly once (read_committed: aborted attempts do not count).
    let triggers = read_topic_from(&kafka.brokers(), &c.topic("triggers"), Duration::from_secs(90), acked.len());
    let mut fired: HashMap<u64, usize> = HashMap::new();
    for (_, t) in &triggers {
        *fired.entry(t["data"]["n"].as_u64().expect("n in the trigger's data")).or_default() += 1;
    }
    let lost: Vec<&u32> = acked.iter().filter(|n| !fired.contains_key(&(**n as u64))).collect();
    let twice: Vec<(&u64, &usize)> = fired.iter().filter(|(_, k)| **k > 1).collect();
    assert!(lost.is_empty(), "acknowledged but never fired: {lost:?}");
    assert!(twice.is_empty(), "fired more than once: {twice:?}");

    // No role gave up on Kafka: every process is still the one started.
    for (role, child) in c.procs.iter_mut() {
        assert!(child.try_wait().unwrap().is_none(), "{role} exited during the broker's crash");
    }
}
