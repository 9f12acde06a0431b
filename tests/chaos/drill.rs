//! The conservation drill: one installation (every role its own process), traffic from the
//! [`Driver`], one fault after another while it flows, and after each the oracle's row.
//!
//! The oracle, per fault, over the items whose request was acknowledged:
//! - event logs (Cassandra): each new item exactly one `processed` log with the payload as
//!   sent; each deliberate duplicate a `duplicate` log; each invalid item a `rejected` log with
//!   `missing_event`;
//! - actions: each track exactly one trigger, read from the trigger topic (`read_committed`) or,
//!   in the HTTP-sink fault, counted by the sink as calls it *accepted* per message; each identify
//!   a `success` action log;
//! - order: per user (and workflow: the trigger topic's key), triggers in the order the events
//!   were received;
//! - recovery: how long after the fault ended the last event acknowledged until then was acted on.

use super::driver::{Driver, Item, Kind, Sent};
use super::sink::{Mode, Sink};
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tributary_model::EventLog;
use tributary_tests::{Cluster, PrivateCassandra, PrivateKafka, PrivateService};

/// Users per fault (each sender thread takes half, so each user has one sender).
const USERS: usize = 8;
/// Traffic before the fault, and after it ends.
const BEFORE: Duration = Duration::from_secs(4);
const AFTER: Duration = Duration::from_secs(4);
/// The stated bound: every acknowledged event acted on within this long after the fault ended.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(120);

/// Every trigger the executor committed, as read by a `read_committed` consumer, with when it
/// arrived here.
struct Tap {
    seen: Arc<Mutex<Vec<(Value, Instant)>>>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    fn start(brokers: &str, topic: &str) -> Tap {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", tributary_tests::unique("chaos-tap"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .expect("tap consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let (seen, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let v: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null);
                    s.lock().unwrap().push((v, Instant::now()));
                }
            }
        });
        Tap { seen, stop }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One row of the table.
pub struct Row {
    pub fault: String,
    pub sent: usize,
    pub acknowledged: usize,
    pub logged: usize,
    pub fired: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub out_of_order: usize,
    pub recovery: Option<Duration>,
    pub retried: u32,
    pub notes: Vec<String>,
}

impl Row {
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0 && self.recovery.is_some_and(|r| r <= RECOVERY_BOUND)
    }
}

pub struct Drill {
    pub c: Cluster,
    pub kafka: Option<PrivateService>,
    pub cassandra: Option<PrivateService>,
    pub sink: Sink,
    pub token: String,
    pub late: Arc<AtomicBool>,
    /// Set while triggers go to the HTTP sink instead of the topic.
    http_sink: bool,
    tap: Tap,
    pub rows: Vec<Row>,
}

pub const BASE: &str = "/v1/sources/chaos/environments/development";

