//! Support for the end-to-end tests: start the `tributary` roles as separate processes,
//! isolated per test (own topic prefix, keyspace, consumer groups, ports), against the real
//! Kafka and Cassandra that `make test` started; talk to them over HTTP; read Kafka topics and
//! the store directly to check what they did.
//!
//! Services are found through `KAFKA_BOOTSTRAP` and `CASSANDRA_NODES` (defaults
//! `127.0.0.1:9092`, `127.0.0.1:9042`). The binary is `target/<profile>/tributary`, built by
//! `make test` before the tests run.

pub mod http;
pub mod recorder;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tributary_store::{Store, StoreSettings};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub fn kafka() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn cassandra() -> String {
    std::env::var("CASSANDRA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

/// `target/<profile>/tributary`, next to the test executable's `deps/` folder.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("tributary");
    assert!(bin.exists(), "{} is missing: run `cargo build --bins` first (make test does)", bin.display());
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A test's own namespace.
/// A store on `node`, in keyspace `keyspace` (created with its tables if missing; one replica).
pub async fn store_at(node: &str, keyspace: &str) -> Store {
    Store::connect(&StoreSettings {
        nodes: vec![node.to_string()],
        keyspace: keyspace.to_string(),
        replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
        username: None,
        password: None,
    })
    .await
    .expect("connect to cassandra")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple().to_string().get(..10).unwrap())
}

/// One isolated installation: configuration shared by every process of the test.
pub struct Cluster {
    pub name: String,
    pub gateway_port: u16,
    pub admin_port: u16,
    pub env: Vec<(String, String)>,
    pub procs: Vec<(String, Child)>,
}

impl Cluster {
    pub fn new() -> Cluster {
        let name = unique("t");
        let gateway_port = free_port();
        let admin_port = free_port();
        let env = vec![
            ("TRIBUTARY_KAFKA_BROKERS".into(), kafka()),
            ("TRIBUTARY_KAFKA_TOPIC_PREFIX".into(), name.clone()),
            ("TRIBUTARY_KAFKA_GROUP_PREFIX".into(), name.clone()),
            ("TRIBUTARY_KAFKA_PARTITIONS".into(), "4".into()),
            ("TRIBUTARY_CASSANDRA_NODES".into(), format!("[\"{}\"]", cassandra())),
            ("TRIBUTARY_CASSANDRA_KEYSPACE".into(), name.clone()),
            ("TRIBUTARY_GATEWAY_LISTEN".into(), format!("127.0.0.1:{gateway_port}")),
            ("TRIBUTARY_ADMIN_LISTEN".into(), format!("127.0.0.1:{admin_port}")),
            ("TRIBUTARY_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("TRIBUTARY_ADMIN_PUBLIC_URL".into(), format!("http://127.0.0.1:{gateway_port}")),
            ("TRIBUTARY_LOG_FORMAT".into(), "text".into()),
            ("TRIBUTARY_LOG_LEVEL".into(), "info,librdkafka=warn,rdkafka=warn".into()),
        ];
        Cluster { name, gateway_port, admin_port, env, procs: Vec::new() }
    }

    /// Set (or replace) a configuration variable for every process started afterwards.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    fn command(&self, args: &[&str], extra_env: &[(&str, String)]) -> Command {
        let mut c = Command::new(binary());
        c.args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c
    }

