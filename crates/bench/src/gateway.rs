//! `make bench-gateway`: the gateway against its two ceilings.

use crate::load::{closed_loop, open_loop, Body, LoadResult};
use crate::procs::{free_port, scrape, wait_http, CpuShares, CpuUsage, Proc};
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
    /// Connections of the closed loop. A gateway request waits ~4 ms for Kafka's
    /// acknowledgement, so 64 connections measure 64 / latency, not capacity (the CPU stays
    /// partly idle); 256 saturate both servers. Batches of 1,000 use at most 8.
    #[arg(long, default_value = "256")]
    concurrency: usize,
    /// Length of the memory soak at half load (0 = skip; the issue asks for 600).
    #[arg(long, default_value = "0")]
    soak_secs: u64,
    /// The latency phase's request rate, as a fraction of the measured maximum (the issue: 0.5).
    #[arg(long, default_value = "0.5")]
    load_fraction: f64,
    /// Only the scenarios whose name contains this (e.g. `single`).
    #[arg(long, default_value = "")]
    only: String,
    /// Seconds of unmeasured load first: the broker's JIT and every connection pool warm up.
    #[arg(long, default_value = "10")]
    warmup_secs: u64,
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
    bare_half: LoadResult,
    kafka_half: LoadResult,
    /// p99 upper bounds (ms) of the gateway's own histograms over the half-load phase:
    /// Kafka acknowledgement, whole request inside the gateway.
    produce_p99: f64,
    handler_p99: f64,
    /// librdkafka's split of the acknowledgement wait at the end of the half-load phase.
    kafka_split: String,
    /// CPU of the bare server, the load generator and the machine at the HTTP ceiling.
    bare_cpu: CpuUsage,
    /// ... of the gateway, the load generator, Kafka and the machine at the gateway's maximum.
    gw_cpu: CpuUsage,
    /// ... and in the half-load phase.
    half_cpu: CpuUsage,
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
    let bare_server = Proc::spawn(
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

    // one URL per template: bodies go to the token of theirs
    let gw_urls: Vec<String> = tokens.iter().map(|t| format!("http://127.0.0.1:{gw_port}/integrations/receive/{t}")).collect();
    let bare_url = format!("http://127.0.0.1:{bare_port}/integrations/receive/x");
    {
        let bs = bodies(256, 1, &mix[..]);
        let warm = Duration::from_secs(a.warmup_secs);
        closed_loop(&bare_url, &without_template(&bs), a.concurrency, warm).await;
        multi_closed(&gw_urls, &bs, a.concurrency, warm).await;
    }
    // Kafka ceiling: the producer alone, same settings, records the size of a raw event.
    let record = {
        let item = segment_track(1).to_string();
        format!(r#"{{"request_id":"{}","index":0,"source":"segment","environment":"development","template":"segment","received_at":0,"verification":"unverified","headers":{{"content-type":"application/json","user-agent":"Segment (Actions)"}},"item":{item}}}"#, uuid::Uuid::new_v4())
    };
    let producer = gateway_like_producer(&env)?;
    let raw_topic = format!("{}.raw", env.prefix);
    println!(
        "# gateway benchmark ({}s per measurement, {} connections, latency phase at {:.0}% of the maximum, Kafka and Cassandra on this machine)\n",
        a.secs,
        a.concurrency,
        a.load_fraction * 100.0
    );
    let mut rows = Vec::new();
    for (name, per_req, m) in [
        ("single event (segment)", 1usize, &mix[..1]),
        ("single event (segment/rudderstack/http mix)", 1, &mix[..]),
        ("100-event batch", 100, &mix[..1]),
        ("1000-event batch", 1000, &mix[..1]),
    ] {
        if !name.contains(a.only.as_str()) {
            continue;
        }
        let n = if per_req >= 1000 { 16 } else { 256 };
        let bs = bodies(n, per_req, m);
        let bytes_per_event = bs.iter().map(|(_, b)| b.bytes.len()).sum::<usize>() / (n * per_req);
        let bare_bodies = without_template(&bs);
        let conc = if per_req >= 1000 { a.concurrency.min(8) } else { a.concurrency };
        let shares = CpuShares::start(&[("bare server", bare_server.child.id())]);
        let bare = closed_loop(&bare_url, &bare_bodies, conc, secs).await;
        let bare_cpu = shares.usage();
        let shares = CpuShares::start(&[("gateway", gw.child.id())]);
        let gwr = multi_closed(&gw_urls, &bs, conc, secs).await;
        let gw_cpu = shares.usage();
        let before = scrape(gw_port).await;
        let shares = CpuShares::start(&[("gateway", gw.child.id())]);
        let half = multi_open(&gw_urls, &bs, gwr.rps() * a.load_fraction, a.concurrency, secs).await;
        let half_cpu = shares.usage();
        let after = scrape(gw_port).await;
        // the latency floor of this machine: the bare server at the same request rate
        let bare_half = open_loop(&bare_url, &bare_bodies, gwr.rps() * a.load_fraction, a.concurrency, secs).await;
        // ... and Kafka's: the producer alone, the same records per request at the same rate
        let kafka_half = kafka_open_loop(&producer, &raw_topic, &record, per_req, gwr.rps() * a.load_fraction, secs).await;
        rows.push(Row {
            name: name.into(),
            bare,
            gw: gwr,
            half,
            bare_half,
            kafka_half,
            produce_p99: bucket_quantile(&before, &after, "tributary_gateway_produce_seconds_bucket", 0.99),
            handler_p99: bucket_quantile(&before, &after, "tributary_gateway_request_seconds_bucket", 0.99),
            kafka_split: kafka_split(&after),
            bare_cpu,
            gw_cpu,
            half_cpu,
            bytes_per_event,
        });
    }

    let shares = CpuShares::start(&[]);
    let (records, elapsed) = kafka_ceiling(&producer, &raw_topic, &record, secs).await;
    let kafka_cpu = shares.usage();
    let kafka = records as f64 / elapsed;

    println!("| scenario | bytes/event | HTTP ceiling req/s | gateway req/s | gateway / HTTP ceiling | gateway events/s | gateway / Kafka ceiling | errors | p50 ms | p99 ms | p99.9 ms (latency phase) | bare server p50 / p99 ms (same rate) | producer alone p50 / p99 ms (same rate) | in gateway p99 ≤ ms: Kafka ack / request | CPU s per 1M events |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} | {:.1} |",
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
            r.bare_half.pct(0.5),
            r.bare_half.pct(0.99),
            r.kafka_half.pct(0.5),
            r.kafka_half.pct(0.99),
            r.produce_p99,
            r.handler_p99,
            r.gw_cpu.secs_of("gateway") / (r.gw.events.max(1) as f64) * 1e6,
        );
    }
    println!("\nWhere the gateway's Kafka acknowledgement time went in the latency phase (librdkafka statistics, last 5 s; p50 / p99 / max ms):");
    for r in &rows {
        println!("- {}: {}", r.name, r.kafka_split);
    }
    println!("\nThe latency phase in detail: CPU (% of one core) and the p99 (ms) of each second's requests:");
    for r in &rows {
        let by_second: Vec<String> = r.half.p99_by_second.iter().map(|p| format!("{p:.0}")).collect();
        println!("- {}: {}; p99 by second {}", r.name, r.half_cpu.percent(), by_second.join(" "));
    }
    println!("\nKafka ceiling (rdkafka producer alone, gateway settings, {} B records): {:.0} records/s", record.len(), kafka);

    // When a loop keeps the machine busy, its rate is the machine's CPU over the CPU one
    // request costs everything on it; so the ratio to the HTTP ceiling is about the inverse
    // ratio of those costs, and this table shows where the gateway's extra cost sits.
    println!("\nWhere the CPU went at each maximum, in µs of CPU per request (the Kafka ceiling: per record; \"load generator\" there is the producer):");
    println!("- Kafka ceiling: {}", kafka_cpu.micros_per(records as f64));
    let per_record = kafka_cpu.machine_micros_per(records as f64);
    for r in &rows {
        let http = r.bare_cpu.machine_micros_per(r.bare.requests as f64);
        println!("- {}, HTTP ceiling: {}", r.name, r.bare_cpu.micros_per(r.bare.requests as f64));
        println!("- {}, gateway maximum: {}", r.name, r.gw_cpu.micros_per(r.gw.requests as f64));
        if r.gw.events == r.gw.requests {
            // one record per request: HTTP serving as cheap as the bare server's, Kafka as
            // cheap per record as at its ceiling (batches of thousands), no other work
            println!(
                "  - the ratio if the gateway's only costs were the bare server's and Kafka's at its ceiling: {http:.1} / ({http:.1} + {per_record:.1}) = {:.2}",
                http / (http + per_record)
            );
        }
    }

    if a.soak_secs > 0 {
        let bs = bodies(256, 1, &mix[..1]);
        let urls: Vec<String> = tokens[..1].iter().map(|t| format!("http://127.0.0.1:{gw_port}/integrations/receive/{t}")).collect();
        let rate = rows.first().map(|r| r.gw.rps() * 0.5).unwrap_or(1000.0);
        let start_rss = gw.rss_mib();
        let t0 = Instant::now();
        let mut samples = vec![(0u64, start_rss)];
        let soak = tokio::spawn({
            let (urls, bs) = (urls.clone(), bs.clone());
            async move { multi_open(&urls, &bs, rate, a.concurrency, Duration::from_secs(a.soak_secs)).await }
        });
        while !soak.is_finished() {
            tokio::time::sleep(Duration::from_secs(30)).await;
            samples.push((t0.elapsed().as_secs(), gw.rss_mib()));
        }
        let r = soak.await?;
        println!("\nmemory soak: {}s at {:.0} req/s (50% of max), {} requests, {} errors, p99 {:.2} ms", a.soak_secs, rate, r.requests, r.errors, r.pct(0.99));
        println!("gateway RSS MiB over time: {}", samples.iter().map(|(t, m)| format!("{t}s={m:.0}")).collect::<Vec<_>>().join(" "));
        // a long tail and a few long stalls give the same p99: say which it was
        let by_second = &r.p99_by_second;
        let within = |ms: f64| by_second.iter().filter(|p| **p <= ms).count();
        println!(
            "soak seconds by their p99: {} of {} at most 10 ms, {} at most 50 ms, {} at most 1 s",
            within(10.0),
            by_second.len(),
            within(50.0),
            within(1000.0)
        );
        let slow: Vec<String> =
            by_second.iter().enumerate().filter(|(_, p)| **p > 1000.0).map(|(t, p)| format!("{t}s={p:.0}ms")).collect();
        // beside the RSS samples: memory that steps up with a stall and then stays flat points
        // at the allocator keeping what the backlog needed; steady growth points at a leak
        let windows: Vec<String> = by_second.chunks(30).map(|w| format!("{:.0}", w.iter().cloned().fold(0.0, f64::max))).collect();
        println!("soak worst p99 (ms) of each 30 s: {}", windows.join(" "));
        if !slow.is_empty() {
            println!("soak seconds with a p99 over 1 s: {}", slow.join(" "));
        }
    }
    let _ = store.drop_keyspace().await;
    let _ = tributary_bus::delete_topics(&env.kafka, &tributary_bus::Topics::new(&env.prefix)).await;
    Ok(())
}

