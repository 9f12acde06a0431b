//! `make bench-pipeline`: events from the gateway to their action logs (exactly-once, each role
//! its own process), against the least any pipeline that logs events and actions must write.
//!
//! The ceiling: each event's event-log row and action-log row, with their timeline rows, as
//! the pipeline writes them (the store's `write_logs`: the two rows as one single-partition
//! batch, the timeline entries gathered per partition), with 16, 64 and 256 events in flight
//! (the best counts). A one-at-a-time loop would measure the database's round trip, not what
//! it can take. Both JVMs are warmed first (their JIT moves the figures), and the whole
//! measurement runs `--runs` times (2 by default), each run reported.
//!
//! Beside each figure: the CQL statements and requests the pipeline sent per event (from every
//! worker's `tributary_store_statements_total` and `tributary_store_requests_total`) and the CPU per event of every process (gateway, each
//! stage, Kafka, Cassandra), from which the README's sizing rule is derived.

use crate::load::Body;
use crate::procs::{free_port, wait_http, CpuShares, CpuUsage, Proc};
use crate::{segment_track, Env};
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tributary_model::{ActionLog, EventLog, Mapping, SinkSettings, Template};
use tributary_store::Store;

#[derive(clap::Args)]
pub struct Args {
    /// Events sent through the pipeline per run (100-event batches).
    #[arg(long, default_value = "40000")]
    events: usize,
    /// Events of each ceiling measurement (per concurrency level). 10,000 took under a second
    /// at the faster levels, and a memtable flush or a collection pause then moved the best of
    /// the three by half (9,236 and 15,081 events/s in two runs of one bench); measurements of
    /// several seconds each hold steadier.
    #[arg(long, default_value = "40000")]
    ceiling_events: usize,
    /// Events of the warm-up (ceiling and pipeline each), not reported.
    #[arg(long, default_value = "5000")]
    warmup_events: usize,
    /// Measurement runs (each: ceiling sweep and pipeline maximum).
    #[arg(long, default_value = "2")]
    runs: usize,
    /// Length of the half-load latency phase.
    #[arg(long, default_value = "20")]
    latency_secs: u64,
    /// Rate of the light-load latency phase (events/s): the pipeline's own delay with the
    /// machine nearly idle, beside the half-load one, which adds queueing for CPU and the store.
    #[arg(long, default_value = "100")]
    light_rate: f64,
    /// More latency phases at these fixed rates (events/s, repeatable): a before/after
    /// comparison at one rate, which the half-load row (half of each run's own maximum) is not.
    #[arg(long = "at-rate")]
    at_rates: Vec<f64>,
    /// Seconds at half of the maximum, printing each stage's lag and each role's memory every
    /// minute (0: skip).
    #[arg(long, default_value = "0")]
    soak_secs: u64,
    /// The soak's rate (events/s) instead of half of the maximum.
    #[arg(long)]
    soak_rate: Option<f64>,
    /// Also run the scaling run: an HTTP sink answering after 50 ms, 1, 2 and 4 executors.
    #[arg(long)]
    scaling: bool,
}

const LEVELS: [usize; 3] = [16, 64, 256];
/// What each stage's figures are (see `stage_figures`).
const STAGE_COLUMNS: &str = "mean records per transaction; mean ms per batch to collect / begin / process / commit / drain / offsets / end, \
where the commit (from the end of processing) is mostly the drain (the last acknowledgements) and the end (the commit call), and the \
offsets go into the transaction beside the processing; transactions; mean configuration wait per call";
const STAGES: [&str; 4] = ["translator", "mapper", "executor", "action-log-writer"];

struct Fleet {
    procs: Vec<Proc>,
    /// (role, health or gateway port)
    ports: Vec<(String, u16)>,
    url: String,
}

