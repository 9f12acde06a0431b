//! `make bench-gateway`: the gateway against its two ceilings.

use crate::load::{closed_loop, open_loop, Body, LoadResult};
use crate::procs::{free_port, wait_http, Proc};
use crate::{segment_track, Env};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tributary_bus::{Producer, ProducerSettings};
use tributary_model::Template;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value = "8")]
    secs: u64,
    /// Connections of the closed loop.
    #[arg(long, default_value = "64")]
    concurrency: usize,
    /// Length of the memory soak at half load (0 = skip; the issue asks for 600).
    #[arg(long, default_value = "0")]
    soak_secs: u64,
}

fn bodies(n: usize, per_request: usize, mix: &[(&str, Template)]) -> Vec<(usize, Body)> {
    (0..n)
        .map(|i| {
            let which = i % mix.len();
            let events: Vec<serde_json::Value> = (0..per_request).map(|k| segment_track((i * per_request + k) as u64)).collect();
            let bytes = match (per_request, mix[which].1) {
                (1, Template::Http) => json!({"type": "order.completed", "timestamp": "2024-07-01T09:30:01Z", "data": events[0]}).to_string(),
                (1, _) => events[0].to_string(),
                _ => json!({"batch": events}).to_string(),
            };
            (which, Body { bytes: Arc::new(bytes.into_bytes()), events: per_request as u64 })
        })
        .collect()
}

struct Row {
    name: String,
    bare: LoadResult,
    gw: LoadResult,
    half: LoadResult,
    cpu_per_m: f64,
    bytes_per_event: usize,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let env = Env::from_env();
    env.migrate();
    let store = env.store().await;
    let mix = [("segment", Template::Segment), ("rudderstack", Template::Rudderstack), ("http", Template::Http)];
    let mut tokens = Vec::new();
    for (k, t) in mix {
        tokens.push(env.source(&store, k, t).await);
    }
    let secs = Duration::from_secs(a.secs);
    let log_dir = env.bin_dir.join("bench-logs");
    std::fs::create_dir_all(&log_dir)?;

    let bare_port = free_port();
    let _bare = Proc::spawn(
        "bare",
        &std::env::current_exe()?.display().to_string(),
        &["bare-server", "--port", &bare_port.to_string()],
        &[],
        &log_dir.join("bare.log").display().to_string(),
    );
    wait_http(bare_port, "/readyz", Duration::from_secs(10));
    let gw_port = free_port();
    let mut cfg = env.config();
    cfg.push(("TRIBUTARY_GATEWAY_LISTEN".into(), format!("127.0.0.1:{gw_port}")));
    cfg.push(("TRIBUTARY_WORKERS_HEALTH_LISTEN".into(), format!("127.0.0.1:{}", free_port())));
    let gw = Proc::spawn("gateway", &env.tributary(), &["gateway"], &cfg, &log_dir.join("gateway.log").display().to_string());
    wait_http(gw_port, "/readyz", Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(3)).await; // config snapshot holds the sources

    println!("# gateway benchmark ({}s per measurement, {} connections, Kafka and Cassandra on this machine)\n", a.secs, a.concurrency);
    let mut rows = Vec::new();
    for (name, per_req, m) in [
        ("single event (segment)", 1usize, &mix[..1]),
        ("single event (segment/rudderstack/http mix)", 1, &mix[..]),
        ("100-event batch", 100, &mix[..1]),
        ("1000-event batch", 1000, &mix[..1]),
    ] {
        let n = if per_req >= 1000 { 16 } else { 256 };
        let bs = bodies(n, per_req, m);
        let bytes_per_event = bs.iter().map(|(_, b)| b.bytes.len()).sum::<usize>() / (n * per_req);
        // one URL per template: split the bodies by the token they go to
        let gw_urls: Vec<String> = tokens.iter().map(|t| format!("http://127.0.0.1:{gw_port}/integrations/receive/{t}")).collect();
        let bare_url = format!("http://127.0.0.1:{bare_port}/integrations/receive/x");
        let conc = if per_req >= 1000 { a.concurrency.min(8) } else { a.concurrency };
        let bare = closed_loop(&bare_url, &bs.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(), conc, secs).await;
        let cpu0 = gw.cpu_secs();
        let gwr = multi_closed(&gw_urls, &bs, conc, secs).await;
        let cpu = gw.cpu_secs() - cpu0;
        let half = multi_open(&gw_urls, &bs, gwr.rps() * 0.5, secs).await;
        rows.push(Row {
            name: name.into(),
            cpu_per_m: cpu / (gwr.events.max(1) as f64) * 1e6,
            bare,
            gw: gwr,
            half,
            bytes_per_event,
        });
    }

