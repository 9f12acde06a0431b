//! Times the calls of a Kafka transaction as a stage makes them (10 records, the consumed
//! offsets, commit), round after round. A diagnosis tool, not a test: it found the 100 ms that
//! every stage transaction cost (see `producer.rs`).
//!
//! `cargo run -p tributary-bus --example txn_latency -- BROKERS [ROUNDS] [librdkafka k=v ...]`
//! Environment: `DRAIN=1` waits for the records' acknowledgements before the commit, as the
//! stages do; `PAUSE_MS=n` pauses between transactions.
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let brokers = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:9092".into());
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let drain = std::env::var_os("DRAIN").is_some();
    let pause = std::env::var("PAUSE_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
    let topic = format!("txn-latency-{}", std::process::id());
    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", &brokers).set("transactional.id", &topic);
    for kv in args.iter().skip(3) {
        let (k, v) = kv.split_once('=').expect("librdkafka settings as key=value");
        pc.set(k, v);
    }
    let p: ThreadedProducer<DefaultProducerContext> = pc.create().expect("producer");
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).set("group.id", &topic).create().expect("consumer");
    c.subscribe(&[&topic]).expect("subscribe");
    let _ = c.poll(Duration::from_millis(500));
    p.init_transactions(Duration::from_secs(30)).expect("init_transactions");
    let mut wholes = Vec::new();
    for round in 0..rounds {
        if let Some(d) = pause {
            std::thread::sleep(d);
        }
        let t0 = Instant::now();
        p.begin_transaction().expect("begin");
        for i in 0..10 {
            p.send(BaseRecord::to(&topic).key(&format!("k{i}")).payload("x")).map_err(|(e, _)| e).expect("send");
        }
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&topic, 0, Offset::Offset(round as i64)).expect("offset");
        let t1 = Instant::now();
        p.send_offsets_to_transaction(&offsets, &c.group_metadata().expect("group"), Duration::from_secs(30)).expect("send offsets");
        let t2 = Instant::now();
        while drain && p.in_flight_count() > 0 {
            std::thread::sleep(Duration::from_micros(250));
        }
        p.commit_transaction(Duration::from_secs(30)).expect("commit");
        let whole = t0.elapsed();
        println!("round {round}: send_offsets {:.1} ms, commit {:.1} ms, whole {:.1} ms", ms(t2 - t1), ms(t2.elapsed()), ms(whole));
        wholes.push(ms(whole));
    }
    // The first rounds find the coordinators; the rest is the steady state.
    let steady = &wholes[wholes.len().min(5)..];
    if !steady.is_empty() {
        println!("mean per transaction after the first 5: {:.1} ms", steady.iter().sum::<f64>() / steady.len() as f64);
    }
}