    /// `tributary migrate`: keyspace, tables, topics, default environments.
    pub fn migrate(&self) {
        let out = self.command(&["migrate"], &[]).output().expect("run migrate");
        assert!(out.status.success(), "migrate failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    /// Start a role as its own process, logging to `target/e2e-logs/<cluster>-<role>.log`.
    /// Worker roles each get their own health port; returns it.
    pub fn start(&mut self, role: &str) -> u16 {
        self.start_with(role, &[])
    }

    /// Start a role with extra environment for this process only. Ports are picked free, but
    /// another test may take one before the role binds it: then the role exits with "Address
    /// already in use", and it is started again on new ports.
    pub fn start_with(&mut self, role: &str, extra: &[(&str, String)]) -> u16 {
        let log_dir = binary().parent().unwrap().join("e2e-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        for attempt in 0..5 {
            if attempt > 0 {
                match role {
                    "gateway" => {
                        self.gateway_port = free_port();
                        let (g, u) = (format!("127.0.0.1:{}", self.gateway_port), format!("http://127.0.0.1:{}", self.gateway_port));
                        self.set_env("TRIBUTARY_GATEWAY_LISTEN", &g);
                        self.set_env("TRIBUTARY_ADMIN_PUBLIC_URL", &u);
                    }
                    "admin" => {
                        self.admin_port = free_port();
                        let a = format!("127.0.0.1:{}", self.admin_port);
                        self.set_env("TRIBUTARY_ADMIN_LISTEN", &a);
                    }
                    _ => {}
                }
            }
            let health = free_port();
            let mut env: Vec<(&str, String)> = extra.to_vec();
            env.push(("TRIBUTARY_WORKERS_HEALTH_LISTEN", format!("127.0.0.1:{health}")));
            let log_path = log_dir.join(format!("{}-{role}-{health}.log", self.name));
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = self
                .command(&[role], &env)
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn role");
            let port = match role {
                "gateway" => self.gateway_port,
                "admin" => self.admin_port,
                _ => health,
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok((200, _, _)) = http::try_request(port, "GET", "/readyz", &[], None) {
                    self.procs.push((role.to_string(), child));
                    return port;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if text.contains("Address already in use") {
                        break; // next attempt, new ports
                    }
                    panic!("{role} exited ({status}) before it was ready:\n{}", text.lines().rev().take(20).collect::<Vec<_>>().join("\n"));
                }
                assert!(Instant::now() < deadline, "{role} on port {port} not ready after 60s (log {})", log_path.display());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("{role}: no free port after 5 attempts");
    }

    /// Send SIGTERM to the role's processes and wait for them to exit (graceful shutdown).
    pub fn stop(&mut self, role: &str) {
        let mut keep = Vec::new();
        for (r, mut child) in std::mem::take(&mut self.procs) {
            if r == role {
                terminate(&mut child);
            } else {
                keep.push((r, child));
            }
        }
        self.procs = keep;
    }

    /// Kill -9 (a crash, no shutdown).
    pub fn kill(&mut self, role: &str) {
        let mut keep = Vec::new();
        for (r, mut child) in std::mem::take(&mut self.procs) {
            if r == role {
                let _ = child.kill();
                let _ = child.wait();
            } else {
                keep.push((r, child));
            }
        }
        self.procs = keep;
    }

    /// The four pipeline roles plus admin, each its own process.
    pub fn start_all_roles(&mut self) {
        self.migrate();
        for role in ["admin", "translator", "mapper", "executor", "gateway"] {
            self.start(role);
        }
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        http::json(self.admin_port, method, path, &[("authorization", &auth)], body)
    }

    pub fn admin_ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, v) = self.admin(method, path, body);
        assert!((200..300).contains(&status), "{method} {path} -> {status}: {v}");
        v
    }

    /// Create a source; returns (source view, development token).
    pub fn create_source(&self, key: &str, template: &str) -> (Value, String) {
        let v = self.admin_ok("POST", "/v1/sources", Some(&serde_json::json!({"key": key, "template": template})));
        let token = v["environments"]["development"]["token"].as_str().expect("token").to_string();
        (v, token)
    }

    pub fn gateway(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value, Vec<(String, String)>) {
        http::try_request(self.gateway_port, method, path, headers, Some(body)).expect("gateway request")
    }

    pub fn post_event(&self, token: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        http::request(self.gateway_port, "POST", &format!("/integrations/receive/{token}"), headers, Some(body))
    }

    /// The brokers this cluster's processes use (the shared ones unless set otherwise).
    pub fn brokers(&self) -> String {
        self.env.iter().find(|(k, _)| k == "TRIBUTARY_KAFKA_BROKERS").map(|(_, v)| v.clone()).unwrap_or_else(kafka)
    }

    /// The Cassandra node this cluster's processes use.
    pub fn cassandra_node(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "TRIBUTARY_CASSANDRA_NODES")
            .and_then(|(_, v)| serde_json::from_str::<Vec<String>>(v).ok())
            .and_then(|v| v.into_iter().next())
            .unwrap_or_else(cassandra)
    }

    pub async fn store(&self) -> Store {
        store_at(&self.cassandra_node(), &self.name).await
    }

    pub fn topic(&self, stage: &str) -> String {
        format!("{}.{stage}", self.name)
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in self.procs.iter_mut() {
            terminate(child);
        }
        // Drop the test's keyspace (a node holding hundreds of tables runs out of heap) and
        // its topics (a broker holding thousands of partitions slows down).
        let (name, node, brokers) = (self.name.clone(), self.cassandra_node(), self.brokers());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let settings = StoreSettings {
                    nodes: vec![node],
                    keyspace: name,
                    replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
                    username: None,
                    password: None,
                };
                if let Ok(store) = Store::connect_existing(&settings).await {
                    let _ = store.drop_keyspace().await;
                }
                let _ = tributary_bus::delete_topics(&brokers, &tributary_bus::Topics::new(&settings.keyspace)).await;
            })
        })
        .join();
    }
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Poll `/readyz` until 200.
pub fn wait_ready(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((200, _, _)) = http::try_request(port, "GET", "/readyz", &[], None) {
            return;
        }
        assert!(Instant::now() < deadline, "port {port} not ready after {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Poll `f` until it returns Some, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The event log of `id`, once it is there (40 s at most).
pub async fn wait_event(store: &Store, id: &str) -> tributary_model::EventLog {
    eventually(Duration::from_secs(40), &format!("event log {id}"), || {
        let (s, id) = (store.clone(), id.to_string());
        async move { s.get_event_log(&id).await.unwrap() }
    })
    .await
}

/// At least `n` action logs of event `id`, once they are there (40 s at most).
pub async fn wait_actions(store: &Store, id: &str, n: usize) -> Vec<tributary_model::ActionLog> {
    eventually(Duration::from_secs(40), &format!("{n} action logs of {id}"), || {
        let (s, id) = (store.clone(), id.to_string());
        async move { Some(s.action_logs_for_event(&id).await.unwrap()).filter(|a| a.len() >= n) }
    })
    .await
}

/// Read every record of `topic` that arrives within `wait` (from the beginning).
pub fn read_topic(topic: &str, wait: Duration, expect_at_least: usize) -> Vec<(String, Value)> {
    read_topic_from(&kafka(), topic, wait, expect_at_least)
}

/// The same, from a given broker.
pub fn read_topic_from(brokers: &str, topic: &str, wait: Duration, expect_at_least: usize) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // What a downstream consumer of the triggers must use: aborted transactions are skipped.
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let v: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null);
            out.push((key, v));
        } else if out.len() >= expect_at_least && expect_at_least > 0 {
            // give stragglers (duplicates we must not see) a moment, then stop
            let settle = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < settle {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    out.push((key, serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null)));
                }
            }
            break;
        }
    }
    out
}

