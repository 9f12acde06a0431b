//! Starting roles: connect, check the schema, spawn each role, wait for shutdown.

use anyhow::{anyhow, Context};
use std::sync::Arc;
use std::time::Duration;
use tributary_bus::{ensure_topics, spawn_lag_monitor, worker_producer, Delivery, LagTarget, Topics};
use tributary_runtime::config::Config;
use tributary_runtime::{serve_health, Readiness, Shutdown};
use tributary_store::{ConfigCache, Store, StoreSettings};
use tributary_workers::executor::{Executor, LogPath, LogWriter};
use tributary_workers::ingest::Ingest;
use tributary_workers::{mapper::Mapper, producing_delivery, translator::Translator, StageSpec};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Gateway,
    Ingest,
    Translator,
    Mapper,
    Executor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [Role::Gateway, Role::Ingest, Role::Translator, Role::Mapper, Role::Executor, Role::Admin];
    fn is_worker(self) -> bool {
        matches!(self, Role::Ingest | Role::Translator | Role::Mapper | Role::Executor)
    }
}

async fn connect(cfg: &Config) -> anyhow::Result<Store> {
    let settings = StoreSettings {
        nodes: cfg.cassandra.nodes.clone(),
        keyspace: cfg.cassandra.keyspace.clone(),
        replication: cfg.cassandra.replication.clone(),
        username: cfg.cassandra.username.clone(),
        password: cfg.cassandra.password.clone(),
    };
    // Store::connect creates the schema if it is missing (idempotent), so every role checks it.
    Store::connect(&settings)
        .await
        .map(|s| s.with_timeline_buckets(cfg.cassandra.timeline_buckets))
        .with_context(|| format!("cassandra at {:?}", cfg.cassandra.nodes))
}

pub async fn migrate(cfg: &Config) -> anyhow::Result<()> {
    let store = connect(cfg).await?;
    store.ensure_default_environments().await?;
    ensure_topics(&cfg.kafka.brokers, &Topics::new(&cfg.kafka.topic_prefix), cfg.kafka.partitions, cfg.kafka.replication_factor)
        .await
        .map_err(|e| anyhow!(e))?;
    tracing::info!(keyspace = store.keyspace(), topic_prefix = %cfg.kafka.topic_prefix, "schema and topics are in place");
    println!("migrated: keyspace {} and topics {}.*", store.keyspace(), cfg.kafka.topic_prefix);
    Ok(())
}

/// Readiness checks this process starts with, all false: `cassandra` and `kafka` until the
/// dependencies answered at start, then each role's own (the stage loops, the gateway's Kafka
/// check, the admin API) until the role is serving.
fn initial_checks(roles: &[Role]) -> Vec<&'static str> {
    let mut checks = vec!["cassandra", "kafka"];
    for role in roles {
        checks.extend_from_slice(match role {
            Role::Gateway => &["config"][..],
            Role::Admin => &["admin"],
            Role::Ingest => &["ingest"],
            Role::Translator => &["translator"],
            Role::Mapper => &["mapper"],
            Role::Executor => &["executor", "action-log-writer"],
        });
    }
    checks
}

/// Retry `f` until it succeeds, with backoff (1 s doubling to 10 s), logging each failure.
async fn until_up<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut wait = Duration::from_secs(1);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "{what} not available yet; waiting (/readyz answers 503 meanwhile)");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Everything a role needs before it can serve, retried until it answers.
async fn dependencies(cfg: &Config, readiness: &Readiness, shutdown: &Shutdown) -> (Store, Topics, ConfigCache) {
    let store = until_up("cassandra", || async {
        let store = connect(cfg).await?;
        store.ensure_default_environments().await?;
        Ok(store)
    })
    .await;
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    until_up("kafka", || async {
        ensure_topics(&cfg.kafka.brokers, &topics, cfg.kafka.partitions, cfg.kafka.replication_factor).await.map_err(|e| anyhow!(e))
    })
    .await;
    readiness.set("kafka", true);
    let cache = until_up("configuration", || async {
        let (every, poll) = (Duration::from_millis(cfg.workers.config_refresh_ms), Duration::from_millis(cfg.workers.config_poll_ms));
        let skew = cfg.workers.clock_skew_ms as i64;
        Ok(ConfigCache::start(store.clone(), every, poll, skew, shutdown.receiver()).await?)
    })
    .await;
    readiness.set("cassandra", true);
    (store, topics, cache)
}

