//! `make bench-pipeline`: events from the gateway to their action logs, with the four roles
//! as separate processes, against a plain loop of the same Cassandra writes.

use crate::load::Body;
use crate::procs::{free_port, wait_http, Proc};
use crate::{segment_track, Env};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tributary_model::{ActionLog, EventLog, Mapping, Template};

#[derive(clap::Args)]
pub struct Args {
    /// Events sent through the pipeline.
    #[arg(long, default_value = "20000")]
    events: usize,
    /// Rows of the baseline loop.
    #[arg(long, default_value = "3000")]
    baseline_events: usize,
    /// Rate (events/s) of the latency phase, single events; 0 = 30% of the measured throughput.
    #[arg(long, default_value = "0")]
    latency_rate: f64,
    /// Length of the latency phase.
    #[arg(long, default_value = "20")]
    latency_secs: u64,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let env = Env::from_env();
    env.migrate();
    let store = env.store().await;
    let token = env.source(&store, "shop", Template::Segment).await;
    store
        .put_mapping(&Mapping {
            id: "m-trigger".into(),
            source: "shop".into(),
            environment: "development".into(),
            event_type: "track".into(),
            event_name: Some("Order Completed".into()),
            action_type: "trigger_workflow".into(),
            parameters: json!({"workflow": "order-completed"}).as_object().unwrap().clone(),
            filter: None,
            active: true,
            created_at: 0,
            updated_at: 0,
        })
        .await?;

    // Baseline: the same two rows per event (event log + action log, with their timelines),
    // written by a plain loop of prepared statements, one at a time.
    let t = Instant::now();
    for i in 0..a.baseline_events {
        let (e, ac) = rows(i);
        store.write_event_log(&e, 86_400).await?;
        store.write_action_log(&ac, Some("order-completed"), 86_400).await?;
    }
    let baseline = a.baseline_events as f64 / t.elapsed().as_secs_f64();

