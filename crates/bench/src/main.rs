//! `tributary-bench`: the benchmarks behind `make bench`. Every figure is reported beside a
//! baseline measured in the same run on the same machine (it is shared and noisy), as a ratio.
//!
//! - `gateway`: single events, 100- and 1,000-event batches and a template mix, closed loop
//!   (throughput) and open loop at half of it (latency), against two ceilings: a bare HTTP
//!   server that answers 202 with no work, and the rdkafka producer alone.
//! - `pipeline`: events from the gateway to their action logs, against a plain loop of the
//!   same Cassandra writes.
//! - `bare-server`: the HTTP ceiling's server (a separate process, like the gateway).

mod gateway;
mod http1;
mod load;
mod pipeline;
mod procs;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Gateway(gateway::Args),
    Pipeline(pipeline::Args),
    BareServer {
        #[arg(long)]
        port: u16,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Gateway(a) => gateway::run(a).await,
            Cmd::Pipeline(a) => pipeline::run(a).await,
            Cmd::BareServer { port } => bare_server(port).await,
        }
    })
}

/// Reads the body (as the gateway must) and answers 202 with a small JSON body.
async fn bare_server(port: u16) -> anyhow::Result<()> {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/integrations/receive/{token}",
            post(|_body: axum::body::Bytes| async { (axum::http::StatusCode::ACCEPTED, r#"{"accepted":1,"rejected":0}"#) }),
        )
        .route("/readyz", get(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::disable());
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(l, app).await?;
    Ok(())
}

/// The bench environment: services and the binary.
pub struct Env {
    pub kafka: String,
    pub cassandra: String,
    pub bin_dir: std::path::PathBuf,
    pub prefix: String,
}

impl Env {
    pub fn from_env() -> Env {
        let exe = std::env::current_exe().unwrap();
        Env {
            kafka: std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into()),
            cassandra: std::env::var("CASSANDRA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into()),
            bin_dir: exe.parent().unwrap().to_path_buf(),
            prefix: format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        }
    }

    pub fn tributary(&self) -> String {
        self.bin_dir.join("tributary").display().to_string()
    }

    /// Configuration for tributary processes of this run.
    pub fn config(&self) -> Vec<(String, String)> {
        vec![
            ("TRIBUTARY_KAFKA_BROKERS".into(), self.kafka.clone()),
            ("TRIBUTARY_KAFKA_TOPIC_PREFIX".into(), self.prefix.clone()),
            ("TRIBUTARY_KAFKA_GROUP_PREFIX".into(), self.prefix.clone()),
            // 8 unless set: librdkafka sends one produce request per partition, so the count
            // changes what the broker sees (README, Benchmarks)
            ("TRIBUTARY_KAFKA_PARTITIONS".into(), std::env::var("TRIBUTARY_KAFKA_PARTITIONS").unwrap_or_else(|_| "8".into())),
            ("TRIBUTARY_CASSANDRA_NODES".into(), format!("[\"{}\"]", self.cassandra)),
            ("TRIBUTARY_CASSANDRA_KEYSPACE".into(), self.prefix.clone()),
            ("TRIBUTARY_LOG_LEVEL".into(), "warn".into()),
        ]
    }

    pub async fn store(&self) -> tributary_store::Store {
        tributary_store::Store::connect(&tributary_store::StoreSettings {
            nodes: vec![self.cassandra.clone()],
            keyspace: self.prefix.clone(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            username: None,
            password: None,
        })
        .await
        .expect("cassandra")
    }

    pub fn migrate(&self) {
        let st = std::process::Command::new(self.tributary()).arg("migrate").envs(self.config()).status().unwrap();
        assert!(st.success(), "migrate failed");
    }

    /// A source of `template` in development; returns its token.
    pub async fn source(&self, store: &tributary_store::Store, key: &str, template: tributary_model::Template) -> String {
        let token = tributary_model::ids::new_token();
        store
            .put_source(&tributary_model::Source { key: key.into(), name: key.into(), template, created_at: 0 })
            .await
            .unwrap();
        store
            .put_settings(&tributary_sources::templates::default_settings(template, key, "development", token.clone()))
            .await
            .unwrap();
        token
    }
}

/// A realistic analytics.js track call (~700 bytes).
pub fn segment_track(i: u64) -> serde_json::Value {
    serde_json::json!({
        "type": "track", "event": "Order Completed", "userId": format!("user-{}", i % 5000),
        "anonymousId": "6f0c6d2e-2c1e-4a0e-9f43-1d2a3b4c5d6e",
        "messageId": format!("ajs-next-{i}-{}", uuid::Uuid::new_v4()),
        "timestamp": "2024-07-01T09:30:01.379Z", "sentAt": "2024-07-01T09:30:00.200Z",
        "properties": {"order_id": format!("o-{i}"), "total": 129.90, "currency": "EUR",
                       "products": [{"sku": "A-1", "quantity": 2, "price": 64.95}]},
        "context": {"library": {"name": "analytics.js", "version": "next-1.70.0"}, "locale": "en-US",
                    "page": {"path": "/checkout", "url": "https://shop.example.com/checkout", "title": "Checkout"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "ip": "203.0.113.7"}
    })
}