impl Fleet {
    /// translator, mapper, `executors` executors and the gateway, each its own process.
    fn start(env: &Env, token: &str, executors: usize, log_tag: &str) -> Fleet {
        let log_dir = env.bin_dir.join("bench-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let gw_port = free_port();
        let mut roles: Vec<String> = vec!["translator".into(), "mapper".into()];
        roles.extend((0..executors).map(|i| format!("executor-{i}")));
        roles.push("gateway".into());
        let (mut procs, mut ports) = (Vec::new(), Vec::new());
        for name in roles {
            let role = name.split('-').next().unwrap();
            let health = free_port();
            let mut cfg = env.config();
            cfg.push(("TRIBUTARY_WORKERS_HEALTH_LISTEN".into(), format!("127.0.0.1:{health}")));
            cfg.push(("TRIBUTARY_GATEWAY_LISTEN".into(), format!("127.0.0.1:{gw_port}")));
            cfg.push(("TRIBUTARY_WORKERS_INSTANCE_ID".into(), format!("bench-{name}")));
            let log = log_dir.join(format!("pipeline-{log_tag}-{name}.log")).display().to_string();
            procs.push(Proc::spawn(&name, &env.tributary(), &[role], &cfg, &log));
            let port = if role == "gateway" { gw_port } else { health };
            wait_http(port, "/readyz", Duration::from_secs(60));
            ports.push((name, port));
        }
        Fleet { procs, ports, url: format!("http://127.0.0.1:{gw_port}/integrations/receive/{token}") }
    }

    fn workers(&self) -> impl Iterator<Item = &(String, u16)> {
        self.ports.iter().filter(|(n, _)| n != "gateway")
    }

    fn pids(&self) -> Vec<(&'static str, u32)> {
        // CpuShares names are static: leak the few names of a bench run.
        self.procs.iter().map(|p| (&*Box::leak(p.name.clone().into_boxed_str()), p.child.id())).collect()
    }

    async fn scrape(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, port) in self.workers() {
            out.push((name.clone(), crate::procs::scrape(*port).await));
        }
        out
    }

    /// Events whose logs the workers have written so far (the log writers' count).
    async fn logged(&self) -> f64 {
        let mut n = 0.0;
        for (_, port) in self.workers() {
            let text = crate::procs::scrape(*port).await;
            n += sample_sum(&text, "tributary_pipeline_delay_seconds_count", "stage=\"action-log-writer\"");
        }
        n
    }

