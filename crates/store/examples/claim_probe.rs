//! Probe: Cassandra's CPU per dedup claim, read and written one per request against grouped
//! (`IN` reads, unlogged batches), the figures behind `tributary_store::claims`. Needs a
//! Cassandra on 127.0.0.1:9042 (`deploy/local/cassandra.sh start`); arguments: keys per round
//! (40000), keys per group (32). Creates keyspace `claim_probe` and drops it at the end.
use futures::stream::{self, StreamExt};
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch, BatchType};
use std::time::Instant;

fn cass_ticks() -> u64 {
    let pid = std::process::Command::new("pgrep").args(["-f", "CassandraDaemon"]).output().unwrap();
    let pid = String::from_utf8_lossy(&pid.stdout).lines().next().unwrap().trim().to_string();
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(40000);
    let group: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(32);
    let s = SessionBuilder::new().known_node("127.0.0.1:9042").build().await.unwrap();
    s.query_unpaged("CREATE KEYSPACE IF NOT EXISTS claim_probe WITH replication = {'class':'SimpleStrategy','replication_factor':1}", ()).await.unwrap();
    s.query_unpaged("CREATE TABLE IF NOT EXISTS claim_probe.dedup_keys (environment text, source text, key text, event_id text, PRIMARY KEY ((environment, source, key)))", ()).await.unwrap();
    let ins = s.prepare("INSERT INTO claim_probe.dedup_keys (environment, source, key, event_id) VALUES (?, ?, ?, ?) USING TTL 86400").await.unwrap();
    let sel = s.prepare("SELECT event_id FROM claim_probe.dedup_keys WHERE environment = ? AND source = ? AND key = ?").await.unwrap();
    let sel_in = s.prepare("SELECT key, event_id FROM claim_probe.dedup_keys WHERE environment = ? AND source = ? AND key IN ?").await.unwrap();
    for round in 0..2 {
        let tag = format!("{}-{}", std::process::id(), round);
        let keys: Vec<String> = (0..n).map(|i| format!("{tag}-k{i}")).collect();
        let keys2: Vec<String> = (0..n).map(|i| format!("{tag}-x{i}")).collect();
        let report = |what: &str, t0: Instant, c0: u64| {
            let secs = t0.elapsed().as_secs_f64();
            let cpu_us = (cass_ticks() - c0) as f64 * 10_000.0 / n as f64;
            println!("round {round} {what:<28} {:>8.0}/s  cassandra {:>6.1} µs per key", n as f64 / secs, cpu_us);
        };
        // reads of absent keys, one per request
        let (t0, c0) = (Instant::now(), cass_ticks());
        stream::iter(keys.iter()).map(|k| { let s = &s; let sel = &sel; async move { s.execute_unpaged(sel, ("env", "src", k)).await.unwrap(); } }).buffer_unordered(256).collect::<Vec<_>>().await;
        report("read single (256 in flight)", t0, c0);
        let (t0, c0) = (Instant::now(), cass_ticks());
        stream::iter(keys.chunks(group)).map(|ks| { let s = &s; let sel = &sel_in; async move { s.execute_unpaged(sel, ("env", "src", ks.to_vec())).await.unwrap(); } }).buffer_unordered(256 / group.max(1) + 4).collect::<Vec<_>>().await;
        report(&format!("read IN {group}"), t0, c0);
        // writes
        let (t0, c0) = (Instant::now(), cass_ticks());
        stream::iter(keys.iter()).map(|k| { let s = &s; let ins = &ins; async move { s.execute_unpaged(ins, ("env", "src", k, "e")).await.unwrap(); } }).buffer_unordered(256).collect::<Vec<_>>().await;
        report("write single (256 in flight)", t0, c0);
        let (t0, c0) = (Instant::now(), cass_ticks());
        stream::iter(keys2.chunks(group)).map(|ks| { let s = &s; let ins = &ins; async move {
            let mut b = Batch::new(BatchType::Unlogged);
            let mut vals = Vec::new();
            for k in ks { b.append_statement(ins.clone()); vals.push(("env", "src", k.as_str(), "e")); }
            s.batch(&b, vals).await.unwrap(); } }).buffer_unordered(256 / group.max(1) + 4).collect::<Vec<_>>().await;
        report(&format!("write unlogged batch {group}"), t0, c0);
        // reads of present keys
        let (t0, c0) = (Instant::now(), cass_ticks());
        stream::iter(keys.chunks(group)).map(|ks| { let s = &s; let sel = &sel_in; async move { s.execute_unpaged(sel, ("env", "src", ks.to_vec())).await.unwrap(); } }).buffer_unordered(256 / group.max(1) + 4).collect::<Vec<_>>().await;
        report(&format!("read IN {group} (present)"), t0, c0);
        let (t0, c0) = (Instant::now(), cass_ticks());
        stream::iter(keys2.iter()).map(|k| { let s = &s; let sel = &sel; async move { s.execute_unpaged(sel, ("env", "src", k)).await.unwrap(); } }).buffer_unordered(256).collect::<Vec<_>>().await;
        report("read single (present)", t0, c0);
    }
    s.query_unpaged("DROP KEYSPACE IF EXISTS claim_probe", ()).await.unwrap();
}