    // Kafka ceiling: the producer alone, same settings, records the size of a raw event.
    let record = {
        let item = segment_track(1).to_string();
        format!(r#"{{"request_id":"{}","index":0,"source":"segment","environment":"development","template":"segment","received_at":0,"verification":"unverified","headers":{{"content-type":"application/json","user-agent":"Segment (Actions)"}},"item":{item}}}"#, uuid::Uuid::new_v4())
    };
    let kafka = kafka_ceiling(&env, &record, secs).await?;

    println!("| scenario | bytes/event | HTTP ceiling req/s | gateway req/s | gateway / HTTP ceiling | gateway events/s | gateway / Kafka ceiling | errors | p50 ms | p99 ms | p99.9 ms (at 50% load) | CPU s per 1M events |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.1} |",
            r.name,
            r.bytes_per_event,
            r.bare.rps(),
            r.gw.rps(),
            r.gw.rps() / r.bare.rps(),
            r.gw.eps(),
            r.gw.eps() / kafka,
            r.gw.errors + r.half.errors,
            r.half.pct(0.5),
            r.half.pct(0.99),
            r.half.pct(0.999),
            r.cpu_per_m,
        );
    }
    println!("\nKafka ceiling (rdkafka producer alone, gateway settings, {} B records): {:.0} records/s", record.len(), kafka);

    if a.soak_secs > 0 {
        let bs = bodies(256, 1, &mix[..1]);
        let urls: Vec<String> = tokens[..1].iter().map(|t| format!("http://127.0.0.1:{gw_port}/integrations/receive/{t}")).collect();
        let rate = rows[0].gw.rps() * 0.5;
        let start_rss = gw.rss_mib();
        let t0 = Instant::now();
        let mut samples = vec![(0u64, start_rss)];
        let soak = tokio::spawn({
            let (urls, bs) = (urls.clone(), bs.clone());
            async move { multi_open(&urls, &bs, rate, Duration::from_secs(a.soak_secs)).await }
        });
        while !soak.is_finished() {
            tokio::time::sleep(Duration::from_secs(30)).await;
            samples.push((t0.elapsed().as_secs(), gw.rss_mib()));
        }
        let r = soak.await?;
        println!("\nmemory soak: {}s at {:.0} req/s (50% of max), {} requests, {} errors, p99 {:.2} ms", a.soak_secs, rate, r.requests, r.errors, r.pct(0.99));
        println!("gateway RSS MiB over time: {}", samples.iter().map(|(t, m)| format!("{t}s={m:.0}")).collect::<Vec<_>>().join(" "));
    }
    let _ = store.drop_keyspace().await;
    Ok(())
}

/// Closed loop over several URLs (body i goes to the URL of its template).
async fn multi_closed(urls: &[String], bodies: &[(usize, Body)], conc: usize, d: Duration) -> LoadResult {
    let groups = split(urls, bodies);
    let per = (conc / groups.len()).max(1);
    let futs = groups.iter().map(|(u, b)| closed_loop(u, b, per, d));
    merge(futures::future::join_all(futs).await)
}

async fn multi_open(urls: &[String], bodies: &[(usize, Body)], rate: f64, d: Duration) -> LoadResult {
    let groups = split(urls, bodies);
    let per = rate / groups.len() as f64;
    let futs = groups.iter().map(|(u, b)| open_loop(u, b, per, d));
    merge(futures::future::join_all(futs).await)
}

fn split(urls: &[String], bodies: &[(usize, Body)]) -> Vec<(String, Vec<Body>)> {
    let mut out: Vec<(String, Vec<Body>)> = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        let b: Vec<Body> = bodies.iter().filter(|(w, _)| *w == i).map(|(_, b)| b.clone()).collect();
        if !b.is_empty() {
            out.push((u.clone(), b));
        }
    }
    out
}

fn merge(rs: Vec<LoadResult>) -> LoadResult {
    let mut out = LoadResult { requests: 0, events: 0, errors: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
    for r in rs {
        out.requests += r.requests;
        out.events += r.events;
        out.errors += r.errors;
        out.elapsed = out.elapsed.max(r.elapsed);
        out.latencies.extend(r.latencies);
    }
    out.latencies.sort_unstable();
    out
}

async fn kafka_ceiling(env: &Env, record: &str, d: Duration) -> anyhow::Result<f64> {
    let p = Producer::new(&ProducerSettings {
        brokers: env.kafka.clone(),
        max_queue_messages: 100_000,
        message_timeout_ms: 5000,
        client_id: "bench-ceiling".into(),
        transactional_id: None,
    })
    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let topic = format!("{}.raw", env.prefix);
    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let (mut sent, mut ok) = (0u64, 0u64);
    while start.elapsed() < d {
        while inflight.len() < 20_000 {
            let key = format!("development/user-{}", sent % 5000);
            let p = p.clone();
            let (topic, rec) = (topic.clone(), record.to_string());
            inflight.push(async move { p.send(&topic, &key, rec.as_bytes(), &[("source", "segment")]).await.is_ok() });
            sent += 1;
        }
        if let Some(r) = inflight.next().await {
            ok += r as u64;
        }
    }
    while let Some(r) = inflight.next().await {
        ok += r as u64;
    }
    Ok(ok as f64 / start.elapsed().as_secs_f64())
}