impl Drill {
    /// Start everything. `private`: a broker and a Cassandra node of the drill's own, which
    /// the broker and database faults may kill.
    pub fn start(private: bool) -> Drill {
        let (kafka, cassandra) = if private {
            let (k, c) = (PrivateKafka::new(), PrivateCassandra::new());
            k.script("start");
            c.script("start");
            (Some(k), Some(c))
        } else {
            (None, None)
        };
        let mut c = Cluster::new();
        if let Some(k) = &kafka {
            c.set_env("TRIBUTARY_KAFKA_BROKERS", &k.brokers());
        }
        if let Some(db) = &cassandra {
            c.set_env("TRIBUTARY_CASSANDRA_NODES", &format!("[\"{}\"]", db.nodes()));
        }
        // Answer 503 within 2 s while Kafka is away (the sender retries).
        c.set_env("TRIBUTARY_GATEWAY_PRODUCE_TIMEOUT_MS", "2000");
        // A poison record is parked after 3 attempts instead of 5.
        c.set_env("TRIBUTARY_WORKERS_MAX_ATTEMPTS", "3");
        // The HTTP sink's retries outlast its fault (12 s of 500s, 429s and hangs), as a
        // production setting must outlast the outages it is meant to ride out.
        c.set_env("TRIBUTARY_WORKERS_SINK_TIMEOUT_MS", "1000");
        c.set_env("TRIBUTARY_WORKERS_SINK_BACKOFF_MS", "100");
        c.set_env("TRIBUTARY_WORKERS_SINK_MAX_ATTEMPTS", "40");
        if std::env::var("CHAOS_EXACTLY_ONCE").is_ok_and(|v| v == "0" || v == "false") {
            eprintln!("chaos: exactly-once OFF (CHAOS_EXACTLY_ONCE): the drill is expected to find duplicates");
            c.set_env("TRIBUTARY_WORKERS_EXACTLY_ONCE", "false");
        }
        c.start_all_roles();
        let (_, token) = c.create_source("chaos", "segment");
        c.admin_ok("PATCH", BASE, Some(&json!({"dedup": {"enabled": true, "window_secs": 86400}})));
        for m in [
            json!({"event_type": "track", "event_name": "Order Completed", "action_type": "trigger_workflow", "parameters": {"workflow": "order"}}),
            json!({"event_type": "identify", "action_type": "identify_user"}),
        ] {
            c.admin_ok("POST", &format!("{BASE}/mappings"), Some(&m));
        }
        let tap = Tap::start(&c.brokers(), &c.topic("triggers"));
        Drill { c, kafka, cassandra, sink: Sink::start(), token, late: Arc::default(), http_sink: false, tap, rows: Vec::new() }
    }

    /// Triggers to the HTTP sink (`true`) or the topic.
    pub fn use_http_sink(&mut self, on: bool) {
        let sink = if on { json!({"kind": "http", "base_url": self.sink.url(), "api_key": "sk_chaos"}) } else { json!({"kind": "kafka"}) };
        self.c.admin_ok("PATCH", BASE, Some(&json!({"sink": sink})));
        self.http_sink = on;
    }

    pub fn set_sink(&self, mode: Mode, for_how_long: Duration) {
        self.sink.set(mode);
        std::thread::sleep(for_how_long);
        self.sink.set(Mode::Ok);
    }

    /// Run one fault under traffic and add its row.
    pub async fn fault(&mut self, name: &str, tag: &str, fault: impl FnOnce(&mut Drill) -> Vec<String>) {
        eprintln!("chaos: {name}");
        let stop = Arc::new(AtomicBool::new(false));
        let users: Vec<String> = (0..USERS).map(|i| format!("{tag}-u{i}")).collect();
        let senders: Vec<_> = users
            .chunks(USERS / 2)
            .enumerate()
            .map(|(k, us)| {
                let d = Driver {
                    port: self.c.gateway_port,
                    token: self.token.clone(),
                    tag: format!("{tag}{k}"),
                    users: us.to_vec(),
                    stop: stop.clone(),
                    late: self.late.clone(),
                };
                std::thread::spawn(move || d.run())
            })
            .collect();
        std::thread::sleep(BEFORE);
        let notes = fault(self);
        let ended = Instant::now();
        std::thread::sleep(AFTER);
        stop.store(true, Ordering::Relaxed);
        let mut items = Vec::new();
        let mut retried = 0;
        for s in senders {
            let Sent { items: i, retried: r } = s.join().expect("sender");
            items.extend(i);
            retried += r;
        }
        let row = self.judge(name, tag, items, retried, ended, notes).await;
        self.rows.push(row);
    }

