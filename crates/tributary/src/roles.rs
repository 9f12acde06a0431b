//! Starting roles: connect, check the schema, spawn each role, wait for shutdown.

use anyhow::{anyhow, Context};
use std::sync::Arc;
use std::time::Duration;
use tributary_bus::{ensure_topics, worker_producer, Delivery, Topics};
use tributary_runtime::config::Config;
use tributary_runtime::{serve_health, Readiness, Shutdown};
use tributary_store::{ConfigCache, Store, StoreSettings};
use tributary_workers::executor::{Executor, LogPath, LogWriter};
use tributary_workers::{mapper::Mapper, producing_delivery, translator::Translator};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Gateway,
    Translator,
    Mapper,
    Executor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Gateway, Role::Translator, Role::Mapper, Role::Executor, Role::Admin];
    fn is_worker(self) -> bool {
        matches!(self, Role::Translator | Role::Mapper | Role::Executor)
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
    Store::connect(&settings).await.with_context(|| format!("cassandra at {:?}", cfg.cassandra.nodes))
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

pub async fn run(cfg: &Config, roles: &[Role]) -> anyhow::Result<()> {
    if roles.contains(&Role::Admin) {
        cfg.require_admin_token()?;
    }
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let store = connect(cfg).await?;
    store.ensure_default_environments().await?;
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    ensure_topics(&cfg.kafka.brokers, &topics, cfg.kafka.partitions, cfg.kafka.replication_factor)
        .await
        .map_err(|e| anyhow!(e))?;
    let cache = ConfigCache::start(
        store.clone(),
        Duration::from_millis(cfg.workers.config_refresh_ms),
        Duration::from_millis(cfg.workers.config_poll_ms),
        shutdown.receiver(),
    )
    .await?;
    let readiness = Readiness::default();
    let mut tasks = tokio::task::JoinSet::new();

    if roles.iter().any(|r| r.is_worker()) {
        let (addr, r, s) = (cfg.workers.health_listen, readiness.clone(), shutdown.clone());
        tasks.spawn(async move { serve_health(addr, r, s).await.map_err(|e| format!("health endpoint {addr}: {e}")) });
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
                Role::Translator => {
                    let p = producer()?;
                    let h = Arc::new(Translator { cache, store, producer: p.clone(), out_topic: topics.normalized.clone() });
                    tributary_workers::run(&cfg, "translator", topics.raw.clone(), h, &p, delivery, &readiness, &shutdown).await
                }
                Role::Mapper => {
                    let p = producer()?;
                    let h = Arc::new(Mapper { cache, producer: p.clone(), out_topic: topics.actions.clone() });
                    tributary_workers::run(&cfg, "mapper", topics.normalized.clone(), h, &p, delivery, &readiness, &shutdown).await
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
                    let executor = tributary_workers::run(&cfg, "executor", topics.actions.clone(), h, &p, delivery, &readiness, &shutdown);
                    // The reports' writer: upserts only, so at-least-once is enough.
                    let wp = worker_producer(&cfg.kafka.brokers, "tributary-action-log-writer", None).map_err(|e| e.to_string())?;
                    let writer = Arc::new(LogWriter { store });
                    let writer = tributary_workers::run(&cfg, "action-log-writer", topics.action_logs.clone(), writer, &wp, Delivery::AtLeastOnce, &readiness, &shutdown);
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
    tracing::info!("stopped");
    match failure {
        Some(e) => Err(anyhow!(e)),
        None => Ok(()),
    }
}