    /// CQL statements and requests (a batch is one request, of many statements) sent so far.
    async fn statements(&self) -> (f64, f64) {
        let (mut statements, mut requests) = (0.0, 0.0);
        for (_, port) in self.workers() {
            let text = crate::procs::scrape(*port).await;
            statements += sample_sum(&text, "tributary_store_statements_total", "");
            requests += sample_sum(&text, "tributary_store_requests_total", "");
        }
        (statements, requests)
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let env = Env::from_env();
    env.migrate();
    let store = env.store().await;
    let token = env.source(&store, "shop", Template::Segment).await;
    store.put_mapping(&trigger_mapping("shop")).await?;
    let fleet = Fleet::start(&env, &token, 1, "main");

    println!("# pipeline benchmark (gateway → translator → mapper → executor → Cassandra, each its own process, exactly-once)\n");
    eprintln!("warming up both JVMs: {} ceiling events and {} pipeline events", a.warmup_events, a.warmup_events);
    ceiling(&store, a.warmup_events, 64, "warm").await?;
    pipeline_max(&store, &fleet, a.warmup_events, 0).await?;

    println!("| run | two-row ceiling, events/s (16 / 64 / 256 in flight) | pipeline, events/s | pipeline / two-row ceiling | CQL statements / requests per event | delay p50 / p99 / max at maximum, ms |");
    println!("|---|---|---|---|---|---|");
    let mut best_pipeline = 0.0f64;
    let mut cpu_rows = Vec::new();
    let mut ceiling_cpu = Vec::new();
    let mut stage_rows = Vec::new();
    for run in 1..=a.runs {
        let mut levels = Vec::new();
        for k in LEVELS {
            settle(&store).await;
            let shares = CpuShares::start(&[]);
            let eps = ceiling(&store, a.ceiling_events, k, &format!("r{run}k{k}")).await?;
            levels.push(eps);
            ceiling_cpu.push((run, k, eps, shares.usage()));
        }
        let best = levels.iter().cloned().fold(0.0, f64::max);
        settle(&store).await;
        eprintln!("run {run}: pipeline maximum, {} events", a.events);
        let stmts_before = fleet.statements().await;
        let metrics_before = fleet.scrape().await;
        let shares = CpuShares::start(&fleet.pids());
        let m = pipeline_max(&store, &fleet, a.events, run as u64 * 10_000_000).await?;
        let usage = shares.usage();
        stage_rows.push((run, stage_figures(&metrics_before, &fleet.scrape().await)));
        let stmts_after = fleet.statements().await;
        let per_event = (stmts_after.0 - stmts_before.0) / m.events as f64;
        let requests_per_event = (stmts_after.1 - stmts_before.1) / m.events as f64;
        best_pipeline = best_pipeline.max(m.eps);
        println!(
            "| {run} | **{:.0}** ({}) | **{:.0}** | **{:.2}** | {per_event:.2} / {requests_per_event:.2} | {} / {} / {} |",
            best,
            levels.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(" / "),
            m.eps,
            m.eps / best,
            m.p50,
            m.p99,
            m.max
        );
        cpu_rows.push((run, m.events, usage));
    }
    println!("\nCPU per event at the pipeline's maximum (µs; `machine` is every core's busy time):\n");
    for (run, events, usage) in &cpu_rows {
        println!("- run {run}: {}", usage.micros_per(*events as f64));
    }
    // What the database spends on an event's two rows alone: the pipeline's figure beside it
    // shows what the rest of its work per event (dedup claims, flushes and compactions of
    // more data) costs there.
    println!("\nCPU per event in the ceiling (µs; the load generator is the bench's driver; fastest level of each run):\n");
    for run in 1..=a.runs {
        if let Some((_, k, _, usage)) = ceiling_cpu.iter().filter(|c| c.0 == run).max_by(|x, y| x.2.total_cmp(&y.2)) {
            println!("- run {run}, {k} in flight: {}", usage.micros_per(a.ceiling_events as f64));
        }
    }
    sizing(&cpu_rows);
    println!("\nStages at the maximum ({STAGE_COLUMNS}):\n");
    for (run, rows) in &stage_rows {
        println!("- run {run}: {}", rows.join("; "));
    }

    // Half of the maximum: the delay an event sees when the fleet keeps up. First in the shape
    // the maximum was measured in (100-event batches), then as single events, each its own
    // request (more work per event in the gateway, its producer and Kafka).
    let rate = (best_pipeline * 0.5).max(10.0);
    let metrics_before = fleet.scrape().await;
    let lat = latency_phase(&store, &fleet, rate, a.latency_secs, 20_000_000, 100).await;
    let half_stages = stage_figures(&metrics_before, &fleet.scrape().await);
    let metrics_before = fleet.scrape().await;
    let single = latency_phase(&store, &fleet, rate, a.latency_secs, 25_000_000, 1).await;
    let single_stages = stage_figures(&metrics_before, &fleet.scrape().await);
    // The same at a light load: what the stages cost an event without queueing.
    let light = latency_phase(&store, &fleet, a.light_rate, a.latency_secs, 30_000_000, 1).await;
    println!(
        "\n| half load: {rate:.0} events/s, 100-event batches, {} s | delay receipt → action log p50 / p99 / max | {} / {} / {} ms ({} events, {} requests failed, gateway p99 {:.1} ms) |",
        a.latency_secs, lat.p50, lat.p99, lat.max, lat.events, lat.failed, lat.gateway_p99_ms
    );
    println!("|---|---|---|");
    println!(
        "| half load: {rate:.0} events/s, single events, {} s | delay receipt → action log p50 / p99 / max | {} / {} / {} ms ({} events, {} requests failed, gateway p99 {:.1} ms) |",
        a.latency_secs, single.p50, single.p99, single.max, single.events, single.failed, single.gateway_p99_ms
    );
    println!(
        "| light load: {:.0} events/s, single events, {} s | delay receipt → action log p50 / p99 / max | {} / {} / {} ms ({} events, {} requests failed, gateway p99 {:.1} ms) |",
        a.light_rate, a.latency_secs, light.p50, light.p99, light.max, light.events, light.failed, light.gateway_p99_ms
    );
    println!("\nCPU at half load in batches (% of one core): {}", lat.cpu);
    println!("CPU at half load in single events (% of one core): {}", single.cpu);
    println!("CPU at light load (% of one core): {}", light.cpu);
    println!("\nMean delay from receipt to the end of each stage at half load in batches: {}", lat.stages);
    println!("Mean delay from receipt to the end of each stage at half load in single events: {}", single.stages);
    println!("Mean delay from receipt to the end of each stage at light load: {}", light.stages);
    println!("\nStages at half load in batches ({STAGE_COLUMNS}): {}", half_stages.join("; "));
    println!("\nStages at half load in single events ({STAGE_COLUMNS}): {}", single_stages.join("; "));
    for r in &a.at_rates {
        let before = fleet.scrape().await;
        let l = latency_phase(&store, &fleet, *r, a.latency_secs, 40_000_000 + (*r as u64) * 1_000, 1).await;
        println!(
            "\n| fixed rate: {r:.0} events/s, single events, {} s | delay receipt → action log p50 / p99 / max | {} / {} / {} ms ({} events, {} requests failed, gateway p99 {:.1} ms) |",
            a.latency_secs, l.p50, l.p99, l.max, l.events, l.failed, l.gateway_p99_ms
        );
        println!("CPU at {r:.0} events/s (% of one core): {}", l.cpu);
        println!("Mean delay from receipt to the end of each stage at {r:.0} events/s: {}", l.stages);
        println!("Stages at {r:.0} events/s ({STAGE_COLUMNS}): {}", stage_figures(&before, &fleet.scrape().await).join("; "));
    }

    if a.soak_secs > 0 {
        soak(&env, &store, &fleet, a.soak_rate.unwrap_or(rate), a.soak_rate.is_none(), a.soak_secs).await;
    }
    drop(fleet);
    if a.scaling {
        scaling(&env, &store).await?;
    }
    let _ = store.drop_keyspace().await;
    let _ = tributary_bus::delete_topics(&env.kafka, &tributary_bus::Topics::new(&env.prefix)).await;
    Ok(())
}

fn trigger_mapping(source: &str) -> Mapping {
    Mapping {
        id: format!("m-trigger-{source}"),
        source: source.into(),
        environment: "development".into(),
        event_type: "track".into(),
        event_name: Some("Order Completed".into()),
        action_type: "trigger_workflow".into(),
        parameters: json!({"workflow": "order-completed"}).as_object().unwrap().clone(),
        filter: None,
        active: true,
        created_at: 0,
        updated_at: 0,
    }
}

/// The two-row ceiling: `events` events' log rows (event log + action log with their
/// timelines, as the pipeline writes them), `in_flight` events at a time. Events/s.
async fn ceiling(store: &Store, events: usize, in_flight: usize, tag: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut writes = futures::stream::iter(0..events)
        .map(|i| {
            let (e, ac) = rows(i, tag);
            let e = tributary_model::EventLogRecord::from(&e);
            async move {
                store.write_logs(Some(&e), &[(&ac, Some("order-completed"))], 86_400).await
            }
        })
        .buffer_unordered(in_flight);
    while let Some(r) = writes.next().await {
        r?;
    }
    Ok(events as f64 / t.elapsed().as_secs_f64())
}

struct Maximum {
    events: usize,
    eps: f64,
    p50: i64,
    p99: i64,
    max: i64,
}

/// Send `events` events in 100-event batches as fast as the gateway takes them; the pipeline's
/// rate is events over the time from the first send to the last action log.
async fn pipeline_max(store: &Store, fleet: &Fleet, events: usize, id_base: u64) -> anyhow::Result<Maximum> {
    let bodies: Vec<Body> = (0..events.div_ceil(100))
        .map(|b| {
            let items: Vec<serde_json::Value> = (0..100).map(|k| segment_track(id_base + (b * 100 + k) as u64)).collect();
            Body { bytes: Arc::new(json!({"batch": items}).to_string().into_bytes()), events: 100 }
        })
        .collect();
    let sent = bodies.len() * 100;
    let logged_before = fleet.logged().await;
    let started = chrono::Utc::now().timestamp_millis();
    let send = crate::load::client();
    let mut futs = Vec::new();
    for chunk in bodies.chunks((bodies.len() / 4).max(1)) {
        let (c, u, chunk) = (send.clone(), fleet.url.clone(), chunk.to_vec());
        futs.push(tokio::spawn(async move {
            for b in chunk {
                let r = c.post(&u).body(b.bytes.as_ref().clone()).send().await.expect("send");
                assert!(r.status().is_success(), "gateway answered {}", r.status());
            }
        }));
    }
    for f in futs {
        f.await?;
    }
    let delays = wait_for_actions(store, fleet, started, logged_before, sent, Duration::from_secs(900)).await;
    let done = delays.iter().map(|(_, t)| *t).max().unwrap_or(started);
    let mut d: Vec<i64> = delays.iter().map(|(d, _)| *d).collect();
    d.sort_unstable();
    let pct = |p: f64| d.get(((d.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or(-1);
    Ok(Maximum {
        events: d.len(),
        eps: d.len() as f64 / ((done - started).max(1) as f64 / 1000.0),
        p50: pct(0.5),
        p99: pct(0.99),
        max: pct(1.0),
    })
}

/// Wait (up to a minute) until the database has no compaction or memtable flush running or
/// queued: each measurement starts from a quiet database and pays for its own writes only. A
/// 40,000-event ceiling level ends in seconds and leaves its flushes and compactions behind;
/// measured after one, the pipeline's maximum did that work too (a `jfr` profile of Cassandra
/// during the maximum: 30% of its samples compacting, 12% flushing).
async fn settle(store: &Store) {
    let started = Instant::now();
    let mut quiet = 0;
    while started.elapsed() < Duration::from_secs(60) {
        match store.background_tasks().await {
            Ok(0) => quiet += 1,
            Ok(_) => quiet = 0,
            Err(e) => {
                eprintln!("not waiting for the database's background work: {e}");
                return;
            }
        }
        // Two readings in a row, a moment apart: a flush often starts a compaction.
        if quiet == 2 {
            eprintln!("database quiet after {:.1} s", started.elapsed().as_secs_f64());
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("database still compacting after 60 s; measuring anyway");
}

/// (delay receipt → action log listed, time listed) of every action logged since `since`, once
/// `expected` are there (or the deadline passed). Listed: the action log's listing entry was
/// written (its write time in the store), so the log can be found from then on.
///
/// Until the log writers' count says `expected` more events were logged than `logged_before`,
/// it watches that count, not the store: reading every timeline entry since `since` twice a
/// second put ~16 row reads per event on Cassandra during the maximum, work the ceiling it is
/// compared with does not do, on the database the pipeline is limited by.
async fn wait_for_actions(store: &Store, fleet: &Fleet, since: i64, logged_before: f64, expected: usize, wait: Duration) -> Vec<(i64, i64)> {
    let deadline = Instant::now() + wait;
    // Four times a second: each poll scrapes every worker, CPU the measurement counts.
    while fleet.logged().await - logged_before < expected as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut delays = Vec::new();
    loop {
        // the database is busy with the pipeline's writes: a timed-out read is retried
        if let (Ok(acts), Ok(evs)) = (store.action_times("development", since).await, store.event_times("development", since).await) {
            // only actions of events received since `since` (an earlier phase's late ones are not)
            let evs: HashMap<String, i64> = evs.into_iter().collect();
            delays = acts.iter().filter_map(|(id, t)| evs.get(id).map(|r| (t - r, *t))).collect();
        }
        if delays.len() >= expected || Instant::now() > deadline {
            return delays;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

struct Latency {
    events: usize,
    p50: i64,
    p99: i64,
    max: i64,
    gateway_p99_ms: f64,
    /// CPU of every role while the events went through, in % of one core (is the machine
    /// saturated at this rate, and by whom).
    cpu: String,
    /// Mean delay from receipt to the end of each stage, and to the action log.
    stages: String,
    /// Requests the gateway did not accept (their events are left out).
    failed: u64,
}

/// `rate` events/s for `secs`, `per_request` events in each request (1: single events, each
/// its own request, as a CDP's webhook sends them; 100: batches, as the maximum is measured).
async fn latency_phase(store: &Store, fleet: &Fleet, rate: f64, secs: u64, id_base: u64, per_request: usize) -> Latency {
    settle(store).await;
    // every event its own message id (a repeated one would be a duplicate, with no action)
    let requests = (rate * secs as f64) as usize / per_request + 16;
    let bodies: Vec<Body> = (0..requests)
        .map(|r| {
            let id = |k: usize| id_base + (r * per_request + k) as u64;
            let bytes = if per_request == 1 {
                segment_track(id(0)).to_string()
            } else {
                json!({"batch": (0..per_request).map(|k| segment_track(id(k))).collect::<Vec<_>>()}).to_string()
            };
            Body { bytes: Arc::new(bytes.into_bytes()), events: per_request as u64 }
        })
        .collect();
    let since = chrono::Utc::now().timestamp_millis();
    let before = fleet.scrape().await;
    let logged_before = fleet.logged().await;
    let shares = CpuShares::start(&fleet.pids());
    // Enough connections for the rate, and each used often: at 24 batches/s, 256 connections
    // each idled ~10 s between requests, long enough for the server to close them, and half of
    // the requests failed on a closed connection.
    let per_second = rate / per_request as f64;
    let connections = ((per_second / 4.0).ceil() as usize).clamp(8, 256);
    let r = crate::load::open_loop(&fleet.url, &bodies, per_second, connections, Duration::from_secs(secs)).await;
    if r.errors > 0 {
        eprintln!("{} of {} requests at {rate:.0} events/s failed (their events are not counted)", r.errors, r.errors + r.requests);
    }
    // CPU while the load ran, not while the bench reads the results back afterwards.
    let cpu = shares.usage().percent();
    let listed = wait_for_actions(store, fleet, since, logged_before, r.events as usize, Duration::from_secs(120)).await;
    let stages = stage_delays(&before, &fleet.scrape().await);
    let mut d: Vec<i64> = listed.iter().map(|x| x.0).collect();
    d.sort_unstable();
    let q = |p: f64| d.get(((d.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or(-1);
    let mean = d.iter().sum::<i64>() as f64 / d.len().max(1) as f64;
    let stages = format!("{stages}; listed {mean:.0} ms; {}", tail_spread(&listed, q(0.99)));
    Latency { events: d.len(), p50: q(0.5), p99: q(0.99), max: q(1.0), gateway_p99_ms: r.pct(0.99), cpu, stages, failed: r.errors }
}

/// Where the slowest 1% (those at or above the p99) were received: in how many of the phase's seconds, and the share of the
/// three seconds holding most of them. A tail packed in a few seconds is a stall (a flush, a
/// pause, a rebalance); one spread over most seconds is queueing.
fn tail_spread(listed: &[(i64, i64)], p99: i64) -> String {
    let mut per_second: HashMap<i64, usize> = HashMap::new();
    let mut seconds: std::collections::HashSet<i64> = std::collections::HashSet::new();
    for (delay, at) in listed {
        let second = (at - delay).div_euclid(1000);
        seconds.insert(second);
        if *delay >= p99 {
            *per_second.entry(second).or_default() += 1;
        }
    }
    let tail: usize = per_second.values().sum();
    let mut counts: Vec<(i64, usize)> = per_second.into_iter().collect();
    counts.sort_unstable_by_key(|c| std::cmp::Reverse(c.1));
    let top3: usize = counts.iter().take(3).map(|c| c.1).sum();
    // When (UTC), to hold against the services' logs.
    let when: Vec<String> = counts
        .iter()
        .take(3)
        .filter_map(|(sec, _)| chrono::DateTime::from_timestamp(*sec, 0))
        .map(|t| t.format("%H:%M:%S").to_string())
        .collect();
    format!(
        "the slowest 1% ({tail} events) received in {} of {} seconds, {:.0}% of them in the worst three ({})",
        counts.len(),
        seconds.len(),
        top3 as f64 * 100.0 / tail.max(1) as f64,
        when.join(", ")
    )
}

/// Mean delay from receipt to the end of each stage over a phase (every worker's
/// `tributary_pipeline_delay_seconds`): where an event's delay accumulates.
fn stage_delays(before: &[(String, String)], after: &[(String, String)]) -> String {
    let d = |stage: &str, part: &str| -> f64 {
        let label = format!("stage=\"{stage}\"");
        let series = format!("tributary_pipeline_delay_seconds_{part}");
        before.iter().zip(after).map(|((_, b), (_, a))| sample_sum(a, &series, &label) - sample_sum(b, &series, &label)).sum()
    };
    ["translator", "mapper", "executor", "action-log-writer"]
        .iter()
        .map(|s| format!("{s} {:.0} ms", d(s, "sum") / d(s, "count").max(1.0) * 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per worker process over a phase: mean records per transaction, the mean time of each
/// phase of a batch's cycle (collect / begin / process / commit, see
/// `tributary_stage_phase_seconds`) and transactions committed (exactly-once stages; the
/// action-log writer has none).
fn stage_figures(before: &[(String, String)], after: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for ((name, b), (_, a)) in before.iter().zip(after) {
        let d = |series: &str, labels: &str| sample_sum(a, series, labels) - sample_sum(b, series, labels);
        let (batches, records) = (d("tributary_stage_batch_records_count", ""), d("tributary_stage_batch_records_sum", ""));
        let commits = d("tributary_stage_transactions_total", "outcome=\"committed\"");
        let phases: Vec<String> = ["collect", "begin", "process", "commit", "drain", "offsets", "end"]
            .iter()
            .map(|p| {
                let label = format!("phase=\"{p}\"");
                let n = d("tributary_stage_phase_seconds_count", &label);
                format!("{:.1}", d("tributary_stage_phase_seconds_sum", &label) / n.max(1.0) * 1000.0)
            })
            .collect();
        let wait = d("tributary_stage_config_wait_seconds_sum", "") / d("tributary_stage_config_wait_seconds_count", "").max(1.0);
        if batches > 0.0 {
            out.push(format!(
                "{name} {:.0} records, {} ms, {:.0} transactions, configuration wait {:.1} ms",
                records / batches,
                phases.join(" / "),
                commits,
                wait * 1000.0
            ));
        }
    }
    out
}

/// Events/s one core carries in each stage, from the CPU per event of the best run.
fn sizing(rows: &[(usize, usize, CpuUsage)]) {
    let Some((_, events, usage)) = rows.last() else { return };
    println!("\nSizing (last run): events/s one core carries per role, 1e6 / µs per event:\n");
    let mut parts = Vec::new();
    for (name, secs) in &usage.procs {
        let us = secs / (*events as f64) * 1e6;
        if us > 0.0 {
            parts.push(format!("{name} {:.0}", 1e6 / us));
        }
    }
    println!("- {}", parts.join(", "));
}

/// Each stage's consumer lag (records), from its group's committed offsets and the topic's
/// high watermarks.
fn lags(env: &Env) -> Vec<(&'static str, i64)> {
    let topics = tributary_bus::Topics::new(&env.prefix);
    let pairs = [
        ("translator", topics.raw.clone()),
        ("mapper", topics.normalized.clone()),
        ("executor", topics.actions.clone()),
        ("action-log-writer", topics.action_logs.clone()),
    ];
    pairs
        .iter()
        .zip(STAGES)
        .map(|((stage, topic), name)| (name, lag_of(&env.kafka, &format!("{}-{stage}", env.prefix), topic).unwrap_or(-1)))
        .collect()
}

fn lag_of(brokers: &str, group: &str, topic: &str) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create().ok()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
    let parts: Vec<i32> = md.topics().first()?.partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition(topic, *p);
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(5)).ok()?;
    let mut lag = 0;
    for p in parts {
        let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(5)).ok()?;
        let done = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        };
        lag += (high - done).max(0);
    }
    Some(lag)
}

/// `secs` at `rate`: every minute, each stage's lag and each role's memory.
async fn soak(env: &Env, store: &Store, fleet: &Fleet, rate: f64, half: bool, secs: u64) {
    let what = if half { "half of the maximum" } else { "--soak-rate" };
    println!("\n## Soak: {rate:.0} events/s for {secs} s ({what})\n");
    println!("| minute | lag: {} | RSS MiB: {} |", STAGES.join(" / "), fleet.procs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(" / "));
    println!("|---|---|---|");
    let minutes = secs.div_ceil(60);
    let logged_before = fleet.logged().await;
    let since = chrono::Utc::now().timestamp_millis();
    let mut sent = 0u64;
    for m in 1..=minutes {
        let singles: Vec<Body> = (0..(rate * 60.0) as usize + 16)
            .map(|i| Body { bytes: Arc::new(segment_track(30_000_000 + m * 1_000_000 + i as u64).to_string().into_bytes()), events: 1 })
            .collect();
        let r = crate::load::open_loop(&fleet.url, &singles, rate, 256, Duration::from_secs(60.min(secs))).await;
        sent += r.events;
        let lag: Vec<String> = lags(env).iter().map(|(_, l)| l.to_string()).collect();
        let rss: Vec<String> = fleet.procs.iter().map(|p| format!("{:.0}", p.rss_mib())).collect();
        println!("| {m} | {} | {} |", lag.join(" / "), rss.join(" / "));
    }
    let done = wait_for_actions(store, fleet, since, logged_before, sent as usize, Duration::from_secs(300)).await.len();
    println!("\nsoak: {sent} events acknowledged, {done} with an action log");
}

/// 1, 2 and 4 executors on 8 partitions, each action an HTTP call answered after 50 ms.
async fn scaling(env: &Env, store: &Store) -> anyhow::Result<()> {
    let port = free_port();
    tokio::spawn(async move {
        use axum::routing::post;
        let app = axum::Router::new().fallback(post(|| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            (axum::http::StatusCode::OK, "{}")
        }));
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        axum::serve(l, app).await.unwrap();
    });
    println!("\n## Scaling: HTTP sink answering after 50 ms, 8 partitions\n");
    println!("| executors | events/s | per executor |");
    println!("|---|---|---|");
    for n in [1usize, 2, 4] {
        let key = format!("http{n}");
        let token = env.source(store, &key, Template::Segment).await;
        let mut settings = store.get_settings(&key, "development").await?.expect("settings");
        settings.sink = SinkSettings::Http { base_url: format!("http://127.0.0.1:{port}"), api_key: "bench-key".into() };
        store.put_settings(&settings).await?;
        store.put_mapping(&trigger_mapping(&key)).await?;
        let fleet = Fleet::start(env, &token, n, &format!("scale{n}"));
        let m = pipeline_max(store, &fleet, 4000, 40_000_000 + n as u64 * 1_000_000).await?;
        println!("| {n} | {:.0} | {:.0} |", m.eps, m.eps / n as f64);
        drop(fleet);
    }
    Ok(())
}

fn rows(i: usize, tag: &str) -> (EventLog, ActionLog) {
    let now = chrono::Utc::now().timestamp_millis();
    let id = format!("ceiling-{tag}-{i}");
    let item = segment_track(i as u64);
    (
        EventLog {
            event_id: id.clone(),
            request_id: "ceiling".into(),
            source: "ceiling".into(),
            environment: "ceiling".into(),
            event_type: Some("track".into()),
            name: Some("Order Completed".into()),
            user_id: Some(format!("user-{}", i % 5000)),
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
            source: "ceiling".into(),
            environment: "ceiling".into(),
            action_type: "trigger_workflow".into(),
            status: "success".into(),
            parameters: json!({"workflow": "order-completed"}),
            payload: Some(json!({"workflow": "order-completed", "recipients": [format!("user-{}", i % 5000)], "data": item["properties"]})),
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
