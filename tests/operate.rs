//! Operating Tributary: what an operator's tools see.
//!
//! - `probes_tell_the_truth_while_dependencies_are_down`: a role whose Kafka or database is
//!   unreachable at start serves `/healthz` 200 and `/readyz` 503 while it waits, and becomes
//!   ready once the dependency answers.
//! - `rules_pass_promtool`: `promtool check config` / `check rules` and the rules' unit tests
//!   (`promtool test rules deploy/prometheus/tests/*.yml`).
//! - `deploy_files_validate`: Kubernetes manifests against the Kubernetes schemas and what the
//!   issue asks of them, the Compose file against the Compose specification, the Dockerfile
//!   (hadolint), the Grafana dashboard (tests/operate/check_deploy.py).
//! - `live_fleet_under_prometheus`: every role as its own process; `promtool check metrics` on
//!   each one's `/metrics`; Debian's Prometheus scraping them with deploy/prometheus's rules;
//!   every expression of the dashboard and the rules returns data through the query API; the
//!   lag alert fires while the mapper is stopped and clears once it is back.
//!
//! The tools come from `deploy/prometheus/install-tools.sh` (`make test` runs it first): a
//! missing one fails the test with a message naming the script.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tributary_tests::recorder::Recorder;
use tributary_tests::{binary, cassandra, free_port, http, kafka, Cluster};

const INSTALL: &str = "deploy/prometheus/install-tools.sh";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The path of a tool, or a failure that says how to install it.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: run `bash {INSTALL}` (make test does before the tests)"))
}