/// The bodies alone (the bare server has one URL for every template).
fn without_template(bodies: &[(usize, Body)]) -> Vec<Body> {
    bodies.iter().map(|(_, b)| b.clone()).collect()
}

/// Closed loop over several URLs (body i goes to the URL of its template).
async fn multi_closed(urls: &[String], bodies: &[(usize, Body)], conc: usize, d: Duration) -> LoadResult {
    let groups = split(urls, bodies);
    let per = (conc / groups.len()).max(1);
    let futs = groups.iter().map(|(u, b)| closed_loop(u, b, per, d));
    merge(futures::future::join_all(futs).await)
}

/// Open loop over several URLs; the rate and the connections are shared among them.
async fn multi_open(urls: &[String], bodies: &[(usize, Body)], rate: f64, conc: usize, d: Duration) -> LoadResult {
    let groups = split(urls, bodies);
    let per = rate / groups.len() as f64;
    let conns = (conc / groups.len()).max(1);
    let futs = groups.iter().map(|(u, b)| open_loop(u, b, per, conns, d));
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
    let mut out = LoadResult::default();
    for r in rs {
        // several URLs at once: the worst of them in each second
        out.p99_by_second.resize(out.p99_by_second.len().max(r.p99_by_second.len()), 0.0);
        for (o, p) in out.p99_by_second.iter_mut().zip(&r.p99_by_second) {
            *o = o.max(*p);
        }
        out.requests += r.requests;
        out.events += r.events;
        out.errors += r.errors;
        out.elapsed = out.elapsed.max(r.elapsed);
        out.latencies.extend(r.latencies);
    }
    out.latencies.sort_unstable();
    out
}

