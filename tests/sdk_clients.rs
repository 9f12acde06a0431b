//! Client compatibility: the real Segment and RudderStack server-side SDKs, installed from their
//! registries at the versions pinned in `tests/sdk/`, send to the gateway's tracking API
//! (`POST /v1/batch`, Basic auth with the development token as write key): one identify, one
//! track and one page, each flushed alone, then a batch of four flushed together.
//!
//! For each SDK the test asserts that the SDK saw success (no error callback or event), that it
//! resent nothing (its HTTP requests, seen by a hook in the SDK's HTTP client, and the gateway's
//! `tributary_gateway_requests_total` both equal the flushes the script made, with every
//! messageId in exactly one request), and that every event is in the event logs exactly once,
//! `processed`, with the right user id, type and name.
//!
//! The SDKs are installed outside the source tree, in `$TRIBUTARY_SDK_CACHE` or
//! `${XDG_CACHE_HOME:-~/.cache}/tributary-tests/sdk/<package>-<version>/` (`npm install
//! --prefix`, `pip install --target`), only when that folder lacks them. Needs `node` (20+),
//! `npm` and `python3` with pip. A registry that cannot be reached fails the test;
//! `TRIBUTARY_SKIP_SDK_TESTS=1` skips it instead.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tributary_tests::{eventually, unique, Cluster};

