//! HTTP load: closed loop (N connections as fast as they go) and open loop (a fixed request
//! rate; latency counted from the scheduled send time, so a stall is not hidden by the loop
//! waiting for it: no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http1::{Conn, Target};

#[derive(Clone)]
pub struct Body {
    pub bytes: Arc<Vec<u8>>,
    pub events: u64,
}

#[derive(Default)]
pub struct LoadResult {
    pub requests: u64,
    pub events: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// microseconds, sorted
    pub latencies: Vec<u64>,
    /// Open loop: the p99 (ms) of the requests scheduled in each second, in order. It tells a
    /// tail spread over the run from one made by a few stalls.
    pub p99_by_second: Vec<f64>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    pub fn eps(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
    pub fn pct(&self, p: f64) -> f64 {
        pct_of(&self.latencies, p)
    }
}

/// Quantile `p` (ms) of sorted latencies in µs.
fn pct_of(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The HTTP client for everything that is not a load loop (metrics scrapes, the pipeline
/// bench's sends): one pool, so connections stay open from one call to the next.
pub fn client() -> reqwest::Client {
    static CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        reqwest::Client::builder().pool_max_idle_per_host(1024).tcp_nodelay(true).build().unwrap()
    });
    CLIENT.clone()
}

/// The serialized requests of a loop, built before its clock starts.
fn requests(url: &str, bodies: &[Body]) -> (Target, Arc<Vec<(Vec<u8>, u64)>>) {
    let t = Target::parse(url).expect("load loops target http:// URLs");
    let reqs = bodies.iter().map(|b| (t.post(&b.bytes), b.events)).collect();
    (t, Arc::new(reqs))
}

/// One request on `conn`: whether it was answered 2xx. A connection that fails waits a
/// moment before the next attempt, so a dead server is not hammered in a tight loop.
async fn one(conn: &mut Conn, request: &[u8]) -> bool {
    match conn.send(request).await {
        Ok(status) => (200..300).contains(&status),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(10)).await;
            false
        }
    }
}

/// `concurrency` connections, each sending its next request as soon as the last is answered.
pub async fn closed_loop(url: &str, bodies: &[Body], concurrency: usize, duration: Duration) -> LoadResult {
    let (target, reqs) = requests(url, bodies);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (mut conn, reqs) = (Conn::new(&target), reqs.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut req, mut ev, mut err) = (Vec::new(), 0u64, 0u64, 0u64);
            let mut i = w;
            while Instant::now() < deadline {
                let (r, events) = &reqs[i % reqs.len()];
                i += concurrency;
                let t = Instant::now();
                if one(&mut conn, r).await {
                    req += 1;
                    ev += events;
                } else {
                    err += 1;
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            (lat, req, ev, err)
        }));
    }
    collect(tasks, start).await
}

/// Requests at a fixed `rate` over at most `connections` connections. Each idle connection
/// claims the next request number and sends it at its scheduled time, so requests go out on
/// time whatever the answers take, as long as a connection is free: a pool, as a sender has.
/// A request that finds every connection busy waits, and the wait counts in its latency.
pub async fn open_loop(url: &str, bodies: &[Body], rate: f64, connections: usize, duration: Duration) -> LoadResult {
    let (target, reqs) = requests(url, bodies);
    // (below one request a second too: 100-event batches at a low event rate)
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let n = (duration.as_secs_f64() * rate) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections.clamp(1, n.max(1) as usize) {
        let (mut conn, reqs, next) = (Conn::new(&target), reqs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut done: Vec<(u64, u64, bool)> = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    break;
                }
                let scheduled = start + interval * k as u32;
                tokio::time::sleep_until(scheduled.into()).await;
                let ok = one(&mut conn, &reqs[k as usize % reqs.len()].0).await;
                done.push((k, scheduled.elapsed().as_micros() as u64, ok));
            }
            done
        }));
    }
    // the p99 of each second's requests, by the second they were scheduled in
    let mut seconds: Vec<Vec<u64>> = vec![Vec::new(); duration.as_secs().max(1) as usize];
    let mut r = LoadResult::default();
    for t in tasks {
        for (k, lat, ok) in t.await.unwrap() {
            let s = ((interval * k as u32).as_secs() as usize).min(seconds.len() - 1);
            seconds[s].push(lat);
            r.latencies.push(lat);
            if ok {
                r.requests += 1;
                r.events += reqs[k as usize % reqs.len()].1;
            } else {
                r.errors += 1;
            }
        }
    }
    r.elapsed = start.elapsed();
    r.latencies.sort_unstable();
    r.p99_by_second = seconds
        .iter_mut()
        .map(|v| {
            v.sort_unstable();
            pct_of(v, 0.99)
        })
        .collect();
    r
}

/// What one task of a load loop reports: latencies (µs), requests, events, errors.
pub(crate) type Outcome = (Vec<u64>, u64, u64, u64);

pub(crate) async fn collect(tasks: Vec<tokio::task::JoinHandle<Outcome>>, start: Instant) -> LoadResult {
    let mut r = LoadResult::default();
    for t in tasks {
        let (lat, req, ev, err) = t.await.unwrap();
        r.latencies.extend(lat);
        r.requests += req;
        r.events += ev;
        r.errors += err;
    }
    r.elapsed = start.elapsed();
    r.latencies.sort_unstable();
    r
}