/// A producer with the gateway's settings (the Kafka ceiling and the latency floor use it).
fn gateway_like_producer(env: &Env) -> anyhow::Result<Producer> {
    Producer::new(&ProducerSettings {
        brokers: env.kafka.clone(),
        max_queue_messages: 100_000,
        message_timeout_ms: 5000,
        client_id: "bench-ceiling".into(),
        transactional_id: None,
        linger_ms: gateway_linger_ms(),
    })
    .map_err(|e| anyhow::anyhow!(e.to_string()))
}

/// Records acknowledged, and the seconds it took.
async fn kafka_ceiling(p: &Producer, topic: &str, record: &str, d: Duration) -> (u64, f64) {
    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let (mut sent, mut ok) = (0u64, 0u64);
    while start.elapsed() < d {
        while inflight.len() < 20_000 {
            let key = format!("development/user-{}", sent % 5000);
            let (p, topic, rec) = (p.clone(), topic.to_string(), record.to_string());
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
    (ok, start.elapsed().as_secs_f64())
}

/// The producer alone, open loop: `rate` groups of `per_group` records per second, each
/// group's latency from its scheduled time to its last acknowledgement (what one gateway
/// request waits for, without HTTP).
async fn kafka_open_loop(p: &Producer, topic: &str, record: &str, per_group: usize, rate: f64, d: Duration) -> LoadResult {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = Instant::now();
    let n = (d.as_secs_f64() * rate) as usize;
    let record: Arc<[u8]> = record.as_bytes().into();
    let mut tasks = Vec::with_capacity(n);
    for k in 0..n {
        let scheduled = start + interval * k as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (p, topic, record) = (p.clone(), topic.to_string(), record.clone());
        tasks.push(tokio::spawn(async move {
            let sends = (0..per_group).map(|i| {
                let key = format!("development/user-{}", (k * per_group + i) % 5000);
                let (p, topic, record) = (&p, &topic, &record);
                async move { p.send(topic, &key, record, &[("source", "segment")]).await.is_ok() }
            });
            let ok = futures::future::join_all(sends).await.into_iter().all(|r| r);
            (vec![scheduled.elapsed().as_micros() as u64], ok as u64, if ok { per_group as u64 } else { 0 }, (!ok) as u64)
        }));
    }
    crate::load::collect(tasks, start).await
}

/// The gateway's `linger.ms` (its default, or `TRIBUTARY_GATEWAY_LINGER_MS`, which the gateway
/// process inherits too): the Kafka ceiling uses the same.
fn gateway_linger_ms() -> f64 {
    std::env::var("TRIBUTARY_GATEWAY_LINGER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| tributary_runtime::config::Config::default().gateway.linger_ms)
}

/// The upper bound (ms) of the histogram bucket holding quantile `q` of the observations
/// made between two scrapes (all label sets summed).
fn bucket_quantile(before: &str, after: &str, bucket_series: &str, q: f64) -> f64 {
    let mut bounds: Vec<(f64, String)> = after
        .lines()
        .filter(|l| l.starts_with(bucket_series))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            Some((le.parse().ok()?, format!("le=\"{le}\"")))
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    bounds.dedup();
    let count = |label: &str| {
        crate::pipeline::sample_sum(after, bucket_series, label) - crate::pipeline::sample_sum(before, bucket_series, label)
    };
    let Some((_, inf)) = bounds.last() else { return f64::NAN };
    let total = count(inf);
    bounds.iter().find(|(_, label)| count(label) >= q * total).map(|(le, _)| le * 1000.0).unwrap_or(f64::NAN)
}

fn kafka_split(metrics: &str) -> String {
    let g = |part: &str, q: &str| {
        let labels = format!("client_id=\"tributary-gateway\",part=\"{part}\",window_quantile=\"{q}\"");
        crate::pipeline::sample_sum(metrics, "tributary_kafka_producer_latency_seconds", &labels) * 1000.0
    };
    let b = |q: &str| {
        let labels = format!("client_id=\"tributary-gateway\",window_quantile=\"{q}\"");
        crate::pipeline::sample_sum(metrics, "tributary_kafka_producer_batch_records", &labels)
    };
    let parts = ["queue", "outbuf", "rtt"].map(|p| format!("{p} {:.1} / {:.1} / {:.1}", g(p, "0.5"), g(p, "0.99"), g(p, "max")));
    format!("{}; records per batch p50 {:.0}, p99 {:.0}", parts.join(", "), b("0.5"), b("0.99"))
}