#[tokio::test(flavor = "multi_thread")]
async fn segment_analytics_node() {
    sdk_case(Lang::Node, "segment-node", "segment").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rudderstack_sdk_node() {
    sdk_case(Lang::Node, "rudderstack-node", "rudderstack").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_analytics_python() {
    sdk_case(Lang::Python, "segment-python", "segment").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rudderstack_sdk_python() {
    sdk_case(Lang::Python, "rudderstack-python", "rudderstack").await;
}

const SKIP_VAR: &str = "TRIBUTARY_SKIP_SDK_TESTS";
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Lang {
    Node,
    Python,
}

impl Lang {
    fn script(self) -> PathBuf {
        let name = match self {
            Lang::Node => "node_clients.mjs",
            Lang::Python => "python_clients.py",
        };
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(name)
    }

    fn interpreter(self) -> String {
        match self {
            Lang::Node => std::env::var("NODE").unwrap_or_else(|_| "node".into()),
            Lang::Python => std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()),
        }
    }

    fn registry(self) -> &'static str {
        match self {
            Lang::Node => "the npm registry",
            Lang::Python => "PyPI",
        }
    }
}

/// One SDK as its script pins it.
#[derive(Debug)]
struct Pin {
    package: String,
    version: String,
}

async fn sdk_case(lang: Lang, sdk: &str, template: &str) {
    if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
        println!("[sdk_clients] {sdk}: SKIPPED ({SKIP_VAR}=1): the real-SDK compatibility check did not run");
        return;
    }
    let pin = pin(lang, sdk);
    // Before any cluster: an unreachable registry fails fast, with its own message.
    let sdk_dir = ensure_installed(lang, &pin);

    let mut c = Cluster::new();
    c.start_all_roles();
    let key = format!("sdk-{sdk}");
    let (_, token) = c.create_source(&key, template);

    let user_id = unique(&format!("{sdk}-user-"));
    let run_id = unique(&format!("{sdk}-run-"));
    let before = gateway_counters(c.gateway_port);
    let started = Instant::now();
    let summary = run_client(lang, sdk, &sdk_dir, c.gateway_port, &token, &user_id, &run_id);
    let client_secs = started.elapsed().as_secs_f64();
    let after = gateway_counters(c.gateway_port);
    let requests_by_status = after.requests_delta(&before);
    let gateway_requests: u64 = requests_by_status.values().sum();
    let items_logged = after.items - before.items;

    println!(
        "[sdk_clients] {sdk}: {} {} ran in {client_secs:.1}s; summary:\n{}\n[sdk_clients] {sdk}: gateway requests by status: {requests_by_status:?}, items accepted or refused: {items_logged}",
        summary["package"].as_str().unwrap_or("?"),
        summary["version"].as_str().unwrap_or("?"),
        serde_json::to_string_pretty(&summary).unwrap()
    );

    let mut problems: Vec<String> = Vec::new();
    let flushes = summary["flushes"].as_u64().expect("summary.flushes");
    let events = summary["events"].as_array().expect("summary.events").clone();
    let sdk_requests = summary["requests"].as_array().expect("summary.requests").clone();
    assert!(flushes > 0 && !events.is_empty(), "the client script sent nothing: {summary}");

    // The SDK is the one pinned.
    if summary["version"] != json!(pin.version) {
        problems.push(format!("installed {} is {}, pinned {}", pin.package, summary["version"], pin.version));
    }
    // The SDK saw success.
    let errors = summary["errors"].as_array().cloned().unwrap_or_default();
    if summary["success"] != json!(true) || !errors.is_empty() {
        problems.push(format!("the SDK reported {} failure(s) (error callbacks/events): {}", errors.len(), Value::Array(errors.clone())));
    }
    // Nothing was resent: one HTTP request per flush, every messageId in exactly one request.
    if sdk_requests.len() as u64 != flushes {
        problems.push(format!(
            "the SDK made {} HTTP requests for {flushes} flushes ({} resent; max_retries={}), statuses {:?}",
            sdk_requests.len(),
            sdk_requests.len() as i64 - flushes as i64,
            summary["max_retries"],
            sdk_requests.iter().map(|r| r["status"].to_string()).collect::<Vec<_>>()
        ));
    }
    let mut sent_in: HashMap<String, usize> = HashMap::new();
    for r in &sdk_requests {
        for id in r["message_ids"].as_array().into_iter().flatten() {
            *sent_in.entry(id.as_str().unwrap_or_default().to_string()).or_default() += 1;
        }
    }
    let not_once: Vec<String> = events
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .filter_map(|id| match sent_in.get(id).copied().unwrap_or(0) {
            1 => None,
            n => Some(format!("{id} ×{n}")),
        })
        .collect();
    if !not_once.is_empty() {
        problems.push(format!("messageIds not in exactly one HTTP request of the SDK: {}", not_once.join(", ")));
    }
    // The gateway saw the same: one request per flush, every one answered with success.
    if gateway_requests != flushes {
        problems.push(format!("the gateway counted {gateway_requests} tracking-API requests for {flushes} flushes: {requests_by_status:?}"));
    }
    if let Some((status, n)) = requests_by_status.iter().find(|(s, _)| !s.starts_with('2')) {
        problems.push(format!("the gateway answered {n} request(s) with {status}"));
    }
    if items_logged != events.len() as u64 {
        problems.push(format!("the gateway took {items_logged} items for {} events sent", events.len()));
    }
    if !problems.is_empty() {
        println!("[sdk_clients] {sdk}: problems so far (before reading the event logs):\n  - {}", problems.join("\n  - "));
    }

    // Every event in the event logs exactly once. Every item the gateway took gets a log row
    // (processed, duplicate or rejected): wait for all of them, then look.
    let want = items_logged.max(events.len() as u64) as usize;
    let source_q = format!("/v1/environments/development/events?source={key}&limit=500");
    let rows: Vec<Value> = eventually(
        Duration::from_secs(60),
        &format!("{want} event logs of source {key} ({} events sent, {items_logged} items taken by the gateway)", events.len()),
        || {
            let v = c.admin_ok("GET", &source_q, None);
            let rows = v["events"].as_array().cloned().unwrap_or_default();
            std::future::ready((rows.len() >= want).then_some(rows))
        },
    )
    .await;
    // messageId of each row, from its raw item
    let mut logged: HashMap<String, Vec<Value>> = HashMap::new();
    for row in &rows {
        let id = row["event_id"].as_str().expect("event_id");
        let full = c.admin_ok("GET", &format!("/v1/events/{id}"), None);
        let raw = match &full["raw"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            v => v.clone(),
        };
        let mid = raw["messageId"].as_str().unwrap_or("<no messageId>").to_string();
        logged.entry(mid).or_default().push(row.clone());
    }
    let mut expected_per_type: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        let id = e["message_id"].as_str().unwrap();
        let ty = e["type"].as_str().unwrap();
        *expected_per_type.entry(ty.to_string()).or_default() += 1;
        let Some(found) = logged.remove(id) else {
            problems.push(format!("messageId {id} ({ty}) is not in the event logs"));
            continue;
        };
        if found.len() != 1 {
            let statuses: Vec<&str> = found.iter().map(|r| r["status"].as_str().unwrap_or("?")).collect();
            problems.push(format!("messageId {id} ({ty}) is in the event logs {} times: {statuses:?}", found.len()));
        }
        let first = found.iter().find(|r| r["status"] == json!("processed")).unwrap_or(&found[0]);
        let (got, want) = (
            (&first["status"], &first["event_type"], &first["user_id"], &first["name"]),
            (&json!("processed"), &e["type"], &e["user_id"], &e["name"]),
        );
        if got != want {
            problems.push(format!("messageId {id}: logged (status, event_type, user_id, name) = {got:?}, sent {want:?}"));
        }
    }
    for (mid, rows) in &logged {
        problems.push(format!("unexpected event log rows for messageId {mid}: {}", Value::Array(rows.clone())));
    }
    // The log's own filters agree: per type, this user's rows (duplicates included) are the
    // events sent.
    for (ty, n) in &expected_per_type {
        let v = c.admin_ok("GET", &format!("/v1/environments/development/events?user_id={user_id}&event_type={ty}&limit=500"), None);
        let rows = v["events"].as_array().cloned().unwrap_or_default();
        if rows.len() != *n {
            problems.push(format!("GET …/events?user_id={user_id}&event_type={ty}: {} rows, expected {n}", rows.len()));
        }
    }

    assert!(
        problems.is_empty(),
        "{} {} ({sdk}) is not compatible with the gateway's tracking API:\n  - {}",
        pin.package,
        pin.version,
        problems.join("\n  - ")
    );
    println!("[sdk_clients] {sdk}: {} {} OK: {} events in {flushes} requests, each logged once", pin.package, pin.version, events.len());
}