    let log_dir = env.bin_dir.join("bench-logs");
    std::fs::create_dir_all(&log_dir)?;
    let mut procs = Vec::new();
    let mut health_ports = Vec::new();
    let gw_port = free_port();
    for role in ["translator", "mapper", "executor", "gateway"] {
        let health = free_port();
        if role != "gateway" {
            health_ports.push((role, health));
        }
        let mut cfg = env.config();
        cfg.push(("TRIBUTARY_WORKERS_HEALTH_LISTEN".into(), format!("127.0.0.1:{health}")));
        cfg.push(("TRIBUTARY_GATEWAY_LISTEN".into(), format!("127.0.0.1:{gw_port}")));
        procs.push(Proc::spawn(role, &env.tributary(), &[role], &cfg, &log_dir.join(format!("pipeline-{role}.log")).display().to_string()));
        wait_http(if role == "gateway" { gw_port } else { health }, "/readyz", Duration::from_secs(60));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // send every event once, in 100-event batches
    let bodies: Vec<Body> = (0..a.events / 100)
        .map(|b| {
            let items: Vec<serde_json::Value> = (0..100).map(|k| segment_track((b * 100 + k) as u64)).collect();
            Body { bytes: Arc::new(json!({"batch": items}).to_string().into_bytes()), events: 100 }
        })
        .collect();
    let url = format!("http://127.0.0.1:{gw_port}/integrations/receive/{token}");
    let started = chrono::Utc::now().timestamp_millis();
    let send = crate::load::client();
    let mut futs = Vec::new();
    for chunk in bodies.chunks((bodies.len() / 4).max(1)) {
        let (c, u, chunk) = (send.clone(), url.clone(), chunk.to_vec());
        futs.push(tokio::spawn(async move {
            for b in chunk {
                let r = c.post(&u).body(b.bytes.as_ref().clone()).send().await.expect("send");
                assert!(r.status().is_success());
            }
        }));
    }
    for f in futs {
        f.await?;
    }
    let sent_ms = chrono::Utc::now().timestamp_millis() - started;


    // wait for every action log
    let deadline = Instant::now() + Duration::from_secs(600);
    let expected = a.events;
    let actions = loop {
        // the database is busy with the pipeline's writes: a timed-out count is retried
        match store.action_times("development", started).await {
            Ok(acts) if acts.len() >= expected || Instant::now() > deadline => break acts,
            Ok(_) => {}
            Err(e) => eprintln!("(count not read this time: {e})"),
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    };
    let events: HashMap<String, i64> = store.event_times("development", started).await?.into_iter().collect();
    let mut delays: Vec<i64> = actions
        .iter()
        .filter(|(_, t)| *t >= started)
        .filter_map(|(id, t)| events.get(id).filter(|r| **r >= started).map(|r| t - r))
        .collect();
    delays.sort_unstable();
    let done = actions.iter().map(|(_, t)| *t).max().unwrap_or(started);
    let n = delays.len();
    let eps = n as f64 / ((done - started).max(1) as f64 / 1000.0);
    let pct = |p: f64| delays.get(((n.max(1) - 1) as f64 * p) as usize).copied().unwrap_or(-1);
    println!("# pipeline benchmark (gateway → translator → mapper → executor → Cassandra, each its own process)\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| events sent (100-event batches) | {} in {} ms |", a.events, sent_ms);
    println!("| events with an action log | {n} |");
    println!("| pipeline throughput, gateway → action log | {eps:.0} events/s |");
    println!("| baseline: plain prepared-statement loop, same rows, 1 in flight | {baseline:.0} events/s |");
    println!("| pipeline / baseline | {:.2} |", eps / baseline);
    println!("| delay receipt → action log p50 / p99 / max | {} / {} / {} ms |", pct(0.5), pct(0.99), pct(1.0));
    let cpu: Vec<String> = procs.iter().map(|p| format!("{} {:.1}s", p.name, p.cpu_secs())).collect();
    println!("| CPU used per process (throughput phase) | {} |", cpu.join(", "));

    // Latency at a sustainable rate: single events at a fixed rate, delay of each.
    let rate = if a.latency_rate > 0.0 { a.latency_rate } else { (eps * 0.3).max(10.0) };
    // every event its own message id (a repeated one would be a duplicate, with no action)
    let singles: Vec<Body> = (0..(rate * a.latency_secs as f64) as usize + 16)
        .map(|i| Body { bytes: Arc::new(segment_track(1_000_000 + i as u64).to_string().into_bytes()), events: 1 })
        .collect();
    let before = scrape_all(&health_ports).await;
    let phase_start = chrono::Utc::now().timestamp_millis();
    let r = crate::load::open_loop(&url, &singles, rate, 256, Duration::from_secs(a.latency_secs)).await;
    let want = r.events as usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut delays: Vec<i64> = Vec::new();
    while Instant::now() < deadline {
        if let (Ok(acts), Ok(evs)) = (store.action_times("development", phase_start).await, store.event_times("development", phase_start).await) {
            let evs: HashMap<String, i64> = evs.into_iter().filter(|(_, t)| *t >= phase_start).collect();
            delays = acts.iter().filter_map(|(id, t)| evs.get(id).map(|r| t - r)).collect();
            if delays.len() >= want {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let after = scrape_all(&health_ports).await;
    delays.sort_unstable();
    let n = delays.len();
    let q = |p: f64| delays.get(((n.max(1) - 1) as f64 * p) as usize).copied().unwrap_or(-1);
    println!("| latency phase: {rate:.0} events/s for {}s (30% of throughput), gateway p99 | {:.1} ms |", a.latency_secs, r.pct(0.99));
    println!("| latency phase: delay receipt → action log p50 / p99 / max ({n} events) | {} / {} / {} ms |", q(0.5), q(0.99), q(1.0));
    // Where the time goes, per stage, over the latency phase (means from the workers' histograms).
    for (role, _) in &health_ports {
        let mean = |name: &str, labels: &str, scale: f64| {
            let delta = |suffix: &str| {
                let series = format!("{name}{suffix}");
                sample_sum(&after[*role], &series, labels) - sample_sum(&before[*role], &series, labels)
            };
            let (sum, count) = (delta("_sum"), delta("_count"));
            if count > 0.0 { format!("{:.1}", sum / count * scale) } else { "-".into() }
        };
        println!(
            "| latency phase, {role}: mean delay at end of stage / commit time / records per transaction | {} ms / {} ms / {} |",
            mean("tributary_pipeline_delay_seconds", &format!("stage=\"{role}\""), 1000.0),
            mean("tributary_stage_commit_seconds", "", 1000.0),
            mean("tributary_stage_batch_records", "", 1.0),
        );
    }
    let _ = store.drop_keyspace().await;
    let _ = tributary_bus::delete_topics(&env.kafka, &tributary_bus::Topics::new(&env.prefix)).await;
    Ok(())
}

fn rows(i: usize) -> (EventLog, ActionLog) {
    let now = chrono::Utc::now().timestamp_millis();
    let id = format!("baseline-{i}");
    let item = segment_track(i as u64);
    (
        EventLog {
            event_id: id.clone(),
            request_id: "baseline".into(),
            source: "baseline".into(),
            environment: "baseline".into(),
            event_type: Some("track".into()),
            name: Some("Order Completed".into()),
            user_id: Some("u".into()),
            status: "processed".into(),
            error_code: None,
            error_message: None,
            verification: "unverified".into(),
            raw: item.clone(),
            normalized: Some(json!({"type": "track", "data": item["properties"], "event": item})),
            duplicate_of: None,
            received_at: now,
            inserted_at: now,
            ttl: None,
        },
        ActionLog {
            action_id: format!("{id}-a"),
            event_id: id,
            mapping_id: "m".into(),
            source: "baseline".into(),
            environment: "baseline".into(),
            action_type: "trigger_workflow".into(),
            status: "success".into(),
            parameters: json!({"workflow": "order-completed"}),
            payload: Some(json!({"workflow": "order-completed", "recipients": ["u"], "data": item["properties"]})),
            result: Some(json!({"sink": "kafka"})),
            error: None,
            attempts: 1,
            replay_of: None,
            inserted_at: now,
            updated_at: now,
            ttl: None,
        },
    )
}

/// Every role's `/metrics` text.
async fn scrape_all(ports: &[(&'static str, u16)]) -> HashMap<&'static str, String> {
    let mut out = HashMap::new();
    for (role, port) in ports {
        out.insert(*role, crate::procs::scrape(*port).await);
    }
    out
}

/// The sum of the samples of series `name` whose labels contain `labels` (Prometheus text).
pub(crate) fn sample_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, l) = series.split_once('{').unwrap_or((series, ""));
            (n == name && l.contains(labels)).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
