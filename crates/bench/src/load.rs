//! HTTP load: closed loop (N connections as fast as they go) and open loop (a fixed request
//! rate; latency counted from the scheduled send time, so a stall is not hidden by the loop
//! waiting for it: no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// One HTTP client for every load loop: its connections stay open from one loop to the next
/// against the same server, as a sender's pool would. (A fresh pool made the first second of
/// every open loop a burst of connection set-ups, with a p99 of 70–300 ms in that second.)
pub fn client() -> reqwest::Client {
    static CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        reqwest::Client::builder().pool_max_idle_per_host(1024).tcp_nodelay(true).build().unwrap()
    });
    CLIENT.clone()
}

async fn one(client: &reqwest::Client, url: &str, body: &Body) -> bool {
    match client.post(url).header("content-type", "application/json").body(body.bytes.as_ref().clone()).send().await {
        Ok(r) => {
            let ok = r.status().is_success();
            let _ = r.bytes().await;
            ok
        }
        Err(_) => false,
    }
}

pub async fn closed_loop(url: &str, bodies: &[Body], concurrency: usize, duration: Duration) -> LoadResult {
    let client = client();
    let deadline = Instant::now() + duration;
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, url, bodies, counter) = (client.clone(), url.to_string(), bodies.to_vec(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut req, mut ev, mut err) = (Vec::new(), 0u64, 0u64, 0u64);
            let mut i = w;
            while Instant::now() < deadline {
                let b = &bodies[i % bodies.len()];
                i += concurrency;
                let t = Instant::now();
                if one(&client, &url, b).await {
                    req += 1;
                    ev += b.events;
                } else {
                    err += 1;
                }
                lat.push(t.elapsed().as_micros() as u64);
                counter.fetch_add(1, Ordering::Relaxed);
            }
            (lat, req, ev, err)
        }));
    }
    collect(tasks, start).await
}

pub async fn open_loop(url: &str, bodies: &[Body], rate: f64, duration: Duration) -> LoadResult {
    let client = client();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = Instant::now();
    let n = (duration.as_secs_f64() * rate) as usize;
    let mut tasks = Vec::with_capacity(n);
    for k in 0..n {
        let scheduled = start + interval * k as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, url, b) = (client.clone(), url.to_string(), bodies[k % bodies.len()].clone());
        tasks.push(tokio::spawn(async move {
            let ok = one(&client, &url, &b).await;
            let lat = scheduled.elapsed().as_micros() as u64;
            (vec![lat], ok as u64, if ok { b.events } else { 0 }, (!ok) as u64)
        }));
    }
    // the p99 of each second's requests, by the second they were scheduled in
    let mut seconds: Vec<Vec<u64>> = vec![Vec::new(); duration.as_secs().max(1) as usize];
    let mut outcomes = Vec::with_capacity(n);
    for (k, t) in tasks.into_iter().enumerate() {
        let o = t.await.unwrap();
        let s = ((interval * k as u32).as_secs() as usize).min(seconds.len() - 1);
        seconds[s].extend(&o.0);
        outcomes.push(o);
    }
    let mut r = sum(outcomes, start);
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
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    sum(outcomes, start)
}

fn sum(outcomes: Vec<Outcome>, start: Instant) -> LoadResult {
    let mut r = LoadResult::default();
    for (lat, req, ev, err) in outcomes {
        r.latencies.extend(lat);
        r.requests += req;
        r.events += ev;
        r.errors += err;
    }
    r.elapsed = start.elapsed();
    r.latencies.sort_unstable();
    r
}