pub async fn run(cfg: &Config, roles: &[Role]) -> anyhow::Result<()> {
    if roles.contains(&Role::Admin) {
        cfg.require_admin_token()?;
    }
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    // Probes tell the truth from the first second: every port this process serves answers
    // /healthz (200: alive) and /readyz (503 until every check below is true) before Kafka or
    // the database is reached; a dependency that is down is waited for, not a reason to exit
    // (a liveness probe would otherwise restart the process in a loop).
    let readiness = Readiness::default();
    for check in initial_checks(roles) {
        readiness.set(check, false);
    }
    let mut tasks = tokio::task::JoinSet::new();
    if roles.iter().any(|r| r.is_worker()) {
        let (addr, r, s, http) = (cfg.workers.health_listen, readiness.clone(), shutdown.clone(), cfg.http.clone());
        tasks.spawn(async move { serve_health(addr, r, &http, s).await.map_err(|e| format!("health endpoint {addr}: {e}")) });
    }
    // The gateway's and the admin API's ports: a stand-in serves the health endpoints there
    // until the role's own server takes the port over.
    let mut stand_ins = tokio::task::JoinSet::new();
    let stop_stand_ins = Shutdown::new();
    for (role, addr) in [(Role::Gateway, cfg.gateway.listen), (Role::Admin, cfg.admin.listen)] {
        if roles.contains(&role) {
            let (r, s, http) = (readiness.clone(), stop_stand_ins.clone(), cfg.http.clone());
            stand_ins.spawn(async move { serve_health(addr, r, &http, s).await.map_err(|e| format!("bind {addr}: {e}")) });
        }
    }
    let (store, topics, cache) = tokio::select! {
        deps = dependencies(cfg, &readiness, &shutdown) => deps,
        _ = shutdown.wait() => {
            tracing::info!("shut down while waiting for dependencies");
            return Ok(());
        }
        // These end early only when they cannot bind their port.
        Some(Ok(Err(e))) = stand_ins.join_next(), if !stand_ins.is_empty() => return Err(anyhow!(e)),
        Some(Ok(Err(e))) = tasks.join_next(), if !tasks.is_empty() => return Err(anyhow!(e)),
    };
    stop_stand_ins.trigger();
    while let Some(done) = stand_ins.join_next().await {
        done.map_err(|e| anyhow!(e))?.map_err(|e| anyhow!(e))?;
    }
    if roles.iter().any(|r| r.is_worker()) {
        // Every worker process measures every stage's lag (see tributary_bus::lag).
        let targets = [("ingest", &topics.ingest), ("translator", &topics.raw), ("mapper", &topics.normalized), ("executor", &topics.actions), ("action-log-writer", &topics.action_logs)]
            .into_iter()
            .map(|(stage, topic)| LagTarget { stage: stage.into(), group: cfg.group(stage), topic: topic.clone() })
            .collect();
        let all = topics.all().iter().map(|t| t.to_string()).collect();
        if let Err(e) = spawn_lag_monitor(&cfg.kafka.brokers, targets, all, shutdown.receiver()) {
            tracing::warn!(error = %e, "consumer lag is not measured");
        }
    }

    for role in roles {
        let (cfg, store, cache, readiness, shutdown, topics) =
            (cfg.clone(), store.clone(), cache.clone(), readiness.clone(), shutdown.clone(), topics.clone());
        let role = *role;
        tasks.spawn(async move {
            tracing::info!(?role, "starting");
            let stage = format!("{role:?}").to_lowercase();
            // Stages that produce get a transactional producer in exactly-once mode; its id
            // is stable per process (see workers.instance_id).
            let producer = || {
                let txn_id = cfg.workers.exactly_once.then(|| format!("{}.{}", cfg.group(&stage), cfg.workers.instance_id));
                worker_producer(&cfg.kafka.brokers, &format!("tributary-{stage}"), txn_id.as_deref()).map_err(|e| e.to_string())
            };
            let delivery = producing_delivery(&cfg);
            match role {
                Role::Gateway => tributary_gateway::run(&cfg, cache, readiness, shutdown).await,
                Role::Admin => tributary_admin::run(&cfg, store, readiness, shutdown).await,
                Role::Ingest => {
                    let p = producer()?;
                    tributary_workers::ingest::init_metrics();
                    let h = Arc::new(Ingest {
                        cache,
                        producer: p.clone(),
                        ingest_topic: topics.ingest.clone(),
                        raw_topic: topics.raw.clone(),
                        dead_letter_topic: topics.dead_letter.clone(),
                        group: cfg.group("ingest"),
                        max_record_bytes: cfg.ingest.max_record_bytes,
                    });
                    tributary_workers::run(&cfg, StageSpec { name: "ingest", topic: topics.ingest.clone(), lanes: cfg.workers.lanes }, h, &p, delivery, &readiness, &shutdown).await
                }
                Role::Translator => {
                    let p = producer()?;
                    let h = Arc::new(Translator::new(cache, store, p.clone(), topics.normalized.clone()));
                    tributary_workers::run(&cfg, StageSpec { name: "translator", topic: topics.raw.clone(), lanes: cfg.workers.lanes }, h, &p, delivery, &readiness, &shutdown).await
                }
                Role::Mapper => {
                    let p = producer()?;
                    let h = Arc::new(Mapper { cache, producer: p.clone(), out_topic: topics.actions.clone() });
                    tributary_workers::run(&cfg, StageSpec { name: "mapper", topic: topics.normalized.clone(), lanes: cfg.workers.lanes }, h, &p, delivery, &readiness, &shutdown).await
                }
                Role::Executor => {
                    let p = producer()?;
                    let http = tributary_workers::sink::HttpSink::new(
                        Duration::from_millis(cfg.workers.sink_timeout_ms),
                        cfg.workers.sink_max_attempts,
                        Duration::from_millis(cfg.workers.sink_backoff_ms),
                    )?;
                    let logs = if cfg.workers.exactly_once { LogPath::Report(topics.action_logs.clone()) } else { LogPath::Direct };
                    let h = Arc::new(Executor { cache, store: store.clone(), producer: p.clone(), triggers_topic: topics.triggers.clone(), http, logs });
                    let executor = tributary_workers::run(&cfg, StageSpec { name: "executor", topic: topics.actions.clone(), lanes: cfg.workers.lanes }, h, &p, delivery, &readiness, &shutdown);
                    // The reports' writer: upserts only, so at-least-once is enough.
                    let wp = worker_producer(&cfg.kafka.brokers, "tributary-action-log-writer", None).map_err(|e| e.to_string())?;
                    // Known-event and daily counts: one update per key per second (see the store).
                    store.spawn_counter_flush(Duration::from_secs(1), shutdown.receiver());
                    let writer = Arc::new(LogWriter { store });
                    let writer = tributary_workers::run(&cfg, StageSpec { name: "action-log-writer", topic: topics.action_logs.clone(), lanes: cfg.workers.log_writer_lanes }, writer, &wp, Delivery::AtLeastOnce, &readiness, &shutdown);
                    // A failure of either ends the role (and the process, which shuts down).
                    tokio::try_join!(executor, writer).map(|_| ())
                }
            }
            .map_err(|e| format!("{role:?}: {e}"))
        });
    }
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "role failed; shutting down");
                failure.get_or_insert(e);
                shutdown.trigger();
            }
            Err(e) => {
                failure.get_or_insert(e.to_string());
                shutdown.trigger();
            }
        }
    }
    // The stages have stopped: the counts they added up since the last flush go out now.
    if let Err(e) = store.flush_counters().await {
        tracing::warn!(error = %e, "final counter flush failed; those counts are lost");
    }
    tracing::info!("stopped");
    match failure {
        Some(e) => Err(anyhow!(e)),
        None => Ok(()),
    }
}