// ---- the SDK installs ----

/// The version the script pins for `sdk` (`<script> pins`).
fn pin(lang: Lang, sdk: &str) -> Pin {
    let out = run(command(lang.interpreter()).arg(lang.script()).arg("pins"), Duration::from_secs(60), &format!("{} pins", lang.script().display()));
    assert!(out.ok, "{} pins failed:\n{}", lang.script().display(), out.stderr);
    let pins: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("pins of {}: {e}: {}", lang.script().display(), out.stdout));
    let p = &pins[sdk];
    Pin {
        package: p["package"].as_str().unwrap_or_else(|| panic!("{sdk} is not pinned in {}", lang.script().display())).to_string(),
        version: p["version"].as_str().expect("pinned version").to_string(),
    }
}

fn cache_root() -> PathBuf {
    if let Ok(d) = std::env::var("TRIBUTARY_SDK_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("neither XDG_CACHE_HOME nor HOME is set");
    base.join("tributary-tests").join("sdk")
}

/// `<package>-<version>`, plus the Python version for pip installs (wheels may be compiled).
fn install_dir(lang: Lang, pin: &Pin) -> PathBuf {
    let name = pin.package.trim_start_matches('@').replace('/', "-");
    let mut dir = format!("{name}-{}", pin.version);
    if let Lang::Python = lang {
        let out = run(
            command(lang.interpreter()).args(["-c", "import sys; print('py%d.%d' % sys.version_info[:2])"]),
            Duration::from_secs(30),
            "python version",
        );
        assert!(out.ok, "{} does not run: {}", lang.interpreter(), out.stderr);
        dir = format!("{dir}-{}", out.stdout.trim());
    }
    cache_root().join(dir)
}

fn is_installed(lang: Lang, dir: &Path, pin: &Pin) -> bool {
    match lang {
        Lang::Node => std::fs::read_to_string(dir.join("node_modules").join(&pin.package).join("package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["version"] == json!(pin.version)),
        Lang::Python => dir.join(format!("{}-{}.dist-info", pin.package.replace('-', "_"), pin.version)).is_dir(),
    }
}

/// The SDK's folder in the cache, installed from its registry if missing. Installs go to a
/// temporary folder renamed into place, so a folder that exists is complete.
fn ensure_installed(lang: Lang, pin: &Pin) -> PathBuf {
    let dir = install_dir(lang, pin);
    if is_installed(lang, &dir, pin) {
        println!("[sdk_clients] {}@{} cached in {}", pin.package, pin.version, dir.display());
        return dir;
    }
    let root = cache_root();
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    let tmp = root.join(format!(".{}.tmp-{}", dir.file_name().unwrap().to_string_lossy(), unique("")));
    let spec;
    let mut cmd = match lang {
        Lang::Node => {
            spec = format!("{}@{}", pin.package, pin.version);
            let mut c = command("npm".into());
            c.args(["install", "--no-audit", "--no-fund", "--no-update-notifier", "--save-exact", "--fetch-retries=2", "--fetch-retry-mintimeout=2000", "--fetch-retry-maxtimeout=10000", "--fetch-timeout=60000", "--prefix"])
                .arg(&tmp)
                .arg(&spec);
            c
        }
        Lang::Python => {
            spec = format!("{}=={}", pin.package, pin.version);
            let mut c = command(lang.interpreter());
            c.args(["-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--retries", "2", "--timeout", "60", "--target"])
                .arg(&tmp)
                .arg(&spec);
            c
        }
    };
    println!("[sdk_clients] installing {spec} from {} into {}", lang.registry(), dir.display());
    let started = Instant::now();
    let out = run(&mut cmd, INSTALL_TIMEOUT, &format!("install {spec}"));
    if !out.ok || !is_installed(lang, &tmp, pin) {
        let _ = std::fs::remove_dir_all(&tmp);
        panic!(
            "could not install {spec} from {} ({}). The SDK compatibility tests need the npm registry and PyPI; \
             set {SKIP_VAR}=1 to skip them.\n--- stdout\n{}\n--- stderr\n{}",
            lang.registry(),
            out.describe(),
            tail(&out.stdout, 40),
            tail(&out.stderr, 40)
        );
    }
    // Another test process may have won the race: its folder is as good as ours.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(is_installed(lang, &dir, pin), "could not move the {spec} install into {}", dir.display());
    }
    println!("[sdk_clients] installed {spec} in {:.1}s", started.elapsed().as_secs_f64());
    dir
}

// ---- running a client ----

fn run_client(lang: Lang, sdk: &str, sdk_dir: &Path, gateway_port: u16, token: &str, user_id: &str, run_id: &str) -> Value {
    let mut cmd = command(lang.interpreter());
    cmd.arg(lang.script())
        .args(["run", sdk])
        .env("SDK_DIR", sdk_dir)
        .env("GATEWAY_URL", format!("http://127.0.0.1:{gateway_port}"))
        .env("WRITE_KEY", token)
        .env("USER_ID", user_id)
        .env("RUN_ID", run_id)
        // the SDK from SDK_DIR only
        .env_remove("NODE_PATH")
        .env_remove("PYTHONPATH");
    let out = run(&mut cmd, CLIENT_TIMEOUT, &format!("{sdk} client"));
    if !out.stderr.trim().is_empty() {
        println!("[sdk_clients] {sdk}: client stderr:\n{}", tail(&out.stderr, 60));
    }
    assert!(out.ok, "the {sdk} client script failed ({}):\n--- stdout\n{}\n--- stderr\n{}", out.describe(), out.stdout, tail(&out.stderr, 60));
    let line = out.stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("the {sdk} client printed no JSON summary ({e}):\n{}", out.stdout))
}

fn command(program: String) -> Command {
    let mut c = Command::new(program);
    c.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk"));
    c
}

struct Output {
    ok: bool,
    code: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

impl Output {
    fn describe(&self) -> String {
        if self.timed_out {
            "timed out, killed".into()
        } else {
            format!("exit code {:?}", self.code)
        }
    }
}

/// Run with piped output, killing the process after `timeout`.
fn run(cmd: &mut Command, timeout: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e} (the SDK compatibility tests need node 20+, npm and python3 with pip; set {SKIP_VAR}=1 to skip them)", cmd.get_program()));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break (Some(s), false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        ok: status.is_some_and(|s| s.success()),
        code: status.and_then(|s| s.code()),
        timed_out,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- the gateway's counters ----

struct Counters {
    /// `tributary_gateway_requests_total` by status, summed over template and environment
    requests: BTreeMap<String, u64>,
    /// `tributary_gateway_events_total`, every outcome: items that get an event log row
    items: u64,
}

impl Counters {
    fn requests_delta(&self, before: &Counters) -> BTreeMap<String, u64> {
        self.requests
            .iter()
            .map(|(s, n)| (s.clone(), n - before.requests.get(s).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

fn gateway_counters(port: u16) -> Counters {
    let (status, body, _) = tributary_tests::http::try_request(port, "GET", "/metrics", &[], None).expect("GET /metrics");
    assert_eq!(status, 200, "GET /metrics on the gateway: {body}");
    let text = body.as_str().unwrap_or_default();
    let mut c = Counters { requests: BTreeMap::new(), items: 0 };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let value: f64 = value.parse().unwrap_or(0.0);
        if let Some(labels) = series.strip_prefix("tributary_gateway_requests_total{") {
            let status = label(labels, "status").unwrap_or("?").to_string();
            *c.requests.entry(status).or_default() += value as u64;
        } else if series.starts_with("tributary_gateway_events_total{") {
            c.items += value as u64;
        }
    }
    c
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}