    async fn judge(&self, name: &str, tag: &str, items: Vec<Item>, retried: u32, ended: Instant, notes: Vec<String>) -> Row {
        let acked: Vec<&Item> = items.iter().filter(|i| i.acked).collect();
        let acts: Vec<&Item> = acked.iter().copied().filter(|i| matches!(i.kind, Kind::Track | Kind::Late)).collect();

        // Actions: wait until every acknowledged track fired (or the bound passed).
        let deadline = Instant::now() + RECOVERY_BOUND;
        let fired_at = loop {
            let fired = self.fired(tag);
            if acts.iter().all(|i| fired.contains_key(&i.mid)) || Instant::now() > deadline {
                break fired;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        // Recovery: when the last item acknowledged before the fault ended was acted on.
        let recovery = acts
            .iter()
            .filter(|i| i.acked_at.is_some_and(|t| t <= ended))
            .map(|i| fired_at.get(&i.mid).map(|calls| calls[0].1.saturating_duration_since(ended)))
            .try_fold(Duration::ZERO, |worst, d| d.map(|d| worst.max(d)));
        // A moment for anything that would fire twice late (a redone batch) to show.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fired = self.fired(tag);

        // Event logs trail the actions (the action-log writer stores them after the executor's
        // transaction commits): wait for every acknowledged item's log, within the same bound.
        let mut logs = self.event_logs(tag).await;
        while !acked.iter().all(|i| logs.contains_key(&i.mid)) && Instant::now() <= deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            logs = self.event_logs(tag).await;
        }
        let mut row = Row {
            fault: name.to_string(),
            sent: items.len(),
            acknowledged: acked.len(),
            logged: 0,
            fired: 0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            recovery,
            retried,
            notes,
        };
        let store = self.c.store().await;
        for i in &acked {
            let mine: Vec<&EventLog> = logs.get(&i.mid).map(|v| v.iter().collect()).unwrap_or_default();
            let with = |status: &str| mine.iter().filter(|l| l.status == status).count();
            let logged = match i.kind {
                Kind::Duplicate => with("duplicate") >= 1,
                Kind::Invalid => mine.iter().any(|l| l.status == "rejected" && l.error_code.as_deref() == Some("missing_event")),
                _ => {
                    let processed: Vec<&&EventLog> = mine.iter().filter(|l| l.status == "processed").collect();
                    if processed.len() > 1 {
                        row.duplicated += 1;
                    }
                    match processed.first() {
                        Some(l) if l.raw != i.body => {
                            row.notes.push(format!("{}: payload altered", i.mid));
                            false
                        }
                        Some(l) if i.kind == Kind::Identify => {
                            let done = store.action_logs_for_event(&l.event_id).await.unwrap_or_default();
                            if done.iter().any(|a| a.status == "success") {
                                row.fired += 1;
                            } else {
                                row.lost += 1;
                            }
                            true
                        }
                        Some(_) => true,
                        None => false,
                    }
                }
            };
            if logged {
                row.logged += 1;
            } else {
                row.lost += 1;
            }
        }
        for i in &acts {
            match fired.get(&i.mid).map(Vec::len).unwrap_or(0) {
                0 => row.lost += 1,
                1 => row.fired += 1,
                _ => {
                    row.fired += 1;
                    row.duplicated += 1;
                }
            }
        }
        // Order: per user and workflow, the sequence numbers of their triggers as they fired.
        // (The trigger topic is keyed by environment and workflow, as the README documents:
        // that is the order a consumer of one workflow's triggers can rely on.)
        let mut per_user: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
        for (body, _) in self.fired_in_order(tag) {
            if let (Some(user), Some(workflow), Some(seq)) = (body["user"].as_str(), body["workflow"].as_str(), body["seq"].as_u64()) {
                per_user.entry((user.to_string(), workflow.to_string())).or_default().push(seq);
            }
        }
        for seqs in per_user.values() {
            row.out_of_order += seqs.windows(2).filter(|w| w[1] < w[0]).count();
        }
        row
    }

    /// Triggers of this fault's items, in the order they fired: `{user, workflow, seq, mid}`.
    fn fired_in_order(&self, tag: &str) -> Vec<(Value, Instant)> {
        let pick = |data: &Value, recipients: &Value, workflow: &str, at: Instant| -> Option<(Value, Instant)> {
            let mid = data["mid"].as_str()?;
            mid.starts_with(tag).then(|| (json!({"mid": mid, "seq": data["seq"], "user": recipients[0], "workflow": workflow}), at))
        };
        if self.http_sink {
            // Only calls the sink accepted count as fired (`/v1/workflows/{workflow}/trigger`).
            self.sink
                .calls()
                .into_iter()
                .filter(|c| c.status == 200)
                .filter_map(|c| {
                    let workflow = c.path.split('/').nth(3).unwrap_or_default().to_string();
                    pick(&c.body["data"], &c.body["recipients"], &workflow, c.at)
                })
                .collect()
        } else {
            self.tap
                .seen
                .lock()
                .unwrap()
                .iter()
                .filter_map(|(t, at)| pick(&t["data"], &t["recipients"], t["workflow"].as_str().unwrap_or_default(), *at))
                .collect()
        }
    }

    /// Message id → when each of its triggers fired.
    fn fired(&self, tag: &str) -> HashMap<String, Vec<(Value, Instant)>> {
        let mut out: HashMap<String, Vec<(Value, Instant)>> = HashMap::new();
        for (v, at) in self.fired_in_order(tag) {
            out.entry(v["mid"].as_str().unwrap_or_default().to_string()).or_default().push((v, at));
        }
        out
    }

    /// Message id → every event log of this fault's items.
    async fn event_logs(&self, tag: &str) -> HashMap<String, Vec<EventLog>> {
        let store = self.c.store().await;
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 10 * 60_000;
        let ids = store.event_times("development", since).await.expect("event timeline");
        let logs: Vec<Option<EventLog>> = futures::stream::iter(ids)
            .map(|(id, _)| {
                let s = store.clone();
                async move { s.get_event_log(&id).await.ok().flatten() }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let mut out: HashMap<String, Vec<EventLog>> = HashMap::new();
        for l in logs.into_iter().flatten() {
            if let Some(mid) = l.raw["messageId"].as_str().filter(|m| m.starts_with(tag)) {
                out.entry(mid.to_string()).or_default().push(l);
            }
        }
        out
    }

    /// The table, Markdown; a nonzero lost / duplicated / out-of-order cell, or a recovery
    /// over the bound, is marked ✗.
    pub fn table(&self) -> String {
        let mut t = String::from(
            "| fault | events sent | acknowledged | logged | actions fired | lost | duplicated | out of order | time to recover | sender retries |\n|---|---|---|---|---|---|---|---|---|---|\n",
        );
        let bad = |n: usize| if n == 0 { "0".to_string() } else { format!("**{n}** ✗") };
        for r in &self.rows {
            let rec = match r.recovery {
                Some(d) if d <= RECOVERY_BOUND => format!("{:.1} s", d.as_secs_f64()),
                Some(d) => format!("**{:.1} s** ✗", d.as_secs_f64()),
                None => "**never** ✗".into(),
            };
            t.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.fault,
                r.sent,
                r.acknowledged,
                r.logged,
                r.fired,
                bad(r.lost),
                bad(r.duplicated),
                bad(r.out_of_order),
                rec,
                r.retried
            ));
        }
        for r in &self.rows {
            for n in &r.notes {
                t.push_str(&format!("\n- {}: {n}", r.fault));
            }
        }
        t
    }
}

/// Look for a dead-letter record whose origin is the poison event, for up to `wait`.
pub fn dead_lettered(brokers: &str, topic: &str, needle: &str, wait: Duration) -> Option<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", tributary_tests::unique("chaos-dlq"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("dlq consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let payload = String::from_utf8_lossy(m.payload().unwrap_or_default());
            if payload.contains(needle) {
                use rdkafka::message::Headers;
                let why = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "x-error").and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned())))
                    .unwrap_or_default();
                return Some(why);
            }
        }
    }
    None
}