/// A Kafka broker or a Cassandra node of a test's own (so stopping or killing it disturbs no
/// other test): `deploy/local/{kafka,cassandra}.sh` with its own ports and run directory.
pub struct PrivateService {
    /// `kafka.sh` or `cassandra.sh`.
    script: &'static str,
    /// The run directory's variable, and the pid file in it.
    run_dir_var: &'static str,
    pid_file: &'static str,
    port: u16,
    env: Vec<(String, String)>,
}

/// A broker of a test's own.
pub struct PrivateKafka;

impl PrivateKafka {
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> PrivateService {
        let port = free_port();
        let env = vec![("KAFKA_PORT".into(), port.to_string()), ("KAFKA_CONTROLLER_PORT".into(), free_port().to_string())];
        PrivateService::new("kafka.sh", "KAFKA_RUN_DIR", "kafka.pid", "trib-kafka", port, env)
    }
}

/// A Cassandra node of a test's own: 1 GiB of heap (it holds one keyspace).
pub struct PrivateCassandra;

impl PrivateCassandra {
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> PrivateService {
        let port = free_port();
        let env = vec![
            ("CASSANDRA_PORT".into(), port.to_string()),
            ("CASSANDRA_STORAGE_PORT".into(), free_port().to_string()),
            ("CASSANDRA_HEAP_OPTS".into(), "-Xms1g -Xmx1g".into()),
            // Durable, as in production: the test speed-ups (no fsync, schema changes not
            // flushed) lose the keyspace's tables to a SIGKILL, which is the fault this node
            // is for (the drill found the gateway answering 404 for every token after one).
            ("CASSANDRA_FAST".into(), "0".into()),
            // A write is acknowledged once it is on disk. With the default periodic commit log
            // (synced every 10 s) a SIGKILL lost event logs this one node had acknowledged:
            // production gets that durability from replicas (RF 3), a single node only from
            // batch sync.
            ("CASSANDRA_EXTRA_YAML".into(), "commitlog_sync: batch\ncommitlog_sync_period: 0ms".into()),
        ];
        PrivateService::new("cassandra.sh", "CASSANDRA_RUN_DIR", "cassandra.pid", "trib-cassandra", port, env)
    }
}

impl PrivateService {
    fn new(
        script: &'static str,
        run_dir_var: &'static str,
        pid_file: &'static str,
        dir_prefix: &str,
        port: u16,
        mut env: Vec<(String, String)>,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("{dir_prefix}-{}", uuid::Uuid::new_v4().simple()));
        env.push((run_dir_var.into(), dir.display().to_string()));
        PrivateService { script, run_dir_var, pid_file, port, env }
    }

    /// `deploy/local/<script> <cmd>` for this service (`start`, `stop`, `clean`).
    pub fn script(&self, cmd: &str) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local").join(self.script);
        let st = Command::new("bash").arg(script).arg(cmd).envs(self.env.iter().cloned()).stdout(Stdio::null()).status().unwrap();
        assert!(st.success(), "{} {cmd} failed", self.script);
    }

    /// SIGKILL the service (a crash: no controlled shutdown, no flush).
    pub fn kill_9(&self) {
        let dir = self.env.iter().find(|(k, _)| k == self.run_dir_var).map(|(_, v)| v.clone()).unwrap();
        let pid = std::fs::read_to_string(std::path::Path::new(&dir).join(self.pid_file)).expect(self.pid_file);
        let st = Command::new("kill").arg("-KILL").arg(pid.trim()).status().unwrap();
        assert!(st.success(), "kill -9 {pid}");
        std::thread::sleep(Duration::from_millis(500));
    }

    /// `127.0.0.1:<port>`: the broker's bootstrap address, or the node's CQL address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn brokers(&self) -> String {
        self.address()
    }

    pub fn nodes(&self) -> String {
        self.address()
    }
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local").join(self.script);
        let _ = Command::new("bash").arg(script).arg("clean").envs(self.env.iter().cloned()).status();
    }
}