fn python() -> PathBuf {
    let py = tool("python3");
    let ok = Command::new(&py).args(["-c", "import kubernetes_validate, yaml, jsonschema"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "the Python package kubernetes-validate is not installed: run `bash {INSTALL}` (make test does before the tests)");
    py
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

// ------------------------------------------------------------------------------------------
// Rules and deploy files
// ------------------------------------------------------------------------------------------

#[test]
fn rules_pass_promtool() {
    let promtool = tool("promtool");
    let dir = root().join("deploy/prometheus");
    run_ok(Command::new(&promtool).current_dir(&dir).args(["check", "config", "prometheus.yml"]), "promtool check config");
    let rules: Vec<PathBuf> = std::fs::read_dir(dir.join("rules")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(rules.len() >= 2, "recording and alert rules expected in deploy/prometheus/rules");
    run_ok(Command::new(&promtool).arg("check").arg("rules").args(&rules), "promtool check rules");
    let tests: Vec<PathBuf> = std::fs::read_dir(dir.join("tests")).unwrap().map(|e| e.unwrap().path()).collect();
    let out = run_ok(Command::new(&promtool).current_dir(&dir).arg("test").arg("rules").args(&tests), "promtool test rules");
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has a unit test.
    let tested: String = tests.iter().map(|t| std::fs::read_to_string(t).unwrap()).collect();
    for line in std::fs::read_to_string(dir.join("rules/tributary-alerts.yml")).unwrap().lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(tested.contains(&format!("alertname: {name}")), "alert {name} has no case in deploy/prometheus/tests");
        }
    }
}

#[test]
fn deploy_files_validate() {
    let py = python();
    for t in ["kubectl", "check-jsonschema", "hadolint"] {
        tool(t);
    }
    for what in ["kubernetes", "compose", "docker", "grafana"] {
        let out = run_ok(
            Command::new(&py).arg(root().join("tests/operate/check_deploy.py")).arg(root()).arg(what),
            &format!("check_deploy.py {what}"),
        );
        println!("{}", out.trim());
    }
}

// ------------------------------------------------------------------------------------------
// Probes
// ------------------------------------------------------------------------------------------

/// A TCP port that refuses connections until `open`, then forwards them to `target`: a
/// dependency that comes up while a role waits for it.
struct Forwarder {
    port: u16,
    target: String,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    fn new(target: String) -> Forwarder {
        Forwarder { port: free_port(), target, stop: Arc::new(AtomicBool::new(false)) }
    }

    fn open(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind forwarder");
        listener.set_nonblocking(true).unwrap();
        let (target, stop) = (self.target.clone(), self.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        if let Ok(server) = TcpStream::connect(&target) {
                            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                            pipe(server, client);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// A role process this test started itself (not through `Cluster::start`, which waits for
/// readiness); stopped with SIGTERM when dropped.
struct Proc(Child, PathBuf);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_role(cluster: &Cluster, role: &str, extra: &[(&str, String)]) -> Proc {
    let dir = binary().parent().unwrap().join("e2e-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join(format!("{}-{role}-probes.log", cluster.name));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(binary());
    cmd.arg(role).stdout(Stdio::from(log.try_clone().unwrap())).stderr(Stdio::from(log));
    for (k, v) in &cluster.env {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().expect("spawn role"), log_path)
}

fn get(port: u16, path: &str) -> Option<(u16, Value)> {
    http::try_request(port, "GET", path, &[], None).ok().map(|(s, v, _)| (s, v))
}

#[test]
fn probes_tell_the_truth_while_dependencies_are_down() {
    let cluster = Cluster::new();
    // The gateway starts while Kafka does not answer; the mapper while the database does not.
    let kafka_later = Forwarder::new(kafka());
    let cassandra_later = Forwarder::new(cassandra());
    let mapper_health = free_port();
    let mut gateway = spawn_role(&cluster, "gateway", &[("TRIBUTARY_KAFKA_BROKERS", format!("127.0.0.1:{}", kafka_later.port))]);
    let mut mapper = spawn_role(
        &cluster,
        "mapper",
        &[
            ("TRIBUTARY_CASSANDRA_NODES", format!("[\"127.0.0.1:{}\"]", cassandra_later.port)),
            ("TRIBUTARY_WORKERS_HEALTH_LISTEN", format!("127.0.0.1:{mapper_health}")),
        ],
    );
    let started = Instant::now();
    for (name, port, missing) in [("gateway", cluster.gateway_port, "kafka"), ("mapper", mapper_health, "cassandra")] {
        // Listening from the first second.
        let deadline = Instant::now() + Duration::from_secs(5);
        while get(port, "/healthz").is_none() {
            assert!(Instant::now() < deadline, "{name} does not listen on {port} 5 s after start");
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("{name}: /healthz answers {:?} after start", started.elapsed());
        assert_eq!(get(port, "/healthz").unwrap().0, 200, "{name} /healthz");
        let (status, body) = get(port, "/readyz").unwrap();
        assert_eq!(status, 503, "{name} /readyz while {missing} is down: {body}");
        assert_eq!(body["checks"][missing], json!(false), "{name} /readyz names what it waits for: {body}");
        let (status, _) = get(port, "/metrics").unwrap();
        assert_eq!(status, 200, "{name} /metrics while waiting");
    }
    // The image's HEALTHCHECK script agrees (deploy/docker/healthcheck.sh, bash only).
    let healthcheck = |port: u16| {
        Command::new("bash").arg(root().join("deploy/docker/healthcheck.sh")).arg(port.to_string()).status().unwrap().success()
    };
    assert!(healthcheck(cluster.gateway_port), "healthcheck.sh against the waiting gateway");
    assert!(healthcheck(mapper_health), "healthcheck.sh against the waiting mapper");
    assert!(!healthcheck(free_port()), "healthcheck.sh against a closed port must fail");
    // Still waiting, not exiting (a liveness probe sees it alive; readiness keeps traffic away).
    std::thread::sleep(Duration::from_secs(3));
    for (name, p, port) in [("gateway", &mut gateway, cluster.gateway_port), ("mapper", &mut mapper, mapper_health)] {
        assert!(matches!(p.0.try_wait(), Ok(None)), "{name} exited while its dependency was down:\n{}", std::fs::read_to_string(&p.1).unwrap_or_default());
        assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
        assert_eq!(get(port, "/readyz").map(|r| r.0), Some(503));
    }

    // The dependencies come up: both become ready without a restart.
    kafka_later.open();
    cassandra_later.open();
    let opened = Instant::now();
    for (name, port, p) in [("gateway", cluster.gateway_port, &gateway), ("mapper", mapper_health, &mapper)] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match get(port, "/readyz") {
                Some((200, _)) => break,
                r => assert!(
                    Instant::now() < deadline,
                    "{name} not ready 60 s after its dependency came up (last {r:?}); log {}",
                    p.1.display()
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        println!("{name}: ready {:?} after its dependency came up", opened.elapsed());
    }
    // The gateway serves its own routes on the port the stand-in held.
    let (status, _) = get(cluster.gateway_port, "/integrations/receive/tok_nope").unwrap_or((0, Value::Null));
    assert_ne!(status, 0, "the gateway answers on its port");
    drop(gateway);
    drop(mapper);
}

// ------------------------------------------------------------------------------------------
// A live fleet under Prometheus
// ------------------------------------------------------------------------------------------

/// Debian's Prometheus on a free loopback port, with its own data directory.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    fn start(targets: &[(&str, u16)]) -> Prometheus {
        let bin = tool("prometheus");
        let dir = std::env::temp_dir().join(tributary_tests::unique("prometheus-"));
        std::fs::create_dir_all(&dir).unwrap();
        let rules = root().join("deploy/prometheus/rules");
        std::fs::copy(rules.join("tributary-recording.yml"), dir.join("recording.yml")).unwrap();
        std::fs::write(dir.join("alerts.yml"), compress(&std::fs::read_to_string(rules.join("tributary-alerts.yml")).unwrap())).unwrap();
        let static_configs: String = targets
            .iter()
            .map(|(role, port)| format!("      - targets: [\"127.0.0.1:{port}\"]\n        labels: {{ role: {role} }}\n"))
            .collect();
        // The production scrape configuration with a 1 s interval and loopback targets.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - recording.yml\n  - alerts.yml\n\
             scrape_configs:\n  - job_name: tributary\n    static_configs:\n{static_configs}"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(get(port, "/-/ready"), Some((200, _))) {
            assert!(Instant::now() < deadline, "prometheus not ready after 30 s: {}", std::fs::read_to_string(p.dir.join("prometheus.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// An instant query: `Ok(result vector)` or `Err(error text)`.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let body = format!("query={}", urlencode(expr));
        let (status, v, _) = http::try_request(
            self.port,
            "POST",
            "/api/v1/query",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
        )
        .map_err(|e| e.to_string())?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{status}: {v}"));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    fn api(&self, path: &str) -> Value {
        let (status, v) = get(self.port, path).unwrap_or((0, Value::Null));
        assert_eq!(status, 200, "GET {path}: {v}");
        v["data"].clone()
    }

    fn alerts(&self, name: &str, stage: &str) -> Vec<String> {
        self.api("/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["alertname"] == name && a["labels"]["stage"] == stage)
            .map(|a| a["state"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// The alert rules with time compressed 30-fold (minutes become two seconds each), in `for:`
/// and in range selectors: deploy/prometheus/rules/tributary-alerts.yml promises whole
/// minutes for this.
fn compress(rules: &str) -> String {
    let secs = |m: &str| m.strip_suffix('m').and_then(|n| n.parse::<u64>().ok()).map(|n| format!("{}s", n * 2));
    rules
        .lines()
        .map(|line| {
            if let Some((indent, d)) = line.split_once("for: ") {
                if let Some(s) = secs(d.trim()) {
                    return format!("{indent}for: {s}");
                }
            }
            let mut out = String::new();
            let mut rest = line;
            while let Some(i) = rest.find('[') {
                out.push_str(&rest[..=i]);
                rest = &rest[i + 1..];
                if let Some(j) = rest.find(']') {
                    if let Some(s) = secs(&rest[..j]) {
                        out.push_str(&s);
                        rest = &rest[j..];
                    }
                }
            }
            out.push_str(rest);
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Metric names an expression selects (tokens outside strings that name one of our series,
/// a recording rule's output, `up` or a process metric).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = String::new();
    let mut quote: Option<char> = None;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            quote = Some(c);
            token.clear();
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
            continue;
        }
        if (token.contains("tributary_") || token == "up" || token.starts_with("process_")) && !names.contains(&token) {
            names.push(token.clone());
        }
        token.clear();
    }
    names
}

/// Every expression of the dashboard (with `$__rate_interval` as 20 s) and of the rules.
/// (what, expression) pairs.
type Exprs = Vec<(String, String)>;

fn expressions(prom: &Prometheus) -> (Exprs, Exprs) {
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(root().join("deploy/grafana/dashboards/tributary.json")).unwrap()).unwrap();
    let mut must_return = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap().replace("$__rate_interval", "20s");
            must_return.push((format!("dashboard panel {:?}", p["title"].as_str().unwrap()), expr));
        }
    }
    let mut alerts = Vec::new();
    for g in prom.api("/api/v1/rules")["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let (name, query) = (r["name"].as_str().unwrap().to_string(), r["query"].as_str().unwrap().to_string());
            match r["type"].as_str() {
                Some("recording") => must_return.push((format!("recording rule {name}"), query)),
                _ => alerts.push((format!("alert {name}"), query)),
            }
        }
    }
    (must_return, alerts)
}

/// What is still wrong with the expressions: empty when every one returns data.
fn expression_problems(prom: &Prometheus, must_return: &[(String, String)], alerts: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (what, expr) in must_return {
        match prom.query(expr) {
            Err(e) => problems.push(format!("{what}: `{expr}` fails: {e}")),
            Ok(r) if r.is_empty() => problems.push(format!("{what}: `{expr}` returns no data")),
            Ok(_) => {}
        }
        names.extend(metric_names(expr));
    }
    for (what, expr) in alerts {
        // An alert's condition is false in a healthy fleet: it must evaluate, and every series
        // it reads must exist.
        if let Err(e) = prom.query(expr) {
            problems.push(format!("{what}: `{expr}` fails: {e}"));
        }
        for n in metric_names(expr) {
            if !names.contains(&n) {
                names.push(n.clone());
            }
            let r = prom.query(&format!("count({n})")).unwrap_or_default();
            if r.is_empty() {
                problems.push(format!("{what}: reads {n}, which has no data"));
            }
        }
    }
    problems
}

/// Sends events until dropped, every 50 ms, to each token in turn; one in ten is refused (no user).
/// Every fifth event also goes to the Kafka ingest topic for the first source (segment-web),
/// so the ingest panels and rules have data: again one in ten is refused (not JSON), and one
/// in fifteen names no source (dead-lettered).
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(gateway_port: u16, tokens: Vec<String>, ingest_topic: String) -> Traffic {
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", kafka()).create().expect("producer");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                i += 1;
                let path = format!("/integrations/receive/{}", tokens[i as usize % tokens.len()]);
                let body = if i.is_multiple_of(10) {
                    json!({"type": "track", "event": "Order Completed"})
                } else {
                    json!({"type": "track", "event": "Order Completed", "userId": format!("user-{}", i % 7), "messageId": format!("m-{i}")})
                };
                if let Ok((202, _, _)) = http::try_request(gateway_port, "POST", &path, &[], Some(body.to_string().as_bytes())) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                if i.is_multiple_of(5) {
                    let value = if i.is_multiple_of(10) { "{not json".to_string() } else { body.to_string() };
                    let named = [("tributary-source", "segment-web"), ("tributary-environment", "development")];
                    let headers = match i.is_multiple_of(15) {
                        true => OwnedHeaders::new(),
                        false => named.iter().fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k, value: Some(*v) })),
                    };
                    let key = format!("user-{}", i % 7);
                    let _ = producer.send(BaseRecord::to(&ingest_topic).key(&key).payload(&value).headers(headers));
                }
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = producer.flush(Duration::from_secs(5));
        });
        Traffic { stop, sent, thread: Some(thread) }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}:\n{e}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn live_fleet_under_prometheus() {
    let promtool = tool("promtool");
    tool("prometheus");
    let t0 = Instant::now();
    // A workflow API that fails now and then: the HTTP sink retries (5xx, 429).
    let failures = (0..40).map(|i| (if i % 2 == 0 { 500 } else { 429 }, vec![])).collect();
    let knock = Recorder::start(failures);
    let mut cluster = Cluster::new();
    cluster.set_env("TRIBUTARY_WORKERS_SINK_BACKOFF_MS", "20");
    cluster.migrate();
    let mut targets = vec![("admin", cluster.start("admin"))];
    for role in ["ingest", "translator", "mapper", "executor"] {
        targets.push((role, cluster.start(role)));
    }
    targets.push(("gateway", cluster.start("gateway")));
    // Two sources: one whose triggers go to Kafka, one whose go to the HTTP sink.
    let mut tokens = Vec::new();
    for (source, sink) in [("segment-web", None), ("segment-app", Some(knock.url()))] {
        let (_, token) = cluster.create_source(source, "segment");
        let base = format!("/v1/sources/{source}/environments/development");
        if let Some(url) = sink {
            cluster.admin_ok("PATCH", &base, Some(&json!({"sink": {"kind": "http", "base_url": url, "api_key": "sk_test"}})));
        }
        cluster.admin_ok(
            "POST",
            &format!("{base}/mappings"),
            Some(&json!({"event_type": "track", "event_name": "Order Completed", "action_type": "trigger_workflow",
                         "parameters": {"workflow": "order-completed"}})),
        );
        tokens.push(token);
    }
    let traffic = Traffic::start(cluster.gateway_port, tokens, cluster.topic("ingest"));
    let prom = Prometheus::start(&targets);
    println!("fleet and prometheus up after {:?}", t0.elapsed());

    // (a) promtool check metrics on every role's /metrics, once the lag monitors have measured.
    let metrics_of = |port: u16| match get(port, "/metrics") {
        Some((200, Value::String(text))) => text,
        r => panic!("GET /metrics on {port}: {r:?}"),
    };
    let worker_port = targets.iter().find(|(r, _)| *r == "executor").unwrap().1;
    wait_for(Duration::from_secs(30), "the lag metrics of every stage", || {
        let text = metrics_of(worker_port);
        let stages = ["ingest", "translator", "mapper", "executor", "action-log-writer"];
        match stages.iter().all(|s| text.contains(&format!("tributary_consumer_lag_seconds{{group=\"{}-{s}\"", cluster.name))) {
            true => Ok(()),
            false => Err(text.lines().filter(|l| l.contains("lag")).collect::<Vec<_>>().join("\n")),
        }
    });
    for (role, port) in &targets {
        let text = metrics_of(*port);
        let mut child = Command::new(&promtool).args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let complaints = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && complaints.trim().is_empty(), "promtool check metrics on {role}'s /metrics:\n{complaints}");
    }
    println!("promtool check metrics: {} roles pass ({:?})", targets.len(), t0.elapsed());

    // (d) Every expression of the dashboard and the rules returns data.
    wait_for(Duration::from_secs(30), "every target scraped", || {
        let up = prom.query("sum(up{job=\"tributary\"})")?;
        match up.first().and_then(|s| s["value"][1].as_str()) {
            Some("6") => Ok(()),
            v => Err(format!("sum(up) = {v:?}")),
        }
    });
    let (must_return, alerts) = expressions(&prom);
    assert!(must_return.len() > 30 && alerts.len() > 10, "{} expressions, {} alerts", must_return.len(), alerts.len());
    wait_for(Duration::from_secs(45), "every dashboard and rule expression to return data", || {
        match expression_problems(&prom, &must_return, &alerts) {
            p if p.is_empty() => Ok(()),
            p => Err(p.join("\n")),
        }
    });
    println!(
        "{} dashboard/recording expressions and {} alerts checked ({:?})",
        must_return.len(),
        alerts.len(),
        t0.elapsed()
    );

    // The lag alert fires while the mapper is stopped, and clears once it is back.
    let stage = "mapper";
    // Pending is allowed: an exactly-once stage's lag is a sawtooth (see below); firing is not.
    let before = prom.alerts("TributaryConsumerLagGrowing", stage);
    assert!(!before.iter().any(|s| s == "firing"), "lag alert firing before the mapper stopped: {before:?}");
    cluster.stop("mapper");
    let stopped = Instant::now();
    wait_for(Duration::from_secs(60), "TributaryConsumerLagGrowing firing for the stopped mapper", || {
        match prom.alerts("TributaryConsumerLagGrowing", stage).as_slice() {
            [s] if s == "firing" => Ok(()),
            s => Err(format!("alert states {s:?}; lag {:?}", prom.query("stage:tributary_consumer_lag_records:sum"))),
        }
    });
    println!("lag alert firing {:?} after the mapper stopped", stopped.elapsed());
    let behind = prom.query("stage:tributary_consumer_lag_seconds:max{stage=\"mapper\"} > 0").unwrap();
    assert_eq!(behind.len(), 1, "the mapper's lag in seconds grows while it is stopped: {behind:?}");
    // Pending is the rule at work on a sawtooth (an exactly-once stage's lag drops to zero at
    // each commit); an alert is what fires.
    let translator = prom.alerts("TributaryConsumerLagGrowing", "translator");
    assert!(!translator.iter().any(|s| s == "firing"), "the translator keeps up: no alert for it ({translator:?})");

    cluster.start("mapper");
    let restarted = Instant::now();
    wait_for(Duration::from_secs(60), "the lag alert to clear once the mapper is back", || {
        match prom.alerts("TributaryConsumerLagGrowing", stage).as_slice() {
            [] => Ok(()),
            s => Err(format!("alert states {s:?}; lag {:?}", prom.query("stage:tributary_consumer_lag_records:sum"))),
        }
    });
    println!("lag alert cleared {:?} after the mapper came back; {} events accepted; total {:?}", restarted.elapsed(), traffic.sent.load(Ordering::Relaxed), t0.elapsed());
    drop(traffic);
}

#[test]
fn compress_turns_minutes_into_seconds() {
    let rules = "        for: 10m\n        expr: deriv(x[10m]) > 0 and rate(y[5m]) and z offset 1h and w[30s]";
    assert_eq!(compress(rules), "        for: 20s\n        expr: deriv(x[20s]) > 0 and rate(y[10s]) and z offset 1h and w[30s]");
    assert_eq!(
        metric_names("sum by (code) (rate(tributary_gateway_events_total{outcome=\"rejected\",client=\"tributary_x\"}[5m])) / up and process_cpu_seconds_total"),
        vec!["tributary_gateway_events_total", "up", "process_cpu_seconds_total"]
    );
}
